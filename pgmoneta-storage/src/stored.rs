//! How a file is stored in the repository: its name's suffixes (compression, then `.aes`),
//! the layers its bytes go through on the way in (compression, encryption, the SHA-512 of the
//! stored bytes) and on the way out (authenticated decryption, decompression), and where a
//! backup keeps the file a manifest path names.

use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;

use pgmoneta_compress::{Algorithm, CopyError, Decoder, Encoder, EncoderOptions};
use pgmoneta_crypto::{Cipher, DecryptReader, EncryptWriter, HashAlgorithm, HashingWriter, MasterKey, AES_SUFFIX};

use crate::error::{Result, StorageError};
use crate::info::BackupInfo;
use crate::layout;
use crate::store::{join, Store, StoreWriter};

/// Plain bytes on their way to a file: their count, CRC32C (for a rewritten manifest) and,
/// when asked, their checksum for `backup.manifest` and their SHA-512 (for `backup.sha512`,
/// when the file is stored as is and that checksum is another algorithm's).
pub(crate) struct CrcWriter<W> {
    pub(crate) inner: W,
    pub(crate) crc: u32,
    pub(crate) bytes: u64,
    pub(crate) manifest: Option<crate::manifest::ManifestChecksum>,
    pub(crate) sha: Option<pgmoneta_crypto::Hasher>,
}

