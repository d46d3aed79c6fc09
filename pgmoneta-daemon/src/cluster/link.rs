//! The links between nodes: this node's cluster port, where peers connect, and one connection
//! to each peer, over which this node sends its heartbeats.

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openssl::ssl::SslAcceptor;
use pgmoneta_wire::cluster::{self, Message, PROTOCOL_VERSION};
use pgmoneta_wire::management::client::{connect_remote, RemoteStream, TlsSettings};
use pgmoneta_wire::management::Document;

use super::node::Cluster;
use super::{backups, copy};
use crate::error::{DaemonError, Result};
use crate::state::Shared;
use crate::{commands, mgmt};

fn error(code: &str, message: impl Into<String>) -> Message {
    Message::Error { code: code.to_owned(), message: message.into() }
}

/// Accepts peers on the cluster port until the daemon stops. Every connection is TLS (the
/// configuration requires it) and authenticated as `cluster_user`.
pub fn serve(
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    listener: TcpListener,
    tls: Arc<SslAcceptor>,
) -> JoinHandle<()> {
    let _ = listener.set_nonblocking(true);
    let accept = move || {
        let (s, peer) = listener.accept()?;
        s.set_nonblocking(false)?;
        Ok((s, peer))
    };
    mgmt::spawn_acceptor(shared, "cluster", accept, move |shared, (stream, address)| {
        if let Err(e) = handle(shared, &cluster, stream, &tls) {
            log::warn!("cluster: connection from {address}: {e}");
        }
    })
}

fn handle(shared: &Arc<Shared>, cluster: &Cluster, tcp: std::net::TcpStream, tls: &SslAcceptor) -> Result<()> {
    let (user, mut conn) = mgmt::authenticate(shared, tcp, Some(tls))?;
    let expected = shared.config().main.cluster_user.clone();
    if expected.as_deref() != Some(user.as_str()) {
        let _ = cluster::send(&mut conn, &error("refused", format!("{user} is not the cluster user")));
        return Err(DaemonError::Refused(format!("{user:?} is not cluster_user")));
    }
    let node = match cluster::receive(&mut conn)? {
        Message::Hello { node, version, key } if version == PROTOCOL_VERSION => {
            let mine = key_fingerprint(shared);
            if key != mine {
                let which = match (&key, &mine) {
                    (Some(_), Some(_)) => "another master key than this node's",
                    (Some(_), None) => "a master key and this node none",
                    _ => "no master key and this node one",
                };
                let why = format!(
                    "node {node} holds {which}: backups and WAL copied between them could not be decrypted; give \
                     every node the same master.key"
                );
                let _ = cluster::send(&mut conn, &error("master-key", why.clone()));
                return Err(DaemonError::Refused(why));
            }
            node
        }
        Message::Hello { version, .. } => {
            let why = format!("protocol version {version}; this node speaks {PROTOCOL_VERSION}");
            let _ = cluster::send(&mut conn, &error("version", why.clone()));
            return Err(DaemonError::Refused(why));
        }
        _ => {
            let _ = cluster::send(&mut conn, &error("protocol", "the first message must be Hello"));
            return Err(DaemonError::Refused("the first message was not Hello".into()));
        }
    };
    if !cluster.is_peer(&node) {
        let _ = cluster::send(&mut conn, &error("unknown-node", format!("{node} is not in cluster_peers")));
        return Err(DaemonError::Refused(format!("node {node:?} is not in cluster_peers")));
    }
    cluster::send(&mut conn, &Message::Welcome { node: cluster.me.clone(), version: PROTOCOL_VERSION })?;
    log::info!("cluster: {node} connected");
    // A peer sends a heartbeat every heartbeat; silence for a whole takeover ends the link.
    let _ = conn.get_ref().tcp().set_read_timeout(Some(cluster.timing.takeover));
    while !shared.stopping() && cluster.is_peer(&node) {
        let message = match cluster::receive(&mut conn) {
            Ok(m) => m,
            Err(e) => {
                log::info!("cluster: {node} disconnected: {e}");
                return Ok(());
            }
        };
        let reply = match message {
            Message::Heartbeat(view) if view.node == node => {
                cluster.record(shared, view, Instant::now());
                Message::Heartbeat(cluster.view(shared))
            }
            Message::Heartbeat(view) => error("protocol", format!("{node} sent the view of {}", view.node)),
            Message::Catalog { server } => backups::catalog(shared, cluster, &server),
            Message::Files { server, backup } => backups::files(shared, &server, &backup),
            Message::WalList { server, after } => copy::wal_list(shared, &server, &after),
            Message::Fetch { server, path, offset, length } => {
                copy::fetch(&mut conn, shared, &server, &path, offset, length)?;
                continue;
            }
            Message::Forward { document } => forwarded(shared, &node, document),
            other => error("protocol", format!("{} is not a request", other_name(&other))),
        };
        cluster::send(&mut conn, &reply)?;
    }
    Ok(())
}

