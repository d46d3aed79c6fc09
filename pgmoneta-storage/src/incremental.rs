//! PostgreSQL's incremental file format, and combining a chain of backups.
//!
//! An incremental backup stores a relation segment that changed little since its parent as
//! `INCREMENTAL.<name>`: a header (magic `0xd3ae1f0d`, the number of blocks, the truncation
//! block length, the block numbers; padded to a whole block when it lists any block), then the
//! listed blocks. PostgreSQL 17 sends files in this format; backups of 14 to 16 are written in it
//! too, so one combine path serves every version.
//!
//! Combining takes the versions of one file from the newest backup back towards the full
//! backup at the root of the chain. Block `b` of the result comes from the newest version that
//! lists it; a version whose truncation block length is at or below `b` (the relation was
//! truncated, created or extended since) ends the search with zeros, and a full version ends
//! it with its own block. The result is either a plain file (a restore, or a roll-up into a
//! backup that becomes full) or, when the chain does not reach a full backup, a new
//! incremental file relative to the oldest backup still needed (a roll-up of two incrementals).
//!
//! Every source is read forward once, in block order, so memory is bounded by a block map of
//! the file (at most one entry per block of a 1 GB segment) whatever the file's size. A source
//! whose blocks are not listed in ascending order is first decoded into a temporary file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use pgmoneta_compress::Decoder;
use pgmoneta_crypto::{Cipher, DecryptReader, MasterKey};

use crate::error::{Result, StorageError};
use crate::store::Store;
use crate::stored::stored_form;

/// The magic number that starts an incremental file.
pub const INCREMENTAL_MAGIC: u32 = 0xd3ae_1f0d;
/// PostgreSQL's block size.
pub const BLCKSZ: u64 = 8192;
/// The file name prefix of an incremental file.
pub const INCREMENTAL_PREFIX: &str = "INCREMENTAL.";
/// More blocks than any relation segment holds (1 GB segments hold 131072): a header listing
/// more is damaged.
const MAX_BLOCKS: u32 = 1 << 20;

/// The plain name of a file (`16384` for `INCREMENTAL.16384`) and whether it is incremental.
pub fn split_name(name: &str) -> (&str, bool) {
    match name.strip_prefix(INCREMENTAL_PREFIX) {
        Some(plain) => (plain, true),
        None => (name, false),
    }
}

/// The incremental form of a path: `base/5/INCREMENTAL.16384` for `base/5/16384`.
pub fn incremental_path(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{INCREMENTAL_PREFIX}{name}"),
        None => format!("{INCREMENTAL_PREFIX}{path}"),
    }
}

/// The plain form of a path: `base/5/16384` for `base/5/INCREMENTAL.16384`; `None` when the
/// path is not incremental.
pub fn plain_path(path: &str) -> Option<String> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, path),
    };
    let plain = name.strip_prefix(INCREMENTAL_PREFIX)?;
    Some(match dir {
        Some(d) => format!("{d}/{plain}"),
        None => plain.to_owned(),
    })
}

/// The header of an incremental file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncrementalHeader {
    /// Blocks at or past this number that the file does not hold are zeros, never taken from
    /// an older backup.
    pub truncation_block_length: u32,
    /// The block numbers the file holds, in the order of their data.
    pub blocks: Vec<u32>,
}

impl IncrementalHeader {
    /// Bytes of the header, padding included.
    pub fn header_len(&self) -> u64 {
        let raw = 12 + 4 * self.blocks.len() as u64;
        if self.blocks.is_empty() {
            raw
        } else {
            raw.div_ceil(BLCKSZ) * BLCKSZ
        }
    }

    /// Size of the incremental file itself.
    pub fn file_size(&self) -> u64 {
        self.header_len() + self.blocks.len() as u64 * BLCKSZ
    }

    /// Blocks of the file once combined: the truncation length, or past the highest block held.
    pub fn combined_blocks(&self) -> u64 {
        let highest = self.blocks.iter().max().map_or(0, |&b| u64::from(b) + 1);
        highest.max(u64::from(self.truncation_block_length))
    }

    /// Size of the file once combined.
    pub fn combined_size(&self) -> u64 {
        self.combined_blocks() * BLCKSZ
    }

    fn ascending(&self) -> bool {
        self.blocks.windows(2).all(|w| w[0] < w[1])
    }

