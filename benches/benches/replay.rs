//! Recovery at the speed of replay: a backup restored and replayed through at least 100 archived
//! segments, with the WAL fed by `cp` from a directory of plain segments (the reference) and by
//! `pgmoneta-cli archive-get` from the encrypted, compressed archive, with prefetch and without.
//! Tools alternate within each round; the timer runs from PostgreSQL's start on the restored
//! directory until recovery ends.
//!
//! `cargo build --release -p pgmoneta-cli && cargo bench -p pgmoneta-benches --bench replay`
//! (`PGMONETA_BENCH_SEGMENTS`, 100 by default; `PGMONETA_BENCH_ROUNDS`, 3). Prints a Markdown
//! table; exits non-zero when prefetched `archive-get` is slower than 1.2x `cp`.
#![allow(missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_core::{BackupLabel, CivilDateTime, Lsn, TimelineId, WalFileKind, WalSegment, WalSegmentSize};
use pgmoneta_crypto::{Cipher, MasterKeyFile};
use pgmoneta_storage::backup::{take_backup, BackupOptions};
use pgmoneta_storage::catalog::BackupSelector;
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::store::LocalStore;
use pgmoneta_storage::wal::{stream_wal, StreamOptions, WalArchive, WalOptions};
use pgmoneta_testkit::Cluster;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

const SEG: WalSegmentSize = WalSegmentSize::DEFAULT;

fn replication(cluster: &Cluster) -> PgConnection {
    let opts = ConnectOptions::new(cluster.host(), cluster.port(), cluster.replication_user())
        .password(cluster.replication_password())
        .replication(ReplicationMode::Physical)
        .ssl_mode(SslMode::Disable);
    PgConnection::connect(&opts).unwrap()
}

fn chown_postgres(path: &Path) {
    if nix::unistd::geteuid().is_root() {
        let ok = std::process::Command::new("chown").arg("-R").arg("postgres:postgres").arg(path).status().unwrap();
        assert!(ok.success());
    }
}

