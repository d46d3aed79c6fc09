//! Upstream pgmoneta's `.lz4` layout: not the LZ4 frame format, but a sequence of blocks, each a
//! 32-bit little-endian compressed length followed by one LZ4 block of at most 4096 input bytes,
//! compressed in streaming mode (a block may copy from the output of the blocks before it), until
//! end of file; no magic, no checksum. Read-only: new files are written as LZ4 frames.
//!
//! The block decoder is written here, in safe Rust, because decoding a block that refers to
//! earlier output needs that output as history, which the LZ4 crate's safe API does not take.

use std::io::{self, BufRead, Read};

/// LZ4 matches reach at most this far back.
const WINDOW: usize = 64 * 1024;
/// The most one block may decode to. Upstream's blocks hold 4096 bytes; allow margin, but bound
/// what a hostile file can make us allocate.
pub(crate) const MAX_BLOCK_OUTPUT: usize = 64 * 1024;
/// The most one compressed block may take.
const MAX_BLOCK_INPUT: usize = MAX_BLOCK_OUTPUT + MAX_BLOCK_OUTPUT / 255 + 16;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Decodes one LZ4 block, appending to `out`, whose existing bytes are the history matches may
/// copy from. At most `limit` bytes are appended.
pub(crate) fn decode_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
    let start = out.len();
    let mut i = 0;
    let byte = |i: usize| block.get(i).copied().ok_or_else(|| invalid("LZ4 block ends in the middle of a sequence"));
    let length = |i: &mut usize, base: usize| -> io::Result<usize> {
        let mut len = base;
        if base == 15 {
            loop {
                let b = byte(*i)?;
                *i += 1;
                len = len.checked_add(usize::from(b)).ok_or_else(|| invalid("LZ4 length overflows"))?;
                if b != 255 {
                    break;
                }
            }
        }
        Ok(len)
    };
    loop {
        let token = byte(i)?;
        i += 1;
        let literals = length(&mut i, usize::from(token >> 4))?;
        let lit_end = i
            .checked_add(literals)
            .filter(|&e| e <= block.len())
            .ok_or_else(|| invalid("LZ4 literals run past the block"))?;
        if out.len() - start + literals > limit {
            return Err(invalid(format!("LZ4 block decodes to more than {limit} bytes")));
        }
        out.extend_from_slice(&block[i..lit_end]);
        i = lit_end;
        if i == block.len() {
            return Ok(()); // the last sequence has literals only
        }
        let offset = usize::from(u16::from_le_bytes([byte(i)?, byte(i + 1)?]));
        i += 2;
        if offset == 0 || offset > out.len() {
            return Err(invalid(format!("LZ4 match offset {offset} reaches before the start of the data")));
        }
        let len = length(&mut i, usize::from(token & 0x0f))? + 4;
        if out.len() - start + len > limit {
            return Err(invalid(format!("LZ4 block decodes to more than {limit} bytes")));
        }
        let from = out.len() - offset;
        // Matches may overlap their own output (offset < len): copy byte by byte then.
        for k in 0..len {
            let b = out[from + k];
            out.push(b);
        }
    }
}

/// Reads upstream's block sequence as plain bytes.
#[derive(Debug)]
pub struct LegacyLz4Decoder<R> {
    inner: R,
    /// History (up to the window) followed by decoded bytes not yet read.
    buf: Vec<u8>,
    /// Where the unread bytes start in `buf`.
    pos: usize,
    block: Vec<u8>,
    done: bool,
}

impl<R: BufRead> LegacyLz4Decoder<R> {
    /// A decoder reading blocks from `inner`.
    pub fn new(inner: R) -> LegacyLz4Decoder<R> {
        LegacyLz4Decoder { inner, buf: Vec::new(), pos: 0, block: Vec::new(), done: false }
    }

    /// Reads and decodes the next block; `false` at a clean end of input.
    fn next_block(&mut self) -> io::Result<bool> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = self.inner.read(&mut len[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(invalid("LZ4 block length cut short"));
            }
            got += n;
        }
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_BLOCK_INPUT {
            return Err(invalid(format!("LZ4 block length {len} is out of range (1 to {MAX_BLOCK_INPUT})")));
        }
        self.block.resize(len, 0);
        self.inner.read_exact(&mut self.block).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid(format!("LZ4 block of {len} bytes cut short"))
            } else {
                e
            }
        })?;
        // Keep only the window as history before decoding more.
        if self.pos > WINDOW {
            let drop = self.pos - WINDOW;
            self.buf.drain(..drop);
            self.pos -= drop;
        }
        decode_block(&self.block, &mut self.buf, MAX_BLOCK_OUTPUT)?;
        Ok(true)
    }
}

impl<R: BufRead> Read for LegacyLz4Decoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() && !self.done {
            if !self.next_block()? {
                self.done = true;
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of literals only.
    fn literal_block(data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        if data.len() < 15 {
            b.push((data.len() as u8) << 4);
        } else {
            b.push(0xf0);
            let mut rest = data.len() - 15;
            while rest >= 255 {
                b.push(255);
                rest -= 255;
            }
            b.push(rest as u8);
        }
        b.extend_from_slice(data);
        b
    }

    fn file(blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut f = Vec::new();
        for b in blocks {
            f.extend_from_slice(&(b.len() as u32).to_le_bytes());
            f.extend_from_slice(b);
        }
        f
    }

    fn decode(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        LegacyLz4Decoder::new(data).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn blocks_may_copy_from_earlier_blocks() {
        // Block 1: "abcdefgh" as literals. Block 2: a match of 12 bytes at offset 8 (into block
        // 1, overlapping its own output), then the literal "!".
        let b1 = literal_block(b"abcdefgh");
        let b2 = vec![0x08, 8, 0, 0x10, b'!'];
        assert_eq!(decode(&file(&[b1, b2])).unwrap(), b"abcdefghabcdefghabcd!");
    }

    #[test]
    fn independent_blocks_from_the_lz4_crate() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let blocks: Vec<Vec<u8>> = data.chunks(4096).map(|c| lz4::block::compress(c, None, false).unwrap()).collect();
        assert_eq!(decode(&file(&blocks)).unwrap(), data);
        assert_eq!(decode(&[]).unwrap(), b"");
    }

    #[test]
    fn damage_is_an_error() {
        let good = file(&[literal_block(b"hello world, hello world")]);
        assert!(decode(&good[..good.len() - 3]).unwrap_err().to_string().contains("cut short"));
        assert!(decode(&good[..2]).unwrap_err().to_string().contains("length cut short"));
        assert!(decode(&[0, 0, 0, 0]).unwrap_err().to_string().contains("out of range"));
        assert!(decode(&[0xff, 0xff, 0xff, 0x7f]).unwrap_err().to_string().contains("out of range"));
        // A match reaching before the first byte.
        assert!(decode(&file(&[vec![0x10, b'a', 9, 0, 0x10, b'b']])).unwrap_err().to_string().contains("offset 9"));
        // A block that would decode to more than the bound.
        let huge = vec![0x0f, 1, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255];
        let mut block = vec![0x1f, b'x', 1, 0];
        block.extend_from_slice(&huge[3..]);
        block.extend_from_slice(&[255; 300]);
        block.push(0);
        assert!(decode(&file(&[block])).is_err());
    }
}
