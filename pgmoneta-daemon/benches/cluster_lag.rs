//! How far behind the active node a follower is while PostgreSQL works: two `pgmoneta` nodes
//! (real daemons, TLS between them) on one PostgreSQL under `pgbench -N -c 4`, sampled twice a
//! second. Reports the follower's lag in bytes (the active node's metric) and in seconds (how
//! long after the active node sealed a segment the follower held it), each beside its natural
//! reference: the WAL segment size and the heartbeat.
//!
//! `cargo bench -p pgmoneta-daemon --bench cluster_lag` (PostgreSQL from
//! `PGMONETA_TEST_PG_BIN` or the test kit's search; `PGMONETA_BENCH_SECONDS`, 30 by default,
//! the length of the load; `PGMONETA_BENCH_SCALE`, 10 by default, the pgbench scale).
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{cluster_role, free_port, start_pair, Daemon};
use pgmoneta_testkit::Cluster;

const SEGMENT: f64 = 16.0 * 1024.0 * 1024.0;
const HEARTBEAT: f64 = 1.0;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The sealed WAL files of `d`'s archive of `primary`.
fn sealed(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.base.join("primary/wal"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".zstd.aes"))
                .collect()
        })
        .unwrap_or_default()
}

fn metric(d: &Daemon, sample: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.metrics_port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines().find_map(|l| l.strip_prefix(sample)).and_then(|v| v.trim().parse().ok())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let seconds = env_u32("PGMONETA_BENCH_SECONDS", 30);
    let scale = env_u32("PGMONETA_BENCH_SCALE", 10);
    let source = Cluster::builder().setting("max_wal_size", "1GB").start().expect("PostgreSQL for the bench");
    source.pgbench_init(scale).unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (a, b, _certs) = start_pair(&source, (pa, pb), (pb, pa), ("", ""));
    let (active, follower, follower_name) = if cluster_role(&a) == "active" { (&a, &b, "b") } else { (&b, &a, "a") };
    let lag_sample = format!("pgmoneta_cluster_peer_wal_lag_bytes{{node=\"{follower_name}\",name=\"primary\"}} ");

    let start_lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap();
    let (mut lag_bytes, mut lag_seconds, segments) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| source.pgbench_for(4, seconds, &["-N"]));
        let mut lag_bytes = Vec::new();
        // When each segment was first seen sealed on each node.
        let mut seen_active: BTreeMap<String, Instant> = BTreeMap::new();
        let mut seen_follower: BTreeMap<String, Instant> = BTreeMap::new();
        // Segments sealed before the load are not part of it.
        let before: std::collections::BTreeSet<String> = sealed(active).into_iter().collect();
        while !worker.is_finished() {
            let now = Instant::now();
            for n in sealed(active).into_iter().filter(|n| !before.contains(n)) {
                seen_active.entry(n).or_insert(now);
            }
            for n in sealed(follower) {
                seen_follower.entry(n).or_insert(now);
            }
            if let Some(v) = metric(active, &lag_sample) {
                lag_bytes.push(v);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        worker.join().unwrap().unwrap();
        // The segments sealed during the load reach the follower after it.
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until && seen_active.keys().any(|n| !seen_follower.contains_key(n)) {
            let now = Instant::now();
            for n in sealed(follower) {
                seen_follower.entry(n).or_insert(now);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let lag_seconds: Vec<f64> = seen_active
            .iter()
            .filter_map(|(n, at)| seen_follower.get(n).map(|f| f.saturating_duration_since(*at).as_secs_f64()))
            .collect();
        (lag_bytes, lag_seconds, seen_active.len())
    });
    let end_lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap();
    let written = source
        .query_scalar(&format!("SELECT pg_wal_lsn_diff('{end_lsn}', '{start_lsn}')"))
        .unwrap()
        .parse::<f64>()
        .unwrap_or(0.0);
    let rate = written / f64::from(seconds) / SEGMENT;
    let (b50, b95, bmax) =
        (percentile(&mut lag_bytes, 0.5), percentile(&mut lag_bytes, 0.95), percentile(&mut lag_bytes, 1.0));
    let (s50, s95, smax) =
        (percentile(&mut lag_seconds, 0.5), percentile(&mut lag_seconds, 0.95), percentile(&mut lag_seconds, 1.0));
    println!("## Cluster lag under `pgbench -N -c 4` for {seconds} s (scale {scale})");
    println!();
    println!(
        "WAL written: {:.1} MiB ({rate:.2} segments/s); {segments} segments sealed on the active node during the load",
        written / 1048576.0
    );
    println!();
    println!("| measure | median | p95 | max | reference | median / reference |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| follower lag, bytes ({} samples) | {:.1} MiB | {:.1} MiB | {:.1} MiB | one segment (16 MiB) | {:.2} |",
        lag_bytes.len(),
        b50 / 1048576.0,
        b95 / 1048576.0,
        bmax / 1048576.0,
        b50 / SEGMENT
    );
    println!(
        "| follower lag, seconds after sealing ({} segments) | {s50:.2} s | {s95:.2} s | {smax:.2} s | heartbeat (1 s) | {:.2} |",
        lag_seconds.len(),
        s50 / HEARTBEAT
    );
    let missing = segments - lag_seconds.len();
    if missing > 0 {
        eprintln!("{missing} segments never reached the follower within a minute of the load's end");
        std::process::exit(1);
    }
}
