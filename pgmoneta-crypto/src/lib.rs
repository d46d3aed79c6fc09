//! Encryption, keys and hashing for pgmoneta, byte-compatible with upstream pgmoneta.
//!
//! - [`aes`]: AES-256/192/128-GCM of buffers ([`encrypt`], [`decrypt`]) and streams
//!   ([`EncryptWriter`], [`DecryptWriter`]) in upstream's `salt || iv || ciphertext || tag`
//!   layout, keyed from the [`MasterKey`];
//! - [`encrypt_file`] / [`decrypt_file`] and the in-place forms: constant memory, atomic, and a
//!   file that fails authentication leaves nothing behind;
//! - [`MasterKeyFile`]: `~/.pgmoneta/master.key` with enforced owner-only permissions, derived
//!   once and cached;
//! - [`Vault`]: the users and admins vaults, edited without losing comments or order;
//! - [`legacy`]: read support for `openssl enc` AES-CBC files;
//! - [`HashingWriter`] / [`HashingReader`] (SHA-256, SHA-512 while data streams through) and
//!   hardware [`crc32c`].
//!
//! ```
//! use pgmoneta_crypto::{decrypt, encrypt, Cipher, MasterKey};
//!
//! let master = MasterKey::from_bytes([7u8; 64]);
//! let sealed = encrypt(&master, Cipher::Aes256Gcm, b"secret")?;
//! assert_eq!(sealed.len(), 44 + 6);
//! assert_eq!(decrypt(&master, Cipher::Aes256Gcm, &sealed, "example")?, b"secret");
//! # Ok::<(), pgmoneta_crypto::CryptoError>(())
//! ```
#![deny(missing_docs)]

pub mod aes;
mod error;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
pub mod legacy;
mod master_key;
mod vault;

pub use aes::{decrypt, encrypt, Cipher, DecryptReader, DecryptWriter, EncryptWriter, MasterKey, MIN_LEN};
pub use error::{CryptoError, Result};
pub use files::{decrypt_file, decrypt_in_place, encrypt_file, encrypt_in_place, AES_SUFFIX};
pub use hash::{
    crc32c, crc32c_append, digest_hex, file_digest_hex, hex, HashAlgorithm, Hasher, HashingReader, HashingWriter,
};
pub use master_key::{MasterKeyFile, MAX_KEY_BYTES, MIN_KEY_CHARS};
pub use vault::{Vault, VaultKind, MAX_PASSWORD, MAX_USERNAME};
