//! Management frames in upstream's exact shape, plain and compressed+encrypted.

use std::io::Write;
use std::os::unix::net::UnixStream;

use pgmoneta_crypto::MasterKeyFile;
use pgmoneta_wire::management::{payload, read_frame, write_frame, Frame};
use serde_json::Value;

use crate::{cluster, Daemon};

fn exchange(d: &Daemon, frame: &Frame) -> Frame {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    write_frame(&mut s, frame).unwrap();
    read_frame(&mut s).unwrap()
}

#[test]
fn answers_upstream_shaped_frames() {
    let source = cluster();
    let mut d = Daemon::new(&source, "");
    d.start();

    // A ping exactly as upstream's client writes it: compact JSON, sorted keys.
    let json = r#"{"Header":{"ClientVersion":"0.22.0","Command":9,"Compression":0,"Encryption":0,"Output":0,"Timestamp":"20261128101010"},"Request":{}}"#;
    let mut raw = vec![0u8, 0u8];
    raw.extend_from_slice(&(json.len() as u32).to_be_bytes());
    raw.extend_from_slice(json.as_bytes());
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(&raw).unwrap();
    let reply = read_frame(&mut s).unwrap();
    assert_eq!((reply.compression, reply.encryption), (0, 0));
    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(v["Outcome"]["Status"], true);
    assert_eq!(v["Header"]["Command"], 9);
    assert!(v["Response"]["ServerVersion"].is_string());
    assert!(v["Outcome"]["Time"].as_str().unwrap().starts_with("00:00:"));

    // The same request compressed (zstd) and encrypted (AES-256-GCM) with the master key; the
    // reply comes back the same way.
    let key = MasterKeyFile::new(d.home.join(".pgmoneta/master.key")).load().unwrap();
    let status = r#"{"Header":{"ClientVersion":"0.22.0","Command":2,"Compression":2,"Encryption":1,"Output":1,"Timestamp":"20261128101010"},"Request":{"Server":"primary","Sort":"desc"}}"#;
    for (c, e) in [(2u8, 1u8), (1, 0), (3, 0), (4, 3), (0, 2)] {
        let frame = payload::encode(status, c, e, Some(&key)).unwrap();
        let reply = exchange(&d, &frame);
        assert_eq!((reply.compression, reply.encryption), (c, e));
        let v: Value = serde_json::from_str(&payload::decode(&reply, Some(&key)).unwrap()).unwrap();
        assert_eq!(v["Outcome"]["Status"], true, "{v}");
        assert_eq!(v["Response"]["NumberOfBackups"], 0);
        assert_eq!(v["Request"]["Sort"], "desc");
    }

    // Not JSON: error 1 (BAD_PAYLOAD), and the daemon keeps serving.
    let reply = exchange(&d, &Frame { compression: 0, encryption: 0, payload: b"{not json".to_vec() });
    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(v["Outcome"]["Status"], false);
    assert_eq!(v["Outcome"]["Error"], 1);
    assert!(v["Outcome"]["Message"].as_str().unwrap().contains("not JSON"), "{v}");
    // An unknown command id: error 2.
    let unknown = r#"{"Header":{"ClientVersion":"0.22.0","Command":77,"Compression":0,"Encryption":0,"Output":0,"Timestamp":"20261128101010"},"Request":{}}"#;
    let reply = exchange(&d, &Frame { compression: 0, encryption: 0, payload: unknown.as_bytes().to_vec() });
    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(v["Outcome"]["Error"], 2);
    assert!(v["Outcome"]["Message"].as_str().unwrap().contains("77"), "{v}");
    d.ok(&["ping"]);
}
