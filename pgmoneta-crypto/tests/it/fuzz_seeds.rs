//! Replays the `aes_decrypt` fuzz target's seed corpus, so CI checks its invariants.

#[test]
fn aes_decrypt_seed_corpus() {
    let seeds = pgmoneta_testkit::fuzz_seeds("aes_decrypt");
    assert!(seeds.len() >= 3);
    for (name, data) in &seeds {
        let ok = std::panic::catch_unwind(|| pgmoneta_crypto::fuzzing::check_decrypt(data));
        assert!(ok.is_ok(), "{name} breaks an invariant");
    }
}
