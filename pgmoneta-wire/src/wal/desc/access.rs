//! The access methods: Heap, Heap2, Btree, Hash, Gin, Gist, SPGist, BRIN.

use std::fmt::Write;

use pgmoneta_core::PgVersion;

use super::{rmid, tf, Fields};
use crate::wal::record::DecodedRecord;
use crate::wal::{push_dec, push_hex};

const XLOG_HEAP_OPMASK: u8 = 0x70;
const XLOG_HEAP_INIT_PAGE: u8 = 0x80;

pub(crate) fn identify(rm: u8, info: u8, v: PgVersion) -> Option<&'static str> {
    let init = info & XLOG_HEAP_INIT_PAGE != 0;
    let plus_init = |name: &'static str, with_init: &'static str| if init { with_init } else { name };
    Some(match rm {
        rmid::HEAP => match info & XLOG_HEAP_OPMASK {
            0x00 => plus_init("INSERT", "INSERT+INIT"),
            0x10 => "DELETE",
            0x20 => plus_init("UPDATE", "UPDATE+INIT"),
            0x30 => "TRUNCATE",
            0x40 => plus_init("HOT_UPDATE", "HOT_UPDATE+INIT"),
            0x50 => "CONFIRM",
            0x60 => "LOCK",
            _ => "INPLACE",
        },
        rmid::HEAP2 => match info & XLOG_HEAP_OPMASK {
            0x00 => "REWRITE",
            0x10 if v >= PgVersion::V17 => "PRUNE_ON_ACCESS",
            0x10 => "PRUNE",
            0x20 if v >= PgVersion::V17 => "PRUNE_VACUUM_SCAN",
            0x20 => "VACUUM",
            0x30 if v >= PgVersion::V17 => "PRUNE_VACUUM_CLEANUP",
            0x30 => "FREEZE_PAGE",
            0x40 => "VISIBLE",
            0x50 => plus_init("MULTI_INSERT", "MULTI_INSERT+INIT"),
            0x60 => "LOCK_UPDATED",
            _ => "NEW_CID",
        },
        rmid::BTREE => match info {
            0x00 => "INSERT_LEAF",
            0x10 => "INSERT_UPPER",
            0x20 => "INSERT_META",
            0x30 => "SPLIT_L",
            0x40 => "SPLIT_R",
            0x50 => "INSERT_POST",
            0x60 => "DEDUP",
            0x70 => "DELETE",
            0x80 => "UNLINK_PAGE",
            0x90 => "UNLINK_PAGE_META",
            0xA0 => "NEWROOT",
            0xB0 => "MARK_PAGE_HALFDEAD",
            0xC0 => "VACUUM",
            0xD0 => "REUSE_PAGE",
            0xE0 => "META_CLEANUP",
            _ => return None,
        },
        rmid::HASH => match info {
            0x00 => "INIT_META_PAGE",
            0x10 => "INIT_BITMAP_PAGE",
            0x20 => "INSERT",
            0x30 => "ADD_OVFL_PAGE",
            0x40 => "SPLIT_ALLOCATE_PAGE",
            0x50 => "SPLIT_PAGE",
            0x60 => "SPLIT_COMPLETE",
            0x70 => "MOVE_PAGE_CONTENTS",
            0x80 => "SQUEEZE_PAGE",
            0x90 => "DELETE",
            0xA0 => "SPLIT_CLEANUP",
            0xB0 => "UPDATE_META_PAGE",
            0xC0 => "VACUUM_ONE_PAGE",
            _ => return None,
        },
        rmid::GIN => match info {
            0x10 => "CREATE_PTREE",
            0x20 => "INSERT",
            0x30 => "SPLIT",
            0x40 => "VACUUM_PAGE",
            0x90 => "VACUUM_DATA_LEAF_PAGE",
            0x50 => "DELETE_PAGE",
            0x60 => "UPDATE_META_PAGE",
            0x70 => "INSERT_LISTPAGE",
            0x80 => "DELETE_LISTPAGE",
            _ => return None,
        },
        rmid::GIST => match info {
            0x00 => "PAGE_UPDATE",
            0x10 => "DELETE",
            0x20 => "PAGE_REUSE",
            0x30 => "PAGE_SPLIT",
            0x60 => "PAGE_DELETE",
            0x70 => "ASSIGN_LSN",
            _ => return None,
        },
        rmid::SPGIST => match info {
            0x10 => "ADD_LEAF",
            0x20 => "MOVE_LEAFS",
            0x30 => "ADD_NODE",
            0x40 => "SPLIT_TUPLE",
            0x50 => "PICKSPLIT",
            0x60 => "VACUUM_LEAF",
            0x70 => "VACUUM_ROOT",
            0x80 => "VACUUM_REDIRECT",
            _ => return None,
        },
        rmid::BRIN => match info & XLOG_HEAP_OPMASK {
            0x00 => "CREATE_INDEX",
            0x10 => plus_init("INSERT", "INSERT+INIT"),
            0x20 => plus_init("UPDATE", "UPDATE+INIT"),
            0x30 => "SAMEPAGE_UPDATE",
            0x40 => "REVMAP_EXTEND",
            0x50 => "DESUMMARIZE",
            _ => return None,
        },
        _ => return None,
    })
}

