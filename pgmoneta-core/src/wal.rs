//! Timelines, WAL segment sizes and the names of files in `pg_wal`.
//!
//! A segment file is named `TTTTTTTTXXXXXXXXYYYYYYYY`: the timeline, then the segment number split
//! into a "log id" and the segment within it, each as 8 upper-case hex digits. How the segment
//! number splits depends on the segment size the cluster was initialised with (`initdb
//! --wal-segsize`), so every conversion here takes a [`WalSegmentSize`].

use std::fmt;
use std::str::FromStr;

use crate::error::CoreError;
use crate::lsn::Lsn;

/// A timeline id (`TimeLineID`). Timeline 0 does not exist; a fresh cluster starts on 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct TimelineId(pub u32);

impl TimelineId {
    /// The timeline of a freshly initialised cluster.
    pub const FIRST: TimelineId = TimelineId(1);

    /// Name of this timeline's history file, `%08X.history` as in `pg_wal`.
    pub fn history_file_name(self) -> String {
        format!("{:08X}.history", self.0)
    }
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TimelineId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<TimelineId, CoreError> {
        match s.parse::<u32>() {
            Ok(v) if v > 0 => Ok(TimelineId(v)),
            _ => Err(CoreError::InvalidTimeline { input: s.to_owned() }),
        }
    }
}

/// A WAL segment size: a power of two from 1 MiB to 1 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalSegmentSize(u64);

impl WalSegmentSize {
    /// The smallest size `initdb` accepts: 1 MiB.
    pub const MIN: u64 = 1 << 20;
    /// The largest size `initdb` accepts: 1 GiB.
    pub const MAX: u64 = 1 << 30;
    /// The default of `initdb`: 16 MiB.
    pub const DEFAULT: WalSegmentSize = WalSegmentSize(16 << 20);

    /// Checks `bytes` and wraps it.
    ///
    /// # Errors
    /// [`CoreError::InvalidSegmentSize`] unless `bytes` is a power of two from 1 MiB to 1 GiB.
    pub const fn new(bytes: u64) -> Result<WalSegmentSize, CoreError> {
        if bytes.is_power_of_two() && bytes >= Self::MIN && bytes <= Self::MAX {
            Ok(WalSegmentSize(bytes))
        } else {
            Err(CoreError::InvalidSegmentSize { bytes })
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// Segments per 4 GiB "log id" (`XLogSegmentsPerXLogId`).
    pub const fn segments_per_xlog_id(self) -> u64 {
        0x1_0000_0000 / self.0
    }
}

impl fmt::Display for WalSegmentSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}MB", self.0 >> 20)
    }
}

/// One WAL segment: a timeline and a segment number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalSegment {
    /// The timeline the segment belongs to.
    pub timeline: TimelineId,
    /// The segment number (`XLogSegNo`): the start position divided by the segment size.
    pub number: u64,
}

impl WalSegment {
    /// The segment holding `lsn` on `timeline`.
    pub const fn containing(timeline: TimelineId, lsn: Lsn, size: WalSegmentSize) -> WalSegment {
        WalSegment { timeline, number: lsn.segment_number(size) }
    }

    /// The first position in this segment.
    pub const fn start_lsn(self, size: WalSegmentSize) -> Lsn {
        Lsn(self.number * size.bytes())
    }

    /// The segment after this one on the same timeline.
    pub const fn next(self) -> WalSegment {
        WalSegment { timeline: self.timeline, number: self.number + 1 }
    }

    /// The file name, as `XLogFileName` makes it.
    pub fn file_name(self, size: WalSegmentSize) -> String {
        let per_id = size.segments_per_xlog_id();
        format!("{:08X}{:08X}{:08X}", self.timeline.0, self.number / per_id, self.number % per_id)
    }

    /// Parses a 24-hex-digit segment file name.
    ///
    /// # Errors
    /// [`CoreError::InvalidWalFileName`] when the name is not 24 hex digits, the timeline is 0, or
    /// the low part is out of range for `size`.
    pub fn parse(name: &str, size: WalSegmentSize) -> Result<WalSegment, CoreError> {
        let bad = |why: &'static str| CoreError::InvalidWalFileName { name: name.to_owned(), why };
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("a segment name is 24 hexadecimal digits"));
        }
        // The three slices are 8 hex digits each, checked just above, so they always fit a u32.
        let part = |r: std::ops::Range<usize>| u32::from_str_radix(&name[r], 16).unwrap_or(0);
        let (tli, log, seg) = (part(0..8), part(8..16), part(16..24));
        if tli == 0 {
            return Err(bad("timeline 0 does not exist"));
        }
        let per_id = size.segments_per_xlog_id();
        if u64::from(seg) >= per_id {
            return Err(bad("segment part is too large for the WAL segment size"));
        }
        Ok(WalSegment { timeline: TimelineId(tli), number: u64::from(log) * per_id + u64::from(seg) })
    }
}

