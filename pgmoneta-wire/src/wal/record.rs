//! One decoded WAL record: `XLogRecord`, its block references and its main data.

use std::ops::Range;

use bytes::Bytes;

use pgmoneta_core::{Lsn, PgVersion};

use crate::error::{Result, WireError};

/// `SizeOfXLogRecord`.
pub const SIZE_OF_XLOG_RECORD: usize = 24;
/// `XLR_MAX_BLOCK_ID`.
pub const XLR_MAX_BLOCK_ID: u8 = 32;
/// `XLR_BLOCK_ID_DATA_SHORT`.
pub const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
/// `XLR_BLOCK_ID_DATA_LONG`.
pub const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
/// `XLR_BLOCK_ID_ORIGIN`.
pub const XLR_BLOCK_ID_ORIGIN: u8 = 253;
/// `XLR_BLOCK_ID_TOPLEVEL_XID`.
pub const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
/// `XLR_INFO_MASK`: the low bits of `xl_info` that belong to the WAL machinery.
pub const XLR_INFO_MASK: u8 = 0x0F;
/// `XLR_SPECIAL_REL_UPDATE`.
pub const XLR_SPECIAL_REL_UPDATE: u8 = 0x01;
/// `XLR_CHECK_CONSISTENCY`.
pub const XLR_CHECK_CONSISTENCY: u8 = 0x02;
/// `BKPBLOCK_FORK_MASK`.
pub const BKPBLOCK_FORK_MASK: u8 = 0x0F;
/// `BKPBLOCK_HAS_IMAGE`.
pub const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
/// `BKPBLOCK_HAS_DATA`.
pub const BKPBLOCK_HAS_DATA: u8 = 0x20;
/// `BKPBLOCK_WILL_INIT`.
pub const BKPBLOCK_WILL_INIT: u8 = 0x40;
/// `BKPBLOCK_SAME_REL`.
pub const BKPBLOCK_SAME_REL: u8 = 0x80;
/// `BLCKSZ`.
pub const BLCKSZ: u16 = 8192;
/// `RM_XLOG_ID`.
pub const RM_XLOG_ID: u8 = 0;
/// `XLOG_SWITCH`.
pub const XLOG_SWITCH: u8 = 0x40;

/// How a full-page image is stored (`bimg_info`, whose bits differ before and after 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockImage {
    /// `length`: bytes stored.
    pub length: u16,
    /// `hole_offset`.
    pub hole_offset: u16,
    /// The hole's length (`BLCKSZ - length` when not compressed).
    pub hole_length: u16,
    /// `bimg_info` as stored.
    pub info: u8,
    /// `BKPIMAGE_HAS_HOLE`.
    pub has_hole: bool,
    /// `BKPIMAGE_APPLY` (14: `BKPIMAGE_APPLY` too): the image is restored at replay.
    pub apply: bool,
    /// The compression, when compressed: `pglz`, `lz4` or `zstd`.
    pub compression: Option<&'static str>,
}

/// A block reference (`DecodedBkpBlock`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRef {
    /// The block id, 0 to 32.
    pub id: u8,
    /// Tablespace, database and relation file (`RelFileLocator`).
    pub locator: (u32, u32, u32),
    /// The fork: 0 main, 1 fsm, 2 visibility map, 3 init.
    pub fork: u8,
    /// The block number.
    pub block: u32,
    /// `fork_flags` as stored.
    pub flags: u8,
    /// The full-page image, if any.
    pub image: Option<BlockImage>,
    /// The image bytes within [`DecodedRecord::raw`].
    pub image_range: Range<usize>,
    /// The block's data within [`DecodedRecord::raw`].
    pub data_range: Range<usize>,
}

impl BlockRef {
    /// `BKPBLOCK_WILL_INIT`.
    pub fn will_init(&self) -> bool {
        self.flags & BKPBLOCK_WILL_INIT != 0
    }

