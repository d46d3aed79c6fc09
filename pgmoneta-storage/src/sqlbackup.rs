//! Incremental backups of PostgreSQL 14 to 16, which have no incremental `BASE_BACKUP`: the
//! repository's side of [`pgmoneta_wire::source::sql`].
//!
//! The server's files arrive through SQL from [`SqlBackupSource`]; what is incremental is
//! decided here, by the [`SqlPlanner`] this module implements. The blocks that changed since the
//! parent backup started come from the WAL archive ([`crate::summary`]): a relation segment the
//! parent holds is stored as `INCREMENTAL.<name>` in PostgreSQL's incremental format with just
//! those blocks; other files are copied whole. The WAL from the backup's start to its end is
//! copied from the archive into `pg_wal`, and `backup_label` names the parent's position
//! (`INCREMENTAL FROM LSN`/`TLI`), as PostgreSQL 17 writes it. The files go through the same
//! pipeline as a streamed backup (hashing, compression, encryption, workers, links), and a
//! `backup_manifest` in PostgreSQL's format is written from what was read.
//!
//! The role needs the grants [`check_grants`] checks.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmoneta_core::{Lsn, PgVersion, TimelineId, WalSegment};
use pgmoneta_crypto::{Cipher, MasterKey};
pub use pgmoneta_wire::source::sql::{check_grants, required_functions};
use pgmoneta_wire::source::sql::{ChangedBlocks, ListedFile, RelationFile, SqlBackupSource, SqlPlanner, SqlServer};
use pgmoneta_wire::source::SinkError;
use pgmoneta_wire::wal::summary::{BlockRefTable, RelFork};
use pgmoneta_wire::PgConnection;

use crate::backup::{check_parent, take_backup_from, BackupOptions};
use crate::error::{Result, StorageError};
use crate::incremental::{IncrementalHeader, PlainReader, BLCKSZ};
use crate::info::BackupInfo;
use crate::store::Store;
use crate::summary::{summarize, SummaryOptions};

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
    let parent = check_parent(store.as_ref(), &options.server, &parent_label, version)?;
    let mut planner = Planner {
        store: store.clone(),
        server: options.server.clone(),
        parent,
        sql: sql.clone(),
        parent_key: options
            .encryption
            .as_ref()
            .map(|(_, k)| k.clone())
            .or_else(|| sql.master_key.clone())
            .or_else(|| sql.wal_encryption.as_ref().map(|(_, k)| k.clone())),
        segment_blocks: 0,
        summary: None,
        in_parent: BTreeSet::new(),
    };
    // The files arrive through SQL as they are on the server: server-side compression (which
    // only BASE_BACKUP does) does not apply, and they are compressed here with its algorithm.
    let mut plain = options.clone();
    plain.compression = pgmoneta_compress::Compression::client(options.compression.algorithm);
    let label = options.label.postgres_label();
    let mut source = SqlBackupSource::new(conn, version, &label, options.fast_checkpoint, &mut planner);
    take_backup_from(&mut source, version, minor_version, store, &plain)
}

/// The repository's side of a backup through SQL: the parent it builds on, the WAL summary.
struct Planner {
    store: Arc<dyn Store>,
    server: String,
    parent: BackupInfo,
    sql: SqlBackupOptions,
    /// The key that reads the parent's `pg_control`.
    parent_key: Option<Arc<MasterKey>>,
    segment_blocks: u32,
    /// What changed since the parent started, with where to find the WAL; set once started.
    summary: Option<(BlockRefTable, SummaryOptions)>,
    /// The parent's files, by their plain names.
    in_parent: BTreeSet<String>,
}

impl Planner {
    fn wal_key(&self) -> Option<&MasterKey> {
        self.sql.wal_encryption.as_ref().map(|(_, k)| k.as_ref())
    }
}

impl SqlPlanner for Planner {
    fn check(&mut self, server: &SqlServer) -> std::result::Result<(), SinkError> {
        // The parent must be a backup of this cluster.
        let store = self.store.as_ref();
        let stored_control = crate::stored::stored_path(store, &self.server, &self.parent, "global/pg_control")?;
        let cipher = Cipher::from_code(self.parent.encryption);
        let mut control = PlainReader::open(store, &stored_control, cipher, self.parent_key.as_deref())?;
        let mut id = [0u8; 8];
        control.read_exact(&mut id).map_err(|e| StorageError::corrupt(&stored_control, e.to_string()))?;
        control.finish()?;
        let parent_id = u64::from_le_bytes(id);
        if parent_id != server.system_identifier {
            return Err(StorageError::Invalid(format!(
                "backup {} is of another cluster (system identifier {parent_id}, the server's is {})",
                self.parent.label, server.system_identifier
            ))
            .into());
        }
        self.segment_blocks = server.segment_blocks;
        let mut summary = SummaryOptions::new(&self.server, self.parent.start_timeline, server.segment_size);
        summary.cipher = self.sql.wal_encryption.as_ref().map(|(c, _)| *c);
        summary.wait = self.sql.wait;
        self.summary = Some((BlockRefTable::default(), summary));
        Ok(())
    }

