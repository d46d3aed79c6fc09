//! Full backups from a `BASE_BACKUP` stream.
//!
//! The connection's thread only receives: each archive's bytes go through a bounded channel to a
//! parser thread, which decodes server-side compression, parses the tar stream and hands each
//! member file, in chunks, to one of `workers` threads, which compress, encrypt and write them.
//! As many hashing threads compute the SHA-512 of each file's plain bytes (for
//! `backup.manifest`) and the checksum PostgreSQL's manifest uses. A file stored as received is
//! hashed by reading it back behind its writer, so a large file's hash, which cannot be split,
//! goes on while the files after it are received, written and hashed; a compressed or encrypted
//! file's plain bytes reach its hashing thread in memory. With `manifest = crc32c` a compressed
//! or encrypted file's only plain checksum is CRC32C, which its worker computes as it writes:
//! handing the bytes to another thread would cost more than the hash. Bytes move between
//! threads in steps of 1 MiB, each hand-off being a possible wake-up. Memory is bounded by the
//! channels' depth, never by the size of a file or of the database.
//!
//! When the stream ends, every file is checked against PostgreSQL's `backup_manifest` (size and
//! checksum; a difference fails the backup), then `backup.manifest` and `backup.sha512` are
//! written, the directories synced, and `backup.info` written last with `STATUS=1`. Until then the
//! directory holds no `backup.info`, and a failed backup's directory is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use pgmoneta_compress::{Algorithm, Compression, Decoder, Side};
use pgmoneta_core::{BackupLabel, Lsn, PgVersion};
use pgmoneta_crypto::{Cipher, HashAlgorithm, Hasher, MasterKey};
use pgmoneta_wire::replication::{ArchiveInfo, BaseBackupOptions, ServerCompression};
use pgmoneta_wire::source::{ArchiveSink, BackupSource, BaseBackupSource, SinkError};
use pgmoneta_wire::PgConnection;

use crate::error::{Result, StorageError};
use crate::info::{BackupInfo, BackupType, TablespaceEntry};
use crate::layout;
use crate::manifest::{
    BackupManifest, ManifestAlgorithm, ManifestChecksum, PgManifest, Sha512Sums, BACKUP_MANIFEST, BACKUP_SHA512,
};
use crate::store::{join, Store};
use crate::stored::{seal, unseal, unseal_pending, Output};
use crate::tar::{EntryKind as TarEntryKind, TarEvent, TarParser};

/// Bytes per chunk handed to a worker: every hand-off between threads may cost a wake-up, so
/// they come in large steps.
const CHUNK: usize = 1 << 20;
/// Chunks queued per worker.
const QUEUE: usize = 4;
/// Batches of received bytes (about [`CHUNK`] each) queued for an archive's parser.
const BATCHES: usize = 4;
/// Chunks of a file queued for its hashing thread when they go in memory. Up to `QUEUE` files
/// per worker may wait for a hashing thread, each with this many chunks: memory stays bounded
/// by `workers × QUEUE × HASH_QUEUE` chunks (plus the blocks their pieces keep alive).
const HASH_QUEUE: usize = 2;

/// How to take a backup.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackupOptions {
    /// The server's name (its directory in the repository).
    pub server: String,
    /// The label (local time at the start).
    pub label: BackupLabel,
    /// Compression of the stored files. Server-side compression is asked of PostgreSQL (15+),
    /// decoded here and the files stored with the same algorithm.
    pub compression: Compression,
    /// Compression level (clamped to the algorithm's range).
    pub level: i32,
    /// Worker threads for hashing, compression, encryption and writing (at least 1).
    pub workers: usize,
    /// Encryption of the stored files, with the master key.
    pub encryption: Option<(Cipher, Arc<MasterKey>)>,
    /// Tablespace names by OID (from `pg_tablespace`); a tablespace missing here is named by
    /// its OID.
    pub tablespace_names: BTreeMap<u32, String>,
    /// Ask for an immediate checkpoint (upstream always does).
    pub fast_checkpoint: bool,
    /// Bandwidth limit in kB/s.
    pub max_rate_kb: Option<u32>,
    /// Set to stop the backup; it then fails with [`StorageError::Cancelled`].
    pub cancel: Arc<AtomicBool>,
    /// Bytes received and the server's size estimate, published while the backup runs.
    pub progress: Arc<BackupProgress>,
    /// Replace files unchanged since the previous backup with links to it (the `link`
    /// setting; on by default).
    pub link: bool,
    /// Take an incremental backup on top of this backup (its label). PostgreSQL 17 and later
    /// build it from the parent's `backup_manifest`; see [`crate::sqlbackup`] for 14 to 16.
    pub parent: Option<String>,
    /// Hot standbys [`crate::Repository::backup`] brings up to date once the backup is taken.
    pub hot_standbys: Vec<crate::export::HotStandbyOptions>,
    /// The checksum `backup.manifest` holds for each file (the `manifest` setting). The
    /// stored files' checksums in `backup.sha512` stay SHA-512 whatever it is.
    pub manifest: ManifestAlgorithm,
}

/// How far a running backup is: bytes received of the archives (as sent, so compressed with
/// server-side compression) against PostgreSQL's estimate of the uncompressed total.
#[derive(Debug, Default)]
pub struct BackupProgress {
    /// Bytes of archive data received.
    pub done: AtomicU64,
    /// The server's estimate of the backup's size in bytes (0 until known).
    pub total: AtomicU64,
}

impl BackupOptions {
    /// Options with upstream's defaults: no compression or encryption, fast checkpoint.
    pub fn new(server: &str, label: BackupLabel) -> BackupOptions {
        BackupOptions {
            server: server.to_owned(),
            label,
            compression: Compression::NONE,
            level: 0,
            workers: 1,
            encryption: None,
            tablespace_names: BTreeMap::new(),
            fast_checkpoint: true,
            max_rate_kb: None,
            cancel: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(BackupProgress::default()),
            parent: None,
            link: true,
            hot_standbys: Vec::new(),
            manifest: ManifestAlgorithm::Sha512,
        }
    }

    fn suffix(&self) -> String {
        let mut s = self.compression.algorithm.suffix().to_owned();
        if self.encryption.is_some() {
            s.push_str(pgmoneta_crypto::AES_SUFFIX);
        }
        s
    }
}

/// What a worker learned about one stored file.
#[derive(Debug, Clone)]
struct FileResult {
    /// The path within its root (`data` or `tblspc_<name>`), as in the tar.
    rel: String,
    /// The path PostgreSQL's manifest uses.
    manifest_path: String,
    plain_size: u64,
    /// The plain bytes' checksum for `backup.manifest`, in the backup's algorithm.
    plain_hash: String,
    checksum: String,
    stored: String,
    stored_size: u64,
    stored_sha512: String,
    /// For an incremental file, its size once combined.
    combined_size: Option<u64>,
}

