//! Transaction and Standby records: commits and aborts with their relations, subtransactions,
//! dropped statistics and invalidation messages; locks and running transactions.

use std::fmt::Write;

use pgmoneta_core::PgVersion;

use super::xlog::{relpath, timestamptz};
use super::{rmid, Fields};
use crate::wal::record::DecodedRecord;

const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_HAS_INFO: u8 = 0x80;

const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
const XACT_XINFO_HAS_RELFILENODES: u32 = 1 << 2;
const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
const XACT_XINFO_HAS_ORIGIN: u32 = 1 << 5;
const XACT_XINFO_HAS_GID: u32 = 1 << 7;
const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;
const XACT_COMPLETION_APPLY_FEEDBACK: u32 = 1 << 29;
const XACT_COMPLETION_UPDATE_RELCACHE_FILE: u32 = 1 << 30;
const XACT_COMPLETION_FORCE_SYNC_COMMIT: u32 = 1 << 31;

pub(crate) fn identify(info: u8) -> Option<&'static str> {
    Some(match info & XLOG_XACT_OPMASK {
        0x00 => "COMMIT",
        0x10 => "PREPARE",
        0x20 => "ABORT",
        0x30 => "COMMIT_PREPARED",
        0x40 => "ABORT_PREPARED",
        0x50 => "ASSIGNMENT",
        0x60 => "INVALIDATIONS",
        _ => return None,
    })
}

pub(crate) fn standby_identify(info: u8) -> Option<&'static str> {
    Some(match info {
        0x00 => "LOCK",
        0x10 => "RUNNING_XACTS",
        0x20 => "INVALIDATIONS",
        _ => return None,
    })
}

/// What a commit or abort record holds (`xl_xact_parsed_commit`).
#[derive(Default)]
struct Parsed {
    time: i64,
    xinfo: u32,
    db: u32,
    ts: u32,
    subxacts: Vec<u32>,
    rels: Vec<(u32, u32, u32)>,
    stats: Vec<(i32, u32, u32)>,
    msgs: Vec<[u8; 16]>,
    twophase_xid: u32,
    gid: String,
    origin_lsn: u64,
    origin_time: i64,
}

fn parse(f: Fields<'_>, info: u8, commit: bool, v: PgVersion) -> Parsed {
    let mut p = Parsed { time: f.i64(0), ..Parsed::default() };
    let mut o = 8;
    if info & XLOG_XACT_HAS_INFO != 0 {
        p.xinfo = f.u32(o);
        o += 4;
    }
    if p.xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        p.db = f.u32(o);
        p.ts = f.u32(o + 4);
        o += 8;
    }
    if p.xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        let n = f.i32(o).max(0) as usize;
        o += 4;
        p.subxacts = (0..n).map(|i| f.u32(o + 4 * i)).collect();
        o += 4 * n;
    }
    if p.xinfo & XACT_XINFO_HAS_RELFILENODES != 0 {
        let n = f.i32(o).max(0) as usize;
        o += 4;
        p.rels = (0..n).map(|i| (f.u32(o + 12 * i), f.u32(o + 12 * i + 4), f.u32(o + 12 * i + 8))).collect();
        o += 12 * n;
    }
    if v >= PgVersion::V15 && p.xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
        let n = f.i32(o).max(0) as usize;
        o += 4;
        let item = if v >= PgVersion::V18 { 16 } else { 12 };
        p.stats = (0..n)
            .map(|i| {
                let b = o + item * i;
                if v >= PgVersion::V18 {
                    (f.i32(b), f.u32(b + 4), (f.u64(b + 8) & 0xFFFF_FFFF) as u32)
                } else {
                    (f.i32(b), f.u32(b + 4), f.u32(b + 8))
                }
            })
            .collect();
        o += item * n;
    }
    if commit && p.xinfo & XACT_XINFO_HAS_INVALS != 0 {
        let n = f.i32(o).max(0) as usize;
        o += 4;
        for i in 0..n {
            let mut m = [0u8; 16];
            if let Some(b) = f.0.get(o + 16 * i..o + 16 * i + 16) {
                m.copy_from_slice(b);
            }
            p.msgs.push(m);
        }
        o += 16 * n;
    }
    if p.xinfo & XACT_XINFO_HAS_TWOPHASE != 0 {
        p.twophase_xid = f.u32(o);
        o += 4;
        if p.xinfo & XACT_XINFO_HAS_GID != 0 {
            p.gid = f.cstr(o);
            o += p.gid.len() + 1;
        }
    }
    if p.xinfo & XACT_XINFO_HAS_ORIGIN != 0 {
        p.origin_lsn = f.u64(o);
        p.origin_time = f.i64(o + 8);
    }
    p
}

