//! Manifests: PostgreSQL's `backup_manifest` (JSON), checked against what was received, and
//! upstream's derived files, `backup.manifest` (`path,sha512` lines) and `backup.sha512`
//! (`<sha512> *./path` lines, like `sha512sum`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pgmoneta_core::Lsn;
use pgmoneta_crypto::{crc32c_append, hex, HashAlgorithm, Hasher};

use crate::error::{Result, StorageError};

/// The name of upstream's derived manifest in a backup directory.
pub const BACKUP_MANIFEST: &str = "backup.manifest";
/// The name of the checksum file in a backup directory.
pub const BACKUP_SHA512: &str = "backup.sha512";

/// One file of PostgreSQL's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgManifestFile {
    /// The path relative to the data directory (tablespace files under `pg_tblspc/<oid>/`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// `CRC32C`, `SHA256`, `SHA512`, ... or `NONE`.
    pub checksum_algorithm: String,
    /// Hex checksum (empty for `NONE`).
    pub checksum: String,
    /// `Last-Modified` as PostgreSQL writes it (`2026-11-28 17:09:21 GMT`); empty when unknown.
    pub last_modified: String,
}

/// A WAL range of PostgreSQL's manifest: what recovery needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalRange {
    /// Timeline.
    pub timeline: u32,
    /// Start.
    pub start: Lsn,
    /// End.
    pub end: Lsn,
}

/// PostgreSQL's `backup_manifest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgManifest {
    /// Format version (1; 2 from PostgreSQL 17, with the system identifier).
    pub version: u32,
    /// The system identifier (version 2).
    pub system_identifier: Option<u64>,
    /// The files, in the manifest's order.
    pub files: Vec<PgManifestFile>,
    /// WAL ranges.
    pub wal_ranges: Vec<WalRange>,
}

fn field<'a>(v: &'a serde_json::Value, key: &str, at: &str) -> Result<&'a serde_json::Value> {
    v.get(key).ok_or_else(|| StorageError::corrupt("backup_manifest", format!("{at}: no \"{key}\"")))
}

