//! The WAL archive: segments streamed from the server, written where they belong, made durable
//! before the server hears they are, then compressed and encrypted once complete.
//!
//! A segment being received is `<segment>.partial`, created at the full segment size (zero
//! filled) so that running out of space shows at creation, not in the middle. `XLogData` is
//! written at its offset in the segment. The position reported to the server as flushed is
//! never beyond what `fsync` has made durable. A complete segment is synced and renamed to its
//! name, the directory synced, then handed to a sealing thread that writes
//! `<segment><.zstd|.gz|.lz4|.bz2><.aes>` and removes the plain file; a name that already carries
//! a suffix is never sealed again. Timeline history files are stored as the server sends them.
//!
//! Pruning keeps every segment at or after the oldest retained backup's first segment (on any
//! timeline) and every history file; see [`WalArchive::prune_before`].

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Sender};
use pgmoneta_compress::Algorithm;
use pgmoneta_core::{Lsn, TimelineId, WalFileKind, WalSegment, WalSegmentSize};
use pgmoneta_crypto::{Cipher, MasterKey, AES_SUFFIX};
use pgmoneta_wire::source::{SinkError, WalSink};
use pgmoneta_wire::PgConnection;

use crate::error::{Result, StorageError};
use crate::fsio;
use crate::store::{EntryKind, LocalStore, Store};
use crate::stored::stored_form;

/// How completed segments are stored.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WalOptions {
    /// Compression of complete segments.
    pub compression: Algorithm,
    /// Its level.
    pub level: i32,
    /// Encryption of complete segments.
    pub encryption: Option<(Cipher, Arc<MasterKey>)>,
    /// A second directory that receives a copy of every sealed segment and history file
    /// (`wal_shipping`: `<dir>/<server>/wal`).
    pub shipping: Option<PathBuf>,
}

impl WalOptions {
    /// Segments stored with `compression` at `level`, not encrypted, not shipped.
    pub fn new(compression: Algorithm, level: i32) -> WalOptions {
        WalOptions { compression, level, encryption: None, shipping: None }
    }

    /// The suffix of a sealed segment: the compression's, then `.aes` when encrypted.
    pub fn suffix(&self) -> String {
        let mut s = self.compression.suffix().to_owned();
        if self.encryption.is_some() {
            s.push_str(AES_SUFFIX);
        }
        s
    }
}

/// A file of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedWal {
    /// What it is.
    pub kind: WalFileKind,
    /// The file's name, suffixes included.
    pub file_name: String,
}

/// A server's WAL archive (`<base_dir>/<server>/wal`), in a [`Store`]. Sealing, listing,
/// pruning and reading go through the store; receiving (the `.partial` segment written at its
/// offsets and synced before the server hears of it) needs the archive on the local disk.
#[derive(Clone)]
pub struct WalArchive {
    store: Arc<dyn Store>,
    /// The archive's directory in the store ("" for the store's root).
    dir: String,
    /// The same directory on the local disk, when the store has one.
    local: Option<PathBuf>,
    segment_size: WalSegmentSize,
    options: WalOptions,
}

impl std::fmt::Debug for WalArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalArchive").field("dir", &self.dir).field("local", &self.local).finish_non_exhaustive()
    }
}

