//! A blocking connection to PostgreSQL over TCP, a Unix socket or TLS.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode, SslVersion};
use pgmoneta_core::PgVersion;

use crate::auth::scram::{ScramClient, SCRAM_SHA_256};
use crate::error::{ErrorFields, Result, WireError};
use crate::message::backend::{BackendDecoder, BackendMessage, FieldDescription};
use crate::message::frontend::{FrontendMessage, PROTOCOL_VERSION_3_0};

/// How TLS is used, with libpq's names and meanings (except that `require` never verifies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connection.
    Disable,
    /// TLS when the server offers it, else plain; no verification.
    #[default]
    Prefer,
    /// TLS or fail; no verification of the certificate.
    Require,
    /// TLS with a certificate signed by the CA in `ssl_root_cert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = WireError;
    fn from_str(s: &str) -> Result<SslMode> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(WireError::Usage(format!(
                    "unknown SSL mode {other:?}: expected disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }
}

/// Which kind of connection to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicationMode {
    /// A normal SQL connection.
    #[default]
    None,
    /// A physical replication connection (`replication=true`): replication commands only.
    Physical,
    /// A logical replication connection (`replication=database`): replication commands and SQL.
    Database,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Host name or IP address; a value starting with `/` is the directory of a Unix socket.
    pub host: String,
    /// Port (also names the Unix socket file, `.s.PGSQL.<port>`).
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// Password, for SCRAM-SHA-256 or (when allowed) cleartext.
    pub password: Option<String>,
    /// Database; defaults to the user name.
    pub database: Option<String>,
    /// Replication or normal connection.
    pub replication: ReplicationMode,
    /// `application_name` shown in `pg_stat_activity` and `pg_stat_replication`.
    pub application_name: Option<String>,
    /// TLS use.
    pub ssl_mode: SslMode,
    /// CA certificate(s) to verify the server with.
    pub ssl_root_cert: Option<PathBuf>,
    /// Client certificate.
    pub ssl_cert: Option<PathBuf>,
    /// Client key.
    pub ssl_key: Option<PathBuf>,
    /// Limit for establishing the TCP connection.
    pub connect_timeout: Option<Duration>,
    /// Limit for each read once connected; `None` waits forever.
    pub read_timeout: Option<Duration>,
    /// Send the password in cleartext when the server asks, even without TLS.
    pub allow_cleartext_password: bool,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("database", &self.database)
            .field("replication", &self.replication)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Options for `user` at `host:port` with the defaults: TLS preferred, 10 s connect timeout,
    /// no read timeout, application name `pgmoneta`.
    pub fn new(host: &str, port: u16, user: &str) -> ConnectOptions {
        ConnectOptions {
            host: host.to_owned(),
            port,
            user: user.to_owned(),
            password: None,
            database: None,
            replication: ReplicationMode::None,
            application_name: Some("pgmoneta".to_owned()),
            ssl_mode: SslMode::Prefer,
            ssl_root_cert: None,
            ssl_cert: None,
            ssl_key: None,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: None,
            allow_cleartext_password: false,
        }
    }

    /// Sets the password.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Sets the database.
    pub fn database(mut self, database: &str) -> Self {
        self.database = Some(database.to_owned());
        self
    }

    /// Sets the replication mode.
    pub fn replication(mut self, mode: ReplicationMode) -> Self {
        self.replication = mode;
        self
    }

    /// Sets the TLS mode.
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self
    }

    /// Sets the CA file used by `verify-ca` and `verify-full`.
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_root_cert = Some(path.into());
        self
    }

    /// Sets a client certificate and key.
    pub fn ssl_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.ssl_cert = Some(cert.into());
        self.ssl_key = Some(key.into());
        self
    }

    /// Sets the read timeout.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    fn describe(&self) -> String {
        if self.is_unix_socket() {
            format!("{}/.s.PGSQL.{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A transport: TCP, Unix socket or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
    /// TLS over TCP.
    Tls(Box<SslStream<TcpStream>>),
}

impl Stream {
    /// Sets the read timeout of the underlying socket.
    ///
    /// # Errors
    /// When the socket refuses the option.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tls(s) => s.get_ref().set_read_timeout(timeout),
        }
    }

    /// A handle that can shut the socket down from another thread, waking a blocked read.
    ///
    /// # Errors
    /// When the socket cannot be duplicated.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        Ok(match self {
            Stream::Tcp(s) => ShutdownHandle::Tcp(s.try_clone()?),
            Stream::Unix(s) => ShutdownHandle::Unix(s.try_clone()?),
            Stream::Tls(s) => ShutdownHandle::Tcp(s.get_ref().try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Shuts a connection's socket down from another thread.
#[derive(Debug)]
pub enum ShutdownHandle {
    /// A TCP socket (also under TLS).
    Tcp(TcpStream),
    /// A Unix socket.
    Unix(UnixStream),
}

impl ShutdownHandle {
    /// Shuts both directions down; a read blocked on the connection returns at once.
    pub fn shutdown(&self) {
        let _ = match self {
            ShutdownHandle::Tcp(s) => s.shutdown(Shutdown::Both),
            ShutdownHandle::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

/// One row of a query result, in text format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    columns: Arc<[FieldDescription]>,
    values: Vec<Option<Bytes>>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[FieldDescription]>, values: Vec<Option<Bytes>>) -> Row {
        Row { columns, values }
    }

    /// The column descriptions.
    pub fn columns(&self) -> &[FieldDescription] {
        &self.columns
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The raw bytes of column `idx` (`None` for NULL or no such column).
    pub fn bytes(&self, idx: usize) -> Option<&Bytes> {
        self.values.get(idx).and_then(Option::as_ref)
    }

    /// The text of column `idx`, `None` for NULL.
    ///
    /// # Errors
    /// No such column, or text that is not UTF-8.
    pub fn get(&self, idx: usize) -> Result<Option<&str>> {
        let value = self.values.get(idx).ok_or_else(|| {
            WireError::Protocol(format!("column {idx} requested from a row of {} columns", self.values.len()))
        })?;
        value
            .as_ref()
            .map(|v| {
                std::str::from_utf8(v)
                    .map_err(|_| WireError::Protocol(format!("column {:?} is not valid UTF-8", self.columns[idx].name)))
            })
            .transpose()
    }

    /// Column `idx` parsed as `T`, `None` for NULL.
    ///
    /// # Errors
    /// No such column, or text that does not parse as `T`.
    pub fn parse<T: FromStr>(&self, idx: usize) -> Result<Option<T>> {
        match self.get(idx)? {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                WireError::Protocol(format!(
                    "column {:?} value {text:?} is not a {}",
                    self.columns[idx].name,
                    std::any::type_name::<T>()
                ))
            }),
        }
    }

    /// Like [`Row::parse`], failing on NULL.
    ///
    /// # Errors
    /// No such column, NULL, or text that does not parse as `T`.
    pub fn parse_required<T: FromStr>(&self, idx: usize) -> Result<T> {
        self.parse(idx)?.ok_or_else(|| {
            WireError::Protocol(format!("column {:?} is NULL", self.columns.get(idx).map_or("?", |c| &c.name)))
        })
    }

    /// The index of the column called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// The outcome of one statement of a simple query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryResult {
    /// The columns; empty for statements that return no rows.
    pub columns: Arc<[FieldDescription]>,
    /// The rows.
    pub rows: Vec<Row>,
    /// The command tag, like `SELECT 3`.
    pub tag: String,
}

/// A connection to PostgreSQL.
///
/// Generic over the transport so that tests can drive it over any `Read + Write`; [`Stream`] is
/// the real one. Every read goes through one reusable buffer.
pub struct PgConnection<S: Read + Write = Stream> {
    stream: S,
    read_buf: BytesMut,
    /// The allocation of `read_buf` whose spare capacity was last zeroed: an empty handle on it,
    /// which keeps it allocated, and the address where it ends. While `read_buf` ends at that
    /// address it is in that allocation, every byte of which has been written since, and a read
    /// may go into its spare capacity without zeroing it again.
    zeroed: (BytesMut, usize),
    write_buf: BytesMut,
    decoder: BackendDecoder,
    parameters: HashMap<String, String>,
    backend_key: Option<(i32, Bytes)>,
    replication: ReplicationMode,
    tls: bool,
}

impl<S: Read + Write> fmt::Debug for PgConnection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("replication", &self.replication)
            .field("tls", &self.tls)
            .field("server_version", &self.parameter("server_version"))
            .finish_non_exhaustive()
    }
}