fn text<'a>(v: &'a serde_json::Value, key: &str, at: &str) -> Result<&'a str> {
    field(v, key, at)?
        .as_str()
        .ok_or_else(|| StorageError::corrupt("backup_manifest", format!("{at}: \"{key}\" is not a string")))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl PgManifest {
    /// Parses a manifest and checks its own SHA-256 (`Manifest-Checksum`, over everything before
    /// that line).
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for invalid JSON, missing fields or a checksum mismatch.
    pub fn parse(bytes: &[u8]) -> Result<PgManifest> {
        let bad = |why: String| StorageError::corrupt("backup_manifest", why);
        let marker = b"\"Manifest-Checksum\"";
        let pos =
            bytes.windows(marker.len()).rposition(|w| w == marker).ok_or_else(|| bad("no Manifest-Checksum".into()))?;
        let line_start = bytes[..pos].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let mut h = Hasher::new(HashAlgorithm::Sha256);
        h.update(&bytes[..line_start]);
        let want = text(&doc, "Manifest-Checksum", "manifest")?;
        if !h.finish_hex().eq_ignore_ascii_case(want) {
            return Err(bad("its Manifest-Checksum does not match its contents".into()));
        }
        let version = field(&doc, "PostgreSQL-Backup-Manifest-Version", "manifest")?
            .as_u64()
            .ok_or_else(|| bad("version is not a number".into()))? as u32;
        let system_identifier = doc.get("System-Identifier").and_then(serde_json::Value::as_u64);
        let mut files = Vec::new();
        for (i, f) in field(&doc, "Files", "manifest")?
            .as_array()
            .ok_or_else(|| bad("\"Files\" is not an array".into()))?
            .iter()
            .enumerate()
        {
            let at = format!("file {i}");
            let path = match f.get("Path").and_then(serde_json::Value::as_str) {
                Some(p) => p.to_owned(),
                None => {
                    let encoded = text(f, "Encoded-Path", &at)?;
                    let raw = decode_hex(encoded).ok_or_else(|| bad(format!("{at}: Encoded-Path is not hex")))?;
                    String::from_utf8(raw).map_err(|_| bad(format!("{at}: a path that is not UTF-8")))?
                }
            };
            let size = field(f, "Size", &at)?.as_u64().ok_or_else(|| bad(format!("{at}: Size is not a number")))?;
            let checksum_algorithm = f.get("Checksum-Algorithm").and_then(|v| v.as_str()).unwrap_or("NONE").to_owned();
            let checksum = f.get("Checksum").and_then(|v| v.as_str()).unwrap_or("").to_ascii_lowercase();
            let last_modified = f.get("Last-Modified").and_then(|v| v.as_str()).unwrap_or("").to_owned();
            files.push(PgManifestFile { path, size, checksum_algorithm, checksum, last_modified });
        }
        let mut wal_ranges = Vec::new();
        if let Some(ranges) = doc.get("WAL-Ranges").and_then(|v| v.as_array()) {
            for (i, r) in ranges.iter().enumerate() {
                let at = format!("WAL range {i}");
                let lsn =
                    |k: &str| -> Result<Lsn> { text(r, k, &at)?.parse().map_err(|e| bad(format!("{at}: {k}: {e}"))) };
                wal_ranges.push(WalRange {
                    timeline: field(r, "Timeline", &at)?.as_u64().unwrap_or(0) as u32,
                    start: lsn("Start-LSN")?,
                    end: lsn("End-LSN")?,
                });
            }
        }
        Ok(PgManifest { version, system_identifier, files, wal_ranges })
    }

    /// The manifest as PostgreSQL writes it: one file per line, then the WAL ranges, then the
    /// SHA-256 of everything before the `Manifest-Checksum` line. Paths that are not valid
    /// JSON-safe UTF-8 are written hex-encoded (`Encoded-Path`); a file without a modification
    /// time gets `fallback_time`.
    pub fn to_bytes(&self, fallback_time: &str) -> Vec<u8> {
        let mut out = String::new();
        let _ = writeln!(out, "{{ \"PostgreSQL-Backup-Manifest-Version\": {},", self.version.max(1));
        if let Some(id) = self.system_identifier.filter(|_| self.version >= 2) {
            let _ = writeln!(out, "\"System-Identifier\": {id},");
        }
        out.push_str("\"Files\": [");
        for (i, f) in self.files.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            if f.path.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
                let _ = write!(out, "{{ \"Path\": \"{}\", ", f.path);
            } else {
                let _ = write!(out, "{{ \"Encoded-Path\": \"{}\", ", hex(f.path.as_bytes()));
            }
            let modified = if f.last_modified.is_empty() { fallback_time } else { &f.last_modified };
            let _ = write!(out, "\"Size\": {}, \"Last-Modified\": \"{modified}\"", f.size);
            if !f.checksum_algorithm.is_empty() && f.checksum_algorithm != "NONE" {
                let _ = write!(
                    out,
                    ", \"Checksum-Algorithm\": \"{}\", \"Checksum\": \"{}\"",
                    f.checksum_algorithm, f.checksum
                );
            }
            out.push_str(" }");
        }
        out.push_str(" ],\n\"WAL-Ranges\": [");
        for (i, r) in self.wal_ranges.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            let _ = write!(
                out,
                "{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}",
                r.timeline, r.start, r.end
            );
        }
        out.push_str(" ],\n");
        let mut h = Hasher::new(HashAlgorithm::Sha256);
        h.update(out.as_bytes());
        let _ = writeln!(out, "\"Manifest-Checksum\": \"{}\"}}", h.finish_hex());
        out.into_bytes()
    }

    /// The files by path.
    pub fn by_path(&self) -> BTreeMap<&str, &PgManifestFile> {
        self.files.iter().map(|f| (f.path.as_str(), f)).collect()
    }
}

