//! Replays the fuzz targets' seed corpora, so that CI checks the fuzzing invariants without a
//! fuzzer.

use pgmoneta_testkit::fuzz_seeds as corpus;

#[test]
fn config_parse_seed_corpus() {
    let files = corpus("config_parse");
    assert!(files.len() >= 8, "seed corpus shrank to {} files", files.len());
    for (name, data) in &files {
        let result = std::panic::catch_unwind(|| pgmoneta_core::config::fuzzing::check_config(data));
        assert!(result.is_ok(), "seed {name} breaks an invariant");
    }
}

#[test]
fn seed_corpus_covers_valid_and_invalid_files() {
    use pgmoneta_core::config::Config;
    let outcomes: Vec<(String, bool)> = corpus("config_parse")
        .into_iter()
        .map(|(name, data)| (name, Config::parse(&String::from_utf8_lossy(&data), "seed").check().is_ok()))
        .collect();
    assert!(outcomes.iter().any(|(_, ok)| *ok), "no valid seed: {outcomes:?}");
    assert!(outcomes.iter().any(|(_, ok)| !*ok), "no invalid seed: {outcomes:?}");
    assert!(outcomes.iter().any(|(n, ok)| n == "full-valid" && *ok), "{outcomes:?}");
}
