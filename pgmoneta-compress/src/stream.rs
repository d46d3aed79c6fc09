//! Streaming encoders (`Write`) and decoders (`Read`).

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::algorithm::{Algorithm, LZ4_FRAME_MAGIC};
use crate::legacy_lz4::LegacyLz4Decoder;

/// Options for an [`Encoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Level, clamped to the algorithm's range.
    pub level: i32,
    /// zstd worker threads (0: compress on the calling thread), which share the work on one
    /// frame.
    pub workers: u32,
}

impl EncoderOptions {
    /// The algorithm's default level, no workers.
    pub fn default_for(algorithm: Algorithm) -> EncoderOptions {
        EncoderOptions { level: algorithm.default_level(), workers: 0 }
    }
}

enum EncoderInner<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(crate::zstd_frames::FrameEncoder<W>),
    Lz4(lz4::Encoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

/// Compresses everything written to it into `W`. Call [`Encoder::finish`] to write the end of the
/// stream and get `W` back; dropping it without does not complete the stream.
pub struct Encoder<W: Write> {
    inner: EncoderInner<W>,
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("algorithm", &self.algorithm()).finish_non_exhaustive()
    }
}

impl<W: Write> Encoder<W> {
    /// An encoder for `algorithm` writing into `inner`.
    ///
    /// # Errors
    /// When the codec cannot be set up (zstd workers unavailable, out of memory).
    pub fn new(algorithm: Algorithm, options: EncoderOptions, inner: W) -> io::Result<Encoder<W>> {
        let level = algorithm.clamp_level(options.level);
        let inner = match algorithm {
            Algorithm::None => EncoderInner::None(inner),
            Algorithm::Gzip => {
                EncoderInner::Gzip(flate2::write::GzEncoder::new(inner, flate2::Compression::new(level as u32)))
            }
            Algorithm::Zstd => {
                EncoderInner::Zstd(crate::zstd_frames::FrameEncoder::new(inner, level, options.workers)?)
            }
            Algorithm::Lz4 => EncoderInner::Lz4(
                lz4::EncoderBuilder::new()
                    .level(level as u32)
                    .block_size(lz4::BlockSize::Max4MB)
                    .checksum(lz4::ContentChecksum::ChecksumEnabled)
                    .build(inner)?,
            ),
            Algorithm::Bzip2 => {
                EncoderInner::Bzip2(bzip2::write::BzEncoder::new(inner, bzip2::Compression::new(level as u32)))
            }
        };
        Ok(Encoder { inner })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            EncoderInner::None(_) => Algorithm::None,
            EncoderInner::Gzip(_) => Algorithm::Gzip,
            EncoderInner::Zstd(_) => Algorithm::Zstd,
            EncoderInner::Lz4(_) => Algorithm::Lz4,
            EncoderInner::Bzip2(_) => Algorithm::Bzip2,
        }
    }

    /// Writes the end of the stream and returns the inner writer (not flushed to disk).
    ///
    /// # Errors
    /// When the last bytes cannot be written.
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            EncoderInner::None(w) => Ok(w),
            EncoderInner::Gzip(e) => e.finish(),
            EncoderInner::Zstd(e) => e.finish(),
            EncoderInner::Lz4(e) => {
                let (w, result) = e.finish();
                result.map(|()| w)
            }
            EncoderInner::Bzip2(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            EncoderInner::None(w) => w.write(buf),
            EncoderInner::Gzip(e) => e.write(buf),
            EncoderInner::Zstd(e) => e.write(buf),
            EncoderInner::Lz4(e) => e.write(buf),
            EncoderInner::Bzip2(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            EncoderInner::None(w) => w.write_all(buf),
            EncoderInner::Gzip(e) => e.write_all(buf),
            EncoderInner::Zstd(e) => e.write_all(buf),
            EncoderInner::Lz4(e) => e.write_all(buf),
            EncoderInner::Bzip2(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            EncoderInner::None(w) => w.flush(),
            EncoderInner::Gzip(e) => e.flush(),
            EncoderInner::Zstd(e) => e.flush(),
            EncoderInner::Lz4(e) => e.flush(),
            EncoderInner::Bzip2(e) => e.flush(),
        }
    }
}

// One decoder lives per file being read; a few hundred bytes of variant size do not matter.
#[allow(clippy::large_enum_variant)]
enum DecoderInner<R: BufRead> {
    None(R),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Zstd(Box<crate::zstd_frames::FramedDecoder<R>>),
    /// `None` once the frame was checked complete at the end of input.
    Lz4(Option<lz4::Decoder<R>>),
    Lz4Blocks(LegacyLz4Decoder<R>),
    Bzip2(bzip2::bufread::MultiBzDecoder<R>),
}

/// Decompresses what it reads from `R`. Concatenated gzip members, zstd frames and bzip2 streams
/// are read as one stream, as the command-line tools do. Memory stays bounded whatever the input:
/// zstd windows are limited to 128 MiB (the format's default limit), LZ4 blocks to 4 MiB.
pub struct Decoder<R: BufRead> {
    inner: DecoderInner<R>,
}

impl<R: BufRead> std::fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("algorithm", &self.algorithm()).finish_non_exhaustive()
    }
}