    fn started(&mut self, start: Lsn, timeline: TimelineId) -> std::result::Result<(), SinkError> {
        if timeline.0 != self.parent.start_timeline {
            return Err(StorageError::Invalid(format!(
                "backup {} started on timeline {}, the server is on timeline {}: take a full backup",
                self.parent.label, self.parent.start_timeline, timeline.0
            ))
            .into());
        }
        let Some((_, options)) = self.summary.take() else {
            return Err(StorageError::Invalid("the server was not checked before its backup started".into()).into());
        };
        let table = summarize(self.store.as_ref(), &options, self.wal_key(), self.parent.start_lsn, start)?;
        self.summary = Some((table, options));
        self.in_parent = crate::catalog::load_manifest(self.store.as_ref(), &self.server, &self.parent.label)?
            .files
            .into_keys()
            .map(|p| crate::incremental::plain_path(&p).unwrap_or(p))
            .collect();
        Ok(())
    }

    fn changed_blocks(&self, file: &ListedFile, relation: &RelationFile) -> Option<ChangedBlocks> {
        let (table, _) = self.summary.as_ref()?;
        if !self.in_parent.contains(&file.path) {
            return None;
        }
        let h = incremental_plan(relation, file.size, self.segment_blocks, table)?;
        Some(ChangedBlocks { header: h.to_bytes(), blocks: h.blocks })
    }

    fn label_lines(&self) -> String {
        format!(
            "INCREMENTAL FROM LSN: {}\nINCREMENTAL FROM TLI: {}\n",
            self.parent.start_lsn, self.parent.start_timeline
        )
    }

    fn wal(
        &mut self,
        start: Lsn,
        end: Lsn,
        timeline: TimelineId,
        segment: &mut dyn FnMut(&str, u64, &mut dyn Read) -> io::Result<()>,
    ) -> std::result::Result<(), SinkError> {
        let Some((_, summary)) = &self.summary else {
            return Err(StorageError::Invalid("the backup's WAL was asked for before it started".into()).into());
        };
        Ok(append_wal(self.store.as_ref(), summary, self.wal_key(), timeline, start, end, segment)?)
    }
}

/// Hands the archived WAL from `start` to `end` to `segment`, waiting for the archive to hold
/// the last segment complete.
fn append_wal(
    store: &dyn Store,
    summary: &SummaryOptions,
    key: Option<&MasterKey>,
    tli: TimelineId,
    start: Lsn,
    end: Lsn,
    segment: &mut dyn FnMut(&str, u64, &mut dyn Read) -> io::Result<()>,
) -> Result<()> {
    let size = summary.segment_size;
    let first = WalSegment::containing(tli, start, size);
    let last = WalSegment::containing(tli, Lsn(end.0.saturating_sub(1).max(start.0)), size);
    let mut current = first;
    loop {
        let name = current.file_name(size);
        let deadline = Instant::now() + summary.wait;
        let stored = loop {
            match crate::summary::locate_segment(store, &summary.server, &name) {
                Some((path, false)) => break path,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                _ => {
                    return Err(StorageError::NotFound(format!(
                        "WAL segment {name}, needed by the backup ({start} to {end}), is not in the archive of {} after {:?}",
                        summary.server, summary.wait
                    )))
                }
            }
        };
        let mut reader = match PlainReader::open(store, &stored, summary.cipher, key) {
            Ok(r) => r,
            // Compressed since it was found: look again.
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        segment(&name, size.bytes(), &mut reader).map_err(|e| StorageError::corrupt(&stored, e.to_string()))?;
        if current == last {
            return Ok(());
        }
        current = current.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_summary() {
        let rel = RelationFile::parse("base/5/16384.1").unwrap();
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
        let other = RelationFile::parse("base/5/99").unwrap();
        let h = incremental_plan(&other, 4 * BLCKSZ, 8, &s).unwrap();
        assert_eq!((h.truncation_block_length, h.blocks.len()), (4, 0));
        // The free space map, and every file of a database created again: whole.
        assert_eq!(incremental_plan(&RelationFile::parse("base/5/99_fsm").unwrap(), 4 * BLCKSZ, 8, &s), None);
        s.mark_database(1663, 5);
        assert_eq!(incremental_plan(&other, 4 * BLCKSZ, 8, &s), None);
    }
}
