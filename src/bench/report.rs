//! Results as a table for people (stdout) and as JSON for machines (`--json`).

use std::fmt::Write as _;

use crate::json;

/// One value in a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Count(u64),
    Number(f64),
}

impl Cell {
    fn display(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Number(x) if x.abs() >= 100.0 => format!("{x:.0}"),
            Cell::Number(x) => format!("{x:.2}"),
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
    let mut out = String::from("{\"scenario\":");
    json::write_string(&mut out, scenario);
    out.push_str(",\"rows\":[");
    for (i, row) in rows.iter().enumerate() {
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
    out.push_str("]}");
    out
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
    fn table_has_a_header_and_a_line_per_row() {
        let rows = vec![vec![("a", Cell::Count(1))], vec![("a", Cell::Count(2))]];
        let text = table("t", &rows);
        assert!(text.contains("| a |\n|---|\n| 1 |\n| 2 |\n"), "{text}");
    }
}
