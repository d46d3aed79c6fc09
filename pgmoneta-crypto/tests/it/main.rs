//! pgmoneta-crypto: round trips, tampering, keys, vaults, legacy files, hashes, and byte
//! compatibility checked by an independent implementation of the format in Python.

mod aes;
mod fuzz_seeds;
mod interop;
mod keys;

use std::path::PathBuf;

/// A file of the shared corpus (real PostgreSQL 15 files).
pub fn corpus(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A master key without the 600,000 PBKDF2 iterations, for tests that do not need the file.
pub fn test_key(seed: u8) -> pgmoneta_crypto::MasterKey {
    pgmoneta_crypto::MasterKey::from_bytes([seed; 64])
}
