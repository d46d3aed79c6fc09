//! `BASE_BACKUP` as a streaming reader.

use std::io::{Read, Write};

use bytes::Bytes;
use pgmoneta_core::{Lsn, PgVersion, TimelineId};

use super::message::{parse_base_backup_message, BaseBackupMessage};
use crate::connection::{unexpected, PgConnection, Row};
use crate::error::{Result, WireError};
use crate::message::backend::BackendMessage;
use crate::message::frontend::FrontendMessage;

/// Compression done by the server while it streams the backup (PostgreSQL 15+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCompression {
    /// `gzip`, `lz4` or `zstd`.
    pub method: String,
    /// `COMPRESSION_DETAIL`, like `level=3` or `level=3,workers=4`.
    pub detail: Option<String>,
}

/// What to ask `BASE_BACKUP` for. The defaults are what pgmoneta sends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BaseBackupOptions {
    /// The backup label (`pgmoneta_<label>`).
    pub label: String,
    /// Ask for progress reports and size estimates.
    pub progress: bool,
    /// Request an immediate checkpoint rather than waiting for a spread one.
    pub fast_checkpoint: bool,
    /// Include the WAL needed to make the backup consistent.
    pub wal: bool,
    /// Wait for that WAL to be archived (pgmoneta archives it itself: no).
    pub wait: bool,
    /// Rate limit in kB/s (32 to 1048576).
    pub max_rate_kb: Option<u32>,
    /// Send a backup manifest.
    pub manifest: bool,
    /// Manifest checksum algorithm (`SHA512`, `SHA256`, `CRC32C`, `NONE`).
    pub manifest_checksums: Option<String>,
    /// Server-side compression (15+).
    pub compression: Option<ServerCompression>,
    /// Incremental backup on top of the manifest sent with `UPLOAD_MANIFEST` (17+).
    pub incremental: bool,
}

impl BaseBackupOptions {
    /// pgmoneta's defaults for `label`: fast checkpoint, WAL included, no wait, a manifest with
    /// SHA512 checksums, progress.
    pub fn new(label: &str) -> BaseBackupOptions {
        BaseBackupOptions {
            label: label.to_owned(),
            progress: true,
            fast_checkpoint: true,
            wal: true,
            wait: false,
            max_rate_kb: None,
            manifest: true,
            manifest_checksums: Some("SHA512".to_owned()),
            compression: None,
            incremental: false,
        }
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `BASE_BACKUP` command for `version`: the parenthesised option list on 15+, the keyword
/// form on 14.
///
/// # Errors
/// Options the version does not have (server compression before 15, incremental before 17), or a
/// rate outside PostgreSQL's range.
pub fn base_backup_command(opts: &BaseBackupOptions, version: PgVersion) -> Result<String> {
    if let Some(rate) = opts.max_rate_kb {
        if !(32..=1_048_576).contains(&rate) {
            return Err(WireError::Usage(format!("MAX_RATE must be from 32 to 1048576 kB/s, got {rate}")));
        }
    }
    if opts.incremental && !version.has_incremental_backup() {
        return Err(WireError::Usage(format!(
            "incremental BASE_BACKUP needs PostgreSQL 17 or later, the server is {version}"
        )));
    }
    if !version.has_new_base_backup_syntax() {
        if opts.compression.is_some() {
            return Err(WireError::Usage(format!(
                "server-side compression needs PostgreSQL 15 or later, the server is {version}"
            )));
        }
        let mut cmd = format!("BASE_BACKUP LABEL {}", literal(&opts.label));
        if opts.progress {
            cmd.push_str(" PROGRESS");
        }
        if opts.fast_checkpoint {
            cmd.push_str(" FAST");
        }
        if opts.wal {
            cmd.push_str(" WAL");
        }
        if !opts.wait {
            cmd.push_str(" NOWAIT");
        }
        if let Some(rate) = opts.max_rate_kb {
            cmd.push_str(&format!(" MAX_RATE {rate}"));
        }
        if opts.manifest {
            cmd.push_str(" MANIFEST 'yes'");
            if let Some(alg) = &opts.manifest_checksums {
                cmd.push_str(&format!(" MANIFEST_CHECKSUMS {}", literal(alg)));
            }
        }
        return Ok(cmd);
    }
    let mut parts = Vec::new();
    if opts.incremental {
        parts.push("INCREMENTAL".to_owned());
    }
    parts.push(format!("LABEL {}", literal(&opts.label)));
    parts.push(format!("WAL {}", opts.wal));
    parts.push(format!("WAIT {}", opts.wait));
    if let Some(rate) = opts.max_rate_kb {
        parts.push(format!("MAX_RATE {rate}"));
    }
    if let Some(c) = &opts.compression {
        if !matches!(c.method.as_str(), "gzip" | "lz4" | "zstd") {
            return Err(WireError::Usage(format!(
                "server-side compression must be gzip, lz4 or zstd, got {:?}",
                c.method
            )));
        }
        parts.push(format!("COMPRESSION {}", literal(&c.method)));
        if let Some(d) = &c.detail {
            parts.push(format!("COMPRESSION_DETAIL {}", literal(d)));
        }
    }
    if opts.progress {
        parts.push("PROGRESS true".to_owned());
    }
    parts.push(format!("CHECKPOINT {}", if opts.fast_checkpoint { "'fast'" } else { "'spread'" }));
    if opts.manifest {
        parts.push("MANIFEST 'yes'".to_owned());
        if let Some(alg) = &opts.manifest_checksums {
            parts.push(format!("MANIFEST_CHECKSUMS {}", literal(alg)));
        }
    } else {
        parts.push("MANIFEST 'no'".to_owned());
    }
    Ok(format!("BASE_BACKUP ({})", parts.join(", ")))
}

/// A tablespace as the `BASE_BACKUP` header lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablespaceInfo {
    /// The tablespace OID; `None` for the main data directory.
    pub oid: Option<u32>,
    /// Its directory on the server; `None` for the main data directory.
    pub location: Option<String>,
    /// Estimated size in kB, when progress was requested.
    pub size_kb: Option<u64>,
}

/// An archive (tar stream) of the backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// File name: `base.tar` or `<oid>.tar`, with the server compression's suffix on 15+.
    pub name: String,
    /// The tablespace OID; `None` for the main data directory.
    pub tablespace_oid: Option<u32>,
    /// The tablespace directory on the server; `None` for the main data directory.
    pub location: Option<String>,
}

