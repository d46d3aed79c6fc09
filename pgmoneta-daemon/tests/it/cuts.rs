//! Cut connections and dying servers, each in the middle of a backup while WAL streams: the
//! backup's walsender terminated, the WAL walsender terminated, the TCP connections cut (a
//! loopback proxy between the daemon and PostgreSQL), PostgreSQL stopped fast and stopped
//! immediately (a crash). After each: the backup failed with a reason and left nothing valid,
//! the daemon still serves, streaming resumed by itself; at the end the archive has no gap, and
//! the next backup restores to the server's data.

use std::process::{Child, Stdio};

use pgmoneta_testkit::CutProxy;

use crate::faults::{backup_dirs, settled_archive, wait_backup_running};
use crate::{cluster, Daemon};

fn start_backup(d: &Daemon) -> Child {
    let c = d.cli_command(&["backup", "primary"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    wait_backup_running(d);
    c
}

/// The backup `cli` failed, said why, and left nothing behind; the daemon still answers.
fn failed_cleanly(d: &Daemon, cli: Child, what: &str) {
    let out = cli.wait_with_output().unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(!out.status.success(), "{what}: the backup succeeded: {reply}");
    let message = reply["Outcome"]["Message"].as_str().unwrap_or_default();
    assert!(message.len() > 10, "{what}: no reason given: {reply}");
    d.ok(&["ping"]);
    let list = d.ok(&["list-backup", "primary"]);
    assert!(list["Backups"].as_array().unwrap().iter().all(|b| b["Valid"] != 1), "{what}: {list}");
    assert!(backup_dirs(d).is_empty(), "{what}: left behind: {:?}", backup_dirs(d));
}

fn terminate(source: &pgmoneta_testkit::Cluster, state: &str) {
    let n = source
        .query_scalar(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication WHERE state = '{state}'"
        ))
        .unwrap();
    assert_eq!(n, "1", "no walsender in state {state}");
}

#[test]
fn cut_connections_and_dying_servers_leave_no_wrong_backup_and_no_gap() {
    let mut source = cluster();
    source.pgbench_init(2).unwrap();
    let proxy = CutProxy::start(source.port());
    // 4 MB/s: each backup lasts long enough to be cut in the middle.
    let mut d = Daemon::new(&source, "max_rate = 4194304");
    let conf = std::fs::read_to_string(&d.conf).unwrap();
    let through = conf.replace(&format!("port = {}\n", source.port()), &format!("port = {}\n", proxy.port()));
    assert_ne!(conf, through);
    std::fs::write(&d.conf, through).unwrap();
    d.start();
    d.wait_streaming();

    // The backup's walsender terminated mid-transfer.
    let cli = start_backup(&d);
    terminate(&source, "backup");
    failed_cleanly(&d, cli, "walsender terminated");

    // The WAL walsender terminated: streaming comes back by itself, at once, and one such
    // interruption is no WAL problem.
    source.pgbench_run(2, 200).unwrap();
    terminate(&source, "streaming");
    d.wait_for("the interruption to be logged", || d.log_text().contains("WAL streaming interrupted"));
    d.wait_streaming();
    let status = d.server_status();
    assert!(status.get("WalProblem").is_none(), "an interruption reported as a problem: {status}");

    // Every connection cut mid-backup (the backup's and the stream's).
    let cli = start_backup(&d);
    proxy.cut();
    failed_cleanly(&d, cli, "connections cut");
    d.wait_streaming();

    // PostgreSQL stopped (fast) mid-backup, then started again.
    let cli = start_backup(&d);
    source.stop_with("fast").unwrap();
    failed_cleanly(&d, cli, "server stopped");
    source.start().unwrap();
    d.wait_streaming();

    // PostgreSQL crashed (immediate stop) mid-backup and mid-stream.
    source.pgbench_run(2, 200).unwrap();
    let cli = start_backup(&d);
    source.stop_with("immediate").unwrap();
    failed_cleanly(&d, cli, "server crashed");
    source.start().unwrap();
    d.wait_streaming();

    // No gap in the archive, and the next backup restores what the server has.
    source.pgbench_run(2, 200).unwrap();
    assert!(settled_archive(&d, &source) >= 2);
    d.edit_main("max_rate = 4194304", "max_rate = 0");
    d.kill9();
    d.start();
    d.wait_streaming();
    let label = d.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();
    let expected = source.query_scalar("SELECT sum(abalance) FROM pgbench_accounts").unwrap();
    let out = crate::shared_dir("pgmoneta-daemon-cuts-");
    d.ok(&["restore", "primary", &label, "current", out.path().to_str().unwrap()]);
    let data_dir = out.path().join(format!("primary-{label}"));
    let mut copy = crate::start_restored(&source, &data_dir);
    assert_eq!(copy.query_scalar("SELECT sum(abalance) FROM pgbench_accounts").unwrap(), expected);
    copy.stop().unwrap();
    assert!(proxy.accepted() >= 6, "the daemon did not go through the proxy");
}
