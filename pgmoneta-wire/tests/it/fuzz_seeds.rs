//! Replays the fuzz targets' seed corpora (bytes recorded from PostgreSQL 15, plus crafted
//! messages), so that CI checks the fuzzing invariants without a fuzzer.

use pgmoneta_testkit::fuzz_seeds as corpus;

#[test]
fn backend_message_seed_corpus() {
    let files = corpus("backend_message");
    assert!(files.len() >= 5);
    for (name, data) in &files {
        let ok = std::panic::catch_unwind(|| pgmoneta_wire::message::fuzzing::check_backend_stream(data));
        assert!(ok.is_ok(), "seed {name} breaks an invariant");
    }
    // The recorded sessions decode completely with the default limits.
    for (name, data) in &files {
        let mut decoder = pgmoneta_wire::message::backend::BackendDecoder::new();
        let mut buf = bytes::BytesMut::from(&data[..]);
        let mut count = 0;
        while let Some(_msg) = decoder.decode(&mut buf).unwrap_or_else(|e| panic!("{name}: {e}")) {
            count += 1;
        }
        assert!(buf.is_empty() && count > 3, "{name}: {count} messages, {} bytes left", buf.len());
    }
}

#[test]
fn replication_message_seed_corpus() {
    let files = corpus("replication_message");
    assert!(files.len() >= 8);
    for (name, data) in &files {
        let ok = std::panic::catch_unwind(|| pgmoneta_wire::message::fuzzing::check_replication_payload(data));
        assert!(ok.is_ok(), "seed {name} breaks an invariant");
    }
}
