//! What a backup can reach: recovery from a backup can stop no earlier than the backup's end
//! (where it is consistent) and no later than the archived WAL runs without a gap, on the
//! backup's timeline or one the archive has a history file for. A restore checks its target
//! against this before it writes anything, so that an impossible target is refused with the
//! range that is possible, instead of a data directory PostgreSQL will not start on.

use std::collections::{BTreeSet, HashSet};

use pgmoneta_core::{Lsn, TimelineId, WalFileKind, WalSegment, WalSegmentSize};

use crate::error::{Result, StorageError};
use crate::info::BackupInfo;
use crate::store::{EntryKind, StoreEntry};
use crate::stored::stored_form;
use crate::target::{RecoveryTarget, TargetKind};

/// The positions and timelines a backup can recover to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    /// The backup's label.
    pub label: String,
    /// The backup is consistent from here (its end LSN): no target stops earlier.
    pub from: Lsn,
    /// The archive holds WAL without a gap from the backup's first segment up to here (the
    /// end of the last complete segment); `None` when it lacks the first segment. An LSN target
    /// must lie before it. The segment being received does not count: how far it is written
    /// is not known from a listing (a restore that copies WAL copies it too, so a time, xid or
    /// restore point in it is reached).
    pub to: Option<Lsn>,
    /// The backup's timeline.
    pub timeline: u32,
    /// Timelines the archive has a history file for.
    pub histories: BTreeSet<u32>,
}

/// The segment size of a backup's WAL: the one under which its start LSN lies in its first
/// segment (`BackupInfo::wal`); 16 MB when nothing fits.
pub(crate) fn segment_size_of(info: &BackupInfo) -> WalSegmentSize {
    let tli = TimelineId(info.start_timeline.max(1));
    (20..=30)
        .filter_map(|shift| WalSegmentSize::new(1u64 << shift).ok())
        .find(|&size| WalSegment::containing(tli, info.start_lsn, size).file_name(size) == info.wal)
        .unwrap_or(WalSegmentSize::DEFAULT)
}

impl Reach {
    /// What `info` can reach with the WAL archive whose directory listing is `wal` (one
    /// listing, whatever the archive's size).
    pub fn of(info: &BackupInfo, wal: &[StoreEntry]) -> Reach {
        let size = segment_size_of(info);
        let mut numbers = HashSet::new();
        let mut histories = BTreeSet::new();
        for e in wal.iter().filter(|e| e.kind == EntryKind::File) {
            match WalFileKind::parse(stored_form(&e.name).0, size) {
                Ok(WalFileKind::Segment(s)) if s.timeline.0 >= info.start_timeline => {
                    numbers.insert(s.number);
                }
                Ok(WalFileKind::History(t)) => {
                    histories.insert(t.0);
                }
                _ => {}
            }
        }
        let to = WalSegment::parse(&info.wal, size).ok().filter(|first| numbers.contains(&first.number)).map(|first| {
            let mut last = first.number;
            while numbers.contains(&(last + 1)) {
                last += 1;
            }
            Lsn((last + 1) * size.bytes())
        });
        Reach { label: info.label.clone(), from: info.end_lsn, to, timeline: info.start_timeline, histories }
    }

    /// The range in words, for messages: `backup L reaches from A to B`.
    pub fn describe(&self) -> String {
        match self.to {
            Some(to) => format!(
                "backup {} can recover to positions from {} up to (not including) {} on timeline {}",
                self.label, self.from, to, self.timeline
            ),
            None => format!(
                "backup {} can recover to positions from {} on timeline {} (the archive does not hold its WAL)",
                self.label, self.from, self.timeline
            ),
        }
    }

    /// Refuses a target this backup cannot reach: an LSN before the backup's end or after the
    /// archive's end, a time before the backup started (when written without a time zone),
    /// a timeline before the backup's or one the archive knows nothing of. `replica` restores
    /// are not held to the archive's end: a standby streams the rest from its primary.
    ///
    /// # Errors
    /// [`StorageError::Unreachable`], naming the target and this reach.
    pub fn check(&self, target: &RecoveryTarget) -> Result<()> {
        let refuse = |what: String| Err(StorageError::Unreachable(format!("{what}; {}", self.describe())));
        match &target.target {
            Some(TargetKind::Lsn(lsn)) if *lsn < self.from => {
                return refuse(format!(
                    "lsn={lsn} is before the end of backup {} ({}): recovery cannot stop before the backup is consistent",
                    self.label, self.from
                ));
            }
            // Recovery stops at the first record at or after the target, so the target must lie
            // before the end of the archived WAL (a record must start there).
            Some(TargetKind::Lsn(lsn)) if !target.replica && self.to.is_some_and(|to| *lsn >= to) => {
                return refuse(format!(
                    "lsn={lsn} is not before the end of the archived WAL ({}): recovery would end before reaching it",
                    self.to.unwrap_or_default()
                ));
            }
            Some(TargetKind::Time(time)) => {
                if let Some(digits) = local_time_digits(time) {
                    if digits < self.label {
                        return refuse(format!(
                            "time={time} is before backup {} started: recovery cannot stop before the backup is consistent",
                            self.label
                        ));
                    }
                }
            }
            _ => {}
        }
        if let Some(tli) = target.timeline.as_deref().and_then(|t| t.trim().parse::<u32>().ok()) {
            if tli < self.timeline {
                return refuse(format!("timeline={tli} is older than the backup's timeline {}", self.timeline));
            }
            if tli > self.timeline && !self.histories.contains(&tli) {
                return refuse(format!(
                    "timeline={tli}: the archive has no history file for it, so recovery cannot follow it"
                ));
            }
        }
        Ok(())
    }
}