fn tls_err(context: &str, e: impl fmt::Display) -> WireError {
    WireError::Tls(format!("{context}: {e}"))
}

impl PgConnection<Stream> {
    /// Connects, negotiates TLS as `opts.ssl_mode` says, and logs in.
    ///
    /// # Errors
    /// Network failures and timeouts ([`WireError::Io`], [`WireError::Timeout`]), TLS failures
    /// ([`WireError::Tls`]), authentication failures ([`WireError::Auth`], or
    /// [`WireError::Server`] with PostgreSQL's SQLSTATE such as `28P01`).
    pub fn connect(opts: &ConnectOptions) -> Result<PgConnection<Stream>> {
        let target = opts.describe();
        if opts.is_unix_socket() {
            if matches!(opts.ssl_mode, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) {
                return Err(WireError::Usage(format!("TLS is not available over the Unix socket {target}")));
            }
            let path = format!("{}/.s.PGSQL.{}", opts.host.trim_end_matches('/'), opts.port);
            let sock = UnixStream::connect(&path).map_err(|e| WireError::io(format!("connecting to {target}"), e))?;
            sock.set_read_timeout(opts.connect_timeout).map_err(|e| WireError::io("setting a timeout", e))?;
            let conn = PgConnection::startup(Stream::Unix(sock), opts, false)?;
            conn.stream.set_read_timeout(opts.read_timeout).map_err(|e| WireError::io("setting a timeout", e))?;
            return Ok(conn);
        }

        let addrs: Vec<_> = (opts.host.as_str(), opts.port)
            .to_socket_addrs()
            .map_err(|e| WireError::io(format!("resolving {target}"), e))?
            .collect();
        let mut last_err = None;
        let mut tcp = None;
        for addr in addrs {
            let attempt = match opts.connect_timeout {
                Some(t) => TcpStream::connect_timeout(&addr, t),
                None => TcpStream::connect(addr),
            };
            match attempt {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            WireError::io(
                format!("connecting to {target}"),
                last_err.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        // The handshake is bounded by the connect timeout; later reads by the read timeout.
        tcp.set_read_timeout(opts.connect_timeout).map_err(|e| WireError::io("setting a timeout", e))?;
        let (stream, tls) = negotiate_tls(tcp, opts)?;
        let conn = PgConnection::startup(stream, opts, tls)?;
        conn.stream.set_read_timeout(opts.read_timeout).map_err(|e| WireError::io("setting a timeout", e))?;
        Ok(conn)
    }

    /// Changes the read timeout (a WAL receiver reads with a timeout no longer than its status
    /// interval).
    ///
    /// # Errors
    /// When the socket refuses the option.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.stream.set_read_timeout(timeout).map_err(|e| WireError::io("setting a timeout", e))
    }

    /// A handle that can shut this connection down from another thread.
    ///
    /// # Errors
    /// When the socket cannot be duplicated.
    pub fn shutdown_handle(&self) -> Result<ShutdownHandle> {
        self.stream.shutdown_handle().map_err(|e| WireError::io("duplicating the socket", e))
    }
}

fn negotiate_tls(mut tcp: TcpStream, opts: &ConnectOptions) -> Result<(Stream, bool)> {
    if opts.ssl_mode == SslMode::Disable {
        return Ok((Stream::Tcp(tcp), false));
    }
    let mut buf = BytesMut::new();
    FrontendMessage::SslRequest.encode(&mut buf);
    tcp.write_all(&buf).map_err(|e| WireError::io("sending SSLRequest", e))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).map_err(|e| WireError::io("reading the answer to SSLRequest", e))?;
    match answer[0] {
        b'S' => {}
        b'N' if opts.ssl_mode == SslMode::Prefer => return Ok((Stream::Tcp(tcp), false)),
        b'N' => return Err(WireError::Tls(format!("server {}:{} does not support TLS", opts.host, opts.port))),
        other => {
            return Err(WireError::Protocol(format!("unexpected answer {:?} to SSLRequest", other as char)));
        }
    }
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| tls_err("setting up", e))?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_2)).map_err(|e| tls_err("setting up", e))?;
    let verify = matches!(opts.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull);
    if verify {
        let ca = opts.ssl_root_cert.as_ref().ok_or_else(|| {
            WireError::Usage("verify-ca and verify-full need a CA certificate file (ssl_root_cert)".to_owned())
        })?;
        builder.set_ca_file(ca).map_err(|e| tls_err(&format!("loading CA file {}", ca.display()), e))?;
        builder.set_verify(SslVerifyMode::PEER);
    } else {
        builder.set_verify(SslVerifyMode::NONE);
    }
    if let (Some(cert), Some(key)) = (&opts.ssl_cert, &opts.ssl_key) {
        builder
            .set_certificate_chain_file(cert)
            .map_err(|e| tls_err(&format!("loading client certificate {}", cert.display()), e))?;
        builder
            .set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| tls_err(&format!("loading client key {}", key.display()), e))?;
        builder.check_private_key().map_err(|e| tls_err("client key does not match the certificate", e))?;
    }
    let connector = builder.build();
    let mut config = connector.configure().map_err(|e| tls_err("setting up", e))?;
    config.set_verify_hostname(opts.ssl_mode == SslMode::VerifyFull);
    config.set_use_server_name_indication(opts.host.parse::<std::net::IpAddr>().is_err());
    let tls = config.connect(&opts.host, tcp).map_err(|e| match e {
        openssl::ssl::HandshakeError::Failure(mid) => {
            let verify = mid.ssl().verify_result();
            if verify != openssl::x509::X509VerifyResult::OK {
                WireError::Tls(format!(
                    "certificate of {}:{} rejected: {}",
                    opts.host,
                    opts.port,
                    verify.error_string()
                ))
            } else {
                tls_err("handshake", mid.error())
            }
        }
        other => tls_err("handshake", other),
    })?;
    Ok((Stream::Tls(Box::new(tls)), true))
}

