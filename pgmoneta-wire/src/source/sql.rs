//! A base backup read through SQL, for servers whose `BASE_BACKUP` cannot do what is asked
//! (incremental backups of PostgreSQL 14 to 16), with no server extension.
//!
//! Between `pg_backup_start` and `pg_backup_stop` (`pg_start_backup`/`pg_stop_backup` on 14,
//! non-exclusive, in one session), the data directory is listed with `pg_ls_dir` and
//! `pg_stat_file` and read with `pg_read_binary_file`. The files go out as one `base.tar`
//! archive, as `BASE_BACKUP` would send them (the files PostgreSQL leaves out of a backup are
//! left out, `pg_control` comes last), followed by `backup_label` and the WAL the backup needs
//! in `pg_wal/`.
//!
//! What is incremental is decided by a [`SqlPlanner`], which the repository provides: it checks
//! the server before anything is read, learns where the backup starts, says for each relation
//! segment which blocks to send (the file is then sent as `INCREMENTAL.<name>` with the header
//! the planner gives), adds lines to `backup_label` and supplies the WAL segments (the server
//! cannot: they come from the archive of the streamed WAL).
//!
//! The role needs `EXECUTE` on the backup functions and on `pg_ls_dir(text, boolean, boolean)`,
//! `pg_stat_file(text, boolean)` and `pg_read_binary_file(text, bigint, bigint, boolean)`;
//! [`check_grants`] names what is missing. Tablespaces other than the default ones are refused
//! (PostgreSQL 17 and later back them up incrementally with `BASE_BACKUP`).

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Read, Write};

use bytes::Bytes;
use pgmoneta_core::{Lsn, PgVersion, TimelineId, WalSegmentSize};

use super::{sink_error, ArchiveSink, BackupSource, SinkError, SourceEnd};
use crate::connection::PgConnection;
use crate::error::{Result, WireError};
use crate::replication::ArchiveInfo;
use crate::tar::TarWriter;

/// The block size this source reads relations in; servers built with another are refused.
pub const BLOCK_SIZE: u64 = 8192;
/// The name prefix of a relation segment sent as its changed blocks.
pub const INCREMENTAL_PREFIX: &str = "INCREMENTAL.";
/// Most bytes read with one `pg_read_binary_file` call.
const READ_CHUNK: u64 = 8 << 20;
/// Bytes handed to the sink at a time.
const CHUNK: usize = 1 << 20;
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

/// Checks that the connected role can run every function a backup through SQL uses.
///
/// # Errors
/// [`WireError::Unsupported`] naming each missing grant with the statement that gives it;
/// connection and server errors.
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
        Err(WireError::Unsupported(format!(
            "role {user} cannot take an incremental backup of PostgreSQL {}: missing {}",
            version.major(),
            missing.join(" ")
        )))
    }
}

/// What the planner learns of the server before its backup starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqlServer {
    /// `pg_control_system().system_identifier`: which cluster this is.
    pub system_identifier: u64,
    /// The server's WAL segment size.
    pub segment_size: WalSegmentSize,
    /// Blocks per relation segment file (the `segment_size` setting).
    pub segment_blocks: u32,
}

/// One entry of the data directory, as listed at the start of the backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    /// Relative to the data directory.
    pub path: String,
    /// A directory.
    pub dir: bool,
    /// Bytes, when listed.
    pub size: u64,
}

/// A relation segment file's parts, read from its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationFile {
    /// The directory: `base/<db>` or `global`.
    pub dir: String,
    /// Tablespace OID.
    pub spc: u32,
    /// Database OID (0 in `global`).
    pub db: u32,
    /// The relation's file number.
    pub relnumber: u32,
    /// 0 main, 1 free space map, 2 visibility map, 3 init.
    pub fork: u8,
    /// The segment number (`.<n>`; 0 for the first).
    pub segno: u32,
    /// A temporary relation (`t<backend>_<rel>`).
    pub temp: bool,
}

