//! Uploads to a remote repository: one backup of a pgbench cluster, uploaded to a Garage S3
//! server on loopback with 1 and 2 workers, beside the same files copied to another local
//! directory (the local-disk figure) in the same run.
//!
//! `cargo bench -p pgmoneta-benches --bench remote` (scale 20 by default; `PGMONETA_BENCH_SCALE`
//! changes it, `PGMONETA_BENCH_ROUNDS` the rounds, 3 by default). Prints a Markdown table of
//! MB/s (stored bytes per second) and each figure's ratio to the local copy.
#![allow(missing_docs)]

use std::sync::Arc;

use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_core::{BackupLabel, CivilDateTime};
use pgmoneta_storage::backup::{take_backup, BackupOptions};
use pgmoneta_storage::remote::{self, copy_files, RemoteSpec, RemoteTuning, S3Options};
use pgmoneta_storage::store::{LocalStore, Store};
use pgmoneta_testkit::{Cluster, Garage};
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let scale = env_u32("PGMONETA_BENCH_SCALE", 20);
    let rounds = env_u32("PGMONETA_BENCH_ROUNDS", 3).max(1);
    let cluster = Cluster::builder().start().expect("a PostgreSQL cluster");
    cluster.pgbench_init(scale).expect("pgbench -i");
    cluster.execute("CHECKPOINT").unwrap();

    let garage = Garage::start("bench").expect("Garage (scripts/setup.sh installs it)");
    let spec = RemoteSpec::S3(S3Options {
        bucket: garage.bucket.clone(),
        region: garage.region().into(),
        access_key_id: Some(garage.key_id.clone()),
        secret_access_key: Some(garage.secret.clone()),
        endpoint: Some(garage.endpoint()),
        ..S3Options::default()
    });
    let s3 = remote::open(&spec, &RemoteTuning::default()).unwrap();
    println!("| upload (pgbench scale {scale}) | MB | files | MB/s | ratio to the local copy |");
    println!("| --- | --- | --- | --- | --- |");
    for (n, algorithm) in [Algorithm::Zstd, Algorithm::None].into_iter().enumerate() {
        let repo = tempfile::Builder::new().prefix("pgmoneta-bench-remote-").tempdir_in("/tmp").unwrap();
        let local = Arc::new(LocalStore::new(repo.path()));
        let opts = ConnectOptions::new(cluster.host(), cluster.port(), cluster.replication_user())
            .password(cluster.replication_password())
            .replication(ReplicationMode::Physical)
            .ssl_mode(SslMode::Disable);
        let mut conn = PgConnection::connect(&opts).unwrap();
        let label = BackupLabel::new(CivilDateTime::new(2026, 11, 28, 12, 0, n as u8).unwrap());
        let mut options = BackupOptions::new("bench", label);
        options.workers = 2;
        options.compression = Compression::client(algorithm);
        options.level = if algorithm == Algorithm::Zstd { 3 } else { algorithm.default_level() };
        let minor: u32 = cluster.query_scalar("SHOW server_version_num").unwrap().parse::<u32>().unwrap() % 10_000;
        let info = take_backup(&mut conn, cluster.version(), minor, local.clone(), &options).unwrap();
        let _ = conn.close();
        let label = info.label.clone();
        let dir = format!("bench/backup/{label}");
        let listed = remote::walk(local.as_ref(), &dir).unwrap();
        let files: Vec<String> = listed.iter().map(|(p, _)| p.clone()).collect();
        let bytes: u64 = listed.iter().map(|(_, n)| n).sum();
        let mb = bytes as f64 / 1e6;
        let name = if algorithm == Algorithm::None { "uncompressed" } else { "zstd" };

        // The local-disk figure: the same files copied to another directory on this disk.
        let mut local_rates = Vec::new();
        for _ in 0..rounds {
            let other = tempfile::Builder::new().prefix("pgmoneta-bench-copy-").tempdir_in("/tmp").unwrap();
            let target = LocalStore::new(other.path());
            for f in &files {
                if let Some((parent, _)) = f.rsplit_once('/') {
                    target.create_dir(parent).unwrap();
                }
            }
            let report = copy_files(local.as_ref(), &target, &files, 2, None).unwrap();
            target.sync_tree(&dir).unwrap();
            local_rates.push(mb / report.elapsed);
        }
        let local_rate = median(local_rates);
        println!("| {name}: local disk copy, 2 workers | {mb:.1} | {} | {local_rate:.1} | 1.00 |", files.len());
        for workers in [1usize, 2] {
            let mut rates = Vec::new();
            for _ in 0..rounds {
                let report =
                    remote::upload_backup(local.as_ref(), s3.store.as_ref(), "bench", &label, workers, None).unwrap();
                assert_eq!(report.bytes, bytes);
                rates.push(mb / report.elapsed);
            }
            let rate = median(rates);
            println!(
                "| {name}: Garage (S3, loopback), {workers} worker{} | {mb:.1} | {} | {rate:.1} | {:.2} |",
                if workers > 1 { "s" } else { "" },
                files.len(),
                rate / local_rate
            );
        }
        s3.store.remove(&dir).unwrap();
    }
}
