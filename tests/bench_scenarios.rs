//! `realtime bench` at tiny sizes, against both server models: each scenario's accounting
//! (messages sent = received + lost, no duplicates, bytes counted), never its timing.

mod common;

use std::time::Duration;

use common::{each_model, TestServer};
use realtime::bench::report::{cell, number, Cell, Row};
use realtime::bench::{parse_args, run_scenario, Options, Target};

fn run(server: &TestServer, line: &str) -> Vec<Row> {
    let mut args: Vec<String> = line.split_whitespace().map(String::from).collect();
    args.extend(["--url".to_string(), format!("http://{}", server.addr())]);
    let options: Options = parse_args(&args).expect("valid options");
    let target = Target::at(&format!("http://{}", server.addr())).unwrap();
    run_scenario(&options, &target).unwrap_or_else(|error| panic!("{line}: {error}"))
}

fn transport(row: &Row) -> String {
    match cell(row, "transport") {
        Some(Cell::Text(name)) => name.clone(),
        other => panic!("no transport: {other:?}"),
    }
}

#[test]
fn fanout_delivers_every_published_message_to_every_subscriber_once() {
    each_model(
        |_| {},
        |server| {
            let rows = run(server, "fanout --subs 5 --rate 50 --duration 0.4");
            assert_eq!(rows.len(), 3, "one row per transport");
            for row in &rows {
                let name = transport(row);
                let value = |field| number(row, field).unwrap_or_else(|| panic!("{name}: no {field}"));
                assert_eq!(value("subscribers"), 5.0, "{name}");
                assert!(value("published") >= 1.0, "{name}");
                assert_eq!(value("delivered"), value("published") * 5.0, "{name}: sent = received");
                assert_eq!(value("lost"), 0.0, "{name}");
                assert_eq!(value("duplicated"), 0.0, "{name}");
                assert_eq!(value("gaps"), 0.0, "{name}");
            }
        },
    );
}

#[test]
fn idle_holds_every_connection_it_opens() {
    each_model(
        |_| {},
        |server| {
            for row in run(server, "idle --conns 20 --hold 0.2") {
                let name = transport(&row);
                assert_eq!(number(&row, "open"), Some(20.0), "{name}");
                assert_eq!(number(&row, "failed"), Some(0.0), "{name}");
                // The server's memory came from /stats: a number, whatever its value.
                assert!(number(&row, "rss_after_mib").is_some_and(|mib| mib > 0.0), "{name}");
            }
        },
    );
}

#[test]
fn idle_websockets_offering_permessage_deflate_are_held_too() {
    // RFC 7692 §5: the server answers the offer (the default --ws-deflate no-context agrees);
    // idle, no message has to be compressed either way.
    each_model(
        |_| {},
        |server| {
            let rows = run(server, "idle --transport ws --conns 20 --hold 0.2 --ws-deflate no-context");
            assert_eq!(rows.len(), 1);
            assert_eq!(number(&rows[0], "open"), Some(20.0));
            assert_eq!(number(&rows[0], "failed"), Some(0.0));
        },
    );
}

#[test]
fn echo_counts_round_trips_on_every_connection() {
    each_model(
        |_| {},
        |server| {
            for frames in ["binary", "text"] {
                let line = format!("echo --conns 3 --in-flight 4 --size 100 --duration 0.5 --frames {frames}");
                let rows = run(server, &line);
                assert!(number(&rows[0], "msgs_per_s").is_some_and(|rate| rate > 0.0));
                assert_eq!(number(&rows[0], "closed"), Some(0.0));
                assert!(matches!(cell(&rows[0], "frames"), Some(Cell::Text(sent)) if sent == frames));
            }
        },
    );
}

#[test]
fn overhead_counts_bytes_per_message_in_both_directions() {
    each_model(
        |_| {},
        |server| {
            let rows = run(server, "overhead --messages 3");
            let names: Vec<String> = rows.iter().map(transport).collect();
            assert_eq!(names, ["poll", "sse", "ws", "naive poll (empty answer)"]);
            for row in &rows {
                assert!(number(row, "bytes_per_message").is_some_and(|bytes| bytes > 2.0), "{}", transport(row));
            }
            // A long poll makes one request per message; the streams make none.
            assert_eq!(number(&rows[0], "requests_per_message"), Some(1.0));
            assert_eq!(number(&rows[1], "requests_per_message"), Some(0.0));
        },
    );
}

