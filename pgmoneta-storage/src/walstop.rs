//! Where recovery to a target stops, found by decoding the archived WAL while a restore copies
//! it into `pg_wal`: the restore then copies only the segments up to that point (and one more),
//! instead of every segment archived since the backup.
//!
//! The stop found is never earlier than PostgreSQL's own: an LSN target stops at the first
//! record at or after it; an xid target at that transaction's commit or abort; a name target at
//! its restore point; a time target at the first commit or abort after the time, read with the
//! widest zone offset PostgreSQL accepts when the target names no offset. Records before the
//! backup's end (where recovery becomes consistent) never count. When the stop cannot be told
//! (a time in a form not understood, WAL that does not decode), everything is copied, as before.

use pgmoneta_core::{CivilDateTime, Lsn, WalSegmentSize};
use pgmoneta_wire::wal::desc::{restore_point_name, xact_end};
use pgmoneta_wire::wal::{DecodedRecord, WalDecoder};

use crate::target::TargetKind;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00 UTC).
const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

/// The latest UTC a local time can be: PostgreSQL accepts zone offsets up to 15:59 west of UTC.
const UNKNOWN_ZONE_MARGIN_SECONDS: i64 = 16 * 3600;

/// What ends recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Goal {
    /// The first record starting at or after this position.
    Lsn(Lsn),
    /// The commit or abort of this transaction.
    Xid(u32),
    /// The restore point of this name.
    Name(String),
    /// The first commit or abort later than this (`timestamptz` microseconds).
    After(i64),
}

/// Decodes the WAL a restore copies, segment by segment, until the record recovery stops at.
pub(crate) struct StopFinder {
    goal: Goal,
    /// Records before this do not count (the backup's end).
    consistent: Lsn,
    /// Where decoding starts: a segment's first byte.
    begin: Lsn,
    segment_size: WalSegmentSize,
    decoder: Option<WalDecoder>,
    /// The end of the record recovery stops at, once found.
    found: Option<Lsn>,
    /// Decoding failed or the WAL was not contiguous: the stop is unknown.
    lost: bool,
}

impl StopFinder {
    /// A finder for `target` after a backup consistent at `consistent` whose WAL starts at
    /// `start`; `None` when no stop can be told beforehand.
    pub(crate) fn new(
        target: &TargetKind,
        start: Lsn,
        consistent: Lsn,
        segment_size: WalSegmentSize,
    ) -> Option<StopFinder> {
        let goal = match target {
            TargetKind::Immediate => Goal::Lsn(consistent),
            TargetKind::Lsn(lsn) => Goal::Lsn(*lsn),
            // PostgreSQL reads a leading 0 as octal (0x as hex): only plain decimal is decided.
            TargetKind::Xid(x) if x.len() > 1 && x.starts_with('0') => return None,
            TargetKind::Xid(x) => Goal::Xid((x.parse::<u64>().ok()? & 0xFFFF_FFFF) as u32),
            TargetKind::Name(n) => Goal::Name(n.clone()),
            TargetKind::Time(t) => Goal::After(latest_instant(t)?),
        };
        // An LSN goal needs decoding only from its own segment.
        let from = match goal {
            Goal::Lsn(lsn) => lsn.max(start),
            _ => start,
        };
        let begin = Lsn(from.0 - from.0 % segment_size.bytes());
        Some(StopFinder { goal, consistent, begin, segment_size, decoder: None, found: None, lost: false })
    }

    /// The end of the record recovery stops at, once the segments fed hold it.
    pub(crate) fn found(&self) -> Option<Lsn> {
        self.found
    }

    /// Whether the stop can no longer be found (copy everything).
    pub(crate) fn lost(&self) -> bool {
        self.lost
    }

    /// The last segment recovery reads, with a margin of one: the number of the segment after
    /// the one holding the stop record's last byte.
    pub(crate) fn last_segment(&self) -> Option<u64> {
        self.found.map(|end| Lsn(end.0.saturating_sub(1)).0 / self.segment_size.bytes() + 1)
    }

