//! Replication commands on a `replication=true` connection.
//!
//! See <https://www.postgresql.org/docs/current/protocol-replication.html>.

mod base_backup;
mod message;
mod stream;

use std::io::{Read, Write};

use bytes::Bytes;
use pgmoneta_core::{Lsn, PgVersion, TimelineId};

pub use base_backup::{
    base_backup_command, ArchiveInfo, BaseBackup, BaseBackupEvent, BaseBackupOptions, ServerCompression, TablespaceInfo,
};
pub use message::{
    parse_base_backup_message, parse_replication_message, pg_now, BaseBackupMessage, ReplicationMessage,
    StandbyStatusUpdate, PG_EPOCH_OFFSET_MICROS,
};
pub use stream::{WalEvent, WalStream};

use crate::connection::{unexpected, PgConnection};
use crate::error::{Result, WireError};
use crate::message::backend::{BackendMessage, CopyResponseBody};
use crate::message::frontend::FrontendMessage;

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The cluster's system identifier (a 64-bit number, as text).
    pub system_id: String,
    /// The current timeline.
    pub timeline: TimelineId,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database connected to (logical replication), else `None`.
    pub dbname: Option<String>,
}

/// A timeline history file fetched with `TIMELINE_HISTORY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineHistoryFile {
    /// Its file name, like `00000002.history`.
    pub file_name: String,
    /// Its content.
    pub content: Bytes,
}

/// A replication slot as `READ_REPLICATION_SLOT` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// `physical` or `logical`.
    pub slot_type: String,
    /// The oldest WAL position the slot keeps, if it has reserved WAL.
    pub restart_lsn: Option<Lsn>,
    /// The timeline of `restart_lsn`.
    pub restart_timeline: Option<TimelineId>,
}

/// Checks a slot name as PostgreSQL does: 1 to 63 lower-case letters, digits and underscores.
///
/// # Errors
/// [`WireError::Usage`] naming the problem.
pub fn check_slot_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(WireError::Usage(format!(
            "invalid replication slot name {name:?}: use 1 to 63 lower-case letters, digits and underscores"
        )));
    }
    Ok(())
}

fn lsn_column(text: Option<&str>, what: &str) -> Result<Option<Lsn>> {
    text.map(|t| t.parse::<Lsn>().map_err(|e| WireError::Protocol(format!("{what}: {e}")))).transpose()
}

fn timeline_column(text: Option<&str>, what: &str) -> Result<Option<TimelineId>> {
    text.map(|t| t.parse::<TimelineId>().map_err(|e| WireError::Protocol(format!("{what}: {e}")))).transpose()
}

impl<S: Read + Write> PgConnection<S> {
    /// `IDENTIFY_SYSTEM`.
    ///
    /// # Errors
    /// Not a replication connection, a server error, or an answer of the wrong shape.
    pub fn identify_system(&mut self) -> Result<IdentifySystem> {
        self.require_replication("IDENTIFY_SYSTEM")?;
        let row = self.query_one("IDENTIFY_SYSTEM")?;
        if row.len() < 4 {
            return Err(WireError::Protocol(format!("IDENTIFY_SYSTEM returned {} columns, expected 4", row.len())));
        }
        Ok(IdentifySystem {
            system_id: row.get(0)?.unwrap_or_default().to_owned(),
            timeline: timeline_column(row.get(1)?, "IDENTIFY_SYSTEM timeline")?
                .ok_or_else(|| WireError::Protocol("IDENTIFY_SYSTEM returned no timeline".to_owned()))?,
            xlogpos: lsn_column(row.get(2)?, "IDENTIFY_SYSTEM xlogpos")?
                .ok_or_else(|| WireError::Protocol("IDENTIFY_SYSTEM returned no position".to_owned()))?,
            dbname: row.get(3)?.map(str::to_owned),
        })
    }

