//! Inputs and the two sides of each comparison, shared by the benchmarks.
#![allow(dead_code)] // each benchmark uses a part

use std::io::{Read, Write};

use pgmoneta_compress::{Algorithm, Decoder, Encoder, EncoderOptions};

pub const CHUNK: usize = 64 << 10;

/// A file of the test corpus (`pgmoneta_testkit::corpus`), which the set-up makes.
pub fn corpus(rel: &str) -> Vec<u8> {
    pgmoneta_testkit::corpus::file(rel)
}

/// 8 MB of heap pages and 8 MB of WAL: what a backup mostly moves.
pub fn input() -> Vec<u8> {
    let mut data = corpus("pg15/data/pgbench_accounts");
    data.truncate(8 << 20);
    let wal = corpus(&format!("pg15/wal/{}", pgmoneta_testkit::corpus::info(15).segments[1]));
    data.extend_from_slice(&wal[..8 << 20]);
    data
}

pub fn ours_compress(algorithm: Algorithm, options: EncoderOptions, data: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::new(algorithm, options, Vec::with_capacity(data.len() / 2)).unwrap();
    for chunk in data.chunks(CHUNK) {
        enc.write_all(chunk).unwrap();
    }
    enc.finish().unwrap()
}

pub fn reference_compress(algorithm: Algorithm, level: i32, data: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::Zstd => {
            // The same frame settings as ours: content size and checksum.
            let mut c = zstd::bulk::Compressor::new(level).unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true)).unwrap();
            c.compress(data).unwrap()
        }
        Algorithm::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::new(level as u32),
            );
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Algorithm::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .level(level as u32)
                .block_size(lz4::BlockSize::Max4MB)
                .checksum(lz4::ContentChecksum::ChecksumEnabled)
                .build(Vec::with_capacity(data.len() / 2))
                .unwrap();
            e.write_all(data).unwrap();
            let (v, r) = e.finish();
            r.unwrap();
            v
        }
        Algorithm::Bzip2 => {
            let mut e =
                bzip2::write::BzEncoder::new(Vec::with_capacity(data.len() / 2), bzip2::Compression::new(level as u32));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        _ => unreachable!(),
    }
}

/// Ours, reading everything into a vector as the reference does.
pub fn ours_decompress(algorithm: Algorithm, packed: &[u8], out: &mut Vec<u8>) {
    out.clear();
    Decoder::new(algorithm, packed).unwrap().read_to_end(out).unwrap();
}

/// Ours, read in 64 KiB pieces that are then appended to `out`.
pub fn ours_decompress_chunked(algorithm: Algorithm, packed: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut d = Decoder::new(algorithm, packed).unwrap();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = d.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

pub fn reference_decompress(algorithm: Algorithm, packed: &[u8], size: usize, out: &mut Vec<u8>) {
    out.clear();
    match algorithm {
        Algorithm::Zstd => *out = zstd::bulk::decompress(packed, size).unwrap(),
        Algorithm::Gzip => {
            flate2::read::MultiGzDecoder::new(packed).read_to_end(out).unwrap();
        }
        Algorithm::Lz4 => {
            lz4::Decoder::new(packed).unwrap().read_to_end(out).unwrap();
        }
        Algorithm::Bzip2 => {
            bzip2::read::MultiBzDecoder::new(packed).read_to_end(out).unwrap();
        }
        _ => unreachable!(),
    }
}
