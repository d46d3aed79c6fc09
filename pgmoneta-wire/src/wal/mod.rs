//! WAL decoding for PostgreSQL 14 to 18.
//!
//! [`WalDecoder`] is a push decoder: feed it bytes (a segment file, a memory map of a closed
//! segment, `XLogData` off the wire) in pieces of any size and pull [`DecodedRecord`]s. Every
//! page header and every record's CRC32C is checked; errors carry the LSN and say what is wrong.
//! [`desc`] describes records the way `pg_waldump` does, and [`waldump_line`] prints a record
//! exactly as `pg_waldump` prints it.
//!
//! ```
//! use pgmoneta_core::{Lsn, WalSegmentSize};
//! use pgmoneta_wire::wal::WalDecoder;
//!
//! let mut decoder = WalDecoder::new(Lsn(0x0100_0000), None, WalSegmentSize::DEFAULT);
//! decoder.feed(&[0u8; 64]); // not WAL: the first page header is rejected
//! assert!(decoder.next_record().is_err());
//! ```

mod decoder;
pub mod desc;
#[doc(hidden)]
pub mod fuzzing;
mod mapped;
mod record;
pub mod summary;

pub use decoder::{
    page_magic, version_of_magic, WalDecoder, XLogPageHeader, SIZE_OF_XLOG_LONG_PHD, SIZE_OF_XLOG_SHORT_PHD,
    XLOG_BLCKSZ, XLOG_RECORD_MAX_SIZE, XLP_BKP_REMOVABLE, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD,
    XLP_LONG_HEADER,
};
pub use mapped::map_closed_file;
pub use record::{
    decode_record, record_crc, BlockImage, BlockRef, DecodedRecord, BKPBLOCK_FORK_MASK, BKPBLOCK_HAS_DATA,
    BKPBLOCK_HAS_IMAGE, BKPBLOCK_SAME_REL, BKPBLOCK_WILL_INIT, BLCKSZ, RM_XLOG_ID, SIZE_OF_XLOG_RECORD, XLOG_SWITCH,
    XLR_BLOCK_ID_DATA_LONG, XLR_BLOCK_ID_DATA_SHORT, XLR_BLOCK_ID_ORIGIN, XLR_BLOCK_ID_TOPLEVEL_XID,
    XLR_CHECK_CONSISTENCY, XLR_INFO_MASK, XLR_MAX_BLOCK_ID, XLR_SPECIAL_REL_UPDATE,
};

/// Fork names as `pg_waldump` prints them.
pub const FORK_NAMES: [&str; 4] = ["main", "fsm", "vm", "init"];

/// `00` to `99`, two ASCII digits each.
const DEC_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Upper-case hex digits.
const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// A piece of a line put together on the stack, then appended to the output in one copy: the
/// fixed words and numbers of a `pg_waldump` line are written byte by byte, without the
/// formatting machinery or a call per piece. Numbers anywhere in the descriptions go through
/// it too ([`push_dec`], [`push_hex`]).
struct Line {
    buf: [u8; Line::CAPACITY],
    len: usize,
}

impl Line {
    /// Room for the longest piece: the line's head (about 130 bytes with 10-digit numbers) or
    /// one block reference (about 110).
    const CAPACITY: usize = 192;

    fn new() -> Line {
        Line { buf: [0; Line::CAPACITY], len: 0 }
    }

    #[inline]
    fn text(&mut self, t: &[u8]) {
        let end = self.len + t.len();
        self.buf[self.len..end].copy_from_slice(t);
        self.len = end;
    }

