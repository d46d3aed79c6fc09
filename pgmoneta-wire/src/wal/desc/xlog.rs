//! XLOG and the small resource managers: Storage, CLOG, Database, Tablespace, MultiXact,
//! RelMap, Sequence, CommitTs, ReplicationOrigin, Generic, LogicalMessage.

use std::fmt::Write;

use pgmoneta_core::{CivilDateTime, PgVersion};

use super::{rmid, Fields};
use crate::wal::record::DecodedRecord;

/// `GLOBALTABLESPACE_OID`.
const GLOBALTABLESPACE_OID: u32 = 1664;
/// `DEFAULTTABLESPACE_OID`.
const DEFAULTTABLESPACE_OID: u32 = 1663;

/// `TABLESPACE_VERSION_DIRECTORY` of each version.
fn tablespace_version_directory(v: PgVersion) -> &'static str {
    match v {
        PgVersion::V14 => "PG_14_202107181",
        PgVersion::V15 => "PG_15_202209061",
        PgVersion::V16 => "PG_16_202307071",
        PgVersion::V17 => "PG_17_202406281",
        _ => "PG_18_202506291",
    }
}

/// `relpathperm`: the path of a relation fork under the data directory.
pub(crate) fn relpath(spc: u32, db: u32, rel: u32, fork: u32, v: PgVersion) -> String {
    let mut s = if spc == GLOBALTABLESPACE_OID {
        format!("global/{rel}")
    } else if spc == DEFAULTTABLESPACE_OID {
        format!("base/{db}/{rel}")
    } else {
        format!("pg_tblspc/{spc}/{}/{db}/{rel}", tablespace_version_directory(v))
    };
    if fork != 0 {
        s.push('_');
        s.push_str(crate::wal::FORK_NAMES.get(fork as usize).unwrap_or(&"?"));
    }
    s
}

/// `timestamptz_to_str` in UTC: `2026-11-28 08:15:20.093156 UTC` (no fraction when it is 0).
pub(crate) fn timestamptz(ts: i64) -> String {
    const EPOCH_2000: i64 = 946_684_800;
    let secs = ts.div_euclid(1_000_000);
    let usec = ts.rem_euclid(1_000_000);
    let t = CivilDateTime::from_unix(secs + EPOCH_2000, 0);
    let mut s = format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second);
    if usec != 0 {
        let _ = write!(s, ".{usec:06}");
    }
    s.push_str(" UTC");
    s
}

fn lsn(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)
}

pub(crate) fn identify(info: u8, v: PgVersion) -> Option<&'static str> {
    Some(match info {
        0x00 => "CHECKPOINT_SHUTDOWN",
        0x10 => "CHECKPOINT_ONLINE",
        0x20 => "NOOP",
        0x30 => "NEXTOID",
        0x40 => "SWITCH",
        0x50 => "BACKUP_END",
        0x60 => "PARAMETER_CHANGE",
        0x70 => "RESTORE_POINT",
        0x80 => "FPW_CHANGE",
        0x90 => "END_OF_RECOVERY",
        0xA0 => "FPI_FOR_HINT",
        0xB0 => "FPI",
        0xD0 => "OVERWRITE_CONTRECORD",
        0xE0 if v >= PgVersion::V17 => "CHECKPOINT_REDO",
        _ => return None,
    })
}

pub(crate) fn dbase_identify(info: u8, v: PgVersion) -> Option<&'static str> {
    if v >= PgVersion::V15 {
        match info {
            0x00 => Some("CREATE_FILE_COPY"),
            0x10 => Some("CREATE_WAL_LOG"),
            0x20 => Some("DROP"),
            _ => None,
        }
    } else {
        match info {
            0x00 => Some("CREATE"),
            0x10 => Some("DROP"),
            _ => None,
        }
    }
}

const WAL_LEVELS: [&str; 3] = ["minimal", "replica", "logical"];

