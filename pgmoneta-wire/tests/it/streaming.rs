//! START_REPLICATION: WAL bytes, keepalives and timeline switches.

use std::time::{Duration, Instant};

use pgmoneta_core::{Lsn, PgVersion, TimelineId, WalSegment, WalSegmentSize};
use pgmoneta_testkit::Cluster;
use pgmoneta_wire::replication::{BaseBackupOptions, WalEvent};
use pgmoneta_wire::PgConnection;

use crate::tar::{self, Kind};
use crate::{connect, repl_opts};

const SEG: WalSegmentSize = WalSegmentSize::DEFAULT;

#[test]
fn streamed_segment_equals_the_servers_pg_wal_file() {
    let cluster = Cluster::builder().start().unwrap();
    let mut conn = connect(&repl_opts(&cluster));
    conn.create_physical_slot("pgmoneta_it", cluster.version()).unwrap();
    let err = conn.create_physical_slot("pgmoneta_it", cluster.version()).unwrap_err();
    assert_eq!(err.server_error().unwrap().code(), "42710", "{err}");
    if cluster.version() >= PgVersion::V15 {
        let slot = conn.read_replication_slot("pgmoneta_it").unwrap().unwrap();
        assert_eq!(slot.slot_type, "physical");
        assert_eq!(slot.restart_timeline, Some(TimelineId(1)));
        assert!(slot.restart_lsn.is_some());
        assert_eq!(conn.read_replication_slot("no_such_slot").unwrap(), None);
    }
    let restart: Lsn = cluster
        .query_scalar("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgmoneta_it'")
        .unwrap()
        .parse()
        .unwrap();

    // Enough WAL to fill the slot's first segment, which the switch then closes.
    cluster.pgbench_init(1).unwrap();
    cluster.switch_wal().unwrap();
    let segment = WalSegment::containing(TimelineId(1), restart, SEG);
    let seg_start = segment.start_lsn(SEG);
    let seg_end = seg_start + SEG.bytes();

    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stream = conn.start_replication(Some("pgmoneta_it"), seg_start, TimelineId(1)).unwrap();
    let mut buf = vec![0u8; SEG.bytes() as usize];
    let mut next = seg_start;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < seg_end {
        assert!(Instant::now() < deadline, "segment not complete, got up to {next}");
        match stream.next_event().unwrap() {
            Some(WalEvent::Data { start, data, .. }) => {
                assert_eq!(start, next, "WAL arrives in order without gaps");
                let take = data.len().min((seg_end - start) as usize);
                let off = start.segment_offset(SEG) as usize;
                buf[off..off + take].copy_from_slice(&data[..take]);
                next = start + data.len() as u64;
            }
            Some(WalEvent::Keepalive { reply_requested: true, .. }) => stream.send_status(next, next, false).unwrap(),
            Some(WalEvent::Keepalive { .. }) | None => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    // Report the segment flushed: the server may now release it.
    stream.send_status(seg_end, seg_end, true).unwrap();
    let name = segment.file_name(SEG);
    let on_server = std::fs::read(cluster.data_dir().join("pg_wal").join(&name)).unwrap();
    assert_eq!(on_server.len(), buf.len());
    assert!(on_server == buf, "streamed bytes of {name} differ from the server's file");
    stream.stop().unwrap();

    let moved = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let now: Lsn = cluster
            .query_scalar("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgmoneta_it'")
            .unwrap()
            .parse()
            .unwrap();
        now >= seg_end
    });
    assert!(moved, "the slot did not advance to the flushed position");
    conn.drop_replication_slot("pgmoneta_it", false).unwrap();
    let err = conn.drop_replication_slot("pgmoneta_it", false).unwrap_err();
    assert_eq!(err.server_error().unwrap().code(), "42704");
}

