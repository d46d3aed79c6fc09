//! Backups between nodes. The active node answers a server's catalog (with the backups it
//! deleted) and lists a backup's stored files with their SHA-512s; its chunks travel as WAL
//! files do ([`super::copy::fetch`]). A follower copies the valid backups it lacks, oldest
//! first (a parent before its incrementals): each file checked against its SHA-512, an
//! unchanged file linked to the follower's own copy of the file it points at, `backup.info`
//! last, so the copy is a backup only once it is complete. It deletes what the active node
//! deleted, the way the active node did, and takes its `backup.info` again when the keep flag
//! or the comments changed (retain, expunge, annotate).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use pgmoneta_crypto::{digest_hex, file_digest_hex, HashAlgorithm};
use pgmoneta_storage::catalog::Catalog;
use pgmoneta_storage::fsio::TEMP_SUFFIX;
use pgmoneta_storage::info::BACKUP_INFO;
use pgmoneta_storage::manifest::{Sha512Sums, BACKUP_MANIFEST, BACKUP_SHA512};
use pgmoneta_storage::ops::DeleteOptions;
use pgmoneta_storage::retention::RetentionPlan;
use pgmoneta_wire::cluster::{self, CatalogEntry, FileEntry, Message};

use super::copy::copy_file;
use super::node::Cluster;
use crate::error::{DaemonError, Result};
use crate::state::Shared;

fn error(code: &str, message: impl Into<String>) -> Message {
    Message::Error { code: code.to_owned(), message: message.into() }
}

/// Whether `label` looks like a backup label (digits only): it becomes part of a path.
pub(super) fn is_label(label: &str) -> bool {
    !label.is_empty() && label.len() <= 32 && label.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `path` is a plain relative path: no empty, `.` or `..` component, no leading `/`.
pub(super) fn is_relative(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A backup's directory on this node.
fn backup_path(shared: &Shared, server: &str, label: &str) -> PathBuf {
    shared.base_dir().join(pgmoneta_storage::layout::backup_dir(server, label))
}

/// The server's catalog, and the backups this node deleted while active. The backup being
/// taken is left out until its command ends: it turns valid before its upload to remote
/// storage, which rewrites `backup.info` and `backup.sha512` once more.
pub fn catalog(shared: &Shared, cluster: &Cluster, server: &str) -> Message {
    let Some(state) = shared.server(server) else {
        return error("unknown-server", format!("no server named {server:?}"));
    };
    let running = state.backup_label.lock().clone();
    match shared.repo.catalog(server) {
        Ok(c) => Message::CatalogReply {
            server: server.to_owned(),
            backups: c
                .into_backups()
                .into_iter()
                .filter(|b| running.as_deref() != Some(b.label.as_str()))
                .map(|b| CatalogEntry {
                    backup: b.label.clone(),
                    valid: b.valid,
                    keep: b.keep,
                    backup_size: b.backup_size,
                    comments: b.comments.clone(),
                    incremental_parent: b.parent.clone(),
                })
                .collect(),
            deleted: cluster.deleted(shared, server),
        },
        Err(e) => error("storage", e.to_string()),
    }
}

/// The stored files of valid backup `label` of `server`: every file under its directory, each
/// with its size and the SHA-512 `backup.sha512` gives it (computed for files it does not
/// list, `backup.sha512` itself among them), and for a link, what it points at. `backup.info`
/// comes last, after `backup.manifest` and `backup.sha512`. Links to directories (a
/// tablespace's) are left out: a restore makes them.
pub fn files(shared: &Shared, server: &str, label: &str) -> Message {
    if shared.server(server).is_none() || !is_label(label) {
        return error("not-found", format!("no backup {label:?} of server {server:?}"));
    }
    match list_files(shared, server, label) {
        Ok(files) => Message::FilesReply { server: server.to_owned(), backup: label.to_owned(), files },
        Err(e) => error("not-found", format!("backup {label} of server {server}: {e}")),
    }
}

fn list_files(shared: &Shared, server: &str, label: &str) -> Result<Vec<FileEntry>> {
    let info = shared.repo.info(server, label)?;
    if !info.valid {
        return Err(DaemonError::Refused("it is not valid".into()));
    }
    let dir = backup_path(shared, server, label);
    let sums_text = std::fs::read_to_string(dir.join(BACKUP_SHA512)).unwrap_or_default();
    let sums = Sha512Sums::parse(&sums_text, BACKUP_SHA512)?;
    let server_dir = shared.base_dir().join(server);
    let mut out = Vec::new();
    let mut dirs = vec![dir.clone()];
    while let Some(d) = dirs.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|source| DaemonError::Connection { what: "listing a backup", source })?;
        for e in entries {
            let e = e.map_err(|source| DaemonError::Connection { what: "listing a backup", source })?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMP_SUFFIX) {
                continue;
            }
            let kind = e.file_type().map_err(|source| DaemonError::Connection { what: "listing a backup", source })?;
            let relative = path.strip_prefix(&dir).unwrap_or(&path).to_string_lossy().into_owned();
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            let link =
                if kind.is_symlink() {
                    if path.is_dir() {
                        continue;
                    }
                    let target = std::fs::canonicalize(&path)
                        .map_err(|source| DaemonError::Connection { what: "following a link", source })?;
                    Some(target.strip_prefix(&server_dir).map(|t| t.to_string_lossy().into_owned()).map_err(|_| {
                        DaemonError::Refused(format!("{relative} points outside the server's directory"))
                    })?)
                } else {
                    None
                };
            let size = std::fs::metadata(&path)
                .map_err(|source| DaemonError::Connection { what: "reading a backup", source })?
                .len();
            let sha512 = match sums.files.get(&relative) {
                Some(h) => h.clone(),
                None => file_digest_hex(HashAlgorithm::Sha512, &path)
                    .map_err(|e| DaemonError::Refused(format!("hashing {relative}: {e}")))?,
            };
            out.push(FileEntry { path: relative, size, sha512, link });
        }
    }
    let last = [BACKUP_MANIFEST, BACKUP_SHA512, BACKUP_INFO];
    out.sort_by(|a, b| {
        let rank = |f: &FileEntry| last.iter().position(|n| *n == f.path);
        (rank(a), &a.path).cmp(&(rank(b), &b.path))
    });
    Ok(out)
}