/// One step of a `BASE_BACKUP` stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseBackupEvent {
    /// A new archive starts; the `ArchiveData` that follow belong to it.
    Archive(ArchiveInfo),
    /// Bytes of the current archive, exactly as the server sent them (compressed when server-side
    /// compression was asked for). From PostgreSQL 14, which leaves the tar end-of-archive marker
    /// to the client, the marker is added as a last 1024-byte chunk.
    ArchiveData(Bytes),
    /// The backup manifest starts; `ManifestData` follow.
    Manifest,
    /// Bytes of the manifest.
    ManifestData(Bytes),
    /// Bytes done so far of the current archive (15+) or of the whole backup (14).
    Progress(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// 15+: inside the single COPY stream.
    Copy {
        in_manifest: bool,
    },
    /// 14: between COPY streams; the next is archive `next` (or the manifest after the last).
    Between {
        next: usize,
    },
    /// 14: inside the COPY of archive `index` (`index == tablespaces.len()` is the manifest).
    Tar {
        index: usize,
    },
    Done,
}

/// A running `BASE_BACKUP`. Pull events with [`BaseBackup::next_event`] until it returns `None`;
/// then [`BaseBackup::end`] gives the end position.
#[derive(Debug)]
pub struct BaseBackup<'c, S: Read + Write> {
    conn: &'c mut PgConnection<S>,
    version: PgVersion,
    manifest: bool,
    start: (Lsn, TimelineId),
    end: Option<(Lsn, TimelineId)>,
    tablespaces: Vec<TablespaceInfo>,
    phase: Phase,
    /// An event decided before the caller asked for it (14: the first archive).
    pending: Option<BaseBackupEvent>,
}

fn position(row: &Row, what: &str) -> Result<(Lsn, TimelineId)> {
    let lsn = row
        .get(0)?
        .ok_or_else(|| WireError::Protocol(format!("{what} position is NULL")))?
        .parse::<Lsn>()
        .map_err(|e| WireError::Protocol(format!("{what} position: {e}")))?;
    let tli = row
        .get(1)?
        .ok_or_else(|| WireError::Protocol(format!("{what} timeline is NULL")))?
        .parse::<TimelineId>()
        .map_err(|e| WireError::Protocol(format!("{what} timeline: {e}")))?;
    Ok((lsn, tli))
}

