//! Incremental backups of PostgreSQL 14 to 16, which have no incremental `BASE_BACKUP`, taken
//! through SQL without any server extension.
//!
//! Between `pg_backup_start` and `pg_backup_stop` (`pg_start_backup`/`pg_stop_backup` on 14,
//! non-exclusive, in one session), the data directory is listed with `pg_ls_dir` and
//! `pg_stat_file` and read with `pg_read_binary_file`. The blocks that changed since the parent
//! backup started come from the WAL archive ([`crate::summary`]): a relation segment the parent
//! holds is stored as `INCREMENTAL.<name>` in PostgreSQL's incremental format with just those
//! blocks; other files are copied whole. The WAL from the backup's start to its end is copied
//! from the archive into `pg_wal`, and `backup_label` names the parent's position
//! (`INCREMENTAL FROM LSN`/`TLI`), as PostgreSQL 17 writes it. The files go through the same
//! pipeline as a streamed backup (hashing, compression, encryption, workers, links), and a
//! `backup_manifest` in PostgreSQL's format is written from what was read.
//!
//! The role needs `EXECUTE` on the backup functions and on `pg_ls_dir(text, boolean, boolean)`,
//! `pg_stat_file(text, boolean)` and `pg_read_binary_file(text, bigint, bigint, boolean)`;
//! [`check_grants`] names what is missing. Tablespaces other than the default ones are not
//! supported here (PostgreSQL 17 and later back them up incrementally).

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmoneta_core::{Lsn, PgVersion, TimelineId, WalSegment, WalSegmentSize};
use pgmoneta_crypto::{Cipher, MasterKey};
use pgmoneta_wire::replication::ArchiveInfo;
use pgmoneta_wire::wal::summary::{BlockRefTable, RelFork};
use pgmoneta_wire::PgConnection;

use crate::backup::{check_parent, pipeline, BackupOptions, Fed, SinkWriter};
use crate::error::{Result, StorageError};
use crate::incremental::{IncrementalHeader, PlainReader, BLCKSZ, INCREMENTAL_PREFIX};
use crate::info::BackupInfo;
use crate::layout;
use crate::store::Store;
use crate::summary::{summarize, SummaryOptions};
use crate::tar::TarWriter;

/// Most bytes read with one `pg_read_binary_file` call.
const READ_CHUNK: u64 = 8 << 20;
/// The default tablespace's OID (`base/`).
const DEFAULTTABLESPACE_OID: u32 = 1663;
/// The global tablespace's OID (`global/`).
const GLOBALTABLESPACE_OID: u32 = 1664;

/// Directories whose contents a backup leaves out (the directory itself is kept).
const EXCLUDED_CONTENTS: [&str; 9] = [
    "pg_wal",
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_tblspc",
];

/// Files a backup leaves out, wherever they are.
const EXCLUDED_FILES: [&str; 12] = [
    "postmaster.pid",
    "postmaster.opts",
    "pg_internal.init",
    "current_logfiles",
    "current_logfiles.tmp",
    "postgresql.auto.conf.tmp",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "standby.signal",
    "recovery.signal",
];

/// How an incremental backup through SQL reads the WAL archive.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqlBackupOptions {
    /// The cipher and key of an encrypted WAL archive.
    pub wal_encryption: Option<(Cipher, Arc<MasterKey>)>,
    /// How long to wait for the archive to receive the WAL the backup needs.
    pub wait: Duration,
    /// The master key, to read an encrypted parent's `pg_control` when this backup is not
    /// encrypted itself.
    pub master_key: Option<Arc<MasterKey>>,
}

impl Default for SqlBackupOptions {
    fn default() -> SqlBackupOptions {
        SqlBackupOptions { wal_encryption: None, wait: Duration::from_secs(60), master_key: None }
    }
}

/// The functions the backup role must be able to execute on `version`, as
/// `has_function_privilege` names them.
pub fn required_functions(version: PgVersion) -> Vec<&'static str> {
    let mut f = if version.major() >= 15 {
        vec!["pg_backup_start(text, boolean)", "pg_backup_stop(boolean)"]
    } else {
        vec!["pg_start_backup(text, boolean, boolean)", "pg_stop_backup(boolean, boolean)"]
    };
    f.extend([
        "pg_ls_dir(text, boolean, boolean)",
        "pg_stat_file(text, boolean)",
        "pg_read_binary_file(text, bigint, bigint, boolean)",
        "pg_control_checkpoint()",
        "pg_control_system()",
    ]);
    f
}

