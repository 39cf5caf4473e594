//! `--svg FILE`: the claims as charts, an SVG written by hand (no dependency): horizontal
//! bars, one panel per question, each bar labelled with its value.

use std::fmt::Write as _;

use super::claims::Measured;

const WIDTH: f64 = 760.0;
const LABEL_WIDTH: f64 = 250.0;
const BAR_HEIGHT: f64 = 18.0;
const BAR_GAP: f64 = 6.0;
const PANEL_TITLE: f64 = 34.0;
const PANEL_GAP: f64 = 22.0;
const COLORS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];

/// One panel: a title, a unit and labelled values; `color` picks a bar's colour by index.
struct Panel {
    title: String,
    unit: &'static str,
    bars: Vec<(String, f64, usize)>,
}

/// The SVG document for `measured`.
pub fn render(measured: &Measured) -> String {
    let mut panels = Vec::new();
    let memory = measured
        .memory
        .iter()
        .map(|(model, transport, n, kib, _)| {
            (format!("{model}, {}, {n} conns", transport.name()), *kib, usize::from(model != "threads"))
        })
        .collect();
    panels.push(Panel {
        title: "Server memory per idle connection (lower is better)".into(),
        unit: "KiB",
        bars: memory,
    });
    let per_message = measured
        .per_message
        .iter()
        .enumerate()
        .map(|(i, (name, bytes, _))| (name.clone(), *bytes, i % COLORS.len()))
        .collect();
    panels.push(Panel { title: "Bytes on the wire per 2-byte message".into(), unit: "B", bars: per_message });
    let mut latency = Vec::new();
    for (i, (transport, p50, p99)) in measured.latency.iter().enumerate() {
        latency.push((format!("{} p50", transport.name()), *p50, i));
        latency.push((format!("{} p99", transport.name()), *p99, i));
    }
    panels.push(Panel { title: "Publish-to-receive latency".into(), unit: "ms", bars: latency });

    let height: f64 =
        panels.iter().map(|p| PANEL_TITLE + p.bars.len() as f64 * (BAR_HEIGHT + BAR_GAP) + PANEL_GAP).sum();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
    );
    let mut y = 0.0;
    for panel in &panels {
        let _ = writeln!(
            svg,
            "<text x=\"8\" y=\"{:.1}\" font-size=\"15\" font-weight=\"bold\">{}</text>",
            y + 22.0,
            escape(&panel.title)
        );
        y += PANEL_TITLE;
        let max = panel.bars.iter().map(|b| b.1).filter(|v| v.is_finite()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
        let room = WIDTH - LABEL_WIDTH - 90.0;
        for (label, value, color) in &panel.bars {
            let length = if value.is_finite() { (value / max * room).max(1.0) } else { 0.0 };
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
                 <rect x=\"{LABEL_WIDTH}\" y=\"{y:.1}\" width=\"{length:.1}\" height=\"{BAR_HEIGHT}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{} {}</text>",
                LABEL_WIDTH - 6.0,
                y + 13.0,
                escape(label),
                COLORS[color % COLORS.len()],
                LABEL_WIDTH + length + 5.0,
                y + 13.0,
                format_value(*value),
                panel.unit
            );
            y += BAR_HEIGHT + BAR_GAP;
        }
        y += PANEL_GAP;
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_value(value: f64) -> String {
    match value {
        v if !v.is_finite() => "n/a".into(),
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

/// Text content for XML: `&`, `<` and `>` escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::peer::Transport;

    #[test]
    fn every_measured_value_becomes_a_labelled_bar() {
        let measured = Measured {
            memory: vec![
                ("threads".into(), Transport::LongPoll, 10, 19.5, 12),
                ("epoll".into(), Transport::LongPoll, 10, 0.5, 4),
            ],
            per_message: vec![("ws".into(), 50.0, 2.0)],
            latency: vec![(Transport::Sse, 0.8, 2.0)],
            ..Measured::default()
        };
        let svg = render(&measured);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 5, "2 memory + 1 bytes + 2 latency bars");
        assert!(svg.contains("19.5 KiB") && svg.contains("0.50 KiB") && svg.contains("2.00 ms"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a < b & c"), "a &lt; b &amp; c");
    }
}