/// A piece of a description: text, a decimal number, or a byte as two hex digits.
enum Piece<'a> {
    S(&'a str),
    D(u32),
    H2(u8),
}
use Piece::{D, H2, S};

/// Appends `pieces`: the descriptions written most often, without the formatting machinery.
fn text(out: &mut String, pieces: &[Piece<'_>]) {
    for p in pieces {
        match *p {
            S(t) => out.push_str(t),
            D(v) => push_dec(out, v, 0),
            H2(b) => push_hex(out, u32::from(b), 2),
        }
    }
}

/// [`tf`] as text.
fn tf_str(b: bool) -> &'static str {
    if b {
        "T"
    } else {
        "F"
    }
}

/// `out_infobits`.
fn infobits(out: &mut String, bits: u8) {
    for (bit, name) in [
        (0x01, "IS_MULTI "),
        (0x02, "LOCK_ONLY "),
        (0x04, "EXCL_LOCK "),
        (0x08, "KEYSHR_LOCK "),
        (0x10, "KEYS_UPDATED "),
    ] {
        if bits & bit != 0 {
            out.push_str(name);
        }
    }
}

/// The `(full page image)` note of Gin records whose block 0 has an image.
fn gin_image(rec: &DecodedRecord, out: &mut String) -> bool {
    match rec.block(0).and_then(|b| b.image) {
        Some(img) => {
            out.push_str(if img.apply { " (full page image)" } else { " (full page image, for WAL verification)" });
            true
        }
        None => false,
    }
}

/// `desc_recompress_leaf`.
fn recompress_leaf(out: &mut String, data: &[u8]) {
    let f = Fields(data);
    let n = f.u16(0);
    let _ = write!(out, " {n} segments:");
    let mut o = 2;
    for _ in 0..n {
        let segno = f.u8(o);
        let action = f.u8(o + 1);
        o += 2;
        let mut nitems = 0;
        if action == 2 || action == 3 {
            // A GinPostingList: first item (6 bytes), nbytes (2), bytes, SHORTALIGNed.
            let nbytes = usize::from(f.u16(o + 6));
            let size = 8 + nbytes.div_ceil(2) * 2;
            o += size.div_ceil(2) * 2;
        }
        if action == 4 {
            nitems = f.u16(o);
            o += 2 + usize::from(nitems) * 6;
        }
        let _ = match action {
            4 => write!(out, " {segno} (add {nitems} items)"),
            1 => write!(out, " {segno} (delete)"),
            2 => write!(out, " {segno} (insert)"),
            3 => write!(out, " {segno} (replace)"),
            a => write!(out, " {segno} unknown action {a} ???"),
        };
    }
}