impl<S: Read + Write> PgConnection<S> {
    /// Sends the start-up packet over an established transport and authenticates. `tls` tells
    /// whether the transport is encrypted (cleartext passwords are only sent over TLS unless
    /// `allow_cleartext_password` is set).
    ///
    /// # Errors
    /// As [`PgConnection::connect`].
    pub fn startup(stream: S, opts: &ConnectOptions, tls: bool) -> Result<PgConnection<S>> {
        let mut conn = PgConnection {
            stream,
            read_buf: BytesMut::with_capacity(64 << 10),
            zeroed: (BytesMut::new(), 0),
            write_buf: BytesMut::with_capacity(8 << 10),
            decoder: BackendDecoder::new(),
            parameters: HashMap::new(),
            backend_key: None,
            replication: opts.replication,
            tls,
        };
        let mut params = vec![("user".to_owned(), opts.user.clone())];
        params.push(("database".to_owned(), opts.database.clone().unwrap_or_else(|| opts.user.clone())));
        match opts.replication {
            ReplicationMode::None => {}
            ReplicationMode::Physical => params.push(("replication".to_owned(), "true".to_owned())),
            ReplicationMode::Database => params.push(("replication".to_owned(), "database".to_owned())),
        }
        if let Some(app) = &opts.application_name {
            params.push(("application_name".to_owned(), app.clone()));
        }
        params.push(("client_encoding".to_owned(), "UTF8".to_owned()));
        conn.send(&FrontendMessage::Startup { version: PROTOCOL_VERSION_3_0, params })?;
        conn.authenticate(opts)?;
        loop {
            match conn.read_message()? {
                BackendMessage::BackendKeyData { process_id, secret_key } => {
                    conn.backend_key = Some((process_id, secret_key))
                }
                BackendMessage::ReadyForQuery { .. } => return Ok(conn),
                BackendMessage::ErrorResponse(e) => return Err(WireError::Server(e)),
                BackendMessage::NegotiateProtocolVersion { .. } => {}
                other => return Err(unexpected("during start-up", &other)),
            }
        }
    }