    /// `SHOW name`: a server setting, as text with its unit (`16MB`, `on`).
    ///
    /// # Errors
    /// An unknown setting (server error) or a malformed answer.
    pub fn show(&mut self, name: &str) -> Result<String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            return Err(WireError::Usage(format!("invalid setting name {name:?}")));
        }
        let row = self.query_one(&format!("SHOW {name}"))?;
        Ok(row.get(0)?.unwrap_or_default().to_owned())
    }

    /// `TIMELINE_HISTORY tli`: the history file of a timeline (which does not exist for 1).
    ///
    /// # Errors
    /// Not a replication connection, or a server error (unknown timeline).
    pub fn timeline_history(&mut self, timeline: TimelineId) -> Result<TimelineHistoryFile> {
        self.require_replication("TIMELINE_HISTORY")?;
        let row = self.query_one(&format!("TIMELINE_HISTORY {}", timeline.0))?;
        Ok(TimelineHistoryFile {
            file_name: row.get(0)?.unwrap_or_default().to_owned(),
            content: row.bytes(1).cloned().unwrap_or_default(),
        })
    }

    /// `READ_REPLICATION_SLOT slot` (PostgreSQL 15+); `None` when the slot does not exist.
    ///
    /// # Errors
    /// Not a replication connection, PostgreSQL 14, a server error.
    pub fn read_replication_slot(&mut self, slot: &str) -> Result<Option<SlotInfo>> {
        self.require_replication("READ_REPLICATION_SLOT")?;
        check_slot_name(slot)?;
        let row = self.query_one(&format!("READ_REPLICATION_SLOT {slot}"))?;
        let Some(slot_type) = row.get(0)? else { return Ok(None) };
        Ok(Some(SlotInfo {
            slot_type: slot_type.to_owned(),
            restart_lsn: lsn_column(row.get(1)?, "restart_lsn")?,
            restart_timeline: timeline_column(row.get(2)?, "restart_tli")?,
        }))
    }

    /// `CREATE_REPLICATION_SLOT slot PHYSICAL` reserving WAL at once, in the syntax of `version`.
    /// The slot keeps WAL from the server's current insert position on; `READ_REPLICATION_SLOT`
    /// (15+) or `pg_replication_slots` tell where exactly.
    ///
    /// # Errors
    /// An invalid name, or a server error (the slot exists: SQLSTATE `42710`).
    pub fn create_physical_slot(&mut self, slot: &str, version: PgVersion) -> Result<()> {
        self.require_replication("CREATE_REPLICATION_SLOT")?;
        check_slot_name(slot)?;
        let sql = if version.has_new_base_backup_syntax() {
            format!("CREATE_REPLICATION_SLOT {slot} PHYSICAL (RESERVE_WAL true)")
        } else {
            format!("CREATE_REPLICATION_SLOT {slot} PHYSICAL RESERVE_WAL")
        };
        self.query_one(&sql).map(drop)
    }

    /// `DROP_REPLICATION_SLOT slot`, with `WAIT` when the slot may be in use briefly.
    ///
    /// # Errors
    /// An invalid name, or a server error (no such slot: SQLSTATE `42704`).
    pub fn drop_replication_slot(&mut self, slot: &str, wait: bool) -> Result<()> {
        self.require_replication("DROP_REPLICATION_SLOT")?;
        check_slot_name(slot)?;
        let sql =
            if wait { format!("DROP_REPLICATION_SLOT {slot} WAIT") } else { format!("DROP_REPLICATION_SLOT {slot}") };
        self.execute(&sql)
    }

    /// `UPLOAD_MANIFEST` (PostgreSQL 17+): sends the manifest of the backup the next incremental
    /// `BASE_BACKUP` on this connection builds on.
    ///
    /// # Errors
    /// A server error (an invalid manifest, WAL summaries missing).
    pub fn upload_manifest(&mut self, manifest: &[u8]) -> Result<()> {
        self.require_replication("UPLOAD_MANIFEST")?;
        self.send(&FrontendMessage::Query { sql: "UPLOAD_MANIFEST".to_owned() })?;
        match self.read_message()? {
            BackendMessage::CopyInResponse(CopyResponseBody { .. }) => {}
            BackendMessage::ErrorResponse(e) => {
                self.wait_ready()?;
                return Err(WireError::Server(e));
            }
            other => return Err(unexpected("after UPLOAD_MANIFEST", &other)),
        }
        for chunk in manifest.chunks(64 << 10) {
            self.queue(&FrontendMessage::CopyData(Bytes::copy_from_slice(chunk)));
        }
        self.queue(&FrontendMessage::CopyDone);
        self.flush()?;
        let mut error = None;
        loop {
            match self.read_message()? {
                BackendMessage::ReadyForQuery { .. } => break,
                BackendMessage::ErrorResponse(e) => error = Some(e),
                BackendMessage::CommandComplete { .. }
                | BackendMessage::RowDescription { .. }
                | BackendMessage::DataRow { .. } => {}
                other => return Err(unexpected("after the manifest upload", &other)),
            }
        }
        error.map_or(Ok(()), |e| Err(WireError::Server(e)))
    }

    /// Reads until `ReadyForQuery`, remembering the first error.
    pub(crate) fn wait_ready(&mut self) -> Result<Option<crate::error::ErrorFields>> {
        let mut error = None;
        loop {
            match self.read_message()? {
                BackendMessage::ReadyForQuery { .. } => return Ok(error),
                BackendMessage::ErrorResponse(e) => {
                    error.get_or_insert(e);
                }
                _ => {}
            }
        }
    }
}