fn relations(out: &mut String, label: &str, rels: &[(u32, u32, u32)], v: PgVersion) {
    if rels.is_empty() {
        return;
    }
    let _ = write!(out, "; {label}:");
    for (spc, db, rel) in rels {
        let _ = write!(out, " {}", relpath(*spc, *db, *rel, 0, v));
    }
}

fn subxacts(out: &mut String, xids: &[u32]) {
    if xids.is_empty() {
        return;
    }
    out.push_str("; subxacts:");
    for x in xids {
        let _ = write!(out, " {x}");
    }
}

fn stats(out: &mut String, label: &str, items: &[(i32, u32, u32)]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, "; {label}dropped stats:");
    for (kind, db, obj) in items {
        let _ = write!(out, " {kind}/{db}/{obj}");
    }
}

/// `standby_desc_invalidations`.
fn invalidations(out: &mut String, msgs: &[[u8; 16]], db: u32, ts: u32, relcache_init_file: bool) {
    if msgs.is_empty() {
        return;
    }
    if relcache_init_file {
        let _ = write!(out, "; relcache init file inval dbid {db} tsid {ts}");
    }
    out.push_str("; inval msgs:");
    for m in msgs {
        let f = Fields(m);
        match f.i8(0) {
            id if id >= 0 => {
                let _ = write!(out, " catcache {id}");
            }
            -1 => {
                let _ = write!(out, " catalog {}", f.u32(8));
            }
            -2 => {
                let rel = f.u32(8);
                if rel == 0 {
                    out.push_str(" relcache all");
                } else {
                    let _ = write!(out, " relcache {rel}");
                }
            }
            -3 => out.push_str(" smgr"),
            -4 => {
                let _ = write!(out, " relmap db {}", f.u32(4));
            }
            -5 => {
                let _ = write!(out, " snapshot {}", f.u32(8));
            }
            id => {
                let _ = write!(out, " unrecognized id {id}");
            }
        }
    }
}

fn origin(out: &mut String, p: &Parsed, origin_id: Option<u16>) {
    if p.xinfo & XACT_XINFO_HAS_ORIGIN != 0 {
        let _ = write!(
            out,
            "; origin: node {}, lsn {:X}/{:X}, at {}",
            origin_id.unwrap_or(0),
            p.origin_lsn >> 32,
            p.origin_lsn & 0xFFFF_FFFF,
            timestamptz(p.origin_time)
        );
    }
}

