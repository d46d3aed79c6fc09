use std::os::unix::fs::PermissionsExt;

use pgmoneta_crypto::legacy::{decrypt_cbc, decrypt_salted_cbc, LegacyDigest};
use pgmoneta_crypto::{
    crc32c, crc32c_append, digest_hex, file_digest_hex, CryptoError, HashAlgorithm, HashingWriter, MasterKeyFile,
    Vault, VaultKind,
};

use crate::test_key;

#[test]
fn master_key_file_permissions_and_format() {
    let home = tempfile::tempdir().unwrap();
    let file = MasterKeyFile::new(home.path().join(".pgmoneta").join("master.key"));
    assert!(matches!(file.create("short"), Err(CryptoError::Invalid(_))));
    file.create("a long enough master key").unwrap();
    let dir_mode = std::fs::metadata(home.path().join(".pgmoneta")).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    assert_eq!(std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(file.path()).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(file.create("another key here").unwrap_err().to_string().contains("already exists"));

    let a = file.load_cached().unwrap();
    let b = file.load_cached().unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b), "the derived key is cached");
    assert_eq!(*a, file.load().unwrap());

    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = file.load().unwrap_err().to_string();
    assert!(err.contains("has mode 0644, but must be 0600") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(home.path().join(".pgmoneta"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(file.load().unwrap_err().to_string().contains("has mode 0755, but must be 0700"));
    std::fs::set_permissions(home.path().join(".pgmoneta"), std::fs::Permissions::from_mode(0o700)).unwrap();

    // A one-line file (no salt) is refused with a reason.
    let first = text.lines().next().unwrap().to_owned();
    std::fs::write(file.path(), format!("{first}\n")).unwrap();
    assert!(file.load().unwrap_err().to_string().contains("no salt line"));
}

#[test]
fn vault_edits_keep_comments_and_order() {
    let master = test_key(9);
    let text = "# pgmoneta users\n\n; replication\n";
    let path = std::path::Path::new("pgmoneta_users.conf");
    let mut vault = Vault::parse(text, path, VaultKind::Users).unwrap();
    vault.add(&master, "repl", "s3cret").unwrap();
    vault.add(&master, "backup", "pässwörd with spaces").unwrap();
    assert!(vault.add(&master, "repl", "x").unwrap_err().to_string().contains("already exists"));
    assert!(vault.add(&master, "bad:name", "x").is_err());
    vault.set_password(&master, "repl", "new").unwrap();
    assert_eq!(vault.users(), ["repl", "backup"]);
    assert_eq!(vault.password(&master, "repl").unwrap().as_deref(), Some("new"));
    assert_eq!(vault.password(&master, "backup").unwrap().as_deref(), Some("pässwörd with spaces"));
    assert_eq!(vault.password(&master, "nobody").unwrap(), None);
    assert!(matches!(vault.password(&test_key(10), "repl"), Err(CryptoError::Decrypt { .. })));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgmoneta_users.conf");
    vault.save(&file).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.starts_with("# pgmoneta users\n\n; replication\nrepl:"), "{saved}");
    let mut again = Vault::load(&file, VaultKind::Users).unwrap();
    assert_eq!(again, vault);
    again.remove("repl").unwrap();
    assert!(again.remove("repl").is_err());
    assert_eq!(again.users(), ["backup"]);

    let err = Vault::parse("# ok\nrepl:notbase64!!\n", path, VaultKind::Users).unwrap_err().to_string();
    assert!(err.starts_with("pgmoneta_users.conf:2: "), "{err}");
    let err = Vault::parse("just a line\n", path, VaultKind::Users).unwrap_err().to_string();
    assert_eq!(err, "pgmoneta_users.conf:1: expected user:base64");

    let mut admins = Vault::new(VaultKind::Admins);
    for i in 0..8 {
        admins.add(&master, &format!("admin{i}"), "pw").unwrap();
    }
    assert!(admins.add(&master, "admin8", "pw").unwrap_err().to_string().contains("full"));
}

/// Runs `openssl enc <args> -in plain -out out` and returns what it wrote.
fn openssl_enc(args: &[&str], plain: &std::path::Path, out: &std::path::Path) -> Vec<u8> {
    let status = std::process::Command::new("openssl")
        .arg("enc")
        .args(args)
        .arg("-in")
        .arg(plain)
        .arg("-out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "openssl enc {args:?}");
    std::fs::read(out).unwrap()
}

#[test]
fn openssl_enc_cbc_files_still_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&plain, &data).unwrap();
    for (md, digest) in [("md5", LegacyDigest::Md5), ("sha1", LegacyDigest::Sha1), ("sha256", LegacyDigest::Sha256)] {
        for bits in [128, 192, 256] {
            let cipher = format!("-aes-{bits}-cbc");
            let args = [cipher.as_str(), "-salt", "-md", md, "-pass", "pass:legacy password"];
            let sealed = openssl_enc(&args, &plain, &dir.path().join(format!("enc-{md}-{bits}")));
            assert_eq!(
                decrypt_salted_cbc(b"legacy password", &sealed, bits, digest, "legacy").unwrap(),
                data,
                "{md} {bits}"
            );
            // CBC has no authentication: a wrong password is an error only when the padding comes
            // out invalid (255 times in 256); it must never give back the plaintext.
            let wrong = decrypt_salted_cbc(b"wrong password", &sealed, bits, digest, "legacy");
            assert!(wrong.map_or(true, |p| p != data), "{md} {bits}: a wrong password decrypted");
        }
    }
    // Explicit key and IV, no header.
    let (key, iv) =
        ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "0f0e0d0c0b0a09080706050403020100");
    let sealed = openssl_enc(&["-aes-256-cbc", "-nosalt", "-K", key, "-iv", iv], &plain, &dir.path().join("enc-raw"));
    let unhex =
        |h: &str| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect::<Vec<u8>>();
    assert_eq!(decrypt_cbc(&unhex(key), &unhex(iv), &sealed, "raw").unwrap(), data);
}

#[test]
fn hashes_and_crc32c() {
    assert_eq!(
        digest_hex(HashAlgorithm::Sha256, b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        digest_hex(HashAlgorithm::Sha512, b"abc"),
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    );
    let wal = crate::wal_segment(1);
    let mut w = HashingWriter::new(Vec::new(), HashAlgorithm::Sha512);
    for chunk in wal.chunks(12_345) {
        std::io::Write::write_all(&mut w, chunk).unwrap();
    }
    assert_eq!(w.bytes(), wal.len() as u64);
    let (copy, digest) = w.finish_hex();
    assert!(copy == wal);
    assert_eq!(digest, digest_hex(HashAlgorithm::Sha512, &wal));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), &wal).unwrap();
    assert_eq!(file_digest_hex(HashAlgorithm::Sha512, &dir.path().join("f")).unwrap(), digest);

    // The CRC-32C check value, and continuation.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xE306_9283);
}

#[test]
fn a_fingerprint_tells_keys_apart_and_reveals_nothing_plain() {
    let (a, same, other) = (test_key(1), test_key(1), test_key(2));
    let fa = a.fingerprint().unwrap();
    assert_eq!(fa.len(), 32);
    assert!(fa.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(fa, same.fingerprint().unwrap());
    assert_ne!(fa, other.fingerprint().unwrap());
    // Not the key's bytes, nor a plain digest of them.
    assert_ne!(fa, "01".repeat(16));
    let plain = pgmoneta_crypto::digest_hex(pgmoneta_crypto::HashAlgorithm::Sha256, &[1u8; 64]);
    assert!(!plain.starts_with(&fa));
}
