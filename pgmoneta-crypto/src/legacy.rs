//! Read support for older encrypted files: AES-CBC as `openssl enc` writes it.
//!
//! CBC carries no authentication: a wrong password or damaged data is detected only when the
//! padding comes out invalid, which fails to happen about once in 256 tries. Callers verify the
//! result by other means (the manifest's SHA-512 of every restored file).

use openssl::hash::MessageDigest;
use openssl::symm::{decrypt as cbc_decrypt, Cipher as OsslCipher};

use crate::error::{CryptoError, Result};

/// The digest `EVP_BytesToKey` used to turn the password into key and IV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyDigest {
    /// MD5 (`openssl enc` before 1.1.0).
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256 (`openssl enc` from 1.1.0).
    Sha256,
}

fn cbc(key_bits: u32) -> Result<OsslCipher> {
    Ok(match key_bits {
        128 => OsslCipher::aes_128_cbc(),
        192 => OsslCipher::aes_192_cbc(),
        256 => OsslCipher::aes_256_cbc(),
        other => return Err(CryptoError::Invalid(format!("AES key size must be 128, 192 or 256 bits, got {other}"))),
    })
}

fn failed(what: &str) -> CryptoError {
    CryptoError::Decrypt {
        what: what.to_owned(),
        reason: "wrong password or key, or damaged data (bad padding)".to_owned(),
    }
}

/// Decrypts `Salted__` data: the 8-byte magic, an 8-byte salt, then AES-CBC ciphertext with
/// PKCS#7 padding, keyed by `EVP_BytesToKey(cipher, digest, password, salt, 1)`.
///
/// # Errors
/// Data without the header, or that does not decrypt.
pub fn decrypt_salted_cbc(
    password: &[u8],
    data: &[u8],
    key_bits: u32,
    digest: LegacyDigest,
    what: &str,
) -> Result<Vec<u8>> {
    let cipher = cbc(key_bits)?;
    if data.len() < 16 || &data[..8] != b"Salted__" {
        return Err(CryptoError::Decrypt { what: what.to_owned(), reason: "no Salted__ header".to_owned() });
    }
    let md = match digest {
        LegacyDigest::Md5 => MessageDigest::md5(),
        LegacyDigest::Sha1 => MessageDigest::sha1(),
        LegacyDigest::Sha256 => MessageDigest::sha256(),
    };
    let kiv = openssl::pkcs5::bytes_to_key(cipher, md, password, Some(&data[8..16]), 1)?;
    cbc_decrypt(cipher, &kiv.key, kiv.iv.as_deref(), &data[16..]).map_err(|_| failed(what))
}

/// Decrypts AES-CBC ciphertext with an explicit key and IV (no header).
///
/// # Errors
/// A key of the wrong size, or data that does not decrypt.
pub fn decrypt_cbc(key: &[u8], iv: &[u8], data: &[u8], what: &str) -> Result<Vec<u8>> {
    let cipher = cbc(key.len() as u32 * 8)?;
    if iv.len() != 16 {
        return Err(CryptoError::Invalid(format!("an AES-CBC IV is 16 bytes, got {}", iv.len())));
    }
    cbc_decrypt(cipher, key, Some(iv), data).map_err(|_| failed(what))
}
