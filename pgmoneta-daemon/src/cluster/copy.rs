//! Copying a server's WAL archive from the active node to its followers, byte for byte as the
//! active node stored it.
//!
//! The active node lists its archive in name order and stops at the first complete segment it
//! has not sealed yet, so a listing never runs ahead of a file that will appear later: a
//! follower that copies everything listed, in order, has no gap. `.partial` segments are never
//! listed. A follower asks for the files after the newest it holds, fetches each in chunks
//! under a temporary name, checks size and SHA-512 against the listing, syncs and renames it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use pgmoneta_core::WalFileKind;
use pgmoneta_crypto::{file_digest_hex, HashAlgorithm, Hasher};
use pgmoneta_storage::stored::stored_form;
use pgmoneta_storage::wal::WalArchive;
use pgmoneta_wire::cluster::{self, Chunk, FileEntry, Message, MAX_CHUNK};

use super::node::Cluster;
use crate::error::{DaemonError, Result};
use crate::state::Shared;
use crate::walservice;

/// Most files one listing names.
const LIST_LIMIT: usize = 64;
/// Longest a listing hashes files before it answers with what it has.
const LIST_TIME: Duration = Duration::from_secs(1);

fn error(code: &str, message: impl Into<String>) -> Message {
    Message::Error { code: code.to_owned(), message: message.into() }
}

fn archive(shared: &Shared, server: &str) -> Result<WalArchive> {
    let state = shared.server(server).ok_or_else(|| DaemonError::Refused(format!("no server named {server:?}")))?;
    let segment_size = state.facts.read().segment_size;
    walservice::archive(shared, server, segment_size)
}

/// The sealed files of `server`'s archive whose plain names sort after `after`, in order, up to
/// the first complete segment not sealed yet.
pub fn wal_list(shared: &Shared, server: &str, after: &str) -> Message {
    let archive = match archive(shared, server) {
        Ok(a) => a,
        Err(e) => return error("unknown-server", e.to_string()),
    };
    let Some(dir) = archive.local_dir().map(std::path::Path::to_path_buf) else {
        return error("storage", "the WAL archive is not on a local disk");
    };
    let suffix = archive.sealed_suffix();
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return error("storage", e.to_string()),
    };
    let started = Instant::now();
    let mut files = Vec::new();
    for e in entries {
        let plain = stored_form(&e.file_name).0;
        match e.kind {
            WalFileKind::Partial(_) => continue,
            // Complete but not sealed yet: nothing after it is listed until it is.
            WalFileKind::Segment(_) if !suffix.is_empty() && plain == e.file_name => break,
            _ => {}
        }
        if plain <= after {
            continue;
        }
        let path = dir.join(&e.file_name);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            // Sealed or pruned since the listing: the next listing shows what is there.
            Err(_) => break,
        };
        match file_digest_hex(HashAlgorithm::Sha512, &path) {
            Ok(sha512) => files.push(FileEntry { path: e.file_name.clone(), size, sha512, link: None }),
            Err(_) => break,
        }
        // Hashing is the cost of a listing: a peer waits for the answer, so a long backlog
        // is listed a part at a time.
        if files.len() >= LIST_LIMIT || started.elapsed() >= LIST_TIME {
            break;
        }
    }
    Message::WalListReply { server: server.to_owned(), files }
}

/// Sends a chunk of a file of `server`, and its bytes, to `out`: a file of its WAL archive
/// (`wal/<name>`) or of one of its backups (`backup/<label>/<path>`, a link followed).
///
/// # Errors
/// Only the connection's: a bad request is answered with an error message.
pub fn fetch<W: Write>(out: &mut W, shared: &Shared, server: &str, path: &str, offset: u64, length: u64) -> Result<()> {
    let reply = |out: &mut W, m: Message| cluster::send(out, &m).map_err(DaemonError::from);
    let file = match local_file(shared, server, path) {
        Ok(f) => f,
        Err(m) => return reply(out, m),
    };
    let read = || -> std::io::Result<(u64, Vec<u8>)> {
        let mut file = std::fs::File::open(&file)?;
        let size = file.metadata()?.len();
        let take = length.min(MAX_CHUNK).min(size.saturating_sub(offset));
        file.seek(SeekFrom::Start(offset))?;
        let mut data = vec![0u8; take as usize];
        file.read_exact(&mut data)?;
        Ok((size, data))
    };
    match read() {
        Ok((size, data)) => {
            let chunk = Chunk { path: path.to_owned(), offset, length: data.len() as u64, size };
            cluster::send_chunk(out, chunk, &data)?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            reply(out, error("not-found", format!("{path} is not a file of {server}")))
        }
        Err(e) => reply(out, error("storage", format!("{path}: {e}"))),
    }
}