/// Brings this node's backups of `server` in line with the peer at the other end of `conn`
/// (the node it follows): deletes, then metadata, then copies of what it lacks.
///
/// # Errors
/// The connection's; a copied file that does not match its checksum (nothing of that backup
/// is left valid); storage failures.
pub fn sync<S: Read + Write>(conn: &mut S, shared: &Shared, cluster: &Cluster, server: &str) -> Result<()> {
    cluster::send(conn, &Message::Catalog { server: server.to_owned() })?;
    let (theirs, deleted) = match cluster::receive(conn)? {
        Message::CatalogReply { backups, deleted, .. } => (backups, deleted),
        Message::Error { code, message } => return Err(DaemonError::Refused(format!("{code}: {message}"))),
        _ => return Err(DaemonError::Refused("the answer to Catalog was not a catalog".into())),
    };
    let ours: BTreeMap<String, _> = shared
        .repo
        .catalog(server)
        .map(Catalog::into_backups)
        .unwrap_or_default()
        .into_iter()
        .map(|b| (b.label.clone(), b))
        .collect();
    let valid_there: BTreeMap<&str, &CatalogEntry> =
        theirs.iter().filter(|b| b.valid).map(|b| (b.backup.as_str(), b)).collect();

    // What the active node deleted goes here too, incrementals first (newest first). In the
    // local repository only: remote copies are the active node's to change.
    let local = shared.repo.local_only();
    let mut deleted_here = 0;
    for label in deleted.iter().rev() {
        if ours.contains_key(label) && !valid_there.contains_key(label.as_str()) && is_label(label) {
            let mut options = DeleteOptions::default();
            options.force = true;
            let workers = shared.server_config(server).map_or(1, |c| shared.workers(&c));
            match local.delete(server, label, &options, workers) {
                Ok(()) => {
                    log::info!("cluster: [{server}] deleted backup {label}, as the active node did");
                    cluster.note_deleted(shared, server, std::slice::from_ref(label));
                    deleted_here += 1;
                }
                Err(e) => log::error!("cluster: [{server}] deleting backup {label} as the active node did: {e}"),
            }
        }
    }
    // The WAL and summaries no remaining backup needs go, as retention on the active node
    // prunes them.
    if deleted_here > 0 {
        let segment_size = shared.server(server).map_or(0, |s| s.facts.read().segment_size);
        let wal = crate::walservice::archive(shared, server, segment_size).ok();
        let (_, report) = local.apply_retention(server, &RetentionPlan::default(), wal.as_ref());
        if report.wal_pruned > 0 {
            log::info!("cluster: [{server}] pruned {} WAL files no backup needs", report.wal_pruned);
        }
    }
    // Retain, expunge, annotate: the active node's backup.info (and backup.sha512, which
    // lists it) replace ours.
    for (label, entry) in &valid_there {
        if let Some(mine) = ours.get(*label).filter(|b| b.valid) {
            if mine.keep != entry.keep || mine.comments != entry.comments {
                refresh_info(conn, shared, server, label)?;
                log::info!("cluster: [{server}] backup {label}: keep and comments taken from the active node");
            }
        }
    }
    for label in valid_there.keys() {
        if shared.stopping() {
            break;
        }
        if ours.get(*label).is_some_and(|b| b.valid) {
            continue;
        }
        cluster.set_copying(server, Some(label));
        let copied = copy_backup(conn, shared, server, label);
        cluster.set_copying(server, None);
        copied?;
    }
    Ok(())
}

