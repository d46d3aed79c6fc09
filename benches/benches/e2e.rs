//! End to end: back up and restore a pgbench cluster and time `pg_basebackup` against the same
//! server in the same run. Each of our backups runs in a child process (this program run again)
//! so that its peak memory is measured alone.
//!
//! `cargo bench -p pgmoneta-benches --bench e2e` (scale 50 by default; `PGMONETA_BENCH_SCALE`
//! changes it, `PGMONETA_BENCH_ROUNDS` the rounds, 3 by default). Prints a Markdown table and
//! exits non-zero when a target is missed. `PGMONETA_BENCH_WRAP="perf record -g -o /tmp/perf.data"`
//! runs each child under a profiler.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_core::{BackupLabel, CivilDateTime, PgVersion};
use pgmoneta_storage::backup::{take_backup, BackupOptions};
use pgmoneta_storage::catalog::{list_backups, BackupSelector};
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::store::LocalStore;
use pgmoneta_storage::verify::verify;
use pgmoneta_testkit::Cluster;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

/// Peak resident memory of this process, in bytes (`VmHWM`).
/// CPU seconds (user and system) of the children this process has waited for.
fn children_cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            total += dir_size(&e.path());
        } else if m.is_file() {
            total += m.len();
        }
    }
    total
}

/// The child: one backup or one restore; prints "<seconds> <peak rss>".
fn child(args: &[String]) {
    let what = args[0].as_str();
    let repo = PathBuf::from(&args[1]);
    let store = Arc::new(LocalStore::new(&repo));
    let started = Instant::now();
    match what {
        "backup" => {
            let (host, port, user, password, major, algorithm) = (
                &args[2],
                args[3].parse::<u16>().unwrap(),
                &args[4],
                &args[5],
                args[6].parse::<u32>().unwrap(),
                &args[7],
            );
            let opts = ConnectOptions::new(host, port, user)
                .password(password)
                .replication(ReplicationMode::Physical)
                .ssl_mode(SslMode::Disable);
            let mut conn = PgConnection::connect(&opts).unwrap();
            // The backup's minute of the day (a second backup into the same repository links).
            let minute = args.get(8).and_then(|m| m.parse::<u8>().ok()).unwrap_or(0);
            let mut options =
                BackupOptions::new("bench", BackupLabel::new(CivilDateTime::new(2026, 11, 28, 12, minute, 0).unwrap()));
            options.workers = 2;
            // `zstd` or `zstd+crc32c`: the compression, then the manifest algorithm if not SHA-512.
            let (algorithm, manifest) = algorithm.split_once('+').unwrap_or((algorithm, "sha512"));
            options.manifest = pgmoneta_storage::manifest::ManifestAlgorithm::parse(manifest).unwrap();
            let algorithm = match algorithm {
                "none" => Algorithm::None,
                "zstd" => Algorithm::Zstd,
                "lz4" => Algorithm::Lz4,
                other => panic!("{other}"),
            };
            options.compression = Compression::client(algorithm);
            options.level = if algorithm == Algorithm::Zstd { 3 } else { algorithm.default_level() };
            let version = PgVersion::from_major(major).unwrap();
            let info = take_backup(&mut conn, version, 0, store, &options).unwrap();
            eprintln!("{:?}", info.elapsed);
            // Seconds of the link step, for the relations bench.
            println!("linking {}", info.elapsed.linking);
        }
        "verify" => {
            let newest = list_backups(store.as_ref(), "bench").unwrap().pop().unwrap();
            let (failed, _) = verify(store.as_ref(), "bench", &newest.label, None, 2).unwrap();
            assert!(failed.is_empty(), "{failed:?}");
        }
        "restore" => {
            let mut options = RestoreOptions::new("bench", BackupSelector::Newest, &args[2]);
            options.workers = 2;
            restore(store.as_ref(), &options).unwrap();
        }
        other => panic!("unknown child {other}"),
    }
    println!("{} {}", started.elapsed().as_secs_f64(), peak_rss());
}