impl WalArchive {
    /// The archive in the local directory `dir` (created with mode 0700 when missing).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>, segment_size: WalSegmentSize, options: WalOptions) -> Result<WalArchive> {
        WalArchive::on_store(Arc::new(LocalStore::new(dir.into())), "", segment_size, options)
    }

    /// The archive in the directory `dir` of `store` (created when missing), for instance
    /// `layout::wal_dir(server)` in a repository's store.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn on_store(
        store: Arc<dyn Store>,
        dir: &str,
        segment_size: WalSegmentSize,
        options: WalOptions,
    ) -> Result<WalArchive> {
        store.create_dir(dir)?;
        let local = store.local_path(dir);
        Ok(WalArchive { store, dir: dir.trim_end_matches('/').to_owned(), local, segment_size, options })
    }

    /// The directory on the local disk, when the store has one.
    pub fn local_dir(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    /// The segment size.
    pub fn segment_size(&self) -> WalSegmentSize {
        self.segment_size
    }

    /// The suffix a sealed segment carries here (compression, then `.aes`); empty when
    /// segments are kept plain.
    pub fn sealed_suffix(&self) -> String {
        self.options.suffix()
    }

    /// The store path of the archive's file `name`.
    fn path(&self, name: &str) -> String {
        if self.dir.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.dir)
        }
    }

    /// What a message names the archive by.
    fn where_(&self) -> String {
        match &self.local {
            Some(p) => p.display().to_string(),
            None => self.dir.clone(),
        }
    }

    /// The archive's files, by kind and then name; files of other names (temporary files) are
    /// left out.
    ///
    /// # Errors
    /// When the directory cannot be read.
    pub fn entries(&self) -> Result<Vec<ArchivedWal>> {
        let mut out = Vec::new();
        for e in self.store.list(&self.dir)? {
            if e.kind == EntryKind::Dir || e.name.ends_with(fsio::TEMP_SUFFIX) {
                continue;
            }
            let (plain, _, _) = stored_form(&e.name);
            if let Ok(kind) = WalFileKind::parse(plain, self.segment_size) {
                out.push(ArchivedWal { kind, file_name: e.name });
            }
        }
        out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        Ok(out)
    }

    /// Where streaming resumes: the start of the segment being received (a `.partial`), or of
    /// the segment after the newest complete one. `None` for an empty archive.
    ///
    /// # Errors
    /// When the directory cannot be read.
    pub fn resume_point(&self) -> Result<Option<WalSegment>> {
        let mut best: Option<WalSegment> = None;
        for e in self.entries()? {
            let candidate = match e.kind {
                WalFileKind::Segment(s) => s.next(),
                WalFileKind::Partial(s) => s,
                _ => continue,
            };
            best = Some(match best {
                Some(b) if (b.timeline, b.number) >= (candidate.timeline, candidate.number) => b,
                _ => candidate,
            });
        }
        Ok(best)
    }

    /// Compresses and encrypts a complete plain segment as configured, then removes the plain
    /// file. A file that already carries a suffix, or nothing to do, is left as it is.
    ///
    /// # Errors
    /// I/O and codec failures; the plain file is kept then.
    pub fn seal(&self, name: &str) -> Result<String> {
        let suffix = self.options.suffix();
        if !matches!(WalFileKind::parse(name, self.segment_size), Ok(WalFileKind::Segment(_))) {
            return Ok(name.to_owned());
        }
        if suffix.is_empty() {
            self.ship(name);
            return Ok(name.to_owned());
        }
        let src = self.path(name);
        let stored = format!("{name}{suffix}");
        let mut input = self.store.open(&src)?;
        let mut out = self.store.create(&self.path(&stored))?;
        let encryption = self.options.encryption.as_ref().map(|(c, k)| (*c, k.as_ref()));
        let what = Path::new(&src);
        fsio::write_sealed(&mut out, self.options.compression, self.options.level, encryption, what, &mut |w| {
            std::io::copy(&mut input, w).map(|_| ()).map_err(StorageError::io("compressing", what))
        })?;
        out.commit(true)?;
        self.store.remove(&src)?;
        self.ship(&stored);
        Ok(stored)
    }

    /// Copies a stored file to the shipping directory, if one is configured: under a temporary
    /// name, synced, renamed. A failure is logged; the archive itself is complete without the
    /// copy.
    fn ship(&self, stored: &str) {
        let Some(dir) = &self.options.shipping else { return };
        let result = (|| -> Result<()> {
            fsio::create_dir_all(dir)?;
            let mut input = self.store.open(&self.path(stored))?;
            let dst = dir.join(stored);
            let mut out = fsio::AtomicFile::create(&dst)?;
            std::io::copy(&mut input, &mut out).map_err(StorageError::io("copying to", &dst))?;
            out.commit()?;
            fsio::sync_dir(dir)
        })();
        if let Err(e) = result {
            log::error!("WAL shipping of {stored} to {}: {e}", dir.display());
        }
    }

    /// The shipping directory as an archive of its own (for pruning).
    fn shipped(&self) -> Option<WalArchive> {
        let dir = self.options.shipping.clone()?;
        let options = WalOptions { shipping: None, ..self.options.clone() };
        WalArchive::open(dir, self.segment_size, options).ok()
    }

    /// Seals every complete plain segment (after a restart, say).
    ///
    /// # Errors
    /// As [`WalArchive::seal`].
    pub fn seal_all(&self) -> Result<usize> {
        let mut n = 0;
        for e in self.entries()? {
            if matches!(e.kind, WalFileKind::Segment(_)) && stored_form(&e.file_name).0 == e.file_name {
                self.seal(&e.file_name)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes complete segments (and partial ones) before `keep` by segment number, on every
    /// timeline; history files stay. Pass the oldest retained backup's first segment. The
    /// shipping directory, if any, is pruned the same way. Returns the number of files removed
    /// from the archive.
    ///
    /// # Errors
    /// When a file cannot be removed.
    pub fn prune_before(&self, keep: WalSegment) -> Result<usize> {
        let mut n = 0;
        for e in self.entries()? {
            let old = match e.kind {
                WalFileKind::Segment(s) | WalFileKind::Partial(s) | WalFileKind::BackupHistory(s, _) => {
                    s.number < keep.number
                }
                _ => false,
            };
            if old {
                self.store.remove_unsynced(&self.path(&e.file_name))?;
                n += 1;
            }
        }
        if n > 0 {
            self.store.sync_dir(&self.dir)?;
        }
        if let Some(shipped) = self.shipped() {
            if let Err(e) = shipped.prune_before(keep) {
                log::error!("pruning the shipped WAL in {}: {e}", shipped.where_());
            }
        }
        Ok(n)
    }

    /// Writes the plain contents of the archived file `name` (a segment or history file, as
    /// PostgreSQL's `restore_command` asks for it) to `dest`, decrypting and decompressing.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when the archive does not have it; a damaged file or a wrong
    /// key (nothing is left at `dest` then).
    pub fn fetch(&self, name: &str, dest: &Path, key: Option<&MasterKey>) -> Result<u64> {
        let cipher = self.options.encryption.as_ref().map(|(c, _)| *c);
        self.fetch_file(&self.locate(name)?, dest, cipher, key)
    }

    /// The name under which `name` (a segment or history file) is stored, with its suffixes.
    /// Found by trying its possible stored names (plain, each compression, with and without
    /// encryption), so a look-up costs the same whatever the archive's size, and any segment
    /// size is found.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when the archive does not have it.
    pub fn locate(&self, name: &str) -> Result<String> {
        let plain = !name.is_empty() && !name.contains('/') && stored_form(name) == (name, Algorithm::None, false);
        if plain {
            let compressions = std::iter::once("").chain(Algorithm::COMPRESSING.iter().map(|a| a.suffix()));
            for compression in compressions {
                for encryption in ["", AES_SUFFIX] {
                    let stored = format!("{name}{compression}{encryption}");
                    if self.store.exists(&self.path(&stored)) {
                        return Ok(stored);
                    }
                }
            }
        }
        Err(StorageError::NotFound(format!("{name} is not in the WAL archive {}", self.where_())))
    }

    /// Writes the plain contents of the stored file `stored` (a name [`WalArchive::locate`]
    /// gave) to `dest`; `cipher` and `key` decrypt a `.aes` file.
    ///
    /// # Errors
    /// A damaged file or a wrong key (nothing is left at `dest` then), I/O failures.
    pub fn fetch_file(
        &self,
        stored: &str,
        dest: &Path,
        cipher: Option<Cipher>,
        key: Option<&MasterKey>,
    ) -> Result<u64> {
        self.fetch_file_with(stored, dest, cipher, key, true)
    }

    /// [`WalArchive::fetch_file`], with `durable` saying whether `dest` is synced before it
    /// takes its name (PostgreSQL's `restore_command` output need not be: after a crash,
    /// recovery fetches it again).
    ///
    /// # Errors
    /// As [`WalArchive::fetch_file`].
    pub fn fetch_file_with(
        &self,
        stored: &str,
        dest: &Path,
        cipher: Option<Cipher>,
        key: Option<&MasterKey>,
        durable: bool,
    ) -> Result<u64> {
        let name = stored_form(stored).0;
        let is_segment = name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit());
        let path = self.path(stored);
        let shown = match &self.local {
            Some(dir) => dir.join(stored).display().to_string(),
            None => path.clone(),
        };
        let mut raw = self.store.open(&path)?;
        let mut out = fsio::AtomicFile::create(dest)?;
        let n = crate::stored::decode_stored(&mut raw, &shown, cipher, key, &mut out, dest)?;
        if is_segment && WalSegmentSize::new(n).is_err() {
            return Err(StorageError::corrupt(&shown, format!("{n} bytes is not the size of a WAL segment")));
        }
        if durable {
            out.commit()?;
        } else {
            out.commit_volatile()?;
        }
        Ok(n)
    }

    /// Stores a timeline history file as the server sent it (kept plain, as upstream does).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn store_history(&self, name: &str, content: &[u8]) -> Result<()> {
        if !matches!(WalFileKind::parse(name, self.segment_size), Ok(WalFileKind::History(_))) {
            return Err(StorageError::Invalid(format!("{name} is not a timeline history file name")));
        }
        let path = self.path(name);
        let mut out = self.store.create(&path)?;
        out.write_all(content).map_err(StorageError::io("writing", &path))?;
        out.commit(true)?;
        self.ship(name);
        Ok(())
    }

    /// Whether a history file for `timeline` is stored.
    pub fn has_history(&self, timeline: TimelineId) -> bool {
        let name = timeline.history_file_name();
        self.store.exists(&self.path(&name)) || self.store.exists(&self.path(&name.to_ascii_lowercase()))
    }

    /// The local directory segments are received in.
    fn receiving_dir(&self) -> Result<&Path> {
        self.local.as_deref().ok_or_else(|| {
            StorageError::Invalid(format!(
                "WAL is received into a directory on the local disk; the archive {} is not on one",
                self.dir
            ))
        })
    }
}

