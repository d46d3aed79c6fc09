//! zstd as a sequence of independent frames of a few megabytes, each compressed and decompressed
//! with zstd's one-shot calls.
//!
//! zstd's streaming API costs 12-23% of throughput against its one-shot API on the same data
//! (docs/benchmarks.md): it copies input into its window and output through its buffers in
//! small steps. Cutting the stream into frames of [`FRAME_SIZE`] bytes keeps the one-shot speed,
//! lets `workers` threads compress frames in parallel, and costs almost nothing in ratio, since
//! zstd's window at the levels used for backups (2-8 MB) is not larger than a frame. The result
//! is an ordinary multi-frame zstd file that every zstd decoder reads.
//!
//! Reading: a frame that declares its content size (as every frame written here does) of at most
//! [`MAX_FRAME_OUTPUT`] bytes is collected whole, block by block, and decompressed in one call.
//! Anything else, such as the single frame of unknown size the `zstd` tool writes when it
//! compresses a pipe, is read with zstd's streaming decoder from that point on.

use std::io::{self, BufRead, BufReader, Read, Write};

/// Input bytes per frame.
pub const FRAME_SIZE: usize = 4 << 20;
/// Largest declared content size decoded in one call; larger frames stream.
pub const MAX_FRAME_OUTPUT: u64 = 64 << 20;
/// Largest compressed frame collected in memory.
const MAX_FRAME_INPUT: usize = 80 << 20;
const ZSTD_MAGIC: u32 = 0xFD2F_B528;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A one-shot compressor for `level` whose frames carry their content size and a checksum of it
/// (XXH64: a flipped bit is an error on reading, not silently different data).
pub(crate) fn compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(c)
}

/// Compresses whole frames of [`FRAME_SIZE`] bytes, on `workers` threads when asked.
pub(crate) struct FramedEncoder<W: Write> {
    inner: W,
    level: i32,
    workers: usize,
    compressor: zstd::bulk::Compressor<'static>,
    /// Frames waiting to be compressed (one being filled at the end).
    pending: Vec<Vec<u8>>,
    out: Vec<u8>,
    frames_written: u64,
}

impl<W: Write> FramedEncoder<W> {
    pub(crate) fn new(inner: W, level: i32, workers: u32) -> io::Result<FramedEncoder<W>> {
        Ok(FramedEncoder {
            inner,
            level,
            workers: workers as usize,
            compressor: compressor(level)?,
            pending: vec![Vec::with_capacity(FRAME_SIZE)],
            out: Vec::new(),
            frames_written: 0,
        })
    }

    fn compress_one(
        compressor: &mut zstd::bulk::Compressor<'static>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(input.len()));
        compressor.compress_to_buffer(input, out)?;
        Ok(())
    }

