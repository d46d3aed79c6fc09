//! zstd files as one frame each, and a reader for any number of frames.
//!
//! Writing: every file is a single zstd frame with an XXH64 checksum of its content, because
//! upstream pgmoneta's streaming reader stops at the end of the first frame of a file's last
//! chunk. An input of up to [`ONE_SHOT_LIMIT`] bytes (a 16 MB WAL segment, most relation files)
//! is held and compressed with zstd's one-shot call, which is faster than its streaming API
//! (docs/benchmarks.md), and its frame declares its content size. A longer input goes through
//! the streaming compressor, still as one frame (of undeclared size); there `workers` above zero
//! are zstd's own worker threads, which compress parts of the one frame in parallel (on 16 MB or
//! less they were slower than the calling thread alone).
//!
//! Reading: a frame that declares its content size of at most [`MAX_FRAME_OUTPUT`] bytes is
//! collected whole, block by block, and decompressed in one call. Anything else, such as a large
//! frame of undeclared size or the frame the `zstd` tool writes when it compresses a pipe, is
//! read with zstd's streaming decoder from that point on. Files of several frames (repositories
//! written before every file became one frame) read the same.

use std::io::{self, BufRead, BufReader, Read, Write};

use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
use zstd::zstd_safe::CParameter;

/// Largest input compressed with one call; a longer one streams.
pub const ONE_SHOT_LIMIT: usize = 16 << 20;
/// Largest declared content size decoded in one call; larger frames stream.
pub const MAX_FRAME_OUTPUT: u64 = 64 << 20;
/// Largest compressed frame collected in memory.
const MAX_FRAME_INPUT: usize = 80 << 20;
const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Compressed bytes gathered before they are written on.
const OUT_CHUNK: usize = 1 << 20;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A one-shot compressor for `level` whose frames carry their content size and a checksum of it
/// (XXH64: a flipped bit is an error on reading, not silently different data).
fn compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(CParameter::ChecksumFlag(true))?;
    Ok(c)
}

/// A streaming compressor for `level` with the same checksum, on `workers` zstd threads when
/// above zero.
fn stream_compressor(level: i32, workers: u32) -> io::Result<zstd::stream::raw::Encoder<'static>> {
    let mut e = zstd::stream::raw::Encoder::new(level)?;
    e.set_parameter(CParameter::ChecksumFlag(true))?;
    if workers > 0 {
        e.set_parameter(CParameter::NbWorkers(workers))?;
    }
    Ok(e)
}

/// The thread's cached context when it was made for `key`, else a new one.
fn reuse<K: PartialEq, T>(cached: Option<(K, T)>, key: K, make: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match cached {
        Some((k, t)) if k == key => Ok(t),
        _ => make(),
    }
}

/// What one thread keeps between files: the input and output buffers of the one-shot path
/// (their pages stay mapped, so a 16 MB segment is not a fresh allocation every time) and the
/// compression contexts last used, by level (and worker count for streaming).
#[derive(Default)]
struct Spare {
    held: Vec<u8>,
    out: Vec<u8>,
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    stream: Option<((i32, u32), zstd::stream::raw::Encoder<'static>)>,
}

thread_local! {
    static SPARE: std::cell::RefCell<Spare> = std::cell::RefCell::new(Spare::default());
}

/// Writes everything it is given as one zstd frame.
pub(crate) struct FrameEncoder<W: Write> {
    inner: W,
    level: i32,
    workers: u32,
    /// The input so far, while it fits in [`ONE_SHOT_LIMIT`].
    held: Vec<u8>,
    /// Once the input outgrew [`ONE_SHOT_LIMIT`]: zstd's streaming compressor.
    stream: Option<zstd::stream::raw::Encoder<'static>>,
    out: Vec<u8>,
}

impl<W: Write> FrameEncoder<W> {
    pub(crate) fn new(inner: W, level: i32, workers: u32) -> io::Result<FrameEncoder<W>> {
        let held = SPARE.with(|s| std::mem::take(&mut s.borrow_mut().held));
        Ok(FrameEncoder { inner, level, workers, held, stream: None, out: Vec::new() })
    }

