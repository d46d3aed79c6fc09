//! `pgmoneta-cli archive-get`: PostgreSQL's `restore_command`, fetching a WAL segment or
//! timeline history file from the repository, decrypted and decompressed.
//!
//! Exit status, as PostgreSQL reads it: 0 when the file was written, 1 when the archive does not
//! have it (recovery then ends normally there), 126 for anything else (a damaged file, a wrong
//! master key, an unreadable configuration): PostgreSQL treats a status above 125 as fatal and
//! stops recovery instead of ending it early at a segment it could not get.
//!
//! With prefetch (the default), each call hands its request to a prefetch process that serves
//! the recovery from a spool directory ([`crate::prefetch`]): it derives the master key once,
//! and while PostgreSQL replays a segment, the next ones are already fetched, decrypted and
//! decompressed. `--prefetch 0` fetches in the calling process alone.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pgmoneta_compress::Algorithm;
use pgmoneta_core::config::Config;
use pgmoneta_core::WalSegmentSize;
use pgmoneta_crypto::{Cipher, MasterKey, MasterKeyFile, AES_SUFFIX};
use pgmoneta_storage::wal::{WalArchive, WalOptions};
use pgmoneta_storage::StorageError;

use crate::prefetch::{self, Answer};

/// Exit status when the archive does not have the file.
pub const NOT_FOUND: i32 = 1;
/// Exit status for every other failure (fatal to PostgreSQL's recovery).
pub const FAILED: i32 = 126;

/// Segments fetched ahead by default (128 MB of 16 MB segments in the spool at most).
pub const DEFAULT_PREFETCH: usize = 8;

/// What `archive-get` was asked.
#[derive(Debug, Clone)]
pub struct ArchiveGet {
    /// `pgmoneta.conf`, for `base_dir`.
    pub config: PathBuf,
    /// The master key file (for encrypted archives); default `~/.pgmoneta/master.key`.
    pub master_key: Option<PathBuf>,
    /// The server's name.
    pub server: String,
    /// The file PostgreSQL asks for (`%f`).
    pub file: String,
    /// Where to write it (`%p`).
    pub destination: PathBuf,
    /// Segments to fetch ahead through the spool; 0 fetches in this process alone.
    pub prefetch: usize,
    /// Where the spool `pgmoneta-spool-<server>` is made; default beside the destination (in
    /// `pg_wal`, which base backups of the restored server leave out).
    pub spool: Option<PathBuf>,
    /// How long the prefetch process waits for the next request before it removes the spool
    /// and exits.
    pub idle: std::time::Duration,
}

/// The repository side of a fetch: the archive and how to decrypt it. Built once per process.
pub(crate) struct Source {
    archive: WalArchive,
    cipher: Option<Cipher>,
    /// `--master-key`; the default location is resolved when a key is needed.
    key_file: Option<PathBuf>,
}

impl Source {
    /// Reads `config` for the server's WAL archive.
    pub(crate) fn open(config_path: &Path, server: &str, master_key: Option<&Path>) -> anyhow::Result<Source> {
        let (config, _) = Config::load(config_path)?.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        if config.server(server).is_none() {
            bail!("no server named {server} in {}", config_path.display());
        }
        let base = config
            .main
            .base_dir
            .clone()
            .with_context(|| format!("base_dir is not set in {}", config_path.display()))?;
        let dir = Path::new(&base).join(server).join("wal");
        if !dir.is_dir() {
            bail!("the WAL archive {} does not exist", dir.display());
        }
        // Reading only: the segment size and storage options do not matter; each file's name
        // says how it is stored.
        let archive = WalArchive::open(&dir, WalSegmentSize::DEFAULT, WalOptions::new(Algorithm::None, 0))?;
        let cipher = Cipher::from_code(config.main.encryption.code() as u8);
        Ok(Source { archive, cipher, key_file: master_key.map(Path::to_path_buf) })
    }

    /// Where the archive stores `name`, and whether that form is encrypted.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when the archive does not have it.
    pub(crate) fn locate(&self, name: &str) -> pgmoneta_storage::Result<(String, bool)> {
        let stored = self.archive.locate(name)?;
        let encrypted = stored.ends_with(AES_SUFFIX);
        Ok((stored, encrypted))
    }

    /// Derives the master key (a fraction of a second: once per process).
    pub(crate) fn load_key(&self) -> anyhow::Result<MasterKey> {
        let file = match &self.key_file {
            Some(p) => MasterKeyFile::new(p),
            None => MasterKeyFile::default_location()?,
        };
        file.load().with_context(|| format!("loading the master key {}", file.path().display()))
    }

    /// Writes the plain form of `stored` to `dest` (unsynced; see
    /// [`pgmoneta_storage::fsio::AtomicFile::commit_volatile`]). Returns its size.
    pub(crate) fn fetch(&self, stored: &str, dest: &Path, key: Option<&MasterKey>) -> pgmoneta_storage::Result<u64> {
        self.archive.fetch_file_with(stored, dest, self.cipher, key, false)
    }
}

/// Fetches the file; returns the exit status.
pub fn run(args: &ArchiveGet) -> i32 {
    // Paths are taken as given from here on: the prefetch request changes the working
    // directory (PostgreSQL passes %p relative to the data directory).
    let mut args = args.clone();
    for path in [Some(&mut args.config), Some(&mut args.destination), args.master_key.as_mut(), args.spool.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Ok(absolute) = std::path::absolute(&*path) {
            *path = absolute;
        }
    }
    let args = &args;
    if args.prefetch > 0 {
        match prefetch::request(args) {
            Ok(Answer::Ready) => return 0,
            Ok(Answer::Missing(why)) => {
                eprintln!("pgmoneta-cli archive-get {}: {why}", args.file);
                return NOT_FOUND;
            }
            Ok(Answer::Failed(why)) => {
                eprintln!("pgmoneta-cli archive-get {}: {why}", args.file);
                return FAILED;
            }
            // The spool cannot be used: fetch here.
            Err(e) => {
                eprintln!("pgmoneta-cli archive-get {}: prefetch unavailable ({e:#}); fetching directly", args.file)
            }
        }
    }
    match fetch(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pgmoneta-cli archive-get {}: {e:#}", args.file);
            if is_not_found(&e) {
                NOT_FOUND
            } else {
                FAILED
            }
        }
    }
}

/// Whether `e` says the archive does not have the file.
pub(crate) fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<StorageError>().is_some_and(|s| matches!(s, StorageError::NotFound(_)))
}

fn fetch(args: &ArchiveGet) -> anyhow::Result<()> {
    let source = Source::open(&args.config, &args.server, args.master_key.as_deref())?;
    let (stored, encrypted) = source.locate(&args.file)?;
    let key = if encrypted { Some(source.load_key()?) } else { None };
    source.fetch(&stored, &args.destination, key.as_ref())?;
    Ok(())
}