/// Where a fetched path is on this node, or the error message that answers it.
fn local_file(shared: &Shared, server: &str, path: &str) -> std::result::Result<std::path::PathBuf, Message> {
    if shared.server(server).is_none() {
        return Err(error("unknown-server", format!("no server named {server:?}")));
    }
    if let Some(rest) = path.strip_prefix("backup/") {
        let label = rest.split('/').next().unwrap_or_default();
        if !super::backups::is_relative(rest) || !super::backups::is_label(label) || rest == label {
            return Err(error("not-found", format!("{path} is not a file of a backup")));
        }
        return Ok(shared.base_dir().join(pgmoneta_storage::layout::backups_dir(server)).join(rest));
    }
    let Some(name) = path.strip_prefix("wal/").filter(|n| !n.is_empty() && !n.contains('/')) else {
        return Err(error("not-found", format!("{path}: only wal/<file> and backup/<label>/<path> can be fetched")));
    };
    let archive = archive(shared, server).map_err(|e| error("unknown-server", e.to_string()))?;
    if WalFileKind::parse(stored_form(name).0, archive.segment_size()).is_err() || name.ends_with(".partial") {
        return Err(error("not-found", format!("{name} is not an archived WAL file")));
    }
    let Some(dir) = archive.local_dir() else {
        return Err(error("storage", "the WAL archive is not on a local disk"));
    };
    Ok(dir.join(name))
}

/// Copies from the peer at the other end of `conn` the WAL of `server` this node lacks, for at
/// most `budget`. Returns the number of files copied.
///
/// # Errors
/// The connection's; a file whose size or SHA-512 does not match its listing (nothing of it
/// is left); storage failures.
pub fn copy_wal<S: Read + Write>(
    conn: &mut S,
    shared: &Shared,
    cluster: &Cluster,
    server: &str,
    budget: Duration,
) -> Result<usize> {
    let started = Instant::now();
    let archive = archive(shared, server)?;
    let dir = archive
        .local_dir()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| DaemonError::Refused("the WAL archive is not on a local disk".into()))?;
    // The archive is listed once, at the first copy; after that the cursor moves with what is
    // copied.
    let after = match cluster.wal_cursor(server) {
        Some(c) => c,
        None => {
            let newest = archive
                .entries()?
                .iter()
                .filter(|e| !matches!(e.kind, WalFileKind::Partial(_)))
                .map(|e| stored_form(&e.file_name).0.to_owned())
                .max()
                .unwrap_or_default();
            cluster.advance_wal_cursor(server, &newest);
            newest
        }
    };
    cluster::send(conn, &Message::WalList { server: server.to_owned(), after })?;
    let files = match cluster::receive(conn)? {
        Message::WalListReply { files, .. } => files,
        Message::Error { code, message } => return Err(DaemonError::Refused(format!("{code}: {message}"))),
        _ => return Err(DaemonError::Refused("the answer to WalList was not a listing".into())),
    };
    let mut copied = 0;
    for f in files {
        if started.elapsed() >= budget {
            break;
        }
        let plain = stored_form(&f.path).0;
        if f.path.contains('/') || WalFileKind::parse(plain, archive.segment_size()).is_err() {
            return Err(DaemonError::Refused(format!("the peer listed {:?}, not a WAL file name", f.path)));
        }
        if archive.locate(plain).is_err() {
            copy_file(conn, server, &format!("wal/{}", f.path), &f, &dir.join(&f.path))?;
            copied += 1;
            // What this node streamed of that segment while it was active, if anything: the
            // complete copy supersedes it.
            let partial = dir.join(format!("{plain}.partial"));
            if partial.exists() {
                std::fs::remove_file(&partial).map_err(|source| DaemonError::Connection {
                    what: "removing a superseded partial segment",
                    source,
                })?;
                log::info!("cluster: [{server}] {plain}.partial superseded by the copy of {}", f.path);
            }
        }
        cluster.advance_wal_cursor(server, plain);
    }
    Ok(copied)
}

/// Copies the peer's file `path` (`wal/...`, `backup/...`), listed as `f`, to `target`: under a
/// temporary name, checked against the listed size and SHA-512, then renamed into place.
///
/// # Errors
/// The connection's; a file that does not match its listing (nothing of it is left).
pub(super) fn copy_file<S: Read + Write>(
    conn: &mut S,
    server: &str,
    path: &str,
    f: &FileEntry,
    target: &std::path::Path,
) -> Result<()> {
    let mut out = pgmoneta_storage::fsio::AtomicFile::create(target)?;
    let mut hasher = Hasher::new(HashAlgorithm::Sha512);
    let mut offset = 0;
    while offset < f.size {
        let length = (f.size - offset).min(MAX_CHUNK);
        cluster::send(conn, &Message::Fetch { server: server.to_owned(), path: path.to_owned(), offset, length })?;
        let chunk = match cluster::receive(conn)? {
            Message::Chunk(c) => c,
            Message::Error { code, message } => return Err(DaemonError::Refused(format!("{code}: {message}"))),
            _ => return Err(DaemonError::Refused("the answer to Fetch was not a chunk".into())),
        };
        let data = cluster::receive_chunk_data(conn, &chunk)?;
        if chunk.offset != offset || data.is_empty() || chunk.size != f.size {
            return Err(DaemonError::Refused(format!(
                "{}: the peer sent {} bytes at {} of a file of {}, listed with {} bytes",
                f.path,
                data.len(),
                chunk.offset,
                chunk.size,
                f.size
            )));
        }
        hasher.update(&data);
        out.write_all(&data).map_err(|source| DaemonError::Connection { what: "writing a copied WAL file", source })?;
        offset += data.len() as u64;
    }
    let sha512 = hasher.finish_hex();
    if sha512 != f.sha512 {
        return Err(DaemonError::Refused(format!(
            "{}: SHA-512 {sha512} does not match the listing's {}",
            f.path, f.sha512
        )));
    }
    out.commit()?;
    log::debug!("cluster: [{server}] copied {path} ({} bytes)", f.size);
    Ok(())
}
