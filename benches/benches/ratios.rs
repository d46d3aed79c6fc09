//! The performance targets, as ratios measured in one run: each of our streaming adapters against
//! the library used directly in one call, timed alternately so that machine noise hits both
//! sides alike; plus the absolute floors for AES-256-GCM and CRC32C. Prints a Markdown table
//! (kept in docs/benchmarks.md) and exits non-zero when a target is missed.
//!
//! `cargo bench -p pgmoneta-benches --bench ratios`
#![allow(missing_docs)]

mod common;

use std::io::Write;
use std::time::Instant;

use common::{
    input, ours_compress, ours_decompress, ours_decompress_chunked, reference_compress, reference_decompress, CHUNK,
};
use pgmoneta_compress::{Algorithm, EncoderOptions};
use pgmoneta_crypto::{Cipher, EncryptWriter, HashAlgorithm, HashingWriter, MasterKey};

const ROUNDS: usize = 15;

/// Prints one table row: name, our time, the reference time, their ratio, the target, met.
type Row<'a> = dyn FnMut(String, f64, Option<f64>, Option<f64>, &str, bool) + 'a;

fn time(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median times of `ours` and `reference` and the median of the per-round ratios.
fn paired(ours: &mut dyn FnMut(), reference: &mut dyn FnMut()) -> (f64, f64, f64) {
    ours();
    reference();
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (ta, tb) = if round % 2 == 0 {
            let ta = time(ours);
            (ta, time(reference))
        } else {
            let tb = time(reference);
            (time(ours), tb)
        };
        a.push(ta);
        b.push(tb);
        r.push(ta / tb);
    }
    (median(a), median(b), median(r))
}

fn single(f: &mut dyn FnMut()) -> f64 {
    f();
    median((0..ROUNDS).map(|_| time(f)).collect())
}

fn mbs(bytes: usize, secs: f64) -> String {
    format!("{:.0} MB/s", bytes as f64 / secs / 1e6)
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent; do the work only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // An optional argument other than --bench (zstd, gzip, lz4, bzip2, aes, sha, crc) runs only
    // that part.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let want = |part: &str| filter.as_deref().is_none_or(|f| part.contains(f));
    let data = input();
    let n = data.len();
    let mut failures = Vec::new();
    println!("| what | ours | reference | ours / reference | target |");
    println!("|---|---|---|---|---|");
    let mut row = |what: String, ours: f64, reference: Option<f64>, ratio: Option<f64>, target: &str, ok: bool| {
        println!(
            "| {what} | {} | {} | {} | {target}{} |",
            mbs(n, ours),
            reference.map_or(String::new(), |r| mbs(n, r)),
            ratio.map_or(String::new(), |r| format!("{r:.3}")),
            if ok { "" } else { " **missed**" }
        );
        if !ok {
            failures.push(what);
        }
    };

    for algorithm in Algorithm::COMPRESSING.into_iter().filter(|a| want(&a.to_string())) {
        for (kind, level) in [("fastest", algorithm.fastest_level()), ("default", algorithm.default_level())] {
            let options = EncoderOptions { level, workers: 0 };
            let (a, b, r) = paired(&mut || drop(ours_compress(algorithm, options, &data)), &mut || {
                drop(reference_compress(algorithm, level, &data))
            });
            // zstd holds a file's first 16 MB to write it as one frame (upstream's reader stops
            // after the first frame), a copy the one-shot reference does not make.
            let limit = if algorithm == Algorithm::Zstd { 1.15 } else { 1.05 };
            row(
                format!("{algorithm} compress, {kind} level {level}"),
                a,
                Some(b),
                Some(r),
                &format!("ratio <= {limit:.2}"),
                r <= limit,
            );
        }
        let packed = ours_compress(algorithm, EncoderOptions::default_for(algorithm), &data);
        let (mut o1, mut o2) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (a, b, r) = paired(&mut || ours_decompress(algorithm, &packed, &mut o1), &mut || {
            reference_decompress(algorithm, &packed, n, &mut o2)
        });
        row(format!("{algorithm} decompress"), a, Some(b), Some(r), "ratio <= 1.05", r <= 1.05);
        if algorithm == Algorithm::Zstd {
            let (a, b, r) = paired(&mut || ours_decompress_chunked(algorithm, &packed, &mut o1), &mut || {
                reference_decompress(algorithm, &packed, n, &mut o2)
            });
            row(format!("{algorithm} decompress in 64 KiB reads"), a, Some(b), Some(r), "report", true);
            let (a, b, r) = paired(
                &mut || {
                    pgmoneta_compress::Decoder::new(algorithm, &packed[..])
                        .unwrap()
                        .copy_to(&mut std::io::sink())
                        .unwrap();
                },
                &mut || reference_decompress(algorithm, &packed, n, &mut o2),
            );
            row(format!("{algorithm} decompress, copy_to a sink"), a, Some(b), Some(r), "report", true);
        }
    }
    if want("zstd") {
        let (a, b, r) = paired(
            &mut || {
                let mut e = zstd::stream::write::Encoder::new(Vec::with_capacity(n / 2), 3).unwrap();
                for c in data.chunks(CHUNK) {
                    e.write_all(c).unwrap();
                }
                drop(e.finish().unwrap());
            },
            &mut || drop(zstd::bulk::compress(&data, 3).unwrap()),
        );
        row(
            "zstd compress, level 3: the crate's own streaming encoder vs its one-shot".to_owned(),
            a,
            Some(b),
            Some(r),
            "report",
            true,
        );
    }
    for workers in [1u32, 2].into_iter().filter(|_| want("zstd")) {
        let options = EncoderOptions { level: 3, workers };
        let (a, b, r) = paired(&mut || drop(ours_compress(Algorithm::Zstd, options, &data)), &mut || {
            drop(ours_compress(Algorithm::Zstd, EncoderOptions { level: 3, workers: 0 }, &data))
        });
        row(format!("zstd compress, level 3, {workers} worker(s) vs none"), a, Some(b), Some(r), "report", true);
    }

    if want("zstd") {
        // A file longer than the 16 MB held for the one-shot call: zstd's streaming compressor
        // writes it as one frame (as upstream's reader needs), on the calling thread or on
        // zstd's own worker threads, against the one-shot call on the whole input.
        let big: Vec<u8> = data.iter().copied().cycle().take(40 << 20).collect();
        let scale = |t: f64| t * n as f64 / big.len() as f64;
        for workers in [0u32, 1, 2] {
            let options = EncoderOptions { level: 3, workers };
            let (a, b, r) = paired(&mut || drop(ours_compress(Algorithm::Zstd, options, &big)), &mut || {
                drop(reference_compress(Algorithm::Zstd, 3, &big))
            });
            row(
                format!("zstd compress, level 3, 40 MB as one streamed frame, {workers} worker(s) vs one-shot"),
                scale(a),
                Some(scale(b)),
                Some(r),
                "report",
                true,
            );
        }
    }

    if want("aes sha crc memcpy") {
        others(&data, &mut row);
    }

    if !failures.is_empty() {
        eprintln!("targets missed: {}", failures.join(", "));
        std::process::exit(1);
    }
}

