//! Compression, encryption and hashing throughput on real PostgreSQL files (the test corpus, `pgmoneta_testkit::corpus`):
//! every codec at its fastest and default levels, zstd with 1 and 2 workers, AES-256-GCM,
//! SHA-512 and CRC32C. Each of our streaming adapters runs next to the library used directly in
//! one call (`reference`), so `benches/report.py` can give the overhead as a ratio from the same
//! run.
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod common;

use std::io::Write;

use common::{input, ours_compress, ours_decompress, reference_compress, reference_decompress, CHUNK};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgmoneta_compress::{Algorithm, EncoderOptions};
use pgmoneta_crypto::{Cipher, EncryptWriter, HashAlgorithm, HashingWriter, MasterKey};

fn compression(c: &mut Criterion) {
    let data = input();
    for algorithm in Algorithm::COMPRESSING {
        let mut group = c.benchmark_group(format!("compress_{algorithm}"));
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.sample_size(10);
        for (kind, level) in [("fastest", algorithm.fastest_level()), ("default", algorithm.default_level())] {
            let options = EncoderOptions { level, workers: 0 };
            group.bench_function(BenchmarkId::new("ours", kind), |b| {
                b.iter(|| ours_compress(algorithm, options, &data))
            });
            group.bench_function(BenchmarkId::new("reference", kind), |b| {
                b.iter(|| reference_compress(algorithm, level, &data))
            });
        }
        if algorithm == Algorithm::Zstd {
            for workers in [1u32, 2] {
                let options = EncoderOptions { level: algorithm.default_level(), workers };
                group.bench_function(BenchmarkId::new("ours", format!("default_{workers}_workers")), |b| {
                    b.iter(|| ours_compress(algorithm, options, &data))
                });
            }
        }
        group.finish();

        let packed = ours_compress(algorithm, EncoderOptions::default_for(algorithm), &data);
        let mut group = c.benchmark_group(format!("decompress_{algorithm}"));
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.sample_size(10);
        let mut out = Vec::with_capacity(data.len());
        group.bench_function("ours", |b| b.iter(|| ours_decompress(algorithm, &packed, &mut out)));
        group
            .bench_function("reference", |b| b.iter(|| reference_decompress(algorithm, &packed, data.len(), &mut out)));
        group.finish();
    }
}

fn crypto(c: &mut Criterion) {
    let data = input();
    let master = MasterKey::from_bytes([9; 64]);
    let mut group = c.benchmark_group("aes_256_gcm");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("ours", |b| {
        b.iter(|| {
            let mut w = EncryptWriter::new(&master, Cipher::Aes256Gcm, Vec::with_capacity(data.len() + 64)).unwrap();
            for chunk in data.chunks(CHUNK) {
                w.write_all(chunk).unwrap();
            }
            w.finish().unwrap()
        })
    });
    let key = [7u8; 32];
    let iv = [1u8; 12];
    group.bench_function("reference", |b| {
        b.iter(|| {
            let mut tag = [0u8; 16];
            openssl::symm::encrypt_aead(openssl::symm::Cipher::aes_256_gcm(), &key, Some(&iv), &[], &data, &mut tag)
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("sha512");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("ours", |b| {
        b.iter(|| {
            let mut w = HashingWriter::new(std::io::sink(), HashAlgorithm::Sha512);
            for chunk in data.chunks(CHUNK) {
                w.write_all(chunk).unwrap();
            }
            w.finish_hex().1
        })
    });
    group.bench_function("reference", |b| b.iter(|| openssl::sha::sha512(&data)));
    group.finish();

    let mut group = c.benchmark_group("crc32c");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("ours", |b| b.iter(|| pgmoneta_crypto::crc32c(&data)));
    group.finish();

    let mut group = c.benchmark_group("memcpy");
    group.throughput(Throughput::Bytes(data.len() as u64));
    let mut dst = vec![0u8; data.len()];
    group.bench_function("reference", |b| b.iter(|| dst.copy_from_slice(&data)));
    group.finish();
}

/// Each manifest checksum algorithm alone, and the per-byte work of storing one file without
/// the network or the disk: the plain bytes' manifest checksum, then zstd level 3 (or nothing),
/// then the SHA-512 of the stored bytes for `backup.sha512` (one SHA-512 in all when the file
/// is stored plain and the manifest's is SHA-512: a backup hashes no byte twice).
fn checksums_and_pipeline(c: &mut Criterion) {
    use pgmoneta_storage::manifest::ManifestAlgorithm;
    let data = input();
    let mut group = c.benchmark_group("manifest_checksum");
    group.throughput(Throughput::Bytes(data.len() as u64));
    for algorithm in [ManifestAlgorithm::Sha512, ManifestAlgorithm::Sha256, ManifestAlgorithm::Crc32c] {
        group.bench_function(algorithm.name(), |b| {
            b.iter(|| {
                let mut sum = algorithm.checksum();
                for chunk in data.chunks(CHUNK) {
                    sum.write_all(chunk).unwrap();
                }
                sum.finish_hex()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("store_pipeline");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for compress in [Algorithm::None, Algorithm::Zstd] {
        for algorithm in [ManifestAlgorithm::Sha512, ManifestAlgorithm::Crc32c] {
            let id = format!("{}_{}", compress.name(), algorithm.name());
            group.bench_function(id, |b| {
                let once = compress == Algorithm::None && algorithm == ManifestAlgorithm::Sha512;
                b.iter(|| {
                    let mut sum = if once { ManifestAlgorithm::Crc32c.checksum() } else { algorithm.checksum() };
                    let stored = HashingWriter::new(std::io::sink(), HashAlgorithm::Sha512);
                    let options = EncoderOptions { level: 3, workers: 0 };
                    let mut encoder = pgmoneta_compress::Encoder::new(compress, options, stored).unwrap();
                    for chunk in data.chunks(CHUNK) {
                        if !once {
                            sum.write_all(chunk).unwrap();
                        }
                        encoder.write_all(chunk).unwrap();
                    }
                    (sum.finish_hex(), encoder.finish().unwrap().finish_hex().1)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, compression, crypto, checksums_and_pipeline);
criterion_main!(benches);
