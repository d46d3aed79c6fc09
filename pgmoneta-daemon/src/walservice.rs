//! One WAL receiver thread per server, under a supervisor loop that restarts it with backoff,
//! resumes from the archive, and fails over to the `follow` server when its own is unreachable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgmoneta_compress::Compression;
use pgmoneta_core::config::ServerConfig;
use pgmoneta_core::WalSegmentSize;
use pgmoneta_crypto::Cipher;
use pgmoneta_storage::layout;
use pgmoneta_storage::wal::{stream_wal, StreamOptions, WalArchive, WalOptions};
use pgmoneta_wire::PgConnection;

use crate::cluster::role::Event;
use crate::error::{DaemonError, Result};
use crate::pg;
use crate::state::{ServerState, Shared};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The WAL archive of `server` with the configured compression and encryption.
///
/// # Errors
/// [`DaemonError::WalArchive`] when the archive cannot be opened.
pub fn archive(shared: &Shared, server: &str, segment_size: u64) -> Result<WalArchive> {
    let config = shared.config();
    let compression = Compression::from_code(config.main.compression.code()).unwrap_or(Compression::NONE);
    let mut options = WalOptions::new(compression.algorithm, config.main.compression_level);
    options.encryption = encryption(shared)?;
    options.shipping = config
        .server(server)
        .and_then(|s| s.wal_shipping.as_ref())
        .map(|d| std::path::Path::new(d).join(server).join("wal"));
    let size = WalSegmentSize::new(if segment_size == 0 { 16 << 20 } else { segment_size })
        .map_err(|source| DaemonError::SegmentSize { server: server.to_owned(), source })?;
    let dir = shared.base_dir().join(layout::wal_dir(server));
    WalArchive::open(dir, size, options).map_err(|source| DaemonError::WalArchive { server: server.to_owned(), source })
}

/// The configured encryption with the master key, if any.
///
/// # Errors
/// When encryption is on and no master key is loaded.
pub fn encryption(shared: &Shared) -> Result<Option<(Cipher, Arc<pgmoneta_crypto::MasterKey>)>> {
    let code = shared.config().main.encryption.code();
    match Cipher::from_code(code as u8) {
        None => Ok(None),
        Some(c) => match &shared.master_key {
            Some(k) => Ok(Some((c, k.clone()))),
            None => Err(DaemonError::NoMasterKey),
        },
    }
}

/// Starts the receiver of every server.
pub fn spawn_all(shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    shared
        .servers
        .iter()
        .map(|s| {
            let shared = shared.clone();
            let server = s.clone();
            std::thread::Builder::new()
                .name(format!("wal/{}", server.name))
                .spawn(move || supervise(&shared, &server))
                .expect("spawning a thread")
        })
        .collect()
}

