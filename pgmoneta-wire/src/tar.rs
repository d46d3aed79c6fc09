//! Tar streams: an incremental parser for the archives of `BASE_BACKUP`, and a small writer.
//!
//! # Parsing
//!
//! [`TarParser`] is a push parser: a state machine without I/O that is fed the stream in chunks
//! of any size, split anywhere (one byte at a time works), and reports what it finds to a callback
//! as [`TarEvent`]s. Member data is never copied: every [`TarEvent::Data`] is a slice of the chunk
//! being fed. Only header blocks (512 bytes) and the payloads of pax extended headers and GNU long
//! names are held, and those payloads are limited to [`DEFAULT_EXTENSION_LIMIT`] bytes (see
//! [`TarParser::extension_limit`]), so memory stays bounded whatever the stream holds.
//!
//! Understood are the formats PostgreSQL and GNU tar write: ustar (the name joined to the 155-byte
//! prefix), GNU (long names and link names in `L` and `K` members, base-256 numbers) and pax (`x`
//! headers whose `path`, `linkpath`, `size`, `mtime`, `uid` and `gid` records override the next
//! header; `g` global headers are skipped). Header checksums are verified, summing the bytes as
//! unsigned or, like GNU tar accepts, as signed chars.
//!
//! Every member produces one [`TarEvent::Entry`], then zero or more [`TarEvent::Data`] holding
//! exactly [`TarEntry::size`] bytes in total, then one [`TarEvent::EndOfEntry`], also for members
//! without data (directories, links). Extension headers produce no events of their own. The
//! end-of-archive marker (two zero blocks) produces [`TarEvent::EndOfArchive`]; zero bytes may
//! follow it (tar pads archives to records of 10240 bytes), anything else is an error.
//!
//! # Paths
//!
//! A hostile stream must not make its consumer write outside the target directory, so member
//! paths (and hard link targets, which name other members) are checked: absolute paths and `..`
//! components are errors. Paths are normalized: a leading `./`, `.` components, repeated and
//! trailing slashes are removed, so the archive root that `tar -C dir .` writes as `./` has an
//! empty path (allowed for directories only). Symbolic link targets are passed on unchanged:
//! `pg_tblspc` links point to absolute paths. A consumer extracting an archive must therefore
//! never follow a symbolic link it created when it writes a later member.
//!
//! # End of the stream
//!
//! [`TarParser::finish`] tells whether the stream was complete. PostgreSQL 15 and later end each
//! archive of `BASE_BACKUP` with the end-of-archive marker; PostgreSQL 14 ends it right after its
//! last member and leaves adding the marker to the client, so use
//! [`TarParser::require_end_marker`]`(false)` for those servers. A stream ending in a header, in
//! data or in the padding after data is truncated either way.
//!
//! # Writing
//!
//! [`TarWriter`] writes POSIX ustar members, with a pax extended header when a path or symbolic link
//! target does not fit the ustar fields or a size is 8 GiB or more, so GNU tar and every pax reader
//! read its archives back.
//!
//! ```
//! use pgmoneta_wire::tar::{TarError, TarEvent, TarParser, TarWriter};
//!
//! let mut writer = TarWriter::new(Vec::new());
//! writer.append_dir("base", 0o700, 1_700_000_000)?;
//! writer.append_file("base/PG_VERSION", 0o600, 1_700_000_000, 3, &b"17\n"[..])?;
//! let archive = writer.finish()?;
//!
//! let mut parser = TarParser::new();
//! let mut paths = Vec::new();
//! for chunk in archive.chunks(100) {
//!     parser.feed(chunk, |event| {
//!         if let TarEvent::Entry(entry) = event {
//!             paths.push(entry.path);
//!         }
//!         Ok::<(), TarError>(())
//!     })?;
//! }
//! parser.finish()?;
//! assert_eq!(paths, ["base", "base/PG_VERSION"].map(std::path::PathBuf::from));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The size of a tar block: headers, data padding and the end-of-archive marker are counted in it.
pub const BLOCK_SIZE: usize = 512;

/// The default limit of the payload of one pax extended header or GNU long name: 1 MiB.
pub const DEFAULT_EXTENSION_LIMIT: usize = 1 << 20;

// The fields of a header block.
const NAME: Range<usize> = 0..100;
const MODE: Range<usize> = 100..108;
const UID: Range<usize> = 108..116;
const GID: Range<usize> = 116..124;
const SIZE: Range<usize> = 124..136;
const MTIME: Range<usize> = 136..148;
const CHKSUM: Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const LINKNAME: Range<usize> = 157..257;
const MAGIC: Range<usize> = 257..263;
const VERSION: Range<usize> = 263..265;
const DEVMAJOR: Range<usize> = 329..337;
const DEVMINOR: Range<usize> = 337..345;
const PREFIX: Range<usize> = 345..500;

/// The magic of POSIX ustar headers, the only ones with a `prefix` field (GNU headers keep other
/// data there).
const USTAR_MAGIC: &[u8] = b"ustar\0";

/// The largest number the 12-byte fields hold in octal: 8 GiB - 1.
const MAX_OCTAL_11: u64 = (1 << 33) - 1;

const ZEROS: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];

/// What can go wrong reading a tar stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A header block whose checksum does not match its contents: damaged data, or no tar stream.
    #[error("tar header at byte {offset}: bad checksum (stored {stored}, computed {computed})")]
    BadChecksum {
        /// Where the header starts in the stream.
        offset: u64,
        /// The checksum in the header.
        stored: u64,
        /// The sum of the header's bytes.
        computed: u64,
    },
    /// A numeric header field that is neither octal nor base-256, or out of range.
    #[error("tar header at byte {offset}: field {field} is not a valid number: \"{value}\"")]
    BadNumber {
        /// Where the header starts in the stream.
        offset: u64,
        /// The field (`size`, `mtime`...).
        field: &'static str,
        /// The field's bytes, escaped.
        value: String,
    },
    /// The stream ended inside a member, a header or the end-of-archive marker.
    #[error("tar stream truncated at byte {offset}: it ends {what}")]
    Truncated {
        /// The length of the stream.
        offset: u64,
        /// Where it ends.
        what: String,
    },
    /// The stream ended after its last member without the end-of-archive marker, which
    /// [`TarParser::require_end_marker`] asked for.
    #[error("tar stream ends at byte {offset} without the end-of-archive marker (two zero blocks)")]
    MissingEndMarker {
        /// The length of the stream.
        offset: u64,
    },
    /// A pax extended header or GNU long name larger than the parser accepts.
    #[error("tar {what} at byte {offset} holds {size} bytes, more than the limit of {limit}")]
    ExtensionTooLarge {
        /// Where its header starts in the stream.
        offset: u64,
        /// Which extension.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// A pax extended header that is not a sequence of `LEN key=value\n` records, or a value that
    /// is not valid for its key.
    #[error("pax extended header record at byte {offset}: {reason}")]
    BadPax {
        /// Where the record starts in the stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A pax extended header or GNU long name followed by the end-of-archive marker instead of the
    /// member it describes.
    #[error("tar extended header at byte {offset} is not followed by a member")]
    DanglingExtension {
        /// Where the extension header starts in the stream.
        offset: u64,
    },
    /// One zero block followed by a header: either a damaged stream or concatenated archives.
    #[error("tar stream has a lone zero block at byte {offset}, followed by a header")]
    LoneZeroBlock {
        /// Where the zero block starts in the stream.
        offset: u64,
    },
    /// A non-zero byte after the end-of-archive marker.
    #[error("tar stream has data at byte {offset}, after its end-of-archive marker")]
    TrailingData {
        /// Where the byte is in the stream.
        offset: u64,
    },
    /// A member path (or hard link target) that is absolute, climbs out with `..`, or is empty.
    #[error("tar member at byte {offset} has an unsafe or invalid path {path:?}: {reason}")]
    InvalidPath {
        /// Where the member's header starts in the stream.
        offset: u64,
        /// The path, with bytes that are not UTF-8 replaced.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// [`TarParser::feed`] or [`TarParser::finish`] called after an earlier error.
    #[error("tar parser already failed at byte {offset}")]
    Failed {
        /// How far the parser had read when it failed.
        offset: u64,
    },
    /// The consumer of the events failed (see [`TarError::sink`]).
    #[error("tar event consumer failed: {0}")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl TarError {
    /// Wraps an error of the event callback, for callbacks whose error type is [`TarError`].
    pub fn sink(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TarError {
        TarError::Sink(error.into())
    }

    /// Whether trying again may help: never, the stream is damaged or hostile (a failed consumer
    /// cannot be retried on the same stream either).
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The byte offset in the stream the error is about, when it is about one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            TarError::BadChecksum { offset, .. }
            | TarError::BadNumber { offset, .. }
            | TarError::Truncated { offset, .. }
            | TarError::MissingEndMarker { offset }
            | TarError::ExtensionTooLarge { offset, .. }
            | TarError::BadPax { offset, .. }
            | TarError::DanglingExtension { offset }
            | TarError::LoneZeroBlock { offset }
            | TarError::TrailingData { offset }
            | TarError::InvalidPath { offset, .. }
            | TarError::Failed { offset } => Some(*offset),
            TarError::Sink(_) => None,
        }
    }
}

/// What a member is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file (typeflag `0`, NUL, or `7` for contiguous files), whose data follows.
    File,
    /// A directory (typeflag `5`, or an old-style regular entry whose name ends with `/`).
    Directory,
    /// A symbolic link (typeflag `2`).
    Symlink {
        /// Where it points, unchanged (it may be absolute).
        target: PathBuf,
    },
    /// A hard link (typeflag `1`) to an earlier member.
    Hardlink {
        /// The earlier member's path, checked and normalized like member paths.
        target: PathBuf,
    },
    /// Any other typeflag: devices (`3`, `4`), FIFOs (`6`), or GNU and vendor extensions whose
    /// data, if the header declares some, is passed through as [`TarEvent::Data`].
    Other(u8),
}

