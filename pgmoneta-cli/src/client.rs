//! A management client: one request to the daemon over its Unix socket, or over TCP (with TLS
//! when the client has a key in `~/.pgmoneta/`) after SCRAM-SHA-256 authentication as an admin.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode};
use pgmoneta_crypto::MasterKey;
use pgmoneta_wire::auth::scram::{ScramClient, SCRAM_SHA_256};
use pgmoneta_wire::management::{payload, read_frame, write_frame, Document};
use pgmoneta_wire::message::backend::{BackendDecoder, BackendMessage};
use pgmoneta_wire::message::frontend::FrontendMessage;

/// Where the daemon is and how to talk to it.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `<dir>/.s.pgmoneta`.
    Unix(PathBuf),
    /// The remote management port.
    Tcp {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Admin user.
        user: String,
        /// Admin password.
        password: String,
    },
}

/// Wire compression and encryption codes for the request (the reply uses the same).
#[derive(Clone, Copy, Debug, Default)]
pub struct WireOptions {
    /// 0 none, 1 gzip, 2 zstd, 3 lz4, 4 bzip2.
    pub compression: u8,
    /// 0 none, 1 AES-256-GCM, 2 AES-192-GCM, 3 AES-128-GCM.
    pub encryption: u8,
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl Conn {
    fn wait_forever(&self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(None),
            Conn::Tcp(s) => s.set_read_timeout(None),
            Conn::Tls(s) => s.get_ref().set_read_timeout(None),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn home_file(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgmoneta").join(name))
}

fn send_frontend<S: Write>(s: &mut S, m: &FrontendMessage) -> Result<()> {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    s.write_all(&b)?;
    s.flush()?;
    Ok(())
}

fn read_backend<S: Read>(s: &mut S, dec: &mut BackendDecoder, buf: &mut BytesMut) -> Result<BackendMessage> {
    loop {
        if let Some(m) = dec.decode(buf)? {
            return Ok(m);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("the daemon closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn connect_tcp(host: &str, port: u16, user: &str, password: &str) -> Result<Conn> {
    let tcp = TcpStream::connect((host, port)).with_context(|| format!("connecting to {host}:{port}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut conn = Conn::Tcp(tcp.try_clone()?);
    let key = home_file("pgmoneta.key").filter(|p| p.exists());
    if let Some(key) = key {
        send_frontend(&mut conn, &FrontendMessage::SslRequest)?;
        let mut answer = [0u8; 1];
        conn.read_exact(&mut answer)?;
        if answer[0] != b'S' {
            bail!("{host}:{port} does not offer TLS, and this client has a TLS key ({})", key.display());
        }
        let mut b = SslConnector::builder(SslMethod::tls())?;
        if let Some(cert) = home_file("pgmoneta.crt").filter(|p| p.exists()) {
            b.set_certificate_chain_file(&cert)?;
            b.set_private_key_file(&key, SslFiletype::PEM)?;
        }
        match home_file("root.crt").filter(|p| p.exists()) {
            Some(ca) => {
                b.set_ca_file(&ca)?;
                b.set_verify(SslVerifyMode::PEER);
            }
            None => b.set_verify(SslVerifyMode::NONE),
        }
        let mut cfg = b.build().configure()?;
        cfg.set_verify_hostname(false);
        let tls = cfg.connect(host, tcp).map_err(|e| anyhow!("TLS with {host}:{port}: {e}"))?;
        conn = Conn::Tls(Box::new(tls));
    }
    let params = vec![("user".to_owned(), user.to_owned()), ("database".to_owned(), "admin".to_owned())];
    send_frontend(&mut conn, &FrontendMessage::Startup { version: 196608, params })?;
    let mut dec = BackendDecoder::new();
    let mut buf = BytesMut::new();
    let mut scram = ScramClient::new(password);
    loop {
        // A refusal that does not parse (upstream's daemon sends one without its last NUL) is
        // still a refusal.
        let message = read_backend(&mut conn, &mut dec, &mut buf)
            .map_err(|e| anyhow!("{host}:{port} refused {user:?}: authentication failed ({e})"))?;
        match message {
            BackendMessage::AuthenticationSasl { mechanisms } => {
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    bail!("the daemon offers {mechanisms:?}, not SCRAM-SHA-256");
                }
                let data = scram.client_first();
                send_frontend(
                    &mut conn,
                    &FrontendMessage::SaslInitialResponse { mechanism: SCRAM_SHA_256.into(), data: Some(data.into()) },
                )?;
            }
            BackendMessage::AuthenticationSaslContinue { data } => {
                let reply = scram.update(&data)?;
                send_frontend(&mut conn, &FrontendMessage::SaslResponse { data: reply.into() })?;
            }
            BackendMessage::AuthenticationSaslFinal { data } => scram.finish(&data)?,
            BackendMessage::AuthenticationOk => break,
            BackendMessage::ErrorResponse(e) => {
                bail!("{host}:{port} refused {user:?}: {}", e.field(b'M').unwrap_or("connection refused"))
            }
            other => bail!("unexpected {} during authentication", other.name()),
        }
    }
    if !buf.is_empty() {
        bail!("unexpected data after authentication");
    }
    Ok(conn)
}

/// Sends `doc` and returns the reply document and its raw JSON text.
///
/// # Errors
/// Connection, authentication and frame failures.
pub fn call(
    endpoint: &Endpoint,
    doc: &Document,
    wire: WireOptions,
    key: Option<&MasterKey>,
) -> Result<(Document, String)> {
    let mut conn = match endpoint {
        Endpoint::Unix(path) => {
            let s = UnixStream::connect(path)
                .with_context(|| format!("connecting to {} (is pgmoneta running?)", path.display()))?;
            Conn::Unix(s)
        }
        Endpoint::Tcp { host, port, user, password } => connect_tcp(host, *port, user, password)?,
    };
    let mut doc = doc.clone();
    doc.header.compression = wire.compression;
    doc.header.encryption = wire.encryption;
    let frame = payload::encode(&doc.to_json(), wire.compression, wire.encryption, key)?;
    write_frame(&mut conn, &frame)?;
    // A long operation (a backup) answers when it is done.
    conn.wait_forever()?;
    let reply = read_frame(&mut conn).context("reading the reply")?;
    let text = payload::decode(&reply, key)?;
    let parsed = Document::from_json(&text)?;
    Ok((parsed, text))
}
