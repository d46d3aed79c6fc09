//! Write-ahead log positions.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::CoreError;
use crate::wal::WalSegmentSize;

/// Size of a WAL page (`XLOG_BLCKSZ`), the same for every supported version.
pub const XLOG_BLCKSZ: u64 = 8192;

/// A position in the write-ahead log (`XLogRecPtr`).
///
/// Printed and parsed as PostgreSQL does, as two hexadecimal halves: `16/B374D848`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid position `0/0` (`InvalidXLogRecPtr`).
    pub const INVALID: Lsn = Lsn(0);

    /// Builds a position from its high and low 32-bit halves.
    pub const fn from_parts(hi: u32, lo: u32) -> Lsn {
        Lsn(((hi as u64) << 32) | lo as u64)
    }

    /// The high 32 bits (the "xlogid").
    pub const fn hi(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The low 32 bits.
    pub const fn lo(self) -> u32 {
        self.0 as u32
    }

    /// Whether this is a valid (non-zero) position.
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// Number of the WAL segment holding this position.
    pub const fn segment_number(self, seg_size: WalSegmentSize) -> u64 {
        self.0 / seg_size.bytes()
    }

    /// Offset of this position inside its WAL segment.
    pub const fn segment_offset(self, seg_size: WalSegmentSize) -> u64 {
        self.0 % seg_size.bytes()
    }

    /// First position of the segment holding this position.
    pub const fn segment_start(self, seg_size: WalSegmentSize) -> Lsn {
        Lsn(self.0 - self.segment_offset(seg_size))
    }

    /// Offset of this position inside its WAL page.
    pub const fn page_offset(self) -> u64 {
        self.0 % XLOG_BLCKSZ
    }

    /// First position of the page holding this position.
    pub const fn page_start(self) -> Lsn {
        Lsn(self.0 - self.page_offset())
    }

    /// Rounds up to the next multiple of `align` (a power of two); `None` on overflow.
    pub fn align_up(self, align: u64) -> Option<Lsn> {
        debug_assert!(align.is_power_of_two());
        self.0.checked_add(align - 1).map(|v| Lsn(v & !(align - 1)))
    }

    /// Adds `bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    /// Subtracts `bytes`, or `None` below zero.
    pub fn checked_sub(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_sub(bytes).map(Lsn)
    }

    /// Distance in bytes from `earlier` to `self`, or `None` when `earlier` is later.
    pub fn distance_from(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.hi(), self.lo())
    }
}

impl FromStr for Lsn {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Lsn, CoreError> {
        let bad = || CoreError::InvalidLsn { input: s.to_owned() };
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(h, 16).map_err(|_| bad())
        };
        Ok(Lsn::from_parts(half(hi)?, half(lo)?))
    }
}

impl From<Lsn> for String {
    fn from(lsn: Lsn) -> String {
        lsn.to_string()
    }
}

impl TryFrom<String> for Lsn {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Lsn, CoreError> {
        s.parse()
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Lsn {
        Lsn(v)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> u64 {
        lsn.0
    }
}

/// Adding bytes to a position. Panics on overflow in debug builds like integer addition; use
/// [`Lsn::checked_add`] for untrusted input.
impl Add<u64> for Lsn {
    type Output = Lsn;
    fn add(self, rhs: u64) -> Lsn {
        Lsn(self.0 + rhs)
    }
}

impl AddAssign<u64> for Lsn {
    fn add_assign(&mut self, rhs: u64) {
        self.0 += rhs;
    }
}

/// The distance in bytes between two positions. Panics in debug builds when `rhs` is later; use
/// [`Lsn::distance_from`] for untrusted input.
impl Sub<Lsn> for Lsn {
    type Output = u64;
    fn sub(self, rhs: Lsn) -> u64 {
        self.0 - rhs.0
    }
}

/// An [`Lsn`] shared between threads, e.g. the flushed position of a WAL receiver.
#[derive(Debug, Default)]
pub struct AtomicLsn(AtomicU64);

impl AtomicLsn {
    /// A new shared position.
    pub const fn new(lsn: Lsn) -> AtomicLsn {
        AtomicLsn(AtomicU64::new(lsn.0))
    }

    /// The current value.
    pub fn load(&self) -> Lsn {
        Lsn(self.0.load(Ordering::Acquire))
    }

    /// Replaces the value.
    pub fn store(&self, lsn: Lsn) {
        self.0.store(lsn.0, Ordering::Release)
    }

    /// Raises the value to `lsn` if it is higher; returns the previous value.
    pub fn fetch_max(&self, lsn: Lsn) -> Lsn {
        Lsn(self.0.fetch_max(lsn.0, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_like_postgres() {
        let cases = [
            ("0/0", 0u64),
            ("0/1", 1),
            ("16/B374D848", 0x16_B374_D848),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("a/ff", 0xA_0000_00FF),
        ];
        for (text, value) in cases {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn, Lsn(value), "{text}");
            assert_eq!(lsn.to_string(), text.to_uppercase());
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in ["", "/", "0/", "/0", "0", "1/2/3", "g/0", "0/ 1", "+1/0", "100000000/0", "-1/0"] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(err.to_string().contains("LSN"), "{bad}: {err}");
        }
    }

    #[test]
    fn segments_and_pages() {
        let seg = WalSegmentSize::DEFAULT;
        let lsn: Lsn = "1/2345678".parse().unwrap();
        assert_eq!(lsn.segment_number(seg), 0x1_0234_5678 / (16 << 20));
        assert_eq!(lsn.segment_offset(seg), 0x345678);
        assert_eq!(lsn.segment_start(seg), "1/2000000".parse().unwrap());
        assert_eq!(lsn.page_offset(), 0x1678);
        assert_eq!(lsn.page_start(), "1/2344000".parse().unwrap());
        assert_eq!(Lsn(9).align_up(8), Some(Lsn(16)));
        assert_eq!(Lsn(u64::MAX).align_up(8), None);
        assert_eq!(Lsn(10).distance_from(Lsn(4)), Some(6));
        assert_eq!(Lsn(4).distance_from(Lsn(10)), None);
    }

    #[test]
    fn atomic_only_moves_forward_with_fetch_max() {
        let a = AtomicLsn::new(Lsn(100));
        a.fetch_max(Lsn(50));
        assert_eq!(a.load(), Lsn(100));
        a.fetch_max(Lsn(150));
        assert_eq!(a.load(), Lsn(150));
    }

    proptest! {
        #[test]
        fn display_parse_roundtrip(v in any::<u64>()) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
            prop_assert_eq!(Lsn::from_parts(lsn.hi(), lsn.lo()), lsn);
        }
    }
}
