//! The master key file, `~/.pgmoneta/master.key`.
//!
//! Two lines: the base64 of the master key text, and the base64 of 16 random salt bytes. The
//! directory must be mode 0700 and the file 0600: a key others can read protects nothing, so a
//! wider mode is an error that names the file and the command that fixes it.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use openssl::base64::{decode_block, encode_block};

use crate::aes::MasterKey;
use crate::error::{io_err, CryptoError, Result};

/// Shortest master key text accepted, in characters.
pub const MIN_KEY_CHARS: usize = 8;
/// Longest master key text accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 8191;

/// Key text, salt, and the master key derived from them.
type CachedKey = (Vec<u8>, Vec<u8>, Arc<MasterKey>);

/// A master key file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeyFile {
    path: PathBuf,
}

fn check_mode(path: &Path, expected: u32) -> Result<()> {
    let meta = fs::metadata(path).map_err(io_err("reading", path))?;
    let actual = meta.permissions().mode() & 0o777;
    if actual != expected {
        return Err(CryptoError::Permissions { path: path.to_owned(), expected, actual });
    }
    Ok(())
}

impl MasterKeyFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> MasterKeyFile {
        MasterKeyFile { path: path.into() }
    }

    /// `$HOME/.pgmoneta/master.key` of the user running the program.
    ///
    /// # Errors
    /// When `HOME` is not set.
    pub fn default_location() -> Result<MasterKeyFile> {
        let home = std::env::var_os("HOME")
            .ok_or_else(|| CryptoError::Invalid("HOME is not set: cannot find ~/.pgmoneta/master.key".to_owned()))?;
        Ok(MasterKeyFile::new(Path::new(&home).join(".pgmoneta").join("master.key")))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the file from `key_text` with a fresh salt (and its directory, mode 0700, if
    /// missing). Refuses to overwrite an existing key: backups encrypted with it would be lost.
    ///
    /// # Errors
    /// The file exists, the key is shorter than 8 characters or longer than 8191 bytes, I/O.
    pub fn create(&self, key_text: &str) -> Result<()> {
        if key_text.chars().count() < MIN_KEY_CHARS || key_text.len() > MAX_KEY_BYTES {
            return Err(CryptoError::Invalid(format!(
                "a master key must have at least {MIN_KEY_CHARS} characters and at most {MAX_KEY_BYTES} bytes"
            )));
        }
        if let Some(dir) = self.path.parent() {
            if !dir.exists() {
                fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err("creating", dir))?;
            }
            check_mode(dir, 0o700)?;
        }
        let mut salt = [0u8; 16];
        openssl::rand::rand_bytes(&mut salt)?;
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CryptoError::Invalid(format!(
                    "{} already exists; remove it first if you really mean to replace the key",
                    self.path.display()
                ))
            } else {
                io_err("creating", &self.path)(e)
            }
        })?;
        let text = format!("{}\n{}\n", encode_block(key_text.as_bytes()), encode_block(&salt));
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(io_err("writing", &self.path))?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("syncing", dir))?;
        }
        Ok(())
    }

    /// Reads the key text and salt, checking permissions.
    ///
    /// # Errors
    /// A missing file, wrong permissions, or content not in the two-line format.
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        if let Some(dir) = self.path.parent() {
            check_mode(dir, 0o700)?;
        }
        check_mode(&self.path, 0o600)?;
        let text = fs::read_to_string(&self.path).map_err(io_err("reading", &self.path))?;
        let format = |line: Option<usize>, detail: &str| CryptoError::Format {
            path: self.path.clone(),
            line,
            detail: detail.to_owned(),
        };
        let mut lines = text.lines();
        let key = lines
            .next()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| format(Some(1), "no master key line"))?;
        let key = decode_block(key).map_err(|_| format(Some(1), "the master key line is not base64"))?;
        let salt = lines.next().map(str::trim).filter(|l| !l.is_empty()).ok_or_else(|| {
            format(Some(2), "no salt line (one-line master key files are no longer supported: create a new key)")
        })?;
        let salt = decode_block(salt).map_err(|_| format(Some(2), "the salt line is not base64"))?;
        if salt.len() != 16 {
            return Err(format(Some(2), &format!("the salt is {} bytes, expected 16", salt.len())));
        }
        if key.len() < MIN_KEY_CHARS {
            return Err(format(Some(1), "the master key is shorter than 8 characters"));
        }
        Ok((key, salt))
    }

    /// Reads the file and derives the master key (600,000 PBKDF2 iterations).
    ///
    /// # Errors
    /// As [`MasterKeyFile::read`].
    pub fn load(&self) -> Result<MasterKey> {
        let (key, salt) = self.read()?;
        MasterKey::derive(&key, &salt)
    }

    /// Like [`MasterKeyFile::load`], but derives once per process and file content: later calls
    /// return the cached key unless the file changed.
    ///
    /// # Errors
    /// As [`MasterKeyFile::read`].
    pub fn load_cached(&self) -> Result<Arc<MasterKey>> {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, CachedKey>>> = OnceLock::new();
        let (key, salt) = self.read()?;
        let cache = CACHE.get_or_init(Default::default);
        if let Some((k, s, master)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&self.path) {
            if *k == key && *s == salt {
                return Ok(master.clone());
            }
        }
        let master = Arc::new(MasterKey::derive(&key, &salt)?);
        cache.lock().unwrap_or_else(|p| p.into_inner()).insert(self.path.clone(), (key, salt, master.clone()));
        Ok(master)
    }
}
