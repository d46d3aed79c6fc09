//! Invariants checked by the `aes_decrypt` fuzz target and by the test that replays its seeds.

use std::io::Write;

use crate::aes::{decrypt, encrypt, Cipher, DecryptWriter, MasterKey};

/// Decrypts `data` under a fixed key with each cipher and asserts: no panic; anything not made
/// by encrypting is rejected (forging a GCM tag is out of reach), in one piece and written in
/// small pieces alike; and `data` as a plaintext survives a round trip.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_decrypt(data: &[u8]) {
    let key = MasterKey::from_bytes([0x42; 64]);
    for cipher in [Cipher::Aes256Gcm, Cipher::Aes192Gcm, Cipher::Aes128Gcm] {
        assert!(decrypt(&key, cipher, data, "fuzz").is_err(), "{cipher}: arbitrary bytes decrypted");
        let mut w = DecryptWriter::new(&key, cipher, Vec::new(), "fuzz");
        let pieces_ok = data.chunks(7).all(|c| w.write_all(c).is_ok());
        assert!(!pieces_ok || w.finish().is_err(), "{cipher}: arbitrary bytes decrypted in pieces");
    }
    let sealed = encrypt(&key, Cipher::Aes256Gcm, data).expect("encryption");
    assert_eq!(decrypt(&key, Cipher::Aes256Gcm, &sealed, "fuzz").expect("round trip"), data);
}
