//! The push decoder: bytes in (a segment file, a memory map, XLogData off the wire), records out.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use pgmoneta_core::{Lsn, PgVersion, WalSegmentSize};

use super::record::{decode_record, DecodedRecord, SIZE_OF_XLOG_RECORD};
use crate::error::{Result, WireError};

/// `XLOG_BLCKSZ`: the WAL page size.
pub const XLOG_BLCKSZ: u64 = 8192;
/// `SizeOfXLogShortPHD`, MAXALIGNed.
pub const SIZE_OF_XLOG_SHORT_PHD: u64 = 24;
/// `SizeOfXLogLongPHD`, MAXALIGNed.
pub const SIZE_OF_XLOG_LONG_PHD: u64 = 40;
/// `XLP_FIRST_IS_CONTRECORD`: the page starts with the rest of a record.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`: the page has the long header (first page of a segment).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `XLP_BKP_REMOVABLE`.
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// `XLP_FIRST_IS_OVERWRITE_CONTRECORD`: a record at the end of the previous page was abandoned.
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// Every defined `xlp_info` bit.
const XLP_ALL_FLAGS: u16 = 0x000F;
/// Records start on 8-byte boundaries.
const MAXALIGN: u64 = 8;
/// The largest record PostgreSQL writes (`XLogRecordMaxSize`, 1020 MB).
pub const XLOG_RECORD_MAX_SIZE: u32 = 1020 * 1024 * 1024;

/// `XLOG_PAGE_MAGIC` of each version.
pub fn page_magic(version: PgVersion) -> u16 {
    match version {
        PgVersion::V14 => 0xD10D,
        PgVersion::V15 => 0xD110,
        PgVersion::V16 => 0xD113,
        PgVersion::V17 => 0xD116,
        _ => 0xD118,
    }
}

/// The version whose `XLOG_PAGE_MAGIC` is `magic`.
pub fn version_of_magic(magic: u16) -> Option<PgVersion> {
    PgVersion::ALL.into_iter().find(|v| page_magic(*v) == magic)
}

fn maxalign(x: u64) -> u64 {
    x.div_ceil(MAXALIGN) * MAXALIGN
}

fn invalid(lsn: Lsn, reason: impl Into<String>) -> WireError {
    WireError::InvalidWal { lsn, reason: reason.into() }
}

/// A page header (`XLogPageHeaderData`, and the long form's extra fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XLogPageHeader {
    /// `xlp_magic`.
    pub magic: u16,
    /// `xlp_info`.
    pub info: u16,
    /// `xlp_tli`.
    pub timeline: u32,
    /// `xlp_pageaddr`.
    pub page_addr: Lsn,
    /// `xlp_rem_len`: bytes of a record continued from the previous page.
    pub rem_len: u32,
    /// `xlp_sysid`, long headers only.
    pub system_id: Option<u64>,
    /// `xlp_seg_size`, long headers only.
    pub segment_size: Option<u32>,
}

impl XLogPageHeader {
    /// The header's size, MAXALIGNed.
    pub fn size(&self) -> u64 {
        if self.info & XLP_LONG_HEADER != 0 {
            SIZE_OF_XLOG_LONG_PHD
        } else {
            SIZE_OF_XLOG_SHORT_PHD
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]])
}

/// Decodes WAL fed in any pieces into records, in order.
///
/// Start it at the beginning of a page (a segment file), at a record's position with the
/// version given, or at a record fed from its page's start ([`WalDecoder::from_page_start`]);
/// starting at a page whose first bytes continue an earlier record skips that continuation. Feed the
/// bytes that follow the start, in order, in pieces of any size; take records with
/// [`WalDecoder::next_record`] until it returns `Ok(None)`, then feed more.
#[derive(Debug)]
pub struct WalDecoder {
    version: Option<PgVersion>,
    segment_size: WalSegmentSize,
    /// Bytes fed and not yet consumed, in the pieces they came in; the first byte is at
    /// `buf_start`. Records inside one piece and one page are slices of it, not copies.
    chunks: VecDeque<Bytes>,
    /// Bytes fed by copy ([`WalDecoder::feed`]), after the chunks: small feeds gather here
    /// rather than becoming one piece each.
    tail: BytesMut,
    buf_len: usize,
    buf_start: Lsn,
    /// Where the next record starts (or where to look for it, at a page start).
    next: Lsn,
    /// At the first page: skip a continuation instead of failing on it.
    skip_continuation: bool,
    /// The previous record's position, to check `xl_prev`.
    prev: Option<Lsn>,
    /// The timeline of the last page header read.
    timeline: u32,
    /// Fed from its page's start: where the first record is, once that page's header is read.
    first_record: Option<Lsn>,
}