impl RelationFile {
    /// Parses `base/<db>/<rel>[_fork][.seg]` and `global/<rel>[_fork][.seg]`; `None` for any
    /// other path.
    pub fn parse(path: &str) -> Option<RelationFile> {
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
}

/// A relation segment sent as only some of its blocks: `header` first (PostgreSQL's
/// incremental file header, which the planner writes), then each block of `blocks` in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedBlocks {
    /// The bytes before the blocks.
    pub header: Vec<u8>,
    /// Block numbers within the segment, ascending.
    pub blocks: Vec<u32>,
}

/// Decides what a [`SqlBackupSource`] sends besides whole files. Its errors come back from
/// [`BackupSource::feed`] as [`WireError::Sink`].
pub trait SqlPlanner {
    /// The server's facts, before its backup starts: refuse a server the backup cannot be
    /// built for (another cluster than the parent's, say).
    ///
    /// # Errors
    /// The planner's own.
    fn check(&mut self, server: &SqlServer) -> std::result::Result<(), SinkError>;

    /// The backup started at `start` on `timeline`; called before the first file is read.
    ///
    /// # Errors
    /// The planner's own.
    fn started(&mut self, start: Lsn, timeline: TimelineId) -> std::result::Result<(), SinkError>;

    /// The blocks to send of a relation segment of `file.size` bytes; `None` sends it whole.
    fn changed_blocks(&self, file: &ListedFile, relation: &RelationFile) -> Option<ChangedBlocks>;

    /// Lines added to the end of `backup_label`, each ending in a newline.
    fn label_lines(&self) -> String;

    /// The WAL from `start` to `end` on `timeline`: calls `segment(name, size, bytes)` for
    /// each segment file, in order.
    ///
    /// # Errors
    /// The planner's own, including what `segment` returned.
    fn wal(
        &mut self,
        start: Lsn,
        end: Lsn,
        timeline: TimelineId,
        segment: &mut dyn FnMut(&str, u64, &mut dyn Read) -> io::Result<()>,
    ) -> std::result::Result<(), SinkError>;
}

/// A backup read through SQL over a normal (not replication) connection; see the module.
pub struct SqlBackupSource<'c, 'p, S: Read + Write> {
    conn: &'c mut PgConnection<S>,
    version: PgVersion,
    label: String,
    fast_checkpoint: bool,
    planner: &'p mut dyn SqlPlanner,
}

impl<'c, 'p, S: Read + Write> SqlBackupSource<'c, 'p, S> {
    /// A backup of the server `conn` is connected to, labelled `label` on the server, with
    /// `planner` deciding what is incremental.
    pub fn new(
        conn: &'c mut PgConnection<S>,
        version: PgVersion,
        label: &str,
        fast_checkpoint: bool,
        planner: &'p mut dyn SqlPlanner,
    ) -> Self {
        SqlBackupSource { conn, version, label: label.to_owned(), fast_checkpoint, planner }
    }

    /// Checks the server and learns its facts.
    fn prepare(&mut self) -> Result<SqlServer> {
        // Quoting and bytea decoding below rely on these.
        self.conn.execute("SET standard_conforming_strings = on")?;
        self.conn.execute("SET bytea_output = 'hex'")?;
        check_grants(self.conn, self.version)?;
        let system_identifier =
            self.conn.query_one("SELECT system_identifier FROM pg_control_system()")?.parse_required(0)?;
        let tablespaces: u64 = self
            .conn
            .query_one("SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')")?
            .parse_required(0)?;
        if tablespaces > 0 {
            return Err(WireError::Unsupported(format!(
                "incremental backups of PostgreSQL {} with tablespaces are not supported; take a full backup",
                self.version.major()
            )));
        }
        let settings = self.conn.query_one(
            "SELECT (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), \
                    (SELECT setting FROM pg_settings WHERE name = 'segment_size'), \
                    (SELECT setting FROM pg_settings WHERE name = 'block_size')",
        )?;
        let wal_segment: u64 = settings.parse_required(0)?;
        let segment_blocks: u32 = settings.parse_required(1)?;
        let block_size: u64 = settings.parse_required(2)?;
        if block_size != BLOCK_SIZE {
            return Err(WireError::Unsupported(format!("block size {block_size} is not supported")));
        }
        let segment_size = WalSegmentSize::new(wal_segment)
            .map_err(|e| WireError::Unsupported(format!("the server's wal_segment_size: {e}")))?;
        Ok(SqlServer { system_identifier, segment_size, segment_blocks })
    }