    /// Whether the block carries data.
    pub fn has_data(&self) -> bool {
        self.flags & BKPBLOCK_HAS_DATA != 0
    }
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Where it starts.
    pub lsn: Lsn,
    /// Where it ends (before alignment padding).
    pub end: Lsn,
    /// `xl_tot_len`.
    pub total_len: u32,
    /// `xl_xid`.
    pub xid: u32,
    /// `xl_prev`.
    pub prev: Lsn,
    /// `xl_info`.
    pub info: u8,
    /// `xl_rmid`.
    pub rmid: u8,
    /// `xl_crc`.
    pub crc: u32,
    /// The replication origin, when recorded.
    pub origin: Option<u16>,
    /// The top-level transaction of a subtransaction's record, when recorded.
    pub toplevel_xid: Option<u32>,
    /// Block references in order of id.
    pub blocks: Vec<BlockRef>,
    /// The main data within [`DecodedRecord::raw`].
    pub main_data: Range<usize>,
    /// The whole record as written, header included, page headers removed.
    pub raw: Bytes,
    /// The version whose layout was used.
    pub version: PgVersion,
}

impl DecodedRecord {
    /// The main data.
    pub fn main_data(&self) -> &[u8] {
        &self.raw[self.main_data.clone()]
    }

    /// A block's data.
    pub fn block_data(&self, b: &BlockRef) -> &[u8] {
        &self.raw[b.data_range.clone()]
    }

    /// The block with id `id`.
    pub fn block(&self, id: u8) -> Option<&BlockRef> {
        self.blocks.iter().find(|b| b.id == id)
    }

    /// `xl_info` without the machinery bits: the record type of its resource manager.
    pub fn record_info(&self) -> u8 {
        self.info & !XLR_INFO_MASK
    }

    /// Bytes of full-page images.
    pub fn fpi_len(&self) -> u32 {
        self.blocks.iter().filter_map(|b| b.image.map(|i| u32::from(i.length))).sum()
    }

    /// An `XLOG_SWITCH` record: the rest of the segment is unused.
    pub fn is_switch(&self) -> bool {
        self.rmid == RM_XLOG_ID && self.record_info() == XLOG_SWITCH
    }
}

