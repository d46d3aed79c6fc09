//! Backup sources: what delivers a base backup's archives (tar streams) to whatever keeps them.
//!
//! A [`BackupSource`] feeds an [`ArchiveSink`]: each archive is announced with
//! [`ArchiveSink::start`], its bytes follow through [`ArchiveSink::data`], and the source ends
//! with where the backup started and ended in the WAL and, when it has one, PostgreSQL's own
//! `backup_manifest`. The server's `BASE_BACKUP` is one source ([`BaseBackupSource`]); archives
//! recorded earlier, read from files or memory, are another ([`RecordedSource`]), which lets a
//! repository be tested with no server at all. `pgmoneta-storage` implements the sink.
//!
//! WAL works the same way: [`stream_wal`] drives `START_REPLICATION` (resuming where the
//! [`WalSink`] says its archive ends, fetching timeline history files, following timeline
//! switches, answering the server with what the sink has made durable), and the sink keeps the
//! bytes.
//!
//! ```no_run
//! use bytes::Bytes;
//! use pgmoneta_wire::replication::{ArchiveInfo, BaseBackupOptions};
//! use pgmoneta_wire::source::{ArchiveSink, BackupSource, BaseBackupSource, SinkError};
//! use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode};
//!
//! /// Counts the bytes of each archive.
//! #[derive(Default)]
//! struct Count(Vec<(String, u64)>);
//!
//! impl ArchiveSink for Count {
//!     fn stopped(&self) -> bool {
//!         false
//!     }
//!     fn start(&mut self, info: ArchiveInfo) -> Result<(), SinkError> {
//!         self.0.push((info.name, 0));
//!         Ok(())
//!     }
//!     fn data(&mut self, chunk: Bytes) -> Result<bool, SinkError> {
//!         if let Some(last) = self.0.last_mut() {
//!             last.1 += chunk.len() as u64;
//!         }
//!         Ok(true)
//!     }
//!     fn finish(&mut self) -> Result<(), SinkError> {
//!         Ok(())
//!     }
//! }
//!
//! let options = ConnectOptions::new("localhost", 5432, "repl").replication(ReplicationMode::Physical);
//! let mut conn = PgConnection::connect(&options)?;
//! let (version, _) = conn.server_version()?;
//! let mut source = BaseBackupSource::new(&mut conn, BaseBackupOptions::new("example"), version);
//! let mut count = Count::default();
//! let end = source.feed(&mut count)?.expect("not stopped");
//! println!("{:?} from {} to {}", count.0, end.start.0, end.end.0);
//! # Ok::<(), pgmoneta_wire::WireError>(())
//! ```

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pgmoneta_core::{AtomicLsn, Lsn, PgVersion, TimelineId, WalSegmentSize};

use crate::connection::PgConnection;
use crate::error::{Result, WireError};
use crate::replication::{ArchiveInfo, BaseBackupEvent, BaseBackupOptions, WalEvent};

pub mod sql;

pub use crate::error::SinkError;

/// How long received WAL may wait, at most, before it is flushed and reported as flushed while
/// the stream keeps the socket busy: the flush lag under load stays a fraction of a segment.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Where a [`BackupSource`] delivers a backup's archives.
pub trait ArchiveSink {
    /// Whether the receiver failed or was cancelled: the source stops feeding.
    fn stopped(&self) -> bool;

    /// The bytes the source expects to deliver in all, when it knows (for progress).
    fn expect(&mut self, _bytes: u64) {}

    /// A new archive starts; the previous one, if any, is complete.
    ///
    /// # Errors
    /// The sink's own.
    fn start(&mut self, info: ArchiveInfo) -> std::result::Result<(), SinkError>;

    /// Bytes of the current archive; `false` when the receiver wants no more (it stopped).
    ///
    /// # Errors
    /// The sink's own, and data before any archive.
    fn data(&mut self, chunk: Bytes) -> std::result::Result<bool, SinkError>;

    /// The current archive is complete.
    ///
    /// # Errors
    /// The sink's own, like an archive that did not parse.
    fn finish(&mut self) -> std::result::Result<(), SinkError>;
}

/// How a source ended: where the backup starts and ends in the WAL, and PostgreSQL's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceEnd {
    /// The start LSN and timeline.
    pub start: (Lsn, TimelineId),
    /// The end LSN and timeline.
    pub end: (Lsn, TimelineId),
    /// The server's `backup_manifest`; `None` when the source has none (the receiver then
    /// writes one from the files it received).
    pub manifest: Option<Vec<u8>>,
}