/// Writes `size` zero bytes into the empty `file` and syncs it.
fn preallocate(file: &File, size: u64, path: &Path) -> Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut f = file;
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(StorageError::io("preallocating", path))?;
        left -= n as u64;
    }
    file.sync_all().map_err(StorageError::io("syncing", path))
}

/// Writes streamed WAL into `.partial` segments of an archive.
#[derive(Debug)]
pub struct WalWriter {
    archive: WalArchive,
    timeline: TimelineId,
    current: Option<(WalSegment, File)>,
    /// The next position expected.
    next: Lsn,
    /// Synced up to here.
    flushed: Lsn,
    /// Complete segments to seal.
    completed: Vec<String>,
}

impl WalWriter {
    /// A writer starting at `start` (the start of a segment) on `timeline`.
    pub fn new(archive: WalArchive, timeline: TimelineId, start: Lsn) -> WalWriter {
        WalWriter { archive, timeline, current: None, next: start, flushed: start, completed: Vec::new() }
    }

    /// The position after the last byte written.
    pub fn written(&self) -> Lsn {
        self.next
    }

    /// The position up to which everything is durable.
    pub fn flushed(&self) -> Lsn {
        self.flushed
    }

    /// Names of segments completed since the last call.
    pub fn take_completed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.completed)
    }

    fn open_segment(&self, segment: WalSegment) -> Result<File> {
        let size = self.archive.segment_size.bytes();
        let dir = self.archive.receiving_dir()?;
        let path = dir.join(format!("{}.partial", segment.file_name(self.archive.segment_size)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(fsio::FILE_MODE)
            .open(&path)
            .map_err(StorageError::io("opening", &path))?;
        let len = file.metadata().map_err(StorageError::io("inspecting", &path))?.len();
        if len != size {
            if len != 0 {
                // Left short by a full disk during preallocation, or by a crash: streaming
                // resumes at the start of this segment, so the file is simply made whole again
                // and rewritten from there.
                log::warn!(
                    "{}: {len} bytes, a partial segment has {size}: rewriting it from the start of its segment",
                    path.display()
                );
                file.set_len(0).map_err(StorageError::io("truncating", &path))?;
            }
            // Zero-fill to the full size: a full disk shows now, not halfway through.
            if let Err(e) = preallocate(&file, size, &path) {
                // Give the space back; the next attempt starts from an empty file.
                let _ = file.set_len(0);
                return Err(e);
            }
            fsio::sync_dir(dir)?;
        }
        let mut f = &file;
        f.seek(SeekFrom::Start(0)).map_err(StorageError::io("seeking", &path))?;
        Ok(file)
    }

    /// Writes `data` starting at `start`. Data must follow on what was written (a repeat of
    /// bytes already written is accepted); a gap is an error.
    ///
    /// # Errors
    /// A gap in the stream, I/O failures.
    pub fn write(&mut self, start: Lsn, mut data: &[u8]) -> Result<()> {
        if start > self.next {
            return Err(StorageError::Invalid(format!(
                "WAL gap: expected {} but received data from {start}",
                self.next
            )));
        }
        let mut at = start;
        let seg = self.archive.segment_size;
        while !data.is_empty() {
            let segment = WalSegment::containing(self.timeline, at, seg);
            if self.current.as_ref().map(|(s, _)| *s) != Some(segment) {
                self.close_current(false)?;
                let f = self.open_segment(segment)?;
                self.current = Some((segment, f));
            }
            let offset = at.segment_offset(seg);
            let take = ((seg.bytes() - offset) as usize).min(data.len());
            let (_, f) = self.current.as_ref().expect("opened above");
            f.write_all_at(&data[..take], offset).map_err(|e| StorageError::Io {
                op: "writing WAL",
                path: self.archive.local.clone().unwrap_or_default().join(segment.file_name(seg)),
                source: e,
            })?;
            at += take as u64;
            data = &data[take..];
            if at > self.next {
                self.next = at;
            }
            if at.segment_offset(seg) == 0 {
                // The segment is complete.
                self.close_current(true)?;
            }
        }
        Ok(())
    }

    /// Syncs the segment being written; returns the flushed position.
    ///
    /// # Errors
    /// When the sync fails.
    pub fn flush(&mut self) -> Result<Lsn> {
        if let Some((segment, f)) = &self.current {
            let dir = self.archive.local.clone().unwrap_or_default();
            f.sync_data()
                .map_err(StorageError::io("syncing", dir.join(segment.file_name(self.archive.segment_size))))?;
        }
        self.flushed = self.next;
        Ok(self.flushed)
    }

    /// Closes the current segment: when `complete`, synced and renamed to its final name.
    fn close_current(&mut self, complete: bool) -> Result<()> {
        let Some((segment, f)) = self.current.take() else { return Ok(()) };
        let name = segment.file_name(self.archive.segment_size);
        let dir = self.archive.receiving_dir()?.to_owned();
        let partial = dir.join(format!("{name}.partial"));
        f.sync_data().map_err(StorageError::io("syncing", &partial))?;
        drop(f);
        if complete {
            let done = dir.join(&name);
            pgmoneta_core::crash::point("wal:before-rename");
            fs::rename(&partial, &done).map_err(StorageError::io("renaming", &partial))?;
            pgmoneta_core::crash::point("wal:after-rename");
            fsio::sync_dir(&dir)?;
            self.completed.push(name);
            self.flushed = self
                .flushed
                .max(self.next.min(segment.start_lsn(self.archive.segment_size) + self.archive.segment_size.bytes()));
        }
        Ok(())
    }

    /// Ends the current timeline: the partial segment, if any, is synced and kept as
    /// `.partial`; writing continues on `timeline` from `start`.
    ///
    /// # Errors
    /// When the segment cannot be synced.
    pub fn switch_timeline(&mut self, timeline: TimelineId, start: Lsn) -> Result<()> {
        self.close_current(false)?;
        self.timeline = timeline;
        self.next = start;
        self.flushed = start;
        Ok(())
    }
}

pub use pgmoneta_wire::source::{StreamOptions, StreamProgress};

/// The archive as the place a WAL stream is written: segments through a [`WalWriter`],
/// completed ones handed to the sealing thread once durable.
struct ArchiveSink<'a> {
    archive: &'a WalArchive,
    writer: Option<WalWriter>,
    sealer: Sender<String>,
}

