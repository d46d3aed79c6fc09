use std::io::{Read, Write};

use pgmoneta_compress::{
    compress, compress_file, decompress, decompress_detect, decompress_file, Algorithm, CompressError, Compression,
    Decoder, Encoder, EncoderOptions, Side,
};
use proptest::prelude::*;

use crate::{corpus, wal_segment};

const LIMIT: u64 = 1 << 30;

fn stream_compress(algorithm: Algorithm, options: EncoderOptions, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut enc = Encoder::new(algorithm, options, Vec::new()).unwrap();
    for piece in data.chunks(chunk.max(1)) {
        enc.write_all(piece).unwrap();
    }
    enc.finish().unwrap()
}

fn stream_decompress(algorithm: Algorithm, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut dec = Decoder::new(algorithm, data).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        let n = dec.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_codec_and_level_roundtrips(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        repeat in 1usize..4,
        level_pick in 0usize..3,
        chunk in 1usize..5000,
    ) {
        let data = data.repeat(repeat);
        for algorithm in Algorithm::COMPRESSING {
            let (lo, hi) = algorithm.level_range();
            let level = [lo, algorithm.default_level(), hi][level_pick];
            let packed = stream_compress(algorithm, EncoderOptions { level, workers: 0 }, &data, chunk);
            prop_assert_eq!(Algorithm::from_magic(&packed), Some(algorithm));
            prop_assert_eq!(&stream_decompress(algorithm, &packed, chunk), &data);
            prop_assert_eq!(&decompress_detect(&packed, LIMIT).unwrap(), &data);
        }
    }
}

#[test]
fn real_postgresql_files_roundtrip_at_every_level_kind() {
    let heap = corpus("pg15/data/pgbench_accounts");
    let wal = wal_segment(1);
    for (name, data) in [("heap", &heap), ("wal", &wal)] {
        for algorithm in Algorithm::COMPRESSING {
            for level in [algorithm.fastest_level(), algorithm.default_level()] {
                let packed = compress(algorithm, level, data).unwrap();
                assert!(
                    packed.len() < data.len() / 2,
                    "{name} {algorithm} {level}: {} of {}",
                    packed.len(),
                    data.len()
                );
                assert!(decompress(algorithm, &packed, LIMIT).unwrap() == *data, "{name} {algorithm} {level}");
            }
        }
    }
    // zstd with workers gives a valid stream too.
    let packed = stream_compress(Algorithm::Zstd, EncoderOptions { level: 3, workers: 2 }, &heap, 1 << 20);
    assert!(decompress(Algorithm::Zstd, &packed, LIMIT).unwrap() == heap);
}

#[test]
fn empty_input_roundtrips() {
    for algorithm in Algorithm::COMPRESSING {
        let packed = compress(algorithm, algorithm.default_level(), b"").unwrap();
        assert_eq!(decompress(algorithm, &packed, 0).unwrap(), b"", "{algorithm}");
    }
}

#[test]
fn truncated_and_damaged_streams_are_errors() {
    let data = corpus("pg15/data/pgbench_accounts_pkey");
    for algorithm in Algorithm::COMPRESSING {
        let packed = compress(algorithm, algorithm.default_level(), &data).unwrap();
        for cut in [packed.len() / 2, packed.len() - 1] {
            let err = decompress(algorithm, &packed[..cut], LIMIT).unwrap_err();
            assert!(matches!(err, CompressError::Corrupt { .. }), "{algorithm} cut at {cut}: {err}");
        }
        let mut flipped = packed.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x5a;
        match decompress(algorithm, &flipped, LIMIT) {
            Err(CompressError::Corrupt { .. }) => {}
            // The checksummed formats catch every flip; accept only an error.
            other => panic!("{algorithm}: a flipped byte gave {:?}", other.map(|v| v.len())),
        }
        let err = decompress(algorithm, b"definitely not compressed data", LIMIT).unwrap_err();
        assert!(matches!(err, CompressError::Corrupt { .. }), "{algorithm}: {err}");
    }
}

