//! Monitoring: `pgmoneta-cli check` and the `nagios` port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::metrics::http;
use crate::{cluster, free_port, Daemon};

/// Free-space thresholds that never fire, so the host's own disk does not decide a check that is
/// about something else.
const ANY_SPACE: [&str; 4] = ["--free-warning", "0%", "--free-critical", "0%"];

/// The same as query parameters of the nagios port.
const ANY_SPACE_QUERY: &str = "free_warning=0%&free_critical=0%";

/// `pgmoneta-cli check <args>`: exit code and the one line printed. Unless `args` set free-space
/// thresholds, they are [`ANY_SPACE`].
fn check(d: &Daemon, args: &[&str]) -> (i32, String) {
    let mut all = vec!["check"];
    if !args.iter().any(|a| a.starts_with("--free-")) {
        all.extend_from_slice(&ANY_SPACE);
    }
    all.extend_from_slice(args);
    let out = d.cli_command(&all).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.matches('\n').count(), 1, "one line: {text:?} {}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// What a client that sends nothing reads on the nagios port.
fn unasked(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    String::from_utf8(raw).unwrap()
}

/// The state the default free-space thresholds (warning below 20%, critical below 10%) give the
/// file system holding `dir`, or `None` when it is too close to a threshold to say.
fn default_space_state(dir: &std::path::Path) -> Option<&'static str> {
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    let pct = st.blocks_available() as f64 * 100.0 / st.blocks() as f64;
    let near = |t: f64| (pct - t).abs() < 1.0;
    if near(20.0) || near(10.0) {
        None
    } else if pct < 10.0 {
        Some("CRITICAL")
    } else if pct < 20.0 {
        Some("WARNING")
    } else {
        Some("OK")
    }
}

/// The first file of the backup's data directory larger than 8 kB.
fn a_stored_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && e.metadata().unwrap().len() > 8192 {
                return e.path();
            }
        }
    }
    panic!("no stored file in {}", dir.display());
}

#[test]
fn check_and_the_nagios_port_say_what_is_wrong() {
    let mut source = cluster();
    let nagios = free_port();
    let mut d = Daemon::new(&source, &format!("nagios = {nagios}"));
    d.start();
    d.wait_streaming();

    // No backup yet: CRITICAL, from the CLI and from the port.
    let (code, line) = check(&d, &["primary"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with("PGMONETA CRITICAL - primary: no valid backup|primary_wal_lag="), "{line}");
    let (head, body) = http(nagios, &format!("GET /?{ANY_SPACE_QUERY} HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("X-Nagios-State: 2"), "{head}");
    assert!(body.starts_with("PGMONETA CRITICAL - primary: no valid backup|"), "{body}");

    let label = d.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();

    // Healthy: upstream's own words, and the performance data.
    let (code, line) = check(&d, &[]);
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("PGMONETA OK - pgmoneta is running|primary_wal_lag="), "{line}");
    for perf in ["primary_backup_age=", "primary_valid_backups=1;", "primary_wal_streaming=1;", "repository_free="] {
        assert!(line.contains(perf), "{perf} missing: {line}");
    }
    // A client that asks nothing gets the line framed as upstream frames it, with the default
    // thresholds: the host's free space decides between OK and a word about the repository.
    let raw = unasked(nagios);
    let (len, rest) = raw.split_once("\r\n").unwrap();
    let text = rest.strip_suffix("\r\n").unwrap();
    assert_eq!(usize::from_str_radix(len, 16).unwrap(), text.len(), "{raw:?}");
    assert!(text.ends_with('\n') && text.contains("|primary_wal_lag="), "{raw:?}");
    match default_space_state(&d.base) {
        Some("OK") => assert!(text.starts_with("PGMONETA OK - pgmoneta is running|"), "{raw:?}"),
        Some(state) => assert!(text.starts_with(&format!("PGMONETA {state} - repository free space ")), "{raw:?}"),
        None => assert!(text.starts_with("PGMONETA OK - ") || text.contains("repository free space"), "{raw:?}"),
    }

    // Thresholds: as options of the CLI, as query parameters of the port.
    let (code, line) = check(&d, &["--free-warning", "100%", "--free-critical", "0%"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.starts_with("PGMONETA WARNING - repository free space "), "{line}");
    let (code, line) = check(&d, &["--backup-age-critical", "0s", "primary"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains(&format!("primary: newest valid backup {label} is ")), "{line}");
    let (head, body) =
        http(nagios, &format!("GET /?server=primary&backup_age_warning=0s&{ANY_SPACE_QUERY} HTTP/1.1\r\n\r\n"));
    assert!(head.contains("X-Nagios-State: 1") && body.starts_with("PGMONETA WARNING - primary: newest"), "{body}");
    let (head, body) = http(nagios, "GET /?server=nosuch HTTP/1.1\r\n\r\n");
    assert!(head.contains("X-Nagios-State: 3"), "{head}");
    assert!(body.starts_with("PGMONETA UNKNOWN - check: no server named \"nosuch\""), "{body}");
    let (head, body) = http(nagios, "GET /?wal_lag_warning=lots HTTP/1.1\r\n\r\n");
    assert!(head.contains("X-Nagios-State: 3") && body.contains("wal_lag_warning"), "{body}");
    let (head, _) = http(nagios, "GET /other HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (code, line) = check(&d, &["nosuch"]);
    assert_eq!(code, 3, "{line}");
    let out = d.cli_command(&["check", "--wal-lag-warning", "lots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "a command line check cannot read is UNKNOWN");
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a number of bytes"));

    // A stored file damaged: verify fails, and the check names the backup until it passes.
    let file = a_stored_file(&d.base.join(format!("primary/backup/{label}/data")));
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let _ = d.cli(&["verify", "primary", &label, "/tmp"]);
    let (code, line) = check(&d, &[]);
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with(&format!("PGMONETA CRITICAL - primary: backup {label} failed verification: ")), "{line}");
    assert!(unasked(nagios).contains("PGMONETA CRITICAL - primary: backup"));
    let (code, line) = check(&d, &["--no-verification"]);
    assert_eq!(code, 0, "{line}");
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    d.ok(&["verify", "primary", &label, "/tmp"]);
    assert_eq!(check(&d, &[]).0, 0);

    // WAL streaming stopped (the server gone): CRITICAL.
    source.stop().unwrap();
    d.wait_for("WAL streaming to stop", || check(&d, &[]).1.contains("WAL is not streaming"));
    let (code, line) = check(&d, &[]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("primary_wal_streaming=0;"), "{line}");

    // The daemon gone: UNKNOWN.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(30));
    let (code, line) = check(&d, &[]);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("PGMONETA UNKNOWN - "), "{line}");
    let _ = std::io::stdout().flush();
}
