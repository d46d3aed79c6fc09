//! The client side of a remote management (or cluster) connection: TCP, TLS when asked for, and
//! SCRAM-SHA-256 for an admin, as `pgmoneta-cli` and peer nodes connect to a daemon's port.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode};

use crate::auth::scram::{ScramClient, SCRAM_SHA_256};
use crate::error::{Result, WireError};
use crate::message::backend::{BackendDecoder, BackendMessage};
use crate::message::frontend::FrontendMessage;

/// How to set up TLS with the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A client certificate to present (with `key`).
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    pub key: Option<PathBuf>,
    /// The authority that signed the daemon's certificate: verified when set (the host name is
    /// not checked: nodes and daemons are often reached by address).
    pub ca: Option<PathBuf>,
}

/// An authenticated connection to a daemon.
pub enum RemoteStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<SslStream<TcpStream>>),
}

impl RemoteStream {
    /// The TCP connection under it (for timeouts).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            RemoteStream::Tcp(s) => s,
            RemoteStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for RemoteStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            RemoteStream::Tcp(s) => s.read(buf),
            RemoteStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for RemoteStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RemoteStream::Tcp(s) => s.write(buf),
            RemoteStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            RemoteStream::Tcp(s) => s.flush(),
            RemoteStream::Tls(s) => s.flush(),
        }
    }
}

fn send<S: Write>(s: &mut S, m: &FrontendMessage) -> Result<()> {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    s.write_all(&b).and_then(|()| s.flush()).map_err(|e| WireError::io("writing to the daemon", e))
}

fn receive<S: Read>(s: &mut S, dec: &mut BackendDecoder, buf: &mut BytesMut) -> Result<BackendMessage> {
    loop {
        if let Some(m) = dec.decode(buf)? {
            return Ok(m);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).map_err(|e| WireError::io("reading from the daemon", e))?;
        if n == 0 {
            return Err(WireError::Io {
                op: "reading from the daemon".into(),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the connection"),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to the daemon's TCP port at `host:port` and authenticates `user`, over TLS when
/// `tls` is given. `timeout` bounds the connection and each read of the handshake.
///
/// # Errors
/// [`WireError::Auth`] when the daemon refuses (a wrong password, an unknown user, TLS
/// required) or does not offer TLS though it was asked for; [`WireError::Tls`] when TLS cannot
/// be set up or the daemon's certificate does not verify; connection errors.
pub fn connect_remote(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    tls: Option<&TlsSettings>,
    timeout: Duration,
) -> Result<RemoteStream> {
    let target = format!("{host}:{port}");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| WireError::io(format!("resolving {target}"), e))?
        .next()
        .ok_or_else(|| WireError::Usage(format!("{host} has no address")))?;
    let tcp =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| WireError::io(format!("connecting to {target}"), e))?;
    tcp.set_read_timeout(Some(timeout)).map_err(|e| WireError::io("setting a timeout", e))?;
    let _ = tcp.set_nodelay(true);
    let mut conn = RemoteStream::Tcp(tcp.try_clone().map_err(|e| WireError::io("connecting", e))?);
    if let Some(settings) = tls {
        send(&mut conn, &FrontendMessage::SslRequest)?;
        let mut answer = [0u8; 1];
        conn.read_exact(&mut answer).map_err(|e| WireError::io(format!("asking {target} for TLS"), e))?;
        if answer[0] != b'S' {
            return Err(WireError::Auth(format!("{target} does not offer TLS")));
        }
        let tls_err = |what: &str| {
            let what = what.to_owned();
            move |e: openssl::error::ErrorStack| WireError::Tls(format!("{what}: {e}"))
        };
        let mut b = SslConnector::builder(SslMethod::tls()).map_err(tls_err("set-up"))?;
        if let (Some(cert), Some(key)) = (&settings.cert, &settings.key) {
            b.set_certificate_chain_file(cert).map_err(tls_err(&cert.display().to_string()))?;
            b.set_private_key_file(key, SslFiletype::PEM).map_err(tls_err(&key.display().to_string()))?;
        }
        match &settings.ca {
            Some(ca) => {
                b.set_ca_file(ca).map_err(tls_err(&ca.display().to_string()))?;
                b.set_verify(SslVerifyMode::PEER);
            }
            None => b.set_verify(SslVerifyMode::NONE),
        }
        let mut cfg = b.build().configure().map_err(tls_err("set-up"))?;
        cfg.set_verify_hostname(false);
        let stream = cfg.connect(host, tcp).map_err(|e| WireError::Tls(format!("with {target}: {e}")))?;
        conn = RemoteStream::Tls(Box::new(stream));
    }
    let params = vec![("user".to_owned(), user.to_owned()), ("database".to_owned(), "admin".to_owned())];
    send(&mut conn, &FrontendMessage::Startup { version: 196608, params })?;
    let mut dec = BackendDecoder::new();
    let mut buf = BytesMut::new();
    let mut scram = ScramClient::new(password);
    let refused = |why: String| WireError::Auth(format!("{target} refused {user:?}: {why}"));
    loop {
        // A refusal that does not parse (upstream's daemon sends one without its last NUL) is
        // still a refusal.
        let message = receive(&mut conn, &mut dec, &mut buf).map_err(|e| refused(format!("({e})")))?;
        match message {
            BackendMessage::AuthenticationSasl { mechanisms } => {
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(refused(format!("it offers {mechanisms:?}, not SCRAM-SHA-256")));
                }
                let data = scram.client_first();
                send(
                    &mut conn,
                    &FrontendMessage::SaslInitialResponse { mechanism: SCRAM_SHA_256.into(), data: Some(data.into()) },
                )?;
            }
            BackendMessage::AuthenticationSaslContinue { data } => {
                let reply = scram.update(&data)?;
                send(&mut conn, &FrontendMessage::SaslResponse { data: reply.into() })?;
            }
            BackendMessage::AuthenticationSaslFinal { data } => scram.finish(&data)?,
            BackendMessage::AuthenticationOk => break,
            BackendMessage::ErrorResponse(e) => {
                return Err(refused(e.field(b'M').unwrap_or("connection refused").to_owned()));
            }
            other => return Err(WireError::Protocol(format!("unexpected {} during authentication", other.name()))),
        }
    }
    if !buf.is_empty() {
        return Err(WireError::Protocol("unexpected data after authentication".into()));
    }
    Ok(conn)
}