/// What a child printed: its seconds, its peak memory and, for a backup, the seconds of its
/// link step.
struct ChildRun {
    seconds: f64,
    rss: u64,
    linking: f64,
}

/// Writes back every dirty page before a timed run: our backups end with one `syncfs` of the
/// repository's filesystem, which would otherwise also wait for what the set-up or the other
/// tool left dirty (pgbench's tables, a restore), and `pg_basebackup` would not.
fn settle() {
    let status = Command::new("sync").status().unwrap();
    assert!(status.success(), "sync failed");
}

fn run_child(args: &[&str]) -> ChildRun {
    settle();
    // PGMONETA_BENCH_WRAP runs the child under a profiler, e.g. "perf record -g -o /tmp/perf.data".
    let wrap = std::env::var("PGMONETA_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut cmd = match words.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(words).arg(std::env::current_exe().unwrap());
            c
        }
        None => Command::new(std::env::current_exe().unwrap()),
    };
    let out = cmd.arg("--bench").arg("--child").args(args).output().unwrap();
    assert!(out.status.success(), "child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    if std::env::var_os("PGMONETA_BENCH_VERBOSE").is_some() {
        eprintln!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let linking = text.lines().find_map(|l| l.strip_prefix("linking ")).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let line = text.lines().last().unwrap_or_default().to_owned();
    let mut parts = line.split_whitespace();
    ChildRun { seconds: parts.next().unwrap().parse().unwrap(), rss: parts.next().unwrap().parse().unwrap(), linking }
}

/// A libpq connection string for `pg_basebackup` as the cluster's replication user.
fn replication_conninfo(cluster: &Cluster) -> String {
    format!(
        "host={} port={} user={} password={}",
        cluster.host(),
        cluster.port(),
        cluster.replication_user(),
        cluster.replication_password()
    )
}

/// One of our backups of `cluster` into `repo`, in a child process, labelled `minute` minutes
/// into the bench's hour.
fn backup_child(cluster: &Cluster, repo: &Path, algorithm: &str, minute: u8) -> ChildRun {
    run_child(&[
        "backup",
        repo.to_str().unwrap(),
        cluster.host(),
        &cluster.port().to_string(),
        cluster.replication_user(),
        cluster.replication_password(),
        &cluster.version().major().to_string(),
        algorithm,
        &minute.to_string(),
    ])
}

