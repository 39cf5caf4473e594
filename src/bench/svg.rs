//! `--svg FILE`: charts as SVG written by hand (no dependency). The claims are horizontal
//! bars, one panel per question, each bar labelled with its value; a soak is lines over time,
//! the server's RSS and its open descriptors, with the thirds its level-off rule compares.

use std::fmt::Write as _;

use super::claims::Measured;
use super::soak::{Outcome, FD_MARGIN};

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

/// Height of a line chart's plot area, and the room left of it for the axis labels.
const PLOT_HEIGHT: f64 = 200.0;
const AXIS_WIDTH: f64 = 70.0;

/// A line over time with dashed guides: vertical ones at times, horizontal ones at values.
struct LinePanel {
    title: String,
    unit: &'static str,
    points: Vec<(f64, f64)>,
    at_times: Vec<(f64, String)>,
    at_values: Vec<(f64, String)>,
}

/// The soak's chart: RSS, then open descriptors, over the run. The dashed lines mark the
/// thirds of the main phase (rule 1 compares the last third's peak with the middle's), the
/// moment the misbehaving clients left, the RSS limit and the descriptors' limit.
pub fn render_soak(outcome: &Outcome) -> String {
    let d = outcome.duration;
    let times = vec![
        (d / 3.0, "1/3".to_string()),
        (2.0 * d / 3.0, "2/3".to_string()),
        (d, "misbehaving clients leave".to_string()),
    ];
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    let rss = LinePanel {
        title: "Server RSS over the soak".into(),
        unit: "MiB",
        points: outcome.samples.iter().filter_map(|s| Some((s.t, mib(s.rss?)))).collect(),
        at_times: times.clone(),
        at_values: outcome
            .rss_limit
            .map(|limit| (mib(limit), "limit for the last third".to_string()))
            .into_iter()
            .collect(),
    };
    let baseline = outcome.samples.first().and_then(|s| s.fds);
    let fds = LinePanel {
        title: "Server open file descriptors".into(),
        unit: "fds",
        points: outcome.samples.iter().filter_map(|s| Some((s.t, s.fds? as f64))).collect(),
        at_times: times,
        at_values: baseline
            .map(|fds| ((fds + FD_MARGIN) as f64, "baseline + margin".to_string()))
            .into_iter()
            .collect(),
    };
    let panels = [rss, fds];
    let height = panels.len() as f64 * (PANEL_TITLE + PLOT_HEIGHT + 2.0 * PANEL_GAP);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
    );
    let mut y = 0.0;
    for (i, panel) in panels.iter().enumerate() {
        line_panel(&mut svg, panel, y, COLORS[i % COLORS.len()]);
        y += PANEL_TITLE + PLOT_HEIGHT + 2.0 * PANEL_GAP;
    }
    svg.push_str("</svg>\n");
    svg
}

/// One line chart whose top is at `top`: axes from zero to the largest value or guide, the
/// line, the guides, the labels.
fn line_panel(svg: &mut String, panel: &LinePanel, top: f64, color: &str) {
    let _ = writeln!(
        svg,
        "<text x=\"8\" y=\"{:.1}\" font-size=\"15\" font-weight=\"bold\">{} ({})</text>",
        top + 22.0,
        escape(&panel.title),
        panel.unit
    );
    let (left, right) = (AXIS_WIDTH, WIDTH - 20.0);
    let (plot_top, bottom) = (top + PANEL_TITLE, top + PANEL_TITLE + PLOT_HEIGHT);
    let finite = |values: &mut dyn Iterator<Item = f64>| values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    let t_max =
        finite(&mut panel.points.iter().map(|p| p.0).chain(panel.at_times.iter().map(|t| t.0))).max(f64::MIN_POSITIVE);
    let v_max = (finite(&mut panel.points.iter().map(|p| p.1).chain(panel.at_values.iter().map(|v| v.0))) * 1.1)
        .max(f64::MIN_POSITIVE);
    let x = |t: f64| left + t / t_max * (right - left);
    let y = |v: f64| bottom - v / v_max * (bottom - plot_top);
    let _ = writeln!(
        svg,
        "<path d=\"M{left:.1} {plot_top:.1} V{bottom:.1} H{right:.1}\" stroke=\"#333333\" fill=\"none\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
         <text x=\"{:.1}\" y=\"{bottom:.1}\" text-anchor=\"end\">0</text>\
         <text x=\"{right:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} s</text>",
        left - 6.0,
        plot_top + 10.0,
        format_value(v_max),
        left - 6.0,
        bottom + 16.0,
        format_value(t_max)
    );
    for (t, label) in &panel.at_times {
        // A guide in the right quarter has its label on its left, inside the picture.
        let (dx, anchor) = if x(*t) > right - (right - left) / 4.0 { (-3.0, "end") } else { (3.0, "start") };
        let _ = writeln!(
            svg,
            "<path d=\"M{:.1} {plot_top:.1} V{bottom:.1}\" stroke=\"#999999\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666666\" text-anchor=\"{anchor}\">{}</text>",
            x(*t),
            x(*t) + dx,
            plot_top + 12.0,
            escape(label)
        );
    }
    for (v, label) in &panel.at_values {
        let _ = writeln!(
            svg,
            "<path d=\"M{left:.1} {:.1} H{right:.1}\" stroke=\"#e15759\" stroke-dasharray=\"6 3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#e15759\">{} {} {}</text>",
            y(*v),
            left + 4.0,
            y(*v) - 4.0,
            escape(label),
            format_value(*v),
            panel.unit
        );
    }
    let path: Vec<String> = panel
        .points
        .iter()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .enumerate()
        .map(|(i, (t, v))| format!("{}{:.1} {:.1}", if i == 0 { "M" } else { "L" }, x(*t), y(*v)))
        .collect();
    if !path.is_empty() {
        let _ = writeln!(svg, "<path d=\"{}\" stroke=\"{color}\" stroke-width=\"2\" fill=\"none\"/>", path.join(" "));
    }
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
    use crate::transport::Transport;

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
    fn a_soak_chart_draws_rss_and_descriptors_with_the_rules_guides() {
        use crate::bench::soak::Sample;
        let samples: Vec<Sample> =
            (0..10).map(|i| Sample { t: i as f64, rss: Some((20 + i) << 20), fds: Some(100 + i), conns: 5 }).collect();
        let outcome = Outcome {
            title: "t".into(),
            kinds: Vec::new(),
            rules: Vec::new(),
            samples,
            duration: 9.0,
            rss_limit: Some(40 << 20),
            failures: Vec::new(),
        };
        let svg = render_soak(&outcome);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("stroke-width=\"2\"").count(), 2, "one line per panel");
        assert!(svg.contains("limit for the last third 40.0 MiB"), "{svg}");
        assert!(svg.contains("baseline + margin 110 fds"), "{svg}");
        assert_eq!(svg.matches("misbehaving clients leave").count(), 2);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a < b & c"), "a &lt; b &amp; c");
    }
}
