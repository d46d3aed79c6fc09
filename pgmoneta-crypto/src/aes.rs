//! AES-GCM in pgmoneta's format.
//!
//! A master key (64 bytes, derived once from the master key file, see [`crate::MasterKeyFile`])
//! never encrypts anything itself. Each object (file, buffer, vault entry, management payload)
//! gets a fresh random 16-byte salt; PBKDF2-HMAC-SHA256 of the master key with that salt and one
//! iteration gives 80 bytes, whose first 16, 24 or 32 are the AES key. A random 12-byte IV, and
//! the result is laid out as
//!
//! ```text
//! salt (16) || iv (12) || ciphertext (same length as the plaintext) || GCM tag (16)
//! ```
//!
//! so an empty plaintext encrypts to exactly 44 bytes.

use std::fmt;
use std::io::{self, Read, Write};

use openssl::hash::MessageDigest;
use openssl::symm::{Crypter, Mode};

use crate::error::{CryptoError, Result};

/// Salt bytes at the start of every encrypted object.
pub const SALT_LEN: usize = 16;
/// IV bytes after the salt.
pub const IV_LEN: usize = 12;
/// GCM tag bytes at the end.
pub const TAG_LEN: usize = 16;
/// Salt and IV.
pub const HEADER_LEN: usize = SALT_LEN + IV_LEN;
/// The size of an encrypted empty plaintext: the smallest valid object.
pub const MIN_LEN: usize = HEADER_LEN + TAG_LEN;
/// PBKDF2 iterations that turn the master key text into the master key.
pub const MASTER_KEY_ITERATIONS: usize = 600_000;

/// An AES-GCM key size, with upstream's codes (the `encryption` setting, management frames,
/// `backup.info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cipher {
    /// AES-256-GCM, code 1.
    Aes256Gcm,
    /// AES-192-GCM, code 2.
    Aes192Gcm,
    /// AES-128-GCM, code 3.
    Aes128Gcm,
}

impl Cipher {
    /// Upstream's code: 1, 2 or 3.
    pub const fn code(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 1,
            Cipher::Aes192Gcm => 2,
            Cipher::Aes128Gcm => 3,
        }
    }

    /// The cipher for a code (0, no encryption, is `None`).
    pub const fn from_code(code: u8) -> Option<Cipher> {
        match code {
            1 => Some(Cipher::Aes256Gcm),
            2 => Some(Cipher::Aes192Gcm),
            3 => Some(Cipher::Aes128Gcm),
            _ => None,
        }
    }

    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Cipher::Aes256Gcm => 32,
            Cipher::Aes192Gcm => 24,
            Cipher::Aes128Gcm => 16,
        }
    }

    fn openssl(self) -> openssl::symm::Cipher {
        match self {
            Cipher::Aes256Gcm => openssl::symm::Cipher::aes_256_gcm(),
            Cipher::Aes192Gcm => openssl::symm::Cipher::aes_192_gcm(),
            Cipher::Aes128Gcm => openssl::symm::Cipher::aes_128_gcm(),
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::Aes192Gcm => "aes-192-gcm",
            Cipher::Aes128Gcm => "aes-128-gcm",
        })
    }
}

/// The 64-byte master key. Its bytes are overwritten when it is dropped, and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 64]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(********)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keep the compiler from dropping the overwrite as a dead store.
        std::hint::black_box(&self.0);
    }
}

impl MasterKey {
    /// Derives the master key from the key text and salt of a master key file:
    /// PBKDF2-HMAC-SHA256, 600,000 iterations (a fraction of a second; do it once).
    ///
    /// # Errors
    /// Only if OpenSSL fails.
    pub fn derive(key_text: &[u8], salt: &[u8]) -> Result<MasterKey> {
        let mut key = [0u8; 64];
        openssl::pkcs5::pbkdf2_hmac(key_text, salt, MASTER_KEY_ITERATIONS, MessageDigest::sha256(), &mut key)?;
        Ok(MasterKey(key))
    }