impl<S: Read + Write> PgConnection<S> {
    /// Starts `BASE_BACKUP` with `opts` in the syntax of `version` and reads its header: the
    /// start position and the tablespace list.
    ///
    /// # Errors
    /// Not a replication connection, options the version lacks, a server error (another backup
    /// with the same label running, `max_wal_senders` exhausted...).
    pub fn base_backup(&mut self, opts: &BaseBackupOptions, version: PgVersion) -> Result<BaseBackup<'_, S>> {
        self.require_replication("BASE_BACKUP")?;
        let command = base_backup_command(opts, version)?;
        self.send(&FrontendMessage::Query { sql: command })?;
        // Result 1: start position and timeline. Result 2: the tablespaces.
        let mut results: Vec<Vec<Row>> = Vec::new();
        let mut columns = std::sync::Arc::<[crate::message::backend::FieldDescription]>::from(Vec::new());
        let mut rows = Vec::new();
        loop {
            match self.read_message()? {
                BackendMessage::RowDescription { fields } => columns = fields.into(),
                BackendMessage::DataRow { columns: values } => rows.push(Row::new(columns.clone(), values)),
                BackendMessage::CommandComplete { .. } => results.push(std::mem::take(&mut rows)),
                BackendMessage::CopyOutResponse(_) => break,
                BackendMessage::ErrorResponse(e) => {
                    self.wait_ready()?;
                    return Err(WireError::Server(e));
                }
                other => return Err(unexpected("in the BASE_BACKUP header", &other)),
            }
        }
        if results.len() != 2 || results[0].len() != 1 {
            return Err(WireError::Protocol(format!(
                "BASE_BACKUP header: expected a start position and a tablespace list, got {} results",
                results.len()
            )));
        }
        let start = position(&results[0][0], "BASE_BACKUP start")?;
        let tablespaces = results[1]
            .iter()
            .map(|r| {
                Ok(TablespaceInfo {
                    oid: r.parse::<u32>(0)?,
                    location: r.get(1)?.map(str::to_owned),
                    size_kb: r.parse::<u64>(2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (phase, pending) = if version.has_new_base_backup_syntax() {
            (Phase::Copy { in_manifest: false }, None)
        } else {
            if tablespaces.is_empty() {
                return Err(WireError::Protocol("BASE_BACKUP listed no tablespace".to_owned()));
            }
            (Phase::Tar { index: 0 }, Some(BaseBackupEvent::Archive(archive14(&tablespaces[0]))))
        };
        Ok(BaseBackup { conn: self, version, manifest: opts.manifest, start, end: None, tablespaces, phase, pending })
    }
}

/// The archive of a tablespace in the PostgreSQL 14 stream, named as 15+ names them.
fn archive14(ts: &TablespaceInfo) -> ArchiveInfo {
    ArchiveInfo {
        name: ts.oid.map_or_else(|| "base.tar".to_owned(), |oid| format!("{oid}.tar")),
        tablespace_oid: ts.oid,
        location: ts.location.clone(),
    }
}

impl<S: Read + Write> BaseBackup<'_, S> {
    /// The position the backup starts from (its checkpoint's redo point).
    pub fn start_lsn(&self) -> Lsn {
        self.start.0
    }

    /// The timeline at the start.
    pub fn start_timeline(&self) -> TimelineId {
        self.start.1
    }

    /// The tablespaces, main data directory included (its `oid` is `None`).
    pub fn tablespaces(&self) -> &[TablespaceInfo] {
        &self.tablespaces
    }

    /// The server version the command was written for.
    pub fn version(&self) -> PgVersion {
        self.version
    }

    /// End position and timeline, once [`BaseBackup::next_event`] returned `None`.
    pub fn end(&self) -> Option<(Lsn, TimelineId)> {
        self.end
    }

    /// The next event, or `None` when the backup is complete and the connection is ready for
    /// the next command.
    ///
    /// # Errors
    /// A server error during the backup (reported after the connection is ready again), a
    /// malformed or unexpected message, a broken connection.
    pub fn next_event(&mut self) -> Result<Option<BaseBackupEvent>> {
        if let Some(event) = self.pending.take() {
            return Ok(Some(event));
        }
        loop {
            match self.phase {
                Phase::Done => return Ok(None),
                Phase::Copy { in_manifest } => match self.read()? {
                    BackendMessage::CopyData(data) => {
                        let offset = self.conn.stream_offset() - data.len() as u64;
                        return Ok(Some(match parse_base_backup_message(data, offset)? {
                            BaseBackupMessage::NewArchive { name, location } => {
                                BaseBackupEvent::Archive(self.archive15(name, location))
                            }
                            BaseBackupMessage::Manifest => {
                                self.phase = Phase::Copy { in_manifest: true };
                                BaseBackupEvent::Manifest
                            }
                            BaseBackupMessage::Data(d) if in_manifest => BaseBackupEvent::ManifestData(d),
                            BaseBackupMessage::Data(d) => BaseBackupEvent::ArchiveData(d),
                            BaseBackupMessage::Progress(p) => BaseBackupEvent::Progress(p),
                        }));
                    }
                    BackendMessage::CopyDone => return self.trailer(None),
                    other => return Err(unexpected("in the BASE_BACKUP stream", &other)),
                },
                Phase::Tar { index } => match self.read()? {
                    BackendMessage::CopyData(d) if index < self.tablespaces.len() => {
                        return Ok(Some(BaseBackupEvent::ArchiveData(d)))
                    }
                    BackendMessage::CopyData(d) => return Ok(Some(BaseBackupEvent::ManifestData(d))),
                    BackendMessage::CopyDone => {
                        self.phase = Phase::Between { next: index + 1 };
                        if index < self.tablespaces.len() {
                            // Servers before 15 leave the end-of-archive marker (two zero
                            // blocks) to the client; add it so every version yields whole tars.
                            return Ok(Some(BaseBackupEvent::ArchiveData(Bytes::from_static(&[0u8; 1024]))));
                        }
                    }
                    other => return Err(unexpected("in a BASE_BACKUP archive", &other)),
                },
                Phase::Between { next } => match self.read()? {
                    BackendMessage::CopyOutResponse(_) if next < self.tablespaces.len() => {
                        self.phase = Phase::Tar { index: next };
                        return Ok(Some(BaseBackupEvent::Archive(archive14(&self.tablespaces[next]))));
                    }
                    BackendMessage::CopyOutResponse(_) if next == self.tablespaces.len() && self.manifest => {
                        self.phase = Phase::Tar { index: next };
                        return Ok(Some(BaseBackupEvent::Manifest));
                    }
                    msg @ (BackendMessage::RowDescription { .. } | BackendMessage::CommandComplete { .. }) => {
                        return self.trailer(Some(msg));
                    }
                    other => return Err(unexpected("between BASE_BACKUP archives", &other)),
                },
            }
        }
    }

    fn read(&mut self) -> Result<BackendMessage> {
        match self.conn.read_message()? {
            BackendMessage::ErrorResponse(e) => {
                self.phase = Phase::Done;
                self.conn.wait_ready()?;
                Err(WireError::Server(e))
            }
            other => Ok(other),
        }
    }

    /// Reads the end position result set up to `ReadyForQuery`.
    fn trailer(&mut self, first: Option<BackendMessage>) -> Result<Option<BaseBackupEvent>> {
        let mut columns = std::sync::Arc::<[crate::message::backend::FieldDescription]>::from(Vec::new());
        let mut next = first;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => self.read()?,
            };
            match msg {
                BackendMessage::RowDescription { fields } => columns = fields.into(),
                BackendMessage::DataRow { columns: values } => {
                    let row = Row::new(columns.clone(), values);
                    if row.len() >= 2 {
                        self.end = Some(position(&row, "BASE_BACKUP end")?);
                    }
                }
                BackendMessage::CommandComplete { .. } => {}
                BackendMessage::ReadyForQuery { .. } => {
                    self.phase = Phase::Done;
                    if self.end.is_none() {
                        return Err(WireError::Protocol("BASE_BACKUP ended without an end position".to_owned()));
                    }
                    return Ok(None);
                }
                other => return Err(unexpected("after the BASE_BACKUP stream", &other)),
            }
        }
    }

    fn archive15(&self, name: String, location: String) -> ArchiveInfo {
        if location.is_empty() {
            return ArchiveInfo { name, tablespace_oid: None, location: None };
        }
        let oid = self
            .tablespaces
            .iter()
            .find(|t| t.location.as_deref() == Some(location.as_str()))
            .and_then(|t| t.oid)
            .or_else(|| name.split('.').next().and_then(|n| n.parse().ok()));
        ArchiveInfo { name, tablespace_oid: oid, location: Some(location) }
    }

    /// Reads the whole remaining stream, handing archive bytes to `on_archive(info, bytes)` and
    /// returning the manifest. A convenience over [`BaseBackup::next_event`].
    ///
    /// # Errors
    /// As [`BaseBackup::next_event`], or the first error of `on_archive`.
    pub fn for_each_archive(
        &mut self,
        mut on_archive: impl FnMut(&ArchiveInfo, &[u8]) -> Result<()>,
    ) -> Result<Vec<u8>> {
        let mut current: Option<ArchiveInfo> = None;
        let mut manifest = Vec::new();
        while let Some(event) = self.next_event()? {
            match event {
                BaseBackupEvent::Archive(info) => current = Some(info),
                BaseBackupEvent::ArchiveData(d) => {
                    let info = current
                        .as_ref()
                        .ok_or_else(|| WireError::Protocol("archive data before any archive".to_owned()))?;
                    on_archive(info, &d)?;
                }
                BaseBackupEvent::ManifestData(d) => manifest.extend_from_slice(&d),
                BaseBackupEvent::Manifest | BaseBackupEvent::Progress(_) => {}
            }
        }
        Ok(manifest)
    }
}
