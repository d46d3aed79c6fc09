//! Byte compatibility with upstream's format, checked by `upstream_format.py`: Python's
//! cryptography package and hashlib, written from the format's description only.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgmoneta_crypto::{decrypt_file, encrypt_file, Cipher, MasterKeyFile, Vault, VaultKind};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/upstream_format.py")
}

fn python(args: &[&std::ffi::OsStr]) -> String {
    let out =
        Command::new("python3").arg(script()).args(args).output().expect("python3 (scripts/setup.sh installs it)");
    assert!(out.status.success(), "upstream_format.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn files_and_vault_entries_match_an_independent_implementation() {
    let home = tempfile::tempdir().unwrap();
    let key_file = MasterKeyFile::new(home.path().join(".pgmoneta/master.key"));
    key_file.create("interoperability master key").unwrap();
    let master = key_file.load().unwrap();
    let kf = key_file.path().as_os_str();
    let data = crate::corpus("pg15/data/pgbench_accounts_pkey");
    let dir = home.path();
    let plain = dir.join("plain");
    std::fs::write(&plain, &data).unwrap();

    for (cipher, bits) in [(Cipher::Aes256Gcm, "256"), (Cipher::Aes192Gcm, "192"), (Cipher::Aes128Gcm, "128")] {
        // Python encrypts, we decrypt.
        let theirs = dir.join(format!("theirs-{bits}.aes"));
        python(&[os("encrypt"), kf, os(bits), plain.as_os_str(), theirs.as_os_str()]);
        let ours_plain = dir.join(format!("theirs-{bits}"));
        decrypt_file(&master, cipher, &theirs, &ours_plain).unwrap();
        assert!(std::fs::read(&ours_plain).unwrap() == data, "{cipher}: ours cannot read Python's");

        // We encrypt, Python decrypts.
        let ours = dir.join(format!("ours-{bits}.aes"));
        encrypt_file(&master, cipher, &plain, &ours).unwrap();
        let their_plain = dir.join(format!("ours-{bits}.out"));
        python(&[os("decrypt"), kf, os(bits), ours.as_os_str(), their_plain.as_os_str()]);
        assert!(std::fs::read(&their_plain).unwrap() == data, "{cipher}: Python cannot read ours");
    }

    // Vault entries, both ways.
    let line = python(&[os("vault-entry"), kf, os("repl"), os("från python")]);
    let vault = Vault::parse(&line, Path::new("users"), VaultKind::Users).unwrap();
    assert_eq!(vault.password(&master, "repl").unwrap().as_deref(), Some("från python"));
    let mut ours = Vault::new(VaultKind::Users);
    ours.add(&master, "backup", "from rust ✓").unwrap();
    let text = ours.to_text();
    assert_eq!(python(&[os("vault-password"), kf, os(text.trim())]).trim_end(), "from rust ✓");
}