fn wal_level(n: i32) -> &'static str {
    WAL_LEVELS.get(n as usize).copied().unwrap_or("?")
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn checkpoint(f: Fields<'_>, v: PgVersion, shutdown: bool, out: &mut String) {
    // CheckPoint: redo, ThisTimeLineID, PrevTimeLineID, fullPageWrites (17+: then wal_level),
    // nextXid (8-aligned), nextOid, nextMulti, nextMultiOffset, oldestXid, oldestXidDB,
    // oldestMulti, oldestMultiDB, time (8-aligned), oldestCommitTsXid, newestCommitTsXid,
    // oldestActiveXid.
    let with_level = v >= PgVersion::V17;
    let x = 24;
    let _ = write!(
        out,
        "redo {}; tli {}; prev tli {}; fpw {}; ",
        lsn(f.u64(0)),
        f.u32(8),
        f.u32(12),
        if f.bool(16) { "true" } else { "false" }
    );
    if with_level {
        let _ = write!(out, "wal_level {}; ", wal_level(f.i32(20)));
    }
    let _ = write!(
        out,
        "xid {}:{}; oid {}; multi {}; offset {}; oldest xid {} in DB {}; oldest multi {} in DB {}; oldest/newest commit timestamp xid: {}/{}; oldest running xid {}; {}",
        f.u32(x + 4),
        f.u32(x),
        f.u32(x + 8),
        f.u32(x + 12),
        f.u32(x + 16),
        f.u32(x + 20),
        f.u32(x + 24),
        f.u32(x + 28),
        f.u32(x + 32),
        f.u32(x + 48),
        f.u32(x + 52),
        f.u32(x + 56),
        if shutdown { "shutdown" } else { "online" }
    );
}