    /// A master key from its 64 bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> MasterKey {
        MasterKey(bytes)
    }

    /// A short name for this key that says nothing of it: the hex of the first 16 bytes of
    /// HMAC-SHA256 of a fixed text under the key. Two holders compare fingerprints to learn
    /// whether they hold the same key.
    ///
    /// # Errors
    /// Only if OpenSSL fails.
    pub fn fingerprint(&self) -> Result<String> {
        let pkey = openssl::pkey::PKey::hmac(&self.0)?;
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &pkey)?;
        signer.update(b"pgmoneta master key fingerprint")?;
        let mac = signer.sign_to_vec()?;
        Ok(mac[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The AES key for an object with `salt`.
    fn object_key(&self, salt: &[u8], cipher: Cipher) -> Result<Vec<u8>> {
        let mut derived = [0u8; 80];
        openssl::pkcs5::pbkdf2_hmac(&self.0, salt, 1, MessageDigest::sha256(), &mut derived)?;
        let key = derived[..cipher.key_len()].to_vec();
        derived.fill(0);
        Ok(key)
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(b)
}

fn auth_failed(what: &str) -> CryptoError {
    CryptoError::Decrypt {
        what: what.to_owned(),
        reason: "authentication failed: wrong master key or cipher, or the data is damaged".to_owned(),
    }
}

/// Encrypts a buffer.
///
/// # Errors
/// Only if OpenSSL fails.
pub fn encrypt(master: &MasterKey, cipher: Cipher, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut w = EncryptWriter::new(master, cipher, Vec::with_capacity(plaintext.len() + MIN_LEN))?;
    w.write_all(plaintext).map_err(|e| CryptoError::Io { op: "encrypting", path: "buffer".into(), source: e })?;
    w.finish()
}

/// Decrypts a buffer; `what` names it in errors.
///
/// # Errors
/// [`CryptoError::Decrypt`] for data shorter than 44 bytes, a wrong key or cipher, or damage.
pub fn decrypt(master: &MasterKey, cipher: Cipher, data: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut w = DecryptWriter::new(master, cipher, Vec::with_capacity(data.len()), what);
    w.write_all(data).map_err(|e| CryptoError::Io { op: "decrypting", path: what.into(), source: e })?;
    w.finish()
}

/// Encrypts everything written to it into `W`, in pgmoneta's format: the salt and IV are written
/// at once, ciphertext as data arrives, the tag by [`EncryptWriter::finish`].
pub struct EncryptWriter<W: Write> {
    inner: W,
    crypter: Crypter,
    out: Vec<u8>,
}

impl<W: Write> fmt::Debug for EncryptWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptWriter").finish_non_exhaustive()
    }
}

impl<W: Write> EncryptWriter<W> {
    /// Starts an encrypted stream into `inner` with a fresh salt and IV.
    ///
    /// # Errors
    /// OpenSSL failures, or writing the header.
    pub fn new(master: &MasterKey, cipher: Cipher, mut inner: W) -> Result<EncryptWriter<W>> {
        let salt: [u8; SALT_LEN] = random()?;
        let iv: [u8; IV_LEN] = random()?;
        let key = master.object_key(&salt, cipher)?;
        let crypter = Crypter::new(cipher.openssl(), Mode::Encrypt, &key, Some(&iv))?;
        inner.write_all(&salt).and_then(|()| inner.write_all(&iv)).map_err(|e| CryptoError::Io {
            op: "writing",
            path: "encrypted stream".into(),
            source: e,
        })?;
        Ok(EncryptWriter { inner, crypter, out: Vec::new() })
    }

