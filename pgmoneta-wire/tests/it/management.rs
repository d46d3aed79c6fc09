//! The management protocol: frames, payloads and documents, checked against an independent
//! implementation of the documented format (`management_frame.py`).

use std::path::PathBuf;
use std::process::Command as Process;

use pgmoneta_crypto::MasterKeyFile;
use pgmoneta_wire::management::{payload, read_frame, write_frame, Command, Document, Frame, OutputFormat};
use serde_json::{Map, Value};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/management_frame.py")
}

fn python(args: &[&str]) -> Vec<u8> {
    let out =
        Process::new("python3").arg(script()).args(args).output().expect("python3 (scripts/setup.sh installs it)");
    assert!(out.status.success(), "management_frame.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn sample() -> Document {
    let mut request = Map::new();
    request.insert("Server".into(), Value::from("primary"));
    request.insert("Backup".into(), Value::from("newest"));
    request.insert("Position".into(), Value::Null);
    request.insert("Directory".into(), Value::from("/tmp/restore"));
    Document::request(Command::Restore, request, OutputFormat::Text, "20261128120000")
}

#[test]
fn frames_round_trip_for_every_compression_and_encryption() {
    let dir = tempfile::tempdir().unwrap();
    let keys = MasterKeyFile::new(dir.path().join("k/master.key"));
    keys.create("management test key").unwrap();
    let key = keys.load().unwrap();
    let json = sample().to_json();
    for compression in 0..=4u8 {
        for encryption in 0..=3u8 {
            let frame = payload::encode(&json, compression, encryption, Some(&key)).unwrap();
            let mut wire = Vec::new();
            write_frame(&mut wire, &frame).unwrap();
            assert_eq!(&wire[..2], &[compression, encryption]);
            let back = read_frame(&mut &wire[..]).unwrap();
            assert_eq!(back, frame);
            assert_eq!(payload::decode(&back, Some(&key)).unwrap(), json, "{compression}/{encryption}");
        }
    }
    // Plain frames carry the JSON itself.
    let plain = payload::encode(&json, 0, 0, None).unwrap();
    assert_eq!(plain.payload, json.as_bytes());
}

#[test]
fn an_independent_implementation_reads_ours_and_we_read_its() {
    let dir = tempfile::tempdir().unwrap();
    let keys = MasterKeyFile::new(dir.path().join("k/master.key"));
    keys.create("management interop key").unwrap();
    let key = keys.load().unwrap();
    let key_path = keys.path().to_str().unwrap().to_owned();
    let json = sample().to_json();
    let json_path = dir.path().join("doc.json");
    std::fs::write(&json_path, &json).unwrap();
    for (compression, encryption) in [(0u8, 0u8), (1, 0), (4, 0), (0, 1), (1, 1), (4, 2), (1, 3)] {
        // Theirs, read by us.
        let theirs = dir.path().join(format!("theirs-{compression}-{encryption}"));
        python(&[
            "make",
            &key_path,
            &compression.to_string(),
            &encryption.to_string(),
            json_path.to_str().unwrap(),
            theirs.to_str().unwrap(),
        ]);
        let frame = read_frame(&mut std::fs::File::open(&theirs).unwrap()).unwrap();
        let text = payload::decode(&frame, Some(&key)).unwrap();
        assert_eq!(Document::from_json(&text).unwrap(), sample());
        // Ours, read by them.
        let ours = dir.path().join(format!("ours-{compression}-{encryption}"));
        let mut f = std::fs::File::create(&ours).unwrap();
        write_frame(&mut f, &payload::encode(&json, compression, encryption, Some(&key)).unwrap()).unwrap();
        let read_back = python(&["read", &key_path, ours.to_str().unwrap()]);
        assert_eq!(String::from_utf8(read_back).unwrap(), json);
    }
}

#[test]
fn bad_frames_and_payloads_are_errors_that_say_what_is_wrong() {
    let key = pgmoneta_crypto::MasterKey::from_bytes([1; 64]);
    let other = pgmoneta_crypto::MasterKey::from_bytes([2; 64]);
    let cases: [(&[u8], &str); 4] = [
        (&[0, 0, 0, 0, 0, 10, b'{'], "connection closed"),
        (&[9, 0, 0, 0, 0, 0], "unknown compression code 9"),
        (&[0, 7, 0, 0, 0, 0], "unknown encryption code 7"),
        (&[0, 0, 0xff, 0xff, 0xff, 0xff], "more than"),
    ];
    for (bytes, want) in cases {
        let err = read_frame(&mut &bytes[..]).unwrap_err().to_string();
        assert!(err.contains(want), "{bytes:?}: {err}");
    }
    let json = sample().to_json();
    let sealed = payload::encode(&json, 2, 1, Some(&key)).unwrap();
    let err = payload::decode(&sealed, Some(&other)).unwrap_err().to_string();
    assert!(err.contains("authentication failed"), "{err}");
    assert!(payload::decode(&sealed, None).unwrap_err().to_string().contains("no master key"));
    let garbage = Frame { compression: 1, encryption: 0, payload: b"!!not base64!!".to_vec() };
    assert!(payload::decode(&garbage, None).unwrap_err().to_string().contains("base64"));
    let not_gzip =
        Frame { compression: 1, encryption: 0, payload: openssl::base64::encode_block(b"plain").into_bytes() };
    assert!(payload::decode(&not_gzip, None).is_err());
    assert!(payload::encode(&json, 0, 1, None).is_err(), "encryption without a key");
}