impl<R: BufRead> Decoder<R> {
    /// A decoder for `algorithm`. For LZ4, the frame format or upstream's block sequence is
    /// chosen by the first bytes.
    ///
    /// # Errors
    /// When the first bytes cannot be read or the codec cannot be set up.
    pub fn new(algorithm: Algorithm, mut inner: R) -> io::Result<Decoder<R>> {
        let inner = match algorithm {
            Algorithm::None => DecoderInner::None(inner),
            Algorithm::Gzip => DecoderInner::Gzip(flate2::bufread::MultiGzDecoder::new(inner)),
            Algorithm::Zstd => DecoderInner::Zstd(Box::new(crate::zstd_frames::FramedDecoder::new(inner)?)),
            Algorithm::Lz4 => {
                if peek(&mut inner, 4)?.starts_with(&LZ4_FRAME_MAGIC) {
                    DecoderInner::Lz4(Some(lz4::Decoder::new(inner)?))
                } else {
                    DecoderInner::Lz4Blocks(LegacyLz4Decoder::new(inner))
                }
            }
            Algorithm::Bzip2 => DecoderInner::Bzip2(bzip2::bufread::MultiBzDecoder::new(inner)),
        };
        Ok(Decoder { inner })
    }

    /// A decoder for whatever the first bytes say (`None` passes plain data through).
    ///
    /// # Errors
    /// When the first bytes cannot be read.
    pub fn detect(mut inner: R) -> io::Result<Decoder<R>> {
        let algorithm = Algorithm::from_magic(peek(&mut inner, 4)?).unwrap_or(Algorithm::None);
        Decoder::new(algorithm, inner)
    }

    /// The algorithm being decoded.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            DecoderInner::None(_) => Algorithm::None,
            DecoderInner::Gzip(_) => Algorithm::Gzip,
            DecoderInner::Zstd(_) => Algorithm::Zstd,
            DecoderInner::Lz4(_) | DecoderInner::Lz4Blocks(_) => Algorithm::Lz4,
            DecoderInner::Bzip2(_) => Algorithm::Bzip2,
        }
    }

    /// Whether this is upstream's LZ4 block sequence rather than an LZ4 frame.
    pub fn is_legacy_lz4(&self) -> bool {
        matches!(self.inner, DecoderInner::Lz4Blocks(_))
    }

    /// Writes everything left to decode into `w` and returns the number of bytes written. Faster
    /// than `io::copy` from this decoder: zstd frames go to `w` whole, straight from the buffer
    /// they were decompressed into, and other codecs use a 256 KiB buffer (`io::copy` would use
    /// 8 KiB, one `write` system call each).
    ///
    /// # Errors
    /// [`CopyError::Decode`] for damaged or truncated input (or a failed read),
    /// [`CopyError::Write`] when `w` fails.
    pub fn copy_to<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<u64, CopyError> {
        if let DecoderInner::Zstd(d) = &mut self.inner {
            let mut failed_write = None;
            let mut tracking = TrackWrites { inner: w, failed: &mut failed_write };
            return d.copy_to(&mut tracking).map_err(|e| match failed_write {
                Some(w) => CopyError::Write(w),
                None => CopyError::Decode(e),
            });
        }
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            let n = match self.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Decode(e)),
            };
            w.write_all(&buf[..n]).map_err(CopyError::Write)?;
            total += n as u64;
        }
    }
}

/// Which side of [`Decoder::copy_to`] failed.
#[derive(Debug)]
pub enum CopyError {
    /// Reading or decoding the input.
    Decode(io::Error),
    /// Writing the output.
    Write(io::Error),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Decode(e) => write!(f, "decoding: {e}"),
            CopyError::Write(e) => write!(f, "writing the decoded data: {e}"),
        }
    }
}

impl std::error::Error for CopyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CopyError::Decode(e) | CopyError::Write(e) => Some(e),
        }
    }
}

/// Remembers the error of a failed write, so that it can be told from a decoding error.
struct TrackWrites<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    failed: &'a mut Option<io::Error>,
}

impl<W: Write + ?Sized> Write for TrackWrites<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.record(e))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf).map_err(|e| self.record(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.record(e))
    }
}

impl<W: Write + ?Sized> TrackWrites<'_, W> {
    fn record(&mut self, e: io::Error) -> io::Error {
        let copy = io::Error::new(e.kind(), e.to_string());
        *self.failed = Some(e);
        copy
    }
}

impl<R: Read> Decoder<BufReader<R>> {
    /// A decoder over an unbuffered reader.
    ///
    /// # Errors
    /// As [`Decoder::new`].
    pub fn from_reader(algorithm: Algorithm, inner: R) -> io::Result<Decoder<BufReader<R>>> {
        Decoder::new(algorithm, BufReader::with_capacity(128 << 10, inner))
    }
}

/// The first `n` bytes buffered in `r` (fewer at end of input), without consuming them.
fn peek<R: BufRead>(r: &mut R, n: usize) -> io::Result<&[u8]> {
    let buf = r.fill_buf()?;
    Ok(&buf[..buf.len().min(n)])
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            DecoderInner::None(r) => r.read(buf),
            DecoderInner::Gzip(d) => d.read(buf),
            DecoderInner::Zstd(d) => d.read(buf),
            DecoderInner::Lz4(slot) => {
                let Some(d) = slot else { return Ok(0) };
                let n = d.read(buf)?;
                if n == 0 && !buf.is_empty() {
                    // The LZ4 decoder reports the end of its input as the end of the data even
                    // in the middle of a frame: ask it whether the frame was complete.
                    let (_, complete) = slot.take().map(lz4::Decoder::finish).expect("checked above");
                    complete.map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "LZ4 frame cut short"))?;
                }
                Ok(n)
            }
            DecoderInner::Lz4Blocks(d) => d.read(buf),
            DecoderInner::Bzip2(d) => d.read(buf),
        }
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match &mut self.inner {
            // Each zstd frame is decompressed straight into `buf`.
            DecoderInner::Zstd(d) => d.read_to_end(buf),
            DecoderInner::None(r) => r.read_to_end(buf),
            // The standard loop over `read` (through `Take`, which does not override it).
            _ => io::Read::take(self, u64::MAX).read_to_end(buf),
        }
    }
}
