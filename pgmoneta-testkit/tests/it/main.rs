//! The harness against a real PostgreSQL server: whichever `PgInstall::discover` finds
//! (`PGMONETA_TEST_PG_BIN` selects another major).

use std::path::PathBuf;

use pgmoneta_core::PgVersion;
use pgmoneta_testkit::{Cluster, PgInstall};

fn postmaster_pid(cluster: &Cluster) -> i32 {
    let text = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).expect("postmaster.pid");
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Whether process `pid` still runs, allowing it a few seconds to finish exiting after its pid
/// file is gone (a zombie waiting to be reaped counts as gone).
fn alive(pid: i32) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return false,
            Ok(stat) if stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) => return false,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    true
}

#[test]
fn replication_role_logs_in_with_scram_over_tcp() {
    let mut cluster = Cluster::builder().replication_user("backup_repl", "s3cr3t 'quoted'").start().unwrap();
    let install = PgInstall::discover().unwrap();
    assert_eq!(cluster.version(), install.version());
    eprintln!("PostgreSQL {} in {}", cluster.install().version_string(), cluster.data_dir().display());

    // The role's password is stored as a SCRAM verifier, and TCP requires SCRAM.
    let stored = cluster.query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'backup_repl'").unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    assert_eq!(cluster.query_scalar("SHOW wal_level").unwrap(), "replica");
    assert_eq!(cluster.query_scalar("SHOW data_checksums").unwrap(), "on");

    let conninfo = cluster.tcp_conninfo("backup_repl", "s3cr3t 'quoted'", "replication=true");
    let out = cluster.psql_with(&conninfo, "IDENTIFY_SYSTEM").unwrap();
    let fields: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(fields.len(), 4, "{out}");
    let system_id = cluster.query_scalar("SELECT system_identifier FROM pg_control_system()").unwrap();
    assert_eq!(fields[0], system_id);
    assert_eq!(fields[1], "1", "timeline");
    let log = cluster.log();
    assert!(log.contains("connection authenticated: identity=\"backup_repl\" method=scram-sha-256"), "{log}");
    assert!(log.contains("replication connection authorized: user=backup_repl"), "{log}");

    let wrong = cluster.tcp_conninfo("backup_repl", "wrong", "replication=true");
    let err = cluster.psql_with(&wrong, "IDENTIFY_SYSTEM").unwrap_err().to_string();
    assert!(err.contains("password authentication failed for user \"backup_repl\""), "{err}");

    // A clean stop: pg_ctl waits, the postmaster is gone, the pid file removed.
    let pid = postmaster_pid(&cluster);
    cluster.stop().unwrap();
    assert!(!alive(pid));
    assert!(!cluster.data_dir().join("postmaster.pid").exists());
    assert!(cluster.log().contains("database system is shut down"));
}

#[test]
fn files_and_server_are_removed_on_drop_even_after_a_panic() {
    let (tx, rx) = std::sync::mpsc::channel::<(i32, PathBuf)>();
    let outcome = std::thread::spawn(move || {
        let cluster = Cluster::builder().start().unwrap();
        tx.send((postmaster_pid(&cluster), cluster.data_dir().to_owned())).unwrap();
        panic!("test failure while the cluster runs");
    })
    .join();
    assert!(outcome.is_err());
    let (pid, data_dir) = rx.recv().unwrap();
    assert!(!alive(pid), "postmaster {pid} still running");
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
}

#[test]
fn parallel_clusters_get_their_own_ports_and_directories() {
    let clusters: Vec<Cluster> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| Cluster::builder().start().unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, a) in clusters.iter().enumerate() {
        a.execute(&format!("CREATE TABLE marker AS SELECT {i} AS n")).unwrap();
        for b in &clusters[i + 1..] {
            assert_ne!(a.port(), b.port());
            assert_ne!(a.data_dir(), b.data_dir());
            assert_ne!(a.socket_dir(), b.socket_dir());
        }
    }
    for (i, c) in clusters.iter().enumerate() {
        assert_eq!(c.query_scalar("SELECT n FROM marker").unwrap(), i.to_string());
    }
}

#[test]
fn pgbench_load_restart_and_a_second_server_on_a_copied_directory() {
    let mut cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(1).unwrap();
    cluster.pgbench_run(2, 50).unwrap();
    assert_eq!(cluster.query_scalar("SELECT count(*) FROM pgbench_accounts").unwrap(), "100000");
    assert_eq!(cluster.query_scalar("SELECT count(*) FROM pgbench_history").unwrap(), "100");
    let segment = cluster.switch_wal().unwrap();
    assert_eq!(segment.len(), 24, "{segment}");

    let port = cluster.port();
    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.query_scalar("SELECT count(*) FROM pgbench_history").unwrap(), "100");
    let rows = cluster.query("SELECT aid, abalance FROM pgbench_accounts WHERE aid <= 2 ORDER BY aid").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], "1");

    // Copy the stopped cluster and start a second server on the copy, as a restore test does.
    cluster.stop().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let target = copy.path().join("restored");
    let status = std::process::Command::new("cp").arg("-a").arg(cluster.data_dir()).arg(&target).status().unwrap();
    assert!(status.success());
    let second = Cluster::start_on(cluster.install().clone(), &target, cluster.superuser_password()).unwrap();
    assert_ne!(second.port(), port);
    assert_eq!(second.query_scalar("SELECT count(*) FROM pgbench_history").unwrap(), "100");
    let conninfo = second.tcp_conninfo("postgres", cluster.superuser_password(), "");
    assert_eq!(second.psql_with(&conninfo, "SELECT 40 + 2").unwrap().trim(), "42");
    drop(second);
    assert!(target.join("PG_VERSION").exists(), "start_on must not remove a directory it did not create");
}

#[test]
fn wal_segment_size_and_version_specific_settings() {
    let cluster = Cluster::builder().wal_segment_size_mb(1).setting("work_mem", "'8MB'").start().unwrap();
    assert_eq!(cluster.query_scalar("SHOW wal_segment_size").unwrap(), "1MB");
    assert_eq!(cluster.query_scalar("SHOW work_mem").unwrap(), "8MB");
    if cluster.version() >= PgVersion::V17 {
        assert_eq!(cluster.query_scalar("SHOW summarize_wal").unwrap(), "on");
    }
    let err = cluster.query("SELECT * FROM missing_table").unwrap_err().to_string();
    assert!(err.contains("relation \"missing_table\" does not exist"), "{err}");
}

#[test]
fn clusters_of_a_crashed_test_process_are_cleaned_up() {
    const CHILD: &str = "PGMONETA_TESTKIT_CRASHING_CHILD";
    if std::env::var_os(CHILD).is_some() {
        // The child: start a cluster, report it, and die without running any destructor.
        let cluster = Cluster::builder().start().unwrap();
        println!("CLUSTER {} {}", postmaster_pid(&cluster), cluster.data_dir().display());
        std::process::abort();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "clusters_of_a_crashed_test_process_are_cleaned_up", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child must have aborted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CLUSTER ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child said {stdout}"));
    let (pid, dir) = line.split_once(' ').unwrap();
    let (pid, dir): (i32, PathBuf) = (pid.parse().unwrap(), dir.into());
    // Clusters started by other tests of this process may have swept it up already, which is the
    // same mechanism at work; either way it must be gone afterwards.
    pgmoneta_testkit::cleanup_stale().unwrap();
    assert!(!alive(pid), "postmaster {pid} of the crashed process still running");
    assert!(!dir.exists(), "{} still exists", dir.display());
}
