//! TLS modes against a server with a certificate from a test CA.

use pgmoneta_testkit::{Cluster, TestCa};
use pgmoneta_wire::{ConnectOptions, PgConnection, SslMode, WireError};

use crate::{connect, repl_opts};

fn opts(cluster: &Cluster, host: &str, mode: SslMode) -> ConnectOptions {
    ConnectOptions { host: host.to_owned(), ..repl_opts(cluster) }.ssl_mode(mode)
}

#[test]
fn verify_full_accepts_the_right_ca_and_host_only() {
    let ca = TestCa::new("pgmoneta test CA").unwrap();
    let cluster = Cluster::builder().tls(&ca).unwrap().start().unwrap();
    let ca_file = cluster.ca_file().unwrap();

    for host in ["127.0.0.1", "localhost"] {
        let mut conn = connect(&opts(&cluster, host, SslMode::VerifyFull).ssl_root_cert(&ca_file));
        assert!(conn.is_tls());
        conn.identify_system().unwrap();
    }
    let ssl_in_use = {
        let mut sql = connect(&crate::superuser_opts(&cluster).ssl_mode(SslMode::VerifyFull).ssl_root_cert(&ca_file));
        sql.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .unwrap()
            .get(0)
            .unwrap()
            .map(str::to_owned)
    };
    assert_eq!(ssl_in_use.as_deref(), Some("t"));

    // Another CA: rejected, and the error says why.
    let other = TestCa::new("someone else").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other_file = dir.path().join("other.crt");
    other.write_cert(&other_file).unwrap();
    let err = PgConnection::connect(&opts(&cluster, "127.0.0.1", SslMode::VerifyFull).ssl_root_cert(&other_file))
        .unwrap_err();
    assert!(matches!(err, WireError::Tls(ref m) if m.contains("rejected")), "{err}");
    let err =
        PgConnection::connect(&opts(&cluster, "127.0.0.1", SslMode::VerifyCa).ssl_root_cert(&other_file)).unwrap_err();
    assert!(matches!(err, WireError::Tls(_)), "{err}");

    // verify-* without a CA file is a usage error; require and prefer do not verify.
    let err = PgConnection::connect(&opts(&cluster, "127.0.0.1", SslMode::VerifyFull)).unwrap_err();
    assert!(matches!(err, WireError::Usage(_)), "{err}");
    assert!(connect(&opts(&cluster, "127.0.0.1", SslMode::Require)).is_tls());
    assert!(connect(&opts(&cluster, "127.0.0.1", SslMode::Prefer)).is_tls());
    assert!(!connect(&opts(&cluster, "127.0.0.1", SslMode::Disable)).is_tls());
}

#[test]
fn verify_full_checks_the_host_name() {
    let ca = TestCa::new("pgmoneta test CA").unwrap();
    let cert = ca.issue_server(&["db.example.com"], &[]).unwrap();
    let cluster = Cluster::builder().tls_cert(cert, &ca).start().unwrap();
    let ca_file = cluster.ca_file().unwrap();
    // The chain is fine, so verify-ca connects...
    assert!(connect(&opts(&cluster, "127.0.0.1", SslMode::VerifyCa).ssl_root_cert(&ca_file)).is_tls());
    // ...but the certificate does not name 127.0.0.1 or localhost.
    for host in ["127.0.0.1", "localhost"] {
        let err =
            PgConnection::connect(&opts(&cluster, host, SslMode::VerifyFull).ssl_root_cert(&ca_file)).unwrap_err();
        assert!(
            matches!(err, WireError::Tls(ref m) if m.contains("rejected") && m.contains("mismatch")),
            "{host}: {err}"
        );
    }
}

#[test]
fn require_fails_and_prefer_falls_back_without_server_tls() {
    let cluster = Cluster::builder().start().unwrap();
    let err = PgConnection::connect(&opts(&cluster, "127.0.0.1", SslMode::Require)).unwrap_err();
    assert!(matches!(err, WireError::Tls(ref m) if m.contains("does not support TLS")), "{err}");
    assert!(!connect(&opts(&cluster, "127.0.0.1", SslMode::Prefer)).is_tls());
}

#[test]
fn client_certificate_is_presented() {
    let ca = TestCa::new("pgmoneta test CA").unwrap();
    let cluster =
        Cluster::builder().tls(&ca).unwrap().hba_line("hostssl all cert_user 127.0.0.1/32 cert").start().unwrap();
    cluster.execute("CREATE ROLE cert_user LOGIN").unwrap();
    let client = ca.issue_client("cert_user").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&crt, &client.cert_pem).unwrap();
    std::fs::write(&key, &client.key_pem).unwrap();
    let base = ConnectOptions::new("127.0.0.1", cluster.port(), "cert_user")
        .database("postgres")
        .ssl_mode(SslMode::VerifyFull)
        .ssl_root_cert(cluster.ca_file().unwrap());
    let mut conn = connect(&base.clone().ssl_client_cert(&crt, &key));
    assert_eq!(conn.query_one("SELECT current_user").unwrap().get(0).unwrap(), Some("cert_user"));
    let err = PgConnection::connect(&base).unwrap_err();
    assert!(err.server_error().is_some_and(|f| f.code() == "28000"), "{err}");
}