    /// A short word of unknown length, byte by byte (a call to copy it would cost more).
    #[inline]
    fn word(&mut self, w: &str) {
        for &b in w.as_bytes() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    /// `v` in decimal, right-aligned in `width` columns.
    #[inline]
    fn dec(&mut self, mut v: u32, width: usize) {
        let digits = v.checked_ilog10().unwrap_or(0) as usize + 1;
        for _ in digits..width {
            self.buf[self.len] = b' ';
            self.len += 1;
        }
        let mut at = self.len + digits;
        self.len = at;
        while v >= 100 {
            let pair = (v % 100) as usize * 2;
            v /= 100;
            self.buf[at - 2..at].copy_from_slice(&DEC_PAIRS[pair..pair + 2]);
            at -= 2;
        }
        if v >= 10 {
            let pair = v as usize * 2;
            self.buf[at - 2..at].copy_from_slice(&DEC_PAIRS[pair..pair + 2]);
        } else {
            self.buf[at - 1] = b'0' + v as u8;
        }
    }

    /// `v` in upper-case hex, zero-padded to `width` digits.
    #[inline]
    fn hex(&mut self, v: u32, width: usize) {
        let digits = ((v.checked_ilog2().unwrap_or(0) / 4) as usize + 1).max(width);
        for i in 0..digits {
            self.buf[self.len + digits - 1 - i] = HEX_DIGITS[((v >> (4 * i)) & 0xF) as usize];
        }
        self.len += digits;
    }

    /// An LSN as `X/XXXXXXXX`.
    #[inline]
    fn lsn(&mut self, lsn: u64) {
        self.hex((lsn >> 32) as u32, 1);
        self.buf[self.len] = b'/';
        self.len += 1;
        self.hex(lsn as u32, 8);
    }

    /// Appends what was put together to `out` and starts again.
    #[allow(unsafe_code)]
    fn flush(&mut self, out: &mut String) {
        let bytes = &self.buf[..self.len];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the bytes are whole `str`s (`word`), ASCII literals of this module (`text`)
        // and ASCII digits (`dec`, `hex`), one after another; a sequence of valid UTF-8
        // strings is valid UTF-8.
        out.push_str(unsafe { std::str::from_utf8_unchecked(bytes) });
        self.len = 0;
    }
}

/// Appends the decimal digits of `v`, right-aligned in `width` columns (as `{v:>width$}`).
pub(crate) fn push_dec(out: &mut String, v: u32, width: usize) {
    let mut l = Line::new();
    l.dec(v, width);
    l.flush(out);
}

/// Appends `v` in upper-case hex, zero-padded to `width` digits (at most 8).
pub(crate) fn push_hex(out: &mut String, v: u32, width: usize) {
    let mut l = Line::new();
    l.hex(v, width);
    l.flush(out);
}

/// A record in `pg_waldump`'s line format (PostgreSQL 15's, without `--bkp-details`).
pub fn waldump_line(rec: &DecodedRecord) -> String {
    let mut s = String::with_capacity(160);
    waldump_line_into(rec, &mut s);
    s
}

/// [`waldump_line`], appended to `s`.
pub fn waldump_line_into(rec: &DecodedRecord, s: &mut String) {
    let mut l = Line::new();
    l.text(b"rmgr: ");
    let name = desc::rmgr_name(rec.rmid);
    l.word(&name);
    for _ in name.len()..11 {
        l.text(b" ");
    }
    l.text(b" len (rec/tot): ");
    l.dec(rec.total_len - rec.fpi_len(), 6);
    l.text(b"/");
    l.dec(rec.total_len, 6);
    l.text(b", tx: ");
    l.dec(rec.xid, 10);
    l.text(b", lsn: ");
    l.lsn(rec.lsn.0);
    l.text(b", prev ");
    l.lsn(rec.prev.0);
    l.text(b", desc: ");
    l.flush(s);
    desc::name_and_describe(rec, s);
    for b in &rec.blocks {
        let (spc, db, rel) = b.locator;
        l.text(b", blkref #");
        l.dec(u32::from(b.id), 0);
        l.text(b": rel ");
        l.dec(spc, 0);
        l.text(b"/");
        l.dec(db, 0);
        l.text(b"/");
        l.dec(rel, 0);
        if b.fork != 0 {
            l.text(b" fork ");
            l.word(FORK_NAMES.get(usize::from(b.fork)).unwrap_or(&"?"));
        }
        l.text(b" blk ");
        l.dec(b.block, 0);
        if let Some(img) = b.image {
            l.text(if img.apply { b" FPW" } else { b" FPW for WAL verification" });
        }
        l.flush(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_printf() {
        for v in [0u32, 7, 9, 10, 42, 99, 100, 101, 999, 1000, 65_535, 1_000_000, 123_456_789, u32::MAX] {
            for width in [0, 6, 10] {
                let mut s = String::new();
                push_dec(&mut s, v, width);
                assert_eq!(s, format!("{v:>width$}"));
                let mut h = String::new();
                push_hex(&mut h, v, if width == 10 { 8 } else { width.min(8) });
                let w = if width == 10 { 8 } else { width.min(8) };
                assert_eq!(h, format!("{v:0w$X}"));
                let mut l = Line::new();
                l.dec(v, width);
                l.text(b"|");
                l.hex(v, w);
                let mut out = String::new();
                l.flush(&mut out);
                assert_eq!(out, format!("{v:>width$}|{v:0w$X}"));
            }
        }
    }
}
