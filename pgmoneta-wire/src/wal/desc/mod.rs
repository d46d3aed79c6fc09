//! Descriptions of records, worded as `pg_waldump` words them (PostgreSQL 15's `rm_identify`
//! and `rm_desc`), for every resource manager.

mod access;
mod xact;
mod xlog;

pub use xact::{xact_end, XactEnd};

use super::record::DecodedRecord;

/// Resource manager names, by id, as `pg_waldump` prints them.
pub const RMGR_NAMES: [&str; 22] = [
    "XLOG",
    "Transaction",
    "Storage",
    "CLOG",
    "Database",
    "Tablespace",
    "MultiXact",
    "RelMap",
    "Standby",
    "Heap2",
    "Heap",
    "Btree",
    "Hash",
    "Gin",
    "Gist",
    "Sequence",
    "SPGist",
    "BRIN",
    "CommitTs",
    "ReplicationOrigin",
    "Generic",
    "LogicalMessage",
];

/// `RM_XACT_ID` and the others, by name.
#[allow(missing_docs)]
pub mod rmid {
    pub const XLOG: u8 = 0;
    pub const XACT: u8 = 1;
    pub const SMGR: u8 = 2;
    pub const CLOG: u8 = 3;
    pub const DBASE: u8 = 4;
    pub const TBLSPC: u8 = 5;
    pub const MULTIXACT: u8 = 6;
    pub const RELMAP: u8 = 7;
    pub const STANDBY: u8 = 8;
    pub const HEAP2: u8 = 9;
    pub const HEAP: u8 = 10;
    pub const BTREE: u8 = 11;
    pub const HASH: u8 = 12;
    pub const GIN: u8 = 13;
    pub const GIST: u8 = 14;
    pub const SEQ: u8 = 15;
    pub const SPGIST: u8 = 16;
    pub const BRIN: u8 = 17;
    pub const COMMIT_TS: u8 = 18;
    pub const REPLORIGIN: u8 = 19;
    pub const GENERIC: u8 = 20;
    pub const LOGICALMSG: u8 = 21;
}

/// The resource manager's name; `custom<id>` beyond the built-in ones.
pub fn rmgr_name(id: u8) -> std::borrow::Cow<'static, str> {
    match RMGR_NAMES.get(usize::from(id)) {
        Some(n) => std::borrow::Cow::Borrowed(n),
        None => std::borrow::Cow::Owned(format!("custom{id:03}")),
    }
}

/// Little-endian fields of a record's data, read at offsets; reads past the end give 0, so a
/// truncated body describes as zeroes rather than failing.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a>(pub &'a [u8]);

impl Fields<'_> {
    pub fn u8(&self, o: usize) -> u8 {
        self.0.get(o).copied().unwrap_or(0)
    }
    pub fn i8(&self, o: usize) -> i8 {
        self.u8(o) as i8
    }
    pub fn u16(&self, o: usize) -> u16 {
        match self.0.get(o..o + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]),
            None => 0,
        }
    }
    pub fn u32(&self, o: usize) -> u32 {
        match self.0.get(o..o + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }
    pub fn i32(&self, o: usize) -> i32 {
        self.u32(o) as i32
    }
    pub fn u64(&self, o: usize) -> u64 {
        u64::from(self.u32(o)) | (u64::from(self.u32(o + 4)) << 32)
    }
    pub fn i64(&self, o: usize) -> i64 {
        self.u64(o) as i64
    }
    pub fn f64(&self, o: usize) -> f64 {
        f64::from_bits(self.u64(o))
    }
    pub fn bool(&self, o: usize) -> bool {
        self.u8(o) != 0
    }
    /// A `BlockIdData` (two 16-bit halves, high first).
    pub fn block_id(&self, o: usize) -> u32 {
        (u32::from(self.u16(o)) << 16) | u32::from(self.u16(o + 2))
    }
    /// A NUL-terminated string starting at `o`.
    pub fn cstr(&self, o: usize) -> String {
        let rest = self.0.get(o..).unwrap_or(&[]);
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    }
}

/// `T` or `F`, as the index resource managers print booleans.
pub(crate) fn tf(b: bool) -> char {
    if b {
        'T'
    } else {
        'F'
    }
}