/// Prints a Markdown table; `false` when a target was missed (the caller exits non-zero once its
/// cluster and working directory are gone).
#[must_use]
fn report(title: &str, header: &str, rows: &[String], failures: &[String]) -> bool {
    println!("{title}\n");
    println!("{header}");
    println!("|{}", "---|".repeat(header.matches('|').count() - 1));
    for r in rows {
        println!("{r}");
    }
    if failures.is_empty() {
        return true;
    }
    eprintln!("targets missed: {}", failures.join(", "));
    false
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    if let Ok(tables) = std::env::var("PGMONETA_BENCH_TABLES") {
        relations(&tables);
        return;
    }
    let scale: u32 = std::env::var("PGMONETA_BENCH_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let rounds: usize = std::env::var("PGMONETA_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(scale).unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let size: u64 = cluster.query_scalar("SELECT pg_database_size('postgres')").unwrap().parse().unwrap();
    let work = tempfile::Builder::new().prefix("pgmoneta-e2e-").tempdir_in("/tmp").unwrap();
    let basebackup = cluster.install().client_program("pg_basebackup");
    let conninfo = replication_conninfo(&cluster);

    // Every run writes into a new directory, and nothing is removed before the end: ext4 does
    // not reuse an inode within a minute of its deletion, and finding another one after
    // thousands of files were just removed costs a backup of a thousand files more than a
    // second of kernel time, which a repository whose backups are hours apart never pays.
    let fresh = std::cell::Cell::new(0u32);
    let new_dir = |what: &str| -> PathBuf {
        fresh.set(fresh.get() + 1);
        let dir = work.path().join(format!("{what}-{}", fresh.get()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    // (seconds, CPU seconds of the pg_basebackup process)
    let pg = |args: &[&str]| -> (f64, f64) {
        let dir = new_dir("pg_basebackup");
        let mut cmd = Command::new(&basebackup);
        cmd.arg("-d").arg(&conninfo).arg("-D").arg(&dir).arg("-Ft").arg("-c").arg("fast").arg("-X").arg("fetch");
        cmd.args(args);
        settle();
        let cpu = children_cpu();
        let t = Instant::now();
        let out = cmd.output().unwrap();
        let elapsed = (t.elapsed().as_secs_f64(), children_cpu() - cpu);
        assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
        // A couple of files: removing them costs the next run nothing.
        std::fs::remove_dir_all(&dir).unwrap();
        elapsed
    };
    // (seconds, peak RSS, bytes stored, CPU seconds of the backup's process)
    let ours = |algorithm: &str, repo: &Path| -> (f64, u64, u64, f64) {
        let cpu = children_cpu();
        let ChildRun { seconds: t, rss, .. } = backup_child(&cluster, repo, algorithm, 0);
        (t, rss, dir_size(repo), children_cpu() - cpu)
    };

    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    let mut failures = Vec::new();
    // (ours, the reference's name, its arguments, the target ratio; 0: report only). The
    // zstd pair does the same work on both sides: SHA-512 of every file, zstd level 3.
    let cases: [(&str, &str, &[&str], f64); 4] = [
        ("none", "-Ft", &[], 1.5),
        (
            "zstd",
            "client-zstd:3 --manifest-checksums=SHA512",
            &["--compress=client-zstd:3", "--manifest-checksums=SHA512"],
            1.0,
        ),
        ("zstd+crc32c", "client-zstd:3", &["--compress=client-zstd:3"], 1.0),
        ("lz4", "client-lz4", &["--compress=client-lz4"], 0.0),
    ];
    let mut zstd_backup = 0.0;
    let mut peak = 0u64;
    // PGMONETA_BENCH_ONLY=none,zstd runs only those backups (and skips the restore without zstd).
    let only = std::env::var("PGMONETA_BENCH_ONLY").ok();
    let wanted = |a: &str| only.as_deref().is_none_or(|o| o.split(',').any(|w| w == a));
    for (algorithm, name, compress, target) in cases.into_iter().filter(|c| wanted(c.0)) {
        let (mut a, mut b, mut ratios, mut stored) = (Vec::new(), Vec::new(), Vec::new(), 0);
        let (mut cpu_a, mut cpu_b) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // The order alternates, so neither side always runs with a warmer cache.
            let (t, rss, s, cpu, (reference, reference_cpu)) = if round % 2 == 0 {
                let (t, rss, s, cpu) = ours(algorithm, &new_dir("repo"));
                (t, rss, s, cpu, pg(compress))
            } else {
                let reference = pg(compress);
                let (t, rss, s, cpu) = ours(algorithm, &new_dir("repo"));
                (t, rss, s, cpu, reference)
            };
            if std::env::var_os("PGMONETA_BENCH_VERBOSE").is_some() {
                eprintln!(
                    "{algorithm} round {round}: ours {t:.2} s ({cpu:.2} s CPU), pg_basebackup {reference:.2} s ({reference_cpu:.2} s CPU)"
                );
            }
            a.push(t);
            b.push(reference);
            ratios.push(t / reference);
            cpu_a.push(cpu);
            cpu_b.push(reference_cpu);
            peak = peak.max(rss);
            stored = s;
        }
        let gb = size as f64 / 1e9;
        cpu_rows.push(format!(
            "| {algorithm} vs `pg_basebackup {name}` | {:.2} | {:.2} |",
            median(cpu_a) / gb,
            median(cpu_b) / gb
        ));
        // This machine's CPUs change speed from moment to moment (the hash of the same bytes
        // takes 1.4 to 2.3 s from one round to the next): the ratio is taken per round, where
        // both ran under the same conditions, and its median reported.
        let least = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let (min_a, min_b) = (least(&a), least(&b));
        let (a, b, ratio) = (median(a), median(b), median(ratios));
        let ok = target == 0.0 || ratio <= target;
        if !ok {
            failures.push(format!("backup {algorithm}"));
        }
        if algorithm == "zstd" {
            zstd_backup = a;
        }
        rows.push(format!(
            "| backup, {algorithm} vs `pg_basebackup {name}` | {:.2} s ({:.0} MB/s; min {min_a:.2} s) | {:.2} s (min {min_b:.2} s) | {ratio:.2} | {} | {:.0} MB stored |",
            a,
            size as f64 / a / 1e6,
            b,
            if target == 0.0 { "report".to_owned() } else { format!("ratio <= {target}{}", if ok { "" } else { " **missed**" }) },
            stored as f64 / 1e6
        ));
    }
    let cpu_table = |rows: &[String]| {
        println!("\nCPU seconds per GB of database (user + system of each process, medians)\n");
        println!("| backup | ours | pg_basebackup |\n|---|---|---|");
        for r in rows {
            println!("{r}");
        }
        println!();
    };
    // Restore of the zstd backup against the zstd backup's own time.
    if !wanted("zstd") {
        for r in rows {
            println!("{r}");
        }
        cpu_table(&cpu_rows);
        return;
    }
    let repo = new_dir("repo");
    ours("zstd", &repo);
    let mut r = Vec::new();
    for _ in 0..rounds {
        let out = new_dir("restored");
        let ChildRun { seconds: t, rss, .. } = run_child(&["restore", repo.to_str().unwrap(), out.to_str().unwrap()]);
        peak = peak.max(rss);
        r.push(t);
    }
    let restore_t = median(r);
    let ok = restore_t <= zstd_backup;
    if !ok {
        failures.push("restore".to_owned());
    }
    rows.push(format!(
        "| restore of the zstd backup vs its backup | {restore_t:.2} s ({:.0} MB/s) | {zstd_backup:.2} s | {:.2} | ratio <= 1{} | |",
        size as f64 / restore_t / 1e6,
        restore_t / zstd_backup,
        if ok { "" } else { " **missed**" }
    ));
    let ok = peak < 100 << 20;
    if !ok {
        failures.push("peak RSS".to_owned());
    }
    rows.push(format!(
        "| peak RSS of a backup or restore process | {:.0} MB | | | < 100 MB{} | |",
        peak as f64 / 1e6,
        if ok { "" } else { " **missed**" }
    ));
    cpu_table(&cpu_rows);
    let met = report(
        &format!(
            "PostgreSQL {}, pgbench scale {scale} ({:.0} MB), workers 2, medians of {rounds} rounds (times, and ratios per round)",
            cluster.version().major(),
            size as f64 / 1e6
        ),
        "| what | ours | reference | ours / reference | target | |",
        &rows,
        &failures,
    );
    drop(work);
    drop(cluster);
    if !met {
        std::process::exit(1);
    }
}

/// Files under a directory, links included.
fn files_under(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += files_under(&e.path()),
            Ok(_) => n += 1,
            Err(_) => {}
        }
    }
    n
}

/// Databases with many relations (`PGMONETA_BENCH_TABLES=10000,50000`): for each count, a
/// cluster of that many one-row tables (a heap, its primary key, a TOAST table and its index
/// each), then a first backup, a second one linked to it, a verify and a restore, each in its
/// own process, against `pg_basebackup -Ft` on the same cluster. Times per file show whether
/// the cost of an operation grows with the number of files or faster.
fn relations(counts: &str) {
    let rounds: usize = std::env::var("PGMONETA_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for n in counts.split(',').filter_map(|c| c.trim().parse::<u32>().ok()) {
        let cluster =
            Cluster::builder().setting("max_locks_per_transaction", &(n / 50 + 64).to_string()).start().unwrap();
        let created = Instant::now();
        for start in (0..n).step_by(500) {
            let end = (start + 500).min(n) - 1;
            cluster
                .execute(&format!(
                    "DO $$ BEGIN FOR i IN {start}..{end} LOOP \
                     EXECUTE format('CREATE TABLE rel_%s (id int PRIMARY KEY, v text)', i); \
                     EXECUTE format('INSERT INTO rel_%s VALUES (%s, ''row %s'')', i, i, i); \
                     END LOOP; END $$"
                ))
                .unwrap();
        }
        cluster.execute("CHECKPOINT").unwrap();
        eprintln!("{n} tables created in {:.0} s", created.elapsed().as_secs_f64());
        let work = tempfile::Builder::new().prefix("pgmoneta-rel-").tempdir_in("/tmp").unwrap();
        let conninfo = replication_conninfo(&cluster);
        let basebackup = cluster.install().client_program("pg_basebackup");
        let (mut first, mut second, mut linking, mut verifies, mut restores, mut reference, mut ratios) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut plain, mut plain_ratios) = (Vec::new(), Vec::new());
        let mut files = 0;
        for round in 0..rounds {
            let repo = work.path().join(format!("repo-{round}"));
            std::fs::create_dir_all(&repo).unwrap();
            let backup = |minute: u8| backup_child(&cluster, &repo, "none", minute);
            // `-Ft` writes one tar file; `-Fp` a file per relation, as a repository does.
            let pg = |format: &str| {
                let dir = work.path().join(format!("pg_basebackup{format}-{round}"));
                settle();
                let t = Instant::now();
                let out = Command::new(&basebackup)
                    .arg("-d")
                    .arg(&conninfo)
                    .arg("-D")
                    .arg(&dir)
                    .args([format, "-c", "fast", "-X", "fetch"])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
                t.elapsed().as_secs_f64()
            };
            // The order alternates, so neither side always runs with a warmer cache.
            let (a, b, p) = if round % 2 == 0 {
                let a = backup(0).seconds;
                (a, pg("-Ft"), pg("-Fp"))
            } else {
                let (b, p) = (pg("-Ft"), pg("-Fp"));
                (backup(0).seconds, b, p)
            };
            first.push(a);
            reference.push(b);
            ratios.push(a / b);
            plain.push(p);
            plain_ratios.push(a / p);
            files = files_under(&repo.join("bench/backup"));
            let again = backup(1);
            second.push(again.seconds);
            linking.push(again.linking);
            verifies.push(run_child(&["verify", repo.to_str().unwrap()]).seconds);
            let out = work.path().join(format!("restored-{round}"));
            restores.push(run_child(&["restore", repo.to_str().unwrap(), out.to_str().unwrap()]).seconds);
        }
        let per_file = |t: f64| format!("{t:.2} s ({:.0} us/file)", t * 1e6 / files as f64);
        let (first, second, linking) = (median(first), median(second), median(linking));
        let reference = median(reference);
        rows.push(format!(
            "| {n} tables, {files} files: first backup vs `pg_basebackup -Ft` | {} | {reference:.2} s | {:.2} |",
            per_file(first),
            median(ratios)
        ));
        rows.push(format!(
            "| {n} tables: first backup vs `pg_basebackup -Fp` (a file per relation) | {} | {:.2} s | {:.2} |",
            per_file(first),
            median(plain),
            median(plain_ratios)
        ));
        rows.push(format!(
            "| {n} tables: second backup (linked) vs first | {} | {first:.2} s | {:.2} |",
            per_file(second),
            second / first
        ));
        rows.push(format!("| {n} tables: link step of the second backup | {} | | |", per_file(linking)));
        rows.push(format!(
            "| {n} tables: verify vs first backup | {} | {first:.2} s | {:.2} |",
            per_file(median(verifies.clone())),
            median(verifies) / first
        ));
        rows.push(format!(
            "| {n} tables: restore vs first backup | {} | {first:.2} s | {:.2} |",
            per_file(median(restores.clone())),
            median(restores) / first
        ));
        // The second backup may cost the first plus its link step, and some noise.
        if second > (first + linking) * 1.25 {
            failures.push(format!(
                "{n} tables: second backup {second:.2} s against {first:.2} s + {linking:.2} s of linking"
            ));
        }
    }
    if !report(
        &format!("Many relations, workers 2, no compression, medians of {rounds} rounds"),
        "| what | ours | reference | ours / reference |",
        &rows,
        &failures,
    ) {
        std::process::exit(1);
    }
}
