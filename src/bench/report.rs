//! Results as a table for people (stdout) and as JSON for machines (`--json`).

use std::fmt::Write as _;

use crate::json;

/// One value in a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Count(u64),
    Number(f64),
    /// A number measured over several runs: the median, and the smallest and largest.
    Range {
        median: f64,
        min: f64,
        max: f64,
    },
}

impl Cell {
    fn display(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Number(x) if x.abs() >= 100.0 => format!("{x:.0}"),
            Cell::Number(x) => format!("{x:.2}"),
            Cell::Range { median, min, max } => {
                let [median, min, max] = [*median, *min, *max].map(|x| Cell::Number(x).display());
                format!("{median} ({min}-{max})")
            }
        }
    }

    fn json(&self, out: &mut String) {
        match self {
            Cell::Text(text) => json::write_string(out, text),
            Cell::Count(n) => {
                let _ = write!(out, "{n}");
            }
            Cell::Number(x) if x.is_finite() => {
                let _ = write!(out, "{x:.3}");
            }
            Cell::Number(_) => out.push_str("null"),
            Cell::Range { median, min, max } => {
                out.push_str("{\"median\":");
                Cell::Number(*median).json(out);
                out.push_str(",\"min\":");
                Cell::Number(*min).json(out);
                out.push_str(",\"max\":");
                Cell::Number(*max).json(out);
                out.push('}');
            }
        }
    }
}

/// A result row: named cells, in the order the table shows them.
pub type Row = Vec<(&'static str, Cell)>;

/// The cell named `name` in `row`.
pub fn cell<'r>(row: &'r Row, name: &str) -> Option<&'r Cell> {
    row.iter().find(|(n, _)| *n == name).map(|(_, cell)| cell)
}

/// The cell named `name` as a number (counts included).
pub fn number(row: &Row, name: &str) -> Option<f64> {
    match cell(row, name)? {
        Cell::Count(n) => Some(*n as f64),
        Cell::Number(x) => Some(*x),
        Cell::Range { median, .. } => Some(*median),
        Cell::Text(_) => None,
    }
}

/// A Markdown table of `rows` (all with the same columns as the first).
pub fn table(title: &str, rows: &[Row]) -> String {
    let mut out = format!("\n## {title}\n\n");
    let Some(first) = rows.first() else {
        out.push_str("(no results)\n");
        return out;
    };
    let names: Vec<&str> = first.iter().map(|(name, _)| *name).collect();
    let _ = writeln!(out, "| {} |", names.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(names.len()));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|(_, cell)| cell.display()).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// `{"scenario":...,"rows":[{...},...]}` on one line.
pub fn to_json(scenario: &str, rows: &[Row]) -> String {
    to_json_sections(scenario, &[("rows", rows)])
}

/// `{"scenario":...,"NAME":[{...},...],...}` on one line: several lists of rows, each under
/// its name.
pub fn to_json_sections<R: AsRef<[Row]>>(scenario: &str, sections: &[(&str, R)]) -> String {
    let mut out = String::from("{\"scenario\":");
    json::write_string(&mut out, scenario);
    for (name, rows) in sections {
        out.push(',');
        json::write_string(&mut out, name);
        out.push_str(":[");
        for (i, row) in rows.as_ref().iter().enumerate() {
            out.push_str(if i == 0 { "{" } else { ",{" });
            for (j, (name, cell)) in row.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                json::write_string(&mut out, name);
                out.push(':');
                cell.json(&mut out);
            }
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// Several runs of the same scenario as one set of rows: a measured number becomes its
/// median with the range, a count its largest value (a loss in any run shows), a text the
/// first run's.
pub fn merge_runs(runs: &[Vec<Row>]) -> Vec<Row> {
    let Some(first) = runs.first() else { return Vec::new() };
    if runs.len() == 1 {
        return first.clone();
    }
    (0..first.len())
        .map(|r| {
            first[r]
                .iter()
                .enumerate()
                .map(|(c, (name, cell))| {
                    let same =
                        runs.iter().filter_map(|run| run.get(r).and_then(|row| row.get(c))).map(|(_, cell)| cell);
                    let merged = match cell {
                        Cell::Count(_) => Cell::Count(
                            same.filter_map(|cell| if let Cell::Count(n) = cell { Some(*n) } else { None })
                                .max()
                                .unwrap_or(0),
                        ),
                        Cell::Number(_) | Cell::Range { .. } => {
                            let mut values: Vec<f64> = same
                                .filter_map(|cell| match cell {
                                    Cell::Number(x) | Cell::Range { median: x, .. } => Some(*x),
                                    _ => None,
                                })
                                .collect();
                            values.sort_by(f64::total_cmp);
                            Cell::Range {
                                median: values[values.len() / 2],
                                min: values[0],
                                max: values[values.len() - 1],
                            }
                        }
                        Cell::Text(_) => cell.clone(),
                    };
                    (*name, merged)
                })
                .collect()
        })
        .collect()
}

/// The `p`-th percentile (0-100) of sorted `samples`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 50.0);
        assert_eq!(percentile(&samples, 99.0), 99.0);
        assert_eq!(percentile(&samples, 100.0), 100.0);
        assert_eq!(percentile(&samples, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn json_rows_parse_back() {
        let rows =
            vec![vec![("transport", Cell::Text("ws".into())), ("lost", Cell::Count(0)), ("p50_ms", Cell::Number(1.5))]];
        let parsed = json::parse(&to_json("fanout", &rows)).unwrap();
        let row = &parsed.get("rows").unwrap().as_array().unwrap()[0];
        assert_eq!(row.get("transport").and_then(json::Value::as_str), Some("ws"));
        assert_eq!(row.get("lost").and_then(json::Value::as_u64), Some(0));
    }

    #[test]
    fn runs_merge_into_median_and_range_and_the_worst_count() {
        let run = |p50: f64, lost: u64| vec![vec![("p50_ms", Cell::Number(p50)), ("lost", Cell::Count(lost))]];
        let merged = merge_runs(&[run(3.0, 0), run(1.0, 2), run(2.0, 0)]);
        assert_eq!(merged[0][0].1, Cell::Range { median: 2.0, min: 1.0, max: 3.0 });
        assert_eq!(merged[0][1].1, Cell::Count(2));
        assert_eq!(merged[0][0].1.display(), "2.00 (1.00-3.00)");
    }

    #[test]
    fn table_has_a_header_and_a_line_per_row() {
        let rows = vec![vec![("a", Cell::Count(1))], vec![("a", Cell::Count(2))]];
        let text = table("t", &rows);
        assert!(text.contains("| a |\n|---|\n| 1 |\n| 2 |\n"), "{text}");
    }
}
