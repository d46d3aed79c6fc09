//! AES-GCM decryption on arbitrary bytes: always rejected, never a panic; plaintexts round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgmoneta_crypto::fuzzing::check_decrypt(data);
});
