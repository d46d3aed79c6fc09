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

#[test]
fn cluster_message_seed_corpus() {
    let files = corpus("cluster_message");
    assert!(files.len() >= 8);
    for (name, data) in &files {
        let ok = std::panic::catch_unwind(|| pgmoneta_wire::cluster::check_messages(data));
        assert!(ok.is_ok(), "seed {name} breaks an invariant");
        // Every cut of a seed holds them too.
        for cut in 0..data.len() {
            let ok = std::panic::catch_unwind(|| pgmoneta_wire::cluster::check_messages(&data[..cut]));
            assert!(ok.is_ok(), "seed {name} cut at {cut} breaks an invariant");
        }
    }
    // The seeds that hold messages are read as such.
    let hello = &files.iter().find(|(n, _)| n == "hello").unwrap().1;
    let m = pgmoneta_wire::cluster::receive(&mut hello.as_slice()).unwrap();
    assert_eq!(m, pgmoneta_wire::cluster::Message::Hello { node: "b".into(), version: 1, key: None });
}

#[test]
fn management_request_seed_corpus() {
    use pgmoneta_wire::management::{fuzzing, payload, read_frame, Document};
    let files = corpus("management_request");
    assert!(files.len() >= 10);
    for (name, data) in &files {
        let ok = std::panic::catch_unwind(|| fuzzing::check_request(data));
        assert!(ok.is_ok(), "seed {name} breaks an invariant");
    }
    // The well-formed seeds are what they say; a compressed and encrypted frame made from each
    // holds the invariants too.
    for (name, data) in
        files.iter().filter(|(n, _)| ["ping", "restore-lsn-force", "reply-with-outcome"].contains(&n.as_str()))
    {
        let frame = read_frame(&mut &data[..]).unwrap();
        let text = payload::decode(&frame, None).unwrap();
        let doc = Document::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (c, e) in [(1u8, 0u8), (2, 1), (3, 2), (4, 3)] {
            let f = payload::encode(&doc.to_json(), c, e, Some(fuzzing::fuzz_key())).unwrap();
            let mut bytes = vec![f.compression, f.encryption];
            bytes.extend_from_slice(&(f.payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&f.payload);
            fuzzing::check_request(&bytes);
        }
    }
    let outcome = &files.iter().find(|(n, _)| n == "reply-with-outcome").unwrap().1;
    let doc = Document::from_json(&payload::decode(&read_frame(&mut &outcome[..]).unwrap(), None).unwrap()).unwrap();
    assert_eq!(doc.outcome.unwrap().message.as_deref(), Some("server [primary]: verify failed"));
}

#[test]
fn scram_server_seed_corpus() {
    let files = corpus("scram_server");
    assert!(files.len() >= 8);
    for (name, data) in &files {
        let ok = std::panic::catch_unwind(|| pgmoneta_wire::auth::fuzzing::check_scram_server(data));
        assert!(ok.is_ok(), "seed {name} breaks an invariant");
    }
}

#[test]
fn the_recorded_handshake_authenticates_only_with_its_own_nonce() {
    use pgmoneta_wire::auth::fuzzing::{fixed_server, play};
    let files = corpus("scram_server");
    let recorded = &files.iter().find(|(n, _)| n == "recorded-handshake-replayed").unwrap().1;
    assert_eq!(play(recorded, &mut fixed_server()), Some(true));
    let wrong = &files.iter().find(|(n, _)| n == "wrong-proof").unwrap().1;
    assert_eq!(play(wrong, &mut fixed_server()), Some(false));
}