fn other_name(m: &Message) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.get("Type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Keeps a connection to each peer and sends this node's view every heartbeat; what each peer
/// answers goes to [`Cluster::record`]. A peer that cannot be reached is tried again every
/// heartbeat, and the reason is kept for `cluster status`.
pub fn spawn_peers(shared: Arc<Shared>, cluster: Arc<Cluster>) -> Vec<JoinHandle<()>> {
    let mut threads: Vec<JoinHandle<()>> =
        cluster.peers().into_keys().filter_map(|name| spawn_peer(shared.clone(), cluster.clone(), name)).collect();
    // Each server's role follows what this node's WAL receiver does, every heartbeat.
    let spawned = std::thread::Builder::new().name("cluster roles".into()).spawn(move || {
        while !shared.stopping() {
            cluster.tick(&shared, Instant::now());
            sleep_unless_stopping(&shared, cluster.timing.heartbeat);
        }
    });
    match spawned {
        Ok(t) => threads.push(t),
        Err(e) => log::error!("cluster: starting the role ticker: {e}"),
    }
    threads
}

/// Starts the connection to each peer a reloaded configuration added.
pub fn spawn_new_peers(shared: &Arc<Shared>, cluster: &Arc<Cluster>) {
    for name in cluster.peers().into_keys() {
        // Detached: it ends when the daemon stops or the peer is removed.
        drop(spawn_peer(shared.clone(), cluster.clone(), name));
    }
}

/// The connection to peer `name`, in a thread of its own, unless one runs already; it ends
/// when the daemon stops or the peer is no longer configured.
fn spawn_peer(shared: Arc<Shared>, cluster: Arc<Cluster>, name: String) -> Option<JoinHandle<()>> {
    if !cluster.link_started(&name) {
        return None;
    }
    // Backups go on a connection of their own: a long copy holds up neither heartbeats nor
    // the WAL.
    let key = format!("{name} backups");
    if cluster.link_started(&key) {
        let copier = std::thread::Builder::new().name(format!("cluster backups {name}")).spawn({
            let (shared, cluster, name, key) = (shared.clone(), cluster.clone(), name.clone(), key.clone());
            move || {
                copy_backups_from(&shared, &cluster, &name);
                cluster.link_ended(&key);
            }
        });
        if let Err(e) = copier {
            cluster.link_ended(&key);
            log::error!("cluster: starting the backup copier for {name}: {e}");
        }
    }
    let spawned = std::thread::Builder::new().name(format!("cluster peer {name}")).spawn({
        let cluster = cluster.clone();
        let name = name.clone();
        move || {
            while !shared.stopping() {
                let Some(address) = cluster.address(&name) else { break };
                if let Err(e) = talk(&shared, &cluster, &name, &address) {
                    log::warn!("cluster: peer {name} ({address}): {e}");
                    cluster.unreachable(&name, e.to_string());
                }
                sleep_unless_stopping(&shared, cluster.timing.heartbeat);
            }
            cluster.link_ended(&name);
        }
    });
    match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            cluster.link_ended(&name);
            log::error!("cluster: starting the link to {name}: {e}");
            None
        }
    }
}

fn sleep_unless_stopping(shared: &Shared, total: Duration) {
    let until = Instant::now() + total;
    while !shared.stopping() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
}

/// A connection to peer `name` at `address`, TLS and SCRAM as `cluster_user`, past Hello.
fn connect(shared: &Shared, cluster: &Cluster, name: &str, address: &str) -> Result<RemoteStream> {
    let config = shared.config();
    let m = &config.main;
    let user = m.cluster_user.clone().unwrap_or_default();
    let password = shared
        .admins
        .read()
        .get(&user)
        .cloned()
        .ok_or_else(|| DaemonError::Refused(format!("cluster_user {user:?} is not in the admins vault")))?;
    let tls = TlsSettings {
        cert: m.tls_cert_file.as_ref().map(Into::into),
        key: m.tls_key_file.as_ref().map(Into::into),
        ca: m.tls_ca_file.as_ref().map(Into::into),
    };
    let (host, port) = split_address(address)?;
    let mut conn = connect_remote(&host, port, &user, &password, Some(&tls), cluster.timing.takeover)?;
    let hello = Message::Hello { node: cluster.me.clone(), version: PROTOCOL_VERSION, key: key_fingerprint(shared) };
    cluster::send(&mut conn, &hello)?;
    match cluster::receive(&mut conn)? {
        Message::Welcome { node, .. } if node == name => Ok(conn),
        Message::Welcome { node, .. } => Err(DaemonError::Refused(format!("{address} is node {node}, not {name}"))),
        Message::Error { code, message } => Err(DaemonError::Refused(format!("{code}: {message}"))),
        _ => Err(DaemonError::Refused("no Welcome".into())),
    }
}