    fn list_data_directory(&mut self) -> Result<Vec<ListedFile>> {
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
        for row in self.conn.query(&sql)? {
            let path = row.get(0)?.unwrap_or_default().to_owned();
            let dir = row.get(1)? == Some("t");
            let size: u64 = row.parse(2)?.unwrap_or(0);
            out.push(ListedFile { path, dir, size });
        }
        Ok(out)
    }
}

impl<S: Read + Write> BackupSource for SqlBackupSource<'_, '_, S> {
    fn feed(&mut self, sink: &mut dyn ArchiveSink) -> Result<Option<SourceEnd>> {
        let server = self.prepare()?;
        self.planner.check(&server).map_err(sink_error)?;
        let label = literal(&self.label);
        let fast = if self.fast_checkpoint { "true" } else { "false" };
        let start_sql = if self.version.major() >= 15 {
            format!("SELECT pg_backup_start({label}, {fast})")
        } else {
            format!("SELECT pg_start_backup({label}, {fast}, false)")
        };
        let start: Lsn = self.conn.query_one(&start_sql)?.parse_required(0)?;
        let timeline =
            TimelineId(self.conn.query_one("SELECT timeline_id FROM pg_control_checkpoint()")?.parse_required(0)?);
        self.planner.started(start, timeline).map_err(sink_error)?;
        let listing = self.list_data_directory()?;
        let unlogged: BTreeSet<String> = listing
            .iter()
            .filter_map(|l| RelationFile::parse(&l.path))
            .filter(|r| r.fork == 3 && r.segno == 0)
            .map(|r| format!("{}/{}", r.dir, r.relnumber))
            .collect();
        sink.expect(listing.iter().filter(|l| !l.dir).map(|l| l.size).sum());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        sink.start(ArchiveInfo { name: "base.tar".into(), tablespace_oid: None, location: None })
            .map_err(sink_error)?;
        let mut tar = TarWriter::new(SinkWriter { sink: &mut *sink, buf: Vec::new(), failed: None, stopped: false });
        let mut control = None;
        for entry in &listing {
            if tar.get_ref().sink.stopped() {
                return Ok(None);
            }
            if entry.dir {
                if !entry.path.contains("pgsql_tmp") {
                    let r = tar.append_dir(&entry.path, 0o700, now);
                    written(&mut tar, r, &entry.path)?;
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
            let plan = RelationFile::parse(&entry.path).and_then(|r| self.planner.changed_blocks(entry, &r));
            if !append_file(&mut tar, self.conn, entry, plan, now)? {
                return Ok(None);
            }
        }
        // pg_control last, as PostgreSQL sends it.
        if let Some(c) = control {
            if !append_file(&mut tar, self.conn, &c, None, now)? {
                return Ok(None);
            }
        }
        let stop_sql = if self.version.major() >= 15 {
            "SELECT lsn, labelfile FROM pg_backup_stop(false)"
        } else {
            "SELECT lsn, labelfile FROM pg_stop_backup(false, false)"
        };
        let row = self.conn.query_one(stop_sql)?;
        let end: Lsn = row.parse_required(0)?;
        let mut label_text = row.get(1)?.unwrap_or_default().to_owned();
        label_text.push_str(&self.planner.label_lines());
        let r = tar.append_file("backup_label", 0o600, now, label_text.len() as u64, label_text.as_bytes());
        written(&mut tar, r, "backup_label")?;
        let r = tar.append_dir("pg_wal/archive_status", 0o700, now);
        written(&mut tar, r, "pg_wal/archive_status")?;
        let wal = self.planner.wal(start, end, timeline, &mut |name, size, bytes| {
            tar.append_file(format!("pg_wal/{name}"), 0o600, 0, size, bytes)
        });
        if let Some(e) = tar.get_mut().failed.take() {
            return Err(sink_error(e));
        }
        if tar.get_ref().stopped {
            return Ok(None);
        }
        wal.map_err(sink_error)?;
        let r = tar.end();
        if !written(&mut tar, r, "the end of the archive")? {
            return Ok(None);
        }
        drop(tar);
        sink.finish().map_err(sink_error)?;
        if sink.stopped() {
            return Ok(None);
        }
        Ok(Some(SourceEnd { start: (start, timeline), end: (end, timeline), manifest: None }))
    }
}

/// A `Write` into the sink's current archive, in chunks, keeping what stopped it.
struct SinkWriter<'s> {
    sink: &'s mut dyn ArchiveSink,
    buf: Vec<u8>,
    /// The sink's error, when it failed.
    failed: Option<SinkError>,
    /// The sink wanted no more.
    stopped: bool,
}

impl Write for SinkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        match self.sink.data(chunk) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.stopped = true;
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "the backup stopped"))
            }
            Err(e) => {
                let message = e.to_string();
                self.failed = Some(e);
                Err(io::Error::other(message))
            }
        }
    }
}

