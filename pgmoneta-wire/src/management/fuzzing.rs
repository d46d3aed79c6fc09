//! Invariants of a management request as the daemon reads it, checked by the fuzz target
//! `management_request` and by the test that replays its seed corpus.

use std::sync::OnceLock;

use pgmoneta_crypto::MasterKey;

use serde::{Deserialize, Serialize};

use super::request::{self, *};
use super::response::{self, *};
use super::{payload, read_frame, Command, Document};

/// The master key the fuzzed frames are decrypted with (seeds are encrypted with it).
pub fn fuzz_key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::from_bytes([0x5a; 64]))
}

/// Reads a frame from `data`, decodes its payload (with [`fuzz_key`]) and parses the document,
/// as the daemon does, and asserts: no panic; a frame never claims more than the payload
/// limit; a parsed document written back parses to the same document, and writes the same
/// text again; the command's typed request, and its typed response when there is one and it
/// reads, survive being written and read again.
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
    if let Some(r) = &doc.response {
        check_response(doc.header.command, r);
    }
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

fn response_round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    r: &serde_json::Map<String, serde_json::Value>,
) {
    // A response of other types is the reader's to report; one that reads survives a round trip.
    if let Ok(typed) = response::read::<T>(r) {
        let again: T = response::read(&response::to_map(&typed)).expect("a written response reads");
        assert_eq!(again, typed, "a typed response does not survive a round trip");
    }
}

/// The typed response of the command, as `pgmoneta-cli` reads it.
fn check_response(command: Command, r: &serde_json::Map<String, serde_json::Value>) {
    match command {
        Command::Backup => response_round_trip::<BackupResponse>(r),
        Command::ListBackup => response_round_trip::<ListBackupResponse>(r),
        Command::Restore | Command::S3Restore => response_round_trip::<RestoreResponse>(r),
        Command::Archive => response_round_trip::<ArchiveResponse>(r),
        Command::Delete => response_round_trip::<DeleteResponse>(r),
        Command::Retain | Command::Expunge => response_round_trip::<KeepResponse>(r),
        Command::Info | Command::Annotate => response_round_trip::<InfoResponse>(r),
        Command::Verify => response_round_trip::<VerifyResponse>(r),
        Command::Status | Command::StatusDetails => response_round_trip::<StatusResponse>(r),
        Command::Mode => response_round_trip::<ModeResponse>(r),
        Command::Progress => response_round_trip::<ProgressResponse>(r),
        Command::Reload => response_round_trip::<ReloadResponse>(r),
        Command::ConfLs => response_round_trip::<ConfLsResponse>(r),
        Command::ConfSet => response_round_trip::<ConfSetResponse>(r),
        Command::Decrypt | Command::Encrypt | Command::Decompress | Command::Compress => {
            response_round_trip::<FileResponse>(r)
        }
        Command::S3Ls => response_round_trip::<S3ListResponse>(r),
        _ => {}
    }
}