    /// Reads a header (and its padding) from the start of an incremental file.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] naming `what` for a wrong magic number, an impossible block
    /// count or a truncated header.
    pub fn read(r: &mut dyn Read, what: &str) -> Result<IncrementalHeader> {
        let bad = |why: String| StorageError::corrupt(what, why);
        let mut fixed = [0u8; 12];
        r.read_exact(&mut fixed).map_err(|e| bad(format!("reading the incremental header: {e}")))?;
        let word = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
        if word(0) != INCREMENTAL_MAGIC {
            return Err(bad(format!("not an incremental file (magic {:#010x})", word(0))));
        }
        let (count, truncation_block_length) = (word(4), word(8));
        if count > MAX_BLOCKS || truncation_block_length > MAX_BLOCKS {
            return Err(bad(format!(
                "incremental header lists {count} blocks with truncation length {truncation_block_length}"
            )));
        }
        let mut raw = vec![0u8; count as usize * 4];
        r.read_exact(&mut raw).map_err(|e| bad(format!("reading the incremental block list: {e}")))?;
        let blocks: Vec<u32> =
            raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        if let Some(b) = blocks.iter().find(|&&b| b >= MAX_BLOCKS) {
            return Err(bad(format!("incremental header lists block {b}, past any relation segment")));
        }
        let header = IncrementalHeader { truncation_block_length, blocks };
        let padding = header.header_len() - 12 - raw.len() as u64;
        let skipped = io::copy(&mut r.take(padding), &mut io::sink()).map_err(|e| bad(e.to_string()))?;
        if skipped != padding {
            return Err(bad("the incremental header is truncated".into()));
        }
        Ok(header)
    }

    /// The header's bytes, padding included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() as usize);
        out.extend_from_slice(&INCREMENTAL_MAGIC.to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.truncation_block_length.to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out.resize(self.header_len() as usize, 0);
        out
    }
}

/// Why an incremental file's header could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// More blocks than a relation segment holds.
    #[error("incremental header lists {0} blocks")]
    TooManyBlocks(u32),
    /// The file does not start with the incremental magic number.
    #[error("not an incremental file (magic {0:#010x})")]
    BadMagic(u32),
    /// The file ends before its header does.
    #[error("the file ends inside its incremental header")]
    Truncated,
}

/// Reads the header of an incremental file from its first bytes as they stream past (a file
/// being received), without holding more than the header.
#[derive(Debug, Default)]
pub struct HeaderProbe {
    buf: Vec<u8>,
    result: Option<std::result::Result<IncrementalHeader, HeaderError>>,
}

impl HeaderProbe {
    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, mut data: &[u8]) {
        while self.result.is_none() && !data.is_empty() {
            let needed = if self.buf.len() < 12 {
                12
            } else {
                let count = u32::from_le_bytes(self.buf[4..8].try_into().expect("4 bytes"));
                if count > MAX_BLOCKS {
                    self.result = Some(Err(HeaderError::TooManyBlocks(count)));
                    return;
                }
                12 + 4 * count as usize
            };
            let take = (needed - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < 12 {
                continue;
            }
            let word = |i: usize| u32::from_le_bytes(self.buf[i..i + 4].try_into().expect("4 bytes"));
            if word(0) != INCREMENTAL_MAGIC {
                self.result = Some(Err(HeaderError::BadMagic(word(0))));
                return;
            }
            let count = word(4) as usize;
            if count <= MAX_BLOCKS as usize && self.buf.len() == 12 + 4 * count {
                let blocks = self.buf[12..]
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                self.result = Some(Ok(IncrementalHeader { truncation_block_length: word(8), blocks }));
                self.buf = Vec::new();
            }
        }
    }

    /// The header, once whole.
    ///
    /// # Errors
    /// The file ended before its header did, or the header is not an incremental one.
    pub fn finish(self) -> std::result::Result<IncrementalHeader, HeaderError> {
        self.result.unwrap_or(Err(HeaderError::Truncated))
    }
}

/// The decrypted, decompressed bytes of a stored file, read forward.
pub(crate) struct PlainReader<'k> {
    inner: Box<dyn Read + 'k>,
    what: String,
}

