//! `START_REPLICATION ... PHYSICAL`: the WAL stream.

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use pgmoneta_core::{Lsn, TimelineId};

use super::check_slot_name;
use super::message::{parse_replication_message, pg_now, ReplicationMessage, StandbyStatusUpdate};
use crate::connection::{unexpected, PgConnection, Row};
use crate::error::{Result, WireError};
use crate::message::backend::BackendMessage;
use crate::message::frontend::FrontendMessage;

/// What the WAL stream delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalEvent {
    /// WAL bytes starting at `start`.
    Data {
        /// Position of the first byte.
        start: Lsn,
        /// The server's end of WAL when it sent them.
        server_end: Lsn,
        /// Server clock (microseconds since 2000-01-01).
        send_time: i64,
        /// The bytes.
        data: Bytes,
    },
    /// A keepalive; answer with [`WalStream::send_status`] when `reply_requested`.
    Keepalive {
        /// The server's end of WAL.
        server_end: Lsn,
        /// Server clock.
        send_time: i64,
        /// The server wants a status update now.
        reply_requested: bool,
    },
    /// The stream ended. After the end of a timeline that is not the server's current one,
    /// `next_timeline` and `next_start` say where to continue; both are `None` when the stream
    /// ended because the client asked ([`WalStream::stop`]) or the server shut down.
    End {
        /// The timeline that follows.
        next_timeline: Option<TimelineId>,
        /// Where the next timeline starts.
        next_start: Option<Lsn>,
    },
}

/// A running `START_REPLICATION`. The connection is back in query mode after
/// [`WalEvent::End`].
#[derive(Debug)]
pub struct WalStream<'c, S: Read + Write> {
    conn: &'c mut PgConnection<S>,
    ended: bool,
    client_done: bool,
    /// An `End` decided before the caller asked (the server answered without streaming).
    pending: Option<WalEvent>,
}

impl<S: Read + Write> PgConnection<S> {
    /// `START_REPLICATION [SLOT slot] PHYSICAL start TIMELINE timeline`. `start` should be the
    /// start of a WAL segment.
    ///
    /// # Errors
    /// Not a replication connection, a bad slot name, a server error (WAL already removed:
    /// SQLSTATE `58P01`; slot in use: `55006`).
    pub fn start_replication(
        &mut self,
        slot: Option<&str>,
        start: Lsn,
        timeline: TimelineId,
    ) -> Result<WalStream<'_, S>> {
        self.require_replication("START_REPLICATION")?;
        let mut sql = String::from("START_REPLICATION ");
        if let Some(slot) = slot {
            check_slot_name(slot)?;
            sql.push_str(&format!("SLOT {slot} "));
        }
        sql.push_str(&format!("PHYSICAL {start} TIMELINE {}", timeline.0));
        self.send(&FrontendMessage::Query { sql })?;
        match self.read_message()? {
            BackendMessage::CopyBothResponse(_) => {
                Ok(WalStream { conn: self, ended: false, client_done: false, pending: None })
            }
            BackendMessage::ErrorResponse(e) => {
                self.wait_ready()?;
                Err(WireError::Server(e))
            }
            // Asking for a timeline whose end the start position is already past: the server
            // answers at once with the next timeline, without a COPY.
            msg @ (BackendMessage::RowDescription { .. } | BackendMessage::CommandComplete { .. }) => {
                let mut stream = WalStream { conn: self, ended: false, client_done: true, pending: None };
                let end = stream.finish(Some(msg))?;
                stream.pending = Some(end);
                Ok(stream)
            }
            other => Err(unexpected("after START_REPLICATION", &other)),
        }
    }
}