/// Sleeps up to `d`, returning early when the daemon stops or the server is forced offline.
fn pause(shared: &Shared, server: &ServerState, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !shared.stopping() && !server.forced_offline.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Why a WAL stream stopped.
#[derive(Debug)]
struct StreamStop {
    message: String,
    /// Whether trying again at once may well succeed: a dropped connection, a timeout, a server
    /// not accepting connections just now. Anything else (a full disk, damaged data, refused
    /// credentials, a configuration problem) needs someone to act on it.
    retryable: bool,
    /// Whether the stream had started: what failed is then a new failure, not a retry's.
    streamed: bool,
    /// The server refused the slot because another connection holds it.
    slot_busy: bool,
    /// The repository's file system is full.
    out_of_space: bool,
}

impl StreamStop {
    fn fatal(message: impl std::fmt::Display) -> StreamStop {
        StreamStop {
            message: message.to_string(),
            retryable: false,
            streamed: false,
            slot_busy: false,
            out_of_space: false,
        }
    }
}

impl std::fmt::Display for StreamStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Restarts the server's WAL receiver for as long as the daemon runs. A stop that may well
/// pass by itself (see [`StreamStop::retryable`]) is retried after a second and reported as a
/// WAL problem only when the retry fails too; any other stop is reported at once. Retries then
/// back off up to a minute.
fn supervise(shared: &Arc<Shared>, server: &Arc<ServerState>) {
    let mut backoff = Duration::from_secs(1);
    let mut failures = 0u32;
    let mut use_follow = false;
    let mut last_check = Instant::now();
    while !shared.stopping() {
        if server.forced_offline.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let Some(config) = shared.server_config(&server.name) else { return };
        // In a cluster, the slot is tried only while this node's role claims or holds it.
        if let Some(cluster) = &shared.cluster {
            if !cluster.may_stream(&server.name) {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        if !server.facts.read().valid && last_check.elapsed() >= backoff {
            // Logged once when the server comes online; each failed retry again at warning level.
            if !pg::recheck(shared, server, &config, false) {
                log::warn!("server [{}]: still offline: {}", server.name, server.facts.read().problems.join("; "));
            }
            last_check = Instant::now();
        }
        if !server.facts.read().valid {
            pause(shared, server, backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        let source = if use_follow { follow_config(shared, &config) } else { None };
        let started = Instant::now();
        let mut quick_retry = false;
        let outcome = stream_once(shared, server, &config, source.as_ref());
        if let Some(cluster) = &shared.cluster {
            let busy = matches!(&outcome, Err(e) if e.slot_busy);
            let event = if busy { Event::SlotBusy } else { Event::ConnectionLost };
            cluster.event(shared, &server.name, event);
            if busy {
                // Another node streams from the slot: the role decides when to try again.
                log::info!("server [{}]: the slot is held by another node: {}", server.name, outcome.unwrap_err());
                server.wal_streaming.store(false, Ordering::SeqCst);
                continue;
            }
        }
        match outcome {
            Ok(()) => failures = 0,
            Err(e) => {
                if shared.stopping() {
                    break;
                }
                if e.streamed {
                    failures = 0;
                }
                failures += 1;
                quick_retry = e.retryable && failures == 1;
                if quick_retry {
                    log::warn!("server [{}]: WAL streaming interrupted: {e}; reconnecting", server.name);
                } else {
                    log::error!("server [{}]: WAL streaming stopped: {e}", server.name);
                    let at = server.stream.read().flushed.load();
                    // Kept with the failure it describes, not reset by the next attempt: while a
                    // full disk lasts, each retry fails the same way.
                    server.wal_out_of_space.store(e.out_of_space, Ordering::SeqCst);
                    *server.wal_failure.lock() = Some((e.message, at));
                }
                if config.follow.is_some() {
                    use_follow = !use_follow;
                }
            }
        }
        server.wal_streaming.store(false, Ordering::SeqCst);
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_secs(1);
        }
        if shared.stopping() {
            break;
        }
        if quick_retry {
            pause(shared, server, Duration::from_secs(1));
            continue;
        }
        pause(shared, server, backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    server.wal_streaming.store(false, Ordering::SeqCst);
}

/// The connection settings of the server `config` follows, keeping `config`'s slot.
fn follow_config(shared: &Shared, config: &ServerConfig) -> Option<ServerConfig> {
    let other = shared.server_config(config.follow.as_deref()?)?;
    let mut c = config.clone();
    c.host = other.host;
    c.port = other.port;
    c.user = other.user;
    c.tls_ca_file = other.tls_ca_file;
    c.tls_cert_file = other.tls_cert_file;
    c.tls_key_file = other.tls_key_file;
    Some(c)
}

fn stream_once(
    shared: &Arc<Shared>,
    server: &Arc<ServerState>,
    config: &ServerConfig,
    source: Option<&ServerConfig>,
) -> Result<(), StreamStop> {
    let facts = server.facts.read().clone();
    let version = facts.version.ok_or_else(|| StreamStop::fatal("server version unknown"))?;
    let archive = archive(shared, &server.name, facts.segment_size).map_err(StreamStop::fatal)?;
    if let Err(e) = archive.seal_all() {
        log::warn!("server [{}]: sealing complete WAL segments: {e}", server.name);
    }
    let from = source.unwrap_or(config);
    if source.is_some() {
        log::warn!(
            "server [{}]: streaming from the follow server [{}]",
            server.name,
            config.follow.as_deref().unwrap_or("")
        );
    }
    let opts = pg::connect_options(shared, from, true).map_err(StreamStop::fatal)?;
    let mut conn = PgConnection::connect(&opts).map_err(|e| StreamStop {
        message: format!("server [{}]: connecting: {e}", from.name),
        retryable: e.is_retryable(),
        streamed: false,
        slot_busy: false,
        out_of_space: false,
    })?;
    let mut options = StreamOptions::new(config.wal_slot.as_deref());
    let stop = Arc::new(AtomicBool::new(false));
    options.stop = stop.clone();
    options.status_interval = Duration::from_secs(5);
    if let Some(cluster) = &shared.cluster {
        // The server is asked for a reply every heartbeat; silence for a whole takeover and
        // this node writes nothing more (see `cluster::role`). The slot keeps what the live
        // followers still lack.
        options.status_interval = cluster.timing.heartbeat;
        options.lease = Some(cluster.timing.takeover);
        options.hold = server.wal_hold.clone();
    }
    *server.stream.write() = options.progress.clone();
    *server.stream_stop.lock() = Some(stop);
    if shared.stopping() || server.forced_offline.load(Ordering::SeqCst) {
        return Ok(());
    }
    server.wal_streaming.store(true, Ordering::SeqCst);
    log::info!("server [{}]: WAL receiver connected; starting replication", server.name);
    let result = stream_wal(&mut conn, &archive, version, &options);
    server.wal_streaming.store(false, Ordering::SeqCst);
    *server.stream_stop.lock() = None;
    match result {
        Ok(lsn) => {
            log::info!("server [{}]: WAL streaming stopped at {lsn}", server.name);
            if shared.stopping() || server.forced_offline.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(StreamStop {
                    message: "the server ended the stream".to_owned(),
                    retryable: true,
                    streamed: true,
                    slot_busy: false,
                    out_of_space: false,
                })
            }
        }
        Err(e) => {
            let slot_busy = e.wire().is_some_and(pgmoneta_wire::WireError::is_slot_busy);
            Err(StreamStop {
                message: e.to_string(),
                retryable: e.is_retryable(),
                streamed: !slot_busy,
                slot_busy,
                out_of_space: e.is_out_of_space(),
            })
        }
    }
}

/// Stops the stream of `server` (mode offline, shutdown); the receiver flushes what it has.
pub fn stop_stream(server: &ServerState) {
    if let Some(stop) = server.stream_stop.lock().as_ref() {
        stop.store(true, Ordering::SeqCst);
    }
}