/// The header of a member, after applying pax extended headers and GNU long names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarEntry {
    /// The relative path, normalized (see the [module documentation](self)); empty for the archive
    /// root.
    pub path: PathBuf,
    /// What the member is.
    pub kind: EntryKind,
    /// How many bytes of data follow: 0 for directories, links, devices and FIFOs whatever their
    /// header says, as POSIX specifies.
    pub size: u64,
    /// Permission bits, including set-user-id, set-group-id and sticky (`0o7777` at most).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch (fractions of a pax `mtime` are dropped,
    /// rounding down).
    pub mtime: i64,
    /// Owner's user id.
    pub uid: u64,
    /// Owner's group id.
    pub gid: u64,
    /// Where the member's own header starts in the stream (after any extension headers).
    pub header_offset: u64,
}

/// What [`TarParser::feed`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TarEvent<'a> {
    /// The header of the next member.
    Entry(TarEntry),
    /// The next part of the current member's data, a non-empty slice of the fed chunk (the
    /// padding to a whole block is not included).
    Data(&'a [u8]),
    /// The end of the current member: after its last [`TarEvent::Data`], or right after its
    /// [`TarEvent::Entry`] when it has no data.
    EndOfEntry,
    /// The end-of-archive marker. Nothing but zero bytes may follow.
    EndOfArchive,
}

/// Which extension header a payload belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExtensionKind {
    /// `x`: pax records for the next member.
    Pax,
    /// `L`: GNU long name of the next member.
    LongName,
    /// `K`: GNU long link name of the next member.
    LongLink,
}

impl ExtensionKind {
    fn what(self) -> &'static str {
        match self {
            ExtensionKind::Pax => "pax extended header",
            ExtensionKind::LongName => "GNU long name",
            ExtensionKind::LongLink => "GNU long link name",
        }
    }
}

/// Values of extension headers waiting for the next member.
#[derive(Debug, Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    size: Option<u64>,
    mtime: Option<i64>,
    uid: Option<u64>,
    gid: Option<u64>,
}

/// What the parser does with the next bytes.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Gathering a header block.
    Header,
    /// Passing `remaining` bytes of member data through, then skipping `padding` bytes.
    Data { remaining: u64, padding: usize },
    /// Gathering `remaining` more bytes of an extension payload that starts at `start`, then
    /// skipping `padding` bytes.
    Extension { kind: ExtensionKind, remaining: usize, padding: usize, start: u64 },
    /// Skipping `remaining` bytes of `what`.
    Skip { remaining: u64, what: &'static str },
    /// After one zero block: gathering the block that must be the second one.
    SecondZero,
    /// After the end-of-archive marker: only zero bytes may follow.
    End,
}

/// An incremental tar parser: feed it the stream with [`feed`](TarParser::feed) in chunks of any
/// size, then call [`finish`](TarParser::finish) at the end of the stream.
///
/// Once it has returned an error, it returns [`TarError::Failed`] from every call.
pub struct TarParser {
    state: State,
    /// Bytes consumed so far.
    offset: u64,
    /// The header block being gathered (also in [`State::SecondZero`]).
    block: [u8; BLOCK_SIZE],
    /// How much of `block` is gathered.
    filled: usize,
    /// The extension payload being gathered.
    payload: Vec<u8>,
    /// Extension values for the next member.
    extensions: Extensions,
    /// Where the first extension header not yet applied to a member starts.
    extension_offset: Option<u64>,
    /// The member whose data is being passed through.
    current: Option<PathBuf>,
    extension_limit: usize,
    require_end_marker: bool,
    failed_at: Option<u64>,
}

impl fmt::Debug for TarParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TarParser")
            .field("state", &self.state)
            .field("offset", &self.offset)
            .field("current", &self.current)
            .field("failed_at", &self.failed_at)
            .finish_non_exhaustive()
    }
}

impl Default for TarParser {
    fn default() -> TarParser {
        TarParser::new()
    }
}

impl TarParser {
    /// A parser at the start of a stream, requiring the end-of-archive marker, with extension
    /// payloads limited to [`DEFAULT_EXTENSION_LIMIT`].
    pub fn new() -> TarParser {
        TarParser {
            state: State::Header,
            offset: 0,
            block: [0; BLOCK_SIZE],
            filled: 0,
            payload: Vec::new(),
            extensions: Extensions::default(),
            extension_offset: None,
            current: None,
            extension_limit: DEFAULT_EXTENSION_LIMIT,
            require_end_marker: true,
            failed_at: None,
        }
    }

    /// Whether [`finish`](TarParser::finish) requires the end-of-archive marker (the default).
    /// Without it, a stream may also end right after a member, or after the first zero block of the
    /// marker: pass `false` for the archives of PostgreSQL 14 and older servers.
    pub fn require_end_marker(mut self, require: bool) -> TarParser {
        self.require_end_marker = require;
        self
    }

    /// The largest payload of one pax extended header or GNU long name accepted, in bytes; larger
    /// ones are [`TarError::ExtensionTooLarge`].
    pub fn extension_limit(mut self, bytes: usize) -> TarParser {
        self.extension_limit = bytes;
        self
    }

    /// How many bytes of the stream have been consumed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the end-of-archive marker has been seen.
    pub fn is_at_end(&self) -> bool {
        matches!(self.state, State::End) && self.failed_at.is_none()
    }

