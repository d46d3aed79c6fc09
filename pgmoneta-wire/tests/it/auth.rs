//! Logging in, queries and server errors.

use pgmoneta_testkit::Cluster;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode, WireError};

use crate::{connect, repl_opts, superuser_opts};

#[test]
fn scram_login_queries_and_errors() {
    let cluster = Cluster::builder().start().unwrap();
    let mut conn = connect(&superuser_opts(&cluster));
    let (version, text) = conn.server_version().unwrap();
    assert_eq!(version, cluster.version());
    assert!(text.starts_with(&version.major().to_string()), "{text}");
    assert!(!conn.is_tls());
    assert!(conn.backend_key().is_some());

    let row = conn.query_one("SELECT 42 AS answer, 'text' AS t, NULL::int AS nothing, 1.5::float8 AS f").unwrap();
    assert_eq!(row.parse_required::<i32>(0).unwrap(), 42);
    assert_eq!(row.get(1).unwrap(), Some("text"));
    assert_eq!(row.get(2).unwrap(), None);
    assert_eq!(row.parse::<f64>(3).unwrap(), Some(1.5));
    assert_eq!(row.index_of("nothing"), Some(2));
    assert_eq!(row.columns()[0].type_oid, 23);
    assert!(row.parse_required::<i32>(2).unwrap_err().to_string().contains("\"nothing\" is NULL"));
    assert!(row.parse_required::<i32>(1).unwrap_err().to_string().contains("\"text\" is not a i32"));

    let results = conn
        .simple_query(
            "CREATE TEMP TABLE t(n int); INSERT INTO t SELECT generate_series(1, 3); SELECT n FROM t ORDER BY n",
        )
        .unwrap();
    let tags: Vec<&str> = results.iter().map(|r| r.tag.as_str()).collect();
    assert_eq!(tags, ["CREATE TABLE", "INSERT 0 3", "SELECT 3"]);
    assert_eq!(results[2].rows.len(), 3);

    // Errors carry PostgreSQL's fields, and the connection stays usable.
    let err = conn.query("SELECT 1/0").unwrap_err();
    let fields = err.server_error().expect("a server error");
    assert_eq!(fields.code(), "22012");
    assert_eq!(fields.severity(), "ERROR");
    assert_eq!(fields.message(), "division by zero");
    let err = conn
        .execute("DO $$ BEGIN RAISE EXCEPTION 'custom failure' USING DETAIL = 'the detail', HINT = 'the hint', ERRCODE = 'P0001'; END $$")
        .unwrap_err();
    let fields = err.server_error().unwrap();
    assert_eq!(
        (fields.message(), fields.detail(), fields.hint()),
        ("custom failure", Some("the detail"), Some("the hint"))
    );
    assert!(err.to_string().contains("P0001: custom failure (detail: the detail) (hint: the hint)"), "{err}");
    let err = conn.query("SELEC 1").unwrap_err();
    assert_eq!(err.server_error().unwrap().code(), "42601");
    assert_eq!(err.server_error().unwrap().position(), Some("1"));
    assert!(!err.is_retryable());
    assert_eq!(conn.query_one("SELECT 7").unwrap().get(0).unwrap(), Some("7"));
    conn.close().unwrap();
}

#[test]
fn wrong_password_fails_with_28p01() {
    let cluster = Cluster::builder().start().unwrap();
    let opts = repl_opts(&cluster).password("not the password");
    let err = PgConnection::connect(&opts).unwrap_err();
    let fields = err.server_error().unwrap_or_else(|| panic!("expected a server error, got {err}"));
    assert_eq!(fields.code(), "28P01");
    assert_eq!(fields.severity(), "FATAL");
    assert_eq!(fields.message(), format!("password authentication failed for user \"{}\"", cluster.replication_user()));

    let opts = ConnectOptions { password: None, ..repl_opts(&cluster) };
    let err = PgConnection::connect(&opts).unwrap_err();
    assert!(matches!(err, WireError::Auth(ref m) if m.contains("none is configured")), "{err}");
}

#[test]
fn unix_socket_and_replication_connection() {
    let cluster = Cluster::builder().start().unwrap();
    let opts = ConnectOptions::new(cluster.socket_dir().to_str().unwrap(), cluster.port(), cluster.replication_user())
        .password(cluster.replication_password())
        .replication(ReplicationMode::Physical);
    let mut conn = connect(&opts);
    let system = conn.identify_system().unwrap();
    assert_eq!(system.timeline.0, 1);
    assert_eq!(system.dbname, None);
    assert_eq!(system.system_id, cluster.query_scalar("SELECT system_identifier FROM pg_control_system()").unwrap());
    assert_eq!(conn.show("wal_segment_size").unwrap(), "16MB");
    assert_eq!(conn.show("data_checksums").unwrap(), "on");
    let err = conn.show("no_such_setting").unwrap_err();
    assert_eq!(err.server_error().unwrap().code(), "42704");
    // SQL is refused on a physical replication connection.
    assert!(conn.query("SELECT 1").is_err());
    // Replication commands are refused on a normal connection, before anything is sent.
    let mut sql = connect(&crate::superuser_opts(&cluster));
    assert!(matches!(sql.identify_system(), Err(WireError::Usage(_))));
}

