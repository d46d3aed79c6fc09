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
fn decode(segments: &[Vec<u8>], range: Option<(Lsn, Lsn)>, out: Option<&mut dyn Write>) -> usize {
    // Like pg_waldump -s, start at the first record of the range (the corpus starts in the
    // first segment, at 0/1000000).
    let first = range.map_or(0x0100_0000, |(s, _)| s.0);
    let skip = (first - 0x0100_0000) as usize;
    let mut d = WalDecoder::new(Lsn(first), None, WalSegmentSize::DEFAULT);
    let mut n = 0;
    let mut out = out;
    let mut line = String::new();
    for (i, s) in segments.iter().enumerate() {
        d.feed(if i == 0 { &s[skip..] } else { s });
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

fn wal_decode(c: &mut Criterion) {
    let (_, _, files) = info();
    let segments: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
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
fn against_pg_waldump() {
    let tool = ["/usr/lib/postgresql/15/bin/pg_waldump"].iter().map(PathBuf::from).find(|p| p.exists());
    let Some(tool) = tool else {
        eprintln!("pg_waldump (PostgreSQL 15) not installed: comparison skipped");
        return;
    };
    let (start, end, files) = info();
    let dir = corpus_dir().join("wal");
    let (mut theirs, mut ours) = (Vec::new(), Vec::new());
    let mut records = 0;
    for _ in 0..7 {
        let t = Instant::now();
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
        let t = Instant::now();
        let segments: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        let mut null = std::io::BufWriter::new(std::fs::File::create("/dev/null").unwrap());
        records = decode(&segments, Some((start, end)), Some(&mut null));
        null.flush().unwrap();
        ours.push(t.elapsed());
    }
    let (t, o) = (median(theirs), median(ours));
    let lines = std::fs::read_to_string(corpus_dir().join("pg_waldump.txt")).unwrap().lines().count();
    println!(
        "\nwal against pg_waldump (PostgreSQL 15 corpus, {lines} records printed, {records} decoded, median of 7):"
    );
    println!("  pg_waldump      {:>8.1} ms  {:>10.0} records/s", t.as_secs_f64() * 1e3, lines as f64 / t.as_secs_f64());
    println!("  pgmoneta-rs     {:>8.1} ms  {:>10.0} records/s", o.as_secs_f64() * 1e3, lines as f64 / o.as_secs_f64());
    println!("  ratio (ours / pg_waldump, records/s): {:.2}", t.as_secs_f64() / o.as_secs_f64());
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
