//! `/metrics` read by a strict parser of the Prometheus text format (`common::prometheus`,
//! written from the spec): first the parser itself, on the spec's example and on one violation
//! of each rule it checks; then a running server on every model, scraped after traffic on every
//! transport, a refusal and a gap, every family checked and the histograms' counts compared
//! with the deliveries made.

mod common;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::prometheus::{self, Kind};
use common::{each_model, eventually, read_response, read_until, TestServer};
use realtime::ws::client::Client;
use realtime::ws::message::Message;

// -------------------------------------------------------------------------------------------
// The parser
// -------------------------------------------------------------------------------------------

/// The spec's own example, with HELP lines added where it has none (the parser asks for them).
const SPEC_EXAMPLE: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
# HELP msdos_file_access_time_seconds A gauge with escapes.
# TYPE msdos_file_access_time_seconds gauge
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# A weird metric from before the epoch:
# HELP something_weird A gauge.
# TYPE something_weird gauge
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
"#;

#[test]
fn exposition_format_the_spec_example_parses_with_its_escapes_types_and_histogram() {
    let exposition = prometheus::parse(SPEC_EXAMPLE).expect("the spec's example is valid");
    assert_eq!(exposition.families.len(), 4);
    assert_eq!(exposition.family("http_requests_total").unwrap().kind, Some(Kind::Counter));
    assert_eq!(exposition.value("http_requests_total", &[("code", "400"), ("method", "post")]), Some(3.0));
    let msdos = &exposition.family("msdos_file_access_time_seconds").unwrap().samples[0];
    assert_eq!(msdos.label("path"), Some(r"C:\DIR\FILE.TXT"));
    assert_eq!(msdos.label("error"), Some("Cannot find file:\n\"FILE.TXT\""));
    let weird = &exposition.family("something_weird").unwrap().samples[0];
    assert_eq!((weird.value, weird.timestamp), (f64::INFINITY, Some(-3982045)));
    let histogram = exposition.family("http_request_duration_seconds").unwrap().histogram(&[]).unwrap();
    assert_eq!(histogram.buckets.len(), 6);
    assert_eq!((histogram.sum, histogram.count), (53423.0, 144320.0));
    assert!(prometheus::parse("").is_ok(), "no lines at all is a valid (empty) exposition");
    let nan = prometheus::parse("# HELP g G.\n# TYPE g gauge\ng NaN\n").unwrap();
    assert!(nan.value("g", &[]).unwrap().is_nan());
}

/// A valid gauge family to splice bad lines around.
const GAUGE: &str = "# HELP g A gauge.\n# TYPE g gauge\n";
const HISTOGRAM: &str = "# HELP h A histogram.\n# TYPE h histogram\n";