/// The 14 digits (`YYYYMMDDhhmmss`, local time like backup labels) of a time target written
/// without a time zone; `None` when it names a zone or is not in that shape.
fn local_time_digits(time: &str) -> Option<String> {
    let t = time.trim();
    let (date, rest) = t.split_once([' ', 'T']).unwrap_or((t, ""));
    let date_ok = date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-';
    // Anything but digits, colons and a fraction after the date names a zone or is unknown.
    let time_ok = rest.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'.');
    if !date_ok || !time_ok {
        return None;
    }
    let whole = rest.split('.').next().unwrap_or_default();
    let mut digits: String = date.chars().chain(whole.chars()).filter(char::is_ascii_digit).collect();
    if digits.len() > 14 || digits.len() % 2 != 0 {
        return None;
    }
    while digits.len() < 14 {
        digits.push('0');
    }
    Some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> BackupInfo {
        BackupInfo {
            label: "20261205101500".into(),
            wal: "000000010000000000000004".into(),
            start_lsn: Lsn(0x0400_0028),
            end_lsn: Lsn(0x0400_0100),
            start_timeline: 1,
            end_timeline: 1,
            ..BackupInfo::default()
        }
    }

    fn file(name: &str) -> StoreEntry {
        StoreEntry { name: name.into(), kind: EntryKind::File, size: 1 }
    }

    fn target(position: &str) -> RecoveryTarget {
        RecoveryTarget::parse(position).unwrap()
    }

    #[test]
    fn the_range_runs_from_the_backups_end_to_the_first_gap() {
        let wal = [
            file("000000010000000000000003.zstd"),
            file("000000010000000000000004.zstd.aes"),
            file("000000010000000000000005"),
            file("000000010000000000000006.partial"),
            file("000000010000000000000008.gz"),
            file("00000002.history"),
        ];
        let r = Reach::of(&info(), &wal);
        assert_eq!(r.from, Lsn(0x0400_0100));
        assert_eq!(r.to, Some(Lsn(0x0600_0000)), "the partial and what follows the gap do not count");
        assert_eq!(r.histories, BTreeSet::from([2]));
        r.check(&target("lsn=0/4000100")).unwrap();
        r.check(&target("lsn=0/5FFFFFF")).unwrap();
        let early = r.check(&target("lsn=0/4000000")).unwrap_err().to_string();
        assert!(
            early.contains("before the end of backup")
                && early.contains("from 0/4000100 up to (not including) 0/6000000"),
            "{early}"
        );
        let late = r.check(&target("lsn=0/8000000")).unwrap_err().to_string();
        assert!(late.contains("not before the end of the archived WAL (0/6000000)"), "{late}");
        assert!(r.check(&target("lsn=0/6000000")).is_err(), "no record starts at the very end");
        // A standby streams past the archive.
        r.check(&target("lsn=0/8000000,replica")).unwrap();
        // Timelines: the backup's own, a later one with a history file; not an older one or an
        // unknown one.
        r.check(&target("current,timeline=1")).unwrap();
        r.check(&target("current,timeline=2")).unwrap();
        r.check(&target("current,timeline=latest")).unwrap();
        assert!(r.check(&target("current,timeline=3")).is_err());
        let mut later = info();
        later.start_timeline = 2;
        later.wal = "000000020000000000000004".into();
        assert!(Reach::of(&later, &wal).check(&target("current,timeline=1")).is_err());
    }

    #[test]
    fn a_time_before_the_backup_started_is_refused_when_it_can_be_judged() {
        let r = Reach::of(&info(), &[]);
        assert_eq!(r.to, None);
        r.check(&target("lsn=0/9000000")).unwrap();
        let e = r.check(&target("time=2026-12-05 10:14:59")).unwrap_err().to_string();
        assert!(e.contains("before backup 20261205101500 started"), "{e}");
        r.check(&target("time=2026-12-05 10:15:00")).unwrap();
        r.check(&target("time=2026-12-06")).unwrap();
        // With a zone the comparison with a local label is not made.
        r.check(&target("time=2026-12-05 10:14:59+02")).unwrap();
        assert!(r.check(&target("time=2026-12-04")).is_err());
    }

    #[test]
    fn the_segment_size_is_found_from_the_backups_first_segment() {
        let mut i = info();
        i.wal = "000000010000000000000010".into();
        i.start_lsn = Lsn(0x0100_0028);
        assert_eq!(segment_size_of(&i).bytes(), 1 << 20);
        assert_eq!(segment_size_of(&info()).bytes(), 16 << 20);
    }
}
