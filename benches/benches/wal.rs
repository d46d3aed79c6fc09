//! WAL decoding: bytes/s and records/s on the PostgreSQL 15 corpus, with and without
//! descriptions, and PostgreSQL's own `pg_waldump` on the same segments in the same run, both
//! writing text to /dev/null (`cargo bench -p pgmoneta-benches --bench wal`).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use pgmoneta_core::{Lsn, WalSegmentSize};
use pgmoneta_wire::wal::{waldump_line_into, WalDecoder};

/// The PostgreSQL 15 part of the test corpus (`pgmoneta_testkit::corpus`).
fn corpus_dir() -> PathBuf {
    pgmoneta_testkit::corpus::path("pg15")
}

fn info() -> (Lsn, Lsn, Vec<PathBuf>) {
    let info = pgmoneta_testkit::corpus::info(15);
    let files = info.segments.iter().map(|n| corpus_dir().join("wal").join(n)).collect();
    (info.start_lsn, info.end_lsn, files)
}

/// Where the corpus's first segment starts.
fn corpus_start() -> u64 {
    pgmoneta_testkit::corpus::info(15).first_segment_start().0
}

/// Decodes every segment; with `out`, writes pg_waldump's lines for [start, end). Returns the
/// records decoded.
fn decode(segments: &[bytes::Bytes], range: Option<(Lsn, Lsn)>, out: Option<&mut dyn Write>) -> usize {
    // Like pg_waldump -s, start at the first record of the range (in the first segment: the
    // corpus's range starts there, after initdb's records).
    let base = corpus_start();
    let first = range.map_or(base, |(s, _)| s.0);
    let mut d = WalDecoder::from_page_start(Lsn(first), None, WalSegmentSize::DEFAULT);
    let skip = (d.fed_until().0 - base) as usize;
    assert!(skip < segments[0].len(), "the range starts after the first segment");
    let mut n = 0;
    let mut out = out;
    let mut line = String::new();
    for (i, s) in segments.iter().enumerate() {
        d.feed_bytes(if i == 0 { s.slice(skip..) } else { s.clone() });
        while let Some(r) = d.next_record().unwrap() {
            if let Some((_, end)) = range {
                if r.lsn >= end {
                    return n;
                }
            }
            n += 1;
            if let Some(w) = out.as_deref_mut() {
                {
                    line.clear();
                    waldump_line_into(&r, &mut line);
                    line.push('\n');
                    w.write_all(line.as_bytes()).unwrap();
                }
            }
        }
    }
    n
}

/// The --waldump path as walinfo runs it: each file read once and handed over without a copy.
fn decode_files(files: &[PathBuf], start: Lsn, end: Lsn, out: &mut dyn Write) -> usize {
    let mut d = WalDecoder::from_page_start(start, None, WalSegmentSize::DEFAULT);
    let mut line = String::with_capacity(512);
    let mut n = 0;
    for (i, f) in files.iter().enumerate() {
        let mut bytes = pgmoneta_wire::wal::map_closed_file(f).unwrap();
        if i == 0 {
            let skip = (d.fed_until().0 - corpus_start()) as usize;
            assert!(skip < bytes.len(), "the range starts after the first segment");
            let _ = bytes.split_to(skip);
        }
        d.feed_bytes(bytes);
        while let Some(r) = d.next_record().unwrap() {
            if r.lsn >= end {
                return n;
            }
            n += 1;
            line.clear();
            waldump_line_into(&r, &mut line);
            line.push('\n');
            out.write_all(line.as_bytes()).unwrap();
        }
    }
    n
}