/// Checks that the connected role can run every function an incremental backup through SQL
/// uses.
///
/// # Errors
/// [`StorageError::Invalid`] naming each missing grant with the statement that gives it.
pub fn check_grants<S: Read + Write>(conn: &mut PgConnection<S>, version: PgVersion) -> Result<()> {
    let functions = required_functions(version);
    let checks: Vec<String> =
        functions.iter().map(|f| format!("has_function_privilege({}, 'EXECUTE')", literal(f))).collect();
    let row = conn.query_one(&format!("SELECT current_user, {}", checks.join(", ")))?;
    let user = row.get(0)?.unwrap_or_default().to_owned();
    let missing: Vec<String> = functions
        .iter()
        .enumerate()
        .filter(|(i, _)| row.get(i + 1).ok().flatten() != Some("t"))
        .map(|(_, f)| format!("GRANT EXECUTE ON FUNCTION {f} TO {user};"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "role {user} cannot take an incremental backup of PostgreSQL {}: missing {}",
            version.major(),
            missing.join(" ")
        )))
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One entry of the data directory.
#[derive(Clone, Debug)]
struct Listed {
    path: String,
    dir: bool,
    size: u64,
}

fn list_data_directory<S: Read + Write>(conn: &mut PgConnection<S>) -> Result<Vec<Listed>> {
    let excluded = EXCLUDED_CONTENTS.iter().map(|d| literal(d)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "WITH RECURSIVE files(path, isdir, size) AS ( \
           SELECT f, s.isdir, s.size FROM pg_ls_dir('.', true, false) AS f, LATERAL pg_stat_file(f, true) AS s \
           UNION ALL \
           SELECT d.path || '/' || f, s.isdir, s.size \
           FROM files d, LATERAL pg_ls_dir(d.path, true, false) AS f, LATERAL pg_stat_file(d.path || '/' || f, true) AS s \
           WHERE d.isdir AND d.path NOT IN ({excluded}) AND d.path NOT LIKE '%pgsql_tmp%' \
         ) SELECT path, isdir, size FROM files WHERE isdir IS NOT NULL ORDER BY path"
    );
    let mut out = Vec::new();
    for row in conn.query(&sql)? {
        let path = row.get(0)?.unwrap_or_default().to_owned();
        let dir = row.get(1)? == Some("t");
        let size: u64 = row.parse(2)?.unwrap_or(0);
        out.push(Listed { path, dir, size });
    }
    Ok(out)
}

/// Whether a listed file is left out of the backup.
fn excluded(path: &str, unlogged: &BTreeSet<String>) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    if EXCLUDED_FILES.contains(&name) || name.starts_with("pgsql_tmp") {
        return true;
    }
    if let Some((dir, _)) = path.split_once('/') {
        if EXCLUDED_CONTENTS.contains(&dir) {
            return true;
        }
    }
    // Temporary relations, and the forks of unlogged relations other than their init fork.
    if let Some(rel) = relation_file(path) {
        if rel.temp {
            return true;
        }
        let key = format!("{}/{}", rel.dir, rel.relnumber);
        return rel.fork != 3 && unlogged.contains(&key);
    }
    false
}

/// A relation segment file's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RelationFile {
    dir: String,
    spc: u32,
    db: u32,
    relnumber: u32,
    fork: u8,
    segno: u32,
    temp: bool,
}

/// Parses `base/<db>/<rel>[_fork][.seg]` and `global/<rel>[_fork][.seg]`.
fn relation_file(path: &str) -> Option<RelationFile> {
    let (dir, name) = path.rsplit_once('/')?;
    let (spc, db) = match dir.split('/').collect::<Vec<_>>().as_slice() {
        ["base", db] => (DEFAULTTABLESPACE_OID, db.parse().ok()?),
        ["global"] => (GLOBALTABLESPACE_OID, 0),
        _ => return None,
    };
    let (temp, name) = match name.strip_prefix('t') {
        Some(rest) => (true, rest.split_once('_')?.1),
        None => (false, name),
    };
    let (base, segno) = match name.split_once('.') {
        Some((b, s)) => (b, s.parse().ok().filter(|s: &u32| *s > 0)?),
        None => (name, 0),
    };
    let (rel, fork) = match base.split_once('_') {
        Some((r, "fsm")) => (r, 1),
        Some((r, "vm")) => (r, 2),
        Some((r, "init")) => (r, 3),
        Some(_) => return None,
        None => (base, 0),
    };
    if rel.is_empty() || !rel.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(RelationFile { dir: dir.to_owned(), spc, db, relnumber: rel.parse().ok()?, fork, segno, temp })
}

