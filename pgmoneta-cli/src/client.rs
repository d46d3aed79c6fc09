//! A management client: one request to the daemon over its Unix socket, or over TCP (with TLS
//! when the client has a key in `~/.pgmoneta/`) after SCRAM-SHA-256 authentication as an admin.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use pgmoneta_crypto::MasterKey;
use pgmoneta_wire::management::client::{connect_remote, RemoteStream, TlsSettings};
use pgmoneta_wire::management::{payload, read_frame, write_frame, Document};

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
    Remote(RemoteStream),
}

impl Conn {
    fn wait_forever(&self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(None),
            Conn::Remote(s) => s.tcp().set_read_timeout(None),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Remote(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Remote(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Remote(s) => s.flush(),
        }
    }
}

fn home_file(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgmoneta").join(name))
}

/// Connects to a daemon's remote management port: over TLS when `~/.pgmoneta/pgmoneta.key`
/// exists (with `pgmoneta.crt` presented, and the daemon verified against `root.crt` when
/// there is one).
fn connect_tcp(host: &str, port: u16, user: &str, password: &str) -> Result<Conn> {
    let tls = home_file("pgmoneta.key").filter(|p| p.exists()).map(|key| TlsSettings {
        cert: home_file("pgmoneta.crt").filter(|p| p.exists()),
        key: Some(key),
        ca: home_file("root.crt").filter(|p| p.exists()),
    });
    let stream = connect_remote(host, port, user, password, tls.as_ref(), Duration::from_secs(30))?;
    Ok(Conn::Remote(stream))
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