impl WalDecoder {
    /// A decoder for WAL starting at `start` (a page start or a record's position). `version`
    /// may be left to the first page header's magic when `start` is a page start; a decoder
    /// started at a record in the middle of a page without the version fails on the records
    /// before the next page header, whose block images it could read wrongly (the image flags
    /// differ between 14 and 15). [`WalDecoder::from_page_start`] learns it from the page.
    pub fn new(start: Lsn, version: Option<PgVersion>, segment_size: WalSegmentSize) -> WalDecoder {
        WalDecoder {
            version,
            segment_size,
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            buf_len: 0,
            buf_start: start,
            next: start,
            skip_continuation: start.0 % XLOG_BLCKSZ == 0,
            prev: None,
            timeline: 0,
            first_record: None,
        }
    }

    /// A decoder for the records from `record` on, fed from the start of the page holding it:
    /// the page header gives the version (and is checked), the bytes between it and `record`
    /// are skipped.
    pub fn from_page_start(record: Lsn, version: Option<PgVersion>, segment_size: WalSegmentSize) -> WalDecoder {
        let page = Lsn(record.0 - record.0 % XLOG_BLCKSZ);
        let mut d = WalDecoder::new(page, version, segment_size);
        d.first_record = (record != page).then_some(record);
        d
    }

    /// The version, once known.
    pub fn version(&self) -> Option<PgVersion> {
        self.version
    }

    /// Where the next record is expected.
    pub fn next_lsn(&self) -> Lsn {
        self.next
    }

    /// The timeline of the last page read.
    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// Adds the bytes that follow those fed so far.
    pub fn feed(&mut self, data: &[u8]) {
        if data.len() >= 1 << 16 {
            // Large pieces become pieces of their own, which records are sliced from.
            self.feed_bytes(Bytes::copy_from_slice(data));
        } else {
            self.tail.extend_from_slice(data);
            self.buf_len += data.len();
        }
    }

