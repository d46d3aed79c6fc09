//! WAL summaries for incremental backups of PostgreSQL 14 to 16: which blocks of which
//! relation forks changed between two positions, read from the server's WAL in the archive.
//!
//! A summary is stored under `<server>/summary/` named by its range (32 hexadecimal digits:
//! start and end LSN, high and low words), in the block reference table format PostgreSQL 17
//! uses for its own WAL summaries: a magic number, one entry per relation fork (locator, fork,
//! limit block, block chunks as offset arrays or bitmaps), an all-zero entry, then a CRC32C of
//! everything before it. A summary that fails its checksum is an error, never read as "no
//! change". Summaries are kept and reused: a later range starting where a stored one starts
//! reads it instead of the WAL.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use pgmoneta_compress::Algorithm;
use pgmoneta_core::{Lsn, TimelineId, WalSegment, WalSegmentSize};
use pgmoneta_crypto::{crc32c, Cipher, MasterKey, AES_SUFFIX};
use pgmoneta_wire::wal::summary::{BlockRefTable, RelFork};
use pgmoneta_wire::wal::WalDecoder;

use crate::error::{Result, StorageError};
use crate::incremental::PlainReader;
use crate::store::{join, EntryKind, Store};

/// The magic number of a serialized block reference table.
pub const BLOCKREFTABLE_MAGIC: u32 = 0x652b_137b;
/// Blocks per chunk of an entry.
const BLOCKS_PER_CHUNK: u32 = 1 << 16;
/// A chunk with this many offsets is stored as a bitmap.
const MAX_ENTRIES_PER_CHUNK: usize = (BLOCKS_PER_CHUNK / 16) as usize;
/// PostgreSQL's `InvalidBlockNumber`: no limit.
const INVALID_BLOCK: u32 = u32::MAX;

/// The directory of a server's summaries.
pub fn summary_dir(server: &str) -> String {
    join(&[server, "summary"])
}

/// The file name of the summary of `start..end`.
pub fn summary_name(start: Lsn, end: Lsn) -> String {
    format!("{:08X}{:08X}{:08X}{:08X}", start.hi(), start.lo(), end.hi(), end.lo())
}

fn parse_name(name: &str) -> Option<(Lsn, Lsn)> {
    if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |i: usize| u64::from_str_radix(&name[i..i + 8], 16).ok();
    Some((Lsn(word(0)? << 32 | word(8)?), Lsn(word(16)? << 32 | word(24)?)))
}