/// The checksum `backup.manifest` holds for each file's plain bytes: the `manifest` setting,
/// recorded per backup in `backup.info` (`HASH_ALGORITHM`, with upstream's codes) and visible
/// in `backup.manifest` itself by the checksums' length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestAlgorithm {
    /// SHA-512: what upstream pgmoneta writes and verifies.
    #[default]
    Sha512,
    /// SHA-256: about three times as fast on a CPU with SHA instructions.
    Sha256,
    /// CRC32C, as PostgreSQL's `backup_manifest` has by default: nearly free.
    Crc32c,
}

impl ManifestAlgorithm {
    /// Every algorithm, the default first.
    pub const ALL: [ManifestAlgorithm; 3] =
        [ManifestAlgorithm::Sha512, ManifestAlgorithm::Sha256, ManifestAlgorithm::Crc32c];

    /// The setting's value: `sha512`, `sha256`, `crc32c`.
    pub fn name(self) -> &'static str {
        match self {
            ManifestAlgorithm::Sha512 => "sha512",
            ManifestAlgorithm::Sha256 => "sha256",
            ManifestAlgorithm::Crc32c => "crc32c",
        }
    }

    /// From a setting's value, in any case (`SHA512`, `crc32c`).
    pub fn parse(name: &str) -> Option<ManifestAlgorithm> {
        ManifestAlgorithm::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The name PostgreSQL's manifest uses (`SHA512`, `SHA256`, `CRC32C`).
    pub fn pg_name(self) -> &'static str {
        match self {
            ManifestAlgorithm::Sha512 => "SHA512",
            ManifestAlgorithm::Sha256 => "SHA256",
            ManifestAlgorithm::Crc32c => "CRC32C",
        }
    }

    /// Upstream's code for it in `backup.info`'s `HASH_ALGORITHM` (1 CRC32C, 3 SHA-256,
    /// 5 SHA-512).
    pub fn code(self) -> u32 {
        match self {
            ManifestAlgorithm::Sha512 => 5,
            ManifestAlgorithm::Sha256 => 3,
            ManifestAlgorithm::Crc32c => 1,
        }
    }

    /// From upstream's code; 0 (upstream's "default") is SHA-512. `None` for SHA-224 (2) and
    /// SHA-384 (4), which this program does not compute, and anything else.
    pub fn from_code(code: u32) -> Option<ManifestAlgorithm> {
        match code {
            0 | 5 => Some(ManifestAlgorithm::Sha512),
            3 => Some(ManifestAlgorithm::Sha256),
            1 => Some(ManifestAlgorithm::Crc32c),
            _ => None,
        }
    }

    /// Hex digits of one checksum.
    pub fn hex_len(self) -> usize {
        match self {
            ManifestAlgorithm::Sha512 => 128,
            ManifestAlgorithm::Sha256 => 64,
            ManifestAlgorithm::Crc32c => 8,
        }
    }

    /// A streaming checksum of this algorithm, in `backup.manifest`'s notation.
    pub fn checksum(self) -> ManifestChecksum {
        match self {
            ManifestAlgorithm::Sha512 => ManifestChecksum::Sha(Box::new(Hasher::new(HashAlgorithm::Sha512))),
            ManifestAlgorithm::Sha256 => ManifestChecksum::Sha(Box::new(Hasher::new(HashAlgorithm::Sha256))),
            ManifestAlgorithm::Crc32c => ManifestChecksum::Crc32c(0),
        }
    }

    /// The checksum of `data`, in hex.
    pub fn digest_hex(self, data: &[u8]) -> String {
        let mut c = self.checksum();
        c.update(data);
        c.finish_hex()
    }
}

impl std::fmt::Display for ManifestAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Computes, while a file streams through, the checksum a manifest entry names.
#[derive(Debug)]
pub enum ManifestChecksum {
    /// Nothing to check.
    None,
    /// CRC32C, PostgreSQL's default.
    Crc32c(u32),
    /// A SHA-2 digest.
    Sha(Box<Hasher>),
}

