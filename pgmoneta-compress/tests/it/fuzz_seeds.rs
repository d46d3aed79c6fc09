//! Replays the `decompress_*` fuzz targets' seed corpora, so CI checks their invariants.

use pgmoneta_compress::Algorithm;
use pgmoneta_testkit::fuzz_seeds as seeds;

#[test]
fn decompress_seed_corpora() {
    for (target, algorithm) in [
        ("decompress_gzip", Algorithm::Gzip),
        ("decompress_zstd", Algorithm::Zstd),
        ("decompress_lz4", Algorithm::Lz4),
        ("decompress_bzip2", Algorithm::Bzip2),
    ] {
        let files = seeds(target);
        assert!(files.len() >= 2, "{target}");
        for (name, data) in &files {
            let ok = std::panic::catch_unwind(|| pgmoneta_compress::fuzzing::check_decoder(algorithm, data));
            assert!(ok.is_ok(), "{target}/{name} breaks an invariant");
            // The seeds are valid files, made by the reference tools or in upstream's layout, except
            // inputs that once broke an invariant (`crash-*`), kept as regression cases.
            let decodes = pgmoneta_compress::decompress(algorithm, data, 1 << 20).is_ok();
            assert_eq!(decodes, !name.starts_with("crash-"), "{target}/{name}");
        }
    }
}