    /// Parses the next chunk of the stream, calling `sink` with each event in stream order.
    /// Member data is passed to `sink` as slices of `input`.
    ///
    /// # Errors
    /// A [`TarError`] (converted to `E`) when the stream is damaged or unsafe, naming the offset
    /// in the stream; the first error of `sink`, which stops parsing. Either way the parser is
    /// failed: later calls return [`TarError::Failed`].
    pub fn feed<'a, E, F>(&mut self, input: &'a [u8], mut sink: F) -> Result<(), E>
    where
        F: FnMut(TarEvent<'a>) -> Result<(), E>,
        E: From<TarError>,
    {
        if let Some(offset) = self.failed_at {
            return Err(TarError::Failed { offset }.into());
        }
        let result = self.run(input, &mut sink);
        if result.is_err() {
            self.failed_at = Some(self.offset);
        }
        result
    }

    /// Checks that the stream may end here.
    ///
    /// # Errors
    /// [`TarError::Truncated`] when it ends in a header, in data or its padding, in an extension
    /// header or before the member an extension header announces, or inside the end-of-archive
    /// marker while it is required; [`TarError::MissingEndMarker`] when it ends after a member but
    /// the marker is required; [`TarError::Failed`] after an earlier error.
    pub fn finish(&self) -> Result<(), TarError> {
        if let Some(offset) = self.failed_at {
            return Err(TarError::Failed { offset });
        }
        let offset = self.offset;
        let truncated = |what: String| Err(TarError::Truncated { offset, what });
        match self.state {
            State::End => Ok(()),
            State::Header if self.filled == 0 => match self.extension_offset {
                Some(at) => truncated(format!("after the extended header at byte {at}, before its member")),
                None if self.require_end_marker => Err(TarError::MissingEndMarker { offset }),
                None => Ok(()),
            },
            State::Header => truncated(format!(
                "in the header at byte {} ({} of {BLOCK_SIZE} bytes)",
                offset - self.filled as u64,
                self.filled
            )),
            State::SecondZero if self.filled == 0 && !self.require_end_marker => Ok(()),
            State::SecondZero => truncated("in the end-of-archive marker".to_owned()),
            State::Data { remaining, .. } => {
                let path = self.current.as_deref().unwrap_or(Path::new(""));
                truncated(format!("in the data of {}, {remaining} bytes short", path.display()))
            }
            State::Extension { kind, remaining, .. } => {
                truncated(format!("in a {}, {remaining} bytes short", kind.what()))
            }
            State::Skip { remaining, what } => truncated(format!("in {what}, {remaining} bytes short")),
        }
    }

    fn run<'a, E, F>(&mut self, mut input: &'a [u8], sink: &mut F) -> Result<(), E>
    where
        F: FnMut(TarEvent<'a>) -> Result<(), E>,
        E: From<TarError>,
    {
        while !input.is_empty() {
            match self.state {
                State::Header | State::SecondZero => {
                    let n = (BLOCK_SIZE - self.filled).min(input.len());
                    self.block[self.filled..self.filled + n].copy_from_slice(&input[..n]);
                    self.filled += n;
                    self.offset += n as u64;
                    input = &input[n..];
                    if self.filled == BLOCK_SIZE {
                        self.filled = 0;
                        self.on_block(sink)?;
                    }
                }
                State::Data { remaining, padding } => {
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    input = rest;
                    self.offset += n as u64;
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::Data { remaining, padding };
                        sink(TarEvent::Data(chunk))?;
                    } else {
                        self.state = after_member(padding);
                        self.current = None;
                        sink(TarEvent::Data(chunk))?;
                        sink(TarEvent::EndOfEntry)?;
                    }
                }
                State::Extension { kind, remaining, padding, start } => {
                    let n = remaining.min(input.len());
                    self.payload.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.offset += n as u64;
                    if remaining > n {
                        self.state = State::Extension { kind, remaining: remaining - n, padding, start };
                    } else {
                        self.apply_extension(kind, start)?;
                        self.state = after_member(padding);
                    }
                }
                State::Skip { remaining, what } => {
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                    input = &input[n..];
                    self.offset += n as u64;
                    let remaining = remaining - n as u64;
                    self.state = if remaining > 0 { State::Skip { remaining, what } } else { State::Header };
                }
                State::End => {
                    if let Some(at) = input.iter().position(|&b| b != 0) {
                        return Err(TarError::TrailingData { offset: self.offset + at as u64 }.into());
                    }
                    self.offset += input.len() as u64;
                    input = &[];
                }
            }
        }
        Ok(())
    }

    /// Handles the block just gathered.
    fn on_block<'a, E, F>(&mut self, sink: &mut F) -> Result<(), E>
    where
        F: FnMut(TarEvent<'a>) -> Result<(), E>,
        E: From<TarError>,
    {
        let offset = self.offset - BLOCK_SIZE as u64;
        let zero = self.block.iter().all(|&b| b == 0);
        if let State::SecondZero = self.state {
            if !zero {
                return Err(TarError::LoneZeroBlock { offset: offset - BLOCK_SIZE as u64 }.into());
            }
            self.state = State::End;
            return sink(TarEvent::EndOfArchive);
        }
        if zero {
            if let Some(offset) = self.extension_offset {
                return Err(TarError::DanglingExtension { offset }.into());
            }
            self.state = State::SecondZero;
            return Ok(());
        }
        verify_checksum(&self.block, offset)?;
        let typeflag = self.block[TYPEFLAG];
        match typeflag {
            b'x' | b'L' | b'K' => {
                let kind = match typeflag {
                    b'x' => ExtensionKind::Pax,
                    b'L' => ExtensionKind::LongName,
                    _ => ExtensionKind::LongLink,
                };
                self.start_extension(kind, offset)?;
            }
            b'g' => {
                let size = unsigned(&self.block, SIZE, "size", offset)?;
                let remaining = size.saturating_add(padding(size) as u64);
                self.state =
                    if remaining == 0 { State::Header } else { State::Skip { remaining, what: "a pax global header" } };
            }
            _ => {
                let entry = self.entry(typeflag, offset)?;
                if entry.size == 0 {
                    self.state = State::Header;
                    sink(TarEvent::Entry(entry))?;
                    sink(TarEvent::EndOfEntry)?;
                } else {
                    self.state = State::Data { remaining: entry.size, padding: padding(entry.size) };
                    self.current = Some(entry.path.clone());
                    sink(TarEvent::Entry(entry))?;
                }
            }
        }
        Ok(())
    }

    fn start_extension(&mut self, kind: ExtensionKind, offset: u64) -> Result<(), TarError> {
        let size = unsigned(&self.block, SIZE, "size", offset)?;
        let limit = self.extension_limit;
        let len = usize::try_from(size).ok().filter(|&len| len <= limit).ok_or(TarError::ExtensionTooLarge {
            offset,
            what: kind.what(),
            size,
            limit,
        })?;
        self.extension_offset.get_or_insert(offset);
        self.payload = Vec::with_capacity(len);
        let start = offset + BLOCK_SIZE as u64;
        if len == 0 {
            self.apply_extension(kind, start)?;
            self.state = State::Header;
        } else {
            self.state = State::Extension { kind, remaining: len, padding: padding(size), start };
        }
        Ok(())
    }

    /// Records the values of the extension payload just gathered for the next member.
    fn apply_extension(&mut self, kind: ExtensionKind, start: u64) -> Result<(), TarError> {
        let mut payload = std::mem::take(&mut self.payload);
        match kind {
            ExtensionKind::Pax => parse_pax(&payload, start, &mut self.extensions)?,
            ExtensionKind::LongName | ExtensionKind::LongLink => {
                let len = until_nul(&payload).len();
                payload.truncate(len);
                if kind == ExtensionKind::LongName {
                    self.extensions.long_name = Some(payload);
                } else {
                    self.extensions.long_link = Some(payload);
                }
            }
        }
        Ok(())
    }

    /// The member whose header is in `block`, with the extensions gathered for it.
    fn entry(&mut self, typeflag: u8, offset: u64) -> Result<TarEntry, TarError> {
        let ext = std::mem::take(&mut self.extensions);
        self.extension_offset = None;
        let block = &self.block;
        let raw_path = match ext.path.or(ext.long_name) {
            Some(path) => path,
            None => header_path(block),
        };
        let declared_size = match ext.size {
            Some(size) => size,
            None => unsigned(block, SIZE, "size", offset)?,
        };
        let mtime = match ext.mtime {
            Some(mtime) => mtime,
            None => {
                let value = numeric(block, MTIME, "mtime", offset)?;
                i64::try_from(value).map_err(|_| bad_number(block, MTIME, "mtime", offset))?
            }
        };
        let uid = match ext.uid {
            Some(uid) => uid,
            None => unsigned(block, UID, "uid", offset)?,
        };
        let gid = match ext.gid {
            Some(gid) => gid,
            None => unsigned(block, GID, "gid", offset)?,
        };
        let mode = (unsigned(block, MODE, "mode", offset)? & 0o7777) as u32;
        let raw_link = match typeflag {
            b'1' | b'2' => ext.linkpath.or(ext.long_link).unwrap_or_else(|| until_nul(&block[LINKNAME]).to_vec()),
            _ => Vec::new(),
        };
        // POSIX: no data follows links, devices, directories and FIFOs.
        let size = if (b'1'..=b'6').contains(&typeflag) { 0 } else { declared_size };
        let kind = match typeflag {
            b'0' | 0 if size == 0 && raw_path.ends_with(b"/") => EntryKind::Directory,
            b'0' | 0 | b'7' => EntryKind::File,
            b'1' => {
                let target = clean_path(&raw_link, offset)?;
                if target.as_os_str().is_empty() {
                    return Err(invalid_path(&raw_link, offset, "hard link to the archive root"));
                }
                EntryKind::Hardlink { target }
            }
            b'2' => {
                if raw_link.is_empty() || raw_link.contains(&0) {
                    return Err(invalid_path(&raw_link, offset, "symbolic link target is empty or holds a NUL byte"));
                }
                EntryKind::Symlink { target: PathBuf::from(OsString::from_vec(raw_link)) }
            }
            b'5' => EntryKind::Directory,
            other => EntryKind::Other(other),
        };
        let path = clean_path(&raw_path, offset)?;
        if path.as_os_str().is_empty() && kind != EntryKind::Directory {
            return Err(invalid_path(&raw_path, offset, "only a directory can be the archive root"));
        }
        Ok(TarEntry { path, kind, size, mode, mtime, uid, gid, header_offset: offset })
    }

    /// Feeds the whole of `input` and checks the end, collecting owned events: a convenience for
    /// small archives held in memory.
    ///
    /// # Errors
    /// As [`feed`](TarParser::feed) and [`finish`](TarParser::finish).
    pub fn parse_all(mut self, input: &[u8]) -> Result<Vec<(TarEntry, Vec<u8>)>, TarError> {
        let mut members: Vec<(TarEntry, Vec<u8>)> = Vec::new();
        self.feed(input, |event| {
            match event {
                TarEvent::Entry(entry) => members.push((entry, Vec::new())),
                TarEvent::Data(data) => {
                    if let Some((_, contents)) = members.last_mut() {
                        contents.extend_from_slice(data);
                    }
                }
                TarEvent::EndOfEntry | TarEvent::EndOfArchive => {}
            }
            Ok::<(), TarError>(())
        })?;
        self.finish()?;
        Ok(members)
    }
}

/// The state after a member's data or an extension payload: its padding, then the next header.
fn after_member(padding: usize) -> State {
    if padding == 0 {
        State::Header
    } else {
        State::Skip { remaining: padding as u64, what: "the padding after a member" }
    }
}

/// The bytes after `size` bytes of data up to the next block.
fn padding(size: u64) -> usize {
    let block = BLOCK_SIZE as u64;
    ((block - size % block) % block) as usize
}

/// `field` up to its first NUL byte.
fn until_nul(field: &[u8]) -> &[u8] {
    field.iter().position(|&b| b == 0).map_or(field, |end| &field[..end])
}

/// The path in a header's `name` field, joined to its `prefix` in ustar headers.
fn header_path(block: &[u8; BLOCK_SIZE]) -> Vec<u8> {
    let name = until_nul(&block[NAME]);
    if &block[MAGIC] == USTAR_MAGIC {
        let prefix = until_nul(&block[PREFIX]);
        if !prefix.is_empty() {
            return [prefix, b"/", name].concat();
        }
    }
    name.to_vec()
}

fn verify_checksum(block: &[u8; BLOCK_SIZE], offset: u64) -> Result<(), TarError> {
    let stored = numeric(block, CHKSUM, "chksum", offset)?;
    let (mut unsigned_sum, mut signed_sum) = (0i64, 0i64);
    for (i, &byte) in block.iter().enumerate() {
        let byte = if CHKSUM.contains(&i) { b' ' } else { byte };
        unsigned_sum += i64::from(byte);
        // Some old tars summed the bytes as (signed) chars; GNU tar accepts both.
        signed_sum += i64::from(byte as i8);
    }
    if stored == i128::from(unsigned_sum) || stored == i128::from(signed_sum) {
        Ok(())
    } else {
        Err(TarError::BadChecksum {
            offset,
            stored: u64::try_from(stored).unwrap_or(u64::MAX),
            computed: unsigned_sum as u64,
        })
    }
}