#[test]
fn exposition_format_each_violation_is_refused() {
    let cases: &[(&str, String, &str)] = &[
        ("no final line feed", format!("{GAUGE}g 1"), "line feed"),
        ("CRLF line endings", "# HELP g G.\r\n# TYPE g gauge\r\ng 1\r\n".into(), "carriage return"),
        ("two HELP lines", format!("{GAUGE}# HELP g again\ng 1\n"), "second HELP"),
        ("two TYPE lines", "# HELP g G.\n# TYPE g gauge\n# TYPE g gauge\ng 1\n".into(), "second TYPE"),
        ("TYPE after the samples", "# HELP g G.\ng 1\n# TYPE g gauge\n".into(), "before its TYPE"),
        ("metadata after the samples", format!("{GAUGE}g 1\n# HELP g late\n"), "after its samples"),
        ("an unknown type", "# HELP g G.\n# TYPE g meter\ng 1\n".into(), "not a metric type"),
        ("TYPE with an extra token", "# HELP g G.\n# TYPE g gauge extra\ng 1\n".into(), "not a metric type"),
        ("no TYPE line", "x 1\n".into(), "no TYPE line"),
        ("no HELP line", "# TYPE g gauge\ng 1\n".into(), "no HELP line"),
        (
            "a family split in two groups",
            format!("{GAUGE}g{{a=\"1\"}} 1\n# HELP k K.\n# TYPE k gauge\nk 1\ng{{a=\"2\"}} 2\n"),
            "not one group",
        ),
        ("a metric name starting with a digit", "# HELP 1g G.\n".into(), "invalid metric name"),
        ("a metric name with a dash", format!("{GAUGE}g-x 1\n"), "invalid metric name"),
        ("a label name starting with a digit", format!("{GAUGE}g{{1a=\"x\"}} 1\n"), "invalid label name"),
        ("a reserved label name", format!("{GAUGE}g{{__name__=\"x\"}} 1\n"), "invalid label name"),
        ("a label twice", format!("{GAUGE}g{{a=\"1\",a=\"2\"}} 1\n"), "twice"),
        ("an unquoted label value", format!("{GAUGE}g{{a=1}} 1\n"), "without quotes"),
        ("an unterminated label value", format!("{GAUGE}g{{a=\"1}} 1\n"), "unterminated"),
        ("a label value escape other than \\\\ \\\" \\n", format!("{GAUGE}g{{a=\"\\t\"}} 1\n"), "escape"),
        ("a HELP escape other than \\\\ \\n", "# HELP g say \\\"hi\\\"\n# TYPE g gauge\ng 1\n".into(), "escape"),
        ("labels without a comma", format!("{GAUGE}g{{a=\"1\" b=\"2\"}} 1\n"), "commas"),
        ("no value", format!("{GAUGE}g{{a=\"1\"}}\n"), "blank"),
        ("a value that is no float", format!("{GAUGE}g one\n"), "not a float"),
        ("Go's hex floats", format!("{GAUGE}g 0x1p-2\n"), "not a float"),
        ("a timestamp that is no int64", format!("{GAUGE}g 1 1.5\n"), "int64"),
        ("a token after the timestamp", format!("{GAUGE}g 1 2 3\n"), "unexpected token"),
        ("the same series twice", format!("{GAUGE}g{{a=\"1\",b=\"2\"}} 1\ng{{b=\"2\",a=\"1\"}} 2\n"), "same metric name"),
        ("a counter not named _total", "# HELP c C.\n# TYPE c counter\nc 1\n".into(), "_total"),
        ("a negative counter", "# HELP c_total C.\n# TYPE c_total counter\nc_total -1\n".into(), "negative"),
        (
            "buckets out of order",
            format!("{HISTOGRAM}h_bucket{{le=\"1\"}} 1\nh_bucket{{le=\"0.5\"}} 1\nh_bucket{{le=\"+Inf\"}} 1\nh_sum 1\nh_count 1\n"),
            "increasing order",
        ),
        (
            "buckets not cumulative",
            format!("{HISTOGRAM}h_bucket{{le=\"0.5\"}} 2\nh_bucket{{le=\"1\"}} 1\nh_bucket{{le=\"+Inf\"}} 2\nh_sum 1\nh_count 2\n"),
            "cumulative",
        ),
        ("no +Inf bucket", format!("{HISTOGRAM}h_bucket{{le=\"1\"}} 1\nh_sum 1\nh_count 1\n"), "+Inf"),
        (
            "+Inf bucket unequal to _count",
            format!("{HISTOGRAM}h_bucket{{le=\"+Inf\"}} 2\nh_sum 1\nh_count 3\n"),
            "is not _count",
        ),
        ("no _sum", format!("{HISTOGRAM}h_bucket{{le=\"+Inf\"}} 1\nh_count 1\n"), "no _sum"),
        ("no _count", format!("{HISTOGRAM}h_bucket{{le=\"+Inf\"}} 1\nh_sum 1\n"), "no _count"),
        ("a bucket without le", format!("{HISTOGRAM}h_bucket 1\nh_sum 1\nh_count 1\n"), "le belongs"),
        ("le that is no number", format!("{HISTOGRAM}h_bucket{{le=\"x\"}} 1\nh_sum 1\nh_count 1\n"), "not a number"),
        (
            "a series with buckets but no _sum, beside a complete one",
            format!(
                "{HISTOGRAM}h_bucket{{k=\"a\",le=\"+Inf\"}} 1\nh_sum{{k=\"a\"}} 1\nh_count{{k=\"a\"}} 1\n\
                 h_bucket{{k=\"b\",le=\"+Inf\"}} 1\nh_count{{k=\"b\"}} 1\n"
            ),
            "no _sum",
        ),
    ];
    for (rule, text, why) in cases {
        match prometheus::parse(text) {
            Ok(_) => panic!("accepted {rule}: {text:?}"),
            Err(error) => assert!(error.contains(why), "{rule}: expected an error about {why:?}, got {error:?}"),
        }
    }
}

#[test]
fn exposition_format_blanks_comments_and_a_trailing_label_comma_are_allowed() {
    let text = "# a plain comment\n\n  # HELP g\tA gauge.\n#\tTYPE g gauge\n\tg{a=\"1\",} \t 2  \n";
    let exposition = prometheus::parse(text).unwrap();
    assert_eq!(exposition.value("g", &[("a", "1")]), Some(2.0));
    assert_eq!(exposition.family("g").unwrap().help.as_deref(), Some("A gauge."));
}

// -------------------------------------------------------------------------------------------
// The server's /metrics
// -------------------------------------------------------------------------------------------

