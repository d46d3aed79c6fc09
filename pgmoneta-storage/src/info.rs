//! `backup.info`: a backup's metadata, `KEY=value` lines in upstream's order.

use std::fmt::Write as _;

use pgmoneta_core::Lsn;

use crate::error::{Result, StorageError};
use crate::manifest::ManifestAlgorithm;

/// The name of the metadata file in a backup directory.
pub const BACKUP_INFO: &str = "backup.info";

/// Full or incremental (`TYPE` 0 or 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum BackupType {
    /// A full backup.
    #[default]
    Full,
    /// An incremental backup on top of `PARENT`.
    Incremental,
}

/// A tablespace of a backup: stored under `tblspc_<name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TablespaceEntry {
    /// The directory name in the backup, `tblspc_<name>` (upstream's `TABLESPACE<i>`).
    pub dir: String,
    /// The OID, as text.
    pub oid: String,
    /// The tablespace's location on the server.
    pub path: String,
}

/// Seconds spent in each phase (upstream's `*_ELAPSED` keys).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[allow(missing_docs)] // one field per upstream key, named after it
pub struct Elapsed {
    pub total: f64,
    pub basebackup: f64,
    pub hash: f64,
    pub compression_zstd: f64,
    pub compression_gzip: f64,
    pub compression_bzip2: f64,
    pub compression_lz4: f64,
    pub encryption: f64,
    pub linking: f64,
    pub manifest: f64,
    pub remote_ssh: f64,
    pub remote_s3: f64,
    pub remote_azure: f64,
}

/// Everything `backup.info` holds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BackupInfo {
    /// The version of the program that wrote it.
    pub pgmoneta_version: String,
    /// `STATUS=1`: the backup is complete and restorable.
    pub valid: bool,
    /// The label, `YYYYMMDDhhmmss`.
    pub label: String,
    /// The first WAL segment the backup needs (from `backup_label`).
    pub wal: String,
    /// Bytes stored in the repository.
    pub backup_size: u64,
    /// Bytes of the restored data directory, `pg_wal` excluded.
    pub restore_size: u64,
    /// The size of the largest file, restored.
    pub biggest_file: u64,
    /// Phase durations.
    pub elapsed: Elapsed,
    /// PostgreSQL major version.
    pub major_version: u32,
    /// PostgreSQL minor version.
    pub minor_version: u32,
    /// Kept by `retain`: retention and plain `delete` leave it alone.
    pub keep: bool,
    /// Upstream's compression code (0 none, 17-20 client, 33-35 server).
    pub compression: u8,
    /// Upstream's encryption code (0 none, 1-3 AES-256/192/128-GCM).
    pub encryption: u8,
    /// Tablespaces other than the main data directory.
    pub tablespaces: Vec<TablespaceEntry>,
    /// Where the backup's WAL starts (the checkpoint's redo point).
    pub start_lsn: Lsn,
    /// Where the backup's WAL ends: recovery must reach it.
    pub end_lsn: Lsn,
    /// The backup checkpoint's location.
    pub checkpoint_lsn: Lsn,
    /// Timeline at the start.
    pub start_timeline: u32,
    /// Timeline at the end.
    pub end_timeline: u32,
    /// Full or incremental.
    pub backup_type: BackupType,
    /// The parent's label, for an incremental backup.
    pub parent: String,
    /// `key|value` pairs joined by `,` (see `annotate`).
    pub comments: String,
    /// Extra files copied (at most 1024 characters kept).
    pub extra: String,
    /// The checksum `backup.manifest` holds (`HASH_ALGORITHM`; SHA-512 when absent).
    pub manifest: ManifestAlgorithm,
}