impl<'k> PlainReader<'k> {
    /// Opens `stored` (its suffixes say how it is stored).
    pub(crate) fn open(
        store: &dyn Store,
        stored: &str,
        cipher: Option<Cipher>,
        key: Option<&'k MasterKey>,
    ) -> Result<PlainReader<'k>> {
        let name = stored.rsplit('/').next().unwrap_or(stored);
        let (_, algorithm, encrypted) = stored_form(name);
        let raw = store.open(stored)?;
        let inner: Box<dyn Read + 'k> = if encrypted {
            let key =
                key.ok_or_else(|| StorageError::Invalid(format!("{stored} is encrypted and no master key was given")))?;
            let dec = DecryptReader::new(key, cipher.unwrap_or(Cipher::Aes256Gcm), raw, stored);
            Box::new(
                Decoder::new(algorithm, BufReader::with_capacity(256 << 10, dec))
                    .map_err(|e| StorageError::corrupt(stored, e.to_string()))?,
            )
        } else {
            Box::new(
                Decoder::new(algorithm, BufReader::with_capacity(256 << 10, raw))
                    .map_err(|e| StorageError::corrupt(stored, e.to_string()))?,
            )
        };
        Ok(PlainReader { inner, what: stored.to_owned() })
    }

    /// Reads the rest, which checks the authentication tag of an encrypted file and the
    /// integrity of a compressed one.
    pub(crate) fn finish(mut self) -> Result<()> {
        io::copy(&mut self.inner, &mut io::sink())
            .map(drop)
            .map_err(|e| StorageError::corrupt(&self.what, e.to_string()))
    }
}

impl Read for PlainReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// One version of a file in a chain, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainVersion {
    /// The backup's label, for messages.
    pub label: String,
    /// The stored file (repository path), `None` when this backup does not hold the file.
    pub stored: Option<String>,
    /// Whether the stored file is in the incremental format.
    pub incremental: bool,
    /// The backup's encryption.
    pub cipher: Option<Cipher>,
}

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CombineOutput {
    /// A plain file: the chain must end with a full version.
    Full,
    /// An incremental file relative to the backup before the oldest version given.
    Incremental,
}

/// Where one block of the result comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The `index`-th block of version `version` (a block number for a full version, a
    /// position in the block list for an incremental one).
    Block { version: usize, index: u64 },
    /// Zeros, explicitly (the relation was cut below it in some version).
    Zero,
    /// Past the newest version's truncation length and not held: zeros, implied.
    Beyond,
    /// Not in any version given: an older backup has it.
    Older,
}

enum Opened<'k> {
    Full { reader: PlainReader<'k> },
    Incremental { reader: PlainReader<'k>, header: IncrementalHeader, positions: HashMap<u32, u64> },
    Missing,
}

/// A forward reader of one source's blocks; a source read out of order is first decoded into
/// a temporary file.
enum BlockReader<'k> {
    /// `strict`: the source must hold every block asked for (an incremental file lists its
    /// blocks; a full file may be shorter than the result, which is then zeros).
    Forward {
        reader: PlainReader<'k>,
        next: u64,
        strict: bool,
    },
    Spilled {
        file: File,
        path: PathBuf,
        reader: PlainReader<'k>,
    },
}

impl BlockReader<'_> {
    fn read_block(&mut self, index: u64, buf: &mut [u8], what: &str) -> Result<()> {
        let bad = |e: io::Error| StorageError::corrupt(what, format!("reading block {index}: {e}"));
        match self {
            BlockReader::Forward { reader, next, strict } => {
                if index < *next {
                    return Err(StorageError::Invalid(format!("{what}: block {index} asked for after block {next}")));
                }
                let skip = (index - *next) * BLCKSZ;
                let skipped = io::copy(&mut (&mut *reader).take(skip), &mut io::sink()).map_err(bad)?;
                *next = index + 1;
                if *strict {
                    if skipped < skip {
                        return Err(bad(io::ErrorKind::UnexpectedEof.into()));
                    }
                    reader.read_exact(buf).map_err(bad)?;
                } else if skipped < skip {
                    buf.fill(0);
                } else {
                    read_full(reader, buf).map_err(bad)?;
                }
            }
            BlockReader::Spilled { file, .. } => {
                file.seek(SeekFrom::Start(index * BLCKSZ)).map_err(bad)?;
                file.read_exact(buf).map_err(bad)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            BlockReader::Forward { reader, .. } => reader.finish(),
            BlockReader::Spilled { path, reader, .. } => {
                let _ = std::fs::remove_file(path);
                reader.finish()
            }
        }
    }
}

/// Fills `buf`, with zeros past the end of the input.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[filled..].fill(0);
    Ok(())
}