/// Something that delivers a base backup.
pub trait BackupSource {
    /// Delivers every archive to `sink`. `Ok(None)` when it stopped because the sink asked
    /// (the sink knows why).
    ///
    /// # Errors
    /// The source's own (connection, server, recording); the sink's come back as
    /// [`WireError::Sink`].
    fn feed(&mut self, sink: &mut dyn ArchiveSink) -> Result<Option<SourceEnd>>;
}

fn sink_error(e: SinkError) -> WireError {
    WireError::Sink(e)
}

/// A base backup taken with `BASE_BACKUP` over a replication connection, full or (PostgreSQL
/// 17+) incremental on a previous backup's manifest.
pub struct BaseBackupSource<'c, S: Read + Write> {
    conn: &'c mut PgConnection<S>,
    options: BaseBackupOptions,
    version: PgVersion,
    parent_manifest: Option<Vec<u8>>,
}

impl<'c, S: Read + Write> BaseBackupSource<'c, S> {
    /// A full backup of the server `conn` is connected to (a physical replication connection).
    pub fn new(conn: &'c mut PgConnection<S>, options: BaseBackupOptions, version: PgVersion) -> Self {
        BaseBackupSource { conn, options, version, parent_manifest: None }
    }

    /// An incremental backup on the backup whose `backup_manifest` is `manifest` (uploaded
    /// with `UPLOAD_MANIFEST` before `BASE_BACKUP ... INCREMENTAL`).
    pub fn incremental(mut self, manifest: Vec<u8>) -> Self {
        self.options.incremental = true;
        self.parent_manifest = Some(manifest);
        self
    }
}

impl<S: Read + Write> BackupSource for BaseBackupSource<'_, S> {
    fn feed(&mut self, sink: &mut dyn ArchiveSink) -> Result<Option<SourceEnd>> {
        if let Some(manifest) = &self.parent_manifest {
            self.conn.upload_manifest(manifest)?;
        }
        let mut backup = self.conn.base_backup(&self.options, self.version)?;
        let start = (backup.start_lsn(), backup.start_timeline());
        sink.expect(backup.tablespaces().iter().filter_map(|t| t.size_kb).sum::<u64>() * 1024);
        let mut manifest = Vec::new();
        while let Some(event) = backup.next_event()? {
            if sink.stopped() {
                return Ok(None);
            }
            match event {
                BaseBackupEvent::Archive(info) => sink.start(info).map_err(sink_error)?,
                BaseBackupEvent::ArchiveData(d) => {
                    let more = sink.data(d).map_err(sink_error)?;
                    if !more {
                        return Ok(None);
                    }
                }
                BaseBackupEvent::ManifestData(d) => manifest.extend_from_slice(&d),
                _ => {}
            }
        }
        sink.finish().map_err(sink_error)?;
        if sink.stopped() {
            return Ok(None);
        }
        let end = backup.end().ok_or_else(|| WireError::Protocol("BASE_BACKUP gave no end position".into()))?;
        Ok(Some(SourceEnd { start, end, manifest: Some(manifest) }))
    }
}

/// Archives recorded earlier (by `pg_basebackup -Ft`, or built by a test), delivered from any
/// readers in chunks, with the start and end positions the recording knows.
pub struct RecordedSource {
    archives: Vec<(ArchiveInfo, Box<dyn Read + Send>)>,
    start: (Lsn, TimelineId),
    end: (Lsn, TimelineId),
    manifest: Option<Vec<u8>>,
    chunk: usize,
}

impl RecordedSource {
    /// A recording that starts and ends at these positions; archives are added with
    /// [`RecordedSource::archive`].
    pub fn new(start: (Lsn, TimelineId), end: (Lsn, TimelineId)) -> Self {
        RecordedSource { archives: Vec::new(), start, end, manifest: None, chunk: 256 * 1024 }
    }

    /// Adds an archive: `base.tar` for the data directory (`info.tablespace_oid` `None`), or
    /// a tablespace's. Delivered in the order added.
    pub fn archive(mut self, info: ArchiveInfo, data: impl Read + Send + 'static) -> Self {
        self.archives.push((info, Box::new(data)));
        self
    }

    /// PostgreSQL's `backup_manifest` for the recording, to check the files against.
    pub fn manifest(mut self, manifest: Vec<u8>) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// Bytes per [`ArchiveSink::data`] call (256 kB unless set; at least 1).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk = bytes.max(1);
        self
    }
}