/// The whole of a small file of the peer's (`backup.info`, `backup.sha512`).
fn fetch_small<S: Read + Write>(conn: &mut S, server: &str, path: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let request = Message::Fetch {
            server: server.to_owned(),
            path: path.to_owned(),
            offset: data.len() as u64,
            length: cluster::MAX_CHUNK,
        };
        cluster::send(conn, &request)?;
        let chunk = match cluster::receive(conn)? {
            Message::Chunk(c) => c,
            Message::Error { code, message } => return Err(DaemonError::Refused(format!("{code}: {message}"))),
            _ => return Err(DaemonError::Refused("the answer to Fetch was not a chunk".into())),
        };
        let bytes = cluster::receive_chunk_data(conn, &chunk)?;
        data.extend_from_slice(&bytes);
        if bytes.is_empty() || data.len() as u64 >= chunk.size {
            return Ok(data);
        }
    }
}

/// Takes the peer's `backup.info` and `backup.sha512` of `label`, the first checked against
/// the second, each written under a temporary name and renamed (`backup.sha512` first).
fn refresh_info<S: Read + Write>(conn: &mut S, shared: &Shared, server: &str, label: &str) -> Result<()> {
    let sums = fetch_small(conn, server, &format!("backup/{label}/{BACKUP_SHA512}"))?;
    let info = fetch_small(conn, server, &format!("backup/{label}/{BACKUP_INFO}"))?;
    let parsed = Sha512Sums::parse(&String::from_utf8_lossy(&sums), BACKUP_SHA512)?;
    if parsed.files.get(BACKUP_INFO).is_some_and(|h| *h != digest_hex(HashAlgorithm::Sha512, &info)) {
        return Err(DaemonError::Refused(format!("backup {label}: backup.info does not match backup.sha512")));
    }
    let dir = backup_path(shared, server, label);
    write_file(&dir.join(BACKUP_SHA512), &sums)?;
    write_file(&dir.join(BACKUP_INFO), &info)
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut out = pgmoneta_storage::fsio::AtomicFile::create(path)?;
    out.write_all(data).map_err(|source| DaemonError::Connection { what: "writing a copied file", source })?;
    out.commit()?;
    Ok(())
}

/// Copies backup `label` of `server`. What an interrupted copy left is kept where it matches
/// the listing (same size and SHA-512), so a copy resumes; `backup.info` goes last.
fn copy_backup<S: Read + Write>(conn: &mut S, shared: &Shared, server: &str, label: &str) -> Result<()> {
    cluster::send(conn, &Message::Files { server: server.to_owned(), backup: label.to_owned() })?;
    let files = match cluster::receive(conn)? {
        Message::FilesReply { files, .. } => files,
        // Deleted since the catalog was read: the next round sees it gone.
        Message::Error { code, message } if code == "not-found" => {
            log::info!("cluster: [{server}] backup {label} not copied: {message}");
            return Ok(());
        }
        Message::Error { code, message } => return Err(DaemonError::Refused(format!("{code}: {message}"))),
        _ => return Err(DaemonError::Refused("the answer to Files was not a listing".into())),
    };
    let dir = backup_path(shared, server, label);
    let server_dir = shared.base_dir().join(server);
    log::info!("cluster: [{server}] copying backup {label} ({} files)", files.len());
    let (mut fetched, mut linked, mut bytes) = (0usize, 0usize, 0u64);
    // Directories that gained links: made durable before backup.info makes the copy valid.
    let mut linked_dirs: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
    for f in &files {
        if f.path == BACKUP_INFO {
            for d in std::mem::take(&mut linked_dirs) {
                pgmoneta_storage::fsio::sync_dir(&d)?;
            }
        }
        if !is_relative(&f.path) || f.link.as_deref().is_some_and(|l| !is_relative(l)) {
            return Err(DaemonError::Refused(format!("the peer listed {:?} in backup {label}", f.path)));
        }
        let target = dir.join(&f.path);
        if let Some(parent) = target.parent() {
            pgmoneta_storage::fsio::create_dir_all(parent)?;
        }
        // An unchanged file points at an older backup's: at this node's own copy, when it
        // has that file.
        if let Some(link) = &f.link {
            let own = server_dir.join(link);
            if own.is_file() && std::fs::metadata(&own).is_ok_and(|m| m.len() == f.size) {
                let _ = std::fs::remove_file(&target);
                std::os::unix::fs::symlink(&own, &target)
                    .map_err(|source| DaemonError::Connection { what: "linking a copied file", source })?;
                linked_dirs.extend(target.parent().map(Path::to_path_buf));
                linked += 1;
                continue;
            }
        }
        let complete = std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_file() && m.len() == f.size)
            && file_digest_hex(HashAlgorithm::Sha512, &target).is_ok_and(|h| h == f.sha512);
        if !complete {
            copy_file(conn, server, &format!("backup/{label}/{}", f.path), f, &target)?;
            fetched += 1;
            bytes += f.size;
        }
    }
    log::info!("cluster: [{server}] copied backup {label}: {fetched} files fetched ({bytes} bytes), {linked} linked");
    Ok(())
}
