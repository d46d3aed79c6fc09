//! A remote repository in a directory on another machine, over SFTP (the `ssh2` crate, on
//! libssh2), with public key authentication.
//!
//! Each thread that works on the store takes a connection from a small pool, so parallel
//! uploads run on parallel connections. A file is written under a temporary name, synced
//! (`fsync@openssh.com`) and renamed into place by [`StoreWriter::commit`]; a writer dropped
//! without a commit removes its temporary file. Connecting and the metadata requests are
//! retried with backoff when the connection fails.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ssh2::{CheckResult, KnownHostFileKind, MethodType, OpenFlags, OpenType, Session, Sftp};

use super::{RemoteTuning, SftpOptions};
use crate::error::{Result, StorageError};
use crate::fsio::TEMP_SUFFIX;
use crate::store::{EntryKind, Store, StoreEntry, StoreWriter};

/// libssh2's code for "no such file" (`LIBSSH2_FX_NO_SUCH_FILE`).
const FX_NO_SUCH_FILE: i32 = 2;

struct Conn {
    _session: Session,
    sftp: Sftp,
}

/// A directory on an SFTP server as a [`Store`].
pub struct SftpStore {
    options: SftpOptions,
    tuning: RemoteTuning,
    pool: Arc<Mutex<Vec<Conn>>>,
}

impl std::fmt::Debug for SftpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpStore").field("location", &self.location("")).finish_non_exhaustive()
    }
}

fn is_missing(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::SFTP(FX_NO_SUCH_FILE))
}

/// Whether a failure is the connection's (worth a new connection and a retry) rather than
/// the server's answer to the request.
fn is_transport(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(_))
}

impl SftpStore {
    /// A store for `options`; connections are made when needed.
    pub fn new(options: SftpOptions, tuning: RemoteTuning) -> SftpStore {
        SftpStore { options, tuning, pool: Arc::new(Mutex::new(Vec::new())) }
    }

    fn location(&self, rel: &str) -> String {
        let o = &self.options;
        format!("ssh://{}@{}:{}{}", o.user, o.host, self.port(), self.path(rel).display())
    }

    fn port(&self) -> u16 {
        if self.options.port == 0 {
            22
        } else {
            self.options.port
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        let base = self.options.base_dir.trim_end_matches('/');
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            PathBuf::from(if base.is_empty() { "/" } else { base })
        } else {
            PathBuf::from(format!("{base}/{rel}"))
        }
    }

    fn error(&self, op: &str, rel: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Remote { what: format!("{op} {}", self.location(rel)), reason: e.to_string() }
    }

