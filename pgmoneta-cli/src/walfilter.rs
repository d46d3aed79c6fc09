//! `pgmoneta-walfilter`: removes transactions from WAL by turning their records into XLOG NOOP
//! records (same length, CRC recomputed), so that a cluster replays the rest as if they never
//! ran.
//!
//! The configuration is YAML:
//!
//! ```yaml
//! source_dir: /srv/wal/in
//! target_dir: /srv/wal/out
//! rules:
//!   - xids: [1234, 1240]
//!   - operations: [DELETE]
//! ```
//!
//! `xids` removes every record of those transactions; `operations: [DELETE]` removes every
//! transaction that deleted a heap tuple, whole (all its records). `target_dir` is emptied and
//! receives every segment, filtered or not, under its plain name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use pgmoneta_core::{Lsn, WalSegmentSize};
use pgmoneta_wire::wal::{record_crc, DecodedRecord, WalDecoder, XLOG_BLCKSZ};

use crate::walinfo::{segments, wal_name, Reader};

/// What to remove, and where from and to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// The WAL to read.
    pub source_dir: PathBuf,
    /// Where the filtered WAL goes (emptied first).
    pub target_dir: PathBuf,
    /// Transactions to remove.
    pub xids: BTreeSet<u32>,
    /// Remove every transaction that deleted heap tuples.
    pub delete: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterReport {
    /// Segments written.
    pub files: usize,
    /// Records read.
    pub records: usize,
    /// Records turned into XLOG NOOP.
    pub removed: usize,
    /// The transactions removed.
    pub xids: BTreeSet<u32>,
}

fn strip(v: &str) -> &str {
    v.trim().trim_matches('"').trim_matches('\'')
}

/// Parses the YAML configuration (the subset walfilter uses: `key: value`, and `rules` as a
/// list of `xids` / `operations`, each an inline `[a, b]` or a block `- a` list).
///
/// # Errors
/// A line that does not parse, an unknown key or operation, a missing directory.
pub fn parse_config(text: &str) -> Result<FilterConfig> {
    let mut c = FilterConfig::default();
    let mut in_rules = false;
    let mut current: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.split('#').next().unwrap_or("").trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        let t = line.trim();
        if !indented {
            in_rules = false;
            current = None;
            let (k, v) = t.split_once(':').ok_or_else(|| anyhow!("line {line_no}: expected key: value"))?;
            match k.trim() {
                "source_dir" => c.source_dir = PathBuf::from(strip(v)),
                "target_dir" => c.target_dir = PathBuf::from(strip(v)),
                "configuration_file" => {}
                "rules" => in_rules = true,
                other => bail!("line {line_no}: unknown key {other:?}"),
            }
            continue;
        }
        if !in_rules {
            bail!("line {line_no}: unexpected indented line");
        }
        let item = t.strip_prefix('-').map(str::trim);
        let entry = item.unwrap_or(t);
        if let Some((k, v)) = entry.split_once(':') {
            let k = k.trim().to_owned();
            if !matches!(k.as_str(), "xids" | "operations") {
                bail!("line {line_no}: unknown rule {k:?} (expected xids or operations)");
            }
            let v = v.trim();
            if v.is_empty() {
                current = Some(k);
                continue;
            }
            let list = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .ok_or_else(|| anyhow!("line {line_no}: expected a [list]"))?;
            for value in list.split(',').map(strip).filter(|v| !v.is_empty()) {
                add(&mut c, &k, value, line_no)?;
            }
            current = None;
        } else if let (Some(k), Some(value)) = (&current, item) {
            add(&mut c, &k.clone(), strip(value), line_no)?;
        } else {
            bail!("line {line_no}: cannot read {t:?}");
        }
    }
    if c.source_dir.as_os_str().is_empty() || c.target_dir.as_os_str().is_empty() {
        bail!("source_dir and target_dir are required");
    }
    Ok(c)
}

fn add(c: &mut FilterConfig, rule: &str, value: &str, line_no: usize) -> Result<()> {
    match rule {
        "xids" => {
            c.xids.insert(value.parse().map_err(|_| anyhow!("line {line_no}: xid {value:?} is not a number"))?);
        }
        _ => match value.to_ascii_uppercase().as_str() {
            "DELETE" => c.delete = true,
            other => bail!("line {line_no}: unknown operation {other:?} (DELETE is supported)"),
        },
    }
    Ok(())
}

/// The position of byte `k` of the record at `lsn`, page headers skipped.
fn byte_lsn(lsn: u64, mut k: u64, segment: u64) -> u64 {
    let mut pos = lsn;
    loop {
        let room = XLOG_BLCKSZ - pos % XLOG_BLCKSZ;
        if k < room {
            return pos + k;
        }
        k -= room;
        pos += room;
        pos += if pos % segment == 0 { 40 } else { 24 };
    }
}

const RM_XLOG: u8 = 0;
const XLOG_NOOP: u8 = 0x20;
const RM_HEAP: u8 = 10;