    /// Compresses and writes every full pending frame (all of them when `all`).
    fn drain(&mut self, all: bool) -> io::Result<()> {
        let ready = if all { self.pending.len() } else { self.pending.len() - 1 };
        if ready == 0 {
            return Ok(());
        }
        let frames: Vec<Vec<u8>> = self.pending.drain(..ready).collect();
        if self.workers > 1 && frames.len() > 1 {
            let level = self.level;
            let results: Vec<io::Result<Vec<u8>>> = std::thread::scope(|s| {
                let handles: Vec<_> = frames
                    .iter()
                    .map(|f| {
                        s.spawn(move || {
                            let mut c = compressor(level)?;
                            let mut out = Vec::new();
                            FramedEncoder::<W>::compress_one(&mut c, f, &mut out)?;
                            Ok(out)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("zstd worker panicked"))))
                    .collect()
            });
            for r in results {
                self.inner.write_all(&r?)?;
                self.frames_written += 1;
            }
        } else {
            for f in &frames {
                FramedEncoder::<W>::compress_one(&mut self.compressor, f, &mut self.out)?;
                self.inner.write_all(&self.out)?;
                self.frames_written += 1;
            }
        }
        if self.pending.is_empty() {
            let mut reuse = frames.into_iter().next().unwrap_or_default();
            reuse.clear();
            self.pending.push(reuse);
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        let last_empty = self.pending.last().is_some_and(Vec::is_empty);
        if last_empty && self.frames_written > 0 && self.pending.len() == 1 {
            return Ok(self.inner);
        }
        if last_empty && self.pending.len() > 1 {
            self.pending.pop();
        }
        // Empty input still becomes one (empty) frame: a valid zstd file.
        self.drain(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FramedEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let current = self.pending.last_mut().expect("a frame being filled");
        let take = (FRAME_SIZE - current.len()).min(buf.len());
        current.extend_from_slice(&buf[..take]);
        if current.len() == FRAME_SIZE {
            self.pending.push(Vec::with_capacity(FRAME_SIZE));
            if self.pending.len() > self.workers.max(1) {
                self.drain(false)?;
            }
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the bytes of whole zstd frames from a stream, then decompresses each in one call.
pub(crate) struct FramedDecoder<R: BufRead> {
    state: State<R>,
    decompressor: zstd::bulk::Decompressor<'static>,
    frame: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    frames_seen: u64,
}

/// The streaming decoder over the bytes already read of a frame followed by the rest of input.
type StreamingRest<R> = BufReader<zstd::stream::read::Decoder<'static, io::Chain<io::Cursor<Vec<u8>>, R>>>;

enum State<R: BufRead> {
    Frames(R),
    /// Fallback for frames that do not declare a size within the limit.
    Streaming(Box<StreamingRest<R>>),
    Done,
}

impl<R: BufRead> FramedDecoder<R> {
    pub(crate) fn new(inner: R) -> io::Result<FramedDecoder<R>> {
        Ok(FramedDecoder {
            state: State::Frames(inner),
            decompressor: zstd::bulk::Decompressor::new()?,
            frame: Vec::new(),
            out: Vec::new(),
            pos: 0,
            frames_seen: 0,
        })
    }

    /// Reads exactly `n` more bytes of the current frame into `self.frame`.
    fn take(inner: &mut R, frame: &mut Vec<u8>, n: usize) -> io::Result<()> {
        if frame.len() + n > MAX_FRAME_INPUT {
            return Err(invalid("zstd frame larger than a frame written by pgmoneta"));
        }
        let start = frame.len();
        frame.resize(start + n, 0);
        inner.read_exact(&mut frame[start..]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid("zstd frame cut short")
            } else {
                e
            }
        })
    }

    /// Reads the next frame and decompresses it into `self.out`; `false` at the end of input.
    fn next_frame(&mut self) -> io::Result<bool> {
        let State::Frames(inner) = &mut self.state else { return Ok(false) };
        if inner.fill_buf()?.is_empty() {
            self.state = State::Done;
            if self.frames_seen == 0 {
                // Even empty content is one frame: no bytes at all is a truncated file.
                return Err(invalid("no zstd frame: the input is empty"));
            }
            return Ok(false);
        }
        self.frames_seen += 1;
        self.frame.clear();
        Self::take(inner, &mut self.frame, 4)?;
        let magic = u32::from_le_bytes([self.frame[0], self.frame[1], self.frame[2], self.frame[3]]);
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            // A skippable frame: its length, then that many bytes to ignore.
            Self::take(inner, &mut self.frame, 4)?;
            let len = u32::from_le_bytes([self.frame[4], self.frame[5], self.frame[6], self.frame[7]]) as u64;
            let skipped = io::copy(&mut inner.take(len), &mut io::sink())?;
            if skipped != len {
                return Err(invalid("skippable zstd frame cut short"));
            }
            self.out.clear();
            return Ok(true);
        }
        if magic != ZSTD_MAGIC {
            return Err(invalid("not a zstd frame (bad magic number)"));
        }
        Self::take(inner, &mut self.frame, 1)?;
        let fhd = self.frame[4];
        let single_segment = fhd & 0x20 != 0;
        let checksum = fhd & 0x04 != 0;
        if fhd & 0x08 != 0 {
            return Err(invalid("zstd frame header has its reserved bit set"));
        }
        let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
        let fcs_len = match fhd >> 6 {
            0 if single_segment => 1,
            0 => 0,
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let header_rest = usize::from(!single_segment) + dict_len + fcs_len;
        Self::take(inner, &mut self.frame, header_rest)?;
        let fcs_bytes = &self.frame[self.frame.len() - fcs_len..];
        let content_size = match fcs_len {
            0 => None,
            1 => Some(u64::from(fcs_bytes[0])),
            2 => Some(u64::from(u16::from_le_bytes([fcs_bytes[0], fcs_bytes[1]])) + 256),
            4 => Some(u64::from(u32::from_le_bytes([fcs_bytes[0], fcs_bytes[1], fcs_bytes[2], fcs_bytes[3]]))),
            _ => Some(u64::from_le_bytes(fcs_bytes.try_into().expect("8 bytes"))),
        };
        let Some(content_size) = content_size.filter(|&s| s <= MAX_FRAME_OUTPUT && dict_len == 0) else {
            // Hand the rest of the stream, this frame's header included, to the streaming decoder.
            let State::Frames(inner) = std::mem::replace(&mut self.state, State::Done) else { unreachable!() };
            let head = io::Cursor::new(std::mem::take(&mut self.frame));
            let mut d = zstd::stream::read::Decoder::with_buffer(head.chain(inner))?;
            d.window_log_max(27)?;
            self.state = State::Streaming(Box::new(BufReader::with_capacity(128 << 10, d)));
            self.out.clear();
            return Ok(true);
        };
        // Walk the blocks to find the end of the frame.
        loop {
            Self::take(inner, &mut self.frame, 3)?;
            let h = &self.frame[self.frame.len() - 3..];
            let header = u32::from(h[0]) | u32::from(h[1]) << 8 | u32::from(h[2]) << 16;
            let last = header & 1 != 0;
            let size = (header >> 3) as usize;
            let body = match (header >> 1) & 3 {
                0 | 2 => size,
                1 => 1,
                _ => return Err(invalid("zstd block of reserved type")),
            };
            if size > 128 << 10 {
                return Err(invalid("zstd block larger than 128 KiB"));
            }
            Self::take(inner, &mut self.frame, body)?;
            if last {
                break;
            }
        }
        if checksum {
            Self::take(inner, &mut self.frame, 4)?;
        }
        self.out.clear();
        self.out.reserve(content_size as usize);
        let n = self
            .decompressor
            .decompress_to_buffer(&self.frame[..], &mut self.out)
            .map_err(|e| invalid(e.to_string()))?;
        if n as u64 != content_size {
            return Err(invalid(format!("zstd frame declares {content_size} bytes but holds {n}")));
        }
        Ok(true)
    }
}

impl<R: BufRead> Read for FramedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let State::Streaming(d) = &mut self.state {
                return d.read(buf);
            }
            self.pos = 0;
            self.out.clear();
            if !self.next_frame()? {
                return Ok(0);
            }
        }
    }
}