#[test]
fn md5_and_unencrypted_cleartext_are_refused() {
    let cluster = Cluster::builder()
        .hba_line("host all md5_user 127.0.0.1/32 md5")
        .hba_line("host all clear_user 127.0.0.1/32 password")
        .start()
        .unwrap();
    cluster.execute("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'pw1'").unwrap();
    cluster.execute("CREATE ROLE clear_user LOGIN PASSWORD 'pw2'").unwrap();

    let opts = ConnectOptions::new(cluster.host(), cluster.port(), "md5_user")
        .password("pw1")
        .database("postgres")
        .ssl_mode(SslMode::Disable);
    let err = PgConnection::connect(&opts).unwrap_err();
    assert!(matches!(err, WireError::Auth(ref m) if m.contains("MD5 authentication, which is not supported")), "{err}");

    let opts = ConnectOptions::new(cluster.host(), cluster.port(), "clear_user")
        .password("pw2")
        .database("postgres")
        .ssl_mode(SslMode::Disable);
    let err = PgConnection::connect(&opts).unwrap_err();
    assert!(matches!(err, WireError::Auth(ref m) if m.contains("cleartext over an unencrypted connection")), "{err}");
    let opts = ConnectOptions { allow_cleartext_password: true, ..opts };
    let mut conn = connect(&opts);
    assert_eq!(conn.query_one("SELECT current_user").unwrap().get(0).unwrap(), Some("clear_user"));
}

#[test]
fn scram_exchange_recorded_from_a_real_server_replays() {
    use pgmoneta_wire::auth::scram::{ScramClient, ScramServer, ScramVerifier};
    // Verify our client against the verifier PostgreSQL stored, replaying the exchange offline.
    let cluster = Cluster::builder().replication_user("recorded", "correct horse").start().unwrap();
    let stored = cluster.query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'recorded'").unwrap();
    let verifier = ScramVerifier::parse(&stored).unwrap();
    assert_eq!(verifier.iterations, 4096);
    assert_eq!(verifier, ScramVerifier::new("correct horse", &verifier.salt, 4096));
    let mut server = ScramServer::with_nonce(verifier, "server-part");
    let mut client = ScramClient::with_nonce("", "correct horse", "client-part");
    let first = server.handle_client_first(&client.client_first()).unwrap();
    let fin = client.update(&first).unwrap();
    client.finish(&server.handle_client_final(&fin).unwrap()).unwrap();
}

#[test]
fn sans_io_scram_exchange_with_an_injected_nonce() {
    use bytes::{Bytes, BytesMut};
    use pgmoneta_wire::auth::scram::ScramClient;
    use pgmoneta_wire::message::backend::{BackendDecoder, BackendMessage};
    use pgmoneta_wire::message::frontend::{FrontendMessage, PROTOCOL_VERSION_3_0};
    use std::io::{Read, Write};

    let cluster = Cluster::builder().replication_user("nonce_user", "pa55word").start().unwrap();
    let mut tcp = std::net::TcpStream::connect((cluster.host(), cluster.port())).unwrap();
    let mut out = BytesMut::new();
    let mut inbuf = BytesMut::new();
    let mut decoder = BackendDecoder::new();
    let mut next = |tcp: &mut std::net::TcpStream, inbuf: &mut BytesMut| loop {
        if let Some(m) = decoder.decode(inbuf).unwrap() {
            return m;
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).unwrap();
        assert!(n > 0, "server closed");
        inbuf.extend_from_slice(&chunk[..n]);
    };
    let params = vec![("user".to_owned(), "nonce_user".to_owned()), ("database".to_owned(), "postgres".to_owned())];
    FrontendMessage::Startup { version: PROTOCOL_VERSION_3_0, params }.encode(&mut out);
    tcp.write_all(&out).unwrap();
    out.clear();
    let BackendMessage::AuthenticationSasl { mechanisms } = next(&mut tcp, &mut inbuf) else { panic!("no SASL") };
    assert!(mechanisms.contains(&"SCRAM-SHA-256".to_owned()), "{mechanisms:?}");
    let mut client = ScramClient::with_nonce("", "pa55word", "fixedClientNonce0123");
    FrontendMessage::SaslInitialResponse {
        mechanism: "SCRAM-SHA-256".into(),
        data: Some(Bytes::from(client.client_first())),
    }
    .encode(&mut out);
    tcp.write_all(&out).unwrap();
    out.clear();
    let BackendMessage::AuthenticationSaslContinue { data } = next(&mut tcp, &mut inbuf) else {
        panic!("no SASLContinue")
    };
    let server_first = String::from_utf8(data.to_vec()).unwrap();
    assert!(server_first.starts_with("r=fixedClientNonce0123"), "{server_first}");
    assert!(server_first.ends_with(",i=4096"), "{server_first}");
    FrontendMessage::SaslResponse { data: Bytes::from(client.update(&data).unwrap()) }.encode(&mut out);
    tcp.write_all(&out).unwrap();
    let BackendMessage::AuthenticationSaslFinal { data } = next(&mut tcp, &mut inbuf) else { panic!("no SASLFinal") };
    client.finish(&data).unwrap();
    assert_eq!(next(&mut tcp, &mut inbuf), BackendMessage::AuthenticationOk);
}