/// Turns `rec` into an XLOG NOOP in `buf` (which starts at `start`).
fn to_noop(buf: &mut [u8], start: u64, segment: u64, rec: &DecodedRecord) {
    let mut raw = rec.raw.to_vec();
    raw[16] = XLOG_NOOP;
    raw[17] = RM_XLOG;
    let crc = record_crc(&raw).to_le_bytes();
    raw[20..24].copy_from_slice(&crc);
    for k in 16..24u64 {
        let at = (byte_lsn(rec.lsn.0, k, segment) - start) as usize;
        buf[at] = raw[k as usize];
    }
}

/// Contiguous segments of one timeline, as one buffer.
struct Run {
    start: u64,
    size: WalSegmentSize,
    /// Each segment's plain name and length, in order.
    files: Vec<(String, usize)>,
    bytes: Vec<u8>,
}

/// Filters the WAL as configured.
///
/// # Errors
/// Unreadable or damaged input, a target that cannot be written.
pub fn run(config: &FilterConfig, master_key: Option<PathBuf>) -> Result<FilterReport> {
    let mut reader = Reader { key: None, key_file: master_key };
    let files = reader.collect(&config.source_dir)?;
    let segs = segments(files)?;
    let mut report = FilterReport::default();
    // Contiguous runs of segments of one timeline.
    let mut runs: Vec<Run> = Vec::new();
    for (s, size) in segs {
        let contiguous = runs.last().is_some_and(|r| r.size == size && r.start + r.bytes.len() as u64 == s.start.0);
        if !contiguous {
            runs.push(Run { start: s.start.0, size, files: Vec::new(), bytes: Vec::new() });
        }
        let run = runs.last_mut().expect("pushed above");
        let plain = wal_name(&s.name).unwrap_or_else(|| s.name.clone());
        run.files.push((plain, s.bytes.len()));
        run.bytes.extend_from_slice(&s.bytes);
    }
    let mut decoded: Vec<Vec<DecodedRecord>> = Vec::new();
    for run in &runs {
        let mut d = WalDecoder::new(Lsn(run.start), None, run.size);
        d.feed(&run.bytes);
        let mut records = Vec::new();
        while let Some(r) = d.next_record().with_context(|| format!("decoding {}", config.source_dir.display()))? {
            records.push(r);
        }
        decoded.push(records);
    }
    let mut remove = config.xids.clone();
    if config.delete {
        for r in decoded.iter().flatten() {
            if r.rmid == RM_HEAP && r.record_info() & 0x70 == 0x10 {
                let data = r.main_data();
                let xmax = data.get(..4).map_or(r.xid, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                remove.insert(if xmax != 0 { xmax } else { r.xid });
            }
        }
    }
    for (run, records) in runs.iter_mut().zip(&decoded) {
        for r in records {
            report.records += 1;
            let top = r.toplevel_xid.unwrap_or(r.xid);
            if r.xid != 0 && (remove.contains(&r.xid) || remove.contains(&top)) {
                to_noop(&mut run.bytes, run.start, run.size.bytes(), r);
                report.removed += 1;
                report.xids.insert(top);
            }
        }
    }
    write_target(&config.target_dir, &runs)?;
    report.files = runs.iter().map(|r| r.files.len()).sum();
    Ok(report)
}

fn write_target(dir: &Path, runs: &[Run]) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    pgmoneta_storage::fsio::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for run in runs {
        let mut at = 0;
        for (name, len) in &run.files {
            pgmoneta_storage::fsio::write_file(&dir.join(name), &run.bytes[at..at + len])
                .with_context(|| format!("writing {}", dir.join(name).display()))?;
            at += len;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inline_and_block_rules() {
        let c = parse_config(
            "source_dir: /in\ntarget_dir: '/out'\nconfiguration_file: /etc/x.conf\nrules:\n  - xids: [12, 13]\n  - operations:\n      - delete\n  - xids:\n      - 99  # a comment\n",
        )
        .unwrap();
        assert_eq!(c.source_dir, PathBuf::from("/in"));
        assert_eq!(c.target_dir, PathBuf::from("/out"));
        assert_eq!(c.xids, BTreeSet::from([12, 13, 99]));
        assert!(c.delete);
        assert!(parse_config("source_dir: /a\n").unwrap_err().to_string().contains("required"));
        assert!(parse_config("source_dir: /a\ntarget_dir: /b\nrules:\n  - operations: [TRUNCATE]\n")
            .unwrap_err()
            .to_string()
            .contains("TRUNCATE"));
        assert!(parse_config("source: /a\n").unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn maps_record_bytes_past_page_headers() {
        let seg = 16 << 20;
        // A record starting 8 bytes before a page end: its byte 8 is after the next header.
        assert_eq!(byte_lsn(0x0100_2000 - 8, 7, seg), 0x0100_2000 - 1);
        assert_eq!(byte_lsn(0x0100_2000 - 8, 8, seg), 0x0100_2000 + 24);
        // At a segment boundary the long header is skipped.
        assert_eq!(byte_lsn(0x0200_0000 - 8, 8, seg), 0x0200_0000 + 40);
    }
}