pub(crate) fn describe(rec: &DecodedRecord, out: &mut String) {
    let f = Fields(rec.main_data());
    let info = rec.record_info();
    let v = rec.version;
    match rec.rmid {
        rmid::HEAP => match info & XLOG_HEAP_OPMASK {
            0x00 => {
                out.push_str("off ");
                push_dec(out, u32::from(f.u16(0)), 0);
                out.push_str(" flags 0x");
                push_hex(out, u32::from(f.u8(2)), 2);
            }
            0x10 => {
                text(out, &[S("off "), D(f.u16(4).into()), S(" flags 0x"), H2(f.u8(7)), S(" ")]);
                infobits(out, f.u8(6));
            }
            0x20 | 0x40 => {
                let old =
                    [S("off "), D(f.u16(4).into()), S(" xmax "), D(f.u32(0)), S(" flags 0x"), H2(f.u8(7)), S(" ")];
                text(out, &old);
                infobits(out, f.u8(6));
                text(out, &[S("; new off "), D(f.u16(12).into()), S(" xmax "), D(f.u32(8))]);
            }
            0x30 => {
                let n = f.u32(4) as usize;
                let _ = write!(out, "flags 0x{:02X} nrelids {}", f.u8(8), n);
                out.push_str(" relids");
                for i in 0..n {
                    let _ = write!(out, " {}", f.u32(12 + 4 * i));
                }
            }
            0x50 => {
                let _ = write!(out, "off {}", f.u16(0));
            }
            0x60 => {
                text(
                    out,
                    &[S("off "), D(f.u16(4).into()), S(": xid "), D(f.u32(0)), S(": flags 0x"), H2(f.u8(7)), S(" ")],
                );
                infobits(out, f.u8(6));
            }
            _ => {
                let _ = write!(out, "off {}", f.u16(0));
            }
        },
        rmid::HEAP2 => match info & XLOG_HEAP_OPMASK {
            0x10 if v < PgVersion::V17 => {
                let horizon = if v >= PgVersion::V16 { "snapshotConflictHorizon " } else { "latestRemovedXid " };
                text(
                    out,
                    &[
                        S(horizon),
                        D(f.u32(0)),
                        S(" nredirected "),
                        D(f.u16(4).into()),
                        S(" ndead "),
                        D(f.u16(6).into()),
                    ],
                );
            }
            0x20 if v < PgVersion::V17 => {
                let _ = write!(out, "nunused {}", f.u16(0));
            }
            0x30 if v < PgVersion::V17 => {
                if v >= PgVersion::V16 {
                    let _ = write!(out, "snapshotConflictHorizon {} nplans {}", f.u32(0), f.u16(4));
                } else {
                    let _ = write!(out, "cutoff xid {} ntuples {}", f.u32(0), f.u16(4));
                }
            }
            0x40 => {
                let label = if v >= PgVersion::V16 { "snapshotConflictHorizon " } else { "cutoff xid " };
                text(out, &[S(label), D(f.u32(0)), S(" flags 0x"), H2(f.u8(4))]);
            }
            0x50 => {
                text(out, &[D(f.u16(2).into()), S(" tuples flags 0x"), H2(f.u8(0))]);
            }
            0x60 => {
                let _ = write!(out, "off {}: xmax {}: flags 0x{:02X} ", f.u16(4), f.u32(0), f.u8(7));
                infobits(out, f.u8(6));
            }
            0x70 => {
                let _ = write!(
                    out,
                    "rel {}/{}/{}; tid {}/{}; cmin: {}, cmax: {}, combo: {}",
                    f.u32(16),
                    f.u32(20),
                    f.u32(24),
                    f.block_id(28),
                    f.u16(32),
                    f.u32(4),
                    f.u32(8),
                    f.u32(12)
                );
            }
            _ => {}
        },
        rmid::BTREE => match info {
            0x00 | 0x10 | 0x20 | 0x50 => {
                out.push_str("off ");
                push_dec(out, u32::from(f.u16(0)), 0);
            }
            0x30 | 0x40 => {
                let _ = write!(
                    out,
                    "level {}, firstrightoff {}, newitemoff {}, postingoff {}",
                    f.u32(0),
                    f.u16(4),
                    f.u16(6),
                    f.u16(8)
                );
            }
            0x60 => {
                let _ = write!(out, "nintervals {}", f.u16(0));
            }
            0x70 => {
                let horizon = if v >= PgVersion::V16 { "snapshotConflictHorizon" } else { "latestRemovedXid" };
                let _ = write!(out, "{horizon} {}; ndeleted {}; nupdated {}", f.u32(0), f.u16(4), f.u16(6));
            }
            0x80 | 0x90 => {
                let _ = write!(
                    out,
                    "left {}; right {}; level {}; safexid {}:{}; leafleft {}; leafright {}; leaftopparent {}",
                    f.u32(0),
                    f.u32(4),
                    f.u32(8),
                    // safexid, a FullTransactionId: 8-byte aligned (after 4 bytes of padding),
                    // printed epoch:xid.
                    f.u32(20),
                    f.u32(16),
                    f.u32(24),
                    f.u32(28),
                    f.u32(32)
                );
            }
            0xA0 => {
                let _ = write!(out, "lev {}", f.u32(4));
            }
            0xB0 => {
                let _ =
                    write!(out, "topparent {}; leaf {}; left {}; right {}", f.u32(16), f.u32(4), f.u32(8), f.u32(12));
            }
            0xC0 => {
                let _ = write!(out, "ndeleted {}; nupdated {}", f.u16(0), f.u16(2));
            }
            0xD0 => {
                let horizon = if v >= PgVersion::V16 { "snapshotConflictHorizon" } else { "latestRemovedXid" };
                let _ =
                    write!(out, "rel {}/{}/{}; {horizon} {}:{}", f.u32(0), f.u32(4), f.u32(8), f.u32(20), f.u32(16));
            }
            0xE0 => {
                if let Some(b) = rec.block(0) {
                    let d = Fields(rec.block_data(b));
                    let _ = write!(out, "last_cleanup_num_delpages {}", d.u32(20));
                }
            }
            _ => {}
        },
        rmid::HASH => match info {
            0x00 => {
                let _ = write!(out, "num_tuples {}, fillfactor {}", g(f.f64(0)), f.u16(12));
            }
            0x10 => {
                let _ = write!(out, "bmsize {}", f.u16(0));
            }
            0x20 => {
                out.push_str("off ");
                push_dec(out, u32::from(f.u16(0)), 0);
            }
            0x30 => {
                let _ = write!(out, "bmsize {}, bmpage_found {}", f.u16(0), tf(f.bool(2)));
            }
            0x40 => {
                let flags = f.u8(8);
                let _ = write!(
                    out,
                    "new_bucket {}, meta_page_masks_updated {}, issplitpoint_changed {}",
                    f.u32(0),
                    tf(flags & 0x01 != 0),
                    tf(flags & 0x02 != 0)
                );
            }
            0x60 => {
                let _ = write!(out, "old_bucket_flag {}, new_bucket_flag {}", f.u16(0), f.u16(2));
            }
            0x70 => {
                let _ = write!(out, "ntups {}, is_primary {}", f.u16(0), tf(f.bool(2)));
            }
            0x80 => {
                let _ = write!(
                    out,
                    "prevblkno {}, nextblkno {}, ntups {}, is_primary {}",
                    f.u32(0),
                    f.u32(4),
                    f.u16(8),
                    tf(f.bool(10))
                );
            }
            0x90 => {
                let _ = write!(out, "clear_dead_marking {}, is_primary {}", tf(f.bool(0)), tf(f.bool(1)));
            }
            0xB0 => {
                let _ = write!(out, "ntuples {}", g(f.f64(0)));
            }
            0xC0 => {
                if v >= PgVersion::V16 {
                    let _ = write!(out, "ntuples {}, snapshotConflictHorizon {}", f.u16(4), f.u32(0));
                } else {
                    let _ = write!(out, "ntuples {}, latestRemovedXid {}", f.i32(4), f.u32(0));
                }
            }
            _ => {}
        },
        rmid::GIN => match info {
            0x20 => {
                let flags = f.u16(0);
                let (isdata, isleaf) = (flags & 0x01 != 0, flags & 0x02 != 0);
                text(out, &[S("isdata: "), S(tf_str(isdata)), S(" isleaf: "), S(tf_str(isleaf))]);
                if !isleaf {
                    let _ = write!(out, " children: {}/{}", f.block_id(2), f.block_id(6));
                }
                if !gin_image(rec, out) {
                    let payload = rec.block(0).map(|b| rec.block_data(b)).unwrap_or(&[]);
                    let p = Fields(payload);
                    if !isdata {
                        text(out, &[S(" isdelete: "), S(tf_str(p.bool(2)))]);
                    } else if isleaf {
                        recompress_leaf(out, payload);
                    } else {
                        let _ = write!(out, " pitem: {}-{}/{}", p.block_id(2), p.block_id(6), p.u16(10));
                    }
                }
            }
            0x30 => {
                let flags = f.u16(24);
                let _ = write!(
                    out,
                    "isrootsplit: {} isdata: {} isleaf: {}",
                    tf(flags & 0x04 != 0),
                    tf(flags & 0x01 != 0),
                    tf(flags & 0x02 != 0)
                );
            }
            0x90 if !gin_image(rec, out) => {
                let payload = rec.block(0).map(|b| rec.block_data(b)).unwrap_or(&[]);
                recompress_leaf(out, payload);
            }
            0x80 => {
                let _ = write!(out, "ndeleted: {}", f.i32(56));
            }
            _ => {}
        },
        rmid::GIST => match info {
            0x10 => {
                let horizon = if v >= PgVersion::V16 { "snapshotConflictHorizon" } else { "latestRemovedXid" };
                let _ = write!(out, "delete: {horizon} {}, nitems: {}", f.u32(0), f.u16(4));
            }
            0x20 => {
                let horizon = if v >= PgVersion::V16 { "snapshotConflictHorizon" } else { "latestRemovedXid" };
                let _ = write!(
                    out,
                    "rel {}/{}/{}; blk {}; {horizon} {}:{}",
                    f.u32(0),
                    f.u32(4),
                    f.u32(8),
                    f.u32(12),
                    f.u32(20),
                    f.u32(16)
                );
            }
            0x30 => {
                let _ = write!(out, "page_split: splits to {} pages", f.u16(18));
            }
            0x60 => {
                let _ = write!(out, "deleteXid {}:{}; downlink {}", f.u32(4), f.u32(0), f.u16(8));
            }
            _ => {}
        },
        rmid::SPGIST => match info {
            0x10 => {
                let _ = write!(
                    out,
                    "off: {}, headoff: {}, parentoff: {}, nodeI: {}",
                    f.u16(2),
                    f.u16(4),
                    f.u16(6),
                    f.u16(8)
                );
                if f.bool(0) {
                    out.push_str(" (newpage)");
                }
                if f.bool(1) {
                    out.push_str(" (nulls)");
                }
            }
            0x20 => {
                let _ = write!(out, "nmoves: {}, parentoff: {}, nodeI: {}", f.u16(0), f.u16(6), f.u16(8));
                if f.bool(2) {
                    out.push_str(" (newpage)");
                }
                if f.bool(3) {
                    out.push_str(" (replacedead)");
                }
                if f.bool(4) {
                    out.push_str(" (nulls)");
                }
            }
            0x30 => {
                let _ = write!(
                    out,
                    "off: {}, newoff: {}, parentBlk: {}, parentoff: {}, nodeI: {}",
                    f.u16(0),
                    f.u16(2),
                    f.i8(5),
                    f.u16(6),
                    f.u16(8)
                );
                if f.bool(4) {
                    out.push_str(" (newpage)");
                }
            }
            0x40 => {
                let _ = write!(out, "prefixoff: {}, postfixoff: {}", f.u16(0), f.u16(2));
                if f.bool(4) {
                    out.push_str(" (newpage)");
                }
                if f.bool(5) {
                    out.push_str(" (same)");
                }
            }
            0x50 => {
                let _ = write!(
                    out,
                    "ndelete: {}, ninsert: {}, inneroff: {}, parentoff: {}, nodeI: {}",
                    f.u16(2),
                    f.u16(4),
                    f.u16(8),
                    f.u16(14),
                    f.u16(16)
                );
                if f.bool(12) {
                    out.push_str(" (innerIsParent)");
                }
                if f.bool(11) {
                    out.push_str(" (nulls)");
                }
                if f.bool(0) {
                    out.push_str(" (isRootSplit)");
                }
            }
            0x60 => {
                let _ = write!(
                    out,
                    "ndead: {}, nplaceholder: {}, nmove: {}, nchain: {}",
                    f.u16(0),
                    f.u16(2),
                    f.u16(4),
                    f.u16(6)
                );
            }
            0x70 => {
                let _ = write!(out, "ndelete: {}", f.u16(0));
            }
            0x80 => {
                let horizon = if v >= PgVersion::V16 { "snapshotConflictHorizon" } else { "newestredirectxid" };
                let _ = write!(
                    out,
                    "ntoplaceholder: {}, firstplaceholder: {}, {horizon}: {}",
                    f.u16(0),
                    f.u16(2),
                    f.u32(4)
                );
            }
            _ => {}
        },
        rmid::BRIN => match info & XLOG_HEAP_OPMASK {
            0x00 => {
                let _ = write!(out, "v{} pagesPerRange {}", f.u16(4), f.u32(0));
            }
            0x10 => {
                let _ = write!(out, "heapBlk {} pagesPerRange {} offnum {}", f.u32(0), f.u32(4), f.u16(8));
            }
            0x20 => {
                let _ = write!(
                    out,
                    "heapBlk {} pagesPerRange {} old offnum {}, new offnum {}",
                    f.u32(4),
                    f.u32(8),
                    f.u16(0),
                    f.u16(12)
                );
            }
            0x30 => {
                let _ = write!(out, "offnum {}", f.u16(0));
            }
            0x40 => {
                let _ = write!(out, "targetBlk {}", f.u32(0));
            }
            0x50 => {
                let _ = write!(out, "pagesPerRange {}, heapBlk {}, page offset {}", f.u32(0), f.u32(4), f.u16(8));
            }
            _ => {}
        },
        _ => {}
    }
}

/// `%g` of a double, as the Hash resource manager prints tuple counts.
fn g(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