/// AES-256-GCM, SHA-512, CRC32C and memcpy.
fn others(data: &[u8], row: &mut Row<'_>) {
    let n = data.len();
    let master = MasterKey::from_bytes([9; 64]);
    let (key, iv) = ([7u8; 32], [1u8; 12]);
    let (a, b, r) = paired(
        &mut || {
            let mut w = EncryptWriter::new(&master, Cipher::Aes256Gcm, Vec::with_capacity(n + 64)).unwrap();
            for chunk in data.chunks(CHUNK) {
                w.write_all(chunk).unwrap();
            }
            drop(w.finish().unwrap());
        },
        &mut || {
            let mut tag = [0u8; 16];
            drop(
                openssl::symm::encrypt_aead(openssl::symm::Cipher::aes_256_gcm(), &key, Some(&iv), &[], data, &mut tag)
                    .unwrap(),
            );
        },
    );
    row("AES-256-GCM encrypt".to_owned(), a, Some(b), Some(r), ">= 1000 MB/s", n as f64 / a >= 1e9);
    let (a, b, r) = paired(
        &mut || {
            let mut w = HashingWriter::new(std::io::sink(), HashAlgorithm::Sha512);
            for chunk in data.chunks(CHUNK) {
                w.write_all(chunk).unwrap();
            }
            drop(w.finish_hex());
        },
        &mut || {
            std::hint::black_box(openssl::sha::sha512(data));
        },
    );
    row("SHA-512".to_owned(), a, Some(b), Some(r), "report", true);
    let a = single(&mut || {
        std::hint::black_box(pgmoneta_crypto::crc32c(data));
    });
    row("CRC32C".to_owned(), a, None, None, ">= 5000 MB/s", n as f64 / a >= 5e9);
    let mut dst = vec![0u8; n];
    let a = single(&mut || dst.copy_from_slice(data));
    row("memcpy (for scale)".to_owned(), a, None, None, "report", true);
}