/// A table in PostgreSQL's serialized block reference table format.
pub fn serialize(table: &BlockRefTable) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&BLOCKREFTABLE_MAGIC.to_le_bytes());
    for (fork, changes) in table.iter() {
        // Offsets per chunk.
        let mut chunks: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
        for &b in &changes.blocks {
            chunks.entry(b / BLOCKS_PER_CHUNK).or_default().push((b % BLOCKS_PER_CHUNK) as u16);
        }
        let nchunks = chunks.keys().next_back().map_or(0, |&c| c + 1);
        for v in
            [fork.spc, fork.db, fork.rel, u32::from(fork.fork), changes.limit_block.unwrap_or(INVALID_BLOCK), nchunks]
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let usage = |c: u32| chunks.get(&c).map_or(0, |o| o.len().min(MAX_ENTRIES_PER_CHUNK) as u16);
        for c in 0..nchunks {
            out.extend_from_slice(&usage(c).to_le_bytes());
        }
        for offsets in chunks.values() {
            if offsets.len() < MAX_ENTRIES_PER_CHUNK {
                for o in offsets {
                    out.extend_from_slice(&o.to_le_bytes());
                }
            } else {
                let mut bitmap = vec![0u16; MAX_ENTRIES_PER_CHUNK];
                for &o in offsets {
                    bitmap[usize::from(o / 16)] |= 1 << (o % 16);
                }
                for w in bitmap {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
    }
    out.extend_from_slice(&[0u8; 24]);
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a serialized block reference table; `what` names it in errors.
///
/// # Errors
/// [`StorageError::Corrupt`] for a wrong magic number or checksum, or a truncated or
/// malformed entry.
pub fn deserialize(data: &[u8], what: &str) -> Result<BlockRefTable> {
    let bad = |why: String| StorageError::corrupt(what, why);
    if data.len() < 4 + 24 + 4 {
        return Err(bad(format!("{} bytes is too short for a WAL summary", data.len())));
    }
    let (body, tail) = data.split_at(data.len() - 4);
    let stored = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
    if crc32c(body) != stored {
        return Err(bad("the WAL summary's checksum does not match its contents".into()));
    }
    let mut pos = 0usize;
    let u32_at = |pos: &mut usize| -> Result<u32> {
        let b = body.get(*pos..*pos + 4).ok_or_else(|| bad(format!("truncated at byte {pos}")))?;
        *pos += 4;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    if u32_at(&mut pos)? != BLOCKREFTABLE_MAGIC {
        return Err(bad("not a WAL summary (wrong magic number)".into()));
    }
    let mut table = BlockRefTable::default();
    loop {
        let mut words = [0u32; 6];
        for w in &mut words {
            *w = u32_at(&mut pos)?;
        }
        if words.iter().all(|&w| w == 0) {
            break;
        }
        let [spc, db, rel, fork, limit, nchunks] = words;
        if fork > 3 || nchunks > (u32::MAX / BLOCKS_PER_CHUNK) + 1 {
            return Err(bad(format!("an entry at byte {} has fork {fork} and {nchunks} chunks", pos - 24)));
        }
        let key = RelFork { spc, db, rel, fork: fork as u8 };
        if limit != INVALID_BLOCK {
            table.truncate(key, limit);
        }
        let usage_bytes = body
            .get(pos..pos + 2 * nchunks as usize)
            .ok_or_else(|| bad(format!("truncated chunk list at byte {pos}")))?;
        let usage: Vec<usize> =
            usage_bytes.chunks_exact(2).map(|c| usize::from(u16::from_le_bytes([c[0], c[1]]))).collect();
        pos += 2 * nchunks as usize;
        for (chunk, &n) in usage.iter().enumerate() {
            if n > MAX_ENTRIES_PER_CHUNK {
                return Err(bad(format!("chunk {chunk} of relation {rel} claims {n} entries")));
            }
            let raw = body.get(pos..pos + 2 * n).ok_or_else(|| bad(format!("truncated chunk at byte {pos}")))?;
            pos += 2 * n;
            let base = chunk as u32 * BLOCKS_PER_CHUNK;
            let words = raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
            if n == MAX_ENTRIES_PER_CHUNK {
                for (i, w) in words.enumerate() {
                    for bit in 0..16 {
                        if w & (1 << bit) != 0 {
                            table.mark_block(key, base + i as u32 * 16 + bit);
                        }
                    }
                }
            } else {
                for o in words {
                    table.mark_block(key, base + u32::from(o));
                }
            }
        }
    }
    if pos != body.len() {
        return Err(bad(format!("{} bytes after the last entry", body.len() - pos)));
    }
    Ok(table)
}

/// Where to read WAL from and how long to wait for it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SummaryOptions {
    /// The server.
    pub server: String,
    /// The timeline the range is on.
    pub timeline: u32,
    /// The server's WAL segment size.
    pub segment_size: WalSegmentSize,
    /// The cipher of encrypted archived segments.
    pub cipher: Option<Cipher>,
    /// How long to wait for WAL the archive does not hold yet (the receiver may be behind).
    pub wait: Duration,
}

impl SummaryOptions {
    /// Options for `server`'s archive, on `timeline`, waiting up to a minute for WAL.
    pub fn new(server: &str, timeline: u32, segment_size: WalSegmentSize) -> SummaryOptions {
        SummaryOptions {
            server: server.to_owned(),
            timeline,
            segment_size,
            cipher: None,
            wait: Duration::from_secs(60),
        }
    }
}

/// The changes between `from` and `to` (record positions on one timeline): stored summaries
/// are used where one starts at the position reached, the WAL in the archive is read for the
/// rest, and what was read is stored as a new summary.
///
/// # Errors
/// A stored summary that is damaged; a WAL segment missing from the archive, damaged or
/// undecodable; WAL up to `to` not archived within the wait; storage failures.
pub fn summarize(
    store: &dyn Store,
    options: &SummaryOptions,
    key: Option<&MasterKey>,
    from: Lsn,
    to: Lsn,
) -> Result<BlockRefTable> {
    if to < from {
        return Err(StorageError::Invalid(format!("summary range {from} to {to} is backwards")));
    }
    let dir = summary_dir(&options.server);
    let stored: Vec<(Lsn, Lsn, String)> = store
        .list(&dir)?
        .into_iter()
        .filter(|e| e.kind == EntryKind::File)
        .filter_map(|e| parse_name(&e.name).map(|(s, en)| (s, en, e.name)))
        .collect();
    let mut table = BlockRefTable::default();
    let mut pos = from;
    while pos < to {
        let reuse = stored.iter().filter(|(s, e, _)| *s == pos && *e <= to && *e > pos).max_by_key(|(_, e, _)| *e);
        if let Some((_, end, name)) = reuse {
            let path = join(&[&dir, name]);
            table.merge(&deserialize(&store.read(&path)?, &path)?);
            pos = *end;
            continue;
        }
        let end = stored.iter().map(|(s, _, _)| *s).filter(|s| *s > pos && *s < to).min().unwrap_or(to);
        let part = summarize_wal_waiting(store, options, key, pos, end)?;
        store.create_dir(&dir)?;
        store.write(&join(&[&dir, &summary_name(pos, end)]), &serialize(&part))?;
        table.merge(&part);
        pos = end;
    }
    Ok(table)
}

/// Removes the summaries that end at or before `lsn` (the start of the oldest backup kept: no
/// incremental backup can need changes from before it). Returns how many were removed.
///
/// # Errors
/// Storage failures.
pub fn prune_before(store: &dyn Store, server: &str, lsn: Lsn) -> Result<usize> {
    let dir = summary_dir(server);
    let mut removed = 0;
    for e in store.list(&dir)? {
        if let Some((_, end)) = parse_name(&e.name) {
            if end <= lsn {
                store.remove(&join(&[&dir, &e.name]))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Why reading WAL stopped short.
enum Short {
    /// The archive does not reach the end yet.
    NotYet(String),
    Failed(StorageError),
}

fn summarize_wal_waiting(
    store: &dyn Store,
    options: &SummaryOptions,
    key: Option<&MasterKey>,
    from: Lsn,
    to: Lsn,
) -> Result<BlockRefTable> {
    let deadline = Instant::now() + options.wait;
    loop {
        match summarize_wal(store, options, key, from, to) {
            Ok(t) => return Ok(t),
            Err(Short::Failed(e)) => return Err(e),
            Err(Short::NotYet(why)) => {
                if Instant::now() >= deadline {
                    return Err(StorageError::NotFound(format!(
                        "the WAL archive of {} does not reach {to} after {:?}: {why}",
                        options.server, options.wait
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The archived file holding segment `name`: a complete one, or the `.partial` being received
/// (`true`). Found by its possible stored names (plain, each compression, with and without
/// encryption) rather than by listing the archive, so a look-up costs the same whatever the
/// archive's size.
pub(crate) fn locate_segment(store: &dyn Store, server: &str, name: &str) -> Option<(String, bool)> {
    let dir = crate::layout::wal_dir(server);
    let compressions = std::iter::once("").chain(Algorithm::COMPRESSING.iter().map(|a| a.suffix()));
    for compression in compressions {
        for encryption in ["", AES_SUFFIX] {
            let path = join(&[&dir, &format!("{name}{compression}{encryption}")]);
            if store.exists(&path) {
                return Some((path, false));
            }
        }
    }
    let partial = join(&[&dir, &format!("{name}.partial")]);
    store.exists(&partial).then_some((partial, true))
}

/// Whether the archive of `server` holds a segment after `name` (on its timeline or a later one).
fn newer_segment_archived(store: &dyn Store, server: &str, name: &str) -> bool {
    let Ok(entries) = store.list(&crate::layout::wal_dir(server)) else { return false };
    entries.iter().any(|e| {
        let n = e.name.get(..24).unwrap_or_default();
        n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()) && n[8..] > name[8..]
    })
}

/// Opens the archived file holding segment `name`. The archive changes under the reader (a
/// `.partial` completes, a segment is compressed and its plain file removed): a file gone
/// between listing and opening is looked up again.
fn open_segment<'k>(
    store: &dyn Store,
    options: &SummaryOptions,
    key: Option<&'k MasterKey>,
    name: &str,
) -> Result<Option<(String, bool, PlainReader<'k>)>> {
    let mut attempts = 0;
    loop {
        let Some((stored, partial)) = locate_segment(store, &options.server, name) else { return Ok(None) };
        match PlainReader::open(store, &stored, options.cipher, key) {
            Ok(r) => return Ok(Some((stored, partial, r))),
            Err(StorageError::NotFound(_)) if attempts < 5 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

fn summarize_wal(
    store: &dyn Store,
    options: &SummaryOptions,
    key: Option<&MasterKey>,
    from: Lsn,
    to: Lsn,
) -> std::result::Result<BlockRefTable, Short> {
    let size = options.segment_size;
    let mut table = BlockRefTable::default();
    // Read from the start of `from`'s page: its header tells the version, which the block
    // images of the records before the next page need.
    let mut decoder = WalDecoder::from_page_start(from, None, size);
    let mut segment = WalSegment::containing(TimelineId(options.timeline), from, size);
    let mut skip = decoder.fed_until().0 - segment.start_lsn(size).0;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let name = segment.file_name(size);
        let Some((stored, partial, mut reader)) = open_segment(store, options, key, &name).map_err(Short::Failed)?
        else {
            // Missing with a newer segment archived, it never comes: a gap. Missing at the
            // archive's end, the receiver has not started it yet. The lookup tries one name
            // after another while the segment may be renamed from `.partial` and sealed, so
            // it can miss a segment completing under it; once a newer one exists, this one is
            // complete and stays under one of its names, and a second lookup is the answer.
            if newer_segment_archived(store, &options.server, &name)
                && locate_segment(store, &options.server, &name).is_none()
            {
                return Err(Short::Failed(StorageError::NotFound(format!(
                    "WAL segment {name}, needed for the changes from {from} to {to}, is not in the archive of {}",
                    options.server
                ))));
            }
            return Err(Short::NotYet(format!("WAL segment {name} is not received yet")));
        };
        let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
            .map_err(|e| Short::Failed(StorageError::corrupt(&stored, e.to_string())))?;
        if skipped < skip {
            return Err(Short::Failed(StorageError::corrupt(&stored, "shorter than a WAL segment")));
        }
        skip = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Short::Failed(StorageError::corrupt(&stored, e.to_string()))),
            };
            decoder.feed(&buf[..n]);
            loop {
                match decoder.next_record() {
                    Ok(Some(rec)) => {
                        if rec.lsn >= to {
                            return Ok(table);
                        }
                        table.add_record(&rec);
                        if decoder.next_lsn() >= to {
                            return Ok(table);
                        }
                    }
                    Ok(None) => break,
                    // The unwritten end of a segment being received.
                    Err(e) if partial => return Err(Short::NotYet(format!("{stored}: {e}"))),
                    Err(e) => {
                        return Err(Short::Failed(StorageError::corrupt(
                            &stored,
                            format!("decoding WAL for the changes from {from} to {to}: {e}"),
                        )))
                    }
                }
            }
        }
        if partial {
            return Err(Short::NotYet(format!("{stored} ends before {to}")));
        }
        segment = segment.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fork(rel: u32, fork: u8) -> RelFork {
        RelFork { spc: 1663, db: 5, rel, fork }
    }

    #[test]
    fn tables_round_trip_with_arrays_bitmaps_and_limits() {
        let mut t = BlockRefTable::default();
        t.mark_block(fork(16384, 0), 3);
        t.mark_block(fork(16384, 0), 70_000);
        for b in 0..5000 {
            t.mark_block(fork(16385, 0), 131_072 + b * 2);
        }
        t.truncate(fork(16386, 2), 0);
        t.truncate(fork(16384, 0), 10);
        let bytes = serialize(&t);
        assert_eq!(&bytes[..4], &BLOCKREFTABLE_MAGIC.to_le_bytes());
        assert_eq!(deserialize(&bytes, "s").unwrap(), t);
        assert_eq!(deserialize(&serialize(&BlockRefTable::default()), "s").unwrap(), BlockRefTable::default());
    }

    #[test]
    fn a_damaged_summary_is_an_error_naming_it() {
        let mut t = BlockRefTable::default();
        t.mark_block(fork(1, 0), 1);
        let mut bytes = serialize(&t);
        bytes[10] ^= 0x40;
        let e = deserialize(&bytes, "primary/summary/X").unwrap_err().to_string();
        assert!(e.contains("primary/summary/X") && e.contains("checksum"), "{e}");
        let e = deserialize(&bytes[..8], "s").unwrap_err().to_string();
        assert!(e.contains("too short"), "{e}");
    }

    #[test]
    fn pruning_keeps_what_a_kept_backup_may_need() {
        let store = crate::store::MemoryStore::new();
        store.create_dir("p/summary").unwrap();
        for (a, b) in [(0x100, 0x200), (0x200, 0x300), (0x300, 0x400)] {
            store.write(&format!("p/summary/{}", summary_name(Lsn(a), Lsn(b))), b"x").unwrap();
        }
        assert_eq!(prune_before(&store, "p", Lsn(0x300)).unwrap(), 2);
        assert_eq!(store.list("p/summary").unwrap().len(), 1);
    }

    #[test]
    fn names_carry_the_range() {
        let (a, b) = (Lsn(0x1_0000_0028), Lsn(0x1_2000_0000));
        let n = summary_name(a, b);
        assert_eq!(n, "00000001000000280000000120000000");
        assert_eq!(parse_name(&n), Some((a, b)));
        assert_eq!(parse_name("nope"), None);
    }
}
