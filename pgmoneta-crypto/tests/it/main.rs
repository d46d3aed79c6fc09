//! pgmoneta-crypto: round trips, tampering, keys, vaults, legacy files, hashes, and byte
//! compatibility checked by an independent implementation of the format in Python.

mod aes;
mod fuzz_seeds;
mod interop;
mod keys;

pub use pgmoneta_testkit::corpus::file as corpus;

/// The `i`th WAL segment of the PostgreSQL 15 corpus (0, 1 or 2: it holds three).
pub fn wal_segment(i: usize) -> Vec<u8> {
    let info = pgmoneta_testkit::corpus::info(15);
    assert!(i < info.segments.len(), "the PostgreSQL 15 corpus has {} segments, not {}", info.segments.len(), i + 1);
    corpus(&format!("pg15/wal/{}", info.segments[i]))
}

/// A master key without the 600,000 PBKDF2 iterations, for tests that do not need the file.
pub fn test_key(seed: u8) -> pgmoneta_crypto::MasterKey {
    pgmoneta_crypto::MasterKey::from_bytes([seed; 64])
}