#[test]
fn options_refuse_a_missing_target_and_unknown_flags() {
    let args = |line: &str| line.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert!(parse_args(&args("fanout")).is_err(), "no target");
    assert!(parse_args(&args("fanout --url http://a:1 --spawn epoll")).is_err(), "two targets");
    assert!(parse_args(&args("fanout --url http://a:1 --bogus 1")).is_err());
    assert!(parse_args(&args("fanout --url http://a:1 --transport carrier-pigeon")).is_err());
    assert!(parse_args(&args("nap --url http://a:1")).is_err());
    let options = parse_args(&args("echo --url http://a:1 --duration 0.5 --in-flight 8")).unwrap();
    assert_eq!((options.duration, options.in_flight, options.text), (Duration::from_millis(500), 8, false));
    assert!(parse_args(&args("echo --url http://a:1 --frames text")).unwrap().text);
    assert!(parse_args(&args("echo --url http://a:1 --frames morse")).is_err());
    assert!(parse_args(&args("fanout --url http://a:1 --frames text")).is_err(), "--frames is echo's");
    let soak = parse_args(&args("soak --spawn epoll --minutes 0.5 --abuse rst,silent --abusers 3")).unwrap();
    assert_eq!((soak.duration, soak.abusers, soak.abuse.len()), (Duration::from_secs(30), 3, 2));
    assert!(parse_args(&args("soak --spawn epoll --abuse carrier-pigeon")).is_err());
    assert!(parse_args(&args("soak --spawn epoll --runs 2")).is_err(), "a soak runs once");
    assert!(parse_args(&args("fanout --url http://a:1 --minutes 1")).is_err(), "--minutes is the soak's");
    let idle = parse_args(&args("idle --spawn epoll --ws-deflate context")).unwrap();
    assert_eq!(idle.ws_deflate.as_deref(), Some("context"));
    assert!(parse_args(&args("idle --spawn epoll --ws-deflate gzip")).is_err());
    assert!(parse_args(&args("fanout --spawn epoll --ws-deflate off")).is_err(), "--ws-deflate is idle's");
}

/// `realtime bench soak` as the real binary (it spawns its server), small and short: its JSON
/// report and exit status.
fn soak(model: &str, abuse: &str) -> (bool, realtime::json::Value, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_realtime"))
        .args(["bench", "soak", "--spawn", model, "--seconds", "5", "--subs", "10", "--channels", "4"])
        .args(["--rate", "50", "--abusers", "5", "--abuse", abuse, "--json"])
        .output()
        .expect("run realtime bench soak");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = realtime::json::parse(String::from_utf8_lossy(&output.stdout).trim())
        .unwrap_or_else(|e| panic!("one JSON line ({e}): {stderr}"));
    (output.status.success(), report, stderr)
}

#[test]
fn soak_with_every_kind_of_abuse_passes_every_rule_and_loses_nothing() {
    for model in ["epoll", "threads"] {
        let (passed, report, stderr) = soak(model, "all");
        let section = |name: &str| report.get(name).and_then(|rows| rows.as_array()).unwrap_or_default().to_vec();
        let text = |row: &realtime::json::Value, name: &str| row.get(name).and_then(|v| v.as_str()).map(String::from);
        let count = |row: &realtime::json::Value, name: &str| row.get(name).and_then(|v| v.as_u64());
        for rule in section("rules") {
            assert_eq!(text(&rule, "held").as_deref(), Some("yes"), "{model}: {rule:?}\n{stderr}");
        }
        assert!(passed, "{model}: exit status: {stderr}");
        let kinds: Vec<String> = section("rows").iter().filter_map(|row| text(row, "kind")).collect();
        assert_eq!(
            kinds,
            ["poll (follower)", "sse (follower)", "ws (follower)", "slow", "ping", "echo", "partial", "silent", "rst"],
            "{model}: the table names the kinds that ran"
        );
        for follower in &section("rows")[..3] {
            assert_eq!(count(follower, "lost"), Some(0), "{model}: {follower:?}");
            assert_eq!(count(follower, "duplicated"), Some(0), "{model}: {follower:?}");
            assert!(count(follower, "delivered").is_some_and(|n| n > 0), "{model}: {follower:?}");
        }
        assert!(section("samples").len() >= 10, "{model}: RSS sampled over the run");
    }
}

#[test]
fn claims_measures_every_claim_and_loses_nothing_on_reconnect() {
    // `claims` starts its own servers, so it runs as the real binary.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_realtime"))
        .args(["bench", "claims", "--quick", "--json"])
        .output()
        .expect("run realtime bench claims");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench claims failed: {stderr}");
    let report = realtime::json::parse(String::from_utf8_lossy(&output.stdout).trim()).expect("one JSON line");
    let rows = report.get("rows").and_then(|rows| rows.as_array()).expect("rows");
    let field =
        |row: &realtime::json::Value, name: &str| row.get(name).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let claims: Vec<String> = rows.iter().map(|row| field(row, "claim")).collect();
    assert_eq!(claims, ["a", "b", "c", "d", "e"]);
    assert!(field(&rows[4], "measured here").ends_with("lost 0"), "{:?}", field(&rows[4], "measured here"));
}