    /// Like [`WalDecoder::feed`] without copying: records that lie within one page of `data`
    /// share its memory.
    pub fn feed_bytes(&mut self, data: Bytes) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        if !data.is_empty() {
            self.buf_len += data.len();
            self.chunks.push_back(data);
        }
    }

    /// The end of the bytes fed: before any, where feeding must start (the start, or the
    /// page's start for [`WalDecoder::from_page_start`]).
    pub fn fed_until(&self) -> Lsn {
        Lsn(self.buf_start.0 + self.buf_len as u64)
    }

    /// `len` bytes at `lsn`: a slice of one piece when they lie in one, else a copy; `Ok(None)`
    /// when not all fed yet.
    fn slice(&self, lsn: u64, len: usize) -> Result<Option<Bytes>> {
        let Some(mut i) = self.byte_index(lsn)? else { return Ok(None) };
        if i + len > self.buf_len {
            return Ok(None);
        }
        let mut pieces = self.chunks.iter().map(|c| (&c[..], Some(c))).chain(std::iter::once((&self.tail[..], None)));
        let (mut chunk, owner) = loop {
            let Some((c, o)) = pieces.next() else { return Ok(None) };
            if i < c.len() {
                break (c, o);
            }
            i -= c.len();
        };
        if i + len <= chunk.len() {
            return Ok(Some(match owner {
                Some(b) => b.slice(i..i + len),
                None => Bytes::copy_from_slice(&chunk[i..i + len]),
            }));
        }
        let mut out = BytesMut::with_capacity(len);
        loop {
            let take = (chunk.len() - i).min(len - out.len());
            out.extend_from_slice(&chunk[i..i + take]);
            if out.len() == len {
                return Ok(Some(out.freeze()));
            }
            i = 0;
            let Some((c, _)) = pieces.next() else { return Ok(None) };
            chunk = c;
        }
    }

    /// Where `lsn` is in the buffer: `Err` when it was dropped already, `Ok(None)` when it is
    /// not fed yet.
    fn byte_index(&self, lsn: u64) -> Result<Option<usize>> {
        match lsn.checked_sub(self.buf_start.0) {
            None => Err(invalid(Lsn(lsn), format!("position before the WAL kept ({})", self.buf_start))),
            Some(i) if i as usize <= self.buf_len => Ok(Some(i as usize)),
            Some(_) => Ok(None),
        }
    }

    /// Reads and checks the page header of the page starting at `page`; `None` when it is not
    /// all buffered.
    fn page_header(&mut self, page: u64) -> Result<Option<XLogPageHeader>> {
        let long_expected = page % self.segment_size.bytes() == 0;
        let need = if long_expected { SIZE_OF_XLOG_LONG_PHD } else { SIZE_OF_XLOG_SHORT_PHD } as usize;
        let Some(header) = self.slice(page, need)? else { return Ok(None) };
        let b = &header[..];
        let magic = u16_at(b, 0);
        let info = u16_at(b, 2);
        let h = XLogPageHeader {
            magic,
            info,
            timeline: u32_at(b, 4),
            page_addr: Lsn(u64_at(b, 8)),
            rem_len: u32_at(b, 16),
            system_id: long_expected.then(|| u64_at(b, 24)),
            segment_size: long_expected.then(|| u32_at(b, 32)),
        };
        let lsn = Lsn(page);
        let version = match version_of_magic(magic) {
            Some(v) => v,
            None => return Err(invalid(lsn, format!("bad page magic {magic:#06X}"))),
        };
        match self.version {
            Some(v) if v != version => {
                return Err(invalid(
                    lsn,
                    format!("page magic {magic:#06X} is PostgreSQL {}, not {}", version.major(), v.major()),
                ))
            }
            _ => self.version = Some(version),
        }
        if info & !XLP_ALL_FLAGS != 0 {
            return Err(invalid(lsn, format!("invalid page info bits {info:#06X}")));
        }
        if (info & XLP_LONG_HEADER != 0) != long_expected {
            return Err(invalid(lsn, "long page header flag does not match the position"));
        }
        if h.page_addr.0 != page {
            return Err(invalid(lsn, format!("page address {} does not match the position", h.page_addr)));
        }
        if let Some(size) = h.segment_size {
            if u64::from(size) != self.segment_size.bytes() {
                return Err(invalid(
                    lsn,
                    format!("segment size {size} in the header, expected {}", self.segment_size.bytes()),
                ));
            }
            let blcksz = u32_at(b, 36);
            if u64::from(blcksz) != XLOG_BLCKSZ {
                return Err(invalid(lsn, format!("WAL block size {blcksz}, expected {XLOG_BLCKSZ}")));
            }
        }
        self.timeline = h.timeline;
        Ok(Some(h))
    }

    /// The `len` bytes of a record starting at `lsn` (not at a page header), page headers
    /// between them removed: a slice of the input when the record lies within one page,
    /// otherwise a copy. Returns them and the position after; `None` when not all fed yet.
    fn gather(&mut self, lsn: u64, len: usize) -> Result<Option<(Bytes, u64)>> {
        if (lsn % XLOG_BLCKSZ) as usize + len <= XLOG_BLCKSZ as usize {
            return Ok(self.slice(lsn, len)?.map(|b| (b, lsn + len as u64)));
        }
        let mut out = BytesMut::with_capacity(len);
        let mut at = lsn;
        while out.len() < len {
            let page_off = at % XLOG_BLCKSZ;
            if page_off == 0 {
                let Some(h) = self.page_header(at)? else { return Ok(None) };
                if h.info & XLP_FIRST_IS_CONTRECORD == 0 {
                    return Err(invalid(
                        Lsn(at),
                        format!("record at {} continues on a page with no continuation", Lsn(lsn)),
                    ));
                }
                let expected = (len - out.len()) as u64;
                if u64::from(h.rem_len) != expected {
                    return Err(invalid(
                        Lsn(at),
                        format!(
                            "continuation length {} does not match the {expected} bytes missing of the record at {}",
                            h.rem_len,
                            Lsn(lsn)
                        ),
                    ));
                }
                at += h.size();
                continue;
            }
            let room = (XLOG_BLCKSZ - page_off) as usize;
            let take = room.min(len - out.len());
            let Some(piece) = self.slice(at, take)? else { return Ok(None) };
            out.extend_from_slice(&piece);
            at += take as u64;
        }
        Ok(Some((out.freeze(), at)))
    }

    /// Drops bytes before `lsn` (they are decoded): whole pieces, and the start of the first.
    fn consume_until(&mut self, lsn: u64) {
        let mut n = lsn.saturating_sub(self.buf_start.0).min(self.buf_len as u64) as usize;
        self.buf_start = Lsn(self.buf_start.0 + n as u64);
        self.buf_len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// The next record, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`WireError::InvalidWal`] with the position: bad page magic or header, a record whose
    /// length is impossible, whose CRC does not match, whose `xl_prev` is not the previous
    /// record, or whose block references do not parse.
    pub fn next_record(&mut self) -> Result<Option<DecodedRecord>> {
        loop {
            // Bytes before the next record (the unused end of a switched segment) are not kept.
            self.consume_until(self.next.0);
            let mut at = self.next.0;
            if at % XLOG_BLCKSZ == 0 {
                let Some(h) = self.page_header(at)? else { return Ok(None) };
                at += h.size();
                if h.info & XLP_FIRST_IS_CONTRECORD != 0 {
                    if !self.skip_continuation {
                        return Err(invalid(Lsn(at), "a continuation where a record should start"));
                    }
                    // The end of a record that began before the first byte we were given.
                    let rest = u64::from(h.rem_len);
                    let on_page = XLOG_BLCKSZ - (at % XLOG_BLCKSZ);
                    if rest >= on_page {
                        if let Some(first) = self.first_record {
                            return Err(invalid(first, "not a record's start: a continuation fills its page"));
                        }
                        // It fills this page; the next page says how much is left.
                        self.next = Lsn(at - at % XLOG_BLCKSZ + XLOG_BLCKSZ);
                        self.consume_until(self.next.0);
                        self.skip_continuation = true;
                        // The next page header repeats rem_len minus what this page held.
                        continue;
                    }
                    at = maxalign(at + rest);
                }
                if let Some(first) = self.first_record.take() {
                    if first.0 < at {
                        return Err(invalid(
                            first,
                            "not a record's start: its page's header or a continuation is there",
                        ));
                    }
                    at = first.0;
                }
                self.next = Lsn(at);
            }
            self.skip_continuation = false;
            // xl_tot_len is always on the record's first page.
            let Some(len_bytes) = self.slice(at, 4)? else { return Ok(None) };
            let tot_len = u32_at(&len_bytes, 0);
            let lsn = Lsn(at);
            if tot_len == 0 {
                // Zeroes: the end of the WAL written so far.
                return Ok(None);
            }
            if (tot_len as usize) < SIZE_OF_XLOG_RECORD || tot_len > XLOG_RECORD_MAX_SIZE {
                return Err(invalid(lsn, format!("impossible record length {tot_len}")));
            }
            // Not worth gathering until at least the record's bytes are there.
            if self.fed_until().0 < at + u64::from(tot_len) {
                return Ok(None);
            }
            let Some((raw, end)) = self.gather(at, tot_len as usize)? else { return Ok(None) };
            let Some(version) = self.version else {
                return Err(invalid(
                    lsn,
                    "the PostgreSQL version is not known before the first page header: start at a page or give the version",
                ));
            };
            let record = decode_record(lsn, Lsn(end), raw, version)?;
            if let Some(prev) = self.prev {
                if record.prev != prev {
                    return Err(invalid(
                        lsn,
                        format!("xl_prev {} does not point to the previous record at {prev}", record.prev),
                    ));
                }
            }
            self.prev = Some(lsn);
            self.next = if record.is_switch() {
                // The rest of the segment is unused.
                let seg = self.segment_size.bytes();
                Lsn((end.saturating_sub(1) / seg + 1) * seg)
            } else {
                Lsn(maxalign(end))
            };
            self.consume_until(self.next.0.min(self.fed_until().0));
            return Ok(Some(record));
        }
    }
}