/// What [`combine`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combined {
    /// Bytes written.
    pub bytes: u64,
    /// The header written, for an incremental result.
    pub header: Option<IncrementalHeader>,
}

/// Combines the versions of one file (newest first) into `out`. The newest version must be
/// incremental; versions past the first full one are not read. `path` names the file in
/// errors; `spill_dir` takes the temporary copy of a source whose blocks are out of order.
///
/// # Errors
/// [`StorageError::Corrupt`] for a damaged source, a block needed from a backup that does not
/// hold the file, or (for a full result) a chain that reaches no full version; write failures.
pub fn combine(
    store: &dyn Store,
    path: &str,
    versions: &[ChainVersion],
    key: Option<&MasterKey>,
    output: CombineOutput,
    spill_dir: &Path,
    out: &mut dyn Write,
) -> Result<Combined> {
    let first = versions.first().ok_or_else(|| StorageError::Invalid(format!("{path}: no version to combine")))?;
    if !first.incremental {
        return Err(StorageError::Invalid(format!("{path}: the newest version is not incremental")));
    }
    // Open versions until the first full one.
    let mut opened = Vec::new();
    for v in versions {
        let Some(stored) = &v.stored else {
            opened.push(Opened::Missing);
            continue;
        };
        let mut reader = PlainReader::open(store, stored, v.cipher, key)?;
        if v.incremental {
            let header = IncrementalHeader::read(&mut reader, stored)?;
            let positions = header.blocks.iter().enumerate().map(|(i, &b)| (b, i as u64)).collect();
            opened.push(Opened::Incremental { reader, header, positions });
        } else {
            opened.push(Opened::Full { reader });
            break;
        }
    }
    let newest = match &opened[0] {
        Opened::Incremental { header, .. } => header.clone(),
        _ => unreachable!("checked above"),
    };
    let total = newest.combined_blocks();
    let mut sources = Vec::with_capacity(total as usize);
    for b in 0..total {
        let b32 = b as u32;
        let mut found = Source::Older;
        for (i, o) in opened.iter().enumerate() {
            match o {
                Opened::Incremental { header, positions, .. } => {
                    if let Some(&p) = positions.get(&b32) {
                        found = Source::Block { version: i, index: p };
                        break;
                    }
                    if b32 >= header.truncation_block_length {
                        found = if i == 0 { Source::Beyond } else { Source::Zero };
                        break;
                    }
                }
                Opened::Full { .. } => {
                    found = Source::Block { version: i, index: b };
                    break;
                }
                Opened::Missing => {
                    return Err(StorageError::corrupt(
                        path,
                        format!("block {b} is needed from backup {}, which does not hold the file", versions[i].label),
                    ));
                }
            }
        }
        if found == Source::Older && output == CombineOutput::Full {
            return Err(StorageError::corrupt(
                path,
                format!("block {b} is in no backup of the chain: the chain has no full backup"),
            ));
        }
        sources.push(found);
    }
    // Readers, in block order.
    let mut readers: Vec<Option<BlockReader<'_>>> = Vec::with_capacity(opened.len());
    let mut what = Vec::with_capacity(opened.len());
    for (i, o) in opened.into_iter().enumerate() {
        what.push(versions[i].stored.clone().unwrap_or_default());
        readers.push(match o {
            Opened::Missing => None,
            Opened::Full { reader } => Some(BlockReader::Forward { reader, next: 0, strict: false }),
            Opened::Incremental { mut reader, header, .. } => {
                if header.ascending() {
                    Some(BlockReader::Forward { reader, next: 0, strict: true })
                } else {
                    static SPILLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                    let n = SPILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let spill = spill_dir.join(format!(".pgmoneta-combine-{}-{n}.tmp", std::process::id()));
                    let mut file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&spill)
                        .map_err(StorageError::io("creating", &spill))?;
                    let want = header.blocks.len() as u64 * BLCKSZ;
                    // A failure to read is the stored file's; a failure to write is the spill
                    // file's (a full workspace is not a damaged backup).
                    let mut left = want;
                    let mut buf = vec![0u8; 64 << 10];
                    let mut failure = None;
                    while left > 0 {
                        let n = match (&mut reader).take(left.min(buf.len() as u64)).read(&mut buf) {
                            Ok(0) => {
                                let why = format!("{} of {want} bytes of blocks", want - left);
                                failure = Some(StorageError::corrupt(&what[i], why));
                                break;
                            }
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                failure = Some(StorageError::corrupt(&what[i], e.to_string()));
                                break;
                            }
                        };
                        if let Err(e) = file.write_all(&buf[..n]) {
                            failure = Some(StorageError::Io { op: "writing", path: spill.clone(), source: e });
                            break;
                        }
                        left -= n as u64;
                    }
                    if let Some(e) = failure {
                        let _ = std::fs::remove_file(&spill);
                        return Err(e);
                    }
                    Some(BlockReader::Spilled { file, path: spill, reader })
                }
            }
        });
    }
    let mut block = vec![0u8; BLCKSZ as usize];
    let mut written = 0u64;
    let header = match output {
        CombineOutput::Full => None,
        CombineOutput::Incremental => {
            let blocks: Vec<u32> = sources
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Source::Block { .. } | Source::Zero))
                .map(|(b, _)| b as u32)
                .collect();
            let h = IncrementalHeader { truncation_block_length: newest.truncation_block_length, blocks };
            let bytes = h.to_bytes();
            out.write_all(&bytes).map_err(StorageError::io("writing", path))?;
            written += bytes.len() as u64;
            Some(h)
        }
    };
    for s in &sources {
        match (*s, output) {
            (Source::Older, _) | (Source::Beyond, CombineOutput::Incremental) => continue,
            (Source::Zero | Source::Beyond, _) => block.fill(0),
            (Source::Block { version, index }, _) => {
                let r = readers[version].as_mut().expect("a version with blocks was opened");
                r.read_block(index, &mut block, &what[version])?;
            }
        }
        out.write_all(&block).map_err(StorageError::io("writing", path))?;
        written += BLCKSZ;
    }
    for r in readers.into_iter().flatten() {
        r.finish()?;
    }
    Ok(Combined { bytes: written, header })
}

