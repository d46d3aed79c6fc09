//! The Prometheus endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use crate::{cluster, Daemon};

pub(crate) fn http(port: u16, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut decoded = String::new();
    if head.contains("Transfer-Encoding: chunked") {
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            decoded.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
    }
    (head.to_owned(), decoded)
}

/// `promtool`, from Debian's prometheus package, when installed.
fn promtool() -> Option<std::path::PathBuf> {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"].iter().map(std::path::PathBuf::from).find(|p| p.exists())
}

#[test]
fn serves_metrics_in_the_exposition_format() {
    let source = cluster();
    let mut d = Daemon::new(&source, "");
    d.start();
    d.wait_streaming();
    d.ok(&["backup", "primary"]);
    // A timeline history file in the archive, as after a promotion.
    std::fs::write(d.base.join("primary/wal/00000002.history"), "1\t0/3000148\tno recovery target specified\n")
        .unwrap();

    let (head, body) = http(d.metrics_port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for needle in [
        "# HELP pgmoneta_state ",
        "# TYPE pgmoneta_state gauge",
        "pgmoneta_state 1",
        "pgmoneta_server_online{name=\"primary\"} 1",
        "pgmoneta_wal_streaming{name=\"primary\"} 1",
        "pgmoneta_wal_lag_bytes{name=\"primary\"} ",
        "pgmoneta_verification_failed_backups{name=\"primary\"} 0",
        "pgmoneta_backup_valid{name=\"primary\"} 1",
        "pgmoneta_backup_progress_done_bytes{name=\"primary\"} 0",
        "pgmoneta_retention_server{name=\"primary\",parameter=\"days\"} 7",
        "pgmoneta_server_extension{name=\"primary\",extension=\"plpgsql\",version=\"1.0\",comment=\"PL/pgSQL procedural language\"} 1",
        "pgmoneta_extension_pgmoneta_ext{name=\"primary\",version=\"\"} 0",
        "pgmoneta_server_parent_tli{name=\"primary\",tli=\"2\"} 1",
        "pgmoneta_server_timeline_switchpos{name=\"primary\",tli=\"2\",walpos=\"0/3000148\"} 1",
    ] {
        assert!(body.contains(needle), "{needle:?} missing from:\n{body}");
    }
    // Each family's samples are together, under one HELP and TYPE.
    let mut seen = std::collections::HashSet::new();
    let mut current = String::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap().to_owned();
        if name != current {
            assert!(seen.insert(name.clone()), "{name} appears in two places");
            current = name;
        }
    }

    let dashboard_queries = check_grafana_dashboard(&body);

    let (head, body) = http(d.metrics_port, "GET / HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/html"), "{head}");
    assert!(body.contains("/metrics"));
    let (head, _) = http(d.metrics_port, "GET /secret HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = http(d.metrics_port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    let Some(tool) = pgmoneta_testkit::require(
        promtool(),
        "promtool (Debian's prometheus package; scripts/setup.sh installs it)",
        "the check of /metrics with promtool",
    ) else {
        return;
    };
    let (_, body) = http(d.metrics_port, "GET /metrics HTTP/1.1\r\n\r\n");
    let mut child = Command::new(&tool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Exit status 1 is a parsing error; 3 means lint findings only.
    assert_ne!(out.status.code(), Some(1), "promtool:\n{report}");
    assert!(!report.contains("error while linting") && !report.contains("parsing"), "promtool:\n{report}");
    eprintln!("promtool lints on upstream's names:\n{report}");
    check_queries_parse(&tool, &dashboard_queries);
    // Lints are expected on upstream's names; none on ours.
    for ours in [
        "pgmoneta_wal_lag_bytes",
        "pgmoneta_backup_progress_",
        "pgmoneta_wal_flushed_lsn_bytes",
        "pgmoneta_verification_failed_backups",
    ] {
        assert!(!report.contains(ours), "promtool lints {ours}:\n{report}");
    }
}

