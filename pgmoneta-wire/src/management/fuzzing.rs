//! Invariants of a management request as the daemon reads it, checked by the fuzz target
//! `management_request` and by the test that replays its seed corpus.

use std::sync::OnceLock;

use pgmoneta_crypto::MasterKey;

use serde::{Deserialize, Serialize};

use super::request::{self, *};
use super::{payload, read_frame, Command, Document};

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
    // The command's typed request reads whatever the document holds, and what it reads
    // survives being written and read again.
    check_typed(&doc);
    // And back through a frame with the same codes.
    if let Ok(f) = payload::encode(&written, frame.compression, frame.encryption, Some(fuzz_key())) {
        assert_eq!(payload::decode(&f, Some(fuzz_key())).expect("our own frame decodes"), written);
    }
}

fn round_trip<T: Serialize + for<'de> Deserialize<'de> + Default + PartialEq + std::fmt::Debug>(doc: &Document) {
    let typed: T = request::parse(&doc.request);
    assert_eq!(request::parse::<T>(&request::to_map(&typed)), typed, "a typed request does not survive a round trip");
}

/// The typed request of the document's command, as the daemon reads it.
fn check_typed(doc: &Document) {
    match doc.header.command {
        Command::Backup => round_trip::<BackupRequest>(doc),
        Command::ListBackup => round_trip::<ListBackupRequest>(doc),
        Command::Restore | Command::Archive => round_trip::<RestoreRequest>(doc),
        Command::Delete => round_trip::<DeleteRequest>(doc),
        Command::Retain | Command::Expunge => round_trip::<KeepRequest>(doc),
        Command::Decrypt | Command::Encrypt | Command::Decompress | Command::Compress => round_trip::<FileRequest>(doc),
        Command::Info => round_trip::<InfoRequest>(doc),
        Command::Verify => round_trip::<VerifyRequest>(doc),
        Command::Annotate => round_trip::<AnnotateRequest>(doc),
        Command::ConfSet => round_trip::<ConfSetRequest>(doc),
        Command::Mode => round_trip::<ModeRequest>(doc),
        Command::Progress => round_trip::<ProgressRequest>(doc),
        Command::S3Ls => round_trip::<S3ListRequest>(doc),
        Command::S3Restore => round_trip::<S3RestoreRequest>(doc),
        _ => round_trip::<ServerRequest>(doc),
    }
}
