//! Remote management over TLS with SCRAM-SHA-256 against the admins vault.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use bytes::BytesMut;
use pgmoneta_testkit::TestCa;
use pgmoneta_wire::management::{write_frame, Frame};
use pgmoneta_wire::message::backend::{BackendDecoder, BackendMessage};
use pgmoneta_wire::message::frontend::FrontendMessage;

use crate::{bin, cluster, Daemon, ADMIN_PASSWORD};

fn remote_cli(d: &Daemon, home: &std::path::Path, user: &str, password: &str, args: &[&str]) -> (i32, String) {
    let port = d.management_port.to_string();
    let out = Command::new(bin("pgmoneta-cli"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", user, "-P", password, "-F", "raw"])
        .args(args)
        .env("HOME", home)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// Sends a start-up message without TLS and returns the first answer.
pub(crate) fn plain_startup(port: u16, database: &str) -> Option<BackendMessage> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut b = BytesMut::new();
    let params = vec![("user".to_owned(), "admin".to_owned()), ("database".to_owned(), database.to_owned())];
    FrontendMessage::Startup { version: 196608, params }.encode(&mut b);
    s.write_all(&b).unwrap();
    let mut buf = BytesMut::new();
    let mut dec = BackendDecoder::new();
    loop {
        if let Ok(Some(m)) = dec.decode(&mut buf) {
            return Some(m);
        }
        let mut chunk = [0u8; 1024];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn remote_management_needs_tls_and_the_admin_password() {
    let source = cluster();
    let certs = tempfile::tempdir_in("/tmp").unwrap();
    let ca = TestCa::new("pgmoneta test CA").unwrap();
    let server = ca.issue_server(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
    let (cert, key) = (certs.path().join("server.crt"), certs.path().join("server.key"));
    std::fs::write(&cert, &server.cert_pem).unwrap();
    std::fs::write(&key, &server.key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let extra = format!("tls = on\ntls_cert_file = {}\ntls_key_file = {}\n", cert.display(), key.display());
    let mut d = Daemon::new(&source, &extra);
    d.start();

    // The client's TLS material in ~/.pgmoneta: key, certificate, and the CA to check the daemon.
    let home = tempfile::tempdir_in("/tmp").unwrap();
    let dot = home.path().join(".pgmoneta");
    std::fs::create_dir(&dot).unwrap();
    let client = ca.issue_client("admin").unwrap();
    std::fs::write(dot.join("pgmoneta.key"), &client.key_pem).unwrap();
    std::fs::set_permissions(dot.join("pgmoneta.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dot.join("pgmoneta.crt"), &client.cert_pem).unwrap();
    ca.write_cert(&dot.join("root.crt")).unwrap();

    let (code, out) = remote_cli(&d, home.path(), "admin", ADMIN_PASSWORD, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"NumberOfServers\":1"), "{out}");
    let (code, out) = remote_cli(&d, home.path(), "admin", "wrong password", &["ping"]);
    assert_ne!(code, 0, "a wrong password must be refused: {out}");
    assert!(out.contains("refused"), "{out}");
    let (code, out) = remote_cli(&d, home.path(), "intruder", ADMIN_PASSWORD, &["ping"]);
    assert_ne!(code, 0, "an unknown admin must be refused: {out}");

    // Without TLS (tls = on), with another database, or with a frame instead of a start-up
    // message, nothing runs.
    match plain_startup(d.management_port, "admin") {
        Some(BackendMessage::ErrorResponse(e)) => assert_eq!(e.field(b'M'), Some("connection refused")),
        other => panic!("plain connection not refused: {other:?}"),
    }
    let mut s = TcpStream::connect(("127.0.0.1", d.management_port)).unwrap();
    let ping = r#"{"Header":{"ClientVersion":"0.22.0","Command":6,"Compression":0,"Encryption":0,"Output":0,"Timestamp":"20261128101010"},"Request":{}}"#;
    write_frame(&mut s, &Frame { compression: 0, encryption: 0, payload: ping.as_bytes().to_vec() }).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("Outcome"), "an unauthenticated frame was answered");
    // The shutdown frame above did nothing.
    d.ok(&["ping"]);
    drop(d);

    // Without tls: the wrong database is refused, the right one is asked for SCRAM.
    let mut d = Daemon::new(&source, "");
    d.start();
    match plain_startup(d.management_port, "postgres") {
        Some(BackendMessage::ErrorResponse(e)) => assert_eq!(e.field(b'M'), Some("connection refused")),
        other => panic!("database postgres not refused: {other:?}"),
    }
    match plain_startup(d.management_port, "admin") {
        Some(BackendMessage::AuthenticationSasl { mechanisms }) => assert_eq!(mechanisms, ["SCRAM-SHA-256"]),
        other => panic!("no SCRAM offered: {other:?}"),
    }
    let plain_home = tempfile::tempdir_in("/tmp").unwrap();
    let (code, out) = remote_cli(&d, plain_home.path(), "admin", ADMIN_PASSWORD, &["ping"]);
    assert_eq!(code, 0, "{out}");
}