/// The outcome of writing one member: the sink's own error when it failed, `Ok(false)` when it
/// stopped, else the writing error.
fn written(tar: &mut TarWriter<SinkWriter<'_>>, result: io::Result<()>, path: &str) -> Result<bool> {
    let Err(e) = result else { return Ok(true) };
    if let Some(failed) = tar.get_mut().failed.take() {
        return Err(sink_error(failed));
    }
    if tar.get_ref().stopped {
        return Ok(false);
    }
    Err(WireError::Unsupported(format!("writing {path} to the backup archive: {e}")))
}

/// Appends one file, whole or (with changed blocks) as `INCREMENTAL.<name>`. `Ok(false)` when
/// the sink stopped.
fn append_file<S: Read + Write>(
    tar: &mut TarWriter<SinkWriter<'_>>,
    conn: &mut PgConnection<S>,
    entry: &ListedFile,
    plan: Option<ChangedBlocks>,
    mtime: i64,
) -> Result<bool> {
    if plan.is_none() && RelationFile::parse(&entry.path).is_none() {
        // Not a relation file: WAL replay will not repair it, so it is read as it is now, whole
        // (configuration rewritten since the listing, a file gone), when it is small.
        let sql = format!("SELECT pg_read_binary_file({}, 0, {}, true)", literal(&entry.path), READ_CHUNK + 1);
        let row = conn.query_one(&sql)?;
        let Some(text) = row.bytes(0) else { return Ok(true) };
        let data = decode_bytea(text).ok_or_else(|| bad_bytea(&entry.path))?;
        if data.len() as u64 <= READ_CHUNK {
            let r = tar.append_file(&entry.path, 0o600, mtime, data.len() as u64, data.as_slice());
            return written(tar, r, &entry.path);
        }
    }
    let (name, size, header, ranges) = match plan {
        None => (entry.path.clone(), entry.size, Vec::new(), whole_file_ranges(entry.size)),
        Some(c) => {
            let name = match entry.path.rsplit_once('/') {
                Some((d, n)) => format!("{d}/{INCREMENTAL_PREFIX}{n}"),
                None => format!("{INCREMENTAL_PREFIX}{}", entry.path),
            };
            let size = c.header.len() as u64 + c.blocks.len() as u64 * BLOCK_SIZE;
            (name, size, c.header, block_ranges(&c.blocks))
        }
    };
    let mut reader =
        SqlFileReader { conn, path: entry.path.clone(), ranges: ranges.into(), pending: header, at: 0, error: None };
    let result = tar.append_file(&name, 0o600, mtime, size, &mut reader);
    if let Some(e) = reader.error.take() {
        return Err(e);
    }
    written(tar, result, &name)
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn bad_bytea(path: &str) -> WireError {
    WireError::Protocol(format!("{path}: the server sent bytea in an unexpected form"))
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
    if let Some(rel) = RelationFile::parse(path) {
        if rel.temp {
            return true;
        }
        let key = format!("{}/{}", rel.dir, rel.relnumber);
        return rel.fork != 3 && unlogged.contains(&key);
    }
    false
}

/// Reads files through `pg_read_binary_file`, in chunks, padding with zeros what a file no
/// longer has (it shrank or went away during the backup: WAL replay puts it right).
struct SqlFileReader<'c, S: Read + Write> {
    conn: &'c mut PgConnection<S>,
    path: String,
    /// The ranges still to read (offset, length), in order.
    ranges: VecDeque<(u64, u64)>,
    /// Data read and not yet returned.
    pending: Vec<u8>,
    at: usize,
    /// Set when a read failed: the server error, reported by the caller.
    error: Option<WireError>,
}

