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

#[test]
fn wal_decoder_seed_corpus() {
    let files = corpus("wal_decoder");
    assert!(files.len() >= 6);
    for (name, data) in &files {
        let ok = std::panic::catch_unwind(|| pgmoneta_wire::wal::fuzzing::check_wal_decoder(data));
        assert!(ok.is_ok(), "seed {name} breaks an invariant");
    }
    // Damaged and cut versions of the seeds hold the invariants too.
    for (name, data) in &files {
        for cut in [0, 1, 23, 40, 8191, 8192, 8193, data.len() / 3] {
            let mut d = data[..cut.min(data.len())].to_vec();
            if d.len() > 100 {
                let i = d.len() / 2;
                d[i] ^= 0x5A;
            }
            let ok = std::panic::catch_unwind(|| pgmoneta_wire::wal::fuzzing::check_wal_decoder(&d));
            assert!(ok.is_ok(), "seed {name} cut at {cut} breaks an invariant");
        }
    }
}
