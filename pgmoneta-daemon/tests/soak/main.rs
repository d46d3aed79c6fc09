//! The soak run (not part of CI; `scripts/soak.sh` runs it): the daemon for
//! `PGMONETA_SOAK_MINUTES` (default 30) under pgbench load, a backup every minute, background
//! verification and retention on short timers, the oldest backups deleted as new ones arrive,
//! and faults injected at random: the repository's disk full, the daemon killed with `kill -9`
//! and restarted at once, the walsenders terminated, every connection to PostgreSQL cut, and
//! PostgreSQL restarted (fast and immediate). At the end every valid backup verifies, restores
//! and starts, and point-in-time restores to random recorded positions stop exactly there.
//! The counts are printed at the end.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::Daemon;
use pgmoneta_core::Lsn;
use pgmoneta_testkit::{Cluster, CutProxy, SmallFs};

/// A small deterministic generator (xorshift), seeded from the environment or the clock.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Default, Debug)]
struct Counts {
    backups_ok: u32,
    backups_failed: u32,
    deletes: u32,
    faults: BTreeMap<&'static str, u32>,
    restores: u32,
    pitr_checks: u32,
    marks: u64,
}

const FAULTS: [&str; 6] =
    ["disk full", "kill -9", "walsenders terminated", "connections cut", "restart fast", "restart immediate"];

