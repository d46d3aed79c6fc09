//! User and admin vaults: `username:BASE64` lines, where BASE64 is a password encrypted with
//! AES-256-GCM under the master key (see [`crate::aes`]). Blank lines and `#`/`;` comments are
//! kept, in order, when a vault is edited.

use std::fmt;
use std::path::Path;

use openssl::base64::{decode_block, encode_block};

use crate::aes::{decrypt, encrypt, Cipher, MasterKey};
use crate::error::{io_err, CryptoError, Result};
use crate::files::write_atomically;

/// Longest user name, in bytes.
pub const MAX_USERNAME: usize = 127;
/// Longest password, in bytes.
pub const MAX_PASSWORD: usize = 8191;

/// Which vault: they differ only in how many entries they may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaultKind {
    /// `pgmoneta_users.conf`: the replication users of the servers, at most 64.
    Users,
    /// `pgmoneta_admins.conf`: remote management administrators, at most 8.
    Admins,
}

impl VaultKind {
    /// Most entries allowed.
    pub const fn max_entries(self) -> usize {
        match self {
            VaultKind::Users => 64,
            VaultKind::Admins => 8,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Line {
    Entry { user: String, secret: String },
    Other(String),
}

/// A vault file's content.
#[derive(Clone, PartialEq, Eq)]
pub struct Vault {
    kind: VaultKind,
    lines: Vec<Line>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("kind", &self.kind).field("users", &self.users()).finish()
    }
}

fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > MAX_USERNAME || user.contains(':') || user.contains(char::is_whitespace) {
        return Err(CryptoError::Invalid(format!(
            "invalid user name {user:?}: 1 to {MAX_USERNAME} bytes, no ':' and no spaces"
        )));
    }
    Ok(())
}

impl Vault {
    /// An empty vault.
    pub fn new(kind: VaultKind) -> Vault {
        Vault { kind, lines: Vec::new() }
    }

    /// Reads a vault file.
    ///
    /// # Errors
    /// I/O, or a malformed line (named by number).
    pub fn load(path: &Path, kind: VaultKind) -> Result<Vault> {
        let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
        Vault::parse(&text, path, kind)
    }

    /// Parses vault text; `path` names it in errors.
    ///
    /// # Errors
    /// A line that is neither blank, a comment, nor `user:base64`; a user listed twice; more
    /// entries than the vault may hold.
    pub fn parse(text: &str, path: &Path, kind: VaultKind) -> Result<Vault> {
        let mut vault = Vault::new(kind);
        let format =
            |line: usize, detail: String| CryptoError::Format { path: path.to_owned(), line: Some(line), detail };
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                vault.lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let (user, secret) =
                trimmed.split_once(':').ok_or_else(|| format(i + 1, "expected user:base64".to_owned()))?;
            check_user(user).map_err(|e| format(i + 1, e.to_string()))?;
            if decode_block(secret).map_or(true, |b| b.len() < crate::aes::MIN_LEN) {
                return Err(format(i + 1, format!("the secret of {user:?} is not base64 of an encrypted password")));
            }
            if vault.users().contains(&user) {
                return Err(format(i + 1, format!("user {user:?} is listed twice")));
            }
            vault.lines.push(Line::Entry { user: user.to_owned(), secret: secret.to_owned() });
        }
        if vault.users().len() > kind.max_entries() {
            return Err(format(
                text.lines().count(),
                format!("{} entries, at most {} allowed", vault.users().len(), kind.max_entries()),
            ));
        }
        Ok(vault)
    }

    /// The user names, in file order.
    pub fn users(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Entry { user, .. } => Some(user.as_str()),
                Line::Other(_) => None,
            })
            .collect()
    }

    fn secret(&self, user: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| match l {
            Line::Entry { user: u, secret } if u == user => Some(secret.as_str()),
            _ => None,
        })
    }

    /// The password of `user`, `None` when the vault has no such user.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] when the entry does not decrypt with `master` (another master
    /// key, or a damaged entry), or the password is not UTF-8.
    pub fn password(&self, master: &MasterKey, user: &str) -> Result<Option<String>> {
        let Some(secret) = self.secret(user) else { return Ok(None) };
        let what = format!("the vault entry of user {user:?}");
        let data = decode_block(secret)
            .map_err(|_| CryptoError::Decrypt { what: what.clone(), reason: "not base64".to_owned() })?;
        let plain = decrypt(master, Cipher::Aes256Gcm, &data, &what)?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| CryptoError::Decrypt { what, reason: "the password is not UTF-8".to_owned() })
    }

    fn seal(master: &MasterKey, password: &str) -> Result<String> {
        if password.len() > MAX_PASSWORD {
            return Err(CryptoError::Invalid(format!("a password may have at most {MAX_PASSWORD} bytes")));
        }
        Ok(encode_block(&encrypt(master, Cipher::Aes256Gcm, password.as_bytes())?))
    }

    /// Adds `user` at the end.
    ///
    /// # Errors
    /// The user exists, the vault is full, or the name or password is invalid.
    pub fn add(&mut self, master: &MasterKey, user: &str, password: &str) -> Result<()> {
        check_user(user)?;
        if self.secret(user).is_some() {
            return Err(CryptoError::Invalid(format!("user {user:?} already exists")));
        }
        if self.users().len() >= self.kind.max_entries() {
            return Err(CryptoError::Invalid(format!("the vault is full ({} users)", self.kind.max_entries())));
        }
        let secret = Vault::seal(master, password)?;
        self.lines.push(Line::Entry { user: user.to_owned(), secret });
        Ok(())
    }

    /// Replaces the password of `user`, keeping its place.
    ///
    /// # Errors
    /// No such user, or an invalid password.
    pub fn set_password(&mut self, master: &MasterKey, user: &str, password: &str) -> Result<()> {
        let sealed = Vault::seal(master, password)?;
        for line in &mut self.lines {
            if let Line::Entry { user: u, secret } = line {
                if u == user {
                    *secret = sealed;
                    return Ok(());
                }
            }
        }
        Err(CryptoError::Invalid(format!("user {user:?} does not exist")))
    }

    /// Removes `user`.
    ///
    /// # Errors
    /// No such user.
    pub fn remove(&mut self, user: &str) -> Result<()> {
        let before = self.lines.len();
        self.lines.retain(|l| !matches!(l, Line::Entry { user: u, .. } if u == user));
        if self.lines.len() == before {
            return Err(CryptoError::Invalid(format!("user {user:?} does not exist")));
        }
        Ok(())
    }

    /// The file text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Entry { user, secret } => out.push_str(&format!("{user}:{secret}\n")),
                Line::Other(text) => {
                    out.push_str(text);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Writes the vault to `path` atomically, mode 0600.
    ///
    /// # Errors
    /// I/O.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, |w| {
            std::io::Write::write_all(w, self.to_text().as_bytes()).map_err(io_err("writing", path))
        })
    }

    /// The vault's path-independent kind.
    pub fn kind(&self) -> VaultKind {
        self.kind
    }
}
