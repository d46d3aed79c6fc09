//! Durable file system operations: private permissions, write to a temporary name, sync,
//! rename, sync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, StorageError};

/// Mode of every directory the repository creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the repository creates.
pub const FILE_MODE: u32 = 0o600;
/// The suffix of files being written; a name ending in it is never part of a valid backup.
pub const TEMP_SUFFIX: &str = ".pgmoneta-tmp";

/// Syncs a directory, making the entries created, renamed or removed in it durable.
///
/// # Errors
/// When the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(StorageError::io("opening directory", dir))?;
    d.sync_all().map_err(StorageError::io("syncing directory", dir))
}

/// Creates `dir` and its missing parents with mode 0700, syncing each parent that gained an
/// entry.
///
/// # Errors
/// When a directory cannot be created or synced.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(StorageError::io("creating directory", dir)(e)),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// A unique temporary name next to `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.{n}{TEMP_SUFFIX}", std::process::id()));
    path.with_file_name(name)
}

/// A file being written under a temporary name; [`AtomicFile::commit`] makes it durable under
/// its final name. Dropped without a commit, the temporary file is removed.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<io::BufWriter<File>>,
    temp: PathBuf,
    path: PathBuf,
    written: u64,
}

impl AtomicFile {
    /// Starts writing `path` (mode 0600).
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let temp = temp_path(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)
            .map_err(StorageError::io("creating", &temp))?;
        Ok(AtomicFile {
            file: Some(io::BufWriter::with_capacity(256 << 10, file)),
            temp,
            path: path.to_owned(),
            written: 0,
        })
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Syncs the data, renames the file to its final name and syncs the directory. Does not
    /// sync the directory when `sync_directory` is false (the caller syncs it once for many
    /// files).
    ///
    /// # Errors
    /// When a step fails; the temporary file is then removed.
    pub fn commit_with(mut self, sync_directory: bool) -> Result<u64> {
        let buffered = self.file.take().expect("only commit takes the file");
        let file = buffered.into_inner().map_err(|e| StorageError::io("writing", &self.temp)(e.into_error()))?;
        file.sync_all().map_err(StorageError::io("syncing", &self.temp))?;
        drop(file);
        fs::rename(&self.temp, &self.path).map_err(StorageError::io("renaming into place", &self.path))?;
        if sync_directory {
            if let Some(parent) = self.path.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(self.written)
    }

    /// Renames the file into place without syncing anything: for files nothing depends on
    /// after a crash (a spool, a file PostgreSQL's `restore_command` hands over, which
    /// recovery fetches again after a crash). Readers still never see it half-written.
    ///
    /// # Errors
    /// When a step fails; the temporary file is then removed.
    pub fn commit_volatile(mut self) -> Result<u64> {
        let buffered = self.file.take().expect("only commit takes the file");
        let file = buffered.into_inner().map_err(|e| StorageError::io("writing", &self.temp)(e.into_error()))?;
        drop(file);
        fs::rename(&self.temp, &self.path).map_err(StorageError::io("renaming into place", &self.path))?;
        Ok(self.written)
    }

    /// [`AtomicFile::commit_with`], syncing the directory.
    ///
    /// # Errors
    /// As [`AtomicFile::commit_with`].
    pub fn commit(self) -> Result<u64> {
        self.commit_with(true)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("open until commit").write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `data` to `path` atomically and durably (mode 0600).
///
/// # Errors
/// When a step fails; nothing is left under either name then.
pub fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(data).map_err(StorageError::io("writing", path))?;
    f.commit().map(|_| ())
}

/// Sets a file's or directory's mode.
///
/// # Errors
/// When the mode cannot be set.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(StorageError::io("setting the mode of", path))
}

/// Removes a directory tree if it exists, then syncs its parent.
///
/// # Errors
/// When something cannot be removed.
pub fn remove_dir_all(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io("removing", dir)(e)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// A file written directly under its final name, inside a directory that does not count until
/// later (a backup being written, which is not valid before its `backup.info`). Cheaper than
/// [`AtomicFile`]: no rename, and syncing is left to one [`sync_tree`] at the end. Dropped
/// without [`DirectFile::finish`], the file is removed.
#[derive(Debug)]
pub struct DirectFile {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    written: u64,
    /// Up to where write-back was started.
    advised: u64,
    /// Whether the file is read back while written: write-back is then started without
    /// dropping the pages from the cache, which the reader does once it has read them.
    read_back: bool,
}

/// Bytes between two starts of write-back while a large file is written.
const WRITEBACK_STEP: u64 = 16 << 20;

/// Asks the kernel to start writing a range of `file` back now, without waiting (a hint), and
/// to drop the pages from the cache once written (`len` 0: to the end of the file).
fn start_writeback(file: &File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else { return };
    let _ = nix::fcntl::posix_fadvise(file.as_raw_fd(), from, len, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

/// Asks the kernel to start writing a range of `file` back now, without waiting, and to keep
/// the pages cached (`len` 0: to the end of the file).
#[allow(unsafe_code)]
fn start_writeback_keeping(file: &File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else { return };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for as
    // long as `file` is borrowed. A failure only means the final sync has more to do.
    let _ = unsafe { nix::libc::sync_file_range(file.as_raw_fd(), from, len, nix::libc::SYNC_FILE_RANGE_WRITE) };
}

/// Tells the kernel that a range of `file` that was read will not be read again: the pages
/// already written back leave the cache, write-back of the others starts (they stay cached
/// until memory is needed; `len` 0: to the end of the file).
pub(crate) fn drop_cached(file: &File, from: u64, len: u64) {
    start_writeback(file, from, len);
}

impl DirectFile {
    /// Creates `path` (mode 0600); an existing file is an error.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &Path) -> Result<DirectFile> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(StorageError::io("creating", path))?;
        Ok(DirectFile {
            file: Some(io::BufWriter::with_capacity(256 << 10, file)),
            path: path.to_owned(),
            written: 0,
            advised: 0,
            read_back: false,
        })
    }

    /// A second handle on the file, to read what was flushed while more is written; the
    /// reader is then the one to drop the pages from the cache (see `drop_cached`).
    pub fn read_back(&mut self) -> Option<File> {
        self.file.as_ref()?;
        let reader = File::open(&self.path).ok()?;
        self.read_back = true;
        Some(reader)
    }

    fn writeback(&self, file: &File, from: u64, len: u64) {
        if self.read_back {
            start_writeback_keeping(file, from, len);
        } else {
            start_writeback(file, from, len);
        }
    }

    /// Starts write-back of what reached the kernel since the last time, every 16 MiB, so that
    /// a large file does not leave all its data for the final sync.
    fn pace(&mut self) {
        let Some(w) = self.file.as_ref() else { return };
        let in_kernel = self.written - w.buffer().len() as u64;
        if in_kernel - self.advised >= WRITEBACK_STEP {
            self.writeback(w.get_ref(), self.advised, in_kernel - self.advised);
            self.advised = in_kernel;
        }
    }

    /// Flushes the buffer, and syncs the data when `sync`.
    ///
    /// # Errors
    /// When writing or syncing fails; the file is removed then.
    pub fn finish(mut self, sync: bool) -> Result<u64> {
        let buffered = self.file.take().expect("only finish takes the file");
        let result =
            buffered.into_inner().map_err(|e| StorageError::io("writing", &self.path)(e.into_error())).and_then(|f| {
                if sync {
                    f.sync_all().map_err(StorageError::io("syncing", &self.path))
                } else {
                    // Start writing the rest back now, without waiting, so that the final sync
                    // of the tree finds little left to do.
                    self.writeback(&f, self.advised, 0);
                    Ok(())
                }
            });
        if result.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        result.map(|()| self.written)
    }
}

impl Write for DirectFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("open until finish").write(buf)?;
        self.written += n as u64;
        self.pace();
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("open until finish").write_vectored(bufs)?;
        self.written += n as u64;
        self.pace();
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.as_mut().expect("open until finish").write_all(buf)?;
        self.written += buf.len() as u64;
        self.pace();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until finish").flush()
    }
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Watches the file system holding a directory for write-back errors from the moment it is
/// opened. Files written without a sync of their own and made durable by one `syncfs` at the
/// end must be watched from before they are written: `syncfs` reports a failed write-back only
/// to descriptors opened before it happened, and write-back starts early on purpose.
#[derive(Debug)]
pub struct WritebackWatch {
    dir: File,
    path: PathBuf,
}

impl WritebackWatch {
    /// Starts watching the file system of `dir` (which must exist).
    ///
    /// # Errors
    /// When the directory cannot be opened.
    pub fn open(dir: &Path) -> Result<WritebackWatch> {
        let file = File::open(dir).map_err(StorageError::io("opening directory", dir))?;
        Ok(WritebackWatch { dir: file, path: dir.to_owned() })
    }

    /// Makes everything on the file system durable, and fails if any write-back failed since
    /// the watch started (or since the previous sync through it).
    ///
    /// # Errors
    /// When the sync fails or reports a failed write-back.
    pub fn sync(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        nix::unistd::syncfs(self.dir.as_raw_fd()).map_err(|e| {
            StorageError::io("syncing the file system of", &self.path)(io::Error::from_raw_os_error(e as i32))
        })
    }
}

/// Makes everything under `dir` durable with one `syncfs` of its file system: all file data
/// and metadata at once (directory entries included), far cheaper than a sync per file and per
/// directory, each of which commits the journal again.
///
/// # Errors
/// When the sync fails.
pub fn sync_tree(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).map_err(StorageError::io("opening directory", dir))?;
    nix::unistd::syncfs(d.as_raw_fd())
        .map_err(|e| StorageError::io("syncing the file system of", dir)(io::Error::from_raw_os_error(e as i32)))
}

/// Writes what `body` produces through compression and then encryption into `out`, finishing
/// each layer in order (the compressed stream's end, then the GCM tag). `what` names the
/// output in errors.
///
/// # Errors
/// Codec and encryption failures, and those of `body`.
pub(crate) fn write_sealed(
    out: &mut dyn Write,
    algorithm: pgmoneta_compress::Algorithm,
    level: i32,
    encryption: Option<(pgmoneta_crypto::Cipher, &pgmoneta_crypto::MasterKey)>,
    what: &Path,
    body: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    use pgmoneta_compress::{Encoder, EncoderOptions};
    let options = EncoderOptions { level, workers: 0 };
    let compressing = StorageError::io("compressing", what);
    match encryption {
        Some((cipher, key)) => {
            let encrypted = pgmoneta_crypto::EncryptWriter::new(key, cipher, out)?;
            let mut z = Encoder::new(algorithm, options, encrypted).map_err(StorageError::io("compressing", what))?;
            body(&mut z)?;
            z.finish().map_err(compressing)?.finish()?;
        }
        None => {
            let mut z = Encoder::new(algorithm, options, out).map_err(StorageError::io("compressing", what))?;
            body(&mut z)?;
            z.finish().map_err(compressing)?;
        }
    }
    Ok(())
}