/// Applies the stored incremental file `stored` to `target`, a plain copy of the same file as
/// of the incremental backup's parent (a hot standby): the blocks it holds are written in
/// place, blocks it cuts are zeroed, and the file takes its combined length. Returns the
/// blocks written.
///
/// # Errors
/// A damaged stored file (checked to its end before the target is synced), a target missing
/// while the increment needs its blocks, I/O failures.
pub fn apply_in_place(
    store: &dyn Store,
    stored: &str,
    cipher: Option<Cipher>,
    key: Option<&MasterKey>,
    target: &Path,
) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut reader = PlainReader::open(store, stored, cipher, key)?;
    let header = IncrementalHeader::read(&mut reader, stored)?;
    if header.truncation_block_length > 0 && !target.exists() {
        return Err(StorageError::NotFound(format!(
            "{} is missing, and {stored} needs its first {} blocks",
            target.display(),
            header.truncation_block_length
        )));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)
        .map_err(StorageError::io("opening", target))?;
    let mut block = vec![0u8; BLCKSZ as usize];
    for &b in &header.blocks {
        reader.read_exact(&mut block).map_err(|e| StorageError::corrupt(stored, format!("block {b}: {e}")))?;
        file.write_all_at(&block, u64::from(b) * BLCKSZ).map_err(StorageError::io("writing", target))?;
    }
    reader.finish()?;
    let listed: std::collections::HashSet<u32> = header.blocks.iter().copied().collect();
    let zeros = vec![0u8; BLCKSZ as usize];
    for b in u64::from(header.truncation_block_length)..header.combined_blocks() {
        if !listed.contains(&(b as u32)) {
            file.write_all_at(&zeros, b * BLCKSZ).map_err(StorageError::io("writing", target))?;
        }
    }
    file.set_len(header.combined_size()).map_err(StorageError::io("resizing", target))?;
    file.sync_all().map_err(StorageError::io("syncing", target))?;
    Ok(header.blocks.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn block(tag: u8) -> Vec<u8> {
        vec![tag; BLCKSZ as usize]
    }

    fn incremental(t: u32, blocks: &[(u32, u8)]) -> Vec<u8> {
        let h = IncrementalHeader { truncation_block_length: t, blocks: blocks.iter().map(|b| b.0).collect() };
        let mut out = h.to_bytes();
        for (_, tag) in blocks {
            out.extend(block(*tag));
        }
        out
    }

    fn full(tags: &[u8]) -> Vec<u8> {
        tags.iter().flat_map(|&t| block(t)).collect()
    }

    fn version(label: &str, stored: Option<&str>, incremental: bool) -> ChainVersion {
        ChainVersion { label: label.into(), stored: stored.map(str::to_owned), incremental, cipher: None }
    }

    fn run(files: &[(&str, Vec<u8>)], versions: &[ChainVersion], output: CombineOutput) -> Result<Vec<u8>> {
        let store = MemoryStore::new();
        store.create_dir("b").unwrap();
        for (name, data) in files {
            store.write(&format!("b/{name}"), data).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        combine(&store, "base/5/16384", versions, None, output, dir.path(), &mut out)?;
        Ok(out)
    }

    fn tags(data: &[u8]) -> Vec<u8> {
        data.chunks(BLCKSZ as usize).map(|c| c[0]).collect()
    }

    #[test]
    fn header_round_trip_and_sizes() {
        let h = IncrementalHeader { truncation_block_length: 10, blocks: vec![3, 12] };
        assert_eq!(h.header_len(), BLCKSZ);
        assert_eq!(h.combined_blocks(), 13);
        let bytes = h.to_bytes();
        assert_eq!(&bytes[..4], &INCREMENTAL_MAGIC.to_le_bytes());
        assert_eq!(IncrementalHeader::read(&mut bytes.as_slice(), "x").unwrap(), h);
        let empty = IncrementalHeader { truncation_block_length: 4, blocks: vec![] };
        assert_eq!(empty.header_len(), 12);
        assert_eq!(empty.to_bytes().len(), 12);
        let mut probe = HeaderProbe::default();
        for chunk in incremental(7, &[(1, 1), (9, 2)]).chunks(5) {
            probe.feed(chunk);
        }
        let got = probe.finish().unwrap();
        assert_eq!((got.truncation_block_length, got.blocks), (7, vec![1, 9]));
        let mut probe = HeaderProbe::default();
        probe.feed(&empty.to_bytes());
        assert_eq!(probe.finish().unwrap(), empty);
    }

    #[test]
    fn damaged_headers_are_named() {
        let mut bytes = incremental(2, &[(0, 1)]);
        bytes[0] ^= 1;
        let e = IncrementalHeader::read(&mut bytes.as_slice(), "base/5/INCREMENTAL.1").unwrap_err().to_string();
        assert!(e.contains("base/5/INCREMENTAL.1") && e.contains("magic"), "{e}");
        let bytes = incremental(2, &[(0, 1)]);
        let e = IncrementalHeader::read(&mut &bytes[..20], "f").unwrap_err().to_string();
        assert!(e.contains("truncated") || e.contains("block list"), "{e}");
        let mut probe = HeaderProbe::default();
        probe.feed(&bytes[..10]);
        assert!(probe.finish().is_err());
    }

    #[test]
    fn a_full_workspace_is_reported_as_such_not_as_a_damaged_backup() {
        let Some(small) = pgmoneta_testkit::SmallFs::mount(1, "a full workspace during a combine") else {
            return;
        };
        // Blocks out of order: the combine spills them into the workspace.
        let files = [("full", full(b"abcdef")), ("i1", incremental(6, &[(5, b'F'), (1, b'B'), (3, b'D')]))];
        let chain = [version("i1", Some("b/i1"), true), version("full", Some("b/full"), false)];
        let store = MemoryStore::new();
        store.create_dir("b").unwrap();
        for (name, data) in &files {
            store.write(&format!("b/{name}"), data).unwrap();
        }
        let mut out = Vec::new();
        combine(&store, "base/5/16384", &chain, None, CombineOutput::Full, small.path(), &mut out).unwrap();
        assert_eq!(tags(&out), b"aBcDeF".to_vec());
        let _filler = small.fill();
        let mut out = Vec::new();
        let e = combine(&store, "base/5/16384", &chain, None, CombineOutput::Full, small.path(), &mut out).unwrap_err();
        assert!(e.is_out_of_space() && !matches!(e, StorageError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains(&small.path().display().to_string()), "{e}");
        assert_eq!(std::fs::read_dir(small.path()).unwrap().count(), 1, "the spill file was left behind");
    }

    #[test]
    fn a_chain_combines_block_by_block() {
        // Full: 6 blocks a..f. Incremental 1: truncated to 4, block 1 changed, block 5 new.
        // Incremental 2: block 2 changed, truncation 6.
        let files = [
            ("full", full(b"abcdef")),
            ("i1", incremental(4, &[(1, b'B'), (5, b'F')])),
            ("i2", incremental(6, &[(2, b'C')])),
        ];
        let chain = [
            version("i2", Some("b/i2"), true),
            version("i1", Some("b/i1"), true),
            version("full", Some("b/full"), false),
        ];
        let out = run(&files, &chain, CombineOutput::Full).unwrap();
        // Block 4 was cut by i1 and not rewritten: zeros, never the full backup's 'e'.
        assert_eq!(tags(&out), vec![b'a', b'B', b'C', b'd', 0, b'F']);
        // The same chain rolled up into one incremental relative to the full backup.
        let merged = run(&files, &chain[..2], CombineOutput::Incremental).unwrap();
        let h = IncrementalHeader::read(&mut merged.as_slice(), "m").unwrap();
        assert_eq!(h.truncation_block_length, 6);
        assert_eq!(h.blocks, vec![1, 2, 4, 5]);
        let files2 = [files[0].clone(), ("m", merged)];
        let out2 = run(
            &files2,
            &[version("m", Some("b/m"), true), version("full", Some("b/full"), false)],
            CombineOutput::Full,
        )
        .unwrap();
        assert_eq!(out2, out);
    }

    #[test]
    fn blocks_past_the_truncation_length_are_zeros_and_out_of_order_sources_work() {
        let files = [("full", full(&[1, 2, 3])), ("i", incremental(1, &[(4, 9), (2, 8)]))];
        let chain = [version("i", Some("b/i"), true), version("full", Some("b/full"), false)];
        let out = run(&files, &chain, CombineOutput::Full).unwrap();
        assert_eq!(tags(&out), vec![1, 0, 8, 0, 9]);
    }

    #[test]
    fn a_missing_prior_version_or_no_full_backup_fails_loudly() {
        let files = [("i", incremental(3, &[(0, 9)]))];
        let e = run(&files, &[version("i", Some("b/i"), true), version("p", None, false)], CombineOutput::Full)
            .unwrap_err()
            .to_string();
        assert!(e.contains("block 1 is needed from backup p"), "{e}");
        let e = run(&files, &[version("i", Some("b/i"), true)], CombineOutput::Full).unwrap_err().to_string();
        assert!(e.contains("no full backup"), "{e}");
        // Created since the parent: nothing is needed from it.
        let files = [("i", incremental(0, &[(0, 9), (1, 8)]))];
        let out =
            run(&files, &[version("i", Some("b/i"), true), version("p", None, false)], CombineOutput::Full).unwrap();
        assert_eq!(tags(&out), vec![9, 8]);
    }

    #[test]
    fn an_increment_applies_in_place_to_the_parents_copy() {
        let store = MemoryStore::new();
        store.create_dir("b").unwrap();
        store.write("b/i", &incremental(2, &[(1, 7), (3, 9)])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("16384");
        std::fs::write(&target, full(&[1, 2, 3, 4, 5])).unwrap();
        apply_in_place(&store, "b/i", None, None, &target).unwrap();
        assert_eq!(tags(&std::fs::read(&target).unwrap()), vec![1, 7, 0, 9]);
        let e = apply_in_place(&store, "b/i", None, None, &dir.path().join("gone")).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn a_truncated_increment_is_an_error_not_zeros() {
        let mut short = incremental(4, &[(1, 7), (3, 9)]);
        short.truncate(short.len() - 100);
        let files = [("full", full(&[1, 2, 3, 4])), ("i", short)];
        let chain = [version("i", Some("b/i"), true), version("full", Some("b/full"), false)];
        let e = run(&files, &chain, CombineOutput::Full).unwrap_err().to_string();
        assert!(e.contains("b/i") && e.contains("block"), "{e}");
        let mut wild = incremental(1, &[(0, 1)]);
        wild[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = IncrementalHeader::read(&mut wild.as_slice(), "w").unwrap_err().to_string();
        assert!(e.contains("past any relation segment"), "{e}");
    }

    #[test]
    fn paths() {
        assert_eq!(incremental_path("base/5/16384"), "base/5/INCREMENTAL.16384");
        assert_eq!(plain_path("base/5/INCREMENTAL.16384.1").as_deref(), Some("base/5/16384.1"));
        assert_eq!(plain_path("base/5/16384"), None);
        assert_eq!(split_name("INCREMENTAL.1"), ("1", true));
    }
}