enum Job {
    Start {
        root: String,
        rel: String,
        manifest_path: String,
        checksum: String,
        plain: bool,
        /// The file's size, from its tar header.
        size: u64,
    },
    /// The next bytes of the file: pieces of the received blocks, not copied.
    Chunk(Vec<Bytes>),
    End,
}

/// Shared between the threads of one backup.
struct Shared {
    store: Arc<dyn Store>,
    options: BackupOptions,
    backup_dir: String,
    failed: AtomicBool,
    error: Mutex<Option<StorageError>>,
    results: Mutex<Vec<FileResult>>,
    dirs: Mutex<BTreeSet<String>>,
    tablespaces: Mutex<Vec<TablespaceEntry>>,
    timings: Mutex<Timings>,
    /// The backup unchanged files link to, when linking.
    link_base: Option<crate::ops::LinkBase>,
    /// Files linked as they were received.
    linked_early: AtomicU64,
}

#[derive(Default, Clone, Copy)]
struct Timings {
    hash: f64,
    compress: f64,
    encrypt_and_write: f64,
}

impl Shared {
    fn fail(&self, e: StorageError) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.failed.load(Ordering::SeqCst) || self.options.cancel.load(Ordering::SeqCst)
    }

    fn create_dir(&self, rel_dir: &str) -> Result<()> {
        let mut dirs = self.dirs.lock();
        if dirs.insert(rel_dir.to_owned()) {
            self.store.create_dir(&join(&[&self.backup_dir, rel_dir]))?;
        }
        Ok(())
    }
}

/// Largest file held in memory until its end, to be linked rather than written when it is
/// unchanged since the previous backup.
const HOLD_MAX: u64 = 1 << 20;

/// The file a worker is handling (one per worker: the size difference does not matter).
#[allow(clippy::large_enum_variant)]
enum Current {
    /// Being written.
    Open(OpenFile),
    /// Held until its end (see [`HeldFile`]).
    Held(HeldFile),
}

/// A small file that the previous backup has under the same path and storage: its bytes are
/// kept until its end, when its checksum decides between a link to the previous backup's file
/// and a file of its own. An unchanged file then costs a link, never a file written and
/// replaced: with tens of thousands of relations, creating and freeing those inodes would be
/// most of a backup's time.
struct HeldFile {
    result: FileResult,
    hashes: PlainHashes,
    pieces: Vec<Bytes>,
    /// The previous backup's plain checksum of the file (the same algorithm as this backup's:
    /// see [`crate::ops::LinkBase::find`]).
    expected: String,
    /// The real file a link points at.
    target: String,
    /// The SHA-512 of that file's stored bytes.
    target_sha512: String,
}

struct OpenFile {
    result: FileResult,
    out: Output,
    /// Reads the header of an incremental file as it passes.
    probe: Option<crate::incremental::HeaderProbe>,
    /// How the file's plain bytes reach its hashing thread.
    hash: HashFeed,
    /// Where the file's result goes once it is written.
    written: Sender<Written>,
}

/// The worker's end of a file's hashing.
enum HashFeed {
    /// A checksum far cheaper than compressing (CRC32C), computed by the worker itself as it
    /// writes: a hand-off to another thread would cost more than the hash.
    Inline(Box<PlainHashes>),
    /// The plain bytes, chunk by chunk (the channel closes at the end of the file).
    Memory(Sender<Vec<Bytes>>),
    /// The stored file holds the plain bytes: the hashing thread reads them back.
    File(ProgressFeed),
}

/// How far the worker has written a file that is read back for hashing.
#[derive(Default)]
struct Progress {
    state: Mutex<WriteState>,
    moved: Condvar,
}

#[derive(Default, Clone, Copy)]
struct WriteState {
    /// Bytes that reached the file.
    bytes: u64,
    /// `Some(true)`: the file is complete; `Some(false)`: abandoned.
    end: Option<bool>,
}

impl Progress {
    /// Waits until more than `at` bytes were written or the file ended: `Some(bytes written)`
    /// (equal to `at` at the end of a complete file), `None` when the file was abandoned.
    fn wait_beyond(&self, at: u64) -> Option<u64> {
        let mut state = self.state.lock();
        while state.bytes <= at && state.end.is_none() {
            self.moved.wait(&mut state);
        }
        match state.end {
            Some(false) => None,
            _ => Some(state.bytes),
        }
    }

    fn publish(&self, bytes: u64, end: Option<bool>) {
        let mut state = self.state.lock();
        state.bytes = bytes;
        state.end = end;
        self.moved.notify_all();
    }
}

/// The writing side of a [`Progress`]; dropped before [`ProgressFeed::end`], the file is
/// abandoned and its reader stops.
struct ProgressFeed {
    progress: Arc<Progress>,
    bytes: u64,
    ended: bool,
}

impl ProgressFeed {
    fn advance(&mut self, bytes: u64) {
        self.bytes = bytes;
        self.progress.publish(bytes, None);
    }

    fn end(mut self) {
        self.ended = true;
        self.progress.publish(self.bytes, Some(true));
    }
}

impl Drop for ProgressFeed {
    fn drop(&mut self) {
        if !self.ended {
            self.progress.publish(self.bytes, Some(false));
        }
    }
}

/// Where a hashing thread gets a file's plain bytes.
enum HashSource {
    Memory(Receiver<Vec<Bytes>>),
    File { file: std::fs::File, progress: Arc<Progress> },
}

/// One file for the hashing threads.
struct HashJob {
    source: HashSource,
    /// The checksum PostgreSQL's manifest uses (its name there).
    check: String,
    /// Whether the file is stored as received: its SHA-512 for `backup.sha512` is then
    /// computed here too, unless the backup's algorithm is SHA-512 already.
    stored_plain: bool,
    /// The stored file's path, for errors.
    stored: String,
    /// The worker's result once the file is written; closed without one: the file failed.
    written: Receiver<Written>,
}

/// A written file's result, without its plain hashes.
struct Written {
    result: FileResult,
    /// The stored bytes' SHA-512; `None` when they are the plain bytes.
    stored_sha512: Option<String>,
}

/// The checksums of one file's plain bytes: the backup's algorithm for `backup.manifest`, the
/// one PostgreSQL's manifest uses (computed once when they are the same), and SHA-512 when
/// the stored file is the plain bytes and `backup.sha512` needs it besides.
struct PlainHashes {
    plain: ManifestChecksum,
    /// `None`: PostgreSQL's checksum is `plain`'s.
    check: Option<ManifestChecksum>,
    /// `None`: not needed, or `plain` is SHA-512.
    sha512: Option<Hasher>,
}

impl PlainHashes {
    fn new(algorithm: ManifestAlgorithm, check: &str, stored_plain: bool) -> Result<PlainHashes> {
        Ok(PlainHashes {
            plain: algorithm.checksum(),
            check: if check == algorithm.pg_name() { None } else { Some(ManifestChecksum::new(check)?) },
            sha512: (stored_plain && algorithm != ManifestAlgorithm::Sha512)
                .then(|| Hasher::new(HashAlgorithm::Sha512)),
        })
    }

