//! The LZ4 form upstream uses for management payloads: the input's length as a big-endian
//! 32-bit number, then one LZ4 block. Older peers sent the block alone; reading accepts that too.

use crate::algorithm::Algorithm;
use crate::error::{CompressError, Result};

fn corrupt(detail: impl Into<String>) -> CompressError {
    CompressError::Corrupt { algorithm: Algorithm::Lz4, path: None, detail: detail.into() }
}

/// Compresses `data` as one LZ4 block after its big-endian length.
///
/// # Errors
/// When `data` is larger than an LZ4 block can be (about 2 GB).
pub fn lz4_message_compress(data: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(data.len()).map_err(|_| corrupt("input larger than 4 GiB"))?;
    let block = lz4::block::compress(data, None, false).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(4 + block.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&block);
    Ok(out)
}

/// Decompresses an LZ4 message of at most `limit` bytes: the length-prefixed form, or, when that
/// does not decode, a bare block of at most four times its own size (what older peers sent).
///
/// # Errors
/// [`CompressError::Corrupt`] when neither form decodes; [`CompressError::OutputLimit`] when the
/// declared length exceeds `limit`.
pub fn lz4_message_decompress(data: &[u8], limit: u64) -> Result<Vec<u8>> {
    if data.len() > 4 {
        let declared = u64::from(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
        if declared <= limit && declared <= i32::MAX as u64 {
            if let Ok(out) = lz4::block::decompress(&data[4..], Some(declared as i32)) {
                if out.len() as u64 == declared {
                    return Ok(out);
                }
            }
        } else if declared > limit && declared <= i32::MAX as u64 {
            return Err(CompressError::OutputLimit { limit });
        }
    }
    let legacy = (data.len() as u64).saturating_mul(4).min(limit).min(i32::MAX as u64) as i32;
    lz4::block::decompress(data, Some(legacy)).map_err(|e| corrupt(format!("not an LZ4 message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_decode() {
        let text = br#"{"Header":{"Command":9},"Request":{}}"#.repeat(20);
        let packed = lz4_message_compress(&text).unwrap();
        assert_eq!(&packed[..4], &(text.len() as u32).to_be_bytes());
        assert_eq!(lz4_message_decompress(&packed, 1 << 20).unwrap(), text);
        let bare = lz4::block::compress(&text[..100], None, false).unwrap();
        assert_eq!(lz4_message_decompress(&bare, 1 << 20).unwrap(), &text[..100]);
        assert!(lz4_message_decompress(b"\x00\x00\x10\x00garbage", 1 << 20).is_err());
        assert!(matches!(lz4_message_decompress(&packed, 10), Err(CompressError::OutputLimit { .. })));
    }
}
