//! `kill -9` at each stage of a backup, a link step, a delete and a WAL segment's completion,
//! fired deterministically by the crash points of the test build (`PGMONETA_CRASH_POINT`).
//! After each restart: no valid partial backup, every valid backup verifies, an interrupted
//! delete is finished, the WAL archive has no gap, and the newest backup restores.

use std::time::Duration;

use pgmoneta_core::Lsn;

use crate::{cluster, Daemon};

/// Starts the daemon armed with `point`, runs `op` (which the crash cuts short), waits for the
/// crash, and starts it again unarmed.
fn crash(d: &mut Daemon, point: &str, op: impl FnOnce(&Daemon)) {
    d.env = vec![("PGMONETA_CRASH_POINT".into(), point.into())];
    d.start();
    d.wait_streaming();
    op(d);
    d.wait_killed(Duration::from_secs(120));
    d.env.clear();
    d.start();
    d.wait_streaming();
    assert!(d.log_text().contains("pgmoneta ready"), "{}", d.log_text());
}

/// The repository after a restart: only the `expected` backups, each valid and verified;
/// no directory without `backup.info` and no unfinished delete.
fn check(d: &Daemon, expected: &[&str], stage: &str) {
    let list = d.ok(&["list-backup", "primary"]);
    let labels: Vec<String> = list["Backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["Valid"], 1, "{stage}: a backup left not valid: {list}");
            b["Backup"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(labels, expected, "{stage}: {list}");
    for label in &labels {
        let v = d.ok(&["verify", "primary", label, "/tmp", "failed"]);
        assert_eq!(v["Files"]["Failed"].as_array().unwrap().len(), 0, "{stage}: {label} fails verify: {v}");
    }
    for e in std::fs::read_dir(d.base.join("primary/backup")).unwrap().flatten() {
        assert!(e.path().join("backup.info").exists(), "{stage}: {} was left behind", e.path().display());
        assert!(!e.path().join(".deleting").exists(), "{stage}: an unfinished delete of {}", e.path().display());
    }
}

fn backup(d: &Daemon) -> String {
    let b = d.ok(&["backup", "primary"]);
    assert_eq!(b["Valid"], 1);
    b["Backup"].as_str().unwrap().to_owned()
}

fn failing_backup(d: &Daemon) {
    let (code, reply) = d.cli(&["backup", "primary"]);
    assert_ne!(code, 0, "the backup survived its crash point: {reply}");
}

#[test]
fn kill_9_at_every_stage_leaves_a_repository_a_restart_recovers() {
    let source = cluster();
    source.pgbench_init(1).unwrap();
    let mut d = Daemon::new(&source, "");

    // A backup killed as its transfer starts, in the middle of it, once files are stored,
    // and after everything but backup.info.
    for point in ["backup:streaming@1", "backup:streaming@60", "backup:file-stored@300", "backup:before-info"] {
        crash(&mut d, point, failing_backup);
        check(&d, &[], point);
        d.kill9();
    }

    // A second backup killed while it links its unchanged files to the first.
    d.start();
    let first = backup(&d);
    d.kill9();
    source.pgbench_run(2, 200).unwrap();
    crash(&mut d, "backup:linking@5", failing_backup);
    check(&d, &[&first], "backup:linking");
    let second = backup(&d);
    d.kill9();

    // Deleting the first moves the files the second links to: killed during the moves, and
    // after them, the delete is finished at start-up and the second stays whole.
    crash(&mut d, "delete:moving@3", |d| {
        let _ = d.cli(&["delete", "primary", &first]);
    });
    check(&d, &[&second], "delete:moving");
    assert!(d.log_text().contains("finishing the interrupted delete"), "{}", d.log_text());
    source.pgbench_run(2, 200).unwrap();
    let third = backup(&d);
    d.kill9();
    crash(&mut d, "delete:before-remove", |d| {
        let _ = d.cli(&["delete", "primary", &second]);
    });
    check(&d, &[&third], "delete:before-remove");
    d.kill9();

    // A WAL segment completing: killed before and after its rename; streaming resumes with
    // no gap.
    for point in ["wal:before-rename", "wal:after-rename"] {
        crash(&mut d, point, |_| {
            source.pgbench_run(2, 200).unwrap();
            source.switch_wal().unwrap();
        });
        source.pgbench_run(2, 200).unwrap();
        assert!(crate::faults::settled_archive(&d, &source) >= 2, "{point}");
        d.kill9();
    }

    // After all that, the newest backup restores to the server's data as of a recent point.
    d.start();
    d.wait_streaming();
    let expected = source.query_scalar("SELECT sum(abalance) FROM pgbench_accounts").unwrap();
    let target: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    source.pgbench_run(1, 50).unwrap();
    source.switch_wal().unwrap();
    let end: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    d.wait_flushed(end);
    let out = crate::shared_dir("pgmoneta-daemon-crash-");
    d.ok(&["restore", "primary", &third, &format!("lsn={target},action=promote"), out.path().to_str().unwrap()]);
    let data_dir = out.path().join(format!("primary-{third}"));
    let mut copy = crate::start_restored(&source, &data_dir);
    assert_eq!(copy.query_scalar("SELECT sum(abalance) FROM pgbench_accounts").unwrap(), expected);
    copy.stop().unwrap();
}
