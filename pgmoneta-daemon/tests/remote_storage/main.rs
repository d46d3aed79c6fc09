//! The daemon with remote repositories: S3 on Garage and SFTP on OpenSSH, on loopback.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use pgmoneta_core::Lsn;
use pgmoneta_testkit::{Cluster, Garage, SshServer};

use common::{cluster, shared_dir, Daemon};

/// The objects under `prefix` in Garage, listed with the storage library.
fn remote_files(store: &dyn pgmoneta_storage::store::Store, dir: &str) -> Vec<String> {
    pgmoneta_storage::remote::walk(store, dir).unwrap().into_iter().map(|(p, _)| p).collect()
}

/// Backups go to the remote repository with `backup.info` last; without `local`, the data
/// files leave the local repository and list, info, verify and a point-in-time restore work
/// through the remote copy; WAL files are shipped as they complete; annotate reaches the
/// remote `backup.info`; delete removes the remote objects.
fn remote_only(engines: &str, settings: &str, env: Vec<(String, String)>, remote: &dyn pgmoneta_storage::store::Store) {
    let source = cluster();
    source.execute("CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 100)").unwrap();
    let mut d = Daemon::new(&source, &format!("storage_engine = {engines}\n{settings}"));
    d.env = env;
    d.start();
    d.wait_streaming();

    let b = d.ok(&["backup", "primary"]);
    let label = b["Backup"].as_str().unwrap().to_owned();
    let dir = format!("primary/backup/{label}");
    let files = remote_files(remote, &dir);
    assert!(files.len() > 500, "{} remote files", files.len());
    assert!(files.contains(&format!("{dir}/backup.info")));
    assert!(!d.base.join(&dir).join("data").exists(), "local data files are removed");
    assert!(d.base.join(&dir).join("backup.info").exists());
    let info = d.ok(&["info", "primary", &label]);
    assert_eq!(info["Valid"], 1);
    let v = d.ok(&["verify", "primary", &label, "/tmp", "failed"]);
    assert_eq!(v["Files"]["Failed"].as_array().unwrap().len(), 0);

    // WAL is shipped as it completes.
    source.execute("INSERT INTO t SELECT generate_series(101, 200)").unwrap();
    let target: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    source.execute("INSERT INTO t SELECT generate_series(201, 300)").unwrap();
    let segment = source.query_scalar("SELECT pg_walfile_name(pg_current_wal_lsn())").unwrap();
    source.switch_wal().unwrap();
    let end: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    d.wait_flushed(end);
    let until = Instant::now() + Duration::from_secs(60);
    while !remote_files(remote, "primary/wal").iter().any(|f| f.contains(&segment) && !f.ends_with(".partial")) {
        assert!(Instant::now() < until, "segment {segment} not shipped: {:?}", remote_files(remote, "primary/wal"));
        std::thread::sleep(Duration::from_millis(500));
    }

    // Point-in-time restore of the remote-only backup.
    let out = shared_dir("pgmoneta-daemon-remote-restore-");
    let position = format!("lsn={target},action=promote");
    d.ok(&["restore", "primary", &label, &position, out.path().to_str().unwrap()]);
    let data_dir = out.path().join(format!("primary-{label}"));
    let mut copy = Cluster::start_on(source.install().clone(), &data_dir, source.superuser_password()).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while copy.query_scalar("SELECT pg_is_in_recovery()").unwrap() == "t" {
        assert!(Instant::now() < until, "recovery did not end:\n{}", copy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(copy.query_scalar("SELECT count(*) FROM t").unwrap(), "200");
    copy.stop().unwrap();
    drop(copy);

    // `s3 ls` and `s3 restore` work on the remote repository alone.
    let ls = d.ok(&["s3", "ls", "primary", &label]);
    let keys: Vec<&str> = ls["S3Objects"].as_array().unwrap().iter().map(|o| o["S3Key"].as_str().unwrap()).collect();
    assert!(keys.contains(&format!("{dir}/backup.info").as_str()), "{keys:?}");
    assert_eq!(keys.len(), remote_files(remote, &dir).len());
    let out = shared_dir("pgmoneta-daemon-s3-restore-");
    let r = d.ok(&["s3", "restore", "primary", &label, out.path().to_str().unwrap()]);
    assert_eq!(r["Backup"], label.as_str());
    let data_dir = out.path().join(format!("primary-{label}"));
    let copy = Cluster::start_on(source.install().clone(), &data_dir, source.superuser_password()).unwrap();
    assert_eq!(copy.query_scalar("SELECT count(*) FROM t").unwrap(), "100");
    drop(copy);

    // Annotations reach the remote backup.info.
    d.ok(&["annotate", "primary", &label, "add", "where", "offsite"]);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut remote.open(&format!("{dir}/backup.info")).unwrap(), &mut text).unwrap();
    assert!(text.contains("where|offsite"), "{text}");
    // So does backup.sha512, which records the new backup.info's checksum.
    let mut sums = String::new();
    std::io::Read::read_to_string(&mut remote.open(&format!("{dir}/backup.sha512")).unwrap(), &mut sums).unwrap();
    let digest = pgmoneta_crypto::digest_hex(pgmoneta_crypto::HashAlgorithm::Sha512, text.as_bytes());
    assert!(sums.contains(&digest), "the remote backup.sha512 lacks the new backup.info's checksum:\n{sums}");

    d.ok(&["delete", "primary", &label]);
    assert!(remote_files(remote, &dir).is_empty(), "remote objects of a deleted backup are removed");
    assert_eq!(d.ok(&["list-backup", "primary"])["NumberOfBackups"], 0);
}

/// The daemon's settings for `garage` (`s3_base_dir` = `base`), and the same repository opened
/// with the storage library, to look at what the daemon wrote.
fn garage_repository(garage: &Garage, base: &str, retry: &str) -> (String, pgmoneta_storage::remote::Remote) {
    let (settings, remote) = garage_repository_without_keys(garage, base, retry);
    let keys = format!("s3_access_key_id = {}\ns3_secret_access_key = {}\n", garage.key_id, garage.secret);
    (keys + &settings, remote)
}

/// As [`garage_repository`], without the access keys: they are for the environment.
fn garage_repository_without_keys(
    garage: &Garage,
    base: &str,
    retry: &str,
) -> (String, pgmoneta_storage::remote::Remote) {
    let settings = format!(
        "s3_region = {}\ns3_bucket = {}\ns3_base_dir = {base}\n\
         s3_endpoint = 127.0.0.1\ns3_port = {}\ns3_use_tls = off\nremote_retry_timeout = {retry}",
        garage.region(),
        garage.bucket,
        garage.port()
    );
    let spec = pgmoneta_storage::remote::RemoteSpec::S3(pgmoneta_storage::remote::S3Options {
        bucket: garage.bucket.clone(),
        region: garage.region().into(),
        access_key_id: Some(garage.key_id.clone()),
        secret_access_key: Some(garage.secret.clone()),
        base_dir: base.into(),
        endpoint: Some(garage.endpoint()),
        ..Default::default()
    });
    (settings, pgmoneta_storage::remote::open(&spec, &Default::default()).unwrap())
}

/// The access keys come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`),
/// as on a machine with credentials of its own; the configuration names none.
#[test]
fn s3_without_local_storage() {
    let garage = Garage::start("pgmoneta").unwrap();
    let (settings, remote) = garage_repository_without_keys(&garage, "repo", "10s");
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), garage.key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), garage.secret.clone()),
    ];
    remote_only("s3", &settings, env, remote.store.as_ref());
}

