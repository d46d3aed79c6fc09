//! PostgreSQL v3 protocol messages, without I/O.
//!
//! Every message after start-up is a type byte, a 4-byte big-endian length that counts itself,
//! and a body. Decoders check that a whole message is buffered before parsing it, refuse a length
//! above the type's limit before buffering anything, and report malformed input with the byte
//! offset from the start of the stream and the message type.
//!
//! See <https://www.postgresql.org/docs/current/protocol-message-formats.html>.

pub mod backend;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Result, Tag, WireError};

/// A read cursor over one message body that reports errors at stream offsets.
#[derive(Debug)]
pub(crate) struct Cursor {
    bytes: Bytes,
    pos: usize,
    /// Stream offset of `bytes[0]`.
    base: u64,
    tag: u8,
    what: &'static str,
}

impl Cursor {
    pub(crate) fn new(bytes: Bytes, base: u64, tag: u8, what: &'static str) -> Cursor {
        Cursor { bytes, pos: 0, base, tag, what }
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> WireError {
        WireError::Malformed {
            what: self.what,
            tag: Tag(self.tag),
            offset: self.base + self.pos as u64,
            reason: reason.into(),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn need(&self, n: usize, what: &str) -> Result<()> {
        if self.remaining() < n {
            Err(self.error(format!("{what} needs {n} bytes, {} left", self.remaining())))
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        self.need(1, what)?;
        let v = self.bytes[self.pos];
        self.pos += 1;
        Ok(v)
    }

    pub(crate) fn i16(&mut self, what: &str) -> Result<i16> {
        self.need(2, what)?;
        let v = (&self.bytes[self.pos..]).get_i16();
        self.pos += 2;
        Ok(v)
    }

    pub(crate) fn i32(&mut self, what: &str) -> Result<i32> {
        self.need(4, what)?;
        let v = (&self.bytes[self.pos..]).get_i32();
        self.pos += 4;
        Ok(v)
    }

    pub(crate) fn i64(&mut self, what: &str) -> Result<i64> {
        self.need(8, what)?;
        let v = (&self.bytes[self.pos..]).get_i64();
        self.pos += 8;
        Ok(v)
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        self.i64(what).map(|v| v as u64)
    }

    /// A count that must be non-negative and plausible for the bytes left (each item taking at
    /// least `min_item` bytes), so that a hostile count cannot make us allocate.
    pub(crate) fn count16(&mut self, what: &str, min_item: usize) -> Result<usize> {
        let n = self.i16(what)?;
        if n < 0 {
            return Err(self.error(format!("negative {what} {n}")));
        }
        let n = n as usize;
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(self.error(format!("{what} {n} does not fit in the {} bytes left", self.remaining())));
        }
        Ok(n)
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &str) -> Result<Bytes> {
        self.need(n, what)?;
        let v = self.bytes.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(v)
    }

    /// The rest of the body.
    pub(crate) fn rest(&mut self) -> Bytes {
        let v = self.bytes.slice(self.pos..);
        self.pos = self.bytes.len();
        v
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self, what: &str) -> Result<String> {
        let Some(len) = self.bytes[self.pos..].iter().position(|&b| b == 0) else {
            return Err(self.error(format!("{what} has no terminating NUL")));
        };
        let s = std::str::from_utf8(&self.bytes[self.pos..self.pos + len])
            .map_err(|e| self.error(format!("{what} is not valid UTF-8: {e}")))?
            .to_owned();
        self.pos += len + 1;
        Ok(s)
    }

    /// Checks that the whole body was read.
    pub(crate) fn finish(self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.error(format!("{} unexpected bytes at the end of the message", self.remaining())))
        }
    }
}

/// Writes a typed message: `tag`, a length placeholder, the body from `body`, then patches the
/// length.
pub(crate) fn write_message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    write_untagged(buf, body);
}

/// Writes a length-prefixed message without a type byte (start-up packets).
pub(crate) fn write_untagged(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub(crate) fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// The least room made for the rest of a message that has begun to arrive. Messages received
/// in a row share one allocation (each is a slice of it): when one does not fit in what is left
/// of it, its first bytes are copied to a new one, so a new allocation that held only a message
/// or two would copy a large part of everything received (a third of a backup's bytes, with the
/// few tens of kilobytes PostgreSQL puts in each `CopyData`); one of this size copies a few
/// percent.
pub(crate) const READ_RESERVE: usize = 256 << 10;

/// Splits one framed message off `buf` when it is complete: `Ok(None)` asks for more bytes (and
/// reserves room for them, at least [`READ_RESERVE`] bytes when the message does not fit).
/// `max_len(tag)` bounds the body length; `offset` is the stream offset of `buf[0]`.
pub(crate) fn split_frame(
    buf: &mut BytesMut,
    offset: u64,
    what: &'static str,
    max_len: impl Fn(u8) -> u32,
) -> Result<Option<(u8, Bytes)>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(WireError::Malformed {
            what,
            tag: Tag(tag),
            offset: offset + 1,
            reason: format!("length {len} is less than the 4 bytes of the length itself"),
        });
    }
    let max = max_len(tag);
    if len - 4 > max {
        return Err(WireError::TooLong { what, tag: Tag(tag), offset, len: u64::from(len - 4), max: u64::from(max) });
    }
    let total = len as usize + 1;
    if buf.len() < total {
        let need = total - buf.len();
        if buf.capacity() - buf.len() < need {
            buf.reserve(need.max(READ_RESERVE));
        }
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(5);
    Ok(Some((tag, frame.freeze())))
}

#[cfg(test)]
mod tests;