impl BackupInfo {
    /// The text of the file, keys in upstream's order.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(1024);
        let e = &self.elapsed;
        macro_rules! kv {
            ($k:expr, $v:expr) => {
                let _ = writeln!(s, "{}={}", $k, $v);
            };
        }
        kv!("PGMONETA_VERSION", self.pgmoneta_version);
        kv!("STATUS", u8::from(self.valid));
        kv!("LABEL", self.label);
        kv!("WAL", self.wal);
        kv!("BACKUP", self.backup_size);
        kv!("RESTORE", self.restore_size);
        kv!("BIGGEST_FILE", self.biggest_file);
        for (k, v) in [
            ("ELAPSED", e.total),
            ("BASEBACKUP_ELAPSED", e.basebackup),
            ("HASH_ELAPSED", e.hash),
            ("COMPRESSION_ZSTD_ELAPSED", e.compression_zstd),
            ("COMPRESSION_GZIP_ELAPSED", e.compression_gzip),
            ("COMPRESSION_BZIP2_ELAPSED", e.compression_bzip2),
            ("COMPRESSION_LZ4_ELAPSED", e.compression_lz4),
            ("ENCRYPTION_ELAPSED", e.encryption),
            ("LINKING_ELAPSED", e.linking),
            ("MANIFEST_ELAPSED", e.manifest),
            ("REMOTE_SSH_ELAPSED", e.remote_ssh),
            ("REMOTE_S3_ELAPSED", e.remote_s3),
            ("REMOTE_AZURE_ELAPSED", e.remote_azure),
        ] {
            kv!(k, format!("{v:.4}"));
        }
        kv!("MAJOR_VERSION", self.major_version);
        kv!("MINOR_VERSION", self.minor_version);
        kv!("KEEP", u8::from(self.keep));
        kv!("TABLESPACES", self.tablespaces.len());
        kv!("COMPRESSION", self.compression);
        kv!("ENCRYPTION", self.encryption);
        for (i, t) in self.tablespaces.iter().enumerate() {
            kv!(format!("TABLESPACE{}", i + 1), t.dir);
            kv!(format!("TABLESPACE_OID{}", i + 1), t.oid);
            kv!(format!("TABLESPACE_PATH{}", i + 1), t.path);
        }
        kv!("START_WALPOS", self.start_lsn);
        kv!("END_WALPOS", self.end_lsn);
        kv!("CHKPT_WALPOS", self.checkpoint_lsn);
        kv!("START_TIMELINE", self.start_timeline);
        kv!("END_TIMELINE", self.end_timeline);
        kv!("HASH_ALGORITHM", self.manifest.code());
        kv!("TYPE", if self.backup_type == BackupType::Incremental { 1 } else { 0 });
        kv!("PARENT", self.parent);
        kv!("COMMENTS", self.comments);
        let extra: String = self.extra.chars().take(1024).collect();
        kv!("EXTRA", extra);
        s
    }

    /// Parses the file. Missing keys keep their defaults (upstream's own tests write files
    /// with only a few keys); unknown keys are ignored; a value that does not parse is an error
    /// naming the line. `path` names the file in errors.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for a line without `=` or a bad number, LSN or flag.
    pub fn parse(text: &str, path: &str) -> Result<BackupInfo> {
        let mut info = BackupInfo::default();
        let mut tablespaces: Vec<TablespaceEntry> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| StorageError::corrupt(path, format!("line {}: {why}", n + 1));
            let (key, value) = line.split_once('=').ok_or_else(|| bad(format!("expected KEY=value, got {line:?}")))?;
            let num = |v: &str| v.trim().parse::<u64>().map_err(|_| bad(format!("{key}: {v:?} is not a number")));
            let float = |v: &str| v.trim().parse::<f64>().map_err(|_| bad(format!("{key}: {v:?} is not a number")));
            let lsn = |v: &str| v.trim().parse::<Lsn>().map_err(|e| bad(format!("{key}: {e}")));
            let flag = |v: &str| num(v).map(|n| n == 1);
            let small = |v: &str| {
                num(v).and_then(|n| u32::try_from(n).map_err(|_| bad(format!("{key}: {v:?} is out of range"))))
            };
            let code = |v: &str| {
                num(v).and_then(|n| u8::try_from(n).map_err(|_| bad(format!("{key}: {v:?} is out of range"))))
            };
            let e = &mut info.elapsed;
            match key {
                "PGMONETA_VERSION" => info.pgmoneta_version = value.to_owned(),
                "STATUS" => info.valid = flag(value)?,
                "LABEL" => info.label = value.to_owned(),
                "WAL" => info.wal = value.to_owned(),
                "BACKUP" => info.backup_size = num(value)?,
                "RESTORE" => info.restore_size = num(value)?,
                "BIGGEST_FILE" => info.biggest_file = num(value)?,
                "ELAPSED" => e.total = float(value)?,
                "BASEBACKUP_ELAPSED" => e.basebackup = float(value)?,
                "HASH_ELAPSED" => e.hash = float(value)?,
                "COMPRESSION_ZSTD_ELAPSED" => e.compression_zstd = float(value)?,
                "COMPRESSION_GZIP_ELAPSED" => e.compression_gzip = float(value)?,
                "COMPRESSION_BZIP2_ELAPSED" => e.compression_bzip2 = float(value)?,
                "COMPRESSION_LZ4_ELAPSED" => e.compression_lz4 = float(value)?,
                "ENCRYPTION_ELAPSED" => e.encryption = float(value)?,
                "LINKING_ELAPSED" => e.linking = float(value)?,
                "MANIFEST_ELAPSED" => e.manifest = float(value)?,
                "REMOTE_SSH_ELAPSED" => e.remote_ssh = float(value)?,
                "REMOTE_S3_ELAPSED" => e.remote_s3 = float(value)?,
                "REMOTE_AZURE_ELAPSED" => e.remote_azure = float(value)?,
                "MAJOR_VERSION" => info.major_version = small(value)?,
                "MINOR_VERSION" => info.minor_version = small(value)?,
                "KEEP" => info.keep = flag(value)?,
                "TABLESPACES" => {}
                "COMPRESSION" => {
                    // Old files used 5, 6, 7 for server-side gzip, zstd, lz4.
                    info.compression = match code(value)? {
                        5 => 33,
                        6 => 34,
                        7 => 35,
                        c => c,
                    }
                }
                "ENCRYPTION" => info.encryption = code(value)?,
                "START_WALPOS" => info.start_lsn = lsn(value)?,
                "END_WALPOS" => info.end_lsn = lsn(value)?,
                "CHKPT_WALPOS" => info.checkpoint_lsn = lsn(value)?,
                "START_TIMELINE" => info.start_timeline = small(value)?,
                "END_TIMELINE" => info.end_timeline = small(value)?,
                "HASH_ALGORITHM" => {
                    info.manifest = ManifestAlgorithm::from_code(small(value)?).ok_or_else(|| {
                        bad(format!(
                            "{key}: {value:?} is not SHA-512 (5), SHA-256 (3) or CRC32C (1), the checksums this program computes"
                        ))
                    })?
                }
                "TYPE" => info.backup_type = if num(value)? == 1 { BackupType::Incremental } else { BackupType::Full },
                "PARENT" => info.parent = value.to_owned(),
                "COMMENTS" => info.comments = value.to_owned(),
                "EXTRA" => info.extra = value.to_owned(),
                k => {
                    let slot = |prefix: &str| -> Result<Option<usize>> {
                        let Some(i) = k.strip_prefix(prefix) else { return Ok(None) };
                        let i: usize = i.parse().map_err(|_| bad(format!("{k}: not a tablespace key")))?;
                        if i == 0 || i > 64 {
                            return Err(bad(format!("{k}: tablespace number out of range 1-64")));
                        }
                        Ok(Some(i - 1))
                    };
                    fn entry(all: &mut Vec<TablespaceEntry>, i: usize) -> &mut TablespaceEntry {
                        if all.len() <= i {
                            all.resize(i + 1, TablespaceEntry::default());
                        }
                        &mut all[i]
                    }
                    if let Some(i) = slot("TABLESPACE_OID")? {
                        entry(&mut tablespaces, i).oid = value.to_owned();
                    } else if let Some(i) = slot("TABLESPACE_PATH")? {
                        entry(&mut tablespaces, i).path = value.to_owned();
                    } else if let Some(i) = slot("TABLESPACE")? {
                        entry(&mut tablespaces, i).dir = value.to_owned();
                    }
                }
            }
        }
        info.tablespaces = tablespaces;
        Ok(info)
    }

    /// The comments as `(key, value)` pairs.
    pub fn comment_pairs(&self) -> Vec<(String, String)> {
        self.comments
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('|') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (p.to_owned(), String::new()),
            })
            .collect()
    }
}