/// One connection to a peer, until it fails or the daemon stops.
fn talk(shared: &Shared, cluster: &Cluster, name: &str, address: &str) -> Result<()> {
    let mut conn = connect(shared, cluster, name, address)?;
    log::info!("cluster: connected to {name}");
    while !shared.stopping() && cluster.address(name).as_deref() == Some(address) {
        let started = Instant::now();
        cluster::send(&mut conn, &Message::Heartbeat(cluster.view(shared)))?;
        match cluster::receive(&mut conn)? {
            Message::Heartbeat(view) if view.node == name => cluster.record(shared, view, Instant::now()),
            Message::Error { code, message } => return Err(DaemonError::Refused(format!("{code}: {message}"))),
            _ => return Err(DaemonError::Refused("the answer to a heartbeat was not a heartbeat".into())),
        }
        // The WAL of the servers this node follows that peer for, a heartbeat's worth at a
        // time so that heartbeats keep going.
        for state in &shared.servers {
            if cluster.leader(&state.name).as_deref() == Some(name) {
                copy::copy_wal(&mut conn, shared, cluster, &state.name, cluster.timing.heartbeat)?;
            }
        }
        sleep_unless_stopping(shared, cluster.timing.heartbeat.saturating_sub(started.elapsed()));
    }
    Ok(())
}

/// While `name` is a peer: for each server this node follows it for, copies the backups it
/// lacks and mirrors deletes and metadata ([`backups::sync`]), then waits a heartbeat.
fn copy_backups_from(shared: &Shared, cluster: &Cluster, name: &str) {
    let mut conn: Option<RemoteStream> = None;
    while !shared.stopping() {
        let Some(address) = cluster.address(name) else { break };
        let followed: Vec<String> = shared
            .servers
            .iter()
            .filter(|s| cluster.leader(&s.name).as_deref() == Some(name))
            .map(|s| s.name.clone())
            .collect();
        if !followed.is_empty() {
            let result = (|| -> Result<()> {
                if conn.is_none() {
                    conn = Some(connect(shared, cluster, name, &address)?);
                }
                let c = conn.as_mut().expect("connected");
                for server in &followed {
                    backups::sync(c, shared, cluster, server)?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                log::warn!("cluster: copying backups from {name}: {e}");
                conn = None;
            }
        }
        sleep_unless_stopping(shared, cluster.timing.heartbeat);
    }
}

/// Sends a management request on to peer `node` on a connection of its own and returns the
/// peer's reply, however long the command takes there (a backup runs to its end).
///
/// # Errors
/// When the peer cannot be reached, refuses, or answers with something else than a reply.
pub fn forward(shared: &Shared, cluster: &Cluster, node: &str, doc: &Document) -> Result<Document> {
    let address = cluster.address(node).ok_or_else(|| DaemonError::Refused(format!("{node} is not a peer")))?;
    let mut conn = connect(shared, cluster, node, &address)?;
    let document = serde_json::from_str(&doc.to_json())
        .map_err(|e| DaemonError::Refused(format!("the request cannot be forwarded: {e}")))?;
    cluster::send(&mut conn, &Message::Forward { document })?;
    let _ = conn.tcp().set_read_timeout(None);
    match cluster::receive(&mut conn)? {
        Message::Forwarded { document } => Ok(Document::from_json(&document.to_string())?),
        Message::Error { code, message } => Err(DaemonError::Refused(format!("{node}: {code}: {message}"))),
        _ => Err(DaemonError::Refused(format!("{node} did not answer the forwarded request"))),
    }
}

/// Runs a request another node forwarded, never forwarding it again.
fn forwarded(shared: &Arc<Shared>, node: &str, document: serde_json::Value) -> Message {
    let doc = match Document::from_json(&document.to_string()) {
        Ok(d) => d,
        Err(e) => return error("protocol", format!("the forwarded document cannot be read: {e}")),
    };
    if !commands::forwardable(doc.header.command) {
        return error("refused", format!("{} is not forwarded between nodes", doc.header.command.name()));
    }
    log::info!("cluster: {} forwarded by {node}", doc.header.command.name());
    let reply = commands::dispatch_forwarded(shared, doc, Instant::now());
    match serde_json::from_str(&reply.to_json()) {
        Ok(document) => Message::Forwarded { document },
        Err(e) => error("internal", format!("the reply cannot be sent: {e}")),
    }
}

/// The fingerprint of this node's master key, when it has one.
fn key_fingerprint(shared: &Shared) -> Option<String> {
    let key = shared.master_key.as_ref()?;
    key.fingerprint().map_err(|e| log::error!("cluster: fingerprinting the master key: {e}")).ok()
}

/// `host:port` or `[v6]:port`.
fn split_address(address: &str) -> Result<(String, u16)> {
    let bad = || DaemonError::Refused(format!("peer address {address:?} is not host:port"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
}