impl BackupSource for RecordedSource {
    fn feed(&mut self, sink: &mut dyn ArchiveSink) -> Result<Option<SourceEnd>> {
        for (info, mut reader) in std::mem::take(&mut self.archives) {
            let name = info.name.clone();
            sink.start(info).map_err(sink_error)?;
            loop {
                if sink.stopped() {
                    return Ok(None);
                }
                let mut buf = vec![0u8; self.chunk];
                let n = read_full(&mut reader, &mut buf).map_err(|e| WireError::io(format!("reading {name}"), e))?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if !sink.data(Bytes::from(buf)).map_err(sink_error)? {
                    return Ok(None);
                }
            }
        }
        sink.finish().map_err(sink_error)?;
        if sink.stopped() {
            return Ok(None);
        }
        Ok(Some(SourceEnd { start: self.start, end: self.end, manifest: self.manifest.take() }))
    }
}

/// Reads until `buf` is full or the reader ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Where [`stream_wal`] puts the WAL it receives.
pub trait WalSink {
    /// The archive's WAL segment size.
    fn segment_size(&self) -> WalSegmentSize;

    /// Where the archive ends: the timeline and the start of the first segment it does not
    /// hold whole; `None` for an empty archive.
    ///
    /// # Errors
    /// The sink's own.
    fn resume_point(&mut self) -> std::result::Result<Option<(TimelineId, Lsn)>, SinkError>;

    /// Whether the archive holds the history file of `timeline`.
    fn has_history(&self, timeline: TimelineId) -> bool;

    /// Keeps a timeline history file as the server sent it.
    ///
    /// # Errors
    /// The sink's own.
    fn store_history(&mut self, name: &str, content: &[u8]) -> std::result::Result<(), SinkError>;

    /// Streaming starts, or goes on after a timeline switch, on `timeline` at `start` (the
    /// start of a segment).
    ///
    /// # Errors
    /// The sink's own.
    fn begin(&mut self, timeline: TimelineId, start: Lsn) -> std::result::Result<(), SinkError>;

    /// WAL bytes at `start`, following on what came before (a repeat is allowed, a gap is not).
    ///
    /// # Errors
    /// The sink's own, and a gap.
    fn write(&mut self, start: Lsn, data: &[u8]) -> std::result::Result<(), SinkError>;

    /// Whether a segment was completed since the last [`WalSink::flush`]: the server then
    /// hears at once.
    fn segment_completed(&self) -> bool;

    /// Makes what was written durable; returns the position up to which it is.
    ///
    /// # Errors
    /// The sink's own.
    fn flush(&mut self) -> std::result::Result<Lsn, SinkError>;

    /// The position after the last byte written (durable or not).
    fn written(&self) -> Lsn;
}

/// How to stream WAL.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamOptions {
    /// The replication slot.
    pub slot: Option<String>,
    /// Set to stop streaming; [`stream_wal`] then returns `Ok`.
    pub stop: Arc<AtomicBool>,
    /// Longest time between status updates (and syncs while data arrives).
    pub status_interval: Duration,
    /// Where streaming stands, published for status and metrics.
    pub progress: Arc<StreamProgress>,
    /// A lease on the slot: each status update asks the server for a reply, so a live server
    /// is heard at least every `status_interval`; once it has been silent for longer than the
    /// lease, nothing more is written (even data already waiting in the socket) and the stream
    /// ends with [`WireError::LeaseExpired`]. The server's `wal_sender_timeout` should be at
    /// least the lease: a consumer it dropped for silence has then stopped writing by its own
    /// clock before another can take the slot.
    pub lease: Option<Duration>,
    /// When not zero, the flushed position reported to the server never passes it, so the
    /// slot keeps the WAL from there on for someone else (another copy of the archive still
    /// catching up). The archive itself is written and flushed as usual.
    pub hold: Arc<AtomicLsn>,
}

/// Where a stream stands, updated as it runs: what is durable, what the server has, the
/// timeline. Read from other threads.
#[derive(Debug, Default)]
pub struct StreamProgress {
    /// The position written and synced.
    pub flushed: AtomicLsn,
    /// The server's end of WAL, as of its last message.
    pub server_end: AtomicLsn,
    /// The timeline being streamed (0 before the stream starts).
    pub timeline: AtomicU32,
    /// When the server accepted `START_REPLICATION` on this stream, then when it last sent
    /// anything; `None` before.
    heard: std::sync::Mutex<Option<Instant>>,
}