    /// Completes the stream with the tag and returns the inner writer.
    ///
    /// # Errors
    /// OpenSSL failures, or writing the tag.
    pub fn finish(mut self) -> Result<W> {
        let mut rest = [0u8; 32];
        let n = self.crypter.finalize(&mut rest)?;
        let mut tag = [0u8; TAG_LEN];
        self.crypter.get_tag(&mut tag)?;
        self.inner.write_all(&rest[..n]).and_then(|()| self.inner.write_all(&tag)).map_err(|e| CryptoError::Io {
            op: "writing",
            path: "encrypted stream".into(),
            source: e,
        })?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        for chunk in buf.chunks(256 << 10) {
            self.out.resize(chunk.len() + 16, 0);
            let n = self.crypter.update(chunk, &mut self.out).map_err(io::Error::other)?;
            self.inner.write_all(&self.out[..n])?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum DecryptState {
    /// Collecting the salt and IV.
    Header(Vec<u8>),
    /// Decrypting; the last 16 bytes seen are held back as the tag candidate.
    Body { crypter: Box<Crypter>, held: Vec<u8> },
}

/// Decrypts an encrypted stream written to it into `W`.
///
/// Plaintext reaches `W` before the tag at the end can be checked, so it is unauthenticated until
/// [`DecryptWriter::finish`] returns `Ok`: write into a temporary file and discard it on error,
/// as [`decrypt_file`](crate::decrypt_file) does.
pub struct DecryptWriter<'m, W: Write> {
    master: &'m MasterKey,
    cipher: Cipher,
    inner: W,
    state: DecryptState,
    out: Vec<u8>,
    what: String,
}

impl<W: Write> fmt::Debug for DecryptWriter<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptWriter").field("what", &self.what).finish_non_exhaustive()
    }
}