impl ArchiveSink<'_> {
    fn writer(&mut self) -> Result<&mut WalWriter> {
        self.writer.as_mut().ok_or_else(|| StorageError::Invalid("WAL before the stream began".into()))
    }
}

impl WalSink for ArchiveSink<'_> {
    fn segment_size(&self) -> WalSegmentSize {
        self.archive.segment_size
    }
    fn resume_point(&mut self) -> std::result::Result<Option<(TimelineId, Lsn)>, SinkError> {
        let seg = self.archive.segment_size;
        Ok(self.archive.resume_point()?.map(|s| (s.timeline, s.start_lsn(seg))))
    }
    fn has_history(&self, timeline: TimelineId) -> bool {
        self.archive.has_history(timeline)
    }
    fn store_history(&mut self, name: &str, content: &[u8]) -> std::result::Result<(), SinkError> {
        Ok(self.archive.store_history(name, content)?)
    }
    fn begin(&mut self, timeline: TimelineId, start: Lsn) -> std::result::Result<(), SinkError> {
        match &mut self.writer {
            Some(w) => w.switch_timeline(timeline, start)?,
            None => self.writer = Some(WalWriter::new(self.archive.clone(), timeline, start)),
        }
        Ok(())
    }
    fn write(&mut self, start: Lsn, data: &[u8]) -> std::result::Result<(), SinkError> {
        Ok(self.writer()?.write(start, data)?)
    }
    fn segment_completed(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.completed.is_empty())
    }
    fn flush(&mut self) -> std::result::Result<Lsn, SinkError> {
        let sealer = &self.sealer;
        let w = self.writer.as_mut().ok_or_else(|| StorageError::Invalid("WAL before the stream began".into()))?;
        let flushed = w.flush()?;
        for name in w.take_completed() {
            let _ = sealer.send(name);
        }
        Ok(flushed)
    }
    fn written(&self) -> Lsn {
        self.writer.as_ref().map_or(Lsn(0), WalWriter::written)
    }
}

