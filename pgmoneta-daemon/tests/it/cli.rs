//! Every CLI command against a running daemon, with the negative cases' upstream error codes.

use std::time::Duration;

use pgmoneta_core::Lsn;
use pgmoneta_testkit::Cluster;

use crate::{cluster, shared_dir, Daemon};

#[test]
fn commands_end_to_end() {
    let source = cluster();
    source.execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)").unwrap();
    let mut d = Daemon::new(&source, "");
    d.start();
    d.wait_streaming();

    // status and ping
    let status = d.ok(&["status"]);
    assert_eq!(status["NumberOfServers"], 1);
    let s = &status["Servers"][0];
    assert_eq!(s["Server"], "primary");
    assert_eq!(s["Online"], true);
    assert_eq!(s["Primary"], true);
    assert_eq!(s["NumberOfBackups"], 0);
    d.ok(&["ping"]);

    // backup, list-backup, info
    let b = d.ok(&["backup", "primary"]);
    let label = b["Backup"].as_str().unwrap().to_owned();
    assert_eq!(b["Valid"], 1);
    assert_eq!(b["Compression"], 18);
    assert_eq!(b["Encryption"], 1);
    assert_eq!(b["Incremental"], false);
    assert!(b["BackupSize"].as_u64().unwrap() > 0);
    let list = d.ok(&["list-backup", "primary"]);
    assert_eq!(list["NumberOfBackups"], 1);
    assert_eq!(list["Backups"][0]["Backup"], label.as_str());
    assert_eq!(list["Backups"][0]["Valid"], 1);
    let info = d.ok(&["info", "primary", "newest"]);
    assert_eq!(info["Backup"], label.as_str());
    assert_eq!(info["MajorVersion"], source.version().major());
    assert!(info["StartLoLSN"].as_u64().is_some());
    assert!(info["WAL"].as_str().unwrap().len() == 24);

    let details = d.ok(&["status", "details"]);
    assert_eq!(details["Servers"][0]["Backups"][0]["Backup"], label.as_str());
    assert_eq!(details["Servers"][0]["Backups"][0]["Valid"], 1);
    d.ok(&["clear", "prometheus"]);

    // annotate, retain, delete refused, expunge
    let a = d.ok(&["annotate", "primary", &label, "add", "purpose", "test"]);
    assert_eq!(a["Comments"], "purpose|test");
    d.fails(&["annotate", "primary", &label, "add", "purpose", "again"], 2503);
    d.fails(&["annotate", "primary", &label, "rename", "purpose"], 2506);
    let r = d.ok(&["retain", "primary", &label]);
    assert_eq!(r["Keep"], true);
    d.fails(&["delete", "primary", &label], 506);
    let e = d.ok(&["expunge", "primary", &label]);
    assert_eq!(e["Keep"], false);

    // verify
    let v = d.ok(&["verify", "primary", &label, "/tmp", "all"]);
    assert_eq!(v["Files"]["Failed"].as_array().unwrap().len(), 0);
    let all = v["Files"]["All"].as_array().unwrap();
    assert!(all.len() > 100);
    // Upstream's shape: manifest paths under the directory a restore would use.
    let pg_class = all.iter().find(|f| f["FileName"] == "global/pg_control").unwrap();
    assert_eq!(pg_class["Directory"], format!("/tmp/primary-{label}"));
    assert_eq!(pg_class["HashAlgorithm"], "SHA512");
    assert!(pg_class.get("Calculated").is_none());

    // point-in-time restore: rows 101..200 are in, rows 201..300 are not
    source.execute("INSERT INTO t SELECT generate_series(101, 200)").unwrap();
    let target: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    source.execute("INSERT INTO t SELECT generate_series(201, 300)").unwrap();
    source.switch_wal().unwrap();
    let end: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    d.wait_flushed(end);
    let out = shared_dir("pgmoneta-daemon-restore-");
    let position = format!("lsn={target},action=promote");
    let dir = out.path().to_str().unwrap();
    let restored = d.ok(&["restore", "primary", "newest", &position, dir]);
    assert_eq!(restored["Backup"], label.as_str());
    let data_dir = out.path().join(format!("primary-{label}"));
    let mut copy = Cluster::start_on(source.install().clone(), &data_dir, source.superuser_password()).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while copy.query_scalar("SELECT pg_is_in_recovery()").unwrap() == "t" {
        assert!(std::time::Instant::now() < until, "recovery did not end:\n{}", copy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(copy.query_scalar("SELECT count(*) FROM t").unwrap(), "200");
    copy.stop().unwrap();
    drop(copy);

    // archive
    let arch = shared_dir("pgmoneta-daemon-archive-");
    let ar = d.ok(&["archive", "primary", "newest", arch.path().to_str().unwrap()]);
    let file = ar["FileName"].as_str().unwrap();
    assert!(std::path::Path::new(file).is_file(), "{file}");
    assert!(file.ends_with(".tar.zstd.aes"), "{file}");

    // negative cases with upstream's codes
    let message = d.fails(&["backup", "nosuch"], 111);
    assert!(message.contains("nosuch"), "{message}");
    d.fails(&["list-backup", "nosuch"], 304);
    d.fails(&["list-backup", "primary", "--sort", "sideways"], 306);
    d.fails(&["info", "primary", "20000101000000"], 2200);
    d.fails(&["info", "nosuch", "newest"], 2201);
    d.fails(&["delete", "primary", "20000101000000"], 505);
    d.fails(&["restore", "primary", "20000101000000", "/tmp/pgmoneta-nothing"], 600);
    d.fails(&["decrypt", "/tmp/pgmoneta-no-such-file.aes"], 1400);
    d.fails(&["encrypt", "/tmp/pgmoneta-no-such-file"], 1500);
    d.fails(&["compress", "/tmp/pgmoneta-no-such-file"], 1700);
    d.fails(&["mode", "primary", "sideways"], 2805);
    d.fails(&["progress", "nosuch"], 3000);

    // encrypt/decrypt and compress/decompress through the daemon
    let scratch = tempfile::tempdir_in("/tmp").unwrap();
    let f = scratch.path().join("note.txt");
    std::fs::write(&f, b"some words for the round trip").unwrap();
    let enc = d.ok(&["encrypt", f.to_str().unwrap()]);
    let encrypted = enc["DestinationFile"].as_str().unwrap().to_owned();
    assert!(encrypted.ends_with(".aes") && !f.exists());
    d.ok(&["decrypt", &encrypted]);
    let comp = d.ok(&["compress", f.to_str().unwrap()]);
    let compressed = comp["DestinationFile"].as_str().unwrap().to_owned();
    assert!(compressed.ends_with(".zstd"), "{compressed}");
    d.ok(&["decompress", &compressed]);
    assert_eq!(std::fs::read(&f).unwrap(), b"some words for the round trip");

    // mode offline refuses backups with 110; online again
    assert_eq!(d.ok(&["mode", "primary", "offline"])["Online"], false);
    d.fails(&["backup", "primary"], 110);
    assert_eq!(d.ok(&["mode", "primary", "online"])["Online"], true);
    d.wait_streaming();

    // configuration
    let ls = d.ok(&["conf", "ls"]);
    assert_eq!(ls["main_configuration_path"], d.conf.display().to_string());
    let get = d.ok(&["conf", "get"]);
    assert_eq!(get["compression"]["string_value"], "zstd");
    assert_eq!(get["compression"]["value"], 18);
    assert_eq!(get["server"]["primary"]["wal_slot"], "pgmoneta");
    // Enumerations with upstream's codes, so that upstream's client translates them.
    assert_eq!(get["storage_engine"]["value"], 1);
    assert_eq!(get["storage_engine"]["string_value"], "local");
    assert_eq!(get["log_level"]["value"], 3);
    assert_eq!(get["log_level"]["string_value"], "info");
    assert_eq!(get["server"]["primary"]["create_slot"], 1);
    assert_eq!(get["server"]["primary"]["online"], true);
    let raw = d.cli_command(&["-F", "raw", "conf", "get", "server.primary.port"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&raw.stdout).trim(), source.port().to_string());
    let text = d.cli_command(&["-F", "text", "conf", "get", "server.primary.port"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&text.stdout).trim(), source.port().to_string());
    let set = d.ok(&["conf", "set", "log_level", "debug"]);
    assert_eq!(set["status"], "success");
    assert_eq!(set["restart_required"], false);
    let set = d.ok(&["conf", "set", "unix_socket_dir", "/var/run"]);
    assert_eq!(set["status"], "success_restart_required");
    assert_eq!(set["restart_required"], true);
    // Upstream answers 2707 for every refusal; the message tells them apart.
    let unknown_key = d.fails(&["conf", "set", "no_such_key", "1"], 2707);
    assert!(unknown_key.contains("no_such_key"), "{unknown_key}");
    let unknown_server = d.fails(&["conf", "set", "server.nosuch.port", "1"], 2707);
    assert!(unknown_server.contains("nosuch"), "{unknown_server}");
    d.fails(&["conf", "set", "workers", "many"], 2707);

    // text output is for people
    let text = d.cli_command(&["-F", "text", "list-backup", "primary"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("Backup") && text.contains(&label) && text.contains("zstd"), "{text}");
    let verbose = d.cli_command(&["-F", "text", "-v", "ping"]).output().unwrap();
    assert!(String::from_utf8_lossy(&verbose.stdout).contains("Success (0)"));

    // delete, then shutdown
    d.ok(&["delete", "primary", &label]);
    assert_eq!(d.ok(&["list-backup", "primary"])["NumberOfBackups"], 0);
    d.ok(&["shutdown"]);
    assert_eq!(d.wait_exit(Duration::from_secs(30)), 0);
    assert!(!d.socket().exists(), "the socket is removed at shutdown");
    assert!(!d.pidfile().exists(), "the pidfile is removed at shutdown");
}

/// Operator mistakes refused before anything is written: a restore or archive into a directory
/// already holding files (unless `--force`), a target before the backup's end, after the
/// archive's end, or on a timeline the archive does not know. The refusals name the reachable
/// range; the forced restore starts.
#[test]
fn operator_mistakes_are_refused_up_front() {
    let source = cluster();
    source.execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)").unwrap();
    let mut d = Daemon::new(&source, "");
    d.start();
    d.wait_streaming();
    let b = d.ok(&["backup", "primary"]);
    let label = b["Backup"].as_str().unwrap().to_owned();
    let info = d.ok(&["info", "primary", &label]);
    let end: Lsn =
        format!("{:X}/{:X}", info["EndHiLSN"].as_u64().unwrap(), info["EndLoLSN"].as_u64().unwrap()).parse().unwrap();
    source.execute("INSERT INTO t SELECT generate_series(101, 200)").unwrap();
    let target: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    source.execute("INSERT INTO t SELECT generate_series(201, 300)").unwrap();
    source.switch_wal().unwrap();
    let now: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    d.wait_flushed(now);

    let out = shared_dir("pgmoneta-daemon-refused-");
    let dir = out.path().to_str().unwrap();
    let data_dir = out.path().join(format!("primary-{label}"));
    // Someone's files where the restore would go.
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("precious.txt"), b"not a backup").unwrap();
    let message = d.fails(&["restore", "primary", &label, dir], 604);
    assert!(message.contains("already holds 1 entries") && message.contains("force"), "{message}");
    assert_eq!(std::fs::read(data_dir.join("precious.txt")).unwrap(), b"not a backup");
    let message = d.fails(&["archive", "primary", &label, dir], 903);
    assert!(message.contains("already holds"), "{message}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1, "the refused archive wrote something");
    assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 1);

    // Targets this backup cannot reach, into an empty directory that stays empty.
    let empty = shared_dir("pgmoneta-daemon-refused-");
    let edir = empty.path().to_str().unwrap();
    let before = Lsn(end.0 - 1);
    let message = d.fails(&["restore", "primary", &label, &format!("lsn={before}"), edir], 604);
    assert!(
        message.contains("before the end of backup") && message.contains(&format!("from {end} up to")),
        "{message}"
    );
    // `now` is where the server writes next: no record of the archive starts there.
    let message = d.fails(&["restore", "primary", &label, &format!("lsn={now}"), edir], 604);
    assert!(message.contains("not before the end of the archived WAL"), "{message}");
    let message = d.fails(&["restore", "primary", &label, "current,timeline=7", edir], 604);
    assert!(message.contains("timeline=7"), "{message}");
    // The newest backup for an LSN before every backup's end.
    let message = d.fails(&["restore", "primary", "newest", &format!("lsn={before}"), edir], 604);
    assert!(message.contains("before the end of every valid backup"), "{message}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "a refused restore wrote something");

    // Asked for explicitly, the restore replaces what is there, and PostgreSQL starts on it.
    let position = format!("lsn={target},action=promote");
    let out_json = d.cli_command(&["--force", "restore", "primary", &label, &position, dir]).output().unwrap();
    assert!(out_json.status.success(), "{}", String::from_utf8_lossy(&out_json.stdout));
    assert!(!data_dir.join("precious.txt").exists());
    assert_eq!(crate::incremental::count_after_recovery(&source, &data_dir), "200");
}
