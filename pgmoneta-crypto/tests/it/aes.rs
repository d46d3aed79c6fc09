use std::io::Write;

use pgmoneta_crypto::{
    decrypt, decrypt_file, decrypt_in_place, encrypt, encrypt_file, encrypt_in_place, Cipher, CryptoError,
    DecryptWriter, EncryptWriter, MIN_LEN,
};
use proptest::prelude::*;

use crate::{corpus, test_key};

const CIPHERS: [Cipher; 3] = [Cipher::Aes256Gcm, Cipher::Aes192Gcm, Cipher::Aes128Gcm];

fn cipher() -> impl Strategy<Value = Cipher> {
    prop_oneof![Just(Cipher::Aes256Gcm), Just(Cipher::Aes192Gcm), Just(Cipher::Aes128Gcm)]
}

proptest! {
    #[test]
    fn buffers_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..4096), c in cipher()) {
        let key = test_key(1);
        let sealed = encrypt(&key, c, &data).unwrap();
        prop_assert_eq!(sealed.len(), data.len() + MIN_LEN);
        prop_assert_eq!(decrypt(&key, c, &sealed, "buffer").unwrap(), data);
    }

    #[test]
    fn streams_roundtrip_however_the_writes_are_split(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        cuts in proptest::collection::vec(1usize..3000, 1..20),
        c in cipher(),
    ) {
        let key = test_key(2);
        let mut enc = EncryptWriter::new(&key, c, Vec::new()).unwrap();
        let (mut at, mut i) = (0, 0);
        while at < data.len() {
            let n = cuts[i % cuts.len()].min(data.len() - at);
            enc.write_all(&data[at..at + n]).unwrap();
            at += n;
            i += 1;
        }
        let sealed = enc.finish().unwrap();
        let mut dec = DecryptWriter::new(&key, c, Vec::new(), "stream");
        let (mut at, mut i) = (0, 0);
        while at < sealed.len() {
            let n = cuts[(i + 3) % cuts.len()].min(sealed.len() - at);
            dec.write_all(&sealed[at..at + n]).unwrap();
            at += n;
            i += 1;
        }
        prop_assert_eq!(dec.finish().unwrap(), data);
    }
}

#[test]
fn empty_plaintext_is_exactly_44_bytes() {
    for c in CIPHERS {
        let sealed = encrypt(&test_key(3), c, b"").unwrap();
        assert_eq!(sealed.len(), 44);
        assert_eq!(decrypt(&test_key(3), c, &sealed, "empty").unwrap(), b"");
    }
}

#[test]
fn every_region_is_authenticated() {
    let key = test_key(4);
    let data = corpus("pg15/data/pgbench_accounts_pkey")[..100_000].to_vec();
    for c in CIPHERS {
        let sealed = encrypt(&key, c, &data).unwrap();
        let regions = [
            ("salt", 0),
            ("salt", 15),
            ("iv", 16),
            ("iv", 27),
            ("ciphertext", 28),
            ("ciphertext", sealed.len() / 2),
            ("tag", sealed.len() - 16),
            ("tag", sealed.len() - 1),
        ];
        for (region, at) in regions {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            let err = decrypt(&key, c, &bad, "tampered").unwrap_err();
            assert!(
                matches!(err, CryptoError::Decrypt { ref reason, .. } if reason.contains("authentication failed")),
                "{c} {region}@{at}: {err}"
            );
        }
        for len in [0, 1, 27, 28, 43, 44, sealed.len() / 2, sealed.len() - 1] {
            assert!(
                matches!(decrypt(&key, c, &sealed[..len], "truncated"), Err(CryptoError::Decrypt { .. })),
                "{c} cut to {len}"
            );
        }
        let err = decrypt(&test_key(5), c, &sealed, "wrong key").unwrap_err();
        assert!(err.to_string().contains("cannot decrypt wrong key: authentication failed"), "{err}");
        let other = if c == Cipher::Aes256Gcm { Cipher::Aes128Gcm } else { Cipher::Aes256Gcm };
        assert!(decrypt(&key, other, &sealed, "wrong cipher").is_err());
    }
    let err = decrypt(&key, Cipher::Aes256Gcm, &[0u8; 43], "short").unwrap_err();
    assert!(err.to_string().contains("too short to be encrypted data (at least 44 bytes)"), "{err}");
}