    fn authenticate(&mut self, opts: &ConnectOptions) -> Result<()> {
        let password = || {
            opts.password.clone().ok_or_else(|| {
                WireError::Auth(format!("the server asks user {:?} for a password, and none is configured", opts.user))
            })
        };
        let mut scram: Option<ScramClient> = None;
        loop {
            match self.read_message()? {
                BackendMessage::AuthenticationOk => return Ok(()),
                BackendMessage::AuthenticationCleartextPassword => {
                    if !self.tls && !opts.allow_cleartext_password {
                        return Err(WireError::Auth(
                            "the server asks for the password in cleartext over an unencrypted connection; \
                             refused (use TLS, SCRAM-SHA-256 authentication, or allow cleartext passwords)"
                                .to_owned(),
                        ));
                    }
                    self.send(&FrontendMessage::Password { password: password()? })?;
                }
                BackendMessage::AuthenticationMd5Password { .. } => {
                    return Err(WireError::Auth(format!(
                        "the server asks user {:?} for MD5 authentication, which is not supported: set \
                         password_encryption = scram-sha-256, set the password again, and use scram-sha-256 in pg_hba.conf",
                        opts.user
                    )))
                }
                BackendMessage::AuthenticationSasl { mechanisms } => {
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(WireError::Auth(format!("no supported SASL mechanism among {mechanisms:?}")));
                    }
                    let client = ScramClient::new(&password()?);
                    self.send(&FrontendMessage::SaslInitialResponse {
                        mechanism: SCRAM_SHA_256.to_owned(),
                        data: Some(Bytes::from(client.client_first())),
                    })?;
                    scram = Some(client);
                }
                BackendMessage::AuthenticationSaslContinue { data } => {
                    let client = scram.as_mut().ok_or_else(|| WireError::Protocol("SASLContinue without SASL".to_owned()))?;
                    let reply = client.update(&data)?;
                    self.send(&FrontendMessage::SaslResponse { data: Bytes::from(reply) })?;
                }
                BackendMessage::AuthenticationSaslFinal { data } => {
                    let client = scram.as_mut().ok_or_else(|| WireError::Protocol("SASLFinal without SASL".to_owned()))?;
                    client.finish(&data)?;
                }
                BackendMessage::AuthenticationOther { code, .. } => {
                    return Err(WireError::Auth(format!("authentication method {code} (Kerberos/GSSAPI/SSPI) is not supported")))
                }
                BackendMessage::ErrorResponse(e) => return Err(WireError::Server(e)),
                BackendMessage::NegotiateProtocolVersion { .. } => {}
                other => return Err(unexpected("during authentication", &other)),
            }
        }
    }

    /// The server's parameters reported so far (`server_version`, `integer_datetimes`...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The server's major version and full version string, from `server_version`.
    ///
    /// # Errors
    /// A missing or unsupported version.
    pub fn server_version(&self) -> Result<(PgVersion, &str)> {
        let text = self
            .parameter("server_version")
            .ok_or_else(|| WireError::Protocol("server did not report server_version".to_owned()))?;
        let version = PgVersion::from_version_string(text).map_err(|e| WireError::Usage(e.to_string()))?;
        Ok((version, text))
    }

    /// Process id and secret key for cancel requests.
    pub fn backend_key(&self) -> Option<(i32, &Bytes)> {
        self.backend_key.as_ref().map(|(p, k)| (*p, k))
    }

    /// Bytes decoded from the server so far (the stream offset used in error messages).
    pub fn stream_offset(&self) -> u64 {
        self.decoder.offset()
    }

    /// Whether the transport is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The replication mode asked for at start-up.
    pub fn replication_mode(&self) -> ReplicationMode {
        self.replication
    }

    /// Encodes and sends one message.
    ///
    /// # Errors
    /// When writing fails.
    pub fn send(&mut self, msg: &FrontendMessage) -> Result<()> {
        msg.encode(&mut self.write_buf);
        self.flush()
    }

    /// Encodes a message into the write buffer without sending it (see [`PgConnection::flush`]).
    pub fn queue(&mut self, msg: &FrontendMessage) {
        msg.encode(&mut self.write_buf);
    }

    /// Sends everything queued.
    ///
    /// # Errors
    /// When writing fails.
    pub fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.write_buf).map_err(|e| WireError::io("sending to the server", e))?;
        self.write_buf.clear();
        self.stream.flush().map_err(|e| WireError::io("sending to the server", e))
    }

    /// Reads the next message, waiting as long as the read timeout allows. Notices are logged
    /// and skipped; parameter changes are recorded and skipped.
    ///
    /// # Errors
    /// Read failures ([`WireError::Timeout`] when the read timeout passes), malformed messages.
    pub fn read_message(&mut self) -> Result<BackendMessage> {
        self.try_read_message()?.ok_or_else(|| WireError::Timeout("waiting for the server".to_owned()))
    }

    /// Like [`PgConnection::read_message`], but `Ok(None)` when the read timeout passes before a
    /// whole message arrived (what has arrived stays buffered).
    ///
    /// # Errors
    /// Read failures, malformed messages, the server closing the connection.
    pub fn try_read_message(&mut self) -> Result<Option<BackendMessage>> {
        loop {
            while let Some(msg) = self.decoder.decode(&mut self.read_buf)? {
                match msg {
                    BackendMessage::NoticeResponse(n) => log::info!("server notice: {n}"),
                    BackendMessage::ParameterStatus { name, value } => {
                        self.parameters.insert(name, value);
                    }
                    BackendMessage::NotificationResponse { .. } => {}
                    other => return Ok(Some(other)),
                }
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Reads more bytes; `false` when the read timed out.
    #[allow(unsafe_code)]
    fn fill(&mut self) -> Result<bool> {
        if self.read_buf.capacity() - self.read_buf.len() < 8192 {
            self.read_buf.reserve(crate::message::READ_RESERVE);
        }
        let len = self.read_buf.len();
        let cap = self.read_buf.capacity();
        let end = self.read_buf.as_ptr() as usize + cap;
        if end == self.zeroed.1 {
            // SAFETY: the bytes from `len` to `cap` are initialized. `zeroed.0` holds the
            // allocation that was zeroed up to `zeroed.1`, so it has not been freed and no other
            // allocation can end at that address: `read_buf` still ends there, so it is still in
            // that allocation. Within one allocation, splitting messages off the front,
            // truncating, and moving the data to the front keep every byte initialized. Zeroing
            // the spare capacity before every read cost about 1% of a backup's CPU.
            unsafe { self.read_buf.set_len(cap) };
        } else {
            self.read_buf.resize(cap, 0);
            // An empty handle on the same allocation (the previous one is let go).
            self.zeroed = (self.read_buf.split_to(0), end);
        }
        let result = self.stream.read(&mut self.read_buf[len..]);
        match result {
            Ok(0) => {
                self.read_buf.truncate(len);
                Err(WireError::Io {
                    op: "reading from the server".to_owned(),
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"),
                })
            }
            Ok(n) => {
                self.read_buf.truncate(len + n);
                Ok(true)
            }
            Err(e) => {
                self.read_buf.truncate(len);
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(false),
                    io::ErrorKind::Interrupted => Ok(true),
                    _ => Err(WireError::io("reading from the server", e)),
                }
            }
        }
    }

    /// Runs one or more SQL statements (or a replication command) with the simple query
    /// protocol and returns each statement's result.
    ///
    /// # Errors
    /// The server's error, after the connection is ready for the next query again.
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryResult>> {
        self.send(&FrontendMessage::Query { sql: sql.to_owned() })?;
        let mut results = Vec::new();
        let mut columns: Arc<[FieldDescription]> = Arc::from(Vec::new());
        let mut rows = Vec::new();
        let mut error: Option<ErrorFields> = None;
        loop {
            match self.read_message()? {
                BackendMessage::RowDescription { fields } => columns = Arc::from(fields),
                BackendMessage::DataRow { columns: values } => {
                    if values.len() != columns.len() {
                        return Err(WireError::Protocol(format!(
                            "row of {} columns for a description of {}",
                            values.len(),
                            columns.len()
                        )));
                    }
                    rows.push(Row { columns: columns.clone(), values })
                }
                BackendMessage::CommandComplete { tag } => {
                    results.push(QueryResult {
                        columns: std::mem::replace(&mut columns, Arc::from(Vec::new())),
                        rows: std::mem::take(&mut rows),
                        tag,
                    });
                }
                BackendMessage::EmptyQueryResponse => {}
                BackendMessage::ErrorResponse(e) => error = Some(e),
                BackendMessage::ReadyForQuery { .. } => {
                    return match error {
                        Some(e) => Err(WireError::Server(e)),
                        None => Ok(results),
                    }
                }
                BackendMessage::CopyInResponse(_) => {
                    // A COPY FROM STDIN we did not ask to feed: refuse it cleanly.
                    self.send(&FrontendMessage::CopyFail {
                        message: "COPY FROM STDIN is not supported here".to_owned(),
                    })?;
                }
                BackendMessage::CopyOutResponse(_) | BackendMessage::CopyData(_) | BackendMessage::CopyDone => {}
                other => return Err(unexpected("in a query result", &other)),
            }
        }
    }

    /// Runs a query and returns the rows of its last result.
    ///
    /// # Errors
    /// As [`PgConnection::simple_query`].
    pub fn query(&mut self, sql: &str) -> Result<Vec<Row>> {
        Ok(self.simple_query(sql)?.pop().map(|r| r.rows).unwrap_or_default())
    }

    /// Runs a query expected to return exactly one row.
    ///
    /// # Errors
    /// As [`PgConnection::simple_query`], or another number of rows.
    pub fn query_one(&mut self, sql: &str) -> Result<Row> {
        let mut rows = self.query(sql)?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(WireError::Protocol(format!("expected one row from {sql:?}, got {n}"))),
        }
    }

    /// Runs statements, discarding any rows.
    ///
    /// # Errors
    /// As [`PgConnection::simple_query`].
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        self.simple_query(sql).map(drop)
    }

    /// Ends the session politely.
    ///
    /// # Errors
    /// When the farewell cannot be sent (the connection is closed either way).
    pub fn close(mut self) -> Result<()> {
        self.send(&FrontendMessage::Terminate)
    }

    pub(crate) fn require_replication(&self, command: &str) -> Result<()> {
        if self.replication == ReplicationMode::None {
            return Err(WireError::Usage(format!("{command} needs a replication connection (replication=true)")));
        }
        Ok(())
    }
}