fn wait_up(d: &Daemon) {
    let until = Instant::now() + Duration::from_secs(180);
    while d.cli(&["status"]).1["Response"]["Servers"][0]["WalStreaming"] != true {
        assert!(Instant::now() < until, "WAL streaming did not come back:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "the soak run takes half an hour: scripts/soak.sh"]
fn soak() {
    let minutes: u64 = std::env::var("PGMONETA_SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(30);
    let seed: u64 = std::env::var("PGMONETA_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("soak: {minutes} minutes, seed {seed}");
    let mut rng = Rng(seed);
    let small = SmallFs::mount(4096, "the soak run's repository").expect("root, to mount a tmpfs");
    let source = Cluster::builder().setting("max_wal_size", "256MB").start().unwrap();
    source.pgbench_init(5).unwrap();
    source.execute("CREATE TABLE marks (id bigint PRIMARY KEY)").unwrap();
    let proxy = CutProxy::start(source.port());
    let mut d = Daemon::new(&source, "verification = 120\nretention_interval = 60");
    let conf = std::fs::read_to_string(&d.conf).unwrap();
    let base = small.path().join("backup");
    let conf = conf
        .replace(&format!("port = {}\n", source.port()), &format!("port = {}\n", proxy.port()))
        .replace(&format!("base_dir = {}", d.base.display()), &format!("base_dir = {}", base.display()));
    std::fs::write(&d.conf, conf).unwrap();
    d.base = base;
    d.start();
    wait_up(&d);

    let source = Arc::new(RwLock::new(source));
    let stop = Arc::new(AtomicBool::new(false));
    // Load: pgbench in short runs, rate-limited by their size; errors while PostgreSQL is down.
    let load = {
        let (source, stop) = (source.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if source.read().unwrap().pgbench_run(2, 100).is_err() {
                    std::thread::sleep(Duration::from_secs(1));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // Marks: one committed row a second, with the WAL position right after its commit.
    let marks: Arc<Mutex<Vec<(u64, Lsn)>>> = Arc::default();
    let marker = {
        let (source, stop, marks) = (source.clone(), stop.clone(), marks.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                let s = source.read().unwrap();
                if s.execute(&format!("INSERT INTO marks VALUES ({})", k + 1)).is_err() {
                    continue;
                }
                k += 1;
                if let Ok(Ok(lsn)) = s.query_scalar("SELECT pg_current_wal_lsn()").map(|l| l.parse::<Lsn>()) {
                    marks.lock().unwrap().push((k, lsn));
                }
            }
        })
    };

    let mut counts = Counts::default();
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut next_backup = Instant::now();
    let mut next_fault = Instant::now() + Duration::from_secs(30 + rng.below(30));
    while Instant::now() < end {
        if Instant::now() >= next_backup {
            next_backup = Instant::now() + Duration::from_secs(60);
            let (code, reply) = d.cli(&["backup", "primary"]);
            if code == 0 {
                counts.backups_ok += 1;
            } else {
                counts.backups_failed += 1;
                println!("soak: backup failed: {}", reply["Outcome"]["Message"]);
            }
            let list = d.cli(&["list-backup", "primary"]).1;
            let valid: Vec<String> = list["Response"]["Backups"]
                .as_array()
                .map(|l| {
                    l.iter().filter(|b| b["Valid"] == 1).map(|b| b["Backup"].as_str().unwrap().to_owned()).collect()
                })
                .unwrap_or_default();
            if valid.len() > 6 && d.cli(&["delete", "primary", &valid[0]]).0 == 0 {
                counts.deletes += 1;
            }
        }
        if Instant::now() >= next_fault {
            next_fault = Instant::now() + Duration::from_secs(45 + rng.below(45));
            let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
            println!("soak: {:>5}s fault: {fault}", started.elapsed().as_secs());
            *counts.faults.entry(fault).or_default() += 1;
            match fault {
                "disk full" => {
                    let filler = small.fill();
                    std::thread::sleep(Duration::from_secs(10 + rng.below(20)));
                    std::fs::remove_file(filler).unwrap();
                }
                "kill -9" => {
                    let mut dead = d.kill9_unreaped();
                    d.start();
                    let _ = dead.wait();
                }
                "walsenders terminated" => {
                    let _ = source.read().unwrap().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_replication");
                }
                "connections cut" => proxy.cut(),
                "restart fast" | "restart immediate" => {
                    let mode = if fault == "restart fast" { "fast" } else { "immediate" };
                    let mut s = source.write().unwrap();
                    s.stop_with(mode).unwrap();
                    std::thread::sleep(Duration::from_secs(rng.below(5)));
                    s.start().unwrap();
                }
                _ => unreachable!(),
            }
            wait_up(&d);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    marker.join().unwrap();
    let source = Arc::try_unwrap(source).ok().unwrap().into_inner().unwrap();
    source.switch_wal().unwrap();
    let last: Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    d.wait_flushed(last);
    let marks = marks.lock().unwrap().clone();
    counts.marks = marks.len() as u64;

    // Every valid backup verifies, restores and starts, with the marks it should have.
    let list = d.ok(&["list-backup", "primary"]);
    let backups: Vec<String> = list["Backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["Valid"] == 1)
        .map(|b| b["Backup"].as_str().unwrap().to_owned())
        .collect();
    assert!(!backups.is_empty(), "no valid backup after the soak: {list}");
    for label in &backups {
        let v = d.ok(&["verify", "primary", label, "/tmp", "failed"]);
        assert_eq!(v["Files"]["Failed"].as_array().unwrap().len(), 0, "{label} fails verify: {v}");
        let out = common::shared_dir("pgmoneta-soak-");
        d.ok(&["restore", "primary", label, "current", out.path().to_str().unwrap()]);
        let mut copy = common::start_restored(&source, &out.path().join(format!("primary-{label}")));
        let n: u64 = copy.query_scalar("SELECT count(*) FROM marks").unwrap().parse().unwrap();
        let max: u64 = copy.query_scalar("SELECT coalesce(max(id), 0) FROM marks").unwrap().parse().unwrap();
        assert_eq!(n, max, "{label}: marks missing in the middle ({n} of {max})");
        copy.stop().unwrap();
        counts.restores += 1;
    }
    // Point in time: random marks after the oldest backup, from the newest backup before each.
    let info = d.ok(&["info", "primary", &backups[0]]);
    let oldest_end = Lsn((info["EndHiLSN"].as_u64().unwrap() << 32) | info["EndLoLSN"].as_u64().unwrap());
    let reachable: Vec<(u64, Lsn)> = marks.iter().copied().filter(|(_, l)| *l > oldest_end && *l < last).collect();
    for _ in 0..reachable.len().min(8) {
        let (k, lsn) = reachable[rng.below(reachable.len() as u64) as usize];
        let out = common::shared_dir("pgmoneta-soak-");
        d.ok(&["restore", "primary", "newest", &format!("lsn={lsn},action=promote"), out.path().to_str().unwrap()]);
        let dir = std::fs::read_dir(out.path()).unwrap().flatten().next().unwrap().path();
        let mut copy = common::start_restored(&source, &dir);
        let max: u64 = copy.query_scalar("SELECT coalesce(max(id), 0) FROM marks").unwrap().parse().unwrap();
        assert_eq!(max, k, "PITR to lsn={lsn} (right after mark {k}) stopped at mark {max}");
        copy.stop().unwrap();
        counts.pitr_checks += 1;
    }
    println!("soak: done after {} s, seed {seed}: {counts:#?}", started.elapsed().as_secs());
}
