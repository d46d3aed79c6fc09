//! Crashes, signals, reloads and full disks: kill -9 while streaming and while backing up,
//! SIGTERM during a backup, SIGHUP, the repository's file system filling up.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgmoneta_core::{Lsn, WalSegmentSize};
use pgmoneta_crypto::MasterKeyFile;
use pgmoneta_storage::wal::{WalArchive, WalOptions};

use crate::{cluster, Daemon};

/// Switches WAL, waits until the daemon has flushed everything up to there and sealing has run,
/// then compares the archive with the server's segments (see [`compare_archive`]).
pub(crate) fn settled_archive(d: &Daemon, source: &pgmoneta_testkit::Cluster) -> usize {
    source.switch_wal().unwrap();
    let end: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    d.wait_flushed(end);
    // Sealing runs just after a segment completes.
    std::thread::sleep(Duration::from_secs(2));
    compare_archive(d, source)
}

/// Decrypts and decompresses every complete archived segment that the server still has, and
/// compares them; checks the archive has no gap.
pub(crate) fn compare_archive(d: &Daemon, source: &pgmoneta_testkit::Cluster) -> usize {
    let key = MasterKeyFile::new(d.home.join(".pgmoneta/master.key")).load().unwrap();
    let archive = WalArchive::open(
        d.base.join("primary/wal"),
        WalSegmentSize::DEFAULT,
        WalOptions::new(pgmoneta_compress::Algorithm::Zstd, 3),
    )
    .unwrap();
    let current = source.query_scalar("SELECT pg_walfile_name(pg_current_wal_lsn())").unwrap();
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.file_name)
        .filter(|n| n.len() >= 24 && !n.contains("partial") && !n.contains("history"))
        .map(|n| n[..24].to_owned())
        .collect();
    names.sort();
    names.dedup();
    let numbers: Vec<u64> = names
        .iter()
        .map(|n| u64::from_str_radix(&n[8..16], 16).unwrap() * 256 + u64::from_str_radix(&n[16..], 16).unwrap())
        .collect();
    for w in numbers.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap in the archive: {names:?}");
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for name in names.iter().filter(|n| n.as_str() < current.as_str()) {
        let server_copy = source.data_dir().join("pg_wal").join(name);
        let Ok(expected) = std::fs::read(&server_copy) else { continue };
        let out = scratch.path().join(name);
        archive.fetch(name, &out, Some(&key)).unwrap();
        assert!(std::fs::read(&out).unwrap() == expected, "archived {name} differs from the server's");
        compared += 1;
    }
    compared
}

