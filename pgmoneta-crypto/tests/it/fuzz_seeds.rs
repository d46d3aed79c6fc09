//! Replays the `aes_decrypt` fuzz target's seed corpus, so CI checks its invariants.

#[test]
fn aes_decrypt_seed_corpus() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/aes_decrypt");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let ok = std::panic::catch_unwind(|| pgmoneta_crypto::fuzzing::check_decrypt(&data));
        assert!(ok.is_ok(), "{} breaks an invariant", path.display());
        n += 1;
    }
    assert!(n >= 3);
}