impl<W> CrcWriter<W> {
    pub(crate) fn new(inner: W, manifest: Option<crate::manifest::ManifestAlgorithm>, sha512: bool) -> CrcWriter<W> {
        let sha = sha512.then(|| pgmoneta_crypto::Hasher::new(HashAlgorithm::Sha512));
        CrcWriter { inner, crc: 0, bytes: 0, manifest: manifest.map(|a| a.checksum()), sha }
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = pgmoneta_crypto::crc32c_append(self.crc, &buf[..n]);
        if let Some(c) = &mut self.manifest {
            c.update(&buf[..n]);
        }
        if let Some(h) = &mut self.sha {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The plain name of a stored file and how it is stored: `(name, compression, encrypted)`.
pub fn stored_form(name: &str) -> (&str, Algorithm, bool) {
    let (rest, encrypted) = match name.strip_suffix(AES_SUFFIX) {
        Some(r) => (r, true),
        None => (name, false),
    };
    for a in Algorithm::COMPRESSING {
        if let Some(plain) = rest.strip_suffix(a.suffix()) {
            return (plain, a, encrypted);
        }
    }
    (rest, Algorithm::None, encrypted)
}

/// Like [`stored_form`], for a file of a backup whose files are stored with `algorithm` and,
/// when `encrypted`, encryption: only that whole suffix is taken off, so a file of the data
/// directory that is itself named `*.gz` (say) keeps its name and its bytes.
pub fn stored_form_for(name: &str, algorithm: Algorithm, encrypted: bool) -> (&str, Algorithm, bool) {
    let suffix = format!("{}{}", algorithm.suffix(), if encrypted { AES_SUFFIX } else { "" });
    match name.strip_suffix(suffix.as_str()) {
        Some(plain) if !suffix.is_empty() && !plain.is_empty() => (plain, algorithm, encrypted),
        _ => (name, Algorithm::None, false),
    }
}

/// How the files of `info` are stored: its compression algorithm and whether they are
/// encrypted; `None` for a compression code this program does not know (names decide then).
pub(crate) fn storage_of(info: &BackupInfo) -> Option<(Algorithm, bool)> {
    let compression = pgmoneta_compress::Compression::from_code(i32::from(info.compression)).ok()?;
    Some((compression.algorithm, info.encryption != 0))
}

/// The plain name and stored form of `name` in a backup stored as `storage` (see
/// [`storage_of`]).
pub(crate) fn form_in(name: &str, storage: Option<(Algorithm, bool)>) -> (&str, Algorithm, bool) {
    match storage {
        Some((algorithm, encrypted)) => stored_form_for(name, algorithm, encrypted),
        None => stored_form(name),
    }
}

/// Decrypts (when the name ends in `.aes`) and decompresses (by the name's suffix) the stored
/// bytes `raw` of `stored` into `out`, reading `raw` to its end. Returns the bytes written.
/// Nothing written is authenticated before this returns `Ok`: write into a temporary file.
///
/// # Errors
/// [`StorageError::Corrupt`] naming `stored` for damaged or truncated data and for a wrong key
/// (said as such: the tag is checked even when decompression fails first); a write failure
/// names `target`.
pub fn decode_stored(
    raw: &mut dyn Read,
    stored: &str,
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
    out: &mut dyn Write,
    target: &Path,
) -> Result<u64> {
    let name = stored.rsplit('/').next().unwrap_or(stored);
    let (_, algorithm, encrypted) = stored_form(name);
    decode_stored_as(raw, stored, (algorithm, encrypted), cipher, key, out, target)
}

/// [`decode_stored`] with the stored form given (compression, encrypted) rather than read
/// from the name.
///
/// # Errors
/// As [`decode_stored`].
pub fn decode_stored_as(
    raw: &mut dyn Read,
    stored: &str,
    (algorithm, encrypted): (Algorithm, bool),
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
    out: &mut dyn Write,
    target: &Path,
) -> Result<u64> {
    let result = if encrypted {
        let key =
            key.ok_or_else(|| StorageError::Invalid(format!("{stored} is encrypted and no master key was given")))?;
        let mut dec = DecryptReader::new(key, cipher.unwrap_or(Cipher::Aes256Gcm), raw, stored);
        let copied = Decoder::new(algorithm, BufReader::with_capacity(256 << 10, &mut dec))
            .map_err(CopyError::Decode)
            .and_then(|mut d| d.copy_to(out));
        match copied {
            // A decoding error on unauthenticated data: the tag says whether the key is wrong.
            Err(CopyError::Decode(e)) => Err(CopyError::Decode(dec.verify_rest().err().unwrap_or(e))),
            Err(e) => Err(e),
            Ok(n) => dec.verify_rest().map(|()| n).map_err(CopyError::Decode),
        }
    } else {
        Decoder::new(algorithm, BufReader::with_capacity(256 << 10, &mut *raw))
            .map_err(CopyError::Decode)
            .and_then(|mut d| d.copy_to(out))
            .and_then(|n| std::io::copy(raw, &mut std::io::sink()).map(|_| n).map_err(CopyError::Decode))
    };
    match result {
        Ok(n) => Ok(n),
        Err(CopyError::Decode(e)) => Err(StorageError::corrupt(stored, e.to_string())),
        Err(CopyError::Write(e)) => Err(StorageError::io("writing", target)(e)),
    }
}

/// Where a backup stores the file a manifest path names, suffixes included.
///
/// # Errors
/// [`StorageError::NotFound`] when the backup does not hold it.
pub(crate) fn stored_path(store: &dyn Store, server: &str, info: &BackupInfo, path: &str) -> Result<String> {
    let dir = layout::backup_dir(server, &info.label);
    let stored_parent = match path.strip_prefix("pg_tblspc/") {
        Some(rest) => {
            let (oid, inner) = rest.split_once('/').unwrap_or((rest, ""));
            let t = info
                .tablespaces
                .iter()
                .find(|t| t.oid == oid)
                .ok_or_else(|| StorageError::NotFound(format!("backup {} has no tablespace {oid}", info.label)))?;
            join(&[&dir, &t.dir, inner])
        }
        None => join(&[&dir, "data", path]),
    };
    let (parent, name) = stored_parent.rsplit_once('/').unwrap_or(("", &stored_parent));
    store
        .list(parent)?
        .into_iter()
        .find(|e| form_in(&e.name, storage_of(info)).0 == name)
        .map(|e| join(&[parent, &e.name]))
        .ok_or_else(|| StorageError::NotFound(format!("backup {} holds no {path}", info.label)))
}

/// The layers a stored file's bytes go through after hashing.
pub(crate) enum Sealed {
    /// Stored as received: the stored bytes' SHA-512 is the plain one, computed anyway.
    Unchanged(Box<dyn StoreWriter>, u64),
    /// Compressed: the stored bytes are hashed on their way to the file.
    Plain(HashingWriter<Box<dyn StoreWriter>>),
    /// Encrypted (and maybe compressed).
    Aes(EncryptWriter<HashingWriter<Box<dyn StoreWriter>>>),
}

impl Write for Sealed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Unchanged(w, n) => {
                let written = w.write(buf)?;
                *n += written as u64;
                Ok(written)
            }
            Sealed::Plain(w) => w.write(buf),
            Sealed::Aes(w) => w.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sealed::Unchanged(w, n) => {
                let written = w.write_vectored(bufs)?;
                *n += written as u64;
                Ok(written)
            }
            Sealed::Plain(w) => w.write_vectored(bufs),
            Sealed::Aes(w) => w.write_vectored(bufs),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sealed::Unchanged(w, n) => {
                w.write_all(buf)?;
                *n += buf.len() as u64;
                Ok(())
            }
            Sealed::Plain(w) => w.write_all(buf),
            Sealed::Aes(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Unchanged(w, _) => w.flush(),
            Sealed::Plain(w) => w.flush(),
            Sealed::Aes(w) => w.flush(),
        }
    }
}

// One per file being written, at most one per worker: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Output {
    Direct(Sealed),
    Compressed(Encoder<Sealed>),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Direct(w) => w.write(buf),
            Output::Compressed(w) => w.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Output::Direct(w) => w.write_vectored(bufs),
            Output::Compressed(w) => w.write_vectored(bufs),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Direct(w) => w.write_all(buf),
            Output::Compressed(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Direct(w) => w.flush(),
            Output::Compressed(w) => w.flush(),
        }
    }
}

