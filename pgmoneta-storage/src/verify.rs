//! Verification of a stored backup: every file `backup.manifest` lists is decoded and its
//! SHA-512 compared, every other file `backup.sha512` lists is compared as stored, and an
//! incremental backup's chain is checked to be whole.

use std::collections::BTreeMap;
use std::path::Path;

use parking_lot::Mutex;
use pgmoneta_compress::Algorithm;
use pgmoneta_crypto::{Cipher, HashAlgorithm, HashingReader, MasterKey};

use crate::catalog::{load_manifest, load_sums, stored_files, Catalog};
use crate::error::{Result, StorageError};
use crate::layout;
use crate::manifest::ManifestAlgorithm;
use crate::store::{join, Store};
use crate::stored::{decode_stored_as, form_in, storage_of};

/// The result of verifying one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileVerification {
    /// The path, as in the manifest.
    pub path: String,
    /// The SHA-512 `backup.manifest` records.
    pub expected: String,
    /// The SHA-512 of the restored bytes (empty when the file could not be read).
    pub computed: String,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Verifies a backup without writing anything, on `workers` threads:
///
/// - every file `backup.manifest` lists is decrypted and decompressed and its SHA-512 compared
///   (a file that does not decrypt or decompress is reported as such);
/// - every file `backup.sha512` lists is compared as stored (compressed, encrypted), which
///   covers `backup.info`, `backup.manifest` and the backup's WAL.
///
/// Returns the failed files and all files; paths are those of the manifest for data files and
/// relative to the backup directory otherwise.
///
/// # Errors
/// No such backup, or its `backup.manifest` missing or unreadable. Damaged files are reported
/// in the result, not as errors.
pub fn verify(
    store: &dyn Store,
    server: &str,
    label: &str,
    master_key: Option<&MasterKey>,
    workers: usize,
) -> Result<(Vec<FileVerification>, Vec<FileVerification>)> {
    verify_in(store, &Catalog::load(store, server)?, label, master_key, workers)
}

/// [`verify`] with the server's catalog already read ([`Catalog::load`]), for a caller that
/// verifies many of them.
///
/// # Errors
/// As [`verify`].
pub fn verify_in(
    store: &dyn Store,
    catalog: &Catalog,
    label: &str,
    master_key: Option<&MasterKey>,
    workers: usize,
) -> Result<(Vec<FileVerification>, Vec<FileVerification>)> {
    let server = catalog.server();
    let info = catalog.get(label).ok_or_else(|| StorageError::NotFound(format!("no backup {label} of {server}")))?;
    let dir = layout::backup_dir(server, label);
    let manifest = load_manifest(store, server, label)?;
    let sums = load_sums(store, server, label)?.unwrap_or_default();
    // Where each manifest path is stored.
    let stored: BTreeMap<String, String> =
        stored_files(store, server, info)?.into_iter().map(|(p, f)| (p, f.path)).collect();
    let dir_prefix = format!("{dir}/");
    let relative = |st: &str| st.strip_prefix(&dir_prefix).unwrap_or(st).to_owned();
    // Stored files checked through the manifest pass; the others are hashed as stored.
    let covered: std::collections::BTreeSet<String> =
        manifest.files.keys().filter_map(|p| stored.get(p)).map(|st| relative(st)).collect();
    let cipher = Cipher::from_code(info.encryption);
    let storage = storage_of(info);
    let all = Mutex::new(Vec::new());
    enum Check {
        Plain(String, String),
        Stored(String, String),
    }
    let mut checks: Vec<Check> = manifest.files.iter().map(|(p, h)| Check::Plain(p.clone(), h.clone())).collect();
    for (p, h) in &sums.files {
        if !covered.contains(p) {
            checks.push(Check::Stored(p.clone(), h.clone()));
        }
    }
    let result = |path: String, expected: String, outcome: Result<String>| match outcome {
        Ok(h) if h == expected => FileVerification { path, expected, computed: h, error: None },
        Ok(h) => FileVerification { path, expected, computed: h, error: Some("checksum mismatch".into()) },
        Err(e) => FileVerification { path, expected, computed: String::new(), error: Some(e.to_string()) },
    };
    // Every file is checked: a damaged one is reported, not a reason to stop.
    crate::pool::for_each(checks, workers, None, |check: Check| {
        let v = match check {
            Check::Plain(path, expected) => match stored.get(&path) {
                None => FileVerification { path, expected, computed: String::new(), error: Some("missing".into()) },
                Some(st) => match hash_stored(store, st, storage, cipher, master_key, manifest.algorithm) {
                    Ok((plain, raw)) => {
                        let stored_expected = sums.files.get(&relative(st));
                        let mut v = result(path, expected, Ok(plain));
                        if v.error.is_none() && stored_expected.is_some_and(|e| *e != raw) {
                            v.error = Some(format!("{} does not match backup.sha512", relative(st)));
                        }
                        v
                    }
                    Err(e) => result(path, expected, Err(e)),
                },
            },
            Check::Stored(path, expected) => {
                let outcome = hash_raw(store, &join(&[&dir, &path]));
                result(path, expected, outcome)
            }
        };
        all.lock().push(v);
        Ok(())
    })?;
    let mut all = all.into_inner();
    // An incremental backup is only restorable with its whole chain.
    if let Err(e) = catalog.chain(info) {
        all.push(FileVerification {
            path: crate::info::BACKUP_INFO.to_owned(),
            expected: String::new(),
            computed: String::new(),
            error: Some(e.to_string()),
        });
    }
    all.sort_by(|a, b| a.path.cmp(&b.path));
    let failed = all.iter().filter(|v| v.error.is_some()).cloned().collect();
    Ok((failed, all))
}

/// The SHA-512 of a stored file's bytes as they are.
fn hash_raw(store: &dyn Store, stored: &str) -> Result<String> {
    let mut raw = HashingReader::new(store.open(stored)?, HashAlgorithm::Sha512);
    std::io::copy(&mut raw, &mut std::io::sink()).map_err(StorageError::io("reading", stored))?;
    Ok(raw.finish_hex().1)
}

/// The checksum of a stored file's plain contents in the backup's algorithm and the SHA-512
/// of its stored bytes, in one streaming pass.
fn hash_stored(
    store: &dyn Store,
    stored: &str,
    storage: Option<(Algorithm, bool)>,
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
    plain: ManifestAlgorithm,
) -> Result<(String, String)> {
    let mut raw = HashingReader::new(store.open(stored)?, HashAlgorithm::Sha512);
    let mut sink = plain.checksum();
    let name = stored.rsplit('/').next().unwrap_or(stored);
    let (_, algorithm, encrypted) = form_in(name, storage);
    decode_stored_as(&mut raw, stored, (algorithm, encrypted), cipher, key, &mut sink, Path::new(stored))?;
    Ok((sink.finish_hex(), raw.finish_hex().1))
}