/// A numeric field: octal digits (after optional spaces, ended by NUL, space or the field's end),
/// or a GNU base-256 number (big-endian two's complement, the first byte's high bit set).
fn parse_numeric(field: &[u8]) -> Option<i128> {
    let (&first, rest) = field.split_first()?;
    if first & 0x80 != 0 {
        let mut value = i128::from(first & 0x7f);
        if first & 0x40 != 0 {
            value -= 0x80;
        }
        for &byte in rest {
            value = value.checked_mul(256)?.checked_add(i128::from(byte))?;
        }
        return Some(value);
    }
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let digits = &field[start..];
    let end = digits.iter().position(|b| !(b'0'..=b'7').contains(b)).unwrap_or(digits.len());
    if !matches!(digits.get(end), None | Some(0 | b' ')) {
        return None;
    }
    digits[..end].iter().try_fold(0i128, |value, &digit| value.checked_mul(8)?.checked_add(i128::from(digit - b'0')))
}

fn bad_number(block: &[u8; BLOCK_SIZE], range: Range<usize>, field: &'static str, offset: u64) -> TarError {
    TarError::BadNumber { offset, field, value: block[range].escape_ascii().to_string() }
}

fn numeric(block: &[u8; BLOCK_SIZE], range: Range<usize>, field: &'static str, offset: u64) -> Result<i128, TarError> {
    parse_numeric(&block[range.clone()]).ok_or_else(|| bad_number(block, range, field, offset))
}

fn unsigned(block: &[u8; BLOCK_SIZE], range: Range<usize>, field: &'static str, offset: u64) -> Result<u64, TarError> {
    let value = numeric(block, range.clone(), field, offset)?;
    u64::try_from(value).map_err(|_| bad_number(block, range, field, offset))
}

/// A decimal number of ASCII digits only.
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |value, &digit| {
        digit.is_ascii_digit().then_some(())?;
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// A pax time: optional minus, decimal seconds, optional fraction; rounded down to seconds.
fn parse_pax_time(text: &[u8]) -> Option<i64> {
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &[][..]),
    };
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seconds = i64::try_from(parse_decimal(whole)?).ok()?;
    let has_fraction = fraction.iter().any(|&b| b != b'0');
    Some(if negative { -seconds - i64::from(has_fraction) } else { seconds })
}

/// Reads the `LEN key=value\n` records of a pax extended header whose payload starts at `start`.
fn parse_pax(data: &[u8], start: u64, ext: &mut Extensions) -> Result<(), TarError> {
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        // Tolerate NUL padding after the last record.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let offset = start + pos as u64;
        let bad = |reason: String| TarError::BadPax { offset, reason };
        let space = rest
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("the record does not start with its length".to_owned()))?;
        let len = parse_decimal(&rest[..space])
            .and_then(|len| usize::try_from(len).ok())
            .ok_or_else(|| bad(format!("bad record length \"{}\"", rest[..space].escape_ascii())))?;
        if len <= space + 1 || len > rest.len() {
            return Err(bad(format!("record length {len} does not fit the {} bytes left", rest.len())));
        }
        let Some((b'\n', body)) = rest[space + 1..len].split_last() else {
            return Err(bad("the record does not end with a newline".to_owned()));
        };
        let eq = body.iter().position(|&b| b == b'=').ok_or_else(|| bad("the record has no '='".to_owned()))?;
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        // An empty value cancels the key: the header field applies again.
        let text = || (!value.is_empty()).then(|| value.to_vec());
        let invalid = || bad(format!("invalid {} \"{}\"", key.escape_ascii(), value.escape_ascii()));
        let number = || if value.is_empty() { Ok(None) } else { parse_decimal(value).map(Some).ok_or_else(invalid) };
        match key {
            b"path" => ext.path = text(),
            b"linkpath" => ext.linkpath = text(),
            b"size" => ext.size = number()?,
            b"uid" => ext.uid = number()?,
            b"gid" => ext.gid = number()?,
            b"mtime" => {
                ext.mtime = if value.is_empty() { None } else { Some(parse_pax_time(value).ok_or_else(invalid)?) }
            }
            _ => {}
        }
        pos += len;
    }
    Ok(())
}

/// `raw` as a relative path without `.` components and repeated or trailing slashes, or why it is
/// not a safe relative path.
fn normalize(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.is_empty() {
        return Err("empty path");
    }
    if raw.contains(&0) {
        return Err("it holds a NUL byte");
    }
    if raw[0] == b'/' {
        return Err("absolute path");
    }
    let mut clean = Vec::with_capacity(raw.len());
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("it has a '..' component"),
            _ => {
                if !clean.is_empty() {
                    clean.push(b'/');
                }
                clean.extend_from_slice(part);
            }
        }
    }
    Ok(clean)
}

fn invalid_path(raw: &[u8], offset: u64, reason: &'static str) -> TarError {
    TarError::InvalidPath { offset, path: String::from_utf8_lossy(raw).into_owned(), reason }
}

fn clean_path(raw: &[u8], offset: u64) -> Result<PathBuf, TarError> {
    let clean = normalize(raw).map_err(|reason| invalid_path(raw, offset, reason))?;
    Ok(PathBuf::from(OsString::from_vec(clean)))
}

/// The fields of one header block, encoded by [`RawHeader::encode`].
#[derive(Clone, Copy, Debug)]
struct RawHeader<'p> {
    name: &'p [u8],
    prefix: &'p [u8],
    typeflag: u8,
    mode: u32,
    mtime: i64,
    size: u64,
    link: &'p [u8],
}

impl RawHeader<'_> {
    /// A POSIX ustar header block. Names and links longer than their fields are cut; numbers too
    /// large for octal are written in base-256.
    fn encode(&self) -> [u8; BLOCK_SIZE] {
        let mut block = [0u8; BLOCK_SIZE];
        put_bytes(&mut block[NAME], self.name);
        put_number(&mut block[MODE], i128::from(self.mode & 0o7777));
        put_number(&mut block[UID], 0);
        put_number(&mut block[GID], 0);
        put_number(&mut block[SIZE], i128::from(self.size));
        put_number(&mut block[MTIME], i128::from(self.mtime));
        block[TYPEFLAG] = self.typeflag;
        put_bytes(&mut block[LINKNAME], self.link);
        block[MAGIC].copy_from_slice(USTAR_MAGIC);
        block[VERSION].copy_from_slice(b"00");
        put_number(&mut block[DEVMAJOR], 0);
        put_number(&mut block[DEVMINOR], 0);
        put_bytes(&mut block[PREFIX], self.prefix);
        block[CHKSUM].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[CHKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }
}

fn put_bytes(field: &mut [u8], bytes: &[u8]) {
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
}

/// Octal digits filling the field but for a final NUL, or base-256 when the value does not fit.
fn put_number(field: &mut [u8], value: i128) {
    let digits = field.len() - 1;
    if (0..1i128 << (3 * digits)).contains(&value) {
        field[..digits].copy_from_slice(format!("{value:0digits$o}").as_bytes());
        field[digits] = 0;
    } else {
        field.copy_from_slice(&value.to_be_bytes()[16 - field.len()..]);
        field[0] |= 0x80;
    }
}

/// Splits `path` into the ustar `prefix` and `name` fields, if it fits.
fn split_ustar_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= NAME.len() {
        return Some((&path[..0], path));
    }
    (1..path.len().min(PREFIX.len() + 1))
        .filter(|&i| path[i] == b'/')
        .find(|&i| (1..=NAME.len()).contains(&(path.len() - i - 1)))
        .map(|i| (&path[..i], &path[i + 1..]))
}

/// Appends one `LEN key=value\n` pax record, `LEN` counting the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base;
    loop {
        let total = base + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The header blocks of a member: a pax extended header when needed, then its ustar header.
fn member_headers(path: &[u8], typeflag: u8, mode: u32, mtime: i64, size: u64, link: &[u8]) -> Vec<u8> {
    let mut records = Vec::new();
    if std::str::from_utf8(path).is_err() || std::str::from_utf8(link).is_err() {
        pax_record(&mut records, "hdrcharset", b"BINARY");
    }
    let (prefix, name) = split_ustar_path(path).unwrap_or_else(|| {
        pax_record(&mut records, "path", path);
        (&path[..0], path)
    });
    if link.len() > LINKNAME.len() {
        pax_record(&mut records, "linkpath", link);
    }
    if size > MAX_OCTAL_11 {
        pax_record(&mut records, "size", size.to_string().as_bytes());
    }
    if !(0..=MAX_OCTAL_11 as i64).contains(&mtime) {
        pax_record(&mut records, "mtime", mtime.to_string().as_bytes());
    }
    let mut out = Vec::with_capacity(3 * BLOCK_SIZE + records.len());
    if !records.is_empty() {
        let base = path.rsplit(|&b| b == b'/').find(|part| !part.is_empty()).unwrap_or(b"member");
        let pax_name = [&b"PaxHeaders/"[..], base].concat();
        let pax = RawHeader {
            name: &pax_name,
            prefix: &[],
            typeflag: b'x',
            mode: 0o644,
            mtime: mtime.clamp(0, MAX_OCTAL_11 as i64),
            size: records.len() as u64,
            link: &[],
        };
        out.extend_from_slice(&pax.encode());
        out.extend_from_slice(&records);
        out.extend_from_slice(&ZEROS[..padding(records.len() as u64)]);
    }
    out.extend_from_slice(&RawHeader { name, prefix, typeflag, mode, mtime, size, link }.encode());
    out
}

/// Writes a tar archive: POSIX ustar members, with pax extended headers for long paths, long
/// symbolic link targets, sizes of 8 GiB or more and times before 1970 or after 2242. Owners are
/// written as uid and gid 0, without names.
///
/// Call [`finish`](TarWriter::finish) to write the end-of-archive marker. After an error the
/// archive is unusable.
pub struct TarWriter<W: Write> {
    inner: W,
}

impl<W: Write> fmt::Debug for TarWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TarWriter").finish_non_exhaustive()
    }
}