    fn connect(&self) -> Result<Conn> {
        let o = &self.options;
        let fail = |what: &str, e: &dyn std::fmt::Display| StorageError::Remote {
            what: format!("connecting to {}@{}:{}", o.user, o.host, self.port()),
            reason: format!("{what}: {e}"),
        };
        let tcp = TcpStream::connect((o.host.as_str(), self.port())).map_err(|e| fail("connect", &e))?;
        let mut session = Session::new().map_err(|e| fail("session", &e))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(u32::try_from(self.tuning.retry_timeout.as_millis()).unwrap_or(u32::MAX).max(10_000));
        if !o.ciphers.is_empty() {
            let list = o.ciphers.join(",");
            session.method_pref(MethodType::CryptCs, &list).map_err(|e| fail("ciphers", &e))?;
            session.method_pref(MethodType::CryptSc, &list).map_err(|e| fail("ciphers", &e))?;
        }
        session.handshake().map_err(|e| fail("handshake", &e))?;
        if o.known_hosts_file.is_none() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                log::warn!("{}@{}: no known_hosts file, the server's host key is not checked", o.user, o.host);
            });
        }
        if let Some(file) = &o.known_hosts_file {
            let mut known = session.known_hosts().map_err(|e| fail("known hosts", &e))?;
            known
                .read_file(file, KnownHostFileKind::OpenSSH)
                .map_err(|e| fail(&format!("reading {}", file.display()), &e))?;
            let (key, _) = session.host_key().ok_or_else(|| fail("host key", &"the server sent none"))?;
            match known.check_port(&o.host, self.port(), key) {
                CheckResult::Match => {}
                CheckResult::NotFound => return Err(fail("host key", &format!("not in {}", file.display()))),
                CheckResult::Mismatch => {
                    return Err(fail("host key", &format!("DIFFERS from the one in {}", file.display())))
                }
                CheckResult::Failure => return Err(fail("host key", &"cannot be checked")),
            }
        }
        session
            .userauth_pubkey_file(&o.user, o.public_key_file.as_deref(), &o.private_key_file, None)
            .map_err(|e| fail(&format!("public key authentication with {}", o.private_key_file.display()), &e))?;
        let sftp = session.sftp().map_err(|e| fail("starting SFTP", &e))?;
        Ok(Conn { _session: session, sftp })
    }

    fn take(&self) -> Result<Conn> {
        if let Some(c) = self.pool.lock().pop() {
            return Ok(c);
        }
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match self.connect() {
                Ok(c) => return Ok(c),
                Err(e)
                    if attempt < self.tuning.max_retries && started.elapsed() + delay < self.tuning.retry_timeout =>
                {
                    log::debug!("{e}; retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`SftpStore::take`] for a request on `rel`: a failure to connect names the file too.
    fn take_for(&self, op: &str, rel: &str) -> Result<Conn> {
        self.take().map_err(|e| match e {
            StorageError::Remote { what, reason } => StorageError::Remote {
                what: format!("{op} {}", self.location(rel)),
                reason: format!("{what}: {reason}"),
            },
            other => other,
        })
    }

    fn give(&self, conn: Conn) {
        self.pool.lock().push(conn);
    }

    /// Runs `op` on a pooled connection; a connection failure drops the connection and, for
    /// requests that can be repeated, tries again on a new one.
    fn with<T>(&self, what: &str, rel: &str, op: impl Fn(&Sftp) -> std::result::Result<T, ssh2::Error>) -> Result<T> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let conn = self.take_for(what, rel)?;
            match op(&conn.sftp) {
                Ok(v) => {
                    self.give(conn);
                    return Ok(v);
                }
                Err(e) if is_missing(&e) => {
                    self.give(conn);
                    return Err(StorageError::NotFound(format!(
                        "{}: not found in the remote repository",
                        self.location(rel)
                    )));
                }
                Err(e)
                    if is_transport(&e)
                        && attempt < self.tuning.max_retries
                        && started.elapsed() < self.tuning.retry_timeout =>
                {
                    log::debug!("{what} {}: {e}; retrying", self.location(rel));
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err(e) => {
                    if !is_transport(&e) {
                        self.give(conn);
                    }
                    return Err(self.error(what, rel, e));
                }
            }
        }
    }

    /// Creates `rel` and its parents (the base directory's too), as `mkdir -p`.
    fn mkdirs(&self, rel: &str) -> Result<()> {
        let full = self.path(rel);
        let is_dir = |p: &Path| self.with("inspecting", rel, |s| s.stat(p).map(|st| st.is_dir()));
        match is_dir(&full) {
            Ok(true) => return Ok(()),
            Ok(false) => return Err(self.error("creating directory", rel, "a file is in the way")),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        // The missing ancestors, nearest last.
        let mut missing = vec![full.clone()];
        let mut at = full.parent();
        while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && *p != Path::new("/")) {
            match is_dir(p) {
                Ok(true) => break,
                Ok(false) => return Err(self.error("creating directory", rel, format!("{} is a file", p.display()))),
                Err(StorageError::NotFound(_)) => missing.push(p.to_owned()),
                Err(e) => return Err(e),
            }
            at = p.parent();
        }
        for p in missing.iter().rev() {
            let made = self.with("creating directory", rel, |s| s.mkdir(p, 0o700));
            // Another thread may have made it meanwhile.
            if made.is_err() && !is_dir(p).unwrap_or(false) {
                return made;
            }
        }
        Ok(())
    }

    fn remove_tree(&self, sftp: &Sftp, path: &Path) -> std::result::Result<(), ssh2::Error> {
        let st = match sftp.lstat(path) {
            Ok(st) => st,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        if st.is_dir() {
            for (child, _) in sftp.readdir(path)? {
                self.remove_tree(sftp, &child)?;
            }
            sftp.rmdir(path)
        } else {
            sftp.unlink(path)
        }
    }
}

struct SftpWriter {
    store: Arc<SftpHandle>,
    rel: String,
    temp: PathBuf,
    file: Option<ssh2::File>,
    conn: Option<Conn>,
    written: u64,
    /// Set when a request failed: the connection is not reused.
    broken: bool,
}

/// What writers need of the store.
struct SftpHandle {
    inner: SftpStore,
}

impl Write for SftpWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("file closed"))?;
        let n = file.write(buf).inspect_err(|_| self.broken = true)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SftpWriter {
    /// Flushes, syncs and closes the temporary file, then renames it over the target.
    fn finish(&mut self) -> Result<()> {
        let s = &self.store.inner;
        let mut file = self.file.take().ok_or_else(|| s.error("writing", &self.rel, "file closed"))?;
        file.flush().map_err(|e| s.error("writing", &self.rel, e))?;
        // Servers without the fsync extension have it done when the file is closed.
        if let Err(e) = file.fsync() {
            log::debug!("fsync of {}: {e}", s.location(&self.rel));
        }
        file.close().map_err(|e| s.error("closing", &self.rel, e))?;
        drop(file);
        let conn = self.conn.as_ref().ok_or_else(|| s.error("writing", &self.rel, "no connection"))?;
        let target = s.path(&self.rel);
        // SFTP version 3 renames refuse an existing target.
        match conn.sftp.unlink(&target) {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(s.error("replacing", &self.rel, e)),
        }
        conn.sftp.rename(&self.temp, &target, None).map_err(|e| s.error("renaming into place", &self.rel, e))
    }
}

impl StoreWriter for SftpWriter {
    fn commit(mut self: Box<Self>, _sync_dir: bool) -> Result<u64> {
        match self.finish() {
            Ok(()) => {
                if let Some(conn) = self.conn.take() {
                    self.store.inner.give(conn);
                }
                Ok(self.written)
            }
            Err(e) => {
                // Drop removes the temporary file and keeps the connection only if it works.
                self.broken = matches!(&e, StorageError::Remote { .. });
                Err(e)
            }
        }
    }
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        self.file.take();
        if let Some(conn) = self.conn.take() {
            let removed = conn.sftp.unlink(&self.temp);
            if !self.broken && removed.as_ref().map_or_else(|e| !is_transport(e), |_| true) {
                self.store.inner.give(conn);
            }
        }
    }
}

/// A shared [`SftpStore`], so writers can hold it.
#[derive(Clone, Debug)]
pub struct SharedSftp(Arc<SftpHandle>);

impl std::fmt::Debug for SftpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl SharedSftp {
    /// A store for `options`.
    pub fn new(options: SftpOptions, tuning: RemoteTuning) -> SharedSftp {
        SharedSftp(Arc::new(SftpHandle { inner: SftpStore::new(options, tuning) }))
    }
}

impl Store for SharedSftp {
    fn create(&self, path: &str) -> Result<Box<dyn StoreWriter>> {
        let s = &self.0.inner;
        if let Some((parent, _)) = path.rsplit_once('/') {
            s.mkdirs(parent)?;
        }
        let temp = s.path(&format!("{path}{TEMP_SUFFIX}"));
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let mut attempt = 0;
        let (conn, file) = loop {
            let conn = s.take_for("creating", path)?;
            match conn.sftp.open_mode(&temp, flags, 0o600, OpenType::File) {
                Ok(f) => break (conn, f),
                // A pooled connection the server dropped: a new one.
                Err(e) if is_transport(&e) && attempt < 2 => attempt += 1,
                Err(e) => {
                    if !is_transport(&e) {
                        s.give(conn);
                    }
                    return Err(s.error("creating", path, e));
                }
            }
        };
        Ok(Box::new(SftpWriter {
            store: self.0.clone(),
            rel: path.to_owned(),
            temp,
            file: Some(file),
            conn: Some(conn),
            written: 0,
            broken: false,
        }))
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        let s = &self.0.inner;
        let full = s.path(path);
        let mut attempt = 0;
        loop {
            let conn = s.take_for("reading", path)?;
            match conn.sftp.open(&full) {
                Ok(file) => {
                    return Ok(Box::new(SftpReader {
                        file: Some(file),
                        conn: Some(conn),
                        store: self.0.clone(),
                        rel: path.to_owned(),
                        broken: false,
                    }))
                }
                Err(e) if is_missing(&e) => {
                    s.give(conn);
                    return Err(StorageError::NotFound(format!(
                        "{}: not found in the remote repository",
                        s.location(path)
                    )));
                }
                // A pooled connection the server dropped: a new one.
                Err(e) if is_transport(&e) && attempt < 2 => attempt += 1,
                Err(e) => return Err(s.error("reading", path, e)),
            }
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<StoreEntry>> {
        let s = &self.0.inner;
        let full = s.path(dir);
        let listed = match s.with("listing", dir, |sftp| sftp.readdir(&full)) {
            Ok(l) => l,
            Err(StorageError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out: Vec<StoreEntry> = listed
            .into_iter()
            .filter_map(|(p, st)| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                let kind = match st.file_type() {
                    ssh2::FileType::Directory => EntryKind::Dir,
                    ssh2::FileType::Symlink => EntryKind::Symlink,
                    _ => EntryKind::File,
                };
                let size = if kind == EntryKind::File { st.size.unwrap_or(0) } else { 0 };
                Some(StoreEntry { name, kind, size })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        self.0.inner.mkdirs(path)
    }

    fn remove(&self, path: &str) -> Result<()> {
        let s = &self.0.inner;
        let full = s.path(path);
        s.with("removing", path, |sftp| s.remove_tree(sftp, &full))
    }

    fn symlink(&self, target: &str, link: &str) -> Result<()> {
        let s = &self.0.inner;
        let (t, l) = (s.path(target), s.path(link));
        s.with("linking", link, |sftp| sftp.symlink(&t, &l))
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        let s = &self.0.inner;
        let full = s.path(path);
        let base = s.path("");
        match s.with("reading link", path, |sftp| sftp.readlink(&full)) {
            Ok(t) => Ok(t.strip_prefix(&base).ok().map(|r| r.to_string_lossy().into_owned())),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(StorageError::Remote { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let s = &self.0.inner;
        let (f, t) = (s.path(from), s.path(to));
        s.with("renaming", from, |sftp| {
            match sftp.unlink(&t) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(e),
            }
            sftp.rename(&f, &t, None)
        })
    }

    fn sync_dir(&self, _dir: &str) -> Result<()> {
        // Files are synced one by one before their rename; SFTP has no directory sync.
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        let s = &self.0.inner;
        let full = s.path(path);
        s.with("inspecting", path, |sftp| sftp.stat(&full)).is_ok()
    }

    fn local_path(&self, _path: &str) -> Option<PathBuf> {
        None
    }
}

struct SftpReader {
    file: Option<ssh2::File>,
    conn: Option<Conn>,
    store: Arc<SftpHandle>,
    rel: String,
    broken: bool,
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        self.file.take();
        if let Some(conn) = self.conn.take() {
            if !self.broken {
                self.store.inner.give(conn);
            }
        }
    }
}

impl Read for SftpReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("file closed"))?;
        file.read(out)
            .inspect_err(|_| self.broken = true)
            .map_err(|e| io::Error::other(format!("{}: {e}", self.store.inner.location(&self.rel))))
    }
}