#[test]
fn output_limit_stops_decompression_bombs() {
    let zeros = vec![0u8; 10 << 20];
    for algorithm in Algorithm::COMPRESSING {
        let packed = compress(algorithm, algorithm.default_level(), &zeros).unwrap();
        assert!(packed.len() < 200_000, "{algorithm}: {}", packed.len());
        let err = decompress(algorithm, &packed, 1 << 20).unwrap_err();
        assert!(matches!(err, CompressError::OutputLimit { limit: 1_048_576 }), "{algorithm}: {err}");
        assert_eq!(decompress(algorithm, &packed, 10 << 20).unwrap().len(), 10 << 20);
    }
}

#[test]
fn codes_names_and_suffixes_match_upstream() {
    let cases = [
        ("none", 0, Algorithm::None, Side::Client, ""),
        ("gzip", 17, Algorithm::Gzip, Side::Client, ".gz"),
        ("zstd", 18, Algorithm::Zstd, Side::Client, ".zstd"),
        ("lz4", 19, Algorithm::Lz4, Side::Client, ".lz4"),
        ("bz2", 20, Algorithm::Bzip2, Side::Client, ".bz2"),
        ("server-gzip", 33, Algorithm::Gzip, Side::Server, ".gz"),
        ("server-zstd", 34, Algorithm::Zstd, Side::Server, ".zstd"),
        ("server-lz4", 35, Algorithm::Lz4, Side::Server, ".lz4"),
    ];
    for (name, code, algorithm, side, suffix) in cases {
        let c = Compression::from_config_name(name).unwrap();
        assert_eq!(
            (c.algorithm, c.side, c.code(), c.suffix(), c.config_name()),
            (algorithm, side, code, suffix, name.to_owned())
        );
        assert_eq!(Compression::from_code(code).unwrap(), c);
        // The configuration model in pgmoneta-core agrees on every code.
        let core = <pgmoneta_core::config::Compression as pgmoneta_core::config::ConfValue>::parse_value(name).unwrap();
        assert_eq!(core.code(), code, "{name}");
    }
    assert_eq!(Compression::from_config_name("client-bzip2").unwrap().code(), 20);
    assert_eq!(Compression::from_code(6).unwrap(), Compression { algorithm: Algorithm::Zstd, side: Side::Server });
    assert!(
        Compression::from_code(36).is_err()
            && Compression::from_code(21).is_err()
            && Compression::from_config_name("server-bz2").is_err()
    );
    assert_eq!(Algorithm::Zstd.clamp_level(99), 22);
    assert_eq!(Algorithm::Gzip.clamp_level(0), 1);
    assert_eq!(Algorithm::from_suffix("backup.tar.zstd"), Some(Algorithm::Zstd));
    assert_eq!(Algorithm::from_suffix("backup.tgz"), Some(Algorithm::Gzip));
    assert_eq!(Algorithm::from_suffix("16384"), None);
}