/// `path` as the bytes of a safe relative archive path.
fn archive_path(path: &Path) -> io::Result<Vec<u8>> {
    match normalize(path.as_os_str().as_bytes()) {
        Ok(clean) if !clean.is_empty() => Ok(clean),
        Ok(_) => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("tar member path {} is empty", path.display())))
        }
        Err(reason) => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("tar member path {}: {reason}", path.display())))
        }
    }
}

impl<W: Write> TarWriter<W> {
    /// A writer of an archive into `inner` (wrap files in a `BufWriter`: headers are written
    /// with small writes).
    pub fn new(inner: W) -> TarWriter<W> {
        TarWriter { inner }
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The writer, mutably (writing to it directly breaks the archive).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Appends a regular file of `size` bytes read from `reader` (bytes after the first `size`
    /// are not read), with permission bits `mode` and modification time `mtime` (seconds since
    /// the Unix epoch).
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] when `path` is empty, absolute or has a `..` component;
    /// [`io::ErrorKind::UnexpectedEof`] when `reader` ends before `size` bytes; the errors of
    /// `reader` and the underlying writer.
    pub fn append_file(
        &mut self,
        path: impl AsRef<Path>,
        mode: u32,
        mtime: i64,
        size: u64,
        reader: impl Read,
    ) -> io::Result<()> {
        let path = archive_path(path.as_ref())?;
        self.inner.write_all(&member_headers(&path, b'0', mode, mtime, size, &[]))?;
        let copied = io::copy(&mut reader.take(size), &mut self.inner)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: the reader ended after {copied} of {size} bytes", String::from_utf8_lossy(&path)),
            ));
        }
        self.inner.write_all(&ZEROS[..padding(size)])
    }

    /// Appends a directory.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] when `path` is empty, absolute or has a `..` component;
    /// the errors of the underlying writer.
    pub fn append_dir(&mut self, path: impl AsRef<Path>, mode: u32, mtime: i64) -> io::Result<()> {
        let mut path = archive_path(path.as_ref())?;
        path.push(b'/');
        self.inner.write_all(&member_headers(&path, b'5', mode, mtime, 0, &[]))
    }

    /// Appends a symbolic link to `target`, written unchanged (it may be absolute), with mode
    /// `0o777`.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] when `path` is empty, absolute or has a `..` component, or
    /// `target` is empty; the errors of the underlying writer.
    pub fn append_symlink(&mut self, path: impl AsRef<Path>, target: impl AsRef<Path>, mtime: i64) -> io::Result<()> {
        let path = archive_path(path.as_ref())?;
        let target = target.as_ref().as_os_str().as_bytes();
        if target.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("empty symbolic link target for {}", String::from_utf8_lossy(&path)),
            ));
        }
        self.inner.write_all(&member_headers(&path, b'2', 0o777, mtime, 0, target))
    }

    /// Writes the end-of-archive marker, flushes, and returns the underlying writer.
    ///
    /// # Errors
    /// The errors of the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.end()?;
        Ok(self.inner)
    }

    /// Writes the end-of-archive marker and flushes, keeping the writer (to look at it when
    /// that failed). Nothing may be appended after.
    ///
    /// # Errors
    /// The errors of the underlying writer.
    pub fn end(&mut self) -> io::Result<()> {
        self.inner.write_all(&ZEROS)?;
        self.inner.write_all(&ZEROS)?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use proptest::prelude::*;

    use super::*;

    /// A member as written and as expected back.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Spec {
        File { path: String, mode: u32, mtime: i64, data: Vec<u8> },
        Dir { path: String, mode: u32, mtime: i64 },
        Symlink { path: String, target: String, mtime: i64 },
    }

    fn write_specs(specs: &[Spec]) -> Vec<u8> {
        let mut writer = TarWriter::new(Vec::new());
        for spec in specs {
            match spec {
                Spec::File { path, mode, mtime, data } => {
                    writer.append_file(path, *mode, *mtime, data.len() as u64, &data[..]).unwrap()
                }
                Spec::Dir { path, mode, mtime } => writer.append_dir(path, *mode, *mtime).unwrap(),
                Spec::Symlink { path, target, mtime } => writer.append_symlink(path, target, *mtime).unwrap(),
            }
        }
        writer.finish().unwrap()
    }

    /// Checks the order of events and collects the members.
    #[derive(Default)]
    struct Collector {
        members: Vec<(TarEntry, Vec<u8>)>,
        open: bool,
        ended: bool,
    }

    impl Collector {
        fn event(&mut self, event: TarEvent<'_>) {
            assert!(!self.ended, "{event:?} after the end of the archive");
            match event {
                TarEvent::Entry(entry) => {
                    assert!(!self.open, "entry {entry:?} inside another one");
                    self.members.push((entry, Vec::new()));
                    self.open = true;
                }
                TarEvent::Data(data) => {
                    assert!(self.open && !data.is_empty());
                    self.members.last_mut().unwrap().1.extend_from_slice(data);
                }
                TarEvent::EndOfEntry => {
                    assert!(self.open);
                    let (entry, data) = self.members.last().unwrap();
                    assert_eq!(entry.size, data.len() as u64, "{entry:?}");
                    self.open = false;
                }
                TarEvent::EndOfArchive => {
                    assert!(!self.open);
                    self.ended = true;
                }
            }
        }
    }

    /// Parses `bytes` in chunks of the sizes in `sizes`, cycling, and checks the end.
    fn parse_split(parser: TarParser, bytes: &[u8], sizes: &[usize]) -> Result<Vec<(TarEntry, Vec<u8>)>, TarError> {
        let mut parser = parser;
        let mut collector = Collector::default();
        let mut rest = bytes;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
            rest = tail;
            parser.feed(chunk, |event| {
                collector.event(event);
                Ok::<(), TarError>(())
            })?;
        }
        parser.finish()?;
        assert_eq!(collector.ended, parser.is_at_end());
        Ok(collector.members)
    }

    /// Whole and split parses agree; an error names an offset within the input.
    fn check_split_invariance(bytes: &[u8], size: usize) -> std::result::Result<(), TestCaseError> {
        let whole = parse_split(TarParser::new(), bytes, &[bytes.len().max(1)]);
        let split = parse_split(TarParser::new(), bytes, &[size]);
        match (&whole, &split) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => {
                prop_assert_eq!(a.to_string(), b.to_string());
                if let Some(offset) = a.offset() {
                    prop_assert!(offset <= bytes.len() as u64, "{} for {} bytes", a, bytes.len());
                    prop_assert!(a.to_string().contains(&format!("at byte {offset}")), "{}", a);
                }
            }
            _ => prop_assert!(
                false,
                "whole: {:?}, split every {} bytes: {:?}",
                whole.as_ref().err(),
                size,
                split.as_ref().err()
            ),
        }
        Ok(())
    }

    /// Where each member of a well-formed archive ends (its header, extended headers before
    /// it, and data blocks), in order, read from the archive's own headers.
    fn member_ends(archive: &[u8]) -> Vec<u64> {
        let mut ends = Vec::new();
        let mut pos = 0usize;
        while pos + 512 <= archive.len() {
            let block = &archive[pos..pos + 512];
            if block.iter().all(|&b| b == 0) {
                break;
            }
            let size = u64::try_from(parse_numeric(&block[124..136]).unwrap_or(0)).unwrap_or(0);
            let kind = block[156];
            pos += 512 + usize::try_from(size.div_ceil(512) * 512).unwrap_or(usize::MAX / 2);
            // Extended headers (pax 'x'/'g', GNU 'L'/'K') belong to the member that follows.
            if !matches!(kind, b'x' | b'g' | b'L' | b'K') {
                ends.push(pos as u64);
            }
        }
        ends
    }

    fn check_members(members: &[(TarEntry, Vec<u8>)], specs: &[Spec]) {
        assert_eq!(members.len(), specs.len());
        for ((entry, data), spec) in members.iter().zip(specs) {
            match spec {
                Spec::File { path, mode, mtime, data: expected } => {
                    assert_eq!(entry.path, Path::new(path));
                    assert_eq!(entry.kind, EntryKind::File);
                    assert_eq!((entry.mode, entry.mtime, entry.size), (*mode & 0o7777, *mtime, expected.len() as u64));
                    assert!(data == expected, "contents of {path}");
                }
                Spec::Dir { path, mode, mtime } => {
                    assert_eq!(entry.path, Path::new(path));
                    assert_eq!(entry.kind, EntryKind::Directory);
                    assert_eq!((entry.mode, entry.mtime, entry.size), (*mode, *mtime, 0));
                    assert!(data.is_empty());
                }
                Spec::Symlink { path, target, mtime } => {
                    assert_eq!(entry.path, Path::new(path));
                    assert_eq!(entry.kind, EntryKind::Symlink { target: target.into() });
                    assert_eq!((entry.mode, entry.mtime, entry.size), (0o777, *mtime, 0));
                }
            }
            assert_eq!((entry.uid, entry.gid), (0, 0));
        }
    }

    /// Deterministic pseudo-random bytes.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn sample_specs() -> Vec<Spec> {
        let file =
            |path: &str, data: Vec<u8>| Spec::File { path: path.to_owned(), mode: 0o600, mtime: 1_700_000_000, data };
        let long_dir = "d".repeat(120);
        vec![
            Spec::Dir { path: "base".into(), mode: 0o700, mtime: 1_700_000_000 },
            file("base/1/PG_VERSION", b"17\n".to_vec()),
            file("empty", Vec::new()),
            file("exact512", noise(512, 1)),
            file("511", noise(511, 2)),
            file("513", noise(513, 3)),
            file("1024", noise(1024, 4)),
            Spec::Dir { path: format!("long/{long_dir}"), mode: 0o755, mtime: 0 },
            // Splits into the ustar prefix and name.
            file(&format!("long/{long_dir}/file"), noise(700, 5)),
            // A component over 100 bytes after the last slash: pax.
            file(&format!("long/{}", "n".repeat(150)), noise(10, 6)),
            // Over 255 bytes: pax.
            file(
                &format!("{}/{}/{}/{}/file", "a".repeat(70), "b".repeat(70), "c".repeat(70), "e".repeat(70)),
                noise(3000, 7),
            ),
            Spec::Symlink {
                path: "pg_tblspc/16384".into(),
                target: "/var/lib/tablespace".into(),
                mtime: 1_700_000_001,
            },
            Spec::Symlink { path: "longlink".into(), target: format!("/{}", "t/".repeat(90)), mtime: 5 },
            Spec::File { path: "old".into(), mode: 0o4755, mtime: -86_400 * 365, data: noise(20, 8) },
            Spec::File { path: "future".into(), mode: 0o644, mtime: 1 << 40, data: noise(20_000, 9) },
        ]
    }

    #[test]
    fn round_trip_every_chunk_size() {
        let specs = sample_specs();
        let archive = write_specs(&specs);
        for size in 1..=700 {
            let members = parse_split(TarParser::new(), &archive, &[size]).unwrap();
            check_members(&members, &specs);
        }
        check_members(&TarParser::new().parse_all(&archive).unwrap(), &specs);
    }

    #[test]
    fn data_is_passed_through_not_copied() {
        let archive = write_specs(&sample_specs());
        let range = archive.as_ptr_range();
        let mut parser = TarParser::new();
        let mut data_events = 0;
        parser
            .feed(&archive, |event| {
                if let TarEvent::Data(data) = event {
                    let inside = data.as_ptr_range();
                    assert!(range.start <= inside.start && inside.end <= range.end);
                    data_events += 1;
                }
                Ok::<(), TarError>(())
            })
            .unwrap();
        parser.finish().unwrap();
        // One slice per non-empty file.
        assert_eq!(data_events, 10);
    }

    fn arb_path() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,59}", 1..7).prop_map(|parts| parts.join("/"))
    }

    fn arb_spec() -> impl Strategy<Value = Spec> {
        let mtime = prop_oneof![0i64..2_000_000_000, any::<i64>().prop_map(|t| t >> 20)];
        let data = prop_oneof![Just(0usize), Just(512), Just(1024), 0usize..2048,]
            .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len));
        prop_oneof![
            (arb_path(), 0u32..0o10000, mtime.clone(), data).prop_map(|(path, mode, mtime, data)| Spec::File {
                path,
                mode,
                mtime,
                data
            }),
            (arb_path(), 0u32..0o10000, mtime.clone()).prop_map(|(path, mode, mtime)| Spec::Dir { path, mode, mtime }),
            (arb_path(), "[a-z/. ]{0,199}[a-z]", mtime).prop_map(|(path, target, mtime)| Spec::Symlink {
                path,
                target,
                mtime
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip_random_splits(
            specs in prop::collection::vec(arb_spec(), 0..10),
            sizes in prop::collection::vec(1usize..1500, 1..40),
        ) {
            let archive = write_specs(&specs);
            let members = parse_split(TarParser::new(), &archive, &sizes).unwrap();
            check_members(&members, &specs);
        }

        /// Arbitrary bytes: the same members or the same error however the input is split, and
        /// an error names an offset inside the input.
        #[test]
        fn arbitrary_bytes_parse_the_same_however_split(bytes in prop::collection::vec(any::<u8>(), 0..3000), size in 1usize..600) {
            check_split_invariance(&bytes, size)?;
        }

        /// A valid archive with one byte changed: as above, and the members that end before
        /// the damaged byte come out exactly as written, or the error is at or before it (a
        /// header whose checksum fails is refused before its member is returned).
        #[test]
        fn damaged_archives_parse_the_same_however_split(at in 0usize..4096, byte in any::<u8>(), size in 1usize..600) {
            let specs = sample_specs();
            let original = write_specs(&specs);
            let mut archive = original.clone();
            let at = at % archive.len();
            archive[at] = byte;
            check_split_invariance(&archive, size)?;
            // The members wholly before the damage (their header and data blocks) are intact.
            let whole = parse_split(TarParser::new(), &original, &[original.len()]).unwrap();
            let mut streamed = Vec::new();
            let mut parser = TarParser::new();
            let mut collector = Collector::default();
            let result = parser.feed(&archive, |event| {
                collector.event(event);
                Ok::<(), TarError>(())
            });
            streamed.extend(collector.members.iter().cloned());
            let intact = member_ends(&original).iter().take_while(|&&end| end <= at as u64).count();
            match result {
                Ok(()) => {
                    for (i, m) in whole.iter().take(intact).enumerate() {
                        prop_assert_eq!(streamed.get(i), Some(m), "member {} before the damage at {}", i, at);
                    }
                }
                Err(e) => {
                    // The members before the damage came out before the error, which is at
                    // or after the end of the last of them.
                    prop_assert!(streamed.len() >= intact, "{} of {} intact members before: {}", streamed.len(), intact, e);
                    for (i, m) in streamed.iter().enumerate().take(intact) {
                        prop_assert_eq!(m, &whole[i]);
                    }
                    if let Some(offset) = e.offset() {
                        prop_assert!(offset <= archive.len() as u64, "{}", e);
                        if intact > 0 {
                            let last_end = member_ends(&original)[intact - 1];
                            prop_assert!(offset >= last_end, "{} before the end of an intact member at {}", e, last_end);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn numbers() {
        for value in [0i128, 1, 0o777, MAX_OCTAL_11 as i128, MAX_OCTAL_11 as i128 + 1, 1 << 62, -1, -86_400] {
            let mut field = [0u8; 12];
            put_number(&mut field, value);
            assert_eq!(parse_numeric(&field), Some(value), "{field:?}");
        }
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"   644 \0"), Some(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b"0000649\0"), None);
        assert_eq!(parse_numeric(b"00x0644\0"), None);
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1]), Some((2 << 32) + 1));
        assert_eq!(parse_pax_time(b"1700000000.5"), Some(1_700_000_000));
        assert_eq!(parse_pax_time(b"-1.5"), Some(-2));
        assert_eq!(parse_pax_time(b"-7"), Some(-7));
        assert_eq!(parse_pax_time(b"1.x"), None);
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for len in [0, 1, 5, 88, 89, 90, 91, 994, 995, 996, 997, 9990, 9995] {
            let mut record = Vec::new();
            pax_record(&mut record, "path", &vec![b'p'; len]);
            let space = record.iter().position(|&b| b == b' ').unwrap();
            let declared: usize = std::str::from_utf8(&record[..space]).unwrap().parse().unwrap();
            assert_eq!(declared, record.len());
            let mut ext = Extensions::default();
            parse_pax(&record, 0, &mut ext).unwrap();
            assert_eq!(ext.path, (len > 0).then(|| vec![b'p'; len]));
        }
    }

    #[test]
    fn sizes_beyond_octal() {
        for size in [MAX_OCTAL_11, MAX_OCTAL_11 + 1, 10 << 30] {
            let headers = member_headers(b"big", b'0', 0o600, 1, size, &[]);
            assert_eq!(headers.len(), if size > MAX_OCTAL_11 { 3 * BLOCK_SIZE } else { BLOCK_SIZE });
            let mut parser = TarParser::new();
            let mut entries = Vec::new();
            parser
                .feed(&headers, |event| {
                    entries.push(event);
                    Ok::<(), TarError>(())
                })
                .unwrap();
            let [TarEvent::Entry(entry)] = &entries[..] else { panic!("{entries:?}") };
            assert_eq!((entry.size, entry.path.as_path()), (size, Path::new("big")));
            parser.feed(&[7; 1000][..], |_| Ok::<(), TarError>(())).unwrap();
            assert!(matches!(parser.finish(), Err(TarError::Truncated { .. })));
        }
        // A GNU base-256 size without pax.
        let block =
            RawHeader { name: b"gnu", prefix: b"", typeflag: b'0', mode: 0o600, mtime: 0, size: 1 << 40, link: b"" }
                .encode();
        assert_eq!(block[SIZE.start], 0x80);
        let mut parser = TarParser::new();
        let mut size = 0;
        parser
            .feed(&block, |event| {
                if let TarEvent::Entry(entry) = event {
                    size = entry.size;
                }
                Ok::<(), TarError>(())
            })
            .unwrap();
        assert_eq!(size, 1 << 40);
    }

    /// A header block with fields chosen by the test, and its checksum made right.
    fn raw_block(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; BLOCK_SIZE] {
        RawHeader { name, prefix: b"", typeflag, mode: 0o644, mtime: 0, size, link }.encode()
    }

    fn fix_checksum(block: &mut [u8]) {
        block[CHKSUM].fill(b' ');
        let sum: u32 = block[..BLOCK_SIZE].iter().map(|&b| u32::from(b)).sum();
        block[CHKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    fn archive_of(blocks: &[&[u8]]) -> Vec<u8> {
        let mut out: Vec<u8> = blocks.concat();
        out.extend_from_slice(&[0; 2 * BLOCK_SIZE]);
        out
    }

    #[test]
    fn bad_checksum_names_the_header() {
        let archive = write_specs(&sample_specs());
        // The first member is a directory: the second header starts at 512.
        for (at, header) in [(0, 0), (10, 0), (148, 0), (512 + 3, 512), (512 + 511, 512)] {
            let mut damaged = archive.clone();
            damaged[at] ^= 0x01;
            let error = parse_split(TarParser::new(), &damaged, &[100]).unwrap_err();
            assert!(matches!(error, TarError::BadChecksum { offset, .. } if offset == header), "{error:?}");
            assert!(error.to_string().contains(&format!("at byte {header}")), "{error}");
            assert_eq!(error.offset(), Some(header));
        }
    }

    #[test]
    fn signed_checksums_are_accepted() {
        let mut block = raw_block("caf\u{e9}".as_bytes(), b'0', 0, b"");
        block[CHKSUM].fill(b' ');
        let sum: i64 = block.iter().map(|&b| i64::from(b as i8)).sum();
        block[CHKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let members = TarParser::new().parse_all(&archive_of(&[&block])).unwrap();
        assert_eq!(members[0].0.path, Path::new("caf\u{e9}"));
    }

    #[test]
    fn bad_numbers() {
        let mut block = raw_block(b"file", b'0', 5, b"");
        block[SIZE].copy_from_slice(b"0000000000x\0");
        fix_checksum(&mut block);
        let error = TarParser::new().parse_all(&archive_of(&[&block])).unwrap_err();
        assert!(matches!(error, TarError::BadNumber { offset: 0, field: "size", .. }), "{error:?}");
        assert!(error.to_string().contains("0000000000x"), "{error}");
    }

    #[test]
    fn truncated_streams() {
        let specs = vec![
            Spec::Dir { path: "dir".into(), mode: 0o700, mtime: 0 },
            Spec::File { path: "dir/file".into(), mode: 0o600, mtime: 0, data: noise(1000, 1) },
        ];
        let archive = write_specs(&specs);
        let cases: [(usize, &str); 6] = [
            (100, "in the header at byte 0"),
            (512 + 300, "in the header at byte 512"),
            (1024 + 10, "in the data of dir/file, 990 bytes short"),
            (1024 + 1000, "in the padding after a member, 24 bytes short"),
            (2048 + 100, "in the header at byte 2048"),
            (2048 + 512, "in the end-of-archive marker"),
        ];
        for (len, what) in cases {
            for size in [1, 7, 512, 4096] {
                let error = parse_split(TarParser::new(), &archive[..len], &[size]).unwrap_err();
                assert!(matches!(&error, TarError::Truncated { offset, .. } if *offset == len as u64), "{error:?}");
                assert!(error.to_string().contains(what), "{error} does not say {what}");
            }
        }
        // Without the end-of-archive marker.
        let error = parse_split(TarParser::new(), &archive[..2048], &[333]).unwrap_err();
        assert!(matches!(error, TarError::MissingEndMarker { offset: 2048 }), "{error:?}");
        for len in [2048, 2048 + 512] {
            let members = parse_split(TarParser::new().require_end_marker(false), &archive[..len], &[333]).unwrap();
            check_members(&members, &specs);
        }
        let error =
            parse_split(TarParser::new().require_end_marker(false), &archive[..2048 + 100], &[333]).unwrap_err();
        assert!(matches!(error, TarError::Truncated { .. }), "{error:?}");
        // Empty stream.
        assert!(matches!(TarParser::new().finish(), Err(TarError::MissingEndMarker { offset: 0 })));
        TarParser::new().require_end_marker(false).finish().unwrap();
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        for name in [&b"../etc/passwd"[..], b"/etc/passwd", b"a/../../b", b"./..", b"a/.."] {
            let block = raw_block(name, b'0', 0, b"");
            let error = TarParser::new().parse_all(&archive_of(&[&block])).unwrap_err();
            assert!(matches!(error, TarError::InvalidPath { offset: 0, .. }), "{error:?}");
        }
        // The same through pax and GNU long names, and as hard link targets.
        let mut pax = Vec::new();
        pax_record(&mut pax, "path", b"../../x");
        let pax_block = raw_block(b"PaxHeaders/x", b'x', pax.len() as u64, b"");
        let mut padded = pax.clone();
        padded.resize(BLOCK_SIZE, 0);
        let file = raw_block(b"x", b'0', 0, b"");
        let error = TarParser::new().parse_all(&archive_of(&[&pax_block, &padded, &file])).unwrap_err();
        assert!(matches!(error, TarError::InvalidPath { offset: 1024, .. }), "{error:?}");
        let long = raw_block(b"././@LongLink", b'L', 12, b"");
        let mut name = b"/etc/shadow\0".to_vec();
        name.resize(BLOCK_SIZE, 0);
        let error = TarParser::new().parse_all(&archive_of(&[&long, &name, &file])).unwrap_err();
        assert!(matches!(error, TarError::InvalidPath { .. }), "{error:?}");
        let hardlink = raw_block(b"x", b'1', 0, b"/etc/passwd");
        let error = TarParser::new().parse_all(&archive_of(&[&hardlink])).unwrap_err();
        assert!(matches!(error, TarError::InvalidPath { .. }), "{error:?}");
        // A file cannot be the archive root.
        let root_file = raw_block(b"./", b'7', 0, b"");
        let error = TarParser::new().parse_all(&archive_of(&[&root_file])).unwrap_err();
        assert!(matches!(error, TarError::InvalidPath { .. }), "{error:?}");
        // The writer refuses them too.
        let mut writer = TarWriter::new(Vec::new());
        for path in ["../x", "/x", "", ".", "a/../b"] {
            let error = writer.append_file(path, 0o600, 0, 0, io::empty()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{path}");
        }
        assert!(writer.get_ref().is_empty());
    }

    #[test]
    fn paths_are_normalized() {
        let names: [(&[u8], u8, &str, EntryKind); 5] = [
            (b"./", b'5', "", EntryKind::Directory),
            (b"./base/", b'5', "base", EntryKind::Directory),
            (b".//base/./1//file", b'0', "base/1/file", EntryKind::File),
            (b"olddir/", 0, "olddir", EntryKind::Directory),
            (b"fifo", b'6', "fifo", EntryKind::Other(b'6')),
        ];
        for (name, typeflag, path, kind) in names {
            let block = raw_block(name, typeflag, 0, b"");
            let members = TarParser::new().parse_all(&archive_of(&[&block])).unwrap();
            assert_eq!((members[0].0.path.as_path(), &members[0].0.kind), (Path::new(path), &kind));
        }
        // Directories and links carry no data whatever their size field says.
        let dir = raw_block(b"dir", b'5', 4096, b"");
        let members = TarParser::new().parse_all(&archive_of(&[&dir])).unwrap();
        assert_eq!(members[0].0.size, 0);
    }

    #[test]
    fn pax_and_gnu_extensions() {
        let mut pax = Vec::new();
        pax_record(&mut pax, "mtime", b"1700000000.123456789");
        pax_record(&mut pax, "comment", b"with = and \n inside");
        pax_record(&mut pax, "size", b"3");
        pax_record(&mut pax, "uid", b"4000000000");
        pax_record(&mut pax, "path", b"from/pax");
        let mut pax_data = pax.clone();
        pax_data.resize(BLOCK_SIZE, 0);
        let mut global = Vec::new();
        pax_record(&mut global, "path", b"ignored");
        global.resize(BLOCK_SIZE, 0);
        let long_link = raw_block(b"././@LongLink", b'K', 9, b"");
        let mut link_data = b"from/gnu\0".to_vec();
        link_data.resize(BLOCK_SIZE, 0);
        let mut file_data = b"abc".to_vec();
        file_data.resize(BLOCK_SIZE, 0);
        let archive = archive_of(&[
            &raw_block(b"pax_global_header", b'g', 30, b""),
            &global,
            &raw_block(b"PaxHeaders/x", b'x', pax.len() as u64, b""),
            &pax_data,
            &raw_block(b"short", b'0', 0, b""),
            &file_data,
            &long_link,
            &link_data,
            &raw_block(b"hard", b'1', 0, b"short"),
        ]);
        for size in [1, 100, 512, 10_000] {
            let members = parse_split(TarParser::new(), &archive, &[size]).unwrap();
            assert_eq!(members.len(), 2);
            let (file, data) = &members[0];
            assert_eq!(
                (file.path.as_path(), file.size, file.mtime, file.uid),
                (Path::new("from/pax"), 3, 1_700_000_000, 4_000_000_000)
            );
            assert_eq!((file.header_offset, &data[..]), (2048, &b"abc"[..]));
            assert_eq!(members[1].0.kind, EntryKind::Hardlink { target: "from/gnu".into() });
        }
        // Limits, malformed records, extensions without a member.
        let big = raw_block(b"PaxHeaders/x", b'x', 2 << 20, b"");
        let error = TarParser::new().parse_all(&archive_of(&[&big])).unwrap_err();
        assert!(matches!(error, TarError::ExtensionTooLarge { offset: 0, size, .. } if size == 2 << 20), "{error:?}");
        let error = TarParser::new().extension_limit(10).parse_all(&archive).unwrap_err();
        assert!(matches!(error, TarError::ExtensionTooLarge { offset: 1024, .. }), "{error:?}");
        for bad in [&b"5 a=b\n"[..], b"x path=a\n", b"99 path=a\n", b"10 path=ab", b"8 patha\n", b"11 size=1x\n"] {
            let mut data = bad.to_vec();
            data.resize(BLOCK_SIZE, 0);
            let header = raw_block(b"PaxHeaders/x", b'x', bad.len() as u64, b"");
            let error = TarParser::new().parse_all(&archive_of(&[&header, &data])).unwrap_err();
            assert!(matches!(error, TarError::BadPax { offset: 512, .. }), "{bad:?}: {error:?}");
        }
        let header = raw_block(b"PaxHeaders/x", b'x', pax.len() as u64, b"");
        let error = TarParser::new().parse_all(&archive_of(&[&header, &pax_data])).unwrap_err();
        assert!(matches!(error, TarError::DanglingExtension { offset: 0 }), "{error:?}");
        let error = parse_split(TarParser::new(), &[&header[..], &pax_data[..]].concat(), &[512]).unwrap_err();
        assert!(error.to_string().contains("after the extended header at byte 0"), "{error}");
    }

    #[test]
    fn end_of_archive() {
        let archive = write_specs(&sample_specs());
        let mut padded = archive.clone();
        padded.resize(archive.len().next_multiple_of(10240) + 10240, 0);
        parse_split(TarParser::new(), &padded, &[1000]).unwrap();
        let mut trailing = padded.clone();
        let at = archive.len() + 700;
        trailing[at] = 1;
        let error = parse_split(TarParser::new(), &trailing, &[1000]).unwrap_err();
        assert!(matches!(error, TarError::TrailingData { offset } if offset == at as u64), "{error:?}");
        // A zero block, then a header.
        let block = raw_block(b"file", b'0', 0, b"");
        let error = TarParser::new().parse_all(&archive_of(&[&block, &ZEROS, &block])).unwrap_err();
        assert!(matches!(error, TarError::LoneZeroBlock { offset: 512 }), "{error:?}");
    }

    #[test]
    fn errors_stop_the_parser() {
        let archive = write_specs(&sample_specs());
        let mut parser = TarParser::new();
        let mut events = 0;
        let result = parser.feed(&archive, |event| {
            events += 1;
            match event {
                TarEvent::Data(_) => Err(TarError::sink(io::Error::other("disk full"))),
                _ => Ok(()),
            }
        });
        let error = result.unwrap_err();
        assert!(matches!(error, TarError::Sink(_)) && error.to_string().contains("disk full"), "{error}");
        assert_eq!(events, 4, "stopped at the first data");
        let again = parser.feed(&archive, |_| Ok::<(), TarError>(())).unwrap_err();
        assert!(matches!(again, TarError::Failed { .. }), "{again:?}");
        assert!(matches!(parser.finish(), Err(TarError::Failed { .. })));
    }

    // Interoperability with GNU tar.

    fn gnu_tar() -> Option<()> {
        let output = Command::new("tar").arg("--version").output().ok()?;
        let version = String::from_utf8_lossy(&output.stdout);
        if version.contains("GNU tar") {
            Some(())
        } else {
            eprintln!("skipping: `tar` is not GNU tar");
            None
        }
    }

    /// What a file system tree holds, by relative path.
    #[derive(Debug, PartialEq, Eq)]
    enum Node {
        File(Vec<u8>),
        Dir,
        Symlink(PathBuf),
    }

    fn read_tree(root: &Path) -> BTreeMap<PathBuf, Node> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let relative = path.strip_prefix(root).unwrap().to_owned();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_symlink() {
                    out.insert(relative, Node::Symlink(fs::read_link(&path).unwrap()));
                } else if meta.is_dir() {
                    out.insert(relative, Node::Dir);
                    walk(root, &path, out);
                } else {
                    out.insert(relative, Node::File(fs::read(&path).unwrap()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(root, root, &mut out);
        out
    }

    /// A tree with an empty file, a 512-byte file, a larger one, nested directories, symbolic
    /// links and a hard link; with `long`, paths over 100 and 255 bytes and a long link target.
    fn build_tree(root: &Path, long: bool) {
        let write = |path: &str, data: &[u8]| {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        };
        write("a.txt", b"hello\n");
        write("empty", b"");
        write("exact512", &noise(512, 11));
        write("big.bin", &noise(100_000, 12));
        write("sub/dir/nested.txt", b"nested");
        fs::create_dir_all(root.join("emptydir")).unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/var/lib/postgresql/tablespace", root.join("abs_link")).unwrap();
        fs::hard_link(root.join("a.txt"), root.join("hard")).unwrap();
        // Fits ustar with the prefix.
        write(&format!("{}/{}", "u".repeat(90), "v".repeat(50)), &noise(1000, 13));
        if long {
            write(&format!("{}/{}", "d".repeat(120), "f".repeat(120)), &noise(2000, 14));
            let deep = ["p", "q", "r", "s", "t"].map(|c| c.repeat(60)).join("/");
            write(&format!("{deep}/file_behind_a_path_over_255_bytes"), &noise(513, 15));
            std::os::unix::fs::symlink("x/".repeat(80), root.join("long_target")).unwrap();
        }
    }

    fn check_against_tree(members: &[(TarEntry, Vec<u8>)], tree: &BTreeMap<PathBuf, Node>) {
        let mut seen = BTreeMap::new();
        for (entry, data) in members {
            if entry.path.as_os_str().is_empty() {
                assert_eq!(entry.kind, EntryKind::Directory);
                continue;
            }
            let node = tree.get(&entry.path).unwrap_or_else(|| panic!("{} is not in the tree", entry.path.display()));
            match (&entry.kind, node) {
                (EntryKind::File, Node::File(contents)) => {
                    assert!(data == contents, "contents of {}", entry.path.display());
                }
                (EntryKind::Directory, Node::Dir) => assert!(data.is_empty()),
                (EntryKind::Symlink { target }, Node::Symlink(expected)) => assert_eq!(target, expected),
                (EntryKind::Hardlink { target }, Node::File(contents)) => {
                    assert_eq!(tree.get(target), Some(&Node::File(contents.clone())), "{}", entry.path.display());
                    assert!(seen.contains_key(target), "hard link to a later member");
                }
                (kind, node) => panic!("{}: {kind:?} in the archive, {node:?} in the tree", entry.path.display()),
            }
            assert!(seen.insert(entry.path.clone(), ()).is_none(), "{} twice", entry.path.display());
        }
        assert_eq!(seen.keys().collect::<Vec<_>>(), tree.keys().collect::<Vec<_>>());
    }

    #[test]
    fn reads_gnu_tar_archives() {
        if gnu_tar().is_none() {
            return;
        }
        for (format, long) in [("gnu", true), ("pax", true), ("ustar", false), ("gnu", false)] {
            let dir = tempfile::tempdir().unwrap();
            build_tree(dir.path(), long);
            let tree = read_tree(dir.path());
            let output = Command::new("tar")
                .args(["-c", "-f", "-", &format!("--format={format}"), "-C"])
                .arg(dir.path())
                .arg(".")
                .output()
                .unwrap();
            assert!(output.status.success(), "tar: {}", String::from_utf8_lossy(&output.stderr));
            let archive = output.stdout;
            assert_eq!(archive.len() % 10240, 0);
            for sizes in [&[1][..], &[7, 512, 1, 3000], &[513], &[100_000]] {
                let members =
                    parse_split(TarParser::new(), &archive, sizes).unwrap_or_else(|e| panic!("--format={format}: {e}"));
                check_against_tree(&members, &tree);
                for (entry, _) in &members {
                    let meta = fs::symlink_metadata(dir.path().join(&entry.path)).unwrap();
                    let mtime = std::os::unix::fs::MetadataExt::mtime(&meta);
                    assert_eq!(entry.mtime, mtime, "--format={format}: {}", entry.path.display());
                }
            }
        }
    }

    #[test]
    fn gnu_tar_reads_our_archives() {
        if gnu_tar().is_none() {
            return;
        }
        let specs = sample_specs();
        let dir = tempfile::tempdir().unwrap();
        let archive_path = dir.path().join("archive.tar");
        fs::write(&archive_path, write_specs(&specs)).unwrap();

        let list = Command::new("tar").arg("-tvf").arg(&archive_path).output().unwrap();
        assert!(list.status.success(), "tar -tvf: {}", String::from_utf8_lossy(&list.stderr));
        assert!(list.stderr.is_empty(), "tar -tvf: {}", String::from_utf8_lossy(&list.stderr));
        let list = Command::new("tar").arg("-tf").arg(&archive_path).output().unwrap();
        assert!(list.status.success());
        let listed: Vec<String> =
            String::from_utf8(list.stdout).unwrap().lines().map(|line| line.trim_end_matches('/').to_owned()).collect();
        let expected: Vec<String> = specs
            .iter()
            .map(|spec| match spec {
                Spec::File { path, .. } | Spec::Dir { path, .. } | Spec::Symlink { path, .. } => path.clone(),
            })
            .collect();
        assert_eq!(listed, expected);

        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let extract = Command::new("tar")
            .arg("-xf")
            .arg(&archive_path)
            .arg("-C")
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(extract.status.success(), "tar -xf: {}", String::from_utf8_lossy(&extract.stderr));
        let tree = read_tree(&out);
        for spec in &specs {
            match spec {
                Spec::File { path, mtime, mode, data } => {
                    assert_eq!(tree.get(Path::new(path)), Some(&Node::File(data.clone())), "{path}");
                    let meta = fs::metadata(out.join(path)).unwrap();
                    if *mtime == 1_700_000_000 {
                        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&meta), *mtime, "{path}");
                    }
                    if *mode == 0o600 {
                        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777, 0o600);
                    }
                }
                Spec::Dir { path, .. } => assert_eq!(tree.get(Path::new(path)), Some(&Node::Dir), "{path}"),
                Spec::Symlink { path, target, .. } => {
                    assert_eq!(tree.get(Path::new(path)), Some(&Node::Symlink(target.into())), "{path}")
                }
            }
        }
        // Nothing else: only the parents of the members.
        for path in tree.keys() {
            assert!(
                expected.iter().any(|member| Path::new(member).starts_with(path)),
                "{} was extracted but not written",
                path.display()
            );
        }
    }
}
