//! The management server: the local Unix socket `<unix_socket_dir>/.s.pgmoneta` and the remote
//! TCP port (optional TLS, a PostgreSQL-style start-up for `database=admin`, SCRAM-SHA-256
//! against the admins vault). One request per connection; each connection has its own thread,
//! up to a cap.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use pgmoneta_wire::auth::scram::{ScramServer, ScramVerifier, SCRAM_SHA_256};
use pgmoneta_wire::management::{error_code, payload, read_frame, write_frame, Command, Document, Outcome};
use pgmoneta_wire::message::backend::BackendMessage;
use pgmoneta_wire::message::frontend::{AuthResponseKind, FrontendDecoder, FrontendMessage};
use pgmoneta_wire::ErrorFields;

use crate::commands;
use crate::error::{DaemonError, Result};
use crate::state::Shared;

/// Requests handled at once; further connections get error 3 (ALLOCATION).
pub const MAX_CONCURRENT: usize = 64;
/// The start-up and authentication of a remote client must finish within this.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(5);

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        let prev = ACTIVE.fetch_add(1, Ordering::SeqCst);
        if prev >= MAX_CONCURRENT {
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
            None
        } else {
            Some(Slot)
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections until the daemon stops, running `handle` for each on its own thread.
/// `accept` must not block (the listener is non-blocking) and returns blocking streams.
pub fn spawn_acceptor<S: Send + 'static>(
    shared: Arc<Shared>,
    name: &'static str,
    mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
    handle: impl Fn(&Arc<Shared>, S) + Send + Sync + 'static,
) -> JoinHandle<()> {
    let handle = Arc::new(handle);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !shared.stopping() {
                match accept() {
                    Ok(stream) => {
                        let (shared, handle) = (shared.clone(), handle.clone());
                        let _ = std::thread::Builder::new()
                            .name(format!("{name} request"))
                            .spawn(move || handle(&shared, stream));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        log::warn!("{name}: accept: {e}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .expect("spawning a thread")
}

/// Accepts on the Unix socket until the daemon stops.
pub fn serve_unix(shared: Arc<Shared>, listener: UnixListener) -> JoinHandle<()> {
    let _ = listener.set_nonblocking(true);
    let accept = move || {
        let (s, _) = listener.accept()?;
        s.set_nonblocking(false)?;
        Ok(s)
    };
    spawn_acceptor(shared, "management", accept, handle_unix)
}

fn handle_unix(shared: &Arc<Shared>, mut stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    serve_one(shared, &mut stream);
}

/// Reads one request frame from `stream`, runs it and writes the reply.
pub fn serve_one<S: Read + Write>(shared: &Arc<Shared>, stream: &mut S) {
    let started = Instant::now();
    let frame = match read_frame(stream) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("management: unreadable request frame: {e}");
            let reply =
                failure_document(Command::Unknown, error_code::BAD_PAYLOAD, format!("unreadable request frame: {e}"));
            let _ = send(shared, stream, &reply, 0, 0);
            return;
        }
    };
    let key = shared.master_key.as_deref();
    let doc = match payload::decode(&frame, key).and_then(|text| Document::from_json(&text)) {
        Ok(d) => d,
        Err(e) => {
            log::warn!("management: bad request payload: {e}");
            let reply =
                failure_document(Command::Unknown, error_code::BAD_PAYLOAD, format!("bad request payload: {e}"));
            let _ = send(shared, stream, &reply, frame.compression, frame.encryption);
            return;
        }
    };
    let Some(_slot) = Slot::take() else {
        let mut reply = doc.clone();
        reply.response = Some(commands::base_response());
        reply.outcome = Some(
            Outcome::failure(error_code::ALLOCATION, None)
                .with_message(format!("the daemon is already handling {MAX_CONCURRENT} requests; try again")),
        );
        let _ = send(shared, stream, &reply, frame.compression, frame.encryption);
        return;
    };
    let reply = commands::dispatch(shared, doc, started);
    if let Err(e) = send(shared, stream, &reply, frame.compression, frame.encryption) {
        log::warn!("management: sending the reply: {e}");
    }
    if reply.header.command == Command::Shutdown && reply.outcome.as_ref().is_some_and(|o| o.status) {
        crate::request_shutdown(shared);
    }
}

fn failure_document(command: Command, code: u32, message: String) -> Document {
    let mut d = Document::request(command, serde_json::Map::new(), pgmoneta_wire::management::OutputFormat::Text, "");
    d.response = Some(commands::base_response());
    d.outcome = Some(Outcome::failure(code, None).with_message(message));
    d
}

fn send<S: Write>(shared: &Shared, stream: &mut S, doc: &Document, compression: u8, encryption: u8) -> Result<()> {
    let frame = payload::encode(&doc.to_json(), compression, encryption, shared.master_key.as_deref())
        .or_else(|_| payload::encode(&doc.to_json(), 0, 0, None))?;
    write_frame(stream, &frame)?;
    stream.flush().map_err(|source| DaemonError::Connection { what: "writing", source })
}

/// The TLS acceptor for the management port, when `tls` is on.
///
/// # Errors
/// [`DaemonError::Tls`] naming the setting and file that could not be used.
pub fn tls_acceptor(cert: &str, key: &str, ca: Option<&str>) -> Result<SslAcceptor> {
    let tls = |setting: &str, file: &str| {
        let (setting, file) = (setting.to_owned(), file.to_owned());
        move |source| DaemonError::Tls { setting, file, source }
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(tls("TLS", "set-up"))?;
    b.set_certificate_chain_file(cert).map_err(tls("tls_cert_file", cert))?;
    b.set_private_key_file(key, SslFiletype::PEM).map_err(tls("tls_key_file", key))?;
    b.check_private_key().map_err(tls("tls_key_file", &format!("{key} (it does not match {cert})")))?;
    if let Some(ca) = ca {
        b.set_ca_file(ca).map_err(tls("tls_ca_file", ca))?;
        b.set_verify(SslVerifyMode::PEER);
    }
    Ok(b.build())
}

/// Accepts on the remote management port until the daemon stops.
pub fn serve_remote(shared: Arc<Shared>, listener: TcpListener, tls: Option<Arc<SslAcceptor>>) -> JoinHandle<()> {
    let _ = listener.set_nonblocking(true);
    let accept = move || {
        let (s, peer) = listener.accept()?;
        s.set_nonblocking(false)?;
        Ok((s, peer))
    };
    spawn_acceptor(shared, "remote management", accept, move |shared, (stream, peer)| {
        if let Err(e) = handle_remote(shared, stream, tls.as_deref()) {
            log::warn!("remote management from {peer}: {e}");
        }
    })
}

/// A stream that is plain TCP or TLS over TCP.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<openssl::ssl::SslStream<TcpStream>>),
}

impl Conn {
    /// The TCP connection under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn next_message<S: Read>(stream: &mut S, decoder: &mut FrontendDecoder, buf: &mut BytesMut) -> Result<FrontendMessage> {
    loop {
        if let Some(m) = decoder.decode(buf)? {
            return Ok(m);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).map_err(|source| DaemonError::Connection { what: "reading", source })?;
        if n == 0 {
            return Err(DaemonError::Refused("the client closed the connection".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn write_backend<S: Write>(stream: &mut S, messages: &[BackendMessage]) -> Result<()> {
    let mut out = BytesMut::new();
    for m in messages {
        m.encode(&mut out);
    }
    stream
        .write_all(&out)
        .and_then(|_| stream.flush())
        .map_err(|source| DaemonError::Connection { what: "writing", source })
}

fn refuse<S: Write>(stream: &mut S, why: &str) -> DaemonError {
    let fields = ErrorFields {
        fields: vec![
            (b'S', "FATAL".into()),
            (b'V', "FATAL".into()),
            (b'C', "28000".into()),
            (b'M', "connection refused".into()),
        ],
    };
    let _ = write_backend(stream, &[BackendMessage::ErrorResponse(fields)]);
    DaemonError::Refused(why.to_owned())
}

fn handle_remote(shared: &Arc<Shared>, tcp: TcpStream, tls: Option<&SslAcceptor>) -> Result<()> {
    let (user, mut rest) = authenticate(shared, tcp, tls)?;
    log::info!("remote management: {user} authenticated");
    serve_one(shared, &mut rest);
    Ok(())
}

/// A connection on a TCP port of the daemon, once its client is authenticated: TLS when the
/// client asked for it (required when `tls` is given), then SCRAM-SHA-256 for a user of the
/// admins vault asking for the `admin` database. Returns the user and the stream, with any
/// bytes that arrived with the last handshake message in front.
///
/// # Errors
/// [`DaemonError::Refused`] saying why (the client is sent a FATAL error first), connection
/// errors.
pub fn authenticate(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    tls: Option<&SslAcceptor>,
) -> Result<(String, Authenticated)> {
    let io = |what: &'static str| move |source| DaemonError::Connection { what, source };
    let _ = tcp.set_read_timeout(Some(AUTHENTICATION_TIMEOUT));
    let _ = tcp.set_nodelay(true);
    let mut decoder = FrontendDecoder::new();
    let mut buf = BytesMut::new();
    let mut conn = Conn::Plain(tcp.try_clone().map_err(io("accepting"))?);
    let mut first = next_message(&mut conn, &mut decoder, &mut buf)?;
    if first == FrontendMessage::SslRequest {
        match tls {
            Some(acceptor) => {
                conn.write_all(b"S").map_err(io("writing"))?;
                let stream = acceptor
                    .accept(tcp.try_clone().map_err(io("accepting"))?)
                    .map_err(|e| DaemonError::Refused(format!("TLS: {e}")))?;
                conn = Conn::Tls(Box::new(stream));
            }
            None => conn.write_all(b"N").map_err(io("writing"))?,
        }
        decoder = FrontendDecoder::new();
        buf.clear();
        first = next_message(&mut conn, &mut decoder, &mut buf)?;
    } else if tls.is_some() {
        return Err(refuse(&mut conn, "tls = on: the client must ask for TLS (SSLRequest) first"));
    }
    let FrontendMessage::Startup { params, .. } = first else {
        return Err(refuse(&mut conn, "expected a start-up message"));
    };
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let user = param("user").unwrap_or_default();
    if param("database").as_deref() != Some("admin") {
        return Err(refuse(&mut conn, &format!("user {user:?} asked for database {:?}, not admin", param("database"))));
    }
    let Some(password) = shared.admins.read().get(&user).cloned() else {
        return Err(refuse(&mut conn, &format!("{user:?} is not in the admins vault")));
    };
    write_backend(&mut conn, &[BackendMessage::AuthenticationSasl { mechanisms: vec![SCRAM_SHA_256.to_owned()] }])?;
    decoder.expect_auth_response(AuthResponseKind::SaslInitial);
    let FrontendMessage::SaslInitialResponse { mechanism, data } = next_message(&mut conn, &mut decoder, &mut buf)?
    else {
        return Err(refuse(&mut conn, "expected SASLInitialResponse"));
    };
    if mechanism != SCRAM_SHA_256 {
        return Err(refuse(&mut conn, &format!("unsupported SASL mechanism {mechanism:?}")));
    }
    let mut scram = ScramServer::new(ScramVerifier::generate(&password));
    let server_first = scram
        .handle_client_first(data.as_deref().unwrap_or_default())
        .map_err(|e| refuse(&mut conn, &e.to_string()))?;
    write_backend(&mut conn, &[BackendMessage::AuthenticationSaslContinue { data: server_first.into() }])?;
    decoder.expect_auth_response(AuthResponseKind::Sasl);
    let FrontendMessage::SaslResponse { data } = next_message(&mut conn, &mut decoder, &mut buf)? else {
        return Err(refuse(&mut conn, "expected SASLResponse"));
    };
    let server_final = match scram.handle_client_final(&data) {
        Ok(f) if scram.is_authenticated() => f,
        _ => return Err(refuse(&mut conn, &format!("authentication of {user:?} failed"))),
    };
    write_backend(
        &mut conn,
        &[BackendMessage::AuthenticationSaslFinal { data: server_final.into() }, BackendMessage::AuthenticationOk],
    )?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    // Bytes that arrived with the last handshake message belong to the first frame.
    Ok((user, Prefixed { prefix: buf.to_vec(), pos: 0, inner: conn }))
}

/// An authenticated connection (see [`authenticate`]).
pub type Authenticated = Prefixed<Conn>;

/// A stream with bytes already read from it in front.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// The stream under it.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Read> Read for Prefixed<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.pos);
            buf[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Prefixed<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