pub(crate) fn describe(rec: &DecodedRecord, out: &mut String) {
    let f = Fields(rec.main_data());
    let v = rec.version;
    if rec.rmid == rmid::STANDBY {
        match rec.record_info() {
            0x00 => {
                let n = f.i32(0).max(0) as usize;
                for i in 0..n {
                    let o = 4 + 12 * i;
                    let _ = write!(out, "xid {} db {} rel {} ", f.u32(o), f.u32(o + 4), f.u32(o + 8));
                }
            }
            0x10 => {
                let (xcnt, subxcnt) = (f.i32(0).max(0) as usize, f.i32(4).max(0) as usize);
                let _ = write!(
                    out,
                    "nextXid {} latestCompletedXid {} oldestRunningXid {}",
                    f.u32(12),
                    f.u32(20),
                    f.u32(16)
                );
                if xcnt > 0 {
                    let _ = write!(out, "; {xcnt} xacts:");
                    for i in 0..xcnt {
                        let _ = write!(out, " {}", f.u32(24 + 4 * i));
                    }
                }
                if f.bool(8) {
                    out.push_str("; subxid overflowed");
                }
                if subxcnt > 0 {
                    let _ = write!(out, "; {subxcnt} subxacts:");
                    for i in 0..subxcnt {
                        let _ = write!(out, " {}", f.u32(24 + 4 * (xcnt + i)));
                    }
                }
            }
            0x20 => {
                let n = f.i32(12).max(0) as usize;
                let msgs = messages(f, 16, n);
                invalidations(out, &msgs, f.u32(0), f.u32(4), f.bool(8));
            }
            _ => {}
        }
        return;
    }
    let info = rec.info;
    match info & XLOG_XACT_OPMASK {
        op @ (0x00 | 0x20 | 0x30 | 0x40) => {
            let commit = op == 0x00 || op == 0x30;
            let p = parse(f, info, commit, v);
            if op == 0x30 || op == 0x40 {
                let _ = write!(out, "{}: ", p.twophase_xid);
            }
            out.push_str(&timestamptz(p.time));
            relations(out, "rels", &p.rels, v);
            subxacts(out, &p.subxacts);
            stats(out, "", &p.stats);
            if commit {
                invalidations(out, &p.msgs, p.db, p.ts, p.xinfo & XACT_COMPLETION_UPDATE_RELCACHE_FILE != 0);
                if p.xinfo & XACT_COMPLETION_APPLY_FEEDBACK != 0 {
                    out.push_str("; apply_feedback");
                }
                if p.xinfo & XACT_COMPLETION_FORCE_SYNC_COMMIT != 0 {
                    out.push_str("; sync");
                }
            }
            origin(out, &p, rec.origin);
        }
        0x10 => {
            // xl_xact_prepare: magic, total_len, xid, database, prepared_at, owner, nsubxacts,
            // ncommitrels, nabortrels, ncommitstats, nabortstats (15+), ninvalmsgs,
            // initfileinval, gidlen, origin_lsn, origin_timestamp; then the gid and arrays.
            let has_stats = v >= PgVersion::V15;
            let base = if has_stats { 56 } else { 48 };
            let (nsub, ncommit, nabort) = (f.i32(28), f.i32(32), f.i32(36));
            let gidlen = f.u16(if has_stats { 52 } else { 44 }) as usize;
            let _ = write!(out, "gid {}: {}", f.cstr(base + 16), timestamptz(f.i64(16)));
            let _ = (nsub, ncommit, nabort, gidlen);
        }
        0x50 => {
            let n = f.i32(4).max(0) as usize;
            out.push_str("subxacts:");
            for i in 0..n {
                let _ = write!(out, " {}", f.u32(8 + 4 * i));
            }
        }
        0x60 => {
            let n = f.i32(0).max(0) as usize;
            let msgs = messages(f, 4, n);
            invalidations(out, &msgs, 0, 0, false);
        }
        _ => {}
    }
}

fn messages(f: Fields<'_>, at: usize, n: usize) -> Vec<[u8; 16]> {
    (0..n)
        .map(|i| {
            let mut m = [0u8; 16];
            if let Some(b) = f.0.get(at + 16 * i..at + 16 * i + 16) {
                m.copy_from_slice(b);
            }
            m
        })
        .collect()
}

/// The end of a transaction, as recovery targets see it: a commit or abort record (prepared or
/// not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XactEnd {
    /// A commit (`true`) or an abort.
    pub commit: bool,
    /// The transaction ended: the record's own xid, or the prepared transaction's.
    pub xid: u32,
    /// `xact_time`: microseconds since 2000-01-01 00:00 UTC.
    pub time: i64,
}

/// The transaction end `rec` records, if it is a commit or abort record.
pub fn xact_end(rec: &DecodedRecord) -> Option<XactEnd> {
    if rec.rmid != rmid::XACT {
        return None;
    }
    let op = rec.info & XLOG_XACT_OPMASK;
    if !matches!(op, 0x00 | 0x20 | 0x30 | 0x40) {
        return None;
    }
    let commit = op == 0x00 || op == 0x30;
    let p = parse(Fields(rec.main_data()), rec.info, commit, rec.version);
    let xid = if op == 0x30 || op == 0x40 { p.twophase_xid } else { rec.xid };
    Some(XactEnd { commit, xid, time: p.time })
}