/// The writer of one stored file: compression with `algorithm`, then encryption, then the
/// SHA-512 of the stored bytes, on their way into `w`.
///
/// # Errors
/// When the codec or cipher cannot be set up.
pub(crate) fn seal(
    w: Box<dyn StoreWriter>,
    algorithm: Algorithm,
    level: i32,
    encryption: Option<&(Cipher, Arc<MasterKey>)>,
    stored: &str,
) -> Result<Output> {
    let sealed = match (encryption, algorithm) {
        (None, Algorithm::None) => Sealed::Unchanged(w, 0),
        (Some((cipher, key)), _) => {
            Sealed::Aes(EncryptWriter::new(key, *cipher, HashingWriter::new(w, HashAlgorithm::Sha512))?)
        }
        (None, _) => Sealed::Plain(HashingWriter::new(w, HashAlgorithm::Sha512)),
    };
    Ok(if algorithm == Algorithm::None {
        Output::Direct(sealed)
    } else {
        let opts = EncoderOptions { level, workers: 0 };
        Output::Compressed(
            Encoder::new(algorithm, opts, sealed).map_err(StorageError::io("setting up compression for", stored))?,
        )
    })
}

/// Completes a stored file's layers: returns the writer to commit, the stored size and the
/// stored bytes' SHA-512 (`plain_sha512` when they are the plain bytes).
///
/// # Errors
/// When compression or encryption cannot complete.
pub(crate) fn unseal(out: Output, plain_sha512: &str, stored: &str) -> Result<(Box<dyn StoreWriter>, u64, String)> {
    let (w, n, sha) = unseal_pending(out, stored)?;
    Ok((w, n, sha.unwrap_or_else(|| plain_sha512.to_owned())))
}

/// [`unseal`] before the plain bytes' SHA-512 is known: `None` for the stored bytes' SHA-512
/// when they are the plain bytes.
pub(crate) fn unseal_pending(out: Output, stored: &str) -> Result<(Box<dyn StoreWriter>, u64, Option<String>)> {
    let sealed = match out {
        Output::Direct(s) => s,
        Output::Compressed(e) => e.finish().map_err(StorageError::io("compressing", stored))?,
    };
    Ok(match sealed {
        Sealed::Unchanged(w, n) => (w, n, None),
        Sealed::Plain(h) => {
            let n = h.bytes();
            let (w, sha) = h.finish_hex();
            (w, n, Some(sha))
        }
        Sealed::Aes(e) => {
            let h = e.finish()?;
            let n = h.bytes();
            let (w, sha) = h.finish_hex();
            (w, n, Some(sha))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names() {
        assert_eq!(stored_form("16384.zstd.aes"), ("16384", Algorithm::Zstd, true));
        assert_eq!(stored_form("PG_VERSION.gz"), ("PG_VERSION", Algorithm::Gzip, false));
        assert_eq!(stored_form("backup_label"), ("backup_label", Algorithm::None, false));
        assert_eq!(stored_form("x.bz2"), ("x", Algorithm::Bzip2, false));
    }
}