/// Every family `/metrics` has, with its type. The `process_*` ones are Linux's (from /proc).
const FAMILIES: &[(&str, Kind)] = &[
    ("realtime_connections", Kind::Gauge),
    ("realtime_parked_polls", Kind::Gauge),
    ("realtime_messages_published_total", Kind::Counter),
    ("realtime_messages_delivered_total", Kind::Counter),
    ("realtime_bytes_received_total", Kind::Counter),
    ("realtime_bytes_sent_total", Kind::Counter),
    ("realtime_connections_refused_total", Kind::Counter),
    ("realtime_slow_consumers_total", Kind::Counter),
    ("realtime_channels", Kind::Gauge),
    ("realtime_retained_bytes", Kind::Gauge),
    ("realtime_refusals_total", Kind::Counter),
    ("realtime_memory_budget_bytes", Kind::Gauge),
    ("realtime_memory_held_bytes", Kind::Gauge),
    ("realtime_memory_shed_total", Kind::Counter),
    ("realtime_resident_memory_bytes", Kind::Gauge),
    ("realtime_threads", Kind::Gauge),
    ("realtime_delivery_latency_seconds", Kind::Histogram),
    ("realtime_request_duration_seconds", Kind::Histogram),
    ("realtime_gaps_total", Kind::Counter),
    ("realtime_http_responses_total", Kind::Counter),
    ("realtime_build_info", Kind::Gauge),
];

#[cfg(target_os = "linux")]
const PROCESS_FAMILIES: &[(&str, Kind)] = &[
    ("process_cpu_seconds_total", Kind::Counter),
    ("process_start_time_seconds", Kind::Gauge),
    ("process_virtual_memory_bytes", Kind::Gauge),
    ("process_resident_memory_bytes", Kind::Gauge),
    ("process_threads", Kind::Gauge),
    ("process_open_fds", Kind::Gauge),
    ("process_max_fds", Kind::Gauge),
];