impl<S: Read + Write> SqlFileReader<'_, S> {
    fn fetch(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let sql = format!("SELECT pg_read_binary_file({}, {offset}, {len}, true)", literal(&self.path));
        let row = self.conn.query_one(&sql)?;
        let mut data = match row.bytes(0) {
            Some(text) => decode_bytea(text).ok_or_else(|| bad_bytea(&self.path))?,
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
        let offset = u64::from(b) * BLOCK_SIZE;
        match out.last_mut() {
            Some((o, l)) if *o + *l == offset && *l + BLOCK_SIZE <= READ_CHUNK => *l += BLOCK_SIZE,
            _ => out.push((offset, BLOCK_SIZE)),
        }
    }
    out
}

fn whole_file_ranges(size: u64) -> Vec<(u64, u64)> {
    (0..size.div_ceil(READ_CHUNK)).map(|i| (i * READ_CHUNK, (size - i * READ_CHUNK).min(READ_CHUNK))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_files_are_recognised() {
        let r = RelationFile::parse("base/5/16384").unwrap();
        assert_eq!((r.spc, r.db, r.relnumber, r.fork, r.segno, r.temp), (1663, 5, 16384, 0, 0, false));
        let r = RelationFile::parse("base/5/16384_vm.2").unwrap();
        assert_eq!((r.fork, r.segno), (2, 2));
        let r = RelationFile::parse("global/1262_fsm").unwrap();
        assert_eq!((r.spc, r.db, r.fork), (1664, 0, 1));
        assert!(RelationFile::parse("base/5/t3_16390").unwrap().temp);
        for not in ["base/5/PG_VERSION", "base/5/pg_filenode.map", "pg_xact/0000", "global/pg_control", "base/5/1_x"] {
            assert_eq!(RelationFile::parse(not), None, "{not}");
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
    fn bytea_and_ranges() {
        assert_eq!(decode_bytea(b"\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_bytea(b"00"), None);
        assert_eq!(block_ranges(&[1, 2, 3, 7]), vec![(BLOCK_SIZE, 3 * BLOCK_SIZE), (7 * BLOCK_SIZE, BLOCK_SIZE)]);
        assert_eq!(whole_file_ranges(READ_CHUNK + 5), vec![(0, READ_CHUNK), (READ_CHUNK, 5)]);
        assert_eq!(whole_file_ranges(0), vec![]);
    }

    #[test]
    fn a_sink_error_or_stop_is_told_apart_from_a_write_error() {
        struct Failing(bool);
        impl ArchiveSink for Failing {
            fn stopped(&self) -> bool {
                false
            }
            fn start(&mut self, _: ArchiveInfo) -> std::result::Result<(), SinkError> {
                Ok(())
            }
            fn data(&mut self, _: Bytes) -> std::result::Result<bool, SinkError> {
                if self.0 {
                    Err("disk full".into())
                } else {
                    Ok(false)
                }
            }
            fn finish(&mut self) -> std::result::Result<(), SinkError> {
                Ok(())
            }
        }
        for fails in [true, false] {
            let mut sink = Failing(fails);
            let mut tar = TarWriter::new(SinkWriter { sink: &mut sink, buf: Vec::new(), failed: None, stopped: false });
            let r = tar.append_file("f", 0o600, 0, 4, &b"abcd"[..]).and_then(|()| tar.get_mut().flush());
            match written(&mut tar, r, "f") {
                Err(WireError::Sink(e)) => assert!(fails && e.to_string() == "disk full"),
                Ok(false) => assert!(!fails),
                other => panic!("{other:?}"),
            }
        }
    }
}
