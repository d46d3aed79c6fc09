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

/// A record in `pg_waldump`'s line format (PostgreSQL 15's, without `--bkp-details`).
pub fn waldump_line(rec: &DecodedRecord) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(160);
    let _ = write!(
        s,
        "rmgr: {:<11} len (rec/tot): {:>6}/{:>6}, tx: {:>10}, lsn: {:X}/{:08X}, prev {:X}/{:08X}, ",
        desc::rmgr_name(rec.rmid),
        rec.total_len - rec.fpi_len(),
        rec.total_len,
        rec.xid,
        rec.lsn.0 >> 32,
        rec.lsn.0 & 0xFFFF_FFFF,
        rec.prev.0 >> 32,
        rec.prev.0 & 0xFFFF_FFFF,
    );
    match desc::identify(rec) {
        Some(id) => {
            let _ = write!(s, "desc: {id} ");
        }
        None => {
            let _ = write!(s, "desc: UNKNOWN ({:x}) ", rec.record_info());
        }
    }
    desc::describe(rec, &mut s);
    for b in &rec.blocks {
        let (spc, db, rel) = b.locator;
        let _ = write!(s, ", blkref #{}: rel {spc}/{db}/{rel}", b.id);
        if b.fork != 0 {
            let _ = write!(s, " fork {}", FORK_NAMES.get(usize::from(b.fork)).unwrap_or(&"?"));
        }
        let _ = write!(s, " blk {}", b.block);
        if let Some(img) = b.image {
            s.push_str(if img.apply { " FPW" } else { " FPW for WAL verification" });
        }
    }
    s
}