impl ManifestChecksum {
    /// A checker for `algorithm` as the manifest names it.
    ///
    /// # Errors
    /// [`StorageError::Invalid`] for an algorithm this program does not compute.
    pub fn new(algorithm: &str) -> Result<ManifestChecksum> {
        Ok(match algorithm {
            "NONE" | "" => ManifestChecksum::None,
            "CRC32C" => ManifestChecksum::Crc32c(0),
            "SHA256" => ManifestChecksum::Sha(Box::new(Hasher::new(HashAlgorithm::Sha256))),
            "SHA512" => ManifestChecksum::Sha(Box::new(Hasher::new(HashAlgorithm::Sha512))),
            other => {
                return Err(StorageError::Invalid(format!("manifest checksum algorithm {other} is not supported")))
            }
        })
    }

    /// Feeds data.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            ManifestChecksum::None => {}
            ManifestChecksum::Crc32c(c) => *c = crc32c_append(*c, data),
            ManifestChecksum::Sha(h) => h.update(data),
        }
    }

    /// The checksum in the manifest's notation (CRC32C: its bytes in little-endian order).
    pub fn finish_hex(self) -> String {
        match self {
            ManifestChecksum::None => String::new(),
            ManifestChecksum::Crc32c(c) => hex(&c.to_le_bytes()),
            ManifestChecksum::Sha(h) => (*h).finish_hex(),
        }
    }
}

/// A sink that checksums what is written to it.
impl std::io::Write for ManifestChecksum {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Upstream's `backup.manifest`: `path,checksum` per data file, paths as in PostgreSQL's
/// manifest, the checksum of the plain file in the backup's [`ManifestAlgorithm`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupManifest {
    /// Path to checksum (hex) of the plain file.
    pub files: BTreeMap<String, String>,
    /// The checksums' algorithm (read from their length).
    pub algorithm: ManifestAlgorithm,
}

impl BackupManifest {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (p, h) in &self.files {
            let _ = writeln!(s, "{p},{h}");
        }
        s
    }

    /// Parses the file; `path` names it in errors. The algorithm is the one whose checksums
    /// have the length of the first line's (SHA-512 for an empty file).
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for a line without a comma, whose checksum is not hex or not
    /// of the others' length, or whose path holds a control character (no file of a backup
    /// has one).
    pub fn parse(text: &str, path: &str) -> Result<BackupManifest> {
        let mut files = BTreeMap::new();
        let mut algorithm = None;
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let (p, h) = line
                .rsplit_once(',')
                .ok_or_else(|| StorageError::corrupt(path, format!("line {}: expected path,checksum", n + 1)))?;
            check_entry(p, h, path, n + 1)?;
            let a = match algorithm {
                Some(a) => a,
                None => *algorithm.insert(
                    ManifestAlgorithm::ALL.into_iter().find(|a| a.hex_len() == h.len()).ok_or_else(|| {
                        StorageError::corrupt(
                            path,
                            format!(
                                "line {}: a checksum of {} digits is none of SHA-512, SHA-256, CRC32C",
                                n + 1,
                                h.len()
                            ),
                        )
                    })?,
                ),
            };
            if h.len() != a.hex_len() {
                return Err(StorageError::corrupt(
                    path,
                    format!("line {}: a checksum of {} digits among {a} checksums of {}", n + 1, h.len(), a.hex_len()),
                ));
            }
            files.insert(p.to_owned(), h.to_owned());
        }
        Ok(BackupManifest { files, algorithm: algorithm.unwrap_or_default() })
    }
}

/// A checksum as the repository's text files hold it: hexadecimal digits, at least one.
fn is_hex(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One `path`/`checksum` entry of a checksum file (`file`, line `line`): the checksum is
/// hexadecimal and the path has no control character.
fn check_entry(p: &str, h: &str, file: &str, line: usize) -> Result<()> {
    if !is_hex(h) {
        return Err(StorageError::corrupt(file, format!("line {line}: the checksum {h:?} is not hexadecimal")));
    }
    if p.chars().any(char::is_control) {
        return Err(StorageError::corrupt(file, format!("line {line}: the path {p:?} holds a control character")));
    }
    Ok(())
}

/// `backup.sha512`: the SHA-512 of every stored file of a backup, paths relative to the backup
/// directory (`data/base/1/1259.zstd`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sha512Sums {
    /// Path to hex digest.
    pub files: BTreeMap<String, String>,
}

