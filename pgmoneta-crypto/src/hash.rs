//! Hashes computed while data streams through, and CRC32C.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::{io_err, Result};

/// A hash algorithm used for backup checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256 (`backup.sha256`, S3 `x-amz-content-sha256`).
    Sha256,
    /// SHA-512 (manifests, `backup.sha512`, verification).
    Sha512,
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgorithm::Sha256 => "SHA256",
            HashAlgorithm::Sha512 => "SHA512",
        })
    }
}

/// An incremental hasher.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(openssl::sha::Sha256),
    /// SHA-512.
    Sha512(openssl::sha::Sha512),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hasher::Sha256(_) => "Hasher(SHA256)",
            Hasher::Sha512(_) => "Hasher(SHA512)",
        })
    }
}

impl Hasher {
    /// A new hasher.
    pub fn new(algorithm: HashAlgorithm) -> Hasher {
        match algorithm {
            HashAlgorithm::Sha256 => Hasher::Sha256(openssl::sha::Sha256::new()),
            HashAlgorithm::Sha512 => Hasher::Sha512(openssl::sha::Sha512::new()),
        }
    }

    /// Adds data.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest as lower-case hex.
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finish()),
            Hasher::Sha512(h) => hex(&h.finish()),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The hex digest of `data`.
pub fn digest_hex(algorithm: HashAlgorithm, data: &[u8]) -> String {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    h.finish_hex()
}

/// The hex digest of a file's content.
///
/// # Errors
/// I/O, naming the file.
pub fn file_digest_hex(algorithm: HashAlgorithm, path: &Path) -> Result<String> {
    let mut reader = HashingReader::new(std::fs::File::open(path).map_err(io_err("opening", path))?, algorithm);
    io::copy(&mut reader, &mut io::sink()).map_err(io_err("reading", path))?;
    Ok(reader.finish_hex().1)
}

/// Passes writes through to `W`, hashing them.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes what is written to `inner`.
    pub fn new(inner: W, algorithm: HashAlgorithm) -> HashingWriter<W> {
        HashingWriter { inner, hasher: Hasher::new(algorithm), bytes: 0 }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer and the hex digest of everything written.
    pub fn finish_hex(self) -> (W, String) {
        (self.inner, self.hasher.finish_hex())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes reads through from `R`, hashing them.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R, algorithm: HashAlgorithm) -> HashingReader<R> {
        HashingReader { inner, hasher: Hasher::new(algorithm), bytes: 0 }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner reader and the hex digest of everything read.
    pub fn finish_hex(self) -> (R, String) {
        (self.inner, self.hasher.finish_hex())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// CRC32C (Castagnoli) of `data`, as WAL records and pages carry it, computed with the CPU's CRC
/// instructions where available.
pub fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

/// Continues a CRC32C over more data.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    ::crc32c::crc32c_append(crc, data)
}
