//! Core benchmarks: configuration parsing (start-up and `conf reload`) and WAL file naming (every
//! segment the receiver writes and every file a restore scans).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgmoneta_core::config::Config;
use pgmoneta_core::{Lsn, TimelineId, WalFileKind, WalSegment, WalSegmentSize};

/// A configuration with `servers` server sections, like a large installation's.
fn config_text(servers: usize) -> String {
    let mut text = String::from(
        "[pgmoneta]\nhost = *\nmetrics = 5001\nbase_dir = /srv/pgmoneta\nunix_socket_dir = /tmp/\n\
         compression = zstd\nretention = 7,4,12,2\nlog_type = file\nblocking_timeout = 30s\n",
    );
    for i in 0..servers {
        text.push_str(&format!(
            "\n[server{i}]\nhost = db{i}.example\nport = 5432\nuser = repl\nwal_slot = slot{i}\nretention = 14\n"
        ));
    }
    text
}

fn config_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("config_parse");
    for servers in [1usize, 64] {
        let text = config_text(servers);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(servers), &text, |b, text| {
            b.iter(|| Config::parse(text, "pgmoneta.conf").check().unwrap())
        });
    }
    group.finish();
}

fn wal_names(c: &mut Criterion) {
    let size = WalSegmentSize::DEFAULT;
    let names: Vec<String> = (0..1024u64)
        .map(|i| WalSegment::containing(TimelineId(1), Lsn(i * size.bytes()), size).file_name(size))
        .collect();
    let mut group = c.benchmark_group("wal_names");
    group.throughput(Throughput::Elements(names.len() as u64));
    group.bench_function("format_1024", |b| {
        b.iter(|| {
            (0..1024u64).map(|n| WalSegment { timeline: TimelineId(1), number: n }.file_name(size).len()).sum::<usize>()
        })
    });
    group.bench_function("parse_1024", |b| {
        b.iter(|| names.iter().filter(|n| WalFileKind::parse(n, size).is_ok()).count())
    });
    group.finish();
}

criterion_group!(benches, config_parse, wal_names);
criterion_main!(benches);