/// What a file in a WAL directory is, judged by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalFileKind {
    /// A complete segment, `000000010000000000000001`.
    Segment(WalSegment),
    /// A segment still being written, `000000010000000000000001.partial`.
    Partial(WalSegment),
    /// A timeline history file, `00000002.history`.
    History(TimelineId),
    /// A backup history file, `000000010000000000000002.00000028.backup`.
    BackupHistory(WalSegment, u32),
}

impl WalFileKind {
    /// Classifies a file name (hex digits in either case).
    ///
    /// # Errors
    /// [`CoreError::InvalidWalFileName`] when the name is none of the known kinds.
    pub fn parse(name: &str, size: WalSegmentSize) -> Result<WalFileKind, CoreError> {
        if let Some(stem) = name.strip_suffix(".partial") {
            return WalSegment::parse(stem, size).map(WalFileKind::Partial);
        }
        if let Some(stem) = name.strip_suffix(".history") {
            if stem.len() == 8 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                if let Ok(tli @ 1..) = u32::from_str_radix(stem, 16) {
                    return Ok(WalFileKind::History(TimelineId(tli)));
                }
            }
            return Err(CoreError::InvalidWalFileName {
                name: name.to_owned(),
                why: "a history file is 8 hexadecimal digits of a non-zero timeline then .history",
            });
        }
        if let Some(stem) = name.strip_suffix(".backup") {
            if let Some((seg, off)) = stem.split_once('.') {
                if off.len() == 8 && off.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let offset = u32::from_str_radix(off, 16).unwrap_or(0);
                    return WalSegment::parse(seg, size).map(|s| WalFileKind::BackupHistory(s, offset));
                }
            }
            return Err(CoreError::InvalidWalFileName {
                name: name.to_owned(),
                why: "a backup history file is a segment name, '.', 8 hexadecimal digits, '.backup'",
            });
        }
        WalSegment::parse(name, size).map(WalFileKind::Segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn segment_sizes() {
        for mb in [1u64, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] {
            assert!(WalSegmentSize::new(mb << 20).is_ok(), "{mb}");
        }
        for bytes in [0u64, 512 << 10, 3 << 20, 2 << 30, 16_000_000] {
            assert!(WalSegmentSize::new(bytes).is_err(), "{bytes}");
        }
    }

    #[test]
    fn names_like_postgres() {
        let s16 = WalSegmentSize::DEFAULT;
        let seg = WalSegment::containing(TimelineId(1), "0/3000028".parse().unwrap(), s16);
        assert_eq!(seg.file_name(s16), "000000010000000000000003");
        let seg = WalSegment::containing(TimelineId(2), "16/B374D848".parse().unwrap(), s16);
        assert_eq!(seg.file_name(s16), "0000000200000016000000B3");
        // 1 GiB segments: four per log id.
        let s1g = WalSegmentSize::new(1 << 30).unwrap();
        let seg = WalSegment::containing(TimelineId(1), "5/C0000000".parse().unwrap(), s1g);
        assert_eq!(seg.file_name(s1g), "000000010000000500000003");
        // 1 MiB segments: 4096 per log id.
        let s1m = WalSegmentSize::new(1 << 20).unwrap();
        let seg = WalSegment::containing(TimelineId(0x1A), "1/FFF00000".parse().unwrap(), s1m);
        assert_eq!(seg.file_name(s1m), "0000001A0000000100000FFF");
        assert_eq!(TimelineId(10).history_file_name(), "0000000A.history");
    }

    #[test]
    fn classifies_files() {
        let s = WalSegmentSize::DEFAULT;
        let seg = WalSegment { timeline: TimelineId(1), number: 2 };
        assert_eq!(WalFileKind::parse("000000010000000000000002", s).unwrap(), WalFileKind::Segment(seg));
        assert_eq!(WalFileKind::parse("000000010000000000000002.partial", s).unwrap(), WalFileKind::Partial(seg));
        assert_eq!(WalFileKind::parse("0000000a.history", s).unwrap(), WalFileKind::History(TimelineId(10)));
        assert_eq!(
            WalFileKind::parse("000000010000000000000002.00000028.backup", s).unwrap(),
            WalFileKind::BackupHistory(seg, 0x28)
        );
        for bad in [
            "",
            "00000001000000000000000",
            "0000000100000000000000020",
            "00000000000000000000000A",
            "000000010000000000000100", // segment 0x100 does not exist with 16 MiB segments
            "00000000.history",
            "xyz.history",
            "00000001000000000000000G",
            "000000010000000000000002.28.backup",
        ] {
            let err = WalFileKind::parse(bad, s).unwrap_err();
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn name_roundtrip(tli in 1u32.., number in 0u64..(1 << 40), shift in 20u32..=30) {
            let size = WalSegmentSize::new(1 << shift).unwrap();
            let number = number % (u64::MAX / size.bytes());
            let seg = WalSegment { timeline: TimelineId(tli), number };
            prop_assume!(number / size.segments_per_xlog_id() <= u64::from(u32::MAX));
            let name = seg.file_name(size);
            prop_assert_eq!(WalSegment::parse(&name, size).unwrap(), seg);
            prop_assert_eq!(WalSegment::containing(seg.timeline, seg.start_lsn(size), size), seg);
        }
    }
}