    /// Switches to the streaming compressor and hands it what was held.
    fn start_stream(&mut self) -> io::Result<()> {
        let key = (self.level, self.workers);
        let cached = SPARE.with(|s| s.borrow_mut().stream.take());
        self.stream = Some(reuse(cached, key, || stream_compressor(key.0, key.1))?);
        self.out = Vec::with_capacity(OUT_CHUNK);
        let mut held = std::mem::take(&mut self.held);
        let result = self.feed(&held);
        held.clear();
        SPARE.with(|s| s.borrow_mut().held = held);
        result
    }

    /// Writes the compressed bytes gathered so far.
    fn write_out(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// Passes `input` to the streaming compressor.
    fn feed(&mut self, input: &[u8]) -> io::Result<()> {
        let mut input = InBuffer::around(input);
        while input.pos < input.src.len() {
            let e = self.stream.as_mut().expect("streaming");
            // After what is gathered already: `around` alone would write over it.
            let at = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, at);
            e.run(&mut input, &mut output)?;
            if self.out.len() == self.out.capacity() {
                self.write_out()?;
            }
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        match self.stream.as_mut() {
            None => {
                // Even empty input becomes one (empty) frame: a valid zstd file. On this thread:
                // zstd's worker threads make 16 MB or less slower, not faster (docs/benchmarks.md).
                let level = self.level;
                let (cached, mut out) = SPARE.with(|s| {
                    let mut s = s.borrow_mut();
                    (s.compressor.take(), std::mem::take(&mut s.out))
                });
                let mut c = reuse(cached, level, || compressor(level))?;
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(self.held.len()));
                let result = c.compress_to_buffer(&self.held, &mut out).and_then(|_| self.inner.write_all(&out));
                out.clear();
                self.held.clear();
                let held = std::mem::take(&mut self.held);
                SPARE.with(|s| {
                    let mut s = s.borrow_mut();
                    (s.held, s.out, s.compressor) = (held, out, Some((level, c)));
                });
                result?;
            }
            Some(_) => {
                loop {
                    let e = self.stream.as_mut().expect("streaming");
                    let at = self.out.len();
                    let mut output = OutBuffer::around_pos(&mut self.out, at);
                    let remaining = e.finish(&mut output, true)?;
                    self.write_out()?;
                    if remaining == 0 {
                        break;
                    }
                }
                // The context is kept for the thread's next long file.
                if let Some(mut e) = self.stream.take() {
                    if e.reinit().is_ok() {
                        let key = (self.level, self.workers);
                        SPARE.with(|s| s.borrow_mut().stream = Some((key, e)));
                    }
                }
            }
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for FrameEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stream.is_none() {
            if self.held.len() + buf.len() <= ONE_SHOT_LIMIT {
                self.held.extend_from_slice(buf);
                return Ok(buf.len());
            }
            self.start_stream()?;
        }
        self.feed(buf)?;
        Ok(buf.len())
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

/// What [`FramedDecoder::advance`] found next in the input.
enum Next {
    End,
    /// A skippable frame was passed over, or the rest of input goes to the streaming decoder.
    Nothing,
    /// A frame of `size` decompressed bytes, either the first `n` bytes of the reader's buffer
    /// (`buffered: Some(n)`) or collected in `frame`.
    Frame {
        size: usize,
        buffered: Option<usize>,
    },
}

/// Where a frame is decompressed to.
enum Dst<'a> {
    Slice(&'a mut [u8]),
    Out,
    Append(&'a mut Vec<u8>),
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

    /// Finds the next frame. A frame held whole in the reader's buffer (always the case when
    /// reading from memory) is left there and decompressed in place; otherwise its bytes are
    /// collected in `self.frame`.
    fn advance(&mut self) -> io::Result<Next> {
        let State::Frames(inner) = &mut self.state else { return Ok(Next::End) };
        let buf = inner.fill_buf()?;
        if buf.is_empty() {
            self.state = State::Done;
            if self.frames_seen == 0 {
                // Even empty content is one frame: no bytes at all is a truncated file.
                return Err(invalid("no zstd frame: the input is empty"));
            }
            return Ok(Next::End);
        }
        self.frames_seen += 1;
        if buf.len() >= 4 && u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) == ZSTD_MAGIC {
            if let (Ok(n), Ok(Some(size))) =
                (zstd::zstd_safe::find_frame_compressed_size(buf), zstd::zstd_safe::get_frame_content_size(buf))
            {
                if n <= buf.len() && size <= MAX_FRAME_OUTPUT {
                    return Ok(Next::Frame { size: size as usize, buffered: Some(n) });
                }
            }
        }
        self.collect()
    }

    /// Reads the next frame into `self.frame`, walking its header and blocks.
    fn collect(&mut self) -> io::Result<Next> {
        let State::Frames(inner) = &mut self.state else { return Ok(Next::End) };
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
            return Ok(Next::Nothing);
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
            return Ok(Next::Nothing);
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
        Ok(Next::Frame { size: content_size as usize, buffered: None })
    }

    /// Decompresses the frame [`FramedDecoder::advance`] found into `dst`; returns its size.
    fn decode(&mut self, size: usize, buffered: Option<usize>, dst: Dst<'_>) -> io::Result<usize> {
        let State::Frames(inner) = &mut self.state else { unreachable!("a frame was found") };
        let src = match buffered {
            Some(n) => &inner.fill_buf()?[..n],
            None => &self.frame[..],
        };
        let d = &mut self.decompressor;
        let n = match dst {
            Dst::Slice(s) => d.decompress_to_buffer(src, &mut s[..size]),
            Dst::Out => {
                self.out.clear();
                self.out.reserve(size);
                d.decompress_to_buffer(src, &mut self.out)
            }
            Dst::Append(v) => {
                v.reserve(size);
                let mut tail = io::Cursor::new(v);
                tail.set_position(tail.get_ref().len() as u64);
                d.decompress_to_buffer(src, &mut tail)
            }
        }
        .map_err(|e| invalid(e.to_string()))?;
        if let Some(consumed) = buffered {
            inner.consume(consumed);
        }
        if n != size {
            return Err(invalid(format!("zstd frame declares {size} bytes but holds {n}")));
        }
        Ok(n)
    }

    /// Writes everything left to `w`, each frame straight from the buffer it was decompressed
    /// into; returns the number of bytes written.
    pub(crate) fn copy_to<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            if self.pos < self.out.len() {
                w.write_all(&self.out[self.pos..])?;
                total += (self.out.len() - self.pos) as u64;
                self.pos = self.out.len();
            }
            if let State::Streaming(d) = &mut self.state {
                return Ok(total + io::copy(d, w)?);
            }
            match self.advance()? {
                Next::End => return Ok(total),
                Next::Nothing => {}
                Next::Frame { size, buffered } => {
                    self.decode(size, buffered, Dst::Out)?;
                    self.pos = 0;
                }
            }
        }
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
            if buf.is_empty() {
                return Ok(0);
            }
            match self.advance()? {
                Next::End => return Ok(0),
                Next::Nothing => {}
                // Straight into the caller's buffer when the whole frame fits.
                Next::Frame { size, buffered } if size > 0 && size <= buf.len() => {
                    return self.decode(size, buffered, Dst::Slice(buf));
                }
                Next::Frame { size, buffered } => {
                    self.decode(size, buffered, Dst::Out)?;
                    self.pos = 0;
                }
            }
        }
    }

    fn read_to_end(&mut self, vec: &mut Vec<u8>) -> io::Result<usize> {
        let start = vec.len();
        loop {
            if self.pos < self.out.len() {
                vec.extend_from_slice(&self.out[self.pos..]);
                self.pos = self.out.len();
            }
            if let State::Streaming(d) = &mut self.state {
                d.read_to_end(vec)?;
                return Ok(vec.len() - start);
            }
            match self.advance()? {
                Next::End => return Ok(vec.len() - start),
                Next::Nothing => {}
                Next::Frame { size, buffered } => {
                    self.decode(size, buffered, Dst::Append(vec))?;
                }
            }
        }
    }
}
