//! Messages carried in `CopyData` on a replication connection.
//!
//! See <https://www.postgresql.org/docs/current/protocol-replication.html>.

use bytes::{BufMut, Bytes, BytesMut};
use pgmoneta_core::Lsn;

use crate::error::Result;
use crate::message::Cursor;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The current time as PostgreSQL timestamps it: microseconds since 2000-01-01 UTC.
pub fn pg_now() -> i64 {
    let since_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since_unix.as_micros() as i64 - PG_EPOCH_OFFSET_MICROS
}

/// A message the server sends during `START_REPLICATION`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicationMessage {
    /// `XLogData` (`w`): WAL bytes starting at `wal_start`.
    XLogData {
        /// Position of the first byte of `data`.
        wal_start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// Server clock at transmission (microseconds since 2000-01-01).
        send_time: i64,
        /// The WAL bytes.
        data: Bytes,
    },
    /// `PrimaryKeepaliveMessage` (`k`).
    Keepalive {
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// Server clock at transmission.
        send_time: i64,
        /// Whether the server asks for a status update now (to avoid a timeout disconnect).
        reply_requested: bool,
    },
}

/// Parses the payload of one `CopyData` received during `START_REPLICATION`. `offset` is the
/// stream offset of the payload, for error messages.
///
/// # Errors
/// An unknown subtype, or a body of the wrong size.
pub fn parse_replication_message(data: Bytes, offset: u64) -> Result<ReplicationMessage> {
    let t = data.first().copied().unwrap_or(0);
    let mut c = Cursor::new(data, offset, t, "replication");
    let t = c.u8("message subtype")?;
    let msg = match t {
        b'w' => ReplicationMessage::XLogData {
            wal_start: Lsn(c.u64("WAL start")?),
            wal_end: Lsn(c.u64("WAL end")?),
            send_time: c.i64("send time")?,
            data: c.rest(),
        },
        b'k' => ReplicationMessage::Keepalive {
            wal_end: Lsn(c.u64("WAL end")?),
            send_time: c.i64("send time")?,
            reply_requested: match c.u8("reply flag")? {
                0 => false,
                1 => true,
                other => return Err(c.error(format!("reply flag {other} is neither 0 nor 1"))),
            },
        },
        other => return Err(c.error(format!("unknown replication message {:?}", other as char))),
    };
    c.finish()?;
    Ok(msg)
}

impl ReplicationMessage {
    /// The `CopyData` payload, as a server sends it.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            ReplicationMessage::XLogData { wal_start, wal_end, send_time, data } => {
                buf.put_u8(b'w');
                buf.put_u64(wal_start.0);
                buf.put_u64(wal_end.0);
                buf.put_i64(*send_time);
                buf.put_slice(data);
            }
            ReplicationMessage::Keepalive { wal_end, send_time, reply_requested } => {
                buf.put_u8(b'k');
                buf.put_u64(wal_end.0);
                buf.put_i64(*send_time);
                buf.put_u8(u8::from(*reply_requested));
            }
        }
    }
}

/// `StandbyStatusUpdate` (`r`): what the client has written, flushed and applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Last WAL byte + 1 received and written.
    pub write: Lsn,
    /// Last WAL byte + 1 flushed to durable storage. The server may recycle WAL before it.
    pub flush: Lsn,
    /// Last WAL byte + 1 applied (pgmoneta applies nothing: `0/0`).
    pub apply: Lsn,
    /// Client clock (microseconds since 2000-01-01).
    pub send_time: i64,
    /// Ask the server to answer immediately.
    pub reply_requested: bool,
}

impl StandbyStatusUpdate {
    /// The `CopyData` payload.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(b'r');
        buf.put_u64(self.write.0);
        buf.put_u64(self.flush.0);
        buf.put_u64(self.apply.0);
        buf.put_i64(self.send_time);
        buf.put_u8(u8::from(self.reply_requested));
    }

    /// Parses a `CopyData` payload (server side, and tests).
    ///
    /// # Errors
    /// A payload that is not a status update.
    pub fn parse(data: Bytes, offset: u64) -> Result<StandbyStatusUpdate> {
        let mut c = Cursor::new(data, offset, b'r', "standby status");
        if c.u8("message subtype")? != b'r' {
            return Err(c.error("not a standby status update"));
        }
        let msg = StandbyStatusUpdate {
            write: Lsn(c.u64("write position")?),
            flush: Lsn(c.u64("flush position")?),
            apply: Lsn(c.u64("apply position")?),
            send_time: c.i64("send time")?,
            reply_requested: c.u8("reply flag")? != 0,
        };
        c.finish()?;
        Ok(msg)
    }
}

/// A `CopyData` payload of a `BASE_BACKUP` stream in the PostgreSQL 15+ format.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseBackupMessage {
    /// `n`: a new archive starts.
    NewArchive {
        /// Archive file name, like `base.tar` or `16384.tar.zst`.
        name: String,
        /// Tablespace location, empty for the main data directory.
        location: String,
    },
    /// `m`: the backup manifest follows, in `Data` messages.
    Manifest,
    /// `d`: archive or manifest bytes.
    Data(Bytes),
    /// `p`: progress, bytes of the current archive done so far.
    Progress(u64),
}

/// Parses one `CopyData` payload of a PostgreSQL 15+ `BASE_BACKUP` stream.
///
/// # Errors
/// An unknown subtype or a body of the wrong size.
pub fn parse_base_backup_message(data: Bytes, offset: u64) -> Result<BaseBackupMessage> {
    let t = data.first().copied().unwrap_or(0);
    let mut c = Cursor::new(data, offset, t, "base backup");
    let t = c.u8("message subtype")?;
    let msg = match t {
        b'n' => {
            BaseBackupMessage::NewArchive { name: c.cstr("archive name")?, location: c.cstr("tablespace location")? }
        }
        b'm' => BaseBackupMessage::Manifest,
        b'd' => BaseBackupMessage::Data(c.rest()),
        b'p' => {
            let v = c.i64("progress")?;
            if v < 0 {
                return Err(c.error(format!("negative progress {v}")));
            }
            BaseBackupMessage::Progress(v as u64)
        }
        other => return Err(c.error(format!("unknown base backup message {:?}", other as char))),
    };
    c.finish()?;
    Ok(msg)
}

impl BaseBackupMessage {
    /// The `CopyData` payload, as a server sends it.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            BaseBackupMessage::NewArchive { name, location } => {
                buf.put_u8(b'n');
                crate::message::put_cstr(buf, name);
                crate::message::put_cstr(buf, location);
            }
            BaseBackupMessage::Manifest => buf.put_u8(b'm'),
            BaseBackupMessage::Data(d) => {
                buf.put_u8(b'd');
                buf.put_slice(d);
            }
            BaseBackupMessage::Progress(p) => {
                buf.put_u8(b'p');
                buf.put_i64(*p as i64);
            }
        }
    }
}