fn wal_decode(c: &mut Criterion) {
    let (_, _, files) = info();
    let segments: Vec<bytes::Bytes> = files.iter().map(|f| std::fs::read(f).unwrap().into()).collect();
    let bytes: u64 = segments.iter().map(|s| s.len() as u64).sum();
    let records = decode(&segments, None, None) as u64;
    let mut group = c.benchmark_group("wal_decode");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("bytes", |b| b.iter(|| decode(&segments, None, None)));
    group.throughput(Throughput::Elements(records));
    group.bench_function("records", |b| b.iter(|| decode(&segments, None, None)));
    group.bench_function("records_with_descriptions", |b| {
        b.iter(|| decode(&segments, None, Some(&mut std::io::sink())))
    });
    group.finish();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// CPU seconds (user + system) used so far by this process, or by its waited-for children.
fn cpu_seconds(who: nix::sys::resource::UsageWho) -> f64 {
    let u = nix::sys::resource::getrusage(who).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

/// `pg_waldump -p <corpus> -s START -e END`.
fn pg_waldump(tool: &Path, start: Lsn, end: Lsn) -> Command {
    let mut c = Command::new(tool);
    c.arg("-p").arg(corpus_dir().join("wal")).arg("-s").arg(start.to_string()).arg("-e").arg(end.to_string());
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// The instructions `command` executes, counted by callgrind; `None` without valgrind.
fn instructions(command: Command) -> Option<u64> {
    let mut v = Command::new("valgrind");
    v.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"]).arg(command.get_program());
    v.args(command.get_args()).stdout(Stdio::null());
    let out = v.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Collected :"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

/// pg_waldump and ours on the same segments, one after the other in each of 15 rounds, text to
/// /dev/null. This machine is shared, so times move between rounds for both programs: the
/// ratio is taken per round (both ran under the same conditions) and its median reported,
/// beside the ratio of the fastest runs (the least disturbed). CPU time is what "on one core"
/// means. Then callgrind counts the instructions of one run of each, which is repeatable
/// whatever else the machine does (our count includes this bench process's start-up, theirs
/// pg_waldump's).
fn against_pg_waldump() {
    use nix::sys::resource::UsageWho;
    let tool = pgmoneta_testkit::PgInstall::at(Path::new("/usr/lib/postgresql/15/bin"))
        .ok()
        .and_then(|i| i.same_major_program("pg_waldump"));
    let Some(tool) = tool else {
        eprintln!("pg_waldump (PostgreSQL 15) not installed: comparison skipped");
        return;
    };
    let (start, end, files) = info();
    // One core for both, the same one: this process and pg_waldump (which inherits it).
    let cpu = nix::sched::sched_getcpu().unwrap_or(0);
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok() {
        println!("\nboth programs run on CPU {cpu}");
    }
    let (mut theirs, mut ours) = (Vec::new(), Vec::new());
    let (mut theirs_cpu, mut ours_cpu) = (Vec::new(), Vec::new());
    let (mut ratio, mut ratio_cpu) = (Vec::new(), Vec::new());
    let mut records = 0;
    for _ in 0..15 {
        let (t, c) = (Instant::now(), cpu_seconds(UsageWho::RUSAGE_CHILDREN));
        assert!(pg_waldump(&tool, start, end).status().unwrap().success());
        let (tw, tc) = (t.elapsed().as_secs_f64(), cpu_seconds(UsageWho::RUSAGE_CHILDREN) - c);
        let (t, c) = (Instant::now(), cpu_seconds(UsageWho::RUSAGE_SELF));
        let mut null = std::io::BufWriter::new(std::fs::File::create("/dev/null").unwrap());
        records = decode_files(&files, start, end, &mut null);
        null.flush().unwrap();
        let (ow, oc) = (t.elapsed().as_secs_f64(), cpu_seconds(UsageWho::RUSAGE_SELF) - c);
        theirs.push(tw);
        ours.push(ow);
        theirs_cpu.push(tc);
        ours_cpu.push(oc);
        ratio.push(tw / ow);
        // getrusage counts in 1 ms ticks on some kernels: a zero would divide by zero.
        if oc > 0.0 {
            ratio_cpu.push(tc / oc);
        }
    }
    let lines = std::fs::read_to_string(corpus_dir().join("pg_waldump.txt")).unwrap().lines().count();
    println!("wal against pg_waldump (PostgreSQL 15 corpus, {lines} records printed, {records} decoded, 15 rounds):");
    let row = |who: &str, wall: &[f64], cpu: &[f64]| {
        println!(
            "  {who:<12} wall median {:>6.1} ms, fastest {:>6.1} ms ({:>8.0} records/s)   cpu median {:>6.1} ms",
            median(wall.to_vec()) * 1e3,
            min(wall) * 1e3,
            lines as f64 / min(wall),
            median(cpu.to_vec()) * 1e3,
        );
    };
    row("pg_waldump", &theirs, &theirs_cpu);
    row("pgmoneta-rs", &ours, &ours_cpu);
    println!(
        "  ratio (ours / pg_waldump, records/s): median per round: wall {:.2}, cpu {:.2}; fastest runs: {:.2}",
        median(ratio),
        median(ratio_cpu),
        min(&theirs) / min(&ours)
    );
    let mut me = Command::new(std::env::current_exe().unwrap());
    me.arg("--waldump-once");
    match (instructions(pg_waldump(&tool, start, end)), instructions(me)) {
        (Some(t), Some(o)) => println!(
            "  instructions (callgrind): pg_waldump {:.1} M, pgmoneta-rs {:.1} M, ratio {:.2}",
            t as f64 / 1e6,
            o as f64 / 1e6,
            t as f64 / o as f64
        ),
        _ => println!("  instructions: valgrind not installed, not counted"),
    }
}

criterion_group!(benches, wal_decode);

fn main() {
    // One --waldump pass and nothing else, for callgrind to count.
    if std::env::args().any(|a| a == "--waldump-once") {
        let (start, end, files) = info();
        let mut null = std::io::BufWriter::new(std::fs::File::create("/dev/null").unwrap());
        decode_files(&files, start, end, &mut null);
        null.flush().unwrap();
        return;
    }
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if filter.is_empty() || filter.iter().any(|f| "wal_decode".contains(f.as_str())) {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if filter.is_empty() || filter.iter().any(|f| "against_pg_waldump".contains(f.as_str())) {
        against_pg_waldump();
    }
}
