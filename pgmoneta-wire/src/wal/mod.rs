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
mod record;

pub use decoder::{
    page_magic, version_of_magic, WalDecoder, XLogPageHeader, SIZE_OF_XLOG_LONG_PHD, SIZE_OF_XLOG_SHORT_PHD,
    XLOG_BLCKSZ, XLOG_RECORD_MAX_SIZE, XLP_BKP_REMOVABLE, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD,
    XLP_LONG_HEADER,
};
pub use record::{
    decode_record, record_crc, BlockImage, BlockRef, DecodedRecord, BKPBLOCK_FORK_MASK, BKPBLOCK_HAS_DATA,
    BKPBLOCK_HAS_IMAGE, BKPBLOCK_SAME_REL, BKPBLOCK_WILL_INIT, BLCKSZ, RM_XLOG_ID, SIZE_OF_XLOG_RECORD, XLOG_SWITCH,
    XLR_BLOCK_ID_DATA_LONG, XLR_BLOCK_ID_DATA_SHORT, XLR_BLOCK_ID_ORIGIN, XLR_BLOCK_ID_TOPLEVEL_XID,
    XLR_CHECK_CONSISTENCY, XLR_INFO_MASK, XLR_MAX_BLOCK_ID, XLR_SPECIAL_REL_UPDATE,
};

/// Fork names as `pg_waldump` prints them.
pub const FORK_NAMES: [&str; 4] = ["main", "fsm", "vm", "init"];

/// Appends the decimal digits of `v`, right-aligned in `width` columns.
fn push_dec(out: &mut String, v: u32, width: usize) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut x = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    let digits = buf.len() - i;
    for _ in digits..width {
        out.push(' ');
    }
    out.extend(buf[i..].iter().map(|b| char::from(*b)));
}

/// Appends `v` in upper-case hex, zero-padded to `width` digits.
fn push_hex(out: &mut String, v: u32, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut buf = [0u8; 8];
    let mut i = buf.len();
    let mut x = v;
    loop {
        i -= 1;
        buf[i] = DIGITS[(x & 0xF) as usize];
        x >>= 4;
        if x == 0 {
            break;
        }
    }
    for _ in (buf.len() - i)..width {
        out.push('0');
    }
    out.extend(buf[i..].iter().map(|b| char::from(*b)));
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
    match desc::identify(rec) {
        Some(id) => s.push_str(id),
        None => {
            s.push_str("UNKNOWN (");
            s.push_str(&format!("{:x}", rec.record_info()));
            s.push(')');
        }
    }
    s.push(' ');
    desc::describe(rec, s);
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
