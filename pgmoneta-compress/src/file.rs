//! In-place compression and decompression of files, as `pgmoneta-cli compress`/`decompress` do.
//!
//! The new file is written under a temporary name in the same directory, flushed to disk,
//! renamed into place, and the directory flushed; only then is the source removed. A failure at
//! any step leaves the source untouched and no partial file under the final name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::algorithm::Algorithm;
use crate::error::{CompressError, Result};
use crate::stream::{CopyError, Decoder, Encoder, EncoderOptions};

fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CompressError {
    let path = path.to_owned();
    move |source| CompressError::Io { op, path, source }
}

/// Flushes a directory's entries to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `target` through `fill`, via a temporary file that is synced and renamed; the temporary
/// file is removed on failure. The new file gets mode 0600.
pub(crate) fn write_atomically(target: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().ok_or_else(|| CompressError::Io {
        op: "writing",
        path: target.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io("creating", &tmp))?;
        let mut writer = BufWriter::with_capacity(256 << 10, file);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| CompressError::Io {
            op: "writing",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        fs::rename(&tmp, target).map_err(io("renaming into", target))?;
        sync_dir(dir).map_err(io("syncing directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Compresses `source` into `source` + the algorithm's suffix, then removes `source`. Returns the
/// new file's path.
///
/// # Errors
/// I/O failures, with the path involved; the source is kept.
pub fn compress_file(source: &Path, algorithm: Algorithm, options: EncoderOptions) -> Result<PathBuf> {
    if algorithm == Algorithm::None {
        return Ok(source.to_owned());
    }
    let target = PathBuf::from(format!("{}{}", source.display(), algorithm.suffix()));
    let mut input = File::open(source).map_err(io("opening", source))?;
    write_atomically(&target, |out| {
        let mut enc = Encoder::new(algorithm, options, out).map_err(io("setting up the encoder for", source))?;
        io::copy(&mut input, &mut enc).map_err(io("compressing", source))?;
        enc.finish().map_err(io("compressing", source))?.flush().map_err(io("writing", &target))
    })?;
    fs::remove_file(source).map_err(io("removing", source))?;
    Ok(target)
}

/// Decompresses `source` (named `*.gz`, `*.zstd`, `*.lz4` or `*.bz2`) into the same name without
/// the suffix, then removes `source`. The contents must match the suffix; upstream's LZ4 block
/// files are recognised and read. Returns the new file's path.
///
/// # Errors
/// [`CompressError::UnknownSuffix`], [`CompressError::SuffixMismatch`] when the first bytes are
/// another format's, [`CompressError::Corrupt`] for damaged data (the partial output is removed and
/// the source kept), I/O failures.
pub fn decompress_file(source: &Path) -> Result<PathBuf> {
    let name = source.to_string_lossy();
    let algorithm =
        Algorithm::from_suffix(&name).ok_or_else(|| CompressError::UnknownSuffix { path: source.to_owned() })?;
    let suffix_len = name.len() - name.rfind('.').unwrap_or(name.len());
    let target = PathBuf::from(&name[..name.len() - suffix_len]);
    let mut reader = BufReader::with_capacity(256 << 10, File::open(source).map_err(io("opening", source))?);
    check_magic(source, algorithm, &mut reader)?;
    write_atomically(&target, |out| {
        let mut dec =
            Decoder::new(algorithm, &mut reader).map_err(|e| CompressError::from_read(e, algorithm, Some(source)))?;
        copy_decoded(&mut dec, out, algorithm, source)
    })?;
    fs::remove_file(source).map_err(io("removing", source))?;
    Ok(target)
}

/// Copies a decoder's output, telling decoding errors (corrupt input) from write errors.
pub(crate) fn copy_decoded<R: io::BufRead, W: Write>(
    dec: &mut Decoder<R>,
    out: &mut W,
    algorithm: Algorithm,
    source: &Path,
) -> Result<()> {
    match dec.copy_to(out) {
        Ok(_) => Ok(()),
        Err(CopyError::Decode(e)) => Err(CompressError::from_read(e, algorithm, Some(source))),
        Err(CopyError::Write(e)) => Err(io("writing the output of", source)(e)),
    }
}

/// Checks that the first bytes of a file are the format its suffix names.
pub fn check_magic<R: io::BufRead>(path: &Path, named: Algorithm, reader: &mut R) -> Result<()> {
    let head = reader.fill_buf().map_err(io("reading", path))?;
    let found = Algorithm::from_magic(head);
    let ok = match named {
        // Upstream's LZ4 block files have no magic: anything but another format's magic.
        Algorithm::Lz4 => matches!(found, None | Some(Algorithm::Lz4)),
        other => found == Some(other),
    };
    if ok {
        return Ok(());
    }
    let found = match found {
        Some(a) => format!("are {a} data"),
        None if head.is_empty() => "are empty".to_owned(),
        None => format!("do not start with the {named} magic bytes"),
    };
    Err(CompressError::SuffixMismatch { path: path.to_owned(), named, found })
}