    fn update(&mut self, data: &[u8]) {
        self.plain.update(data);
        if let Some(c) = &mut self.check {
            c.update(data);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
    }

    /// `(backup.manifest's checksum, PostgreSQL's, the SHA-512 when computed)`.
    fn finish(self) -> (String, String, Option<String>) {
        let plain = self.plain.finish_hex();
        let check = self.check.map_or_else(|| plain.clone(), ManifestChecksum::finish_hex);
        (plain, check, self.sha512.map(Hasher::finish_hex))
    }
}

/// Bytes hashed between two hints that read-back pages may leave the cache.
const DROP_STEP: u64 = 16 << 20;

/// A hashing thread: computes the SHA-512 and the manifest checksum of the plain bytes of the
/// files the workers write, and records each file's result. The hashing threads are shared by
/// all workers and, for files read back, need not keep pace with the writing: a large file's
/// hash goes on while the files after it are received, written and hashed by the others.
fn hash_files(shared: &Shared, jobs: &Receiver<HashJob>) {
    let mut buf = vec![0u8; CHUNK];
    let mut seconds = 0.0;
    for job in jobs.iter() {
        if shared.stopped() {
            continue;
        }
        match hash_file(shared, job, &mut buf, &mut seconds) {
            Ok(Some(result)) => {
                shared.results.lock().push(result);
                pgmoneta_core::crash::point("backup:file-stored");
            }
            Ok(None) => {}
            // After a stop, a failure is its consequence: the cause is already recorded (or
            // the backup was cancelled).
            Err(_) if shared.stopped() => {}
            Err(e) => shared.fail(e),
        }
    }
    shared.timings.lock().hash += seconds;
}

/// Hashes one file; `None` when it was abandoned.
fn hash_file(shared: &Shared, job: HashJob, buf: &mut [u8], seconds: &mut f64) -> Result<Option<FileResult>> {
    let HashJob { source, check, stored_plain, stored, written } = job;
    let mut hashes = PlainHashes::new(shared.options.manifest, &check, stored_plain)?;
    let mut hashed = 0u64;
    match source {
        HashSource::Memory(chunks) => {
            for chunk in chunks.iter() {
                let start = Instant::now();
                for data in &chunk {
                    hashes.update(data);
                    hashed += data.len() as u64;
                }
                *seconds += start.elapsed().as_secs_f64();
            }
        }
        HashSource::File { file, progress } => {
            use std::os::unix::fs::FileExt;
            let mut dropped = 0u64;
            loop {
                let Some(bytes) = progress.wait_beyond(hashed) else { return Ok(None) };
                if bytes == hashed {
                    break;
                }
                if shared.stopped() {
                    return Ok(None);
                }
                while hashed < bytes {
                    let n = usize::try_from(bytes - hashed).map_or(buf.len(), |n| n.min(buf.len()));
                    file.read_exact_at(&mut buf[..n], hashed).map_err(StorageError::io("reading back", &stored))?;
                    let start = Instant::now();
                    hashes.update(&buf[..n]);
                    *seconds += start.elapsed().as_secs_f64();
                    hashed += n as u64;
                    if hashed - dropped >= DROP_STEP {
                        crate::fsio::drop_cached(&file, dropped, hashed - dropped);
                        dropped = hashed;
                    }
                }
            }
            crate::fsio::drop_cached(&file, dropped, 0);
        }
    }
    let Ok(Written { mut result, stored_sha512 }) = written.recv() else { return Ok(None) };
    if hashed != result.plain_size {
        return Err(StorageError::Invalid(format!(
            "{stored}: {hashed} bytes hashed of the {} written",
            result.plain_size
        )));
    }
    let (plain, check, sha512) = hashes.finish();
    result.stored_sha512 = match stored_sha512.or(sha512) {
        Some(s) => s,
        // Stored as received, in a SHA-512 backup: the plain checksum is the stored one.
        None => plain.clone(),
    };
    result.plain_hash = plain;
    result.checksum = check;
    Ok(Some(result))
}

fn worker(shared: &Shared, jobs: &Receiver<Job>, hashing: &Sender<HashJob>) {
    let mut current: Option<Current> = None;
    let mut t = Timings::default();
    for job in jobs.iter() {
        if shared.stopped() {
            current = None;
            continue;
        }
        if let Err(e) = handle(shared, job, &mut current, &mut t, hashing) {
            current = None;
            // After a stop (a failure elsewhere, a cancel), the hashing threads drop their
            // work and sends to them fail: that is not the cause, which is already known.
            if !shared.stopped() {
                shared.fail(e);
            }
        }
    }
    let mut all = shared.timings.lock();
    all.compress += t.compress;
    all.encrypt_and_write += t.encrypt_and_write;
    all.hash += t.hash;
}

/// The file to hold rather than write at once (see [`HeldFile`]), when it may be unchanged.
fn hold(shared: &Shared, result: &FileResult, checksum: &str, size: u64) -> Result<Option<HeldFile>> {
    let Some(base) = shared.link_base.as_ref().filter(|_| size <= HOLD_MAX) else { return Ok(None) };
    let Some((expected, old)) = base.candidate(&result.manifest_path, &result.stored) else { return Ok(None) };
    let Some(target_sha512) = base.stored_sha512(old) else { return Ok(None) };
    let Some(target) = base.target(shared.store.as_ref(), old)? else { return Ok(None) };
    let o = &shared.options;
    let stored_plain = o.compression.algorithm == Algorithm::None && o.encryption.is_none();
    Ok(Some(HeldFile {
        result: result.clone(),
        hashes: PlainHashes::new(o.manifest, checksum, stored_plain)?,
        pieces: Vec::new(),
        expected: expected.clone(),
        target,
        target_sha512: target_sha512.clone(),
    }))
}

/// Ends a held file: a link when it is unchanged, its own file otherwise.
fn finish_held(shared: &Shared, held: HeldFile, t: &mut Timings) -> Result<()> {
    let HeldFile { mut result, mut hashes, pieces, expected, target, target_sha512 } = held;
    let start = Instant::now();
    for piece in &pieces {
        hashes.update(piece);
    }
    let (plain, check, sha512) = hashes.finish();
    result.plain_hash = plain;
    result.checksum = check;
    t.hash += start.elapsed().as_secs_f64();
    let path = join(&[&shared.backup_dir, &result.stored]);
    if result.plain_hash == expected {
        pgmoneta_core::crash::point("backup:linking");
        shared.store.symlink(&target, &path)?;
        result.stored_sha512 = target_sha512;
        shared.linked_early.fetch_add(1, Ordering::Relaxed);
    } else {
        let start = Instant::now();
        let o = &shared.options;
        let w = shared.store.create_unsynced(&path)?;
        let mut out = seal(w, o.compression.algorithm, o.level, o.encryption.as_ref(), &result.stored)?;
        write_pieces(&mut out, &pieces).map_err(StorageError::io("writing", &result.stored))?;
        let (w, stored_size, stored_sha512) =
            unseal(out, sha512.as_deref().unwrap_or(&result.plain_hash), &result.stored)?;
        w.commit(false)?;
        result.stored_size = stored_size;
        result.stored_sha512 = stored_sha512;
        t.compress += start.elapsed().as_secs_f64();
    }
    shared.results.lock().push(result);
    pgmoneta_core::crash::point("backup:file-stored");
    Ok(())
}

fn handle(
    shared: &Shared,
    job: Job,
    current: &mut Option<Current>,
    t: &mut Timings,
    hashing: &Sender<HashJob>,
) -> Result<()> {
    let hash_gone = || StorageError::Invalid("the hashing threads stopped".into());
    let o = &shared.options;
    match job {
        Job::Start { root, rel, manifest_path, checksum, plain, size } => {
            let stored_rel =
                if plain { join(&[&root, &rel]) } else { format!("{}{}", join(&[&root, &rel]), o.suffix()) };
            let result = FileResult {
                rel,
                manifest_path,
                plain_size: 0,
                plain_hash: String::new(),
                checksum: String::new(),
                stored: stored_rel,
                stored_size: 0,
                stored_sha512: String::new(),
                combined_size: None,
            };
            if !plain {
                if let Some(held) = hold(shared, &result, &checksum, size)? {
                    *current = Some(Current::Held(held));
                    return Ok(());
                }
            }
            let stored_rel = result.stored.clone();
            let rel = result.rel.clone();
            // The backup is not valid before its backup.info: files go straight under their
            // names, and one sync of the whole tree makes them durable before that.
            let mut w = shared.store.create_unsynced(&join(&[&shared.backup_dir, &stored_rel]))?;
            let algorithm = if plain { Algorithm::None } else { o.compression.algorithm };
            let encryption = if plain { None } else { o.encryption.as_ref() };
            // Stored as received, the file itself holds the plain bytes: they are hashed from
            // it, behind the writing, rather than handed over in memory at the hash's pace.
            let stored_plain = algorithm == Algorithm::None && encryption.is_none();
            let read_back = if stored_plain { w.read_back() } else { None };
            // With CRC32C and a stored file of its own bytes' SHA-512 (compressed or
            // encrypted), the only hash of the plain bytes is the cheap one.
            let inline = o.manifest == ManifestAlgorithm::Crc32c && !stored_plain;
            let (hash, source) = match read_back {
                _ if inline => (HashFeed::Inline(Box::new(PlainHashes::new(o.manifest, &checksum, false)?)), None),
                Some(file) => {
                    let progress = Arc::new(Progress::default());
                    let feed = ProgressFeed { progress: progress.clone(), bytes: 0, ended: false };
                    (HashFeed::File(feed), Some(HashSource::File { file, progress }))
                }
                None => {
                    let (tx, rx) = bounded(HASH_QUEUE);
                    (HashFeed::Memory(tx), Some(HashSource::Memory(rx)))
                }
            };
            let out = seal(w, algorithm, o.level, encryption, &stored_rel)?;
            let probe = rel
                .rsplit('/')
                .next()
                .filter(|n| n.starts_with(crate::incremental::INCREMENTAL_PREFIX))
                .map(|_| crate::incremental::HeaderProbe::default());
            let (written, written_rx) = bounded(1);
            *current = Some(Current::Open(OpenFile { result, out, probe, hash, written }));
            if let Some(source) = source {
                let job = HashJob { source, check: checksum, stored_plain, stored: stored_rel, written: written_rx };
                hashing.send(job).map_err(|_| hash_gone())?;
            }
        }
        Job::Chunk(pieces) => {
            let f = match current.as_mut() {
                Some(Current::Open(f)) => f,
                Some(Current::Held(h)) => {
                    h.result.plain_size += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
                    h.pieces.extend(pieces);
                    return Ok(());
                }
                None => return Err(StorageError::Invalid("file data without a file".into())),
            };
            let start = Instant::now();
            f.result.plain_size += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
            if let Some(p) = &mut f.probe {
                for piece in &pieces {
                    p.feed(piece);
                }
            }
            let stored = &f.result.stored;
            let writing = StorageError::io("writing", stored);
            match &mut f.hash {
                HashFeed::Inline(hashes) => {
                    for piece in &pieces {
                        hashes.update(piece);
                    }
                    write_pieces(&mut f.out, &pieces).map_err(writing)?;
                }
                HashFeed::Memory(tx) => {
                    tx.send(pieces.clone()).map_err(|_| hash_gone())?;
                    write_pieces(&mut f.out, &pieces).map_err(writing)?;
                }
                HashFeed::File(feed) => {
                    write_pieces(&mut f.out, &pieces).and_then(|()| f.out.flush()).map_err(writing)?;
                    feed.advance(f.result.plain_size);
                }
            }
            match &f.out {
                Output::Direct(_) => t.encrypt_and_write += start.elapsed().as_secs_f64(),
                Output::Compressed(_) => t.compress += start.elapsed().as_secs_f64(),
            }
        }
        Job::End => {
            let f = match current.take() {
                Some(Current::Open(f)) => f,
                Some(Current::Held(h)) => return finish_held(shared, h, t),
                None => return Err(StorageError::Invalid("end of a file never started".into())),
            };
            let OpenFile { mut result, out, probe, hash, written } = f;
            if let Some(p) = probe {
                let header = p.finish().map_err(|e| StorageError::corrupt(&result.stored, e.to_string()))?;
                result.combined_size = Some(header.combined_size());
            }
            let (w, stored_size, stored_sha512) = unseal_pending(out, &result.stored)?;
            result.stored_size = stored_size;
            w.commit(false)?;
            match hash {
                HashFeed::Inline(hashes) => {
                    let (plain, check, _) = hashes.finish();
                    result.plain_hash = plain;
                    result.checksum = check;
                    result.stored_sha512 = stored_sha512.ok_or_else(|| {
                        StorageError::Invalid(format!("{}: no checksum of the stored file", result.stored))
                    })?;
                    shared.results.lock().push(result);
                    pgmoneta_core::crash::point("backup:file-stored");
                    return Ok(());
                }
                HashFeed::Memory(tx) => drop(tx),
                HashFeed::File(feed) => feed.end(),
            }
            written.send(Written { result, stored_sha512 }).map_err(|_| hash_gone())?;
        }
    }
    Ok(())
}

/// Writes all of `pieces`, in as few calls as the writer allows (one `writev` for a file
/// stored as received).
fn write_pieces(w: &mut dyn Write, pieces: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = pieces.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match w.write_vectored(rest) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the file took no more bytes")),
            Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The chunks of one archive as they arrive on a channel, in batches.
struct Batches {
    rx: Receiver<Vec<Bytes>>,
    batch: std::vec::IntoIter<Bytes>,
}

impl Batches {
    fn new(rx: Receiver<Vec<Bytes>>) -> Batches {
        Batches { rx, batch: Vec::new().into_iter() }
    }

    /// The next chunk; `None` once the sender is gone and every batch is taken.
    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.batch.next() {
                return Some(b);
            }
            self.batch = self.rx.recv().ok()?.into_iter();
        }
    }
}