#[test]
fn wal_streaming_survives_kill_9_without_a_gap() {
    let mut source = cluster();
    source.pgbench_init(1).unwrap();
    let mut d = Daemon::new(&source, "");
    // An extra copy of the WAL (the last section of the file is [primary]).
    let shipping = d.dir.path().join("shipping");
    let mut conf = std::fs::read_to_string(&d.conf).unwrap();
    conf.push_str(&format!("wal_shipping = {}\n", shipping.display()));
    std::fs::write(&d.conf, conf).unwrap();
    d.start();
    d.wait_streaming();
    source.pgbench_run(2, 500).unwrap();
    source.switch_wal().unwrap();
    source.pgbench_run(2, 500).unwrap();
    d.kill9();
    // Written while no daemon runs: the slot keeps it.
    source.pgbench_run(2, 500).unwrap();
    source.switch_wal().unwrap();
    d.start();
    d.wait_streaming();
    source.pgbench_run(2, 500).unwrap();
    source.switch_wal().unwrap();
    source.pgbench_run(2, 500).unwrap();
    let compared = settled_archive(&d, &source);
    assert!(compared >= 3, "only {compared} segments compared");
    // Every sealed segment has its identical copy in <wal_shipping>/primary/wal.
    let sealed: Vec<String> = std::fs::read_dir(d.base.join("primary/wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".aes"))
        .collect();
    assert!(sealed.len() >= 3);
    for name in &sealed {
        let original = std::fs::read(d.base.join("primary/wal").join(name)).unwrap();
        let copy = std::fs::read(shipping.join("primary/wal").join(name)).unwrap_or_default();
        assert!(original == copy, "the shipped copy of {name} differs or is missing");
    }
    assert!(d.log_text().contains("stale pidfile"), "the stale pidfile was not reported:\n{}", d.log_text());

    // PostgreSQL restarts under a running daemon: the supervisor reconnects and resumes.
    source.restart().unwrap();
    d.wait_streaming();
    source.pgbench_run(2, 500).unwrap();
    let again = settled_archive(&d, &source);
    assert!(again > compared, "no new segment compared after the restart ({again})");
}

pub(crate) fn wait_backup_running(d: &Daemon) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let p = d.ok(&["progress", "primary"]);
        if p["ProgressState"] == 1 && p["Done"].as_u64().unwrap_or(0) > 0 {
            return;
        }
        assert!(Instant::now() < until, "the backup never started:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn backup_dirs(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.base.join("primary/backup"))
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn interrupted_backups_leave_nothing_valid() {
    let source = cluster();
    source.pgbench_init(2).unwrap();
    // 1 MB/s makes the backup last long enough to interrupt it.
    let mut d = Daemon::new(&source, "max_rate = 1048576");
    d.start();
    d.wait_streaming();

    // kill -9 in the middle of a backup
    let mut cli = d.cli_command(&["backup", "primary"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_backup_running(&d);
    d.kill9();
    let status = cli.wait().unwrap();
    assert!(!status.success(), "the interrupted backup reported success");
    let left = backup_dirs(&d);
    assert_eq!(left.len(), 1, "the interrupted backup's directory: {left:?}");
    assert!(!d.base.join("primary/backup").join(&left[0]).join("backup.info").exists());
    d.start();
    assert!(backup_dirs(&d).is_empty(), "the interrupted backup was not cleaned up: {:?}", backup_dirs(&d));
    assert_eq!(d.ok(&["list-backup", "primary"])["NumberOfBackups"], 0);

    // SIGTERM in the middle of a backup: abandoned, removed, the daemon exits 0
    d.wait_streaming();
    let mut cli = d.cli_command(&["backup", "primary"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_backup_running(&d);
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(60)), 0);
    assert!(!cli.wait().unwrap().success());
    assert!(backup_dirs(&d).is_empty(), "an abandoned backup stayed: {:?}", backup_dirs(&d));

    // the next backup works
    d.edit_main("max_rate = 1048576", "max_rate = 0");
    d.start();
    d.wait_streaming();
    let b = d.ok(&["backup", "primary"]);
    assert_eq!(b["Valid"], 1);
    assert_eq!(d.ok(&["list-backup", "primary"])["NumberOfBackups"], 1);
    let v = d.ok(&["verify", "primary", "newest", "/tmp"]);
    assert_eq!(v["Files"]["Failed"].as_array().unwrap().len(), 0);
}

#[test]
fn sighup_reloads_what_can_change_and_keeps_the_rest() {
    let source = cluster();
    let mut d = Daemon::new(&source, "");
    d.start();
    d.edit_main("retention = 7", "retention = 3,2");
    d.edit_main("log_level = info", "log_level = debug");
    let old_base = d.base.display().to_string();
    d.edit_main(&format!("base_dir = {old_base}"), "base_dir = /tmp/pgmoneta-elsewhere");
    d.signal(Signal::SIGHUP);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let get = d.ok(&["conf", "get"]);
        if get["retention"] == "3,2,-,-" {
            assert_eq!(get["log_level"]["string_value"], "debug");
            assert_eq!(get["log_level"]["value"], 2);
            assert_eq!(get["base_dir"], old_base.as_str(), "base_dir needs a restart");
            break;
        }
        assert!(Instant::now() < until, "not reloaded: {get}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.log_text().contains("takes effect after a restart"));
    // conf reload reports the pending restart
    let r = d.ok(&["conf", "reload"]);
    assert_eq!(r["Restart"], true);
    // A broken file is refused as a whole.
    d.edit_main("retention = 3,2", "retention = 0");
    d.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.ok(&["conf", "get"])["retention"], "3,2,-,-");
    assert!(d.log_text().contains("reload failed"), "{}", d.log_text());
}

/// The repository's file system fills up while WAL streams: archiving stops and says why
/// (status, metric, log), a backup fails with the reason and leaves nothing valid; once space
/// is back, streaming resumes by itself from the end of the archive with no gap, and the next
/// backup restores.
#[test]
fn a_full_disk_stops_wal_archiving_until_space_returns() {
    let Some(small) = pgmoneta_testkit::SmallFs::mount(72, "WAL archiving on a full disk") else {
        return;
    };
    let source = cluster();
    source.execute("CREATE TABLE t (n int)").unwrap();
    let mut d = Daemon::new(&source, "");
    let base = small.path().join("backup");
    d.edit_main(&format!("base_dir = {}", d.base.display()), &format!("base_dir = {}", base.display()));
    d.base = base;
    d.start();
    d.wait_streaming();
    source.switch_wal().unwrap();
    let filler = small.fill();
    // More WAL than the segment being received holds: the next one cannot be preallocated.
    source.execute("INSERT INTO t SELECT generate_series(1, 100000)").unwrap();
    source.switch_wal().unwrap();
    source.execute("INSERT INTO t SELECT generate_series(100001, 200000)").unwrap();
    source.switch_wal().unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let problem = loop {
        let s = d.server_status();
        if let Some(p) = s["WalProblem"].as_str() {
            break p.to_owned();
        }
        assert!(Instant::now() < until, "no WAL problem reported: {s}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(problem.contains("No space left") && problem.contains(&d.base.display().to_string()), "{problem}");
    let m = crate::incremental::metrics(d.metrics_port);
    assert!(m.contains("pgmoneta_wal_out_of_space{name=\"primary\"} 1"), "{m}");
    assert!(m.contains("pgmoneta_wal_problem{name=\"primary\"} 1"), "{m}");
    assert!(d.log_text().contains("No space left on device"), "{}", d.log_text());
    // A backup now fails, saying why, and leaves nothing valid behind.
    let (code, reply) = d.cli(&["backup", "primary"]);
    assert_ne!(code, 0, "a backup on a full disk succeeded: {reply}");
    let message = reply["Outcome"]["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains("No space left") || message.contains("WAL is not streaming"),
        "the failure does not say why: {reply}"
    );
    let list = d.ok(&["list-backup", "primary"]);
    assert!(list["Backups"].as_array().unwrap().iter().all(|b| b["Valid"] != 1), "{list}");

    // Space comes back: nobody touches anything, streaming resumes and catches up.
    std::fs::remove_file(&filler).unwrap();
    d.wait_streaming();
    source.execute("INSERT INTO t SELECT generate_series(200001, 250000)").unwrap();
    let compared = settled_archive(&d, &source);
    assert!(compared >= 3, "only {compared} segments compared");
    let s = d.server_status();
    assert!(s.get("WalProblem").is_none(), "the problem is still reported: {s}");
    let m = crate::incremental::metrics(d.metrics_port);
    assert!(m.contains("pgmoneta_wal_problem{name=\"primary\"} 0"), "{m}");
    assert!(d.log_text().contains("WAL is archived again"), "{}", d.log_text());
    // The next backup restores, and PostgreSQL starts on it with every row.
    let label = d.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();
    let out = crate::shared_dir("pgmoneta-daemon-full-");
    d.ok(&["restore", "primary", &label, "current", out.path().to_str().unwrap()]);
    let rows = crate::incremental::count_after_recovery(&source, &out.path().join(format!("primary-{label}")));
    assert_eq!(rows, "250000");
    // An archive export into a full file system fails, says so, and leaves nothing there.
    let exports = small.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let filler = small.fill();
    let (code, reply) = d.cli(&["archive", "primary", &label, exports.to_str().unwrap()]);
    assert_ne!(code, 0, "an archive into a full file system succeeded: {reply}");
    let message = reply["Outcome"]["Message"].as_str().unwrap_or_default();
    assert!(message.contains("space") && message.contains(exports.to_str().unwrap()), "{reply}");
    assert_eq!(std::fs::read_dir(&exports).unwrap().count(), 0, "the failed archive left files");
    std::fs::remove_file(filler).unwrap();
}
