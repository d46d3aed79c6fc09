//! Encryption, keys and hashing.
//!
//! This crate owns AES-GCM encryption of files and buffers in pgmoneta's format
//! (`salt || iv || ciphertext || tag`), the master key file and its PBKDF2 derivation, the user and
//! admin vaults, SCRAM-SHA-256 primitives, and SHA-256/SHA-512/CRC32C adapters that hash data as it
//! streams through.
//!
//! Nothing is public yet: each piece arrives with tests against pgmoneta's formats.