/// A `Read` over the chunks of one archive arriving on a channel.
struct ChannelReader {
    chunks: Batches,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.next_chunk() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// An archive's bytes in blocks: as received, or decoded from the server's compression.
enum ArchiveInput {
    Received(Batches),
    Decoded(Box<Decoder<BufReader<ChannelReader>>>),
}

impl ArchiveInput {
    /// The next block; `None` at the end.
    fn next_block(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            ArchiveInput::Received(chunks) => Ok(chunks.next_chunk()),
            ArchiveInput::Decoded(reader) => {
                // Filled whole (a decoder may return less per read), so that the pieces handed
                // on never keep a mostly empty block alive.
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < buf.len() {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if filled == 0 {
                    return Ok(None);
                }
                buf.truncate(filled);
                Ok(Some(Bytes::from(buf)))
            }
        }
    }
}

/// Parses one archive and dispatches its files to the workers. A file's bytes go to its worker
/// as pieces of the blocks they arrived in, without a copy.
fn parse_archive(
    shared: &Shared,
    archive: &ArchiveInfo,
    root: &str,
    rx: Receiver<Vec<Bytes>>,
    workers: &[Sender<Job>],
) -> Result<()> {
    let mut input = match shared.options.compression.side {
        Side::Server if shared.options.compression.algorithm != Algorithm::None => {
            let reader = ChannelReader { chunks: Batches::new(rx), current: Bytes::new() };
            let decoder = Decoder::new(shared.options.compression.algorithm, BufReader::with_capacity(CHUNK, reader))
                .map_err(StorageError::io("decoding", &archive.name))?;
            ArchiveInput::Decoded(Box::new(decoder))
        }
        _ => ArchiveInput::Received(Batches::new(rx)),
    };
    let mut parser = TarParser::new();
    // The worker of the file being received, its pending pieces and their length.
    let mut target: Option<(usize, Vec<Bytes>, usize)> = None;
    let mut turn = 0usize;
    let tablespace_prefix = archive.tablespace_oid.map(|oid| format!("pg_tblspc/{oid}/"));
    let checksum = "CRC32C".to_owned();
    loop {
        if shared.stopped() {
            return Ok(());
        }
        let block = match input.next_block() {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => return Err(StorageError::io("decoding", &archive.name)(e)),
        };
        parser.feed(&block, |event| -> Result<()> {
            match event {
                TarEvent::Entry(entry) => {
                    let path = entry
                        .path
                        .to_str()
                        .ok_or_else(|| StorageError::Invalid(format!("tar member {:?} is not UTF-8", entry.path)))?
                        .to_owned();
                    match &entry.kind {
                        TarEntryKind::Directory => shared.create_dir(&join(&[root, &path]))?,
                        TarEntryKind::File => {
                            match path.rsplit_once('/') {
                                Some((parent, _)) => shared.create_dir(&join(&[root, parent]))?,
                                None => shared.create_dir(root)?,
                            }
                            // The least busy worker takes the file, the next one in turn among equals.
                            let n = workers.len();
                            let w = (0..n).map(|i| (turn + i) % n).min_by_key(|&i| workers[i].len()).unwrap_or(0);
                            turn = (w + 1) % n;
                            let manifest_path = match &tablespace_prefix {
                                Some(p) => format!("{p}{path}"),
                                None => path.clone(),
                            };
                            let plain = tablespace_prefix.is_none() && layout::is_kept_plain(&path);
                            let job = Job::Start {
                                root: root.to_owned(),
                                manifest_path,
                                rel: path,
                                checksum: checksum.clone(),
                                plain,
                                size: entry.size,
                            };
                            send(shared, &workers[w], job)?;
                            target = Some((w, Vec::new(), 0));
                        }
                        TarEntryKind::Symlink { target: to } => {
                            let link = join(&[root, &path]);
                            let oid = path.strip_prefix("pg_tblspc/").and_then(|o| o.parse::<u32>().ok());
                            match oid {
                                Some(oid) if tablespace_prefix.is_none() => {
                                    let name = tablespace_name(&shared.options, oid);
                                    shared.create_dir(&join(&[root, "pg_tblspc"]))?;
                                    let dir = layout::tablespace_dir_name(&name);
                                    shared.create_dir(&dir)?;
                                    shared.store.symlink(
                                        &join(&[&shared.backup_dir, &dir]),
                                        &join(&[&shared.backup_dir, &link]),
                                    )?;
                                }
                                _ => log::warn!(
                                    "backup {}: symbolic link {link} -> {} not kept",
                                    shared.options.label,
                                    to.display()
                                ),
                            }
                        }
                        _ => log::warn!(
                            "backup {}: tar member {path} of an unsupported kind not kept",
                            shared.options.label
                        ),
                    }
                }
                TarEvent::Data(data) => {
                    let (w, pending, len) =
                        target.as_mut().ok_or_else(|| StorageError::Invalid("tar data outside a file".into()))?;
                    // The parser's data is a slice of the block it was fed.
                    pending.push(block.slice_ref(data));
                    *len += data.len();
                    if *len >= CHUNK {
                        *len = 0;
                        send(shared, &workers[*w], Job::Chunk(std::mem::take(pending)))?;
                    }
                }
                TarEvent::EndOfEntry => {
                    if let Some((w, pending, _)) = target.take() {
                        if !pending.is_empty() {
                            send(shared, &workers[w], Job::Chunk(pending))?;
                        }
                        send(shared, &workers[w], Job::End)?;
                    }
                }
                TarEvent::EndOfArchive => {}
            }
            Ok(())
        })?;
    }
    parser.finish()?;
    Ok(())
}

fn send(shared: &Shared, tx: &Sender<Job>, job: Job) -> Result<()> {
    tx.send(job)
        .map_err(|_| shared.error.lock().take().unwrap_or(StorageError::Invalid("a backup worker stopped".into())))
}

fn tablespace_name(options: &BackupOptions, oid: u32) -> String {
    options.tablespace_names.get(&oid).cloned().unwrap_or_else(|| oid.to_string())
}

/// What `backup_label` says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackupLabelFile {
    /// `START WAL LOCATION`.
    pub start_lsn: Lsn,
    /// The segment named with it.
    pub start_wal: String,
    /// `CHECKPOINT LOCATION`.
    pub checkpoint_lsn: Lsn,
    /// `START TIMELINE`.
    pub start_timeline: u32,
}