impl<'m, W: Write> DecryptWriter<'m, W> {
    /// A decrypting writer; `what` names the data in errors.
    pub fn new(master: &'m MasterKey, cipher: Cipher, inner: W, what: &str) -> DecryptWriter<'m, W> {
        DecryptWriter {
            master,
            cipher,
            inner,
            state: DecryptState::Header(Vec::with_capacity(HEADER_LEN)),
            out: Vec::new(),
            what: what.to_owned(),
        }
    }

    /// Checks the tag and returns the inner writer.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] when the data was too short, or the tag does not match (wrong key
    /// or cipher, damaged or truncated data).
    pub fn finish(mut self) -> Result<W> {
        let too_short = || CryptoError::Decrypt {
            what: self.what.clone(),
            reason: format!("too short to be encrypted data (at least {MIN_LEN} bytes)"),
        };
        let DecryptState::Body { mut crypter, held } =
            std::mem::replace(&mut self.state, DecryptState::Header(Vec::new()))
        else {
            return Err(too_short());
        };
        if held.len() < TAG_LEN {
            return Err(too_short());
        }
        crypter.set_tag(&held)?;
        let mut rest = [0u8; 32];
        let n = crypter.finalize(&mut rest).map_err(|_| auth_failed(&self.what))?;
        self.inner.write_all(&rest[..n]).map_err(|e| CryptoError::Io {
            op: "writing",
            path: self.what.clone().into(),
            source: e,
        })?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for DecryptWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        if let DecryptState::Header(header) = &mut self.state {
            let take = (HEADER_LEN - header.len()).min(buf.len());
            header.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if header.len() < HEADER_LEN {
                return Ok(());
            }
            let key = self.master.object_key(&header[..SALT_LEN], self.cipher).map_err(io::Error::other)?;
            let crypter = Crypter::new(self.cipher.openssl(), Mode::Decrypt, &key, Some(&header[SALT_LEN..]))
                .map_err(io::Error::other)?;
            self.state = DecryptState::Body { crypter: Box::new(crypter), held: Vec::with_capacity(TAG_LEN * 2) };
        }
        let DecryptState::Body { crypter, held } = &mut self.state else { return Ok(()) };
        if buf.is_empty() {
            return Ok(());
        }
        // Everything but the last 16 bytes seen so far is ciphertext.
        if buf.len() >= TAG_LEN {
            let (body, tail) = buf.split_at(buf.len() - TAG_LEN);
            let mut feed = |data: &[u8]| -> io::Result<()> {
                for chunk in data.chunks(256 << 10) {
                    self.out.resize(chunk.len() + 16, 0);
                    let n = crypter.update(chunk, &mut self.out).map_err(io::Error::other)?;
                    self.inner.write_all(&self.out[..n])?;
                }
                Ok(())
            };
            feed(&std::mem::take(held))?;
            feed(body)?;
            held.extend_from_slice(tail);
        } else {
            held.extend_from_slice(buf);
            if held.len() > TAG_LEN {
                let excess = held.len() - TAG_LEN;
                let ciphertext: Vec<u8> = held.drain(..excess).collect();
                self.out.resize(ciphertext.len() + 16, 0);
                let n = crypter.update(&ciphertext, &mut self.out).map_err(io::Error::other)?;
                self.inner.write_all(&self.out[..n])?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts an encrypted stream read from `R`.
///
/// The last 16 bytes of the input are the tag, so the reader holds back 16 bytes until the end
/// of input, where it checks the tag: the final `read` that would return 0 returns an error of
/// kind `InvalidData` instead when the tag does not match (wrong key or cipher, damaged or
/// truncated data). Everything read before that is unauthenticated: write it under a temporary
/// name and keep it only once the reader returned `Ok(0)`.
pub struct DecryptReader<'m, R: Read> {
    master: &'m MasterKey,
    cipher: Cipher,
    inner: R,
    crypter: Option<Box<Crypter>>,
    /// Ciphertext read but not yet decrypted; its last 16 bytes may be the tag.
    pending: Vec<u8>,
    /// Decrypted bytes not yet returned, from `pos`.
    out: Vec<u8>,
    pos: usize,
    done: bool,
    what: String,
}

impl<R: Read> fmt::Debug for DecryptReader<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptReader").field("what", &self.what).finish_non_exhaustive()
    }
}

impl<'m, R: Read> DecryptReader<'m, R> {
    /// A decrypting reader; `what` names the data in errors.
    pub fn new(master: &'m MasterKey, cipher: Cipher, inner: R, what: &str) -> DecryptReader<'m, R> {
        DecryptReader {
            master,
            cipher,
            inner,
            crypter: None,
            pending: Vec::new(),
            out: Vec::new(),
            pos: 0,
            done: false,
            what: what.to_owned(),
        }
    }

    /// Whether the whole input was read and its tag matched.
    pub fn is_authenticated(&self) -> bool {
        self.done
    }

    /// Reads and discards the rest of the input, checking the tag.
    ///
    /// # Errors
    /// As `read`: a tag that does not match, input too short, a failed read.
    pub fn verify_rest(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 64 << 10];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }

    fn fail(&self, reason: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            CryptoError::Decrypt { what: self.what.clone(), reason: reason.to_owned() },
        )
    }

    /// Reads more input and decrypts what is certainly not the tag; at the end, checks the tag.
    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        let start = self.pending.len();
        self.pending.resize(start + (256 << 10), 0);
        let n = loop {
            match self.inner.read(&mut self.pending[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.pending.truncate(start);
                    return Err(e);
                }
            }
        };
        self.pending.truncate(start + n);
        if self.crypter.is_none() {
            if self.pending.len() < HEADER_LEN {
                if n == 0 {
                    return Err(self.fail(&format!("too short to be encrypted data (at least {MIN_LEN} bytes)")));
                }
                return Ok(());
            }
            let key = self.master.object_key(&self.pending[..SALT_LEN], self.cipher).map_err(io::Error::other)?;
            let crypter =
                Crypter::new(self.cipher.openssl(), Mode::Decrypt, &key, Some(&self.pending[SALT_LEN..HEADER_LEN]))
                    .map_err(io::Error::other)?;
            self.crypter = Some(Box::new(crypter));
            self.pending.drain(..HEADER_LEN);
        }
        let crypter = self.crypter.as_mut().expect("set above");
        if n == 0 {
            // End of input: what is pending must be exactly the tag.
            if self.pending.len() < TAG_LEN {
                return Err(self.fail(&format!("too short to be encrypted data (at least {MIN_LEN} bytes)")));
            }
            crypter.set_tag(&self.pending).map_err(io::Error::other)?;
            let mut rest = [0u8; 32];
            let m = crypter
                .finalize(&mut rest)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, auth_failed(&self.what)))?;
            self.out.extend_from_slice(&rest[..m]);
            self.pending.clear();
            self.done = true;
            return Ok(());
        }
        if self.pending.len() > TAG_LEN {
            let body = self.pending.len() - TAG_LEN;
            self.out.resize(body + 16, 0);
            let m = crypter.update(&self.pending[..body], &mut self.out).map_err(io::Error::other)?;
            self.out.truncate(m);
            self.pending.drain(..body);
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.out.len() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