/// Reads files through `pg_read_binary_file`, in chunks, padding with zeros what a file no
/// longer has (it shrank or went away during the backup: WAL replay puts it right).
struct SqlFileReader<'c, S: Read + Write> {
    conn: &'c mut PgConnection<S>,
    path: String,
    /// The ranges still to read (offset, length), in order.
    ranges: std::collections::VecDeque<(u64, u64)>,
    /// Data read and not yet returned.
    pending: Vec<u8>,
    at: usize,
    /// Set when a read failed: the server error, reported by the caller.
    error: Option<StorageError>,
}

impl<S: Read + Write> SqlFileReader<'_, S> {
    fn fetch(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let sql = format!("SELECT pg_read_binary_file({}, {offset}, {len}, true)", literal(&self.path));
        let row = self.conn.query_one(&sql)?;
        let mut data = match row.bytes(0) {
            Some(text) => decode_bytea(text).ok_or_else(|| {
                StorageError::Invalid(format!("{}: the server sent bytea in an unexpected form", self.path))
            })?,
            None => Vec::new(),
        };
        data.resize(len as usize, 0);
        Ok(data)
    }
}

impl<S: Read + Write> Read for SqlFileReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            let Some((offset, len)) = self.ranges.pop_front() else { return Ok(0) };
            match self.fetch(offset, len) {
                Ok(d) => {
                    self.pending = d;
                    self.at = 0;
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::other(msg));
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Decodes bytea's hex output (`\x0a0b...`).
fn decode_bytea(text: &[u8]) -> Option<Vec<u8>> {
    let hex = text.strip_prefix(b"\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    hex.chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// Runs of consecutive blocks as byte ranges of at most [`READ_CHUNK`].
fn block_ranges(blocks: &[u32]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        let offset = u64::from(b) * BLCKSZ;
        match out.last_mut() {
            Some((o, l)) if *o + *l == offset && *l + BLCKSZ <= READ_CHUNK => *l += BLCKSZ,
            _ => out.push((offset, BLCKSZ)),
        }
    }
    out
}

fn whole_file_ranges(size: u64) -> Vec<(u64, u64)> {
    (0..size.div_ceil(READ_CHUNK)).map(|i| (i * READ_CHUNK, (size - i * READ_CHUNK).min(READ_CHUNK))).collect()
}

/// How one relation segment is stored: the incremental header when only changed blocks are.
fn incremental_plan(
    rel: &RelationFile,
    size: u64,
    segment_blocks: u32,
    summary: &BlockRefTable,
) -> Option<IncrementalHeader> {
    // Free space map changes are mostly not WAL-logged: the map is always copied whole.
    if size == 0 || size % BLCKSZ != 0 || rel.fork == 1 {
        return None;
    }
    // A database created or dropped since the parent: its files are copied whole.
    if summary.database_recreated(rel.spc, rel.db) {
        return None;
    }
    let blocks = (size / BLCKSZ) as u32;
    let first = rel.segno * segment_blocks;
    let key = RelFork { spc: rel.spc, db: rel.db, rel: rel.relnumber, fork: rel.fork };
    let (limit, changed): (u32, Vec<u32>) = match summary.get(&key) {
        None => (blocks, Vec::new()),
        Some(c) => {
            let limit = c.limit_block.map_or(blocks, |l| l.saturating_sub(first).min(blocks));
            let changed = c.blocks.range(first..first + blocks).map(|b| b - first).collect();
            (limit, changed)
        }
    };
    // Not worth it when most blocks changed.
    if changed.len() as u64 * 10 >= u64::from(blocks) * 9 {
        return None;
    }
    Some(IncrementalHeader { truncation_block_length: limit, blocks: changed })
}

/// Takes an incremental backup of PostgreSQL 14 to 16 on top of `options.parent`, over a
/// normal (not replication) connection, with the server's WAL in `store`'s archive. Returns the
/// `backup.info` written; on failure the backup directory is removed (and the server ends the
/// backup when the session ends).
///
/// # Errors
/// A missing grant, a parent that cannot be built on, user tablespaces, WAL missing from the
/// archive or not archived in time, server and storage failures, cancellation.
pub fn take_incremental<S: Read + Write>(
    conn: &mut PgConnection<S>,
    version: PgVersion,
    minor_version: u32,
    store: Arc<dyn Store>,
    options: &BackupOptions,
    sql: &SqlBackupOptions,
) -> Result<BackupInfo> {
    let parent_label =
        options.parent.clone().ok_or_else(|| StorageError::Invalid("an incremental backup needs a parent".into()))?;
    if version.major() < 14 || version.has_incremental_backup() {
        return Err(StorageError::Invalid(format!(
            "incremental backups through SQL are for PostgreSQL 14 to 16, the server is {}",
            version.major()
        )));
    }
    let backup_dir = layout::backup_dir(&options.server, &options.label.to_string());
    if store.exists(&backup_dir) {
        return Err(StorageError::Invalid(format!("a backup labelled {} already exists", options.label)));
    }
    let parent = check_parent(store.as_ref(), &options.server, &parent_label, version)?;
    // Quoting and bytea decoding below rely on these.
    conn.execute("SET standard_conforming_strings = on")?;
    conn.execute("SET bytea_output = 'hex'")?;
    check_grants(conn, version)?;
    // The parent must be a backup of this cluster.
    let server_id: u64 = conn.query_one("SELECT system_identifier FROM pg_control_system()")?.parse_required(0)?;
    let key = options
        .encryption
        .as_ref()
        .map(|(_, k)| k.clone())
        .or_else(|| sql.master_key.clone())
        .or_else(|| sql.wal_encryption.as_ref().map(|(_, k)| k.clone()));
    let stored_control = crate::stored::stored_path(store.as_ref(), &options.server, &parent, "global/pg_control")?;
    let mut control =
        PlainReader::open(store.as_ref(), &stored_control, Cipher::from_code(parent.encryption), key.as_deref())?;
    let mut id = [0u8; 8];
    control.read_exact(&mut id).map_err(|e| StorageError::corrupt(&stored_control, e.to_string()))?;
    control.finish()?;
    let parent_id = u64::from_le_bytes(id);
    if parent_id != server_id {
        return Err(StorageError::Invalid(format!(
            "backup {} is of another cluster (system identifier {parent_id}, the server's is {server_id})",
            parent.label
        )));
    }
    let tablespaces: u64 = conn
        .query_one("SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')")?
        .parse_required(0)?;
    if tablespaces > 0 {
        return Err(StorageError::Invalid(format!(
            "incremental backups of PostgreSQL {} with tablespaces are not supported; take a full backup",
            version.major()
        )));
    }
    let settings = conn.query_one(
        "SELECT (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), \
                (SELECT setting FROM pg_settings WHERE name = 'segment_size'), \
                (SELECT setting FROM pg_settings WHERE name = 'block_size')",
    )?;
    let wal_segment: u64 = settings.parse_required(0)?;
    let segment_blocks: u32 = settings.parse_required(1)?;
    let block_size: u64 = settings.parse_required(2)?;
    if block_size != BLCKSZ {
        return Err(StorageError::Invalid(format!("block size {block_size} is not supported")));
    }
    let segment_size = WalSegmentSize::new(wal_segment)
        .map_err(|e| StorageError::Invalid(format!("the server's wal_segment_size: {e}")))?;
    store.create_dir(&backup_dir)?;
    let result = run(
        conn,
        version,
        minor_version,
        store.clone(),
        options,
        sql,
        &parent,
        &backup_dir,
        segment_size,
        segment_blocks,
    );
    if result.is_err() {
        if let Err(e) = store.remove(&backup_dir) {
            log::error!("removing the failed backup {backup_dir}: {e}");
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn run<S: Read + Write>(
    conn: &mut PgConnection<S>,
    version: PgVersion,
    minor_version: u32,
    store: Arc<dyn Store>,
    options: &BackupOptions,
    sql: &SqlBackupOptions,
    parent: &BackupInfo,
    backup_dir: &str,
    segment_size: WalSegmentSize,
    segment_blocks: u32,
) -> Result<BackupInfo> {
    let label = literal(&options.label.postgres_label());
    let fast = if options.fast_checkpoint { "true" } else { "false" };
    let start_sql = if version.major() >= 15 {
        format!("SELECT pg_backup_start({label}, {fast})")
    } else {
        format!("SELECT pg_start_backup({label}, {fast}, false)")
    };
    let start: Lsn = conn.query_one(&start_sql)?.parse_required(0)?;
    let timeline: u32 = conn.query_one("SELECT timeline_id FROM pg_control_checkpoint()")?.parse_required(0)?;
    if timeline != parent.start_timeline {
        return Err(StorageError::Invalid(format!(
            "backup {} started on timeline {}, the server is on timeline {timeline}: take a full backup",
            parent.label, parent.start_timeline
        )));
    }
    let (wal_cipher, wal_key) = match &sql.wal_encryption {
        Some((c, k)) => (Some(*c), Some(k.clone())),
        None => (None, None),
    };
    let mut summary_options = SummaryOptions::new(&options.server, timeline, segment_size);
    summary_options.cipher = wal_cipher;
    summary_options.wait = sql.wait;
    let summary = summarize(store.as_ref(), &summary_options, wal_key.as_deref(), parent.start_lsn, start)?;
    let listing = list_data_directory(conn)?;
    let in_parent: BTreeSet<String> = crate::catalog::load_manifest(store.as_ref(), &options.server, &parent.label)?
        .files
        .into_keys()
        .map(|p| crate::incremental::plain_path(&p).unwrap_or(p))
        .collect();
    let unlogged: BTreeSet<String> = listing
        .iter()
        .filter_map(|l| relation_file(&l.path))
        .filter(|r| r.fork == 3 && r.segno == 0)
        .map(|r| format!("{}/{}", r.dir, r.relnumber))
        .collect();
    let estimate: u64 = listing.iter().filter(|l| !l.dir).map(|l| l.size).sum();
    options.progress.done.store(0, std::sync::atomic::Ordering::Relaxed);
    options.progress.total.store(estimate, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let cancel = options.cancel.clone();
    // The files arrive through SQL as they are on the server: server-side compression (which
    // only BASE_BACKUP does) does not apply, and they are compressed here with its algorithm.
    let mut plain = options.clone();
    plain.compression = pgmoneta_compress::Compression::client(options.compression.algorithm);
    let options = &plain;
    pipeline(store.clone(), options, backup_dir, version, minor_version, Some(&parent.label), |sink| {
        sink.start(ArchiveInfo { name: "base.tar".into(), tablespace_oid: None, location: None })?;
        let stop = {
            let mut tar = TarWriter::new(SinkWriter { sink: &mut *sink, buf: Vec::new() });
            let io_err = |e: io::Error| StorageError::Invalid(format!("writing the backup stream: {e}"));
            let mut control = None;
            for entry in &listing {
                if cancel.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(None);
                }
                if entry.dir {
                    if !entry.path.contains("pgsql_tmp") {
                        tar.append_dir(&entry.path, 0o700, now).map_err(io_err)?;
                    }
                    continue;
                }
                if excluded(&entry.path, &unlogged) {
                    continue;
                }
                if entry.path == "global/pg_control" {
                    control = Some(entry.clone());
                    continue;
                }
                let plan = relation_file(&entry.path)
                    .filter(|_| in_parent.contains(&entry.path))
                    .and_then(|r| incremental_plan(&r, entry.size, segment_blocks, &summary));
                append_file(&mut tar, conn, entry, plan, now)?;
            }
            // pg_control last, as PostgreSQL sends it.
            if let Some(c) = control {
                append_file(&mut tar, conn, &c, None, now)?;
            }
            let stop_sql = if version.major() >= 15 {
                "SELECT lsn, labelfile FROM pg_backup_stop(false)"
            } else {
                "SELECT lsn, labelfile FROM pg_stop_backup(false, false)"
            };
            let row = conn.query_one(stop_sql)?;
            let end: Lsn = row.parse_required(0)?;
            let mut label_text = row.get(1)?.unwrap_or_default().to_owned();
            label_text.push_str(&format!(
                "INCREMENTAL FROM LSN: {}\nINCREMENTAL FROM TLI: {}\n",
                parent.start_lsn, parent.start_timeline
            ));
            tar.append_file("backup_label", 0o600, now, label_text.len() as u64, label_text.as_bytes())
                .map_err(io_err)?;
            tar.append_dir("pg_wal/archive_status", 0o700, now).map_err(io_err)?;
            append_wal(&mut tar, store.as_ref(), options, &summary_options, wal_key.as_deref(), start, end)?;
            let mut w = tar.finish().map_err(io_err)?;
            w.flush().map_err(io_err)?;
            end
        };
        sink.finish()?;
        if sink.stopped() {
            return Ok(None);
        }
        Ok(Some(Fed { start: (start, timeline), end: (stop, timeline), manifest: None }))
    })
}

/// Appends one file, whole or (with a plan) as `INCREMENTAL.<name>` with its changed blocks.
fn append_file<W: Write, S: Read + Write>(
    tar: &mut TarWriter<W>,
    conn: &mut PgConnection<S>,
    entry: &Listed,
    plan: Option<IncrementalHeader>,
    mtime: i64,
) -> Result<()> {
    if plan.is_none() && relation_file(&entry.path).is_none() {
        // Not a relation file: WAL replay will not repair it, so it is read as it is now, whole
        // (configuration rewritten since the listing, a file gone), when it is small.
        let sql = format!("SELECT pg_read_binary_file({}, 0, {}, true)", literal(&entry.path), READ_CHUNK + 1);
        let row = conn.query_one(&sql)?;
        let Some(text) = row.bytes(0) else { return Ok(()) };
        let data = decode_bytea(text).ok_or_else(|| {
            StorageError::Invalid(format!("{}: the server sent bytea in an unexpected form", entry.path))
        })?;
        if data.len() as u64 <= READ_CHUNK {
            return tar
                .append_file(&entry.path, 0o600, mtime, data.len() as u64, data.as_slice())
                .map_err(|e| StorageError::Invalid(format!("writing {} to the backup stream: {e}", entry.path)));
        }
    }
    let (name, size, header, ranges) = match plan {
        None => (entry.path.clone(), entry.size, Vec::new(), whole_file_ranges(entry.size)),
        Some(h) => {
            let name = match entry.path.rsplit_once('/') {
                Some((d, n)) => format!("{d}/{INCREMENTAL_PREFIX}{n}"),
                None => format!("{INCREMENTAL_PREFIX}{}", entry.path),
            };
            (name, h.file_size(), h.to_bytes(), block_ranges(&h.blocks))
        }
    };
    let mut reader =
        SqlFileReader { conn, path: entry.path.clone(), ranges: ranges.into(), pending: header, at: 0, error: None };
    let result = tar.append_file(&name, 0o600, mtime, size, &mut reader);
    if let Some(e) = reader.error.take() {
        return Err(e);
    }
    result.map_err(|e| StorageError::Invalid(format!("writing {name} to the backup stream: {e}")))
}

/// Appends the archived WAL from `start` to `end` as `pg_wal/<segment>`, waiting for the
/// archive to hold the last segment complete.
fn append_wal<W: Write>(
    tar: &mut TarWriter<W>,
    store: &dyn Store,
    options: &BackupOptions,
    summary: &SummaryOptions,
    key: Option<&MasterKey>,
    start: Lsn,
    end: Lsn,
) -> Result<()> {
    let size = summary.segment_size;
    let tli = TimelineId(summary.timeline);
    let first = WalSegment::containing(tli, start, size);
    let last = WalSegment::containing(tli, Lsn(end.0.saturating_sub(1).max(start.0)), size);
    let mut segment = first;
    loop {
        let name = segment.file_name(size);
        let deadline = Instant::now() + summary.wait;
        let stored = loop {
            match crate::summary::locate_segment(store, &options.server, &name) {
                Some((path, false)) => break path,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                _ => {
                    return Err(StorageError::NotFound(format!(
                        "WAL segment {name}, needed by the backup ({start} to {end}), is not in the archive of {} after {:?}",
                        options.server, summary.wait
                    )))
                }
            }
        };
        let reader = match PlainReader::open(store, &stored, summary.cipher, key) {
            Ok(r) => r,
            // Compressed since it was found: look again.
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        tar.append_file(format!("pg_wal/{name}"), 0o600, 0, size.bytes(), reader)
            .map_err(|e| StorageError::corrupt(&stored, e.to_string()))?;
        if segment == last {
            return Ok(());
        }
        segment = segment.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_files_are_recognised() {
        let r = relation_file("base/5/16384").unwrap();
        assert_eq!((r.spc, r.db, r.relnumber, r.fork, r.segno, r.temp), (1663, 5, 16384, 0, 0, false));
        let r = relation_file("base/5/16384_vm.2").unwrap();
        assert_eq!((r.fork, r.segno), (2, 2));
        let r = relation_file("global/1262_fsm").unwrap();
        assert_eq!((r.spc, r.db, r.fork), (1664, 0, 1));
        assert!(relation_file("base/5/t3_16390").unwrap().temp);
        for not in ["base/5/PG_VERSION", "base/5/pg_filenode.map", "pg_xact/0000", "global/pg_control", "base/5/1_x"] {
            assert_eq!(relation_file(not), None, "{not}");
        }
    }

    #[test]
    fn exclusions() {
        let unlogged: BTreeSet<String> = ["base/5/16400".to_owned()].into();
        assert!(excluded("postmaster.pid", &unlogged));
        assert!(excluded("base/5/pg_internal.init", &unlogged));
        assert!(excluded("pg_wal/000000010000000000000001", &unlogged));
        assert!(excluded("base/5/16400", &unlogged));
        assert!(excluded("base/5/16400_fsm", &unlogged));
        assert!(!excluded("base/5/16400_init", &unlogged));
        assert!(excluded("base/5/t4_16500", &unlogged));
        assert!(!excluded("base/5/16384", &unlogged));
        assert!(!excluded("pg_xact/0000", &unlogged));
    }

    #[test]
    fn plans_follow_the_summary() {
        let rel = relation_file("base/5/16384.1").unwrap();
        let mut s = BlockRefTable::default();
        let key = RelFork { spc: 1663, db: 5, rel: 16384, fork: 0 };
        // Segment 1 holds blocks 8..16 with 8-block segments.
        s.mark_block(key, 3);
        s.mark_block(key, 9);
        s.mark_block(key, 30);
        let h = incremental_plan(&rel, 8 * BLCKSZ, 8, &s).unwrap();
        assert_eq!((h.truncation_block_length, h.blocks.clone()), (8, vec![1]));
        s.truncate(key, 12);
        let h = incremental_plan(&rel, 8 * BLCKSZ, 8, &s).unwrap();
        assert_eq!(h.truncation_block_length, 4);
        // Most blocks changed: whole.
        for b in 8..16 {
            s.mark_block(key, b);
        }
        assert_eq!(incremental_plan(&rel, 8 * BLCKSZ, 8, &s), None);
        // Unchanged: an empty incremental file.
        let other = relation_file("base/5/99").unwrap();
        let h = incremental_plan(&other, 4 * BLCKSZ, 8, &s).unwrap();
        assert_eq!((h.truncation_block_length, h.blocks.len()), (4, 0));
        // The free space map, and every file of a database created again: whole.
        assert_eq!(incremental_plan(&relation_file("base/5/99_fsm").unwrap(), 4 * BLCKSZ, 8, &s), None);
        s.mark_database(1663, 5);
        assert_eq!(incremental_plan(&other, 4 * BLCKSZ, 8, &s), None);
    }

    #[test]
    fn bytea_and_ranges() {
        assert_eq!(decode_bytea(b"\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_bytea(b"00"), None);
        assert_eq!(block_ranges(&[1, 2, 3, 7]), vec![(BLCKSZ, 3 * BLCKSZ), (7 * BLCKSZ, BLCKSZ)]);
        assert_eq!(whole_file_ranges(READ_CHUNK + 5), vec![(0, READ_CHUNK), (READ_CHUNK, 5)]);
        assert_eq!(whole_file_ranges(0), vec![]);
    }
}