impl BackupLabelFile {
    /// Parses PostgreSQL's `backup_label`.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] when a line it needs is missing or malformed.
    pub fn parse(text: &str) -> Result<BackupLabelFile> {
        let bad = |why: &str| StorageError::corrupt("backup_label", why.to_owned());
        let mut out = BackupLabelFile::default();
        let mut seen = (false, false);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
                let (lsn, file) = rest.split_once(" (file ").ok_or_else(|| bad("START WAL LOCATION without a file"))?;
                out.start_lsn = lsn.parse().map_err(|_| bad("START WAL LOCATION is not an LSN"))?;
                out.start_wal = file.trim_end_matches(')').to_owned();
                seen.0 = true;
            } else if let Some(rest) = line.strip_prefix("CHECKPOINT LOCATION: ") {
                out.checkpoint_lsn = rest.trim().parse().map_err(|_| bad("CHECKPOINT LOCATION is not an LSN"))?;
                seen.1 = true;
            } else if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
                out.start_timeline = rest.trim().parse().map_err(|_| bad("START TIMELINE is not a number"))?;
            }
        }
        if !(seen.0 && seen.1) {
            return Err(bad("no START WAL LOCATION or CHECKPOINT LOCATION"));
        }
        Ok(out)
    }
}

/// Takes a full backup over a replication connection and stores it in `store`; with
/// `options.parent`, an incremental one (PostgreSQL 17+) on that backup. Returns the
/// `backup.info` written. On any failure the backup directory is removed.
///
/// # Errors
/// Server and connection errors, storage failures, a stream that does not match PostgreSQL's
/// own manifest, cancellation.
pub fn take_backup<S: Read + Write>(
    conn: &mut PgConnection<S>,
    version: PgVersion,
    minor_version: u32,
    store: Arc<dyn Store>,
    options: &BackupOptions,
) -> Result<BackupInfo> {
    if options.parent.is_some() && !version.has_incremental_backup() {
        return Err(StorageError::Invalid(format!(
            "incremental backups of PostgreSQL {} are taken with pgmoneta_storage::sqlbackup",
            version.major()
        )));
    }
    let mut bb = BaseBackupOptions::new(&options.label.postgres_label());
    bb.fast_checkpoint = options.fast_checkpoint;
    bb.max_rate_kb = options.max_rate_kb;
    // PostgreSQL's default CRC32C checks the transfer almost for free; the SHA-512 the
    // repository keeps is computed here, in parallel.
    bb.manifest_checksums = None;
    if options.compression.side == Side::Server && options.compression.algorithm != Algorithm::None {
        let method = options.compression.algorithm.name().to_owned();
        bb.compression = Some(ServerCompression { method, detail: Some(format!("level={}", options.level.max(1))) });
    }
    let mut source = BaseBackupSource::new(conn, bb, version);
    if let Some(label) = &options.parent {
        check_parent(store.as_ref(), &options.server, label, version)?;
        let manifest = store.read(&join(&[&layout::backup_dir(&options.server, label), "data", "backup_manifest"]))?;
        source = source.incremental(manifest);
    }
    take_backup_from(&mut source, version, minor_version, store, options)
}