/// The name of a backup compression code (`18` -> `zstd`, `34` -> `server-zstd`).
pub fn compression_name(code: i64) -> String {
    let algo = match code & 0x0f {
        1 => "gzip",
        2 => "zstd",
        3 => "lz4",
        4 => "bzip2",
        _ => return "none".into(),
    };
    if code & 0x20 != 0 {
        format!("server-{algo}")
    } else {
        algo.to_owned()
    }
}

/// The name of an encryption code.
pub fn encryption_name(code: i64) -> &'static str {
    match code {
        1 => "aes-256-gcm",
        2 => "aes-192-gcm",
        3 => "aes-128-gcm",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupInfo {
        BackupInfo {
            pgmoneta_version: "0.1.0".into(),
            valid: true,
            label: "20261128101500".into(),
            wal: "000000010000000000000004".into(),
            backup_size: 12345,
            restore_size: 67890,
            biggest_file: 8192,
            elapsed: Elapsed { total: 1.5, basebackup: 1.25, ..Elapsed::default() },
            major_version: 15,
            minor_version: 18,
            keep: false,
            compression: 18,
            encryption: 1,
            tablespaces: vec![TablespaceEntry {
                dir: "tblspc_fast".into(),
                oid: "16390".into(),
                path: "/ssd/ts".into(),
            }],
            start_lsn: "0/4000028".parse().unwrap(),
            end_lsn: "0/4000100".parse().unwrap(),
            checkpoint_lsn: "0/4000060".parse().unwrap(),
            start_timeline: 1,
            end_timeline: 1,
            backup_type: BackupType::Full,
            parent: String::new(),
            comments: "owner|ops,reason|before upgrade".into(),
            extra: String::new(),
            manifest: ManifestAlgorithm::Crc32c,
        }
    }

    #[test]
    fn keys_in_upstream_order_and_roundtrip() {
        let info = sample();
        let text = info.to_text();
        let keys: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "PGMONETA_VERSION",
                "STATUS",
                "LABEL",
                "WAL",
                "BACKUP",
                "RESTORE",
                "BIGGEST_FILE",
                "ELAPSED",
                "BASEBACKUP_ELAPSED",
                "HASH_ELAPSED",
                "COMPRESSION_ZSTD_ELAPSED",
                "COMPRESSION_GZIP_ELAPSED",
                "COMPRESSION_BZIP2_ELAPSED",
                "COMPRESSION_LZ4_ELAPSED",
                "ENCRYPTION_ELAPSED",
                "LINKING_ELAPSED",
                "MANIFEST_ELAPSED",
                "REMOTE_SSH_ELAPSED",
                "REMOTE_S3_ELAPSED",
                "REMOTE_AZURE_ELAPSED",
                "MAJOR_VERSION",
                "MINOR_VERSION",
                "KEEP",
                "TABLESPACES",
                "COMPRESSION",
                "ENCRYPTION",
                "TABLESPACE1",
                "TABLESPACE_OID1",
                "TABLESPACE_PATH1",
                "START_WALPOS",
                "END_WALPOS",
                "CHKPT_WALPOS",
                "START_TIMELINE",
                "END_TIMELINE",
                "HASH_ALGORITHM",
                "TYPE",
                "PARENT",
                "COMMENTS",
                "EXTRA"
            ]
        );
        assert!(text.contains("ELAPSED=1.5000\n") && text.contains("START_WALPOS=0/4000028\n"));
        assert!(text.contains("HASH_ALGORITHM=1\n"), "{text}");
        let without = text.lines().filter(|l| !l.starts_with("HASH_ALGORITHM=")).collect::<Vec<_>>().join("\n");
        assert_eq!(BackupInfo::parse(&without, "b").unwrap().manifest, ManifestAlgorithm::Sha512);
        let sha384 = text.replace("HASH_ALGORITHM=1", "HASH_ALGORITHM=4");
        let e = BackupInfo::parse(&sha384, "x/backup.info").unwrap_err().to_string();
        assert!(e.contains("x/backup.info") && e.contains("HASH_ALGORITHM"), "{e}");
        assert_eq!(BackupInfo::parse(&text, "backup.info").unwrap(), info);
        assert_eq!(info.comment_pairs()[1], ("reason".to_owned(), "before upgrade".to_owned()));
    }

    #[test]
    fn minimal_and_legacy_files_load() {
        let text = "PGMONETA_VERSION=0.22.0\nSTATUS=1\nLABEL=20240101000000\nSTART_WALPOS=0/2000028\nSTART_TIMELINE=1\nCOMPRESSION=6\nFUTURE_KEY=whatever\n";
        let info = BackupInfo::parse(text, "x").unwrap();
        assert!(info.valid);
        assert_eq!(info.label, "20240101000000");
        assert_eq!(info.compression, 34);
        assert_eq!(info.start_lsn, "0/2000028".parse().unwrap());
    }

    #[test]
    fn bad_values_name_the_line() {
        for (text, want) in [
            ("STATUS=1\nBACKUP=12x\n", "line 2: BACKUP: \"12x\" is not a number"),
            ("START_WALPOS=zz\n", "line 1: START_WALPOS"),
            ("garbage\n", "line 1: expected KEY=value"),
            ("TABLESPACE_OID99=1\n", "out of range"),
        ] {
            let err = BackupInfo::parse(text, "b/backup.info").unwrap_err().to_string();
            assert!(err.contains("b/backup.info") && err.contains(want), "{err}");
        }
    }
}
