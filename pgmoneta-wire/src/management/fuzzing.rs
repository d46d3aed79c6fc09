//! Invariants of a management request as the daemon reads it, checked by the fuzz target
//! `management_request` and by the test that replays its seed corpus.

use std::sync::OnceLock;

use pgmoneta_crypto::MasterKey;

use super::{payload, read_frame, Document};

/// The master key the fuzzed frames are decrypted with (seeds are encrypted with it).
pub fn fuzz_key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::from_bytes([0x5a; 64]))
}

/// Reads a frame from `data`, decodes its payload (with [`fuzz_key`]) and parses the document,
/// as the daemon does, and asserts: no panic; a frame never claims more than the payload
/// limit; a parsed document written back parses to the same document, and writes the same
/// text again.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_request(data: &[u8]) {
    let mut input = data;
    let Ok(frame) = read_frame(&mut input) else { return };
    assert!(frame.payload.len() <= super::MAX_PAYLOAD as usize);
    let Ok(text) = payload::decode(&frame, Some(fuzz_key())) else { return };
    let Ok(doc) = Document::from_json(&text) else { return };
    let written = doc.to_json();
    let again = Document::from_json(&written).expect("a written document parses");
    assert_eq!(again, doc, "the document does not survive a round trip");
    assert_eq!(again.to_json(), written);
    // And back through a frame with the same codes.
    if let Ok(f) = payload::encode(&written, frame.compression, frame.encryption, Some(fuzz_key())) {
        assert_eq!(payload::decode(&f, Some(fuzz_key())).expect("our own frame decodes"), written);
    }
}