/// The record type's name (`rm_identify`); `None` for a type the resource manager does not
/// define.
pub fn identify(rec: &DecodedRecord) -> Option<&'static str> {
    let info = rec.record_info();
    let name: &str = match rec.rmid {
        rmid::XLOG => xlog::identify(info, rec.version)?,
        rmid::XACT => xact::identify(info)?,
        rmid::STANDBY => xact::standby_identify(info)?,
        rmid::HEAP | rmid::HEAP2 | rmid::BTREE | rmid::HASH | rmid::GIN | rmid::GIST | rmid::SPGIST | rmid::BRIN => {
            return access::identify(rec.rmid, info, rec.version)
        }
        rmid::SMGR => match info {
            0x10 => "CREATE",
            0x20 => "TRUNCATE",
            _ => return None,
        },
        rmid::CLOG => match info {
            0x00 => "ZEROPAGE",
            0x10 => "TRUNCATE",
            _ => return None,
        },
        rmid::DBASE => xlog::dbase_identify(info, rec.version)?,
        rmid::TBLSPC => match info {
            0x00 => "CREATE",
            0x10 => "DROP",
            _ => return None,
        },
        rmid::MULTIXACT => match info {
            0x00 => "ZERO_OFF_PAGE",
            0x10 => "ZERO_MEM_PAGE",
            0x20 => "CREATE_ID",
            0x30 => "TRUNCATE_ID",
            _ => return None,
        },
        rmid::RELMAP => match info {
            0x00 => "UPDATE",
            _ => return None,
        },
        rmid::SEQ => match info {
            0x00 => "LOG",
            _ => return None,
        },
        rmid::COMMIT_TS => match info {
            0x00 => "ZEROPAGE",
            0x10 => "TRUNCATE",
            _ => return None,
        },
        rmid::REPLORIGIN => match info {
            0x00 => "SET",
            0x10 => "DROP",
            _ => return None,
        },
        rmid::GENERIC => "Generic",
        rmid::LOGICALMSG => match info {
            0x00 => "MESSAGE",
            _ => return None,
        },
        _ => return None,
    };
    Some(name)
}

/// The time a transaction record carries (commit, abort, prepare; `xact_time`), formatted as
/// PostgreSQL formats a `timestamptz` in UTC.
pub fn record_time(rec: &DecodedRecord) -> Option<String> {
    if rec.rmid != rmid::XACT {
        return None;
    }
    let f = Fields(rec.main_data());
    match rec.info & 0x70 {
        0x00 | 0x20 | 0x30 | 0x40 => Some(xlog::timestamptz(f.i64(0))),
        0x10 => Some(xlog::timestamptz(f.i64(16))),
        _ => None,
    }
}

/// The name a restore point record (`pg_create_restore_point`) carries.
pub fn restore_point_name(rec: &DecodedRecord) -> Option<String> {
    (rec.rmid == rmid::XLOG && rec.info & 0xF0 == 0x70).then(|| Fields(rec.main_data()).cstr(8))
}

/// Formats a PostgreSQL `timestamptz` (microseconds since 2000-01-01 UTC) as PostgreSQL does
/// in UTC: `2026-11-28 08:15:20.093156 UTC`.
pub fn format_timestamptz(ts: i64) -> String {
    xlog::timestamptz(ts)
}

/// Appends `pg_waldump`'s `desc:` field: the record type's name (`UNKNOWN (<info>)` for a type
/// the resource manager does not define), a space, and the description.
pub fn name_and_describe(rec: &DecodedRecord, out: &mut String) {
    match identify(rec) {
        Some(id) => out.push_str(id),
        None => {
            out.push_str("UNKNOWN (");
            out.push_str(&format!("{:x}", rec.record_info()));
            out.push(')');
        }
    }
    out.push(' ');
    describe(rec, out);
}

/// Appends the record's description (`rm_desc`) to `out`.
pub fn describe(rec: &DecodedRecord, out: &mut String) {
    match rec.rmid {
        rmid::XLOG
        | rmid::SMGR
        | rmid::CLOG
        | rmid::DBASE
        | rmid::TBLSPC
        | rmid::MULTIXACT
        | rmid::RELMAP
        | rmid::SEQ
        | rmid::COMMIT_TS
        | rmid::REPLORIGIN
        | rmid::LOGICALMSG
        | rmid::GENERIC => xlog::describe(rec, out),
        rmid::XACT | rmid::STANDBY => xact::describe(rec, out),
        _ => access::describe(rec, out),
    }
}
