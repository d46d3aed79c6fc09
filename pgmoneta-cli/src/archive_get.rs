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
use pgmoneta_crypto::{Cipher, MasterKeyFile};
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
    let needs_key = std::fs::read_dir(&dir)?.filter_map(|e| e.ok()).any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with(&args.file) && name.ends_with(".aes")
    });
    let key = if needs_key {
        let file = match &args.master_key {
            Some(p) => MasterKeyFile::new(p),
            None => MasterKeyFile::default_location()?,
        };
        Some(file.load().with_context(|| format!("loading the master key {}", file.path().display()))?)
    } else {
        None
    };
    // Reading only: the cipher is the configured one; compression comes from each file's name.
    let mut options = WalOptions::new(Algorithm::None, 0);
    if let (Some(k), Some(cipher)) = (&key, Cipher::from_code(config.main.encryption.code() as u8)) {
        options.encryption = Some((cipher, std::sync::Arc::new(k.clone())));
    }
    let archive = WalArchive::open(&dir, WalSegmentSize::DEFAULT, options)?;
    archive.fetch(&args.file, &args.destination, key.as_ref())?;
    Ok(())
}