#[test]
fn sftp_without_local_storage() {
    let server = SshServer::start().unwrap();
    let settings = format!(
        "ssh_hostname = 127.0.0.1\nssh_port = {}\nssh_username = {}\nssh_base_dir = {}\n\
         ssh_private_key_file = {}\nssh_public_key_file = {}",
        server.port(),
        server.user,
        server.scratch().display(),
        server.private_key().display(),
        server.public_key().display()
    );
    let local = pgmoneta_storage::store::LocalStore::new(server.scratch());
    remote_only("ssh", &settings, Vec::new(), &local);
}

/// With `local,s3`, the local copy stays whole and the remote one is complete too. A backup
/// whose upload fails (the S3 server is down) is reported failed but stays valid locally, the
/// partial remote copy is removed, and the upload is done again once the server is back; the
/// next backup succeeds.
#[test]
fn s3_with_local_storage_and_a_failed_upload() {
    let mut garage = Garage::start("pgmoneta").unwrap();
    let source = cluster();
    let (settings, remote) = garage_repository(&garage, "repo", "2s");
    let mut d = Daemon::new(&source, &format!("storage_engine = local,s3\n{settings}"));
    d.start();
    d.wait_streaming();
    let label = d.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();
    assert!(d.base.join(format!("primary/backup/{label}/data/global")).is_dir());
    let info = |l: &str| format!("primary/backup/{l}/backup.info");
    assert!(remote.store.exists(&info(&label)));

    garage.stop();
    let (code, out) = d.cli(&["backup", "primary"]);
    assert_ne!(code, 0, "{out}");
    assert!(d.log_text().contains("upload to s3 storage"), "the log names the failed upload");
    let list = d.ok(&["list-backup", "primary"]);
    assert_eq!(list["NumberOfBackups"], 2, "the backup stays valid locally: {list}");
    let failed = list["Backups"][1]["Backup"].as_str().unwrap().to_owned();
    assert_eq!(list["Backups"][1]["Valid"], 1);
    assert!(d.base.join(format!("primary/backup/{failed}/data/global")).is_dir());
    // What waits is in status and the metrics.
    assert_eq!(d.server_status()["PendingUploads"], serde_json::json!([failed.clone()]));

    garage.start_again().unwrap();
    let next = d.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();
    assert!(remote.store.exists(&info(&next)));
    // The pending upload is tried again within a minute or so.
    let until = Instant::now() + Duration::from_secs(150);
    while !remote.store.exists(&info(&failed)) {
        assert!(Instant::now() < until, "backup {failed} was not uploaded again:\n{}", d.log_text());
        std::thread::sleep(Duration::from_secs(1));
    }
    let files = remote_files(remote.store.as_ref(), &format!("primary/backup/{failed}"));
    assert!(files.len() > 500, "{} files", files.len());
    let until = Instant::now() + Duration::from_secs(30);
    while d.server_status().get("PendingUploads").is_some() {
        assert!(Instant::now() < until, "the upload still shows as pending: {}", d.server_status());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kill -9` in the middle of a backup's upload (the crash point `upload:file`): after the
/// restart the backup is valid locally and listed as pending, the half-uploaded remote copy is
/// never taken as a backup (no `backup.info` there), and the upload is done again, whole.
#[test]
fn an_upload_killed_half_way_is_done_again_after_the_restart() {
    let garage = Garage::start("pgmoneta").unwrap();
    let source = cluster();
    let (settings, remote) = garage_repository(&garage, "killed", "2s");
    let mut d = Daemon::new(&source, &format!("storage_engine = local,s3\n{settings}"));
    d.env = vec![("PGMONETA_CRASH_POINT".into(), "upload:file@100".into())];
    d.start();
    d.wait_streaming();
    let (code, _) = d.cli(&["backup", "primary"]);
    assert_ne!(code, 0);
    d.wait_killed(Duration::from_secs(120));
    let label = d.base.join("primary/backup").read_dir().unwrap().flatten().next().unwrap().file_name();
    let label = label.to_string_lossy().into_owned();
    let info = format!("primary/backup/{label}/backup.info");
    assert!(d.base.join(&info).exists(), "the backup is not complete locally");
    assert!(!remote.store.exists(&info), "a half-uploaded copy has a backup.info");
    d.env.clear();
    d.start();
    d.wait_streaming();
    let list = d.ok(&["list-backup", "primary"]);
    assert_eq!(list["Backups"][0]["Valid"], 1, "{list}");
    let until = Instant::now() + Duration::from_secs(150);
    while !remote.store.exists(&info) {
        assert!(Instant::now() < until, "backup {label} was not uploaded again:\n{}", d.log_text());
        std::thread::sleep(Duration::from_secs(1));
    }
    let local_files = walk_local(&d.base.join(format!("primary/backup/{label}")));
    let files = remote_files(remote.store.as_ref(), &format!("primary/backup/{label}"));
    assert_eq!(files.len(), local_files, "the remote copy is not whole");
    let until = Instant::now() + Duration::from_secs(30);
    while d.server_status().get("PendingUploads").is_some() {
        assert!(Instant::now() < until, "still pending: {}", d.server_status());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Files (and links, which are uploaded as files) under `dir`.
fn walk_local(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            n += walk_local(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

/// Runs a backup with `storage_engine = local,<engine>`, calls `interrupt` once the upload has
/// begun (some of the backup's objects are in the remote repository), then `resume`: the
/// backup stays valid locally, is listed as pending, and ends up whole in the remote
/// repository without anyone's help.
fn upload_interrupted(
    engine: &str,
    settings: &str,
    remote: &dyn pgmoneta_storage::store::Store,
    interrupt: impl FnOnce(),
    resume: impl FnOnce(),
) {
    let source = cluster();
    source.pgbench_init(1).unwrap();
    let mut d = Daemon::new(&source, &format!("storage_engine = local,{engine}\n{settings}"));
    d.start();
    d.wait_streaming();
    let cli = d.cli_command(&["backup", "primary"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while pgmoneta_storage::remote::walk(remote, "primary/backup").map(|f| f.len()).unwrap_or(0) < 20 {
        assert!(Instant::now() < until, "the upload never began:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    interrupt();
    let out = cli.wait_with_output().unwrap();
    let list = d.ok(&["list-backup", "primary"]);
    let label = list["Backups"][0]["Backup"].as_str().unwrap().to_owned();
    assert_eq!(list["Backups"][0]["Valid"], 1, "the backup is not valid locally: {list}");
    let info = format!("primary/backup/{label}/backup.info");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(!out.status.success(), "the backup reported success with its upload cut: {reply}");
    assert!(reply["Outcome"]["Message"].as_str().unwrap_or_default().contains(engine), "{reply}");
    assert!(!remote.exists(&info), "a failed upload left a backup.info");
    assert_eq!(d.server_status()["PendingUploads"], serde_json::json!([label.clone()]));
    resume();
    let until = Instant::now() + Duration::from_secs(150);
    while !remote.exists(&info) || d.server_status().get("PendingUploads").is_some() {
        assert!(Instant::now() < until, "backup {label} was not uploaded again:\n{}", d.log_text());
        std::thread::sleep(Duration::from_secs(1));
    }
    let local_files = walk_local(&d.base.join(format!("primary/backup/{label}")));
    assert_eq!(remote_files(remote, &format!("primary/backup/{label}")).len(), local_files, "not whole");
}

#[test]
fn s3_down_in_the_middle_of_an_upload() {
    let garage = std::sync::Arc::new(std::sync::Mutex::new(Garage::start("pgmoneta").unwrap()));
    let (settings, remote) = garage_repository(&garage.lock().unwrap(), "middle", "2s");
    let (g1, g2) = (garage.clone(), garage.clone());
    upload_interrupted(
        "s3",
        &settings,
        remote.store.as_ref(),
        move || g1.lock().unwrap().stop(),
        move || g2.lock().unwrap().start_again().unwrap(),
    );
}

/// The SFTP server restarted during an upload: every connection to it dropped, and refused
/// for a few seconds (a loopback proxy in front of sshd).
#[test]
fn sftp_restarted_in_the_middle_of_an_upload() {
    let server = SshServer::start().unwrap();
    let proxy = std::sync::Arc::new(pgmoneta_testkit::CutProxy::start(server.port()));
    let settings = format!(
        "ssh_hostname = 127.0.0.1\nssh_port = {}\nssh_username = {}\nssh_base_dir = {}\n\
         ssh_private_key_file = {}\nssh_public_key_file = {}\nremote_retry_timeout = 2s",
        proxy.port(),
        server.user,
        server.scratch().display(),
        server.private_key().display(),
        server.public_key().display()
    );
    let remote = pgmoneta_storage::store::LocalStore::new(server.scratch());
    let (p1, p2) = (proxy.clone(), proxy.clone());
    upload_interrupted(
        "ssh",
        &settings,
        &remote,
        move || {
            p1.refuse(true);
            p1.cut();
            std::thread::sleep(Duration::from_secs(3));
        },
        move || p2.refuse(false),
    );
}

/// Two cluster nodes on one bucket: both see the backups, only the active node writes there.
/// The follower's key may only read the bucket, so any write of its own would fail and be in
/// its log; none is.
#[test]
fn two_cluster_nodes_share_a_bucket_and_only_the_active_one_writes_to_it() {
    let garage = Garage::start("pgmoneta").unwrap();
    let source = cluster();
    let (settings, remote) = garage_repository_without_keys(&garage, "shared", "2s");
    let (ro_id, ro_secret) = garage.read_only_key("pgmoneta-follower").unwrap();
    // The read-only key cannot write: what follows shows the follower does not try.
    let spec = pgmoneta_storage::remote::RemoteSpec::S3(pgmoneta_storage::remote::S3Options {
        bucket: garage.bucket.clone(),
        region: garage.region().into(),
        access_key_id: Some(ro_id.clone()),
        secret_access_key: Some(ro_secret.clone()),
        base_dir: "shared".into(),
        endpoint: Some(garage.endpoint()),
        ..Default::default()
    });
    let read_only = pgmoneta_storage::remote::open(&spec, &Default::default()).unwrap();
    assert!(read_only.store.write("probe", b"x").is_err(), "the follower's key can write");

    let certs = tempfile::tempdir_in("/tmp").unwrap();
    let ca = pgmoneta_testkit::TestCa::new("pgmoneta shared bucket test CA").unwrap();
    let (pa, pb) = (common::free_port(), common::free_port());
    let keys = |id: &str, secret: &str| format!("s3_access_key_id = {id}\ns3_secret_access_key = {secret}\n");
    let lines = |name: &str, port: u16, peer: &str, keys: String| {
        format!(
            "{}storage_engine = local,s3\n{keys}{settings}\n",
            common::node_lines(certs.path(), &ca, name, port, peer)
        )
    };
    let mut a =
        Daemon::new(&source, &lines("a", pa, &format!("b=127.0.0.1:{pb}"), keys(&garage.key_id, &garage.secret)));
    let mut b = Daemon::new(&source, &lines("b", pb, &format!("a=127.0.0.1:{pa}"), keys(&ro_id, &ro_secret)));
    common::share_keys(&a, &b);
    let role = |d: &Daemon| d.ok(&["cluster", "status"])["Servers"][0]["Role"].as_str().unwrap_or_default().to_owned();
    a.start();
    a.wait_for("a, alone, becomes active", || role(&a) == "active");
    b.start();
    b.wait_for("b follows a", || role(&b) == "follower");

    // A backup asked of b is taken by a and uploaded by a; b holds its copy.
    source.execute("CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 100)").unwrap();
    let label = b.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();
    let info = format!("primary/backup/{label}/backup.info");
    assert!(remote.store.exists(&info), "the active node uploaded the backup");
    b.wait_for("b holds the backup", || b.ok(&["list-backup", "primary"])["Backups"].to_string().contains(&label));
    // WAL reaches the bucket (from a) and b (from a).
    source.execute("INSERT INTO t SELECT generate_series(101, 200)").unwrap();
    let segment = source.switch_wal().unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while !remote_files(remote.store.as_ref(), "primary/wal").iter().any(|f| f.contains(&segment)) {
        assert!(Instant::now() < until, "segment {segment} not shipped");
        std::thread::sleep(Duration::from_millis(500));
    }
    b.wait_for("b holds the segment", || {
        std::fs::read_dir(b.base.join("primary/wal")).unwrap().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&segment) && !n.ends_with(".partial")
        })
    });
    // A delete asked of b: a removes the remote copy, b its local one.
    b.ok(&["delete", "primary", &label]);
    assert!(!remote.store.exists(&info), "the remote copy stays");
    b.wait_for("b's copy is deleted", || !b.base.join(format!("primary/backup/{label}")).exists());

    let log = b.log_text();
    let writes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .filter(|l| ["s3 ", "s3:", "upload", "ship", "Forbidden", "AccessDenied"].iter().any(|w| l.contains(w)))
        .collect();
    assert!(writes.is_empty(), "the follower tried to write to the bucket:\n{}", writes.join("\n"));
}
