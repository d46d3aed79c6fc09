//! Streams WAL from a PostgreSQL server into segment files, as `pg_receivewal` does: from the
//! start of the server's current segment (or a slot's), each segment written in place under
//! its `XLogFileName`, synced before the position is reported flushed.
//!
//! ```text
//! cargo run -p pgmoneta-wire --example stream_wal -- <host> <port> <user> <password> <directory> [<slot>] [<megabytes>]
//! ```
//!
//! The user needs the `REPLICATION` attribute. Without a size it streams until interrupted.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use pgmoneta_core::{Lsn, TimelineId, WalSegment, WalSegmentSize};
use pgmoneta_wire::replication::WalEvent;
use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: stream_wal <host> <port> <user> <password> <directory> [<slot>] [<megabytes>]");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream_wal: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The segment file being written.
struct Open {
    segment: WalSegment,
    file: File,
    path: PathBuf,
}

fn open(dir: &Path, segment: WalSegment, size: WalSegmentSize) -> std::io::Result<Open> {
    let path = dir.join(format!("{}.partial", segment.file_name(size)));
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    file.set_len(size.bytes())?;
    Ok(Open { segment, file, path })
}

/// Syncs a finished segment and gives it its final name.
fn close(o: Open, size: WalSegmentSize) -> std::io::Result<()> {
    o.file.sync_all()?;
    let done = o.path.with_file_name(o.segment.file_name(size));
    std::fs::rename(&o.path, &done)?;
    println!("{}", done.display());
    Ok(())
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(&args[4]);
    std::fs::create_dir_all(&dir)?;
    let slot = args.get(5).filter(|s| !s.is_empty()).map(String::as_str);
    let limit = args.get(6).map(|m| m.parse::<u64>()).transpose()?.map(|m| m << 20);
    let opts = ConnectOptions::new(&args[0], args[1].parse()?, &args[2])
        .password(&args[3])
        .replication(ReplicationMode::Physical)
        .ssl_mode(SslMode::Prefer)
        .read_timeout(Some(Duration::from_secs(5)));
    let mut conn = PgConnection::connect(&opts)?;
    let (version, _) = conn.server_version()?;
    let size = WalSegmentSize::new(segment_size_bytes(&conn.show("wal_segment_size")?)?)?;
    let system = conn.identify_system()?;
    let mut timeline: TimelineId = system.timeline;
    let mut start = system.xlogpos.segment_start(size);
    // A slot with reserved WAL says where it stands (READ_REPLICATION_SLOT exists from 15).
    if let Some(name) = slot.filter(|_| version.major() >= 15) {
        if let Some(info) = conn.read_replication_slot(name)? {
            if let (Some(lsn), Some(tli)) = (info.restart_lsn, info.restart_timeline) {
                start = lsn.segment_start(size);
                timeline = tli;
            }
        }
    }
    eprintln!("streaming from {start} on timeline {timeline} into {}", dir.display());
    let mut received = 0u64;
    loop {
        let mut current: Option<Open> = None;
        let mut flushed = start;
        let mut stream = conn.start_replication(slot, start, timeline)?;
        let next = loop {
            match stream.next_event()? {
                Some(WalEvent::Data { start: at, data, .. }) => {
                    let mut at: Lsn = at;
                    let mut rest: &[u8] = &data;
                    while !rest.is_empty() {
                        let segment = WalSegment::containing(timeline, at, size);
                        if current.as_ref().is_none_or(|o| o.segment != segment) {
                            if let Some(done) = current.take() {
                                close(done, size)?;
                            }
                            current = Some(open(&dir, segment, size)?);
                        }
                        let o = current.as_mut().expect("opened above");
                        let offset = at.segment_offset(size);
                        let n = rest.len().min((size.bytes() - offset) as usize);
                        o.file.seek(SeekFrom::Start(offset))?;
                        o.file.write_all(&rest[..n])?;
                        at = Lsn(at.0 + n as u64);
                        rest = &rest[n..];
                        received += n as u64;
                    }
                    if let Some(o) = &current {
                        o.file.sync_data()?;
                    }
                    flushed = at;
                    stream.send_status(flushed, flushed, false)?;
                    if limit.is_some_and(|l| received >= l) {
                        stream.stop()?;
                        break None;
                    }
                }
                Some(WalEvent::Keepalive { reply_requested: true, .. }) | None => {
                    stream.send_status(flushed, flushed, false)?
                }
                Some(WalEvent::End { next_timeline, next_start }) => break next_timeline.zip(next_start),
                Some(_) => {}
            }
        };
        // A segment cut short stays `.partial`, as PostgreSQL's own tools leave it.
        if let Some(o) = current.take() {
            o.file.sync_all()?;
        }
        match next {
            Some((tli, at)) => {
                eprintln!("timeline {timeline} ended; following timeline {tli} from {at}");
                let history = conn.timeline_history(tli)?;
                std::fs::write(dir.join(&history.file_name), &history.content)?;
                timeline = tli;
                start = at.segment_start(size);
            }
            None => break,
        }
    }
    eprintln!("received {received} bytes");
    Ok(())
}

/// `16MB`, `1GB` as `SHOW wal_segment_size` prints them, in bytes.
fn segment_size_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().map_err(|_| format!("wal_segment_size {t:?}"))?;
    match t[digits..].trim() {
        "" | "B" => Ok(n),
        "kB" => Ok(n << 10),
        "MB" => Ok(n << 20),
        "GB" => Ok(n << 30),
        other => Err(format!("wal_segment_size unit {other:?}")),
    }
}