/// Stores a base backup delivered by any [`BackupSource`]: the server's `BASE_BACKUP`, or
/// archives recorded earlier ([`pgmoneta_wire::source::RecordedSource`]). With
/// `options.parent` the archives are an incremental backup on that backup. Returns the
/// `backup.info` written; on any failure the backup directory is removed.
///
/// # Errors
/// The source's errors, storage failures, archives that do not match the source's manifest,
/// a backup without `backup_label`, cancellation.
pub fn take_backup_from(
    source: &mut dyn BackupSource,
    version: PgVersion,
    minor_version: u32,
    store: Arc<dyn Store>,
    options: &BackupOptions,
) -> Result<BackupInfo> {
    let backup_dir = layout::backup_dir(&options.server, &options.label.to_string());
    if store.exists(&backup_dir) {
        return Err(StorageError::Invalid(format!("a backup labelled {} already exists", options.label)));
    }
    let parent = match &options.parent {
        Some(label) => Some(check_parent(store.as_ref(), &options.server, label, version)?.label),
        None => None,
    };
    store.create_dir(&backup_dir)?;
    let result = pipeline(store.clone(), options, &backup_dir, version, minor_version, parent.as_deref(), |sink| {
        match source.feed(sink) {
            Ok(end) => Ok(end.map(|e| Fed {
                start: (e.start.0, e.start.1 .0),
                end: (e.end.0, e.end.1 .0),
                manifest: e.manifest,
            })),
            Err(e) => Err(StorageError::from_source(e)),
        }
    });
    discard_on_error(store.as_ref(), &backup_dir, result)
}

/// Removes the directory of a backup that failed, and passes the result on.
pub(crate) fn discard_on_error<T>(store: &dyn Store, backup_dir: &str, result: Result<T>) -> Result<T> {
    if result.is_err() {
        if let Err(e) = store.remove(backup_dir) {
            log::error!("removing the failed backup {backup_dir}: {e}");
        }
    }
    result
}

/// What a backup's source delivered, besides its files.
pub(crate) struct Fed {
    /// Start LSN and timeline.
    pub start: (Lsn, u32),
    /// End LSN and timeline.
    pub end: (Lsn, u32),
    /// PostgreSQL's `backup_manifest`, to check the files against; `None`: one is written
    /// from the files received.
    pub manifest: Option<Vec<u8>>,
}

type ArchiveThread<'scope> = (Sender<Vec<Bytes>>, std::thread::ScopedJoinHandle<'scope, Result<()>>);

/// Where a backup's source puts its archives (tar streams): each is parsed on its own thread
/// and its files handed to the workers.
pub(crate) struct StoreSink<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    shared: Arc<Shared>,
    senders: Vec<Sender<Job>>,
    archive: Option<ArchiveThread<'scope>>,
    /// Chunks received and not yet handed to the parser, and their length: they go in batches
    /// of [`CHUNK`] bytes, so that the parser is woken once per batch rather than once per
    /// message (PostgreSQL sends an archive in messages of a few tens of kilobytes).
    pending: Vec<Bytes>,
    pending_len: usize,
}

impl<'scope> StoreSink<'scope, '_> {
    /// Whether the backup failed or was cancelled: stop feeding.
    pub(crate) fn stopped(&self) -> bool {
        self.shared.stopped()
    }

    /// Starts a new archive (the previous one is complete).
    pub(crate) fn start(&mut self, info: ArchiveInfo) -> Result<()> {
        self.finish()?;
        let options = &self.shared.options;
        let root = match info.tablespace_oid {
            None => "data".to_owned(),
            Some(oid) => layout::tablespace_dir_name(&tablespace_name(options, oid)),
        };
        if let Some(oid) = info.tablespace_oid {
            self.shared.tablespaces.lock().push(TablespaceEntry {
                dir: root.clone(),
                oid: oid.to_string(),
                path: info.location.clone().unwrap_or_default(),
            });
        }
        let (tx, rx) = bounded::<Vec<Bytes>>(BATCHES);
        let shared = self.shared.clone();
        let senders = self.senders.clone();
        let handle = self.scope.spawn(move || {
            let r = parse_archive(&shared, &info, &root, rx, &senders);
            if r.is_err() {
                // Stops the feeding; the error itself is returned by join.
                shared.failed.store(true, Ordering::SeqCst);
            }
            r
        });
        self.archive = Some((tx, handle));
        Ok(())
    }

    /// Adds bytes to the current archive; `false` when its parser stopped.
    pub(crate) fn data(&mut self, d: Bytes) -> Result<bool> {
        let Some((tx, _)) = &self.archive else {
            return Err(StorageError::Invalid("archive data before any archive".into()));
        };
        pgmoneta_core::crash::point("backup:streaming");
        self.shared.options.progress.done.fetch_add(d.len() as u64, Ordering::Relaxed);
        self.pending_len += d.len();
        self.pending.push(d);
        if self.pending_len < CHUNK {
            return Ok(true);
        }
        self.pending_len = 0;
        Ok(tx.send(std::mem::take(&mut self.pending)).is_ok())
    }

    /// Ends the current archive and waits for its parser.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        if let Some((tx, handle)) = self.archive.take() {
            // A parser that stopped has its own error, returned by join.
            let _ = tx.send(pending);
            drop(tx);
            handle.join().map_err(|_| StorageError::Invalid("the archive parser panicked".into()))??;
        }
        Ok(())
    }
}

