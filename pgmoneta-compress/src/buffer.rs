//! One-shot helpers over the streaming codecs.

use std::io::{Read, Write};

use crate::algorithm::Algorithm;
use crate::error::{CompressError, Result};
use crate::stream::{Decoder, Encoder, EncoderOptions};

fn io_err(op: &'static str) -> impl Fn(std::io::Error) -> CompressError {
    move |source| CompressError::Io { op, path: Default::default(), source }
}

/// Compresses `data` with `algorithm` at `level` (clamped).
///
/// # Errors
/// Only when the codec cannot be set up.
pub fn compress(algorithm: Algorithm, level: i32, data: &[u8]) -> Result<Vec<u8>> {
    let mut enc =
        Encoder::new(algorithm, EncoderOptions { level, workers: 0 }, Vec::with_capacity(data.len() / 2 + 64))
            .map_err(io_err("setting up the encoder"))?;
    enc.write_all(data).map_err(io_err("compressing"))?;
    enc.finish().map_err(io_err("compressing"))
}

/// Decompresses `data` compressed with `algorithm`, refusing to produce more than `limit` bytes.
///
/// # Errors
/// [`CompressError::Corrupt`] for damaged or truncated data, [`CompressError::OutputLimit`] when
/// the output would exceed `limit`.
pub fn decompress(algorithm: Algorithm, data: &[u8], limit: u64) -> Result<Vec<u8>> {
    let dec = Decoder::new(algorithm, data).map_err(|e| CompressError::from_read(e, algorithm, None))?;
    read_limited(dec, algorithm, limit)
}

/// Decompresses `data` whatever its format, recognised by magic bytes (plain data is returned as
/// it is), refusing to produce more than `limit` bytes.
///
/// # Errors
/// As [`decompress`].
pub fn decompress_detect(data: &[u8], limit: u64) -> Result<Vec<u8>> {
    let dec = Decoder::detect(data).map_err(|e| CompressError::from_read(e, Algorithm::None, None))?;
    let algorithm = dec.algorithm();
    read_limited(dec, algorithm, limit)
}

fn read_limited<R: Read>(reader: R, algorithm: Algorithm, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| CompressError::from_read(e, algorithm, None))?;
    if out.len() as u64 > limit {
        return Err(CompressError::OutputLimit { limit });
    }
    Ok(out)
}