/// Streams WAL from the server into the archive until `options.stop` is set or the connection
/// fails, following timeline switches (see [`pgmoneta_wire::source::stream_wal`], which drives
/// the protocol; the archive is its sink). Streaming starts where the archive ends, else at the
/// slot's restart position (15+), else at the server's current position. Completed segments
/// are sealed on a separate thread. Returns the position flushed.
///
/// # Errors
/// Connection and server errors (the caller restarts with backoff), a gap in the stream, storage
/// failures.
pub fn stream_wal(
    conn: &mut PgConnection,
    archive: &WalArchive,
    version: pgmoneta_core::PgVersion,
    options: &StreamOptions,
) -> Result<Lsn> {
    let (tx, rx) = unbounded::<String>();
    let sealer = {
        let archive = archive.clone();
        std::thread::spawn(move || -> Result<()> {
            // A segment that cannot be sealed now (a full disk) stays complete and plain, and
            // is sealed when streaming starts again; the next ones are still tried.
            for name in rx.iter() {
                if let Err(e) = archive.seal(&name) {
                    log::error!("sealing the WAL segment {name}: {e}");
                }
            }
            Ok(())
        })
    };
    let result = {
        let mut sink = ArchiveSink { archive, writer: None, sealer: tx };
        pgmoneta_wire::source::stream_wal(conn, &mut sink, version, options)
    };
    let sealed = sealer.join().map_err(|_| StorageError::Invalid("the WAL sealing thread panicked".into()))?;
    let flushed = result.map_err(StorageError::from_source)?;
    sealed?;
    Ok(flushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(dir: &Path, name: &str, fill: u8) {
        fs::write(dir.join(name), vec![fill; 1 << 20]).unwrap();
    }

    #[test]
    fn sealed_segments_and_history_files_are_shipped_and_pruned_there_too() {
        let root = tempfile::tempdir().unwrap();
        let ship = root.path().join("ship/primary/wal");
        let mut options = WalOptions::new(Algorithm::Zstd, 3);
        options.shipping = Some(ship.clone());
        let size = WalSegmentSize::new(1 << 20).unwrap();
        let archive = WalArchive::open(root.path().join("wal"), size, options).unwrap();
        for (i, name) in ["000000010000000000000001", "000000010000000000000002"].iter().enumerate() {
            segment(archive.local_dir().unwrap(), name, i as u8 + 1);
            let stored = archive.seal(name).unwrap();
            assert_eq!(stored, format!("{name}.zstd"));
            assert_eq!(
                fs::read(ship.join(&stored)).unwrap(),
                fs::read(archive.local_dir().unwrap().join(&stored)).unwrap()
            );
        }
        archive.store_history("00000002.history", b"1\t0/3000000\tno recovery target specified\n").unwrap();
        assert!(ship.join("00000002.history").is_file());
        let keep = WalSegment::parse("000000010000000000000002", size).unwrap();
        assert_eq!(archive.prune_before(keep).unwrap(), 1);
        assert!(!ship.join("000000010000000000000001.zstd").exists());
        assert!(ship.join("000000010000000000000002.zstd").exists());
        assert!(ship.join("00000002.history").exists());
    }

    #[test]
    fn an_archive_in_any_store_seals_finds_fetches_and_prunes_but_receives_only_on_a_local_disk() {
        let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::new());
        let size = WalSegmentSize::new(1 << 20).unwrap();
        let key = Arc::new(MasterKey::from_bytes([9u8; 64]));
        let mut options = WalOptions::new(Algorithm::Lz4, 1);
        options.encryption = Some((Cipher::Aes256Gcm, key.clone()));
        let archive = WalArchive::on_store(store.clone(), "primary/wal", size, options).unwrap();
        assert_eq!(archive.local_dir(), None);
        let names = ["000000010000000000000001", "000000010000000000000002", "000000010000000000000003"];
        for (i, name) in names.iter().enumerate() {
            let mut w = store.create(&format!("primary/wal/{name}")).unwrap();
            w.write_all(&vec![i as u8 + 1; 1 << 20]).unwrap();
            w.commit(true).unwrap();
        }
        assert_eq!(archive.seal_all().unwrap(), 3);
        archive.store_history("00000002.history", b"1\t0/3000000\tno recovery target specified\n").unwrap();
        assert!(archive.has_history(TimelineId(2)) && !archive.has_history(TimelineId(3)));
        let listed: Vec<String> = archive.entries().unwrap().into_iter().map(|e| e.file_name).collect();
        assert_eq!(listed[0], "000000010000000000000001.lz4.aes");
        assert_eq!(listed.len(), 4);
        let stored = archive.locate(names[1]).unwrap();
        assert_eq!(stored, "000000010000000000000002.lz4.aes");
        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("RECOVERYXLOG");
        assert_eq!(archive.fetch(names[1], &out, Some(&key)).unwrap(), 1 << 20);
        assert!(fs::read(&out).unwrap().iter().all(|&b| b == 2));
        assert_eq!(archive.resume_point().unwrap(), WalSegment::parse(names[2], size).ok().map(WalSegment::next));
        assert_eq!(archive.prune_before(WalSegment::parse(names[1], size).unwrap()).unwrap(), 1);
        assert!(matches!(archive.locate(names[0]), Err(StorageError::NotFound(_))));
        assert!(archive.has_history(TimelineId(2)));
        // Receiving writes at offsets and syncs: only on the local disk.
        let mut w = WalWriter::new(archive.clone(), TimelineId(1), Lsn(4 << 20));
        let e = w.write(Lsn(4 << 20), &[1u8; 8192]).unwrap_err().to_string();
        assert!(e.contains("local disk") && e.contains("primary/wal"), "{e}");
    }

    #[test]
    fn a_failing_shipping_directory_does_not_fail_the_archive() {
        let root = tempfile::tempdir().unwrap();
        let blocker = root.path().join("not-a-dir");
        fs::write(&blocker, b"x").unwrap();
        let mut options = WalOptions::new(Algorithm::None, 0);
        options.shipping = Some(blocker.join("wal"));
        let size = WalSegmentSize::new(1 << 20).unwrap();
        let archive = WalArchive::open(root.path().join("wal"), size, options).unwrap();
        segment(archive.local_dir().unwrap(), "000000010000000000000001", 7);
        assert_eq!(archive.seal("000000010000000000000001").unwrap(), "000000010000000000000001");
        assert!(archive.local_dir().unwrap().join("000000010000000000000001").is_file());
    }

    #[test]
    fn a_partial_segment_of_the_wrong_size_is_rewritten_not_fatal() {
        let root = tempfile::tempdir().unwrap();
        let size = WalSegmentSize::new(1 << 20).unwrap();
        let archive = WalArchive::open(root.path().join("wal"), size, WalOptions::new(Algorithm::None, 0)).unwrap();
        let tli = TimelineId(1);
        let segment = WalSegment::containing(tli, Lsn(3 << 20), size);
        let partial = archive.local_dir().unwrap().join(format!("{}.partial", segment.file_name(size)));
        // Half preallocated when the disk filled up; and one longer than a segment.
        for wrong in [512 << 10, (1 << 20) + 8192] {
            fs::write(&partial, vec![0xAAu8; wrong]).unwrap();
            assert_eq!(archive.resume_point().unwrap(), Some(segment));
            let mut w = WalWriter::new(archive.clone(), tli, segment.start_lsn(size));
            w.write(segment.start_lsn(size), &[7u8; 8192]).unwrap();
            w.flush().unwrap();
            let bytes = fs::read(&partial).unwrap();
            assert_eq!(bytes.len(), 1 << 20, "the segment was not made whole");
            assert!(bytes[..8192].iter().all(|&b| b == 7) && bytes[8192..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn a_full_disk_during_preallocation_names_the_file_and_the_cause() {
        // /dev/full fails every write with ENOSPC: the error names the file and the cause.
        let size = WalSegmentSize::new(1 << 20).unwrap();
        let full = File::options().write(true).open("/dev/full").unwrap();
        let err = preallocate(&full, size.bytes(), Path::new("/dev/full")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/dev/full") && text.contains("No space left"), "{text}");
    }
}