impl ArchiveSink for StoreSink<'_, '_> {
    fn stopped(&self) -> bool {
        StoreSink::stopped(self)
    }
    fn expect(&mut self, bytes: u64) {
        let progress = &self.shared.options.progress;
        progress.done.store(0, Ordering::Relaxed);
        progress.total.store(bytes, Ordering::Relaxed);
    }
    fn start(&mut self, info: ArchiveInfo) -> std::result::Result<(), SinkError> {
        Ok(StoreSink::start(self, info)?)
    }
    fn data(&mut self, chunk: Bytes) -> std::result::Result<bool, SinkError> {
        Ok(StoreSink::data(self, chunk)?)
    }
    fn finish(&mut self) -> std::result::Result<(), SinkError> {
        Ok(StoreSink::finish(self)?)
    }
}

/// Runs a backup's workers while `feed` delivers its archives, then checks, links and
/// records it. `feed` returns `None` when it stopped early (a failure or cancellation the
/// shared state knows of).
pub(crate) fn pipeline<F>(
    store: Arc<dyn Store>,
    options: &BackupOptions,
    backup_dir: &str,
    version: PgVersion,
    minor_version: u32,
    parent: Option<&str>,
    feed: F,
) -> Result<BackupInfo>
where
    F: FnOnce(&mut StoreSink<'_, '_>) -> Result<Option<Fed>>,
{
    let started = Instant::now();
    // How the new backup's files are named (their suffix) follows from its storage.
    let draft = BackupInfo {
        label: options.label.to_string(),
        major_version: version.major(),
        compression: options.compression.code() as u8,
        encryption: options.encryption.as_ref().map_or(0, |(c, _)| c.code()),
        manifest: options.manifest,
        ..BackupInfo::default()
    };
    let link_base =
        if options.link { crate::ops::LinkBase::find(store.as_ref(), &options.server, &draft)? } else { None };
    let shared = Arc::new(Shared {
        store: store.clone(),
        options: options.clone(),
        backup_dir: backup_dir.to_owned(),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        results: Mutex::new(Vec::new()),
        dirs: Mutex::new(BTreeSet::new()),
        tablespaces: Mutex::new(Vec::new()),
        timings: Mutex::new(Timings::default()),
        link_base,
        linked_early: AtomicU64::new(0),
    });
    let workers_n = options.workers.max(1);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers_n).map(|_| bounded::<Job>(QUEUE)).unzip();
    let (hash_tx, hash_rx) = bounded::<HashJob>(QUEUE * workers_n);
    let fed = std::thread::scope(|s| -> Result<Option<Fed>> {
        for _ in 0..workers_n {
            let (shared, rx) = (shared.clone(), hash_rx.clone());
            s.spawn(move || hash_files(&shared, &rx));
        }
        drop(hash_rx);
        for rx in receivers {
            let (shared, hashing) = (shared.clone(), hash_tx.clone());
            s.spawn(move || worker(&shared, &rx, &hashing));
        }
        drop(hash_tx);
        let mut sink =
            StoreSink { scope: s, shared: shared.clone(), senders, archive: None, pending: Vec::new(), pending_len: 0 };
        let outcome = feed(&mut sink);
        // Whatever happened, the parser ends and the workers' queues close.
        let finished = sink.finish();
        drop(sink);
        let fed = outcome?;
        finished?;
        Ok(fed)
    });
    if let Some(e) = shared.error.lock().take() {
        return Err(e);
    }
    if options.cancel.load(Ordering::SeqCst) {
        return Err(StorageError::Cancelled);
    }
    let fed = fed?.ok_or_else(|| StorageError::Invalid("the backup stopped before its end".into()))?;
    let (start, end) = (fed.start, fed.end);
    let basebackup_elapsed = started.elapsed().as_secs_f64();

    // Check every file against PostgreSQL's manifest, or write one.
    let manifest_started = Instant::now();
    let results = std::mem::take(&mut *shared.results.lock());
    let manifest_bytes = match fed.manifest {
        Some(bytes) => {
            let manifest = PgManifest::parse(&bytes)?;
            check_against_manifest(&manifest, &results)?;
            bytes
        }
        None => generated_manifest(&results, start, end),
    };
    store.write(&join(&[backup_dir, "data", "backup_manifest"]), &manifest_bytes)?;

    let label_text = {
        let mut t = String::new();
        store
            .open(&join(&[backup_dir, "data", "backup_label"]))?
            .read_to_string(&mut t)
            .map_err(StorageError::io("reading", "backup_label"))?;
        t
    };
    let label = BackupLabelFile::parse(&label_text)?;

    let mut derived = BackupManifest { algorithm: options.manifest, ..BackupManifest::default() };
    let mut sums = Sha512Sums::default();
    let (mut restore_size, mut backup_size, mut biggest) = (0u64, 0u64, 0u64);
    for r in &results {
        if !r.rel.starts_with("pg_wal/") {
            derived.files.insert(r.manifest_path.clone(), r.plain_hash.clone());
            restore_size += r.combined_size.unwrap_or(r.plain_size).div_ceil(8192) * 8192;
        }
        sums.files.insert(r.stored.clone(), r.stored_sha512.clone());
        backup_size += r.stored_size;
        biggest = biggest.max(r.combined_size.unwrap_or(r.plain_size));
    }
    let manifest_text = derived.to_text();
    store.write(&join(&[backup_dir, BACKUP_MANIFEST]), manifest_text.as_bytes())?;
    let manifest_elapsed = manifest_started.elapsed().as_secs_f64();

    // Unchanged files become links to the previous backup's; their checksums are that file's.
    let link_started = Instant::now();
    let draft = BackupInfo { tablespaces: shared.tablespaces.lock().clone(), ..draft };
    // Files that were not linked as they arrived (larger ones).
    let linked = match &shared.link_base {
        Some(base) => crate::ops::link_to(store.as_ref(), &options.server, &draft, base)?,
        None => crate::ops::LinkReport::default(),
    };
    let linked_early = shared.linked_early.load(Ordering::Relaxed);
    if let Some(base) = shared.link_base.as_ref().filter(|_| linked_early > 0 || !linked.linked.is_empty()) {
        log::info!(
            "server [{}]: backup {}: {} files linked to {}",
            options.server,
            options.label,
            linked_early + linked.linked.len() as u64,
            base.previous.label
        );
    }
    // A linked file's stored bytes are the file it links to, with that file's checksum.
    for rel in &linked.linked {
        if let Some(h) = linked.stored_sha512.get(rel) {
            sums.files.insert(rel.clone(), h.clone());
        }
    }
    backup_size -= linked.saved;
    let linking_elapsed = link_started.elapsed().as_secs_f64();
    sums.files.insert(
        BACKUP_MANIFEST.to_owned(),
        pgmoneta_crypto::digest_hex(HashAlgorithm::Sha512, manifest_text.as_bytes()),
    );
    sums.files
        .insert("data/backup_manifest".to_owned(), pgmoneta_crypto::digest_hex(HashAlgorithm::Sha512, &manifest_bytes));
    store.write(&join(&[backup_dir, BACKUP_SHA512]), sums.to_text().as_bytes())?;
    store.sync_tree(backup_dir)?;

    let timings = *shared.timings.lock();
    let mut info = BackupInfo {
        pgmoneta_version: env!("CARGO_PKG_VERSION").to_owned(),
        valid: true,
        label: options.label.to_string(),
        wal: label.start_wal,
        backup_size,
        restore_size,
        biggest_file: biggest,
        major_version: version.major(),
        minor_version,
        keep: false,
        compression: options.compression.code() as u8,
        encryption: options.encryption.as_ref().map_or(0, |(c, _)| c.code()),
        tablespaces: Vec::new(),
        start_lsn: start.0,
        end_lsn: end.0,
        checkpoint_lsn: label.checkpoint_lsn,
        start_timeline: start.1,
        end_timeline: end.1,
        backup_type: if parent.is_some() { BackupType::Incremental } else { BackupType::Full },
        parent: parent.map(str::to_owned).unwrap_or_default(),
        manifest: options.manifest,
        ..BackupInfo::default()
    };
    info.tablespaces = std::mem::take(&mut *shared.tablespaces.lock());
    info.elapsed.basebackup = basebackup_elapsed;
    info.elapsed.hash = timings.hash;
    match options.compression.algorithm {
        Algorithm::Zstd => info.elapsed.compression_zstd = timings.compress,
        Algorithm::Gzip => info.elapsed.compression_gzip = timings.compress,
        Algorithm::Lz4 => info.elapsed.compression_lz4 = timings.compress,
        Algorithm::Bzip2 => info.elapsed.compression_bzip2 = timings.compress,
        _ => {}
    }
    if options.encryption.is_some() {
        info.elapsed.encryption = timings.encrypt_and_write;
    }
    info.elapsed.manifest = manifest_elapsed;
    info.elapsed.linking = linking_elapsed;
    info.elapsed.total = started.elapsed().as_secs_f64();
    pgmoneta_core::crash::point("backup:before-info");
    crate::ops::save_info(store.as_ref(), &options.server, &info)?;
    Ok(info)
}

