//! The WAL archive fed by streaming from a real server.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmoneta_compress::Algorithm;
use pgmoneta_core::{WalFileKind, WalSegmentSize};
use pgmoneta_crypto::{Cipher, MasterKey};
use pgmoneta_storage::wal::{stream_wal, StreamOptions, WalArchive, WalOptions};
use pgmoneta_testkit::Cluster;

use crate::replication;

const SEG: WalSegmentSize = WalSegmentSize::DEFAULT;

fn sealed_segments(archive: &WalArchive) -> Vec<String> {
    archive
        .entries()
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, WalFileKind::Segment(_)))
        .map(|e| e.file_name)
        .collect()
}

/// Streams until `stop_when` holds for the archive, then stops.
fn stream_until(cluster: &Cluster, archive: &WalArchive, stop_when: impl Fn(&WalArchive) -> bool, work: impl FnOnce()) {
    stream_until_with(cluster, replication(cluster), archive, stop_when, work)
}

fn stream_until_with(
    cluster: &Cluster,
    conn: pgmoneta_wire::PgConnection,
    archive: &WalArchive,
    stop_when: impl Fn(&WalArchive) -> bool,
    work: impl FnOnce(),
) {
    let options = StreamOptions::new(Some("pgmoneta"));
    let stop = options.stop.clone();
    let handle = {
        let archive = archive.clone();
        let mut conn = conn;
        let version = cluster.version();
        std::thread::spawn(move || stream_wal(&mut conn, &archive, version, &options))
    };
    work();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !stop_when(archive) {
        assert!(Instant::now() < deadline, "archive did not reach the expected state: {:?}", archive.entries());
        assert!(!handle.is_finished(), "streaming stopped: {:?}", handle.join());
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap().unwrap();
}

/// Segments arrive complete, compressed and encrypted once, byte for byte the server's; a
/// restart resumes where the archive ends, without a gap or a repeat.
#[test]
fn streamed_segments_equal_the_servers_and_streaming_resumes() {
    let cluster = Cluster::builder().setting("wal_keep_size", "2GB").start().unwrap();
    cluster.execute("SELECT pg_create_physical_replication_slot('pgmoneta', true)").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MasterKey::from_bytes([5; 64]));
    let mut options = WalOptions::new(Algorithm::Zstd, 3);
    options.encryption = Some((Cipher::Aes256Gcm, key.clone()));
    let archive = WalArchive::open(dir.path().join("wal"), SEG, options).unwrap();

    stream_until(
        &cluster,
        &archive,
        |a| sealed_segments(a).len() >= 3,
        || {
            cluster.pgbench_init(1).unwrap();
            for _ in 0..3 {
                cluster.execute("CREATE TABLE IF NOT EXISTS w(x int); INSERT INTO w VALUES (1)").unwrap();
                cluster.switch_wal().unwrap();
            }
        },
    );
    let first = sealed_segments(&archive);
    assert!(first.iter().all(|n| n.ends_with(".zstd.aes") && !n.contains(".zstd.zstd")), "{first:?}");

    // A second run resumes from the archive.
    let before = first.len();
    stream_until(
        &cluster,
        &archive,
        |a| sealed_segments(a).len() >= before + 2,
        || {
            for _ in 0..3 {
                cluster.execute("INSERT INTO w SELECT g FROM generate_series(1, 1000) g").unwrap();
                cluster.switch_wal().unwrap();
            }
        },
    );
    let all = sealed_segments(&archive);
    let numbers: Vec<u64> = all
        .iter()
        .map(|n| match WalFileKind::parse(&n[..24], SEG).unwrap() {
            WalFileKind::Segment(s) => s.number,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "gap or repeat in {all:?}");

    // Every archived segment is the server's file, byte for byte.
    let scratch = tempfile::tempdir().unwrap();
    for name in &all {
        let plain = &name[..24];
        let dest = scratch.path().join(plain);
        archive.fetch(plain, &dest, Some(&key)).unwrap();
        let ours = std::fs::read(&dest).unwrap();
        let theirs = std::fs::read(cluster.data_dir().join("pg_wal").join(plain)).unwrap();
        assert!(ours == theirs, "{plain} differs from the server's");
    }
    // Fetching what the archive does not have, or with a wrong key, fails and leaves nothing.
    let missing = scratch.path().join("missing");
    assert!(archive.fetch("0000000100000000000000FF", &missing, Some(&key)).is_err());
    let wrong = MasterKey::from_bytes([6; 64]);
    let err = archive.fetch(&all[0][..24], &missing, Some(&wrong)).unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert!(!missing.exists());
    // A damaged stored segment is an error naming it, never a segment with wrong bytes.
    let stored = archive.local_dir().unwrap().join(&all[1]);
    let mut bytes = std::fs::read(&stored).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&stored, &bytes).unwrap();
    let err = archive.fetch(&all[1][..24], &missing, Some(&key)).unwrap_err();
    assert!(err.to_string().contains(&all[1]), "{err}");
    assert!(!missing.exists());

    // The slot follows what was flushed.
    let slot: pgmoneta_core::Lsn = cluster
        .query_scalar("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgmoneta'")
        .unwrap()
        .parse()
        .unwrap();
    let last = WalFileKind::parse(&all.last().unwrap()[..24], SEG).unwrap();
    let WalFileKind::Segment(last) = last else { unreachable!() };
    assert!(
        slot >= last.next().start_lsn(SEG),
        "slot at {slot}, archive complete up to {}",
        last.next().start_lsn(SEG)
    );

    // Pruning keeps what the oldest backup needs.
    let keep = WalFileKind::parse(&all[2][..24], SEG).unwrap();
    let WalFileKind::Segment(keep) = keep else { unreachable!() };
    assert_eq!(archive.prune_before(keep).unwrap(), 2);
    assert_eq!(sealed_segments(&archive), all[2..]);
}