    /// Feeds the plain bytes of the segment starting at `segment_start` (all of them, in
    /// pieces, in order). Segments before the one decoding starts at are ignored.
    pub(crate) fn feed(&mut self, segment_start: Lsn, data: &[u8]) {
        if self.found.is_some() || self.lost || segment_start < self.begin {
            return;
        }
        let decoder = self.decoder.get_or_insert_with(|| WalDecoder::new(self.begin, None, self.segment_size));
        if segment_start.0 + self.segment_size.bytes() <= decoder.fed_until().0 || data.is_empty() {
            return;
        }
        decoder.feed(data);
        loop {
            match decoder.next_record() {
                Ok(Some(rec)) => {
                    if rec.lsn >= self.consistent && stops(&self.goal, &rec) {
                        self.found = Some(rec.end);
                        self.decoder = None;
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    log::info!("restore: the WAL from {} does not decode ({e}); all of it is copied", self.begin);
                    self.lost = true;
                    self.decoder = None;
                    return;
                }
            }
        }
    }

    /// Where the decoder expects the next byte: a segment starting elsewhere breaks the
    /// sequence (a gap), and the stop is then unknown.
    pub(crate) fn expects(&mut self, segment_start: Lsn) -> bool {
        if segment_start < self.begin || self.found.is_some() || self.lost {
            return true;
        }
        let next = self.decoder.as_ref().map_or(self.begin, WalDecoder::fed_until);
        if next != segment_start {
            self.lost = true;
            self.decoder = None;
        }
        !self.lost
    }
}

fn stops(goal: &Goal, rec: &DecodedRecord) -> bool {
    match goal {
        Goal::Lsn(lsn) => rec.lsn >= *lsn,
        Goal::Xid(x) => xact_end(rec).is_some_and(|e| e.xid == *x),
        Goal::Name(n) => restore_point_name(rec).is_some_and(|r| r == *n),
        Goal::After(t) => xact_end(rec).is_some_and(|e| e.time > *t),
    }
}

/// The latest instant (`timestamptz` microseconds) a time target can mean: exact with a zone
/// given as `Z`, `UTC`, `GMT` or a numeric offset; the local time read 16 hours west of UTC
/// without one or with a zone name. `None` for a form not understood (`AM`/`PM` included).
pub(crate) fn latest_instant(text: &str) -> Option<i64> {
    let t = text.trim();
    let (date, rest) = t.split_once([' ', 'T'])?;
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || d[0].len() != 4 {
        return None;
    }
    let rest = rest.trim_start();
    let clock_len = rest.find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.')).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(clock_len);
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let c: Vec<&str> = whole.split(':').collect();
    if !(2..=3).contains(&c.len()) || c.iter().any(|p| p.is_empty() || p.len() > 2) {
        return None;
    }
    let civil = CivilDateTime::new(
        d[0].parse().ok()?,
        d[1].parse().ok()?,
        d[2].parse().ok()?,
        c[0].parse().ok()?,
        c[1].parse().ok()?,
        c.get(2).map_or(Some(0), |s| s.parse().ok())?,
    )
    .ok()?;
    let mut micros: i64 = 0;
    for (i, b) in fraction.bytes().take(6).enumerate() {
        micros += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
    }
    let unix = match zone_offset(zone.trim())? {
        Some(offset) => civil.to_unix(offset),
        None => civil.to_unix(0) + UNKNOWN_ZONE_MARGIN_SECONDS,
    };
    // A fraction past microseconds rounds up, never down.
    let extra = i64::from(fraction.len() > 6);
    Some((unix - PG_EPOCH_UNIX_SECONDS) * 1_000_000 + micros + extra)
}

/// A zone's offset east of UTC in seconds: `Some(None)` when unknown (none given, or a name),
/// `None` when malformed.
fn zone_offset(zone: &str) -> Option<Option<i32>> {
    if zone.is_empty() {
        return Some(None);
    }
    match zone.to_ascii_uppercase().as_str() {
        "Z" | "UTC" | "GMT" | "UT" | "ZULU" => return Some(Some(0)),
        // A 12-hour clock: not read here.
        "AM" | "PM" => return None,
        _ => {}
    }
    let sign = match zone.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ if zone.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b)) => return Some(None),
        _ => return None,
    };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = if digits.len() <= 2 { (digits.as_str(), "0") } else { digits.split_at(digits.len() - 2) };
    let seconds = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    Some(Some(sign * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn time_targets_are_read_at_their_latest_possible_instant() {
        let utc = latest_instant("2000-01-01 00:00:00+00").unwrap();
        assert_eq!(utc, 0);
        assert_eq!(latest_instant("2000-01-01 00:00:00 UTC").unwrap(), 0);
        assert_eq!(latest_instant("2000-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(latest_instant("2000-01-01 02:00:00+02").unwrap(), 0);
        assert_eq!(latest_instant("2000-01-01 02:00:00+02:00").unwrap(), 0);
        assert_eq!(latest_instant("1999-12-31 22:30:00-0130").unwrap(), 0);
        assert_eq!(latest_instant("2000-01-01 00:00:01.25+00").unwrap(), 1_250_000);
        assert_eq!(latest_instant("2000-01-01 00:00:00.0000001+00").unwrap(), 1);
        // No zone, or one by name: the latest the local time can be.
        assert_eq!(latest_instant("2000-01-01 00:00:00").unwrap(), 16 * HOUR);
        assert_eq!(latest_instant("2000-01-01 00:00").unwrap(), 16 * HOUR);
        assert_eq!(latest_instant("2000-01-01 00:00:00 Europe/Paris").unwrap(), 16 * HOUR);
        assert_eq!(latest_instant("2026-12-07 05:00:00+00").unwrap(), 849_934_800 * 1_000_000);
        for bad in [
            "now",
            "2000-01-01",
            "2000-13-01 00:00:00",
            "2000-01-01 25:00:00",
            "2000-01-01 00:00:00+1x",
            "2000-01-01 02:30:00 PM",
            "2000-01-01 00:00:00.1.2",
        ] {
            assert_eq!(latest_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_lsn_goal_decodes_from_its_own_segment_and_keeps_one_more() {
        let size = WalSegmentSize::DEFAULT;
        let f = StopFinder::new(
            &TargetKind::Lsn(Lsn(0x3_4000_0000 + 0x12_3456)),
            Lsn(0x2_0000_0028),
            Lsn(0x2_0000_0100),
            size,
        )
        .unwrap();
        assert_eq!(f.begin, Lsn(0x3_4000_0000));
        let mut f = f;
        f.found = Some(Lsn(0x3_4100_0000));
        // A record ending exactly at a segment's end lies in that segment.
        assert_eq!(f.last_segment(), Some(0x3_4100_0000 / size.bytes()));
        f.found = Some(Lsn(0x3_4100_0001));
        assert_eq!(f.last_segment(), Some(0x3_4100_0000 / size.bytes() + 1));
        assert!(StopFinder::new(&TargetKind::Time("yesterday".into()), Lsn(0), Lsn(0), size).is_none());
        assert!(StopFinder::new(&TargetKind::Xid("0123".into()), Lsn(0), Lsn(0), size).is_none());
        assert!(StopFinder::new(&TargetKind::Xid("0".into()), Lsn(0), Lsn(0), size).is_some());
    }

    #[test]
    fn a_gap_in_the_segments_loses_the_stop() {
        let size = WalSegmentSize::DEFAULT;
        let mut f = StopFinder::new(&TargetKind::Name("x".into()), Lsn(0x100_0028), Lsn(0x100_0100), size).unwrap();
        assert!(f.expects(Lsn(0x100_0000)));
        assert!(!f.expects(Lsn(0x300_0000)));
        assert!(f.lost());
    }
}