/// A `backup_manifest` in PostgreSQL's format for files received without one (incremental
/// backups of 14 to 16), with the CRC32C checksums computed on the way.
fn generated_manifest(results: &[FileResult], start: (Lsn, u32), end: (Lsn, u32)) -> Vec<u8> {
    let mut files: Vec<crate::manifest::PgManifestFile> = results
        .iter()
        .filter(|r| !r.manifest_path.starts_with("pg_wal/") && r.manifest_path != "backup_manifest")
        .map(|r| crate::manifest::PgManifestFile {
            path: r.manifest_path.clone(),
            size: r.plain_size,
            checksum_algorithm: "CRC32C".into(),
            checksum: r.checksum.clone(),
            last_modified: String::new(),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = PgManifest {
        version: 1,
        system_identifier: None,
        files,
        wal_ranges: vec![crate::manifest::WalRange { timeline: start.1, start: start.0, end: end.0 }],
    };
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    manifest.to_bytes(&format!("{} GMT", pgmoneta_core::CivilDateTime::from_unix(secs as i64, 0)))
}

/// The parent an incremental backup builds on: an existing valid backup of the same major
/// version without an incremental child yet (one child per backup, as upstream: a chain never
/// branches, so deleting any backup of it has one child to roll up into).
///
/// # Errors
/// [`StorageError::NotFound`] for no such backup; [`StorageError::Invalid`] for an invalid
/// one, another major version, or a parent that already has a child.
pub fn check_parent(store: &dyn Store, server: &str, label: &str, version: PgVersion) -> Result<BackupInfo> {
    let catalog = crate::catalog::Catalog::load(store, server)?;
    let parent = catalog
        .get(label)
        .ok_or_else(|| StorageError::NotFound(format!("no backup {label} of server {server} to build on")))?;
    if !parent.valid {
        return Err(StorageError::Invalid(format!(
            "backup {label} is not valid: no incremental backup can build on it"
        )));
    }
    if parent.major_version != version.major() {
        return Err(StorageError::Invalid(format!(
            "backup {label} is of PostgreSQL {}, the server is {}",
            parent.major_version,
            version.major()
        )));
    }
    if let Some(child) = catalog.child_of(label) {
        return Err(StorageError::AlreadyHasChild { parent: label.to_owned(), child: child.label.clone() });
    }
    Ok(parent.clone())
}

/// Every file PostgreSQL's manifest lists must have been received with its size and checksum,
/// and every file received must be listed (except WAL, which the manifest leaves out).
fn check_against_manifest(manifest: &PgManifest, results: &[FileResult]) -> Result<()> {
    let received: BTreeMap<&str, &FileResult> = results.iter().map(|r| (r.manifest_path.as_str(), r)).collect();
    for f in &manifest.files {
        let mismatch = |reason: String| StorageError::ManifestMismatch { path: f.path.clone(), reason };
        let r =
            received.get(f.path.as_str()).ok_or_else(|| mismatch("listed in the manifest but not received".into()))?;
        if r.plain_size != f.size {
            return Err(mismatch(format!("received {} bytes, the manifest says {}", r.plain_size, f.size)));
        }
        if f.checksum_algorithm == "CRC32C" && !f.checksum.is_empty() && r.checksum != f.checksum {
            return Err(mismatch(format!("CRC32C {} received, the manifest says {}", r.checksum, f.checksum)));
        }
    }
    let listed = manifest.by_path();
    for r in results {
        if !listed.contains_key(r.manifest_path.as_str()) && !r.manifest_path.starts_with("pg_wal/") {
            return Err(StorageError::ManifestMismatch {
                path: r.manifest_path.clone(),
                reason: "received but not listed in the manifest".into(),
            });
        }
    }
    Ok(())
}