#[test]
fn serves_metrics_over_https_when_configured() {
    let source = cluster();
    let certs = tempfile::tempdir_in("/tmp").unwrap();
    let (cert, key, ca_file) = crate::localhost_certs(certs.path());
    let extra = format!("metrics_cert_file = {}\nmetrics_key_file = {}\n", cert.display(), key.display());
    let mut d = Daemon::new(&source, &extra);
    d.start();

    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    b.set_ca_file(&ca_file).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", d.metrics_port)).unwrap();
    let mut tls = b.build().connect("localhost", tcp).unwrap();
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("pgmoneta_state 1"), "{text}");
}

#[test]
fn the_metrics_port_holds_its_limits() {
    let source = cluster();
    let mut d = Daemon::new(&source, "");
    d.start();

    // A request head over 16 KiB, a body over 64 KiB.
    let big_head = format!("GET /metrics HTTP/1.1\r\nX-Filler: {}\r\n\r\n", "a".repeat(20 << 10));
    let (head, _) = http(d.metrics_port, &big_head);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    let (head, _) = http(d.metrics_port, &format!("GET /metrics HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 1 << 20));
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // 64 connections that say nothing fill the port: the next one is closed unanswered.
    let idle: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(("127.0.0.1", d.metrics_port)).unwrap()).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut extra = TcpStream::connect(("127.0.0.1", d.metrics_port)).unwrap();
    extra.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut raw = Vec::new();
    let _ = extra.read_to_end(&mut raw);
    assert!(raw.is_empty(), "the 65th connection was answered: {}", String::from_utf8_lossy(&raw));

    // A client that sends no request head is cut off after 10 s, which frees its place.
    let started = std::time::Instant::now();
    let mut first = idle.into_iter().next().unwrap();
    first.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    let n = first.read_to_end(&mut rest);
    assert!(n.is_ok(), "the idle connection was not closed: {n:?}");
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_secs(15), "closed after {waited:?}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (head, body) = http(d.metrics_port, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200") && body.contains("pgmoneta_state 1"), "{head}");
}

/// The Grafana dashboard the package ships (packaging/grafana/pgmoneta.json) is a dashboard
/// model Grafana loads (panels with unique ids, a type, a place on the grid and queries with
/// reference ids; its variables), and every metric its queries name is one the daemon exports
/// in `exposition`. Returns the queries, with the variables replaced, to be parsed by promtool.
fn check_grafana_dashboard(exposition: &str) -> Vec<String> {
    use serde_json::Value;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/pgmoneta.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in ["title", "uid"] {
        assert!(dash[key].as_str().is_some_and(|s| !s.is_empty()), "dashboard {key}");
    }
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 30), "schemaVersion");
    let exported: std::collections::HashSet<&str> =
        exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let variables: Vec<&str> =
        dash["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(variables, ["datasource", "server"]);
    let mut queries = vec![dash["templating"]["list"][1]["definition"].as_str().unwrap().to_owned()];
    let mut ids = std::collections::HashSet::new();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for p in panels {
        let id = p["id"].as_u64().expect("a panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let kind = p["type"].as_str().unwrap();
        assert!(["row", "stat", "timeseries", "gauge", "table", "bargauge"].contains(&kind), "panel type {kind}");
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24 && grid["h"].as_u64().unwrap() > 0 && grid["y"].is_u64(), "panel {id} grid {grid}");
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "panel {id} has no title");
        if kind == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {id} has no query");
        let mut refs = std::collections::HashSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().unwrap()), "panel {id}: refId twice");
            queries.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for q in &queries {
        let mut rest = q.as_str();
        while let Some(at) = rest.find("pgmoneta_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            assert!(exported.contains(name.as_str()), "the dashboard queries {name}, which the daemon does not export");
            rest = &rest[at + name.len()..];
        }
    }
    // Grafana's variables, as a query would see them.
    queries.into_iter().filter(|q| !q.starts_with("label_values(")).map(|q| q.replace("$server", ".*")).collect()
}

/// Every query of the dashboard is PromQL that Prometheus parses (as recording rules checked
/// by `promtool check rules`).
fn check_queries_parse(promtool: &std::path::Path, queries: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(q).unwrap()
        ));
    }
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new(promtool).arg("check").arg("rules").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "promtool does not parse the dashboard's queries:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