#[test]
fn keepalives_answered_keep_the_connection_alive() {
    let cluster = Cluster::builder().setting("wal_sender_timeout", "'2s'").start().unwrap();
    let mut conn = connect(&repl_opts(&cluster));
    let system = conn.identify_system().unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let start = system.xlogpos.segment_start(SEG);
    let mut stream = conn.start_replication(None, start, system.timeline).unwrap();
    let mut position = start;
    let mut requested = 0;
    let began = Instant::now();
    // Answer only when asked: the server asks at half of wal_sender_timeout.
    while began.elapsed() < Duration::from_secs(10) {
        match stream.next_event().unwrap() {
            Some(WalEvent::Data { start, data, .. }) => position = start + data.len() as u64,
            Some(WalEvent::Keepalive { reply_requested: true, .. }) => {
                requested += 1;
                stream.send_status(position, position, false).unwrap();
            }
            Some(WalEvent::Keepalive { .. }) | None => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(requested >= 3, "only {requested} keepalives asked for a reply in 10 s");
    // Now stop answering: the server gives up on us after wal_sender_timeout.
    let silent = Instant::now();
    let outcome = loop {
        match stream.next_event() {
            Ok(_) if silent.elapsed() < Duration::from_secs(15) => continue,
            Ok(_) => break None,
            Err(e) => break Some(e),
        }
    };
    let err = outcome.expect("the server should have dropped a silent client");
    assert!(err.is_retryable() || err.server_error().is_some(), "{err}");
}

/// Writes the entries of a tar archive under `dir`.
fn extract(archive: &[u8], dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in tar::read(archive) {
        let path = dir.join(&entry.path);
        match entry.kind {
            Kind::Dir => std::fs::create_dir_all(&path).unwrap(),
            Kind::File => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &entry.data).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
            Kind::Other(t) => panic!("unexpected tar entry type {t} for {}", entry.path),
        }
    }
}

#[test]
fn timeline_switch_of_a_promoted_standby_is_followed() {
    let primary = Cluster::builder().start().unwrap();
    primary.execute("CREATE TABLE before_switch AS SELECT generate_series(1, 1000) AS n").unwrap();

    // A standby made from our own base backup, promoted at once: timeline 2.
    let dir = tempfile::Builder::new().prefix("pgmoneta-standby-").tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let mut conn = connect(&repl_opts(&primary));
        let mut backup = conn.base_backup(&BaseBackupOptions::new("standby"), primary.version()).unwrap();
        let mut base = Vec::new();
        backup
            .for_each_archive(|_, bytes| {
                base.extend_from_slice(bytes);
                Ok(())
            })
            .unwrap();
        std::fs::create_dir(&data).unwrap();
        extract(&base, &data);
    }
    std::fs::write(data.join("standby.signal"), b"").unwrap();
    let standby = Cluster::start_on(primary.install().clone(), &data, primary.superuser_password()).unwrap();
    assert_eq!(standby.query_scalar("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(standby.query_scalar("SELECT pg_promote(true, 60)").unwrap(), "t");
    standby.execute("CREATE TABLE after_switch AS SELECT 1 AS n").unwrap();
    standby.switch_wal().unwrap();

    let mut conn =
        PgConnection::connect(&pgmoneta_wire::ConnectOptions { port: standby.port(), ..repl_opts(&primary) }).unwrap();
    let system = conn.identify_system().unwrap();
    assert_eq!(system.timeline, TimelineId(2));
    let history = conn.timeline_history(TimelineId(2)).unwrap();
    assert_eq!(history.file_name, "00000002.history");
    let text = String::from_utf8(history.content.to_vec()).unwrap();
    let switch: Lsn = text.split('\t').nth(1).unwrap_or_else(|| panic!("history {text:?}")).parse().unwrap();
    assert!(text.starts_with("1\t"), "{text}");

    // Timeline 1 from the start of the switch segment: its WAL up to the switch, then the end.
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let from = switch.segment_start(SEG);
    let mut stream = conn.start_replication(None, from, TimelineId(1)).unwrap();
    let mut received_to = from;
    let next = loop {
        match stream.next_event().unwrap() {
            Some(WalEvent::Data { start, data, .. }) => received_to = start + data.len() as u64,
            Some(WalEvent::End { next_timeline, next_start }) => break (next_timeline, next_start),
            Some(WalEvent::Keepalive { .. }) | None => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(next, (Some(TimelineId(2)), Some(switch)));
    assert_eq!(received_to, switch, "timeline 1 WAL streams exactly up to the switch");

    // And timeline 2 from there.
    let mut stream = conn.start_replication(None, switch.segment_start(SEG), TimelineId(2)).unwrap();
    let first = loop {
        match stream.next_event().unwrap() {
            Some(WalEvent::Data { start, data, .. }) => break (start, data.len()),
            _ => continue,
        }
    };
    assert_eq!(first.0, switch.segment_start(SEG));
    assert!(first.1 > 0);
    stream.stop().unwrap();
    conn.identify_system().unwrap();
}

/// A server shut down (fast) while streaming ends the stream cleanly: the walsender completes
/// its command and exits, which is an end of stream, not a protocol error.
#[test]
fn a_server_shutdown_ends_the_stream() {
    let mut cluster = Cluster::builder().start().unwrap();
    let mut conn = connect(&repl_opts(&cluster));
    let system = conn.identify_system().unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let start = system.xlogpos.segment_start(SEG);
    let mut stream = conn.start_replication(None, start, system.timeline).unwrap();
    let mut position = start;
    // Caught up first, so that the walsender has nothing left to send when it stops.
    let began = Instant::now();
    while position < system.xlogpos && began.elapsed() < Duration::from_secs(10) {
        if let Some(WalEvent::Data { start, data, .. }) = stream.next_event().unwrap() {
            position = start + data.len() as u64;
        }
    }
    stream.send_status(position, position, false).unwrap();
    let stopper = std::thread::spawn(move || {
        cluster.stop_with("fast").unwrap();
        cluster
    });
    let outcome = loop {
        match stream.next_event() {
            Ok(Some(WalEvent::End { next_timeline, .. })) => break Ok(next_timeline),
            Ok(Some(WalEvent::Data { start, data, .. })) => {
                position = start + data.len() as u64;
                stream.send_status(position, position, false).unwrap();
            }
            Ok(Some(WalEvent::Keepalive { .. })) => stream.send_status(position, position, false).unwrap(),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    let _cluster = stopper.join().unwrap();
    match outcome {
        Ok(next) => assert_eq!(next, None),
        // A connection closed before the completion arrived is also an end, but never a
        // protocol violation.
        Err(e) => assert!(e.is_retryable() && !e.to_string().contains("protocol"), "{e}"),
    }
}