#[test]
fn files_are_atomic_and_a_bad_file_leaves_nothing() {
    let key = test_key(6);
    let dir = tempfile::tempdir().unwrap();
    let wal = crate::wal_segment(0);
    let plain = dir.path().join("000000010000000000000001");
    std::fs::write(&plain, &wal).unwrap();
    let sealed = encrypt_in_place(&key, Cipher::Aes256Gcm, &plain).unwrap();
    assert_eq!(sealed, dir.path().join("000000010000000000000001.aes"));
    assert!(!plain.exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&sealed).unwrap().len(), wal.len() as u64 + 44);

    // A flipped bit in the middle of 16 MB: an error naming the file, no output, source kept.
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[8 << 20] ^= 0x80;
    let damaged = dir.path().join("damaged.aes");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = dir.path().join("damaged");
    let err = decrypt_file(&key, Cipher::Aes256Gcm, &damaged, &out).unwrap_err();
    assert!(err.to_string().contains("damaged.aes") && err.to_string().contains("authentication failed"), "{err}");
    assert!(!out.exists());
    let err = decrypt_in_place(&test_key(7), Cipher::Aes256Gcm, &sealed).unwrap_err();
    assert!(matches!(err, CryptoError::Decrypt { .. }), "{err}");
    assert!(sealed.exists());
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "temporary files left: {names:?}");

    let restored = decrypt_in_place(&key, Cipher::Aes256Gcm, &sealed).unwrap();
    assert!(std::fs::read(&restored).unwrap() == wal);
    assert!(!sealed.exists());

    let copy = dir.path().join("copy.aes");
    encrypt_file(&key, Cipher::Aes128Gcm, &restored, &copy).unwrap();
    assert!(matches!(decrypt_in_place(&key, Cipher::Aes128Gcm, &restored), Err(CryptoError::Invalid(_))));
}

/// A reader that hands out at most `step` bytes per call, to split the input anywhere.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn read_all(
    c: Cipher,
    key: &pgmoneta_crypto::MasterKey,
    sealed: &[u8],
    step: usize,
    buf: usize,
) -> std::io::Result<Vec<u8>> {
    let mut r = pgmoneta_crypto::DecryptReader::new(key, c, Trickle { data: sealed, step }, "stream");
    let mut out = Vec::new();
    let mut b = vec![0u8; buf];
    loop {
        let n = std::io::Read::read(&mut r, &mut b)?;
        if n == 0 {
            assert!(r.is_authenticated());
            return Ok(out);
        }
        out.extend_from_slice(&b[..n]);
    }
}

proptest! {
    #[test]
    fn the_decrypting_reader_roundtrips_however_the_input_is_split(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        step in 1usize..3000,
        buf in 1usize..5000,
        c in cipher(),
    ) {
        let key = test_key(6);
        let sealed = encrypt(&key, c, &data).unwrap();
        prop_assert_eq!(read_all(c, &key, &sealed, step, buf).unwrap(), data);
    }
}

#[test]
fn the_decrypting_reader_fails_at_the_end_on_any_damage() {
    let key = test_key(7);
    let data = corpus("pg15/data/pgbench_accounts_pkey")[..300_000].to_vec();
    let c = Cipher::Aes256Gcm;
    let sealed = encrypt(&key, c, &data).unwrap();
    for at in [0, 16, 28, sealed.len() / 2, sealed.len() - 16, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x80;
        let err = read_all(c, &key, &bad, 1 << 20, 64 << 10).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{at}");
        assert!(err.to_string().contains("authentication failed"), "{at}: {err}");
    }
    for len in [0, 10, 43, sealed.len() - 1] {
        let err = read_all(c, &key, &sealed[..len], 4096, 4096).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "cut to {len}: {err}");
    }
    assert!(read_all(c, &test_key(8), &sealed, 4096, 4096).is_err());
    let empty = encrypt(&key, c, b"").unwrap();
    assert_eq!(read_all(c, &key, &empty, 5, 5).unwrap(), b"");
}