pub(crate) fn unexpected(context: &str, msg: &BackendMessage) -> WireError {
    WireError::Protocol(format!("unexpected {} {context}", msg.name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The server's side of a connection: `data`, delivered in reads of the given sizes in turn.
    struct Scripted {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.turn % self.sizes.len()];
            self.turn += 1;
            let n = size.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn connection(stream: Scripted) -> PgConnection<Scripted> {
        PgConnection {
            stream,
            read_buf: BytesMut::with_capacity(64 << 10),
            zeroed: (BytesMut::new(), 0),
            write_buf: BytesMut::new(),
            decoder: BackendDecoder::new(),
            parameters: HashMap::new(),
            backend_key: None,
            replication: ReplicationMode::Physical,
            tls: false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Messages of any size, read in pieces of any size, arrive intact, however long the
        /// earlier ones are kept (a kept message holds its part of the read buffer, so the
        /// buffer moves to new allocations, or back to the front of its own, in every order).
        #[test]
        fn messages_arrive_intact_across_reads(
            lens in proptest::collection::vec(0usize..150_000, 1..40),
            sizes in proptest::collection::vec(1usize..200_000, 1..8),
            keep in proptest::collection::vec(0usize..4, 1..16),
        ) {
            let mut data = Vec::new();
            for (i, len) in lens.iter().enumerate() {
                data.push(b'd');
                data.extend_from_slice(&u32::try_from(len + 4).unwrap().to_be_bytes());
                data.extend((0..*len).map(|j| (i * 31 + j * 7) as u8));
            }
            let mut conn = connection(Scripted { data, at: 0, sizes, turn: 0 });
            let mut kept: Vec<(usize, Bytes)> = Vec::new();
            for (i, len) in lens.iter().enumerate() {
                let BackendMessage::CopyData(d) = conn.read_message().unwrap() else {
                    panic!("message {i} is not CopyData");
                };
                prop_assert_eq!(d.len(), *len);
                prop_assert!(d.iter().enumerate().all(|(j, b)| *b == (i * 31 + j * 7) as u8), "message {} differs", i);
                kept.push((i, d));
                // Some messages are dropped at once, others kept for a while.
                let hold = keep[i % keep.len()];
                kept.retain(|(k, _)| i - k < hold);
            }
            for (k, d) in &kept {
                prop_assert!(d.iter().enumerate().all(|(j, b)| *b == (k * 31 + j * 7) as u8), "kept message {} changed", k);
            }
        }
    }
}