fn invalid(lsn: Lsn, reason: impl Into<String>) -> WireError {
    WireError::InvalidWal { lsn, reason: reason.into() }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    lsn: Lsn,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        if self.pos + n > self.b.len() {
            return Err(invalid(self.lsn, format!("record too short for {what}")));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// The CRC32C PostgreSQL stores in `xl_crc`: over the record after the header, then the header
/// up to `xl_crc`.
pub fn record_crc(raw: &[u8]) -> u32 {
    let c = crc32c::crc32c(&raw[SIZE_OF_XLOG_RECORD..]);
    crc32c::crc32c_append(c, &raw[..20])
}

/// Decodes the record whose bytes (page headers removed) are `raw`.
///
/// # Errors
/// A CRC that does not match, block headers that do not parse or lengths that do not add up.
pub fn decode_record(lsn: Lsn, end: Lsn, raw: Bytes, version: PgVersion) -> Result<DecodedRecord> {
    let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
    let total_len = u32_at(0);
    let xid = u32_at(4);
    let prev = Lsn(u64::from(u32_at(8)) | (u64::from(u32_at(12)) << 32));
    let info = raw[16];
    let rmid = raw[17];
    let crc = u32_at(20);
    if total_len as usize != raw.len() {
        return Err(invalid(lsn, format!("record length {total_len} but {} bytes read", raw.len())));
    }
    let computed = record_crc(&raw);
    if computed != crc {
        return Err(invalid(
            lsn,
            format!("incorrect resource manager data checksum: stored {crc:08X}, computed {computed:08X}"),
        ));
    }
    let mut c = Cursor { b: &raw, pos: SIZE_OF_XLOG_RECORD, lsn };
    let mut blocks: Vec<BlockRef> = Vec::new();
    let mut origin = None;
    let mut toplevel_xid = None;
    let mut main_len = 0usize;
    let mut data_total = 0usize;
    let mut last_locator: Option<(u32, u32, u32)> = None;
    while c.pos + data_total < raw.len() {
        let id = c.u8("a block id")?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(c.u8("the main data length")?);
                data_total += main_len;
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = c.u32("the main data length")? as usize;
                data_total += main_len;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => origin = Some(c.u16("the origin")?),
            XLR_BLOCK_ID_TOPLEVEL_XID => toplevel_xid = Some(c.u32("the top-level xid")?),
            id if id <= XLR_MAX_BLOCK_ID => {
                if blocks.last().is_some_and(|b| b.id >= id) {
                    return Err(invalid(lsn, format!("out-of-order block id {id}")));
                }
                let flags = c.u8("fork flags")?;
                let data_len = c.u16("block data length")?;
                if (flags & BKPBLOCK_HAS_DATA != 0) != (data_len > 0) {
                    return Err(invalid(
                        lsn,
                        format!("block {id}: data length {data_len} disagrees with the has-data flag"),
                    ));
                }
                data_total += usize::from(data_len);
                let mut image = None;
                if flags & BKPBLOCK_HAS_IMAGE != 0 {
                    let length = c.u16("image length")?;
                    let hole_offset = c.u16("image hole offset")?;
                    let bimg = c.u8("image info")?;
                    let (has_hole, apply, compression) = if version >= PgVersion::V15 {
                        let comp = if bimg & 0x04 != 0 {
                            Some("pglz")
                        } else if bimg & 0x08 != 0 {
                            Some("lz4")
                        } else if bimg & 0x10 != 0 {
                            Some("zstd")
                        } else {
                            None
                        };
                        (bimg & 0x01 != 0, bimg & 0x02 != 0, comp)
                    } else {
                        (bimg & 0x01 != 0, bimg & 0x04 != 0, (bimg & 0x02 != 0).then_some("pglz"))
                    };
                    let hole_length = if compression.is_some() {
                        if has_hole {
                            c.u16("image hole length")?
                        } else {
                            0
                        }
                    } else {
                        BLCKSZ.saturating_sub(length)
                    };
                    if compression.is_none() && (has_hole != (hole_length > 0)) {
                        return Err(invalid(
                            lsn,
                            format!("block {id}: image of {length} bytes disagrees with its hole flag"),
                        ));
                    }
                    if length == 0 || length > BLCKSZ {
                        return Err(invalid(lsn, format!("block {id}: impossible image length {length}")));
                    }
                    data_total += usize::from(length);
                    image =
                        Some(BlockImage { length, hole_offset, hole_length, info: bimg, has_hole, apply, compression });
                }
                let locator = if flags & BKPBLOCK_SAME_REL != 0 {
                    last_locator.ok_or_else(|| {
                        invalid(lsn, format!("block {id}: same relation as an earlier block that does not exist"))
                    })?
                } else {
                    (c.u32("tablespace")?, c.u32("database")?, c.u32("relation")?)
                };
                last_locator = Some(locator);
                let block = c.u32("block number")?;
                blocks.push(BlockRef {
                    id,
                    locator,
                    fork: flags & BKPBLOCK_FORK_MASK,
                    block,
                    flags,
                    image,
                    image_range: 0..0,
                    data_range: usize::from(data_len)..0,
                });
            }
            other => return Err(invalid(lsn, format!("invalid block id {other}"))),
        }
    }
    // The data follow the headers: each block's image then data, then the main data.
    let mut pos = c.pos;
    if pos + data_total != raw.len() {
        return Err(invalid(
            lsn,
            format!("headers and data take {} bytes, the record has {}", pos + data_total, raw.len()),
        ));
    }
    for b in &mut blocks {
        if let Some(img) = b.image {
            b.image_range = pos..pos + usize::from(img.length);
            pos += usize::from(img.length);
        }
        let len = b.data_range.start;
        b.data_range = pos..pos + len;
        pos += len;
    }
    let main_data = pos..pos + main_len;
    Ok(DecodedRecord {
        lsn,
        end,
        total_len,
        xid,
        prev,
        info,
        rmid,
        crc,
        origin,
        toplevel_xid,
        blocks,
        main_data,
        raw,
        version,
    })
}