/// `path` relative to the backup: every leading `./` and `/` goes, in any order (`/./a` and
/// `.//a` are both `a`), so that writing `./` back in front reads as the same path.
fn strip_leading_dots(mut path: &str) -> &str {
    loop {
        let rest = path.trim_start_matches('/');
        let rest = rest.strip_prefix("./").unwrap_or(rest);
        if rest.len() == path.len() {
            return path;
        }
        path = rest;
    }
}

impl Sha512Sums {
    /// The file's text, in `sha512sum` form: `<hex> *./<path>`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (p, h) in &self.files {
            let _ = writeln!(s, "{h} *./{p}");
        }
        s
    }

    /// Parses the file; `path` names it in errors.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for a line not of the form `<hex> *<path>`.
    pub fn parse(text: &str, path: &str) -> Result<Sha512Sums> {
        let mut files = BTreeMap::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let (h, p) = line
                .split_once(" *")
                .or_else(|| line.split_once("  "))
                .ok_or_else(|| StorageError::corrupt(path, format!("line {}: expected '<sha512> *<path>'", n + 1)))?;
            let p = strip_leading_dots(p);
            check_entry(p, h, path, n + 1)?;
            files.insert(p.to_owned(), h.to_owned());
        }
        Ok(Sha512Sums { files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_manifest_reads_back_and_checks_its_own_checksum() {
        let m = PgManifest {
            version: 2,
            system_identifier: Some(7_400_000_000_000_000_001),
            files: vec![
                PgManifestFile {
                    path: "base/5/16384".into(),
                    size: 8192,
                    checksum_algorithm: "CRC32C".into(),
                    checksum: "0a0b0c0d".into(),
                    last_modified: "2026-11-28 10:00:00 GMT".into(),
                },
                PgManifestFile {
                    path: "odd \"name\"\u{e9}".into(),
                    size: 0,
                    checksum_algorithm: "NONE".into(),
                    checksum: String::new(),
                    last_modified: String::new(),
                },
            ],
            wal_ranges: vec![WalRange { timeline: 1, start: Lsn(0x2000028), end: Lsn(0x2000100) }],
        };
        let bytes = m.to_bytes("2026-11-28 11:00:00 GMT");
        let back = PgManifest::parse(&bytes).unwrap();
        assert_eq!(back.files[0], m.files[0]);
        assert_eq!(back.files[1].path, m.files[1].path);
        assert_eq!(back.files[1].last_modified, "2026-11-28 11:00:00 GMT");
        assert_eq!((back.version, back.system_identifier, back.wal_ranges), (2, m.system_identifier, m.wal_ranges));
        let mut damaged = bytes.clone();
        let at = damaged.windows(5).position(|w| w == b"16384").unwrap();
        damaged[at] = b'7';
        assert!(PgManifest::parse(&damaged).is_err());
    }

    fn manifest_text(files: &str) -> Vec<u8> {
        let body = format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{files}\n],\n\"WAL-Ranges\": [\n{{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }}\n],\n"
        );
        let mut h = Hasher::new(HashAlgorithm::Sha256);
        h.update(body.as_bytes());
        format!("{body}\"Manifest-Checksum\": \"{}\"}}\n", h.finish_hex()).into_bytes()
    }

    #[test]
    fn parses_and_checks_its_own_checksum() {
        let crc = {
            let mut c = ManifestChecksum::new("CRC32C").unwrap();
            c.update(b"hello");
            c.finish_hex()
        };
        let text = manifest_text(&format!(
            "{{ \"Path\": \"base/1/1259\", \"Size\": 5, \"Last-Modified\": \"2026-11-28 10:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{crc}\" }},\n{{ \"Encoded-Path\": \"6162\", \"Size\": 0, \"Last-Modified\": \"2026-11-28 10:00:00 GMT\" }}"
        ));
        let m = PgManifest::parse(&text).unwrap();
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.files[1].path, "ab");
        assert_eq!(m.wal_ranges[0].end, "0/2000100".parse().unwrap());
        let mut damaged = text.clone();
        let at = damaged.iter().position(|&b| b == b'5').unwrap();
        damaged[at] = b'6';
        assert!(PgManifest::parse(&damaged).unwrap_err().to_string().contains("Manifest-Checksum does not match"));
    }

    #[test]
    fn crc32c_is_written_as_postgresql_writes_it() {
        // PostgreSQL stores the CRC's bytes in memory order; "123456789" has CRC32C e3069283.
        let mut c = ManifestChecksum::new("CRC32C").unwrap();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish_hex(), "839206e3");
    }

    #[test]
    fn derived_files_roundtrip() {
        let mut m = BackupManifest::default();
        m.files.insert("base/1/1259".into(), "ab".repeat(64));
        m.files.insert("global/pg_control".into(), "cd".repeat(64));
        assert_eq!(BackupManifest::parse(&m.to_text(), "m").unwrap(), m);
        let mut s = Sha512Sums::default();
        s.files.insert("data/base/1/1259.zstd".into(), "ef".repeat(64));
        let text = s.to_text();
        assert!(text.starts_with(&format!("{} *./data/base/1/1259.zstd\n", "ef".repeat(64))));
        assert_eq!(Sha512Sums::parse(&text, "s").unwrap(), s);
    }

    #[test]
    fn a_manifest_says_its_algorithm_by_its_checksums_length() {
        for a in ManifestAlgorithm::ALL {
            assert_eq!(ManifestAlgorithm::parse(&a.name().to_uppercase()), Some(a));
            assert_eq!(ManifestAlgorithm::from_code(a.code()), Some(a));
            assert_eq!(ManifestChecksum::new(a.pg_name()).unwrap().finish_hex(), a.checksum().finish_hex());
            let mut m = BackupManifest { algorithm: a, ..Default::default() };
            m.files.insert("base/1/1259".into(), a.digest_hex(b"one"));
            m.files.insert("global/pg_control".into(), a.digest_hex(b"two"));
            assert_eq!(m.files["base/1/1259"].len(), a.hex_len());
            assert_eq!(BackupManifest::parse(&m.to_text(), "m").unwrap(), m, "{a}");
        }
        assert_eq!(ManifestAlgorithm::from_code(0), Some(ManifestAlgorithm::Sha512));
        assert_eq!(ManifestAlgorithm::from_code(2), None);
        assert_eq!(ManifestAlgorithm::Crc32c.digest_hex(b"123456789"), "839206e3");
        let mixed = format!("a,{}\nb,{}\n", "ab".repeat(64), "cd".repeat(4));
        let e = BackupManifest::parse(&mixed, "x/backup.manifest").unwrap_err().to_string();
        assert!(e.contains("x/backup.manifest") && e.contains("line 2") && e.contains("sha512"), "{e}");
        let odd = format!("a,{}\n", "ab".repeat(28));
        let e = BackupManifest::parse(&odd, "m").unwrap_err().to_string();
        assert!(e.contains("56 digits"), "{e}");
        assert_eq!(BackupManifest::parse("", "m").unwrap().algorithm, ManifestAlgorithm::Sha512);
    }

    #[test]
    fn leading_slashes_and_dots_name_the_same_file() {
        let h = "ab".repeat(64);
        for written in ["a/b", "./a/b", "/a/b", "//./a/b", ".//a/b", "././/a/b"] {
            let s = Sha512Sums::parse(&format!("{h} *{written}\n"), "s").unwrap();
            assert_eq!(s.files.keys().collect::<Vec<_>>(), ["a/b"], "{written}");
        }
        // A dot that is part of the name stays.
        let s = Sha512Sums::parse(&format!("{h} *./.hidden\n"), "s").unwrap();
        assert_eq!(s.files.keys().collect::<Vec<_>>(), [".hidden"]);
    }
}