#[test]
fn in_place_files_are_replaced_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let original = corpus("pg15/data/pgbench_accounts_pkey");
    for algorithm in Algorithm::COMPRESSING {
        let source = dir.path().join("16384");
        std::fs::write(&source, &original).unwrap();
        let packed = compress_file(&source, algorithm, EncoderOptions::default_for(algorithm)).unwrap();
        assert_eq!(packed, dir.path().join(format!("16384{}", algorithm.suffix())));
        assert!(!source.exists());
        let restored = decompress_file(&packed).unwrap();
        assert_eq!(restored, source);
        assert!(!packed.exists());
        assert!(std::fs::read(&source).unwrap() == original);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&source).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_file(&source).unwrap();
    }

    // A truncated file: an error, the source kept, nothing under the target name, no temp left.
    let source = dir.path().join("wal");
    std::fs::write(&source, &original).unwrap();
    let packed = compress_file(&source, Algorithm::Zstd, EncoderOptions::default_for(Algorithm::Zstd)).unwrap();
    let bytes = std::fs::read(&packed).unwrap();
    std::fs::write(&packed, &bytes[..bytes.len() / 2]).unwrap();
    let err = decompress_file(&packed).unwrap_err();
    assert!(matches!(err, CompressError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("wal.zstd"), "{err}");
    assert!(packed.exists() && !source.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left behind");

    // A suffix that lies.
    let liar = dir.path().join("liar.zstd");
    std::fs::write(&liar, compress(Algorithm::Gzip, 6, b"hello").unwrap()).unwrap();
    let err = decompress_file(&liar).unwrap_err();
    assert_eq!(err.to_string(), format!("{} is named as zstd data but its contents are gzip data", liar.display()));
    let plain = dir.path().join("plain.bz2");
    std::fs::write(&plain, b"just text").unwrap();
    assert!(decompress_file(&plain).unwrap_err().to_string().contains("do not start with the bzip2 magic bytes"));
    let unknown = dir.path().join("file.txt");
    std::fs::write(&unknown, b"x").unwrap();
    assert!(matches!(decompress_file(&unknown), Err(CompressError::UnknownSuffix { .. })));
}

#[test]
fn upstream_lz4_block_files_restore() {
    // Upstream's layout: [u32 LE length][LZ4 block of <= 4096 input bytes]... Blocks compressed
    // independently are a valid instance of it.
    let data = wal_segment(2);
    let mut file = Vec::new();
    for chunk in data.chunks(4096) {
        let block = lz4::block::compress(chunk, None, false).unwrap();
        file.extend_from_slice(&(block.len() as u32).to_le_bytes());
        file.extend_from_slice(&block);
    }
    let dec = Decoder::new(Algorithm::Lz4, &file[..]).unwrap();
    assert!(dec.is_legacy_lz4());
    assert!(decompress(Algorithm::Lz4, &file, LIMIT).unwrap() == data);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000000010000000000000003.lz4");
    std::fs::write(&path, &file).unwrap();
    let restored = decompress_file(&path).unwrap();
    assert!(std::fs::read(restored).unwrap() == data);
    // New files are frames.
    assert!(compress(Algorithm::Lz4, 1, &data).unwrap().starts_with(&pgmoneta_compress::LZ4_FRAME_MAGIC));
}
/// Found by the decompress_zstd fuzz target: a frame declaring 44 bytes of content and holding
/// none. Read in pieces smaller than the frame, the zstd reader used to report a clean, empty end.
#[test]
fn damaged_zstd_frame_is_an_error_whatever_the_read_size() {
    let data = [0x28u8, 0xb5, 0x2f, 0xfd, 0x24, 0x2c, 0x01, 0x00, 0x00, 0x99, 0xe9, 0xd8, 0x51];
    for size in [1usize, 8, 32, 333, 4096, 1 << 20] {
        let mut d = Decoder::new(Algorithm::Zstd, &data[..]).unwrap();
        let mut buf = vec![0u8; size];
        let outcome = loop {
            match d.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        assert!(outcome.is_err(), "read size {size}: accepted a damaged frame");
    }
    assert!(decompress(Algorithm::Zstd, &data, LIMIT).is_err());
}

fn through_bufreader(algorithm: Algorithm, packed: &[u8]) -> Decoder<std::io::BufReader<&[u8]>> {
    Decoder::new(algorithm, std::io::BufReader::with_capacity(4096, packed)).unwrap()
}

/// Every way of reading a decoder gives the same bytes: reads of any size (zstd decodes a frame
/// straight into a buffer large enough for it), `read_to_end` (straight into the vector),
/// `copy_to`, from memory (frames decoded where they lie) and through a small `BufReader`
/// (frames collected first); and a stream cut anywhere is an error on every path.
#[test]
fn every_read_path_agrees_and_detects_truncation() {
    let mut data = corpus("pg15/data/pgbench_accounts");
    data.truncate(9 << 20);
    // zstd twice: one frame as written now, and frames of 4 MB as older repositories hold.
    let zstd_frames = || data.chunks(4 << 20).flat_map(|c| compress(Algorithm::Zstd, 1, c).unwrap()).collect();
    let inputs = Algorithm::COMPRESSING
        .into_iter()
        .map(|a| (a, compress(a, a.fastest_level(), &data).unwrap()))
        .chain([(Algorithm::Zstd, zstd_frames())]);
    for (algorithm, packed) in inputs {
        for read_size in [100usize, 64 << 10, 5 << 20] {
            assert!(stream_decompress(algorithm, &packed, read_size) == data, "{algorithm} reads of {read_size}");
        }
        let mut v = b"prefix".to_vec();
        Decoder::new(algorithm, &packed[..]).unwrap().read_to_end(&mut v).unwrap();
        assert!(v[..6] == *b"prefix" && v[6..] == data, "{algorithm} read_to_end");
        let mut v = Vec::new();
        through_bufreader(algorithm, &packed).read_to_end(&mut v).unwrap();
        assert!(v == data, "{algorithm} read_to_end through a BufReader");
        let mut v = Vec::new();
        assert_eq!(Decoder::new(algorithm, &packed[..]).unwrap().copy_to(&mut v).unwrap(), data.len() as u64);
        assert!(v == data, "{algorithm} copy_to");
        let mut v = Vec::new();
        through_bufreader(algorithm, &packed).copy_to(&mut v).unwrap();
        assert!(v == data, "{algorithm} copy_to through a BufReader");

        for cut in [packed.len() - 1, packed.len() / 2, 10] {
            let short = &packed[..cut];
            let mut v = Vec::new();
            let r = Decoder::new(algorithm, short).and_then(|mut d| d.read_to_end(&mut v));
            assert!(r.is_err(), "{algorithm} read_to_end accepted a stream cut at {cut}");
            let r = through_bufreader(algorithm, short).copy_to(&mut Vec::new());
            assert!(
                matches!(r, Err(pgmoneta_compress::CopyError::Decode(_))),
                "{algorithm} copy_to of a stream cut at {cut}: {r:?}"
            );
        }
    }
}

/// Every zstd file is one frame, whatever its size, level and worker threads, so that a reader
/// that stops at the end of the first frame (upstream pgmoneta's) still gets all of it. Up to
/// 16 MB (a WAL segment) the frame declares its content size.
#[test]
fn zstd_writes_one_frame_whatever_the_size() {
    let mut base = corpus("pg15/data/pgbench_accounts");
    base.extend(wal_segment(0));
    let big: Vec<u8> = base.iter().copied().cycle().take(40 << 20).collect();
    for len in [0usize, 1000, 16 << 20, (16 << 20) + 1, 40 << 20] {
        let data = &big[..len];
        for workers in [0u32, 1, 2] {
            for chunk in [8192usize, 5 << 20] {
                let packed = stream_compress(Algorithm::Zstd, EncoderOptions { level: 3, workers }, data, chunk);
                let what = format!("{len} bytes, {workers} workers, writes of {chunk}");
                assert_eq!(zstd::zstd_safe::find_frame_compressed_size(&packed), Ok(packed.len()), "{what}");
                let declared = zstd::zstd_safe::get_frame_content_size(&packed).unwrap();
                if len <= 16 << 20 {
                    assert_eq!(declared, Some(len as u64), "{what}");
                }
                let mut first = Vec::new();
                zstd::stream::read::Decoder::new(&packed[..]).unwrap().single_frame().read_to_end(&mut first).unwrap();
                assert!(first == data, "{what}: the first frame does not hold everything");
                assert!(decompress(Algorithm::Zstd, &packed, LIMIT).unwrap() == data, "{what}");
            }
        }
    }
}

/// `copy_to` says which side failed: a full disk is not reported as a damaged file.
#[test]
fn copy_to_tells_write_failures_from_damaged_input() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("no space left"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    for algorithm in Algorithm::COMPRESSING {
        let packed = compress(algorithm, algorithm.fastest_level(), b"some bytes to write").unwrap();
        let r = Decoder::new(algorithm, &packed[..]).unwrap().copy_to(&mut Full);
        match r {
            Err(pgmoneta_compress::CopyError::Write(e)) => assert!(e.to_string().contains("no space"), "{e}"),
            other => panic!("{algorithm}: {other:?}"),
        }
    }
}
