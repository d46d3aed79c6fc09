//! Encrypting and decrypting files, never leaving unauthenticated or partial data under the final
//! name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::aes::{Cipher, DecryptWriter, EncryptWriter, MasterKey};
use crate::error::{io_err, CryptoError, Result};

/// The suffix of encrypted files.
pub const AES_SUFFIX: &str = ".aes";

/// Writes `target` through `fill` via a temporary file in the same directory, then syncs it,
/// renames it into place and syncs the directory. On any failure the temporary file is removed
/// and `target` is untouched. The file gets mode 0600.
pub(crate) fn write_atomically(target: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io_err("creating", &tmp))?;
        let mut writer = BufWriter::with_capacity(256 << 10, file);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| CryptoError::Io {
            op: "writing",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, target).map_err(io_err("renaming into", target))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("syncing directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn copy<W: Write>(src: &Path, out: &mut W) -> Result<()> {
    let mut input = File::open(src).map_err(io_err("opening", src))?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", src)(e)),
        };
        out.write_all(&buf[..n]).map_err(|e| match e.kind() {
            io::ErrorKind::Other => CryptoError::Decrypt { what: src.display().to_string(), reason: e.to_string() },
            _ => io_err("writing the output of", src)(e),
        })?;
    }
}

/// Encrypts file `src` into `dst` (written atomically), in constant memory.
///
/// # Errors
/// I/O failures with the path involved; `dst` is then not created.
pub fn encrypt_file(master: &MasterKey, cipher: Cipher, src: &Path, dst: &Path) -> Result<()> {
    write_atomically(dst, |out| {
        let mut enc = EncryptWriter::new(master, cipher, out)?;
        copy(src, &mut enc)?;
        enc.finish()?.flush().map_err(io_err("writing", dst))
    })
}

/// Decrypts file `src` into `dst`, in constant memory. The plaintext is written to a temporary
/// file and renamed to `dst` only after the tag verified: a wrong key, a flipped bit or a
/// truncated file is an error and nothing is left behind.
///
/// # Errors
/// [`CryptoError::Decrypt`] naming `src`, or I/O failures.
pub fn decrypt_file(master: &MasterKey, cipher: Cipher, src: &Path, dst: &Path) -> Result<()> {
    let what = src.display().to_string();
    write_atomically(dst, |out| {
        let mut dec = DecryptWriter::new(master, cipher, out, &what);
        copy(src, &mut dec)?;
        dec.finish()?.flush().map_err(io_err("writing", dst))
    })
}

/// Encrypts `path` into `path.aes` and removes `path` once the encrypted file is durable
/// (the CLI's `encrypt`). Returns the new path.
///
/// # Errors
/// As [`encrypt_file`]; the source is kept.
pub fn encrypt_in_place(master: &MasterKey, cipher: Cipher, path: &Path) -> Result<PathBuf> {
    let target = PathBuf::from(format!("{}{AES_SUFFIX}", path.display()));
    encrypt_file(master, cipher, path, &target)?;
    fs::remove_file(path).map_err(io_err("removing", path))?;
    Ok(target)
}

/// Decrypts `path` (named `*.aes`) into the name without the suffix and removes `path` once the
/// plaintext is verified and durable (the CLI's `decrypt`). Returns the new path.
///
/// # Errors
/// A name without `.aes`, or as [`decrypt_file`]; the source is kept.
pub fn decrypt_in_place(master: &MasterKey, cipher: Cipher, path: &Path) -> Result<PathBuf> {
    let name = path.to_string_lossy();
    let Some(stem) = name.strip_suffix(AES_SUFFIX) else {
        return Err(CryptoError::Invalid(format!("{} does not end in {AES_SUFFIX}", path.display())));
    };
    let target = PathBuf::from(stem);
    decrypt_file(master, cipher, path, &target)?;
    fs::remove_file(path).map_err(io_err("removing", path))?;
    Ok(target)
}