fn current_lsn(cluster: &Cluster) -> Lsn {
    cluster.query_scalar("SELECT pg_current_wal_insert_lsn()").unwrap().parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let segments: u64 = std::env::var("PGMONETA_BENCH_SEGMENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let rounds: usize = std::env::var("PGMONETA_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let exe = std::env::current_exe().unwrap();
    let cli = exe.parent().and_then(Path::parent).map(|d| d.join("pgmoneta-cli")).unwrap();
    assert!(cli.exists(), "{} is missing: run `cargo build --release -p pgmoneta-cli` first", cli.display());

    let cluster = Cluster::builder().setting("max_wal_size", "4GB").setting("wal_keep_size", "4GB").start().unwrap();
    cluster.execute("SELECT pg_create_physical_replication_slot('pgmoneta', true)").unwrap();
    cluster.pgbench_init(10).unwrap();

    let top = tempfile::Builder::new().prefix("pgmoneta-replay-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = top.path().join("repo");
    let key_file = MasterKeyFile::new(top.path().join("keys/master.key"));
    key_file.create("a master key for the replay bench").unwrap();
    let key = Arc::new(key_file.load().unwrap());
    let conf = top.path().join("pgmoneta.conf");
    std::fs::write(
        &conf,
        format!(
            "[pgmoneta]\nhost = localhost\nmetrics = 0\nbase_dir = {}\nunix_socket_dir = /tmp\ncompression = zstd\nencryption = aes-256-gcm\n\n[primary]\nhost = 127.0.0.1\nport = {}\nuser = repl\nwal_slot = pgmoneta\n",
            base.display(),
            cluster.port()
        ),
    )
    .unwrap();

    // The archive as the daemon keeps it: zstd, AES-256-GCM.
    let mut wal_options = WalOptions::new(Algorithm::Zstd, 3);
    wal_options.encryption = Some((Cipher::Aes256Gcm, key.clone()));
    let archive = WalArchive::open(base.join("primary/wal"), SEG, wal_options).unwrap();
    let stream = StreamOptions::new(Some("pgmoneta"));
    let stop = stream.stop.clone();
    let receiver = {
        let archive = archive.clone();
        let mut conn = replication(&cluster);
        let version = cluster.version();
        std::thread::spawn(move || stream_wal(&mut conn, &archive, version, &stream))
    };
    let store = Arc::new(LocalStore::new(&base));
    let mut options =
        BackupOptions::new("primary", BackupLabel::new(CivilDateTime::new(2026, 12, 7, 12, 0, 0).unwrap()));
    options.compression = Compression::client(Algorithm::Zstd);
    options.workers = 2;
    options.encryption = Some((Cipher::Aes256Gcm, key.clone()));
    let minor = cluster.query_scalar("SHOW server_version_num").unwrap().parse::<u32>().unwrap() % 10000;
    let info = take_backup(&mut replication(&cluster), cluster.version(), minor, store.clone(), &options).unwrap();

    // The WAL receiver's flush lag under pgbench's simple-update load, 4 clients: how far the
    // position the receiver reports flushed trails the server's.
    let lag_seconds = 20;
    let lags = std::thread::scope(|scope| {
        let load = scope.spawn(|| cluster.pgbench_for(4, lag_seconds, &["-N"]));
        let mut lags = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(u64::from(lag_seconds)) {
            let lag = cluster
                .query_scalar("SELECT coalesce(max(pg_current_wal_lsn() - flush_lsn), 0) FROM pg_stat_replication")
                .unwrap();
            lags.push(lag.parse::<f64>().unwrap() / 1048576.0);
            std::thread::sleep(Duration::from_millis(100));
        }
        load.join().unwrap().unwrap();
        lags
    });
    let lag_max = lags.iter().copied().fold(0.0, f64::max);

    // Updates of every account until the WAL since the backup spans the segments asked for.
    let goal = info.end_lsn.0 + segments * SEG.bytes();
    let mut k = 0;
    while current_lsn(&cluster).0 < goal {
        cluster
            .execute(&format!("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 4 = {}", k % 4))
            .unwrap();
        k += 1;
    }
    let end = current_lsn(&cluster);
    cluster.switch_wal().unwrap();
    let last = WalSegment::containing(TimelineId(1), end, SEG);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !archive
        .entries()
        .unwrap()
        .iter()
        .any(|e| matches!(e.kind, WalFileKind::Segment(s) if s.number >= last.number) && e.file_name.ends_with(".aes"))
    {
        assert!(Instant::now() < deadline, "WAL up to {end} never reached the archive");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    receiver.join().unwrap().unwrap();
    let first = WalSegment::parse(&info.wal, SEG).unwrap();
    let replayed = last.number - first.number + 1;

    // The reference's directory of plain segments.
    let plain = top.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    for n in first.number..=last.number {
        let name = WalSegment { number: n, ..first }.file_name(SEG);
        archive.fetch(&name, &plain.join(&name), Some(&key)).unwrap();
    }
    chown_postgres(top.path());

    let target = format!("lsn={end}");
    let archive_get = |extra: &str| {
        format!(
            "{} -c {} archive-get --master-key {} {extra} primary %f %p",
            cli.display(),
            conf.display(),
            key_file.path().display()
        )
    };
    let variants: Vec<(&str, String)> = vec![
        ("cp (plain segments)", format!("cp {}/%f %p", plain.display())),
        ("archive-get (prefetch 8)", archive_get("")),
        ("archive-get --prefetch 0", archive_get("--prefetch 0")),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (what, command)) in variants.iter().enumerate() {
            // Without prefetch each segment pays the key derivation: one round shows it.
            if i == 2 && round > 0 {
                continue;
            }
            let root = tempfile::Builder::new().prefix("pgmoneta-replay-restore-").tempdir_in("/tmp").unwrap();
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut ropts = RestoreOptions::new("primary", BackupSelector::Label(info.label.clone()), root.path());
            ropts.position = target.clone();
            ropts.master_key = Some(key.clone());
            ropts.workers = 2;
            ropts.restore_command = Some(command.clone());
            let report = restore(store.as_ref(), &ropts).unwrap();
            chown_postgres(root.path());
            // What the restore and the last round wrote reaches the disk before the clock starts.
            nix::unistd::sync();
            let t = Instant::now();
            let restored =
                Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password()).unwrap();
            while restored.query_scalar("SELECT pg_is_in_recovery()").unwrap() == "t" {
                assert!(
                    t.elapsed() < Duration::from_secs(1800),
                    "{what}: recovery did not finish:\n{}",
                    restored.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            times[i].push(t.elapsed().as_secs_f64());
            eprintln!("round {round}: {what}: {:.2} s", t.elapsed().as_secs_f64());
        }
    }
    println!(
        "PostgreSQL {}, {replayed} segments replayed (pgbench scale 10, updates), archive zstd + AES-256-GCM, medians of {rounds} rounds\n",
        cluster.version()
    );
    println!("| WAL fed by | seconds | segments/s | time / cp |");
    println!("|---|---|---|---|");
    let reference = median(times[0].clone());
    let mut failed = false;
    for (i, (what, _)) in variants.iter().enumerate() {
        let m = median(times[i].clone());
        println!("| {what} | {m:.2} | {:.1} | {:.2} |", replayed as f64 / m, m / reference);
        if i == 1 && m / reference > 1.2 {
            failed = true;
        }
    }
    println!(
        "\nWAL receiver flush lag under `pgbench -N -c 4` ({lag_seconds} s, {} samples): median {:.2} MB, max {lag_max:.2} MB (a segment is {} MB)",
        lags.len(),
        median(lags.clone()),
        SEG.bytes() >> 20
    );
    if lag_max > (SEG.bytes() >> 20) as f64 {
        eprintln!("target missed: the flush lag stays within one segment");
        failed = true;
    }
    if failed {
        eprintln!("target missed: prefetched archive-get within 1.2x of cp");
        std::process::exit(1);
    }
}
