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

/// Appends the decimal digits of `v`, right-aligned in `width` columns. It runs many times per
/// record, so it avoids the formatting machinery (`itoa` writes the digits without it).
pub(crate) fn push_dec(out: &mut String, v: u32, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(v);
    for _ in digits.len()..width {
        out.push(' ');
    }
    out.push_str(digits);
}

/// `00` to `FF`.
const HEX_PAIRS: [&str; 256] = [
    "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "0A", "0B", "0C", "0D", "0E", "0F", "10", "11", "12",
    "13", "14", "15", "16", "17", "18", "19", "1A", "1B", "1C", "1D", "1E", "1F", "20", "21", "22", "23", "24", "25",
    "26", "27", "28", "29", "2A", "2B", "2C", "2D", "2E", "2F", "30", "31", "32", "33", "34", "35", "36", "37", "38",
    "39", "3A", "3B", "3C", "3D", "3E", "3F", "40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "4A", "4B",
    "4C", "4D", "4E", "4F", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "5A", "5B", "5C", "5D", "5E",
    "5F", "60", "61", "62", "63", "64", "65", "66", "67", "68", "69", "6A", "6B", "6C", "6D", "6E", "6F", "70", "71",
    "72", "73", "74", "75", "76", "77", "78", "79", "7A", "7B", "7C", "7D", "7E", "7F", "80", "81", "82", "83", "84",
    "85", "86", "87", "88", "89", "8A", "8B", "8C", "8D", "8E", "8F", "90", "91", "92", "93", "94", "95", "96", "97",
    "98", "99", "9A", "9B", "9C", "9D", "9E", "9F", "A0", "A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9", "AA",
    "AB", "AC", "AD", "AE", "AF", "B0", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "BA", "BB", "BC", "BD",
    "BE", "BF", "C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "CA", "CB", "CC", "CD", "CE", "CF", "D0",
    "D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8", "D9", "DA", "DB", "DC", "DD", "DE", "DF", "E0", "E1", "E2", "E3",
    "E4", "E5", "E6", "E7", "E8", "E9", "EA", "EB", "EC", "ED", "EE", "EF", "F0", "F1", "F2", "F3", "F4", "F5", "F6",
    "F7", "F8", "F9", "FA", "FB", "FC", "FD", "FE", "FF",
];
/// `0` to `FF`.
const HEX_LEADING: [&str; 256] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F", "10", "11", "12", "13", "14", "15",
    "16", "17", "18", "19", "1A", "1B", "1C", "1D", "1E", "1F", "20", "21", "22", "23", "24", "25", "26", "27", "28",
    "29", "2A", "2B", "2C", "2D", "2E", "2F", "30", "31", "32", "33", "34", "35", "36", "37", "38", "39", "3A", "3B",
    "3C", "3D", "3E", "3F", "40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "4A", "4B", "4C", "4D", "4E",
    "4F", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "5A", "5B", "5C", "5D", "5E", "5F", "60", "61",
    "62", "63", "64", "65", "66", "67", "68", "69", "6A", "6B", "6C", "6D", "6E", "6F", "70", "71", "72", "73", "74",
    "75", "76", "77", "78", "79", "7A", "7B", "7C", "7D", "7E", "7F", "80", "81", "82", "83", "84", "85", "86", "87",
    "88", "89", "8A", "8B", "8C", "8D", "8E", "8F", "90", "91", "92", "93", "94", "95", "96", "97", "98", "99", "9A",
    "9B", "9C", "9D", "9E", "9F", "A0", "A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9", "AA", "AB", "AC", "AD",
    "AE", "AF", "B0", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "BA", "BB", "BC", "BD", "BE", "BF", "C0",
    "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "CA", "CB", "CC", "CD", "CE", "CF", "D0", "D1", "D2", "D3",
    "D4", "D5", "D6", "D7", "D8", "D9", "DA", "DB", "DC", "DD", "DE", "DF", "E0", "E1", "E2", "E3", "E4", "E5", "E6",
    "E7", "E8", "E9", "EA", "EB", "EC", "ED", "EE", "EF", "F0", "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9",
    "FA", "FB", "FC", "FD", "FE", "FF",
];

/// Appends `v` in upper-case hex, zero-padded to `width` digits.
pub(crate) fn push_hex(out: &mut String, v: u32, width: usize) {
    let digits = (v.checked_ilog2().unwrap_or(0) / 4) as usize + 1;
    for _ in digits..width {
        out.push('0');
    }
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    out.push_str(HEX_LEADING[usize::from(bytes[first])]);
    for b in &bytes[first + 1..] {
        out.push_str(HEX_PAIRS[usize::from(*b)]);
    }
}

fn push_lsn(out: &mut String, lsn: u64) {
    push_hex(out, (lsn >> 32) as u32, 1);
    out.push('/');
    push_hex(out, lsn as u32, 8);
}

/// A record in `pg_waldump`'s line format (PostgreSQL 15's, without `--bkp-details`).
pub fn waldump_line(rec: &DecodedRecord) -> String {
    let mut s = String::with_capacity(160);
    waldump_line_into(rec, &mut s);
    s
}

/// [`waldump_line`] appended to `s`, for a caller that reuses one buffer.
pub fn waldump_line_into(rec: &DecodedRecord, s: &mut String) {
    s.push_str("rmgr: ");
    let name = desc::rmgr_name(rec.rmid);
    s.push_str(&name);
    for _ in name.len()..11 {
        s.push(' ');
    }
    s.push_str(" len (rec/tot): ");
    push_dec(s, rec.total_len - rec.fpi_len(), 6);
    s.push('/');
    push_dec(s, rec.total_len, 6);
    s.push_str(", tx: ");
    push_dec(s, rec.xid, 10);
    s.push_str(", lsn: ");
    push_lsn(s, rec.lsn.0);
    s.push_str(", prev ");
    push_lsn(s, rec.prev.0);
    s.push_str(", desc: ");
    desc::name_and_describe(rec, s);
    for b in &rec.blocks {
        let (spc, db, rel) = b.locator;
        s.push_str(", blkref #");
        push_dec(s, u32::from(b.id), 0);
        s.push_str(": rel ");
        push_dec(s, spc, 0);
        s.push('/');
        push_dec(s, db, 0);
        s.push('/');
        push_dec(s, rel, 0);
        if b.fork != 0 {
            s.push_str(" fork ");
            s.push_str(FORK_NAMES.get(usize::from(b.fork)).unwrap_or(&"?"));
        }
        s.push_str(" blk ");
        push_dec(s, b.block, 0);
        if let Some(img) = b.image {
            s.push_str(if img.apply { " FPW" } else { " FPW for WAL verification" });
        }
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
            }
        }
    }
}