impl StreamProgress {
    /// When the server was last heard on this stream (it accepting `START_REPLICATION`
    /// counts); `None` before the stream started.
    pub fn heard(&self) -> Option<Instant> {
        *self.heard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn hear(&self, at: Instant) {
        *self.heard.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }
}

impl StreamOptions {
    /// Streaming through `slot`, with a status update at least every 10 seconds.
    pub fn new(slot: Option<&str>) -> StreamOptions {
        StreamOptions {
            slot: slot.map(str::to_owned),
            stop: Arc::new(AtomicBool::new(false)),
            status_interval: Duration::from_secs(10),
            progress: Arc::new(StreamProgress::default()),
            lease: None,
            hold: Arc::new(AtomicLsn::new(Lsn(0))),
        }
    }
}

/// Streams WAL from the server `conn` is connected to (a physical replication connection)
/// into `sink` until `options.stop` is set or the connection fails, following timeline
/// switches. Streaming starts where the sink's archive ends, else at the slot's restart
/// position (PostgreSQL 15+), else at the server's current position; the history file of
/// every timeline after the first is fetched once. The server is told a position is flushed
/// only once the sink has made it durable. Returns the position flushed.
///
/// # Errors
/// Connection and server errors (the caller restarts with backoff); the sink's, as
/// [`WireError::Sink`].
pub fn stream_wal(
    conn: &mut PgConnection,
    sink: &mut dyn WalSink,
    version: PgVersion,
    options: &StreamOptions,
) -> Result<Lsn> {
    let seg = sink.segment_size();
    let system = conn.identify_system()?;
    let (mut timeline, mut start) = match sink.resume_point().map_err(sink_error)? {
        Some(at) => at,
        None => {
            let from_slot = match (&options.slot, version >= PgVersion::V15) {
                (Some(slot), true) => conn
                    .read_replication_slot(slot)?
                    .and_then(|s| Some((s.restart_timeline.unwrap_or(system.timeline), s.restart_lsn?))),
                _ => None,
            };
            let (tli, lsn) = from_slot.unwrap_or((system.timeline, system.xlogpos));
            (tli, lsn.segment_start(seg))
        }
    };
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    sink.begin(timeline, start).map_err(sink_error)?;
    // Everything before the start is in the sink already (or was never asked of it): until the
    // first flush, lag is measured from here, not from 0/0.
    options.progress.flushed.fetch_max(start);
    loop {
        if timeline.0 > 1 && !sink.has_history(timeline) {
            let h = conn.timeline_history(timeline)?;
            sink.store_history(&h.file_name, &h.content).map_err(sink_error)?;
        }
        let mut stream = conn.start_replication(options.slot.as_deref(), start, timeline)?;
        let mut heard = Instant::now();
        options.progress.hear(heard);
        options.progress.timeline.store(timeline.0, Ordering::Relaxed);
        let mut last_status = Instant::now();
        let mut dirty = false;
        // The flushed position reported to the server: what the sink made durable, never past
        // the hold.
        let reported = |flushed: Lsn| match options.hold.load() {
            Lsn(0) => flushed,
            hold => flushed.min(hold),
        };
        let ask = options.lease.is_some();
        loop {
            if options.stop.load(Ordering::SeqCst) {
                let flushed = sink.flush().map_err(sink_error)?;
                options.progress.flushed.fetch_max(flushed);
                stream.send_status(sink.written(), reported(flushed), false)?;
                stream.stop()?;
                return Ok(flushed);
            }
            let event = stream.next_event()?;
            let now = Instant::now();
            if let Some(lease) = options.lease {
                // Measured before what just arrived is used: after a pause of this process
                // the socket may still hold data the server sent before it gave up on us.
                let silent = now.saturating_duration_since(heard);
                if silent > lease {
                    let flushed = sink.flush().map_err(sink_error)?;
                    options.progress.flushed.fetch_max(flushed);
                    return Err(WireError::LeaseExpired {
                        silent_ms: silent.as_millis() as u64,
                        lease_ms: lease.as_millis() as u64,
                    });
                }
            }
            if event.is_some() {
                heard = now;
                options.progress.hear(now);
            }
            let idle = event.is_none();
            let mut reply = false;
            match event {
                Some(WalEvent::Data { start: at, data, server_end, .. }) => {
                    sink.write(at, &data).map_err(sink_error)?;
                    options.progress.server_end.fetch_max(server_end);
                    dirty = true;
                }
                Some(WalEvent::Keepalive { reply_requested, server_end, .. }) => {
                    options.progress.server_end.fetch_max(server_end);
                    reply = reply_requested;
                }
                Some(WalEvent::End { next_timeline, next_start }) => {
                    let flushed = sink.flush().map_err(sink_error)?;
                    options.progress.flushed.fetch_max(flushed);
                    let (Some(tli), Some(at)) = (next_timeline, next_start) else {
                        return Ok(flushed);
                    };
                    timeline = tli;
                    // The new timeline's segment is streamed whole, from its start.
                    start = at.segment_start(seg);
                    sink.begin(timeline, start).map_err(sink_error)?;
                    break;
                }
                None => {}
            }
            let due = last_status.elapsed() >= options.status_interval;
            // Under a steady stream the socket is never idle: received WAL is still made durable
            // (and reported) every FLUSH_INTERVAL, not only when a segment completes.
            let stale = dirty && (idle || last_status.elapsed() >= FLUSH_INTERVAL);
            if reply || sink.segment_completed() || stale || due {
                let flushed = sink.flush().map_err(sink_error)?;
                options.progress.flushed.fetch_max(flushed);
                stream.send_status(sink.written(), reported(flushed), ask && due)?;
                last_status = Instant::now();
                dirty = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        archives: Vec<(String, Vec<u8>)>,
        chunks: usize,
        stop_after: Option<usize>,
        finished: usize,
    }

    impl ArchiveSink for Collect {
        fn stopped(&self) -> bool {
            self.stop_after.is_some_and(|n| self.chunks >= n)
        }
        fn start(&mut self, info: ArchiveInfo) -> std::result::Result<(), SinkError> {
            self.archives.push((info.name, Vec::new()));
            Ok(())
        }
        fn data(&mut self, chunk: Bytes) -> std::result::Result<bool, SinkError> {
            let Some(last) = self.archives.last_mut() else { return Err("data before any archive".into()) };
            last.1.extend_from_slice(&chunk);
            self.chunks += 1;
            Ok(true)
        }
        fn finish(&mut self) -> std::result::Result<(), SinkError> {
            self.finished += 1;
            Ok(())
        }
    }

    fn info(name: &str, oid: Option<u32>) -> ArchiveInfo {
        ArchiveInfo { name: name.into(), tablespace_oid: oid, location: oid.map(|_| "/ts".into()) }
    }

    #[test]
    fn a_recording_is_delivered_in_order_and_in_chunks() {
        let base: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut source = RecordedSource::new((Lsn(0x300_0028), TimelineId(1)), (Lsn(0x300_0100), TimelineId(1)))
            .archive(info("base.tar", None), std::io::Cursor::new(base.clone()))
            .archive(info("16385.tar", Some(16385)), std::io::Cursor::new(vec![7u8; 10]))
            .manifest(b"{}".to_vec())
            .chunk_size(4096);
        let mut sink = Collect::default();
        let end = source.feed(&mut sink).unwrap().unwrap();
        assert_eq!(end.start, (Lsn(0x300_0028), TimelineId(1)));
        assert_eq!(end.manifest.as_deref(), Some(&b"{}"[..]));
        assert_eq!(sink.archives[0], ("base.tar".to_owned(), base));
        assert_eq!(sink.archives[1], ("16385.tar".to_owned(), vec![7u8; 10]));
        assert_eq!((sink.chunks, sink.finished), (4, 1));
    }

    #[test]
    fn a_sink_that_stops_ends_the_feed_without_an_end() {
        let mut source = RecordedSource::new((Lsn(1), TimelineId(1)), (Lsn(2), TimelineId(1)))
            .archive(info("base.tar", None), std::io::Cursor::new(vec![0u8; 100]))
            .chunk_size(10);
        let mut sink = Collect { stop_after: Some(3), ..Collect::default() };
        assert_eq!(source.feed(&mut sink).unwrap(), None);
        assert_eq!(sink.chunks, 3);
    }

    #[test]
    fn a_sink_error_comes_back_as_itself() {
        #[derive(Debug, thiserror::Error)]
        #[error("disk full at {0}")]
        struct Full(u64);
        struct Failing;
        impl ArchiveSink for Failing {
            fn stopped(&self) -> bool {
                false
            }
            fn start(&mut self, _: ArchiveInfo) -> std::result::Result<(), SinkError> {
                Ok(())
            }
            fn data(&mut self, _: Bytes) -> std::result::Result<bool, SinkError> {
                Err(Box::new(Full(42)))
            }
            fn finish(&mut self) -> std::result::Result<(), SinkError> {
                Ok(())
            }
        }
        let mut source = RecordedSource::new((Lsn(1), TimelineId(1)), (Lsn(2), TimelineId(1)))
            .archive(info("base.tar", None), std::io::Cursor::new(vec![0u8; 5]));
        let Err(WireError::Sink(e)) = source.feed(&mut Failing) else { panic!("a sink error") };
        assert_eq!(e.downcast::<Full>().map(|f| f.0).ok(), Some(42));
    }
}