impl<S: Read + Write> WalStream<'_, S> {
    /// The next event; `Ok(None)` when the connection's read timeout passed without a whole
    /// message (send a status update and call again).
    ///
    /// # Errors
    /// A server error, a malformed message, a broken connection, or a call after
    /// [`WalEvent::End`].
    pub fn next_event(&mut self) -> Result<Option<WalEvent>> {
        if let Some(end) = self.pending.take() {
            return Ok(Some(end));
        }
        if self.ended {
            return Err(WireError::Usage("the WAL stream has ended".to_owned()));
        }
        let Some(msg) = self.conn.try_read_message()? else { return Ok(None) };
        match msg {
            BackendMessage::CopyData(data) => {
                let offset = self.conn.stream_offset() - data.len() as u64;
                Ok(Some(match parse_replication_message(data, offset)? {
                    ReplicationMessage::XLogData { wal_start, wal_end, send_time, data } => {
                        WalEvent::Data { start: wal_start, server_end: wal_end, send_time, data }
                    }
                    ReplicationMessage::Keepalive { wal_end, send_time, reply_requested } => {
                        WalEvent::Keepalive { server_end: wal_end, send_time, reply_requested }
                    }
                }))
            }
            BackendMessage::CopyDone => {
                if !self.client_done {
                    self.conn.send(&FrontendMessage::CopyDone)?;
                    self.client_done = true;
                }
                self.finish(None).map(Some)
            }
            BackendMessage::ErrorResponse(e) => {
                self.ended = true;
                self.conn.wait_ready()?;
                Err(WireError::Server(e))
            }
            // A walsender that shuts down once it has sent everything ends the command without
            // a CopyDone, then exits: the stream is over, with no next timeline.
            BackendMessage::CommandComplete { .. } => {
                self.ended = true;
                Ok(Some(WalEvent::End { next_timeline: None, next_start: None }))
            }
            other => Err(unexpected("in the WAL stream", &other)),
        }
    }

    /// Reads the end of the stream: the optional next-timeline result, up to `ReadyForQuery`.
    fn finish(&mut self, first: Option<BackendMessage>) -> Result<WalEvent> {
        let mut columns = std::sync::Arc::<[crate::message::backend::FieldDescription]>::from(Vec::new());
        let mut next = (None, None);
        let mut pending = first;
        loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => self.conn.read_message()?,
            };
            match msg {
                BackendMessage::RowDescription { fields } => columns = fields.into(),
                BackendMessage::DataRow { columns: values } => {
                    let row = Row::new(columns.clone(), values);
                    let tli = row.parse::<TimelineId>(0)?;
                    let lsn = row
                        .get(1)?
                        .map(|t| t.parse::<Lsn>())
                        .transpose()
                        .map_err(|e| WireError::Protocol(e.to_string()))?;
                    next = (tli, lsn);
                }
                BackendMessage::CommandComplete { .. } | BackendMessage::CopyData(_) => {}
                BackendMessage::ErrorResponse(e) => {
                    self.ended = true;
                    self.conn.wait_ready()?;
                    return Err(WireError::Server(e));
                }
                BackendMessage::ReadyForQuery { .. } => {
                    self.ended = true;
                    return Ok(WalEvent::End { next_timeline: next.0, next_start: next.1 });
                }
                other => return Err(unexpected("at the end of the WAL stream", &other)),
            }
        }
    }

    /// Sends a standby status update: `written` and `flushed` positions (the server may recycle
    /// WAL before `flushed`), no apply position.
    ///
    /// # Errors
    /// When the update cannot be sent.
    pub fn send_status(&mut self, written: Lsn, flushed: Lsn, reply_requested: bool) -> Result<()> {
        let update = StandbyStatusUpdate {
            write: written,
            flush: flushed,
            apply: Lsn::INVALID,
            send_time: pg_now(),
            reply_requested,
        };
        let mut payload = BytesMut::with_capacity(34);
        update.encode(&mut payload);
        self.conn.send(&FrontendMessage::CopyData(payload.freeze()))
    }

    /// Ends streaming from the client side and waits until the connection is back in query
    /// mode; WAL still in flight is discarded.
    ///
    /// # Errors
    /// A broken connection or a server error.
    pub fn stop(mut self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        if !self.client_done {
            self.conn.send(&FrontendMessage::CopyDone)?;
            self.client_done = true;
        }
        loop {
            match self.conn.read_message()? {
                BackendMessage::CopyData(_) => {}
                BackendMessage::CopyDone => {
                    self.finish(None)?;
                    return Ok(());
                }
                msg @ (BackendMessage::RowDescription { .. }
                | BackendMessage::CommandComplete { .. }
                | BackendMessage::ReadyForQuery { .. }) => {
                    self.finish(Some(msg))?;
                    return Ok(());
                }
                BackendMessage::ErrorResponse(e) => {
                    self.ended = true;
                    self.conn.wait_ready()?;
                    return Err(WireError::Server(e));
                }
                other => return Err(unexpected("while stopping the WAL stream", &other)),
            }
        }
    }

    /// Whether the stream has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}
