//! Incremental backups through the daemon and the CLI: a chain, its listing and metrics, a
//! point-in-time restore from the newest incremental, a roll-up by deleting the middle.

use pgmoneta_core::Lsn;
use pgmoneta_testkit::Cluster;

use crate::{cluster, shared_dir, Daemon};

#[test]
fn a_chain_through_the_cli() {
    let source = cluster();
    source.execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)").unwrap();
    let mut d = Daemon::new(&source, "");
    d.start();
    d.wait_streaming();
    let full = d.ok(&["backup", "primary"]);
    let full_label = full["Backup"].as_str().unwrap().to_owned();
    if !source.version().has_incremental_backup() {
        // 14 to 16 read files through SQL: without the grants, the backup fails.
        let message = d.fails(&["backup", "primary", "newest"], 201);
        assert!(d.log_text().contains("GRANT EXECUTE ON FUNCTION pg_read_binary_file"), "{}", d.log_text());
        // The operator reads the same in the reply, and in the CLI's text output.
        assert!(message.contains("GRANT EXECUTE ON FUNCTION pg_read_binary_file"), "{message}");
        let out = d.cli_command(&["-F", "text", "backup", "primary", "newest"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("failed with error 201") && stderr.contains("GRANT EXECUTE ON FUNCTION"), "{stderr}");
        for f in pgmoneta_storage::sqlbackup::required_functions(source.version()) {
            source.execute(&format!("GRANT EXECUTE ON FUNCTION {f} TO \"{}\"", source.replication_user())).unwrap();
        }
    }
    source.execute("INSERT INTO t SELECT generate_series(101, 150)").unwrap();
    let i1 = d.ok(&["backup", "primary", "newest"]);
    assert_eq!(i1["Incremental"], true);
    assert_eq!(i1["IncrementalParent"], full_label.as_str());
    let i1_label = i1["Backup"].as_str().unwrap().to_owned();
    // One child per backup.
    d.fails(&["backup", "primary", &full_label], 105);
    d.fails(&["backup", "primary", "20000101000000"], 200);
    source.execute("INSERT INTO t SELECT generate_series(151, 200)").unwrap();
    let i2 = d.ok(&["backup", "primary", "newest"]);
    assert_eq!(i2["IncrementalParent"], i1_label.as_str());
    let i2_label = i2["Backup"].as_str().unwrap().to_owned();

    let list = d.ok(&["list-backup", "primary"]);
    let kinds: Vec<(bool, String)> = list["Backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["Incremental"].as_bool().unwrap(), b["IncrementalParent"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(kinds, vec![(false, String::new()), (true, full_label.clone()), (true, i1_label.clone())]);
    let info = d.ok(&["info", "primary", &i2_label]);
    assert_eq!(info["Incremental"], true);
    let metrics = metrics(d.metrics_port);
    assert!(
        metrics.contains(&format!(
            "pgmoneta_backup_incremental{{name=\"primary\",label=\"{i2_label}\",parent=\"{i1_label}\"}} 1"
        )),
        "{metrics}"
    );
    let v = d.ok(&["verify", "primary", &i2_label, "/tmp", "failed"]);
    assert_eq!(v["Files"]["Failed"].as_array().unwrap().len(), 0);

    // Point in time from the newest incremental: rows up to 250 of 300.
    source.execute("INSERT INTO t SELECT generate_series(201, 250)").unwrap();
    let target: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    source.execute("INSERT INTO t SELECT generate_series(251, 300)").unwrap();
    source.switch_wal().unwrap();
    let end: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    d.wait_flushed(end);
    let out = shared_dir("pgmoneta-daemon-incr-");
    let position = format!("lsn={target},action=promote");
    let restored = d.ok(&["restore", "primary", "newest", &position, out.path().to_str().unwrap()]);
    assert_eq!(restored["Backup"], i2_label.as_str());
    assert_eq!(count_after_recovery(&source, &out.path().join(format!("primary-{i2_label}"))), "250");

    // Deleting the middle rolls it into the newest, which then builds on the full backup.
    d.ok(&["delete", "primary", &i1_label]);
    let list = d.ok(&["list-backup", "primary"]);
    let left = list["Backups"].as_array().unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!(left[1]["Backup"], i2_label.as_str());
    assert_eq!(left[1]["IncrementalParent"], full_label.as_str());
    let out = shared_dir("pgmoneta-daemon-incr-");
    d.ok(&["restore", "primary", &i2_label, "current", out.path().to_str().unwrap()]);
    assert_eq!(count_after_recovery(&source, &out.path().join(format!("primary-{i2_label}"))), "200");
    // Deleting the root makes the newest a full backup.
    d.ok(&["delete", "primary", &full_label]);
    let list = d.ok(&["list-backup", "primary"]);
    assert_eq!(list["Backups"][0]["Incremental"], false);
    let v = d.ok(&["verify", "primary", &i2_label, "/tmp", "failed"]);
    assert_eq!(v["Files"]["Failed"].as_array().unwrap().len(), 0);
}

pub(crate) fn count_after_recovery(source: &Cluster, data_dir: &std::path::Path) -> String {
    let mut copy = crate::start_restored(source, data_dir);
    let n = copy.query_scalar("SELECT count(*) FROM t").unwrap();
    copy.stop().unwrap();
    n
}

pub(crate) fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}
