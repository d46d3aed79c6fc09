//! WAL decoding: bytes/s and records/s on the PostgreSQL 15 corpus, with and without
//! descriptions, and PostgreSQL's own `pg_waldump` on the same segments in the same run, both
//! writing text to /dev/null (`cargo bench -p pgmoneta-benches --bench wal`).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use pgmoneta_core::{Lsn, WalSegmentSize};
use pgmoneta_wire::wal::{waldump_line_into, WalDecoder};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pg15")
}

fn info() -> (Lsn, Lsn, Vec<PathBuf>) {
    let text = std::fs::read_to_string(corpus_dir().join("INFO")).unwrap();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap().to_owned();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(corpus_dir().join("wal")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    (get("start_lsn").parse().unwrap(), get("end_lsn").parse().unwrap(), files)
}

/// Decodes every segment; with `out`, writes pg_waldump's lines for [start, end). Returns the
/// records decoded.
fn decode(segments: &[bytes::Bytes], range: Option<(Lsn, Lsn)>, out: Option<&mut dyn Write>) -> usize {
    // Like pg_waldump -s, start at the first record of the range (the corpus starts in the
    // first segment, at 0/1000000).
    let first = range.map_or(0x0100_0000, |(s, _)| s.0);
    let skip = (first - 0x0100_0000) as usize;
    let mut d = WalDecoder::new(Lsn(first), None, WalSegmentSize::DEFAULT);
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
    let mut d = WalDecoder::new(start, None, WalSegmentSize::DEFAULT);
    let mut line = String::with_capacity(512);
    let mut n = 0;
    for (i, f) in files.iter().enumerate() {
        let mut bytes = pgmoneta_wire::wal::map_closed_file(f).unwrap();
        if i == 0 {
            let _ = bytes.split_to((start.0 - 0x0100_0000) as usize);
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// pg_waldump and ours on the same segments, alternating, 7 rounds each, text to /dev/null.
/// CPU seconds (user + system) used so far by this process, or by its waited-for children.
fn cpu_seconds(who: nix::sys::resource::UsageWho) -> f64 {
    let u = nix::sys::resource::getrusage(who).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

/// pg_waldump and ours on the same segments, alternating, 15 rounds each, text to /dev/null.
/// Both wall time and CPU time are measured: CPU time is what "on one core" means, and it is
/// less disturbed by other work on the machine.
fn against_pg_waldump() {
    use nix::sys::resource::UsageWho;
    let tool = ["/usr/lib/postgresql/15/bin/pg_waldump"].iter().map(PathBuf::from).find(|p| p.exists());
    let Some(tool) = tool else {
        eprintln!("pg_waldump (PostgreSQL 15) not installed: comparison skipped");
        return;
    };
    let (start, end, files) = info();
    let dir = corpus_dir().join("wal");
    let (mut theirs, mut ours) = (Vec::new(), Vec::new());
    let (mut theirs_cpu, mut ours_cpu) = (Vec::new(), Vec::new());
    let mut records = 0;
    for _ in 0..15 {
        let (t, c) = (Instant::now(), cpu_seconds(UsageWho::RUSAGE_CHILDREN));
        let status = Command::new(&tool)
            .arg("-p")
            .arg(&dir)
            .arg("-s")
            .arg(start.to_string())
            .arg("-e")
            .arg(end.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        theirs.push(t.elapsed());
        theirs_cpu.push(Duration::from_secs_f64(cpu_seconds(UsageWho::RUSAGE_CHILDREN) - c));
        let (t, c) = (Instant::now(), cpu_seconds(UsageWho::RUSAGE_SELF));
        let mut null = std::io::BufWriter::new(std::fs::File::create("/dev/null").unwrap());
        records = decode_files(&files, start, end, &mut null);
        null.flush().unwrap();
        ours.push(t.elapsed());
        ours_cpu.push(Duration::from_secs_f64(cpu_seconds(UsageWho::RUSAGE_SELF) - c));
    }
    let (t, o) = (median(theirs), median(ours));
    let (tc, oc) = (median(theirs_cpu), median(ours_cpu));
    let lines = std::fs::read_to_string(corpus_dir().join("pg_waldump.txt")).unwrap().lines().count();
    println!(
        "\nwal against pg_waldump (PostgreSQL 15 corpus, {lines} records printed, {records} decoded, median of 15):"
    );
    let row = |who: &str, wall: Duration, cpu: Duration| {
        println!(
            "  {who:<14} wall {:>6.1} ms {:>9.0} records/s   cpu {:>6.1} ms {:>9.0} records/s",
            wall.as_secs_f64() * 1e3,
            lines as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e3,
            lines as f64 / cpu.as_secs_f64()
        );
    };
    row("pg_waldump", t, tc);
    row("pgmoneta-rs", o, oc);
    println!(
        "  ratio (ours / pg_waldump, records/s): wall {:.2}, cpu {:.2}",
        t.as_secs_f64() / o.as_secs_f64(),
        tc.as_secs_f64() / oc.as_secs_f64()
    );
}

criterion_group!(benches, wal_decode);

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if filter.is_empty() || filter.iter().any(|f| "wal_decode".contains(f.as_str())) {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if filter.is_empty() || filter.iter().any(|f| "against_pg_waldump".contains(f.as_str())) {
        against_pg_waldump();
    }
}