/// A hold keeps the slot where another copy of the archive still ends while the archive
/// itself goes on; a lease asks the server for a reply at every status update, so an idle
/// stream is still heard from.
#[test]
fn a_hold_keeps_the_slot_back_and_a_lease_keeps_the_server_talking() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.execute("SELECT pg_create_physical_replication_slot('pgmoneta', true)").unwrap();
    let hold: pgmoneta_core::Lsn = cluster.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = WalArchive::open(dir.path().join("wal"), SEG, WalOptions::new(Algorithm::Zstd, 1)).unwrap();
    let mut options = StreamOptions::new(Some("pgmoneta"));
    options.status_interval = Duration::from_millis(200);
    options.lease = Some(Duration::from_secs(5));
    options.hold.store(hold);
    let (stop, progress) = (options.stop.clone(), options.progress.clone());
    let handle = {
        let (archive, version) = (archive.clone(), cluster.version());
        let mut conn = replication(&cluster);
        std::thread::spawn(move || stream_wal(&mut conn, &archive, version, &options))
    };
    cluster.execute("CREATE TABLE w(x int)").unwrap();
    for _ in 0..3 {
        cluster.execute("INSERT INTO w SELECT g FROM generate_series(1, 1000) g").unwrap();
        cluster.switch_wal().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while sealed_segments(&archive).len() < 3 {
        assert!(Instant::now() < deadline, "archive did not grow: {:?}", archive.entries());
        assert!(!handle.is_finished(), "streaming stopped: {:?}", handle.join());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Idle now: without replies asked for, a server hears from us and says nothing for half
    // its wal_sender_timeout (30 s by default).
    std::thread::sleep(Duration::from_secs(2));
    let heard = progress.heard().expect("the stream started");
    assert!(heard.elapsed() < Duration::from_secs(1), "the server was last heard {:?} ago", heard.elapsed());
    let flushed = progress.flushed.load();
    assert!(flushed > hold, "the archive stopped at {flushed}");
    let slot: pgmoneta_core::Lsn = cluster
        .query_scalar("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgmoneta'")
        .unwrap()
        .parse()
        .unwrap();
    assert!(slot <= hold, "the slot moved to {slot}, past the hold at {hold} (archive at {flushed})");
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap().unwrap();
}

/// Streaming from a standby restored as a `replica` follows its promotion: the archive gains
/// the new timeline's history file and segments, and the old timeline's last segment stays
/// partial.
#[test]
fn streaming_follows_a_promotion_to_a_new_timeline() {
    use pgmoneta_compress::Compression;
    use pgmoneta_storage::backup::BackupOptions;
    use pgmoneta_storage::catalog::BackupSelector;
    use pgmoneta_storage::restore::{restore, RestoreOptions};
    use pgmoneta_storage::store::LocalStore;
    use std::os::unix::fs::PermissionsExt;

    let primary = Cluster::builder().setting("wal_keep_size", "1GB").start().unwrap();
    primary.execute("CREATE TABLE t(x int); INSERT INTO t VALUES (1)").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let mut opts = BackupOptions::new("primary", crate::label(700));
    opts.compression = Compression::client(Algorithm::Lz4);
    crate::backup(&primary, store.clone(), &opts);

    let root = tempfile::Builder::new().prefix("pgmoneta-standby-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut ropts = RestoreOptions::new("primary", BackupSelector::Newest, root.path());
    ropts.position = "replica".to_owned();
    ropts.primary_conninfo = Some(primary.tcp_conninfo(primary.replication_user(), primary.replication_password(), ""));
    let report = restore(store.as_ref(), &ropts).unwrap();
    assert!(report.data_dir.join("standby.signal").exists());
    let standby = Cluster::start_on(primary.install().clone(), &report.data_dir, primary.superuser_password()).unwrap();
    assert_eq!(standby.query_scalar("SELECT pg_is_in_recovery()").unwrap(), "t");
    standby.execute("SELECT pg_create_physical_replication_slot('pgmoneta', true)").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let archive = WalArchive::open(dir.path().join("wal"), SEG, WalOptions::new(Algorithm::Zstd, 1)).unwrap();
    let has = |a: &WalArchive, f: &dyn Fn(&WalFileKind) -> bool| a.entries().unwrap().iter().any(|e| f(&e.kind));
    stream_until_with(
        &standby,
        crate::replication_with(&standby, primary.replication_password()),
        &archive,
        |a| {
            has(a, &|k| matches!(k, WalFileKind::Segment(s) if s.timeline.0 == 2))
                && has(a, &|k| matches!(k, WalFileKind::History(t) if t.0 == 2))
        },
        || {
            // WAL on timeline 1, replayed by the standby and streamed from it.
            primary.execute("INSERT INTO t SELECT g FROM generate_series(1, 1000) g").unwrap();
            primary.switch_wal().unwrap();
            std::thread::sleep(Duration::from_secs(1));
            // Promotion starts timeline 2; new WAL there completes a segment.
            standby.execute("SELECT pg_promote()").unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while standby.query_scalar("SELECT pg_is_in_recovery()").unwrap() == "t" {
                assert!(Instant::now() < deadline, "the standby was not promoted");
                std::thread::sleep(Duration::from_millis(100));
            }
            standby.execute("INSERT INTO t SELECT g FROM generate_series(1, 1000) g").unwrap();
            standby.switch_wal().unwrap();
        },
    );
    let entries = archive.entries().unwrap();
    assert!(
        entries.iter().any(|e| matches!(e.kind, WalFileKind::Partial(s) if s.timeline.0 == 1)
            || matches!(e.kind, WalFileKind::Segment(s) if s.timeline.0 == 1)),
        "{entries:?}"
    );
    let history = std::fs::read_to_string(archive.local_dir().unwrap().join("00000002.history")).unwrap();
    assert!(history.starts_with("1\t"), "{history}");
}