fn scrape(server: &TestServer) -> prometheus::Exposition {
    let response = server.get("/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    prometheus::parse(&response.text()).unwrap_or_else(|error| panic!("{error}\n{}", response.text()))
}

/// One request on a connection kept open, its answer read later.
fn send(server: &TestServer, head: &str) -> std::net::TcpStream {
    let mut stream = server.connect();
    stream.write_all(format!("{head}\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    stream
}

/// `count` of a histogram series, from its `+Inf` bucket (checked equal by the parser).
fn observations(exposition: &prometheus::Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let histogram = exposition.family(family).and_then(|f| f.histogram(labels));
    histogram.unwrap_or_else(|| panic!("no {family}{labels:?}")).count
}

#[test]
fn metrics_every_family_parses_strictly_and_the_histograms_count_the_live_deliveries() {
    each_model(
        |config| config.history = 3,
        |server| {
            let app = server.server.app();
            let open = |kind: usize| app.stats.snapshot().open[kind];

            // Live subscribers on every transport: an SSE stream, a WebSocket, a parked poll.
            let mut sse = send(server, "GET /sse/live HTTP/1.1");
            read_until(&mut sse, b"\r\n\r\n").expect("the stream's head");
            let mut ws = Client::connect(&server.addr().to_string(), "/ws/live").expect("handshake");
            ws.stream().set_read_timeout(Some(common::PATIENCE)).unwrap();
            let mut poll = send(server, "GET /poll/live?timeout=20 HTTP/1.1");
            eventually("all three follow the channel", || {
                open(1) == 1 && open(2) == 1 && app.stats.snapshot().parked_polls == 1
            });
            server.publish("live", "hello");
            read_until(&mut sse, b"hello").expect("the SSE event");
            assert!(matches!(ws.next_message(), Ok(Message::Text(text)) if text.contains("hello")));
            assert!(read_response(&mut poll, false).unwrap().text().contains("hello"));

            // A replay with a gap: five messages, of which the history keeps three, read by a
            // poll from the first. They were published before the poll: none is live.
            let first = server.publish("old", "1");
            for text in ["2", "3", "4", "5"] {
                server.publish("old", text);
            }
            std::thread::sleep(Duration::from_millis(20)); // the publish times are milliseconds
            let replay = server.get(&format!("/poll/old?since={first}&timeout=0"));
            assert!(replay.text().contains("\"gap\":true"), "{}", replay.text());

            // Refusals: a foreign page's publish (403), a path with no route (404).
            let mut foreign =
                send(server, "POST /publish/live HTTP/1.1\r\nOrigin: https://evil.example\r\nContent-Length: 0");
            assert_eq!(read_response(&mut foreign, false).unwrap().status, 403);
            assert_eq!(server.get("/nope").status, 404);

            let metrics = scrape(server);
            for (name, kind) in FAMILIES {
                let family = metrics.family(name).unwrap_or_else(|| panic!("no family {name}"));
                assert_eq!(family.kind, Some(*kind), "{name}");
                assert!(!family.samples.is_empty(), "{name} has no samples");
            }
            #[cfg(target_os = "linux")]
            for (name, kind) in PROCESS_FAMILIES {
                assert_eq!(metrics.family(name).and_then(|f| f.kind), Some(*kind), "{name}");
            }

            // Every live delivery is counted once, by its transport; the replay is not.
            let latency = "realtime_delivery_latency_seconds";
            for transport in ["sse", "ws", "poll"] {
                assert_eq!(observations(&metrics, latency, &[("transport", transport)]), 1.0, "{transport}");
            }
            let delivered = metrics.value("realtime_messages_delivered_total", &[]);
            assert_eq!(delivered, Some(6.0), "three live, three replayed");
            assert_eq!(metrics.value("realtime_gaps_total", &[("transport", "poll")]), Some(1.0));
            assert_eq!(metrics.value("realtime_gaps_total", &[("transport", "sse")]), Some(0.0));

            // Requests timed by route, responses counted by status.
            let duration = "realtime_request_duration_seconds";
            // Seven publishes: six answered 201, one refused 403.
            for (route, requests) in [("publish", 7.0), ("poll", 2.0), ("sse", 1.0), ("ws", 1.0), ("none", 1.0)] {
                assert_eq!(observations(&metrics, duration, &[("route", route)]), requests, "{route}");
            }
            let responses = |code: &str| metrics.value("realtime_http_responses_total", &[("code", code)]);
            assert_eq!(responses("101"), Some(1.0));
            assert_eq!(responses("201"), Some(5.0 + 1.0));
            assert_eq!(responses("403"), Some(1.0));
            assert_eq!(responses("404"), Some(1.0));
            assert_eq!(responses("200"), Some(3.0), "the SSE head and two poll answers");
            assert_eq!(metrics.value("realtime_refusals_total", &[("reason", "origin")]), Some(1.0));
            let version = env!("CARGO_PKG_VERSION");
            assert_eq!(metrics.value("realtime_build_info", &[("version", version)]), Some(1.0));

            #[cfg(target_os = "linux")]
            {
                let value = |name: &str| metrics.value(name, &[]).unwrap_or_else(|| panic!("no {name}"));
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
                let started = value("process_start_time_seconds");
                assert!(started <= now + 1.0 && started > now - 24.0 * 3600.0, "started {started}, now {now}");
                assert!(value("process_open_fds") >= 3.0);
                assert!(value("process_max_fds") >= value("process_open_fds"));
                assert!(value("process_resident_memory_bytes") > 0.0);
                assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
                assert!(value("process_threads") >= 2.0, "the test's thread and the server's");
                assert!(value("process_cpu_seconds_total") >= 0.0);
            }
            drop((sse, ws));
        },
    );
}

/// The metric names a PromQL expression mentions (`realtime_*`, `process_*`).
fn metric_names(expr: &str) -> Vec<&str> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("realtime_").into_iter().chain(rest.find("process_")).min() {
        let end = rest[start..].find(|c: char| !is_name_char(c)).map_or(rest.len(), |n| start + n);
        names.push(&rest[start..end]);
        rest = &rest[end..];
    }
    names
}

#[test]
fn metrics_the_example_dashboard_and_scrape_config_use_only_families_the_server_exposes() {
    let dashboard = realtime::json::parse(include_str!("../examples/grafana-dashboard.json")).expect("valid JSON");
    let panels = dashboard.get("panels").and_then(|p| p.as_array()).expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|panel| panel.get("targets").and_then(|t| t.as_array()).unwrap_or_default())
        .filter_map(|target| target.get("expr").and_then(|e| e.as_str()))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let server = TestServer::start(realtime::config::Model::EventLoop, &|_| {});
    let metrics = scrape(&server);
    let named: usize = exprs.iter().map(|expr| metric_names(expr).len()).sum();
    assert!(named >= exprs.len(), "every query names a metric");
    assert_eq!(
        metric_names("rate(process_cpu_seconds_total{a=\"b\"}[1m]) / realtime_x"),
        ["process_cpu_seconds_total", "realtime_x"]
    );
    for expr in exprs {
        for name in metric_names(expr) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| metrics.family(f).is_some()))
                .unwrap_or(name);
            if cfg!(target_os = "linux") || !family.starts_with("process_") {
                assert!(
                    metrics.family(family).is_some(),
                    "the dashboard asks for {name}, which /metrics lacks: {expr}"
                );
            }
        }
    }
    let scrape_config = include_str!("../examples/prometheus.yml");
    assert!(scrape_config.contains("metrics_path: /metrics"), "{scrape_config}");
}