pub(crate) fn describe(rec: &DecodedRecord, out: &mut String) {
    let f = Fields(rec.main_data());
    let info = rec.record_info();
    let v = rec.version;
    match rec.rmid {
        rmid::XLOG => match info {
            0x00 | 0x10 => checkpoint(f, v, info == 0x00, out),
            0x30 => {
                let _ = write!(out, "{}", f.u32(0));
            }
            0x70 => out.push_str(&f.cstr(8)),
            0x80 => out.push_str(if f.bool(0) { "true" } else { "false" }),
            0x50 => out.push_str(&lsn(f.u64(0))),
            0x60 => {
                let _ = write!(
                    out,
                    "max_connections={} max_worker_processes={} max_wal_senders={} max_prepared_xacts={} max_locks_per_xact={} wal_level={} wal_log_hints={} track_commit_timestamp={}",
                    f.i32(0),
                    f.i32(4),
                    f.i32(8),
                    f.i32(12),
                    f.i32(16),
                    wal_level(f.i32(20)),
                    onoff(f.bool(24)),
                    onoff(f.bool(25))
                );
            }
            0x90 => {
                let _ = write!(out, "tli {}; prev tli {}; time {}", f.u32(8), f.u32(12), timestamptz(f.i64(0)));
            }
            0xD0 => {
                let _ = write!(out, "lsn {}; time {}", lsn(f.u64(0)), timestamptz(f.i64(8)));
            }
            0xE0 => {
                let _ = write!(out, "wal_level {}", wal_level(f.i32(0)));
            }
            _ => {}
        },
        rmid::SMGR => match info {
            0x10 => out.push_str(&relpath(f.u32(0), f.u32(4), f.u32(8), f.u32(12), v)),
            0x20 => {
                let _ = write!(
                    out,
                    "{} to {} blocks flags {}",
                    relpath(f.u32(4), f.u32(8), f.u32(12), 0, v),
                    f.u32(0),
                    f.i32(16)
                );
            }
            _ => {}
        },
        rmid::CLOG => match info {
            0x00 => {
                let _ = write!(out, "page {}", f.i32(0));
            }
            0x10 => {
                let _ = write!(out, "page {}; oldestXact {}", f.i32(0), f.u32(4));
            }
            _ => {}
        },
        rmid::DBASE => {
            if v >= PgVersion::V15 {
                match info {
                    0x00 => {
                        let _ = write!(out, "copy dir {}/{} to {}/{}", f.u32(12), f.u32(8), f.u32(4), f.u32(0));
                    }
                    0x10 => {
                        let _ = write!(out, "create dir {}/{}", f.u32(4), f.u32(0));
                    }
                    0x20 => drop_dirs(f, out),
                    _ => {}
                }
            } else {
                match info {
                    0x00 => {
                        let _ = write!(out, "copy dir {}/{} to {}/{}", f.u32(12), f.u32(8), f.u32(4), f.u32(0));
                    }
                    0x10 => drop_dirs(f, out),
                    _ => {}
                }
            }
        }
        rmid::TBLSPC => match info {
            0x00 => {
                let _ = write!(out, "{} \"{}\"", f.u32(0), f.cstr(4));
            }
            0x10 => {
                let _ = write!(out, "{}", f.u32(0));
            }
            _ => {}
        },
        rmid::MULTIXACT => match info {
            0x00 | 0x10 => {
                let _ = write!(out, "{}", f.i32(0));
            }
            0x20 => {
                let n = f.i32(8);
                let _ = write!(out, "{} offset {} nmembers {}: ", f.u32(0), f.u32(4), n);
                for i in 0..n.max(0) as usize {
                    let o = 12 + i * 8;
                    let status = match f.i32(o + 4) {
                        0 => "keysh",
                        1 => "sh",
                        2 => "fornokeyupd",
                        3 => "forupd",
                        4 => "nokeyupd",
                        5 => "upd",
                        _ => "unk",
                    };
                    let _ = write!(out, "{} ({status}) ", f.u32(o));
                }
            }
            0x30 => {
                let _ = write!(out, "offsets [{}, {}), members [{}, {})", f.u32(4), f.u32(8), f.u32(12), f.u32(16));
            }
            _ => {}
        },
        rmid::RELMAP => {
            let _ = write!(out, "database {} tablespace {} size {}", f.u32(0), f.u32(4), f.i32(8));
        }
        rmid::SEQ => {
            let _ = write!(out, "rel {}/{}/{}", f.u32(0), f.u32(4), f.u32(8));
        }
        rmid::COMMIT_TS => match info {
            0x00 => {
                let _ = write!(out, "{}", f.i32(0));
            }
            0x10 => {
                let _ = write!(out, "pageno {}, oldestXid {}", f.i32(0), f.u32(4));
            }
            _ => {}
        },
        rmid::REPLORIGIN => match info {
            0x00 => {
                let _ = write!(out, "set {}; lsn {}; force: {}", f.u16(8), lsn(f.u64(0)), u8::from(f.bool(10)));
            }
            0x10 => {
                let _ = write!(out, "drop {}", f.u16(0));
            }
            _ => {}
        },
        rmid::LOGICALMSG => {
            let prefix_size = f.u64(8) as usize;
            let message_size = f.u64(16) as usize;
            let body = rec.main_data().get(24..).unwrap_or(&[]);
            let prefix = Fields(body).cstr(0);
            let payload = body.get(prefix_size..prefix_size + message_size).unwrap_or(&[]);
            let kind = if f.bool(4) { "transactional" } else { "non-transactional" };
            let _ = write!(out, "{kind}, prefix \"{prefix}\"; payload ({message_size} bytes): ");
            for (i, b) in payload.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{b:02X}");
            }
        }
        rmid::GENERIC => {
            // The main data, when an extension writes any, is a run of (offset, length, bytes)
            // page fragments; generic_xlog.c's own records keep their deltas in block data.
            let data = rec.main_data();
            let mut at = 0;
            while at < data.len() {
                let (offset, length) = (f.u16(at), f.u16(at + 2));
                at += 4 + usize::from(length);
                let _ = write!(out, "offset {offset}, length {length}");
                if at < data.len() {
                    out.push_str("; ");
                }
            }
        }
        _ => {}
    }
}

fn drop_dirs(f: Fields<'_>, out: &mut String) {
    out.push_str("dir");
    let n = f.i32(4).max(0) as usize;
    for i in 0..n {
        let _ = write!(out, " {}/{}", f.u32(8 + i * 4), f.u32(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps_and_paths_like_postgres() {
        // 2026-11-28 08:15:20.093156 UTC
        let ts = (1_795_853_720 - 946_684_800) * 1_000_000 + 93_156;
        assert_eq!(timestamptz(ts), "2026-11-28 08:15:20.093156 UTC");
        assert_eq!(timestamptz(ts - 93_156 + 500_000), "2026-11-28 08:15:20.500000 UTC");
        assert_eq!(timestamptz(ts - 93_156), "2026-11-28 08:15:20 UTC");
        assert_eq!(relpath(1663, 5, 16384, 0, PgVersion::V15), "base/5/16384");
        assert_eq!(relpath(1664, 0, 1262, 1, PgVersion::V15), "global/1262_fsm");
        assert_eq!(relpath(16449, 5, 16450, 0, PgVersion::V15), "pg_tblspc/16449/PG_15_202209061/5/16450");
    }
}
