//! `pgmoneta-cli archive-get`: PostgreSQL's `restore_command`, fetching a WAL segment or
//! timeline history file from the repository, decrypted and decompressed.
//!
//! Exit status, as PostgreSQL reads it: 0 when the file was written, 1 when the archive does not
//! have it (recovery then ends normally there), 126 for anything else (a damaged file, a wrong
//! master key, an unreadable configuration): PostgreSQL treats a status above 125 as fatal and
//! stops recovery instead of ending it early at a segment it could not get.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pgmoneta_compress::Algorithm;
use pgmoneta_core::config::Config;
use pgmoneta_core::WalSegmentSize;
use pgmoneta_crypto::{Cipher, MasterKeyFile, AES_SUFFIX};
use pgmoneta_storage::wal::{WalArchive, WalOptions};
use pgmoneta_storage::StorageError;

/// Exit status when the archive does not have the file.
pub const NOT_FOUND: i32 = 1;
/// Exit status for every other failure (fatal to PostgreSQL's recovery).
pub const FAILED: i32 = 126;

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
}

/// Fetches the file; returns the exit status.
pub fn run(args: &ArchiveGet) -> i32 {
    match fetch(args) {
        Ok(()) => 0,
        Err(e) => {
            let not_found = e.downcast_ref::<StorageError>().is_some_and(|s| matches!(s, StorageError::NotFound(_)));
            eprintln!("pgmoneta-cli archive-get {}: {e:#}", args.file);
            if not_found {
                NOT_FOUND
            } else {
                FAILED
            }
        }
    }
}

fn fetch(args: &ArchiveGet) -> anyhow::Result<()> {
    let (config, _) = Config::load(&args.config)?.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    if config.server(&args.server).is_none() {
        bail!("no server named {} in {}", args.server, args.config.display());
    }
    let base =
        config.main.base_dir.clone().with_context(|| format!("base_dir is not set in {}", args.config.display()))?;
    let dir = Path::new(&base).join(&args.server).join("wal");
    if !dir.is_dir() {
        bail!("the WAL archive {} does not exist", dir.display());
    }
    // Reading only: the segment size and storage options do not matter; each file's name
    // says how it is stored.
    let archive = WalArchive::open(&dir, WalSegmentSize::DEFAULT, WalOptions::new(Algorithm::None, 0))?;
    let stored = archive.locate(&args.file)?;
    let key = if stored.ends_with(AES_SUFFIX) {
        let file = match &args.master_key {
            Some(p) => MasterKeyFile::new(p),
            None => MasterKeyFile::default_location()?,
        };
        Some(file.load().with_context(|| format!("loading the master key {}", file.path().display()))?)
    } else {
        None
    };
    let cipher = Cipher::from_code(config.main.encryption.code() as u8);
    archive.fetch_file(&stored, &args.destination, cipher, key.as_ref())?;
    Ok(())
}
