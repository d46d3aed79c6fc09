//! A management payload: the JSON document as compact text, or
//! `base64(encrypt(compress(json)))` when the frame's codes ask for compression or encryption.
//! Encryption uses pgmoneta's AES-GCM format with the master key.

use pgmoneta_compress::{Algorithm, CompressError};
use pgmoneta_crypto::{Cipher, MasterKey};

use super::frame::{Frame, MAX_PAYLOAD};
use crate::error::{Result, WireError};

fn bad(what: impl std::fmt::Display) -> WireError {
    WireError::Management(what.to_string())
}

fn algorithm(code: u8) -> Result<Algorithm> {
    Ok(match code {
        0 => Algorithm::None,
        1 => Algorithm::Gzip,
        2 => Algorithm::Zstd,
        3 => Algorithm::Lz4,
        4 => Algorithm::Bzip2,
        other => return Err(bad(format!("unknown compression code {other}"))),
    })
}

fn cipher(code: u8) -> Result<Option<Cipher>> {
    match code {
        0 => Ok(None),
        c => Cipher::from_code(c).map(Some).ok_or_else(|| bad(format!("unknown encryption code {c}"))),
    }
}

/// Builds the frame carrying `json` with the given codes.
///
/// # Errors
/// An unknown code, encryption asked without a master key, a codec failure.
pub fn encode(json: &str, compression: u8, encryption: u8, key: Option<&MasterKey>) -> Result<Frame> {
    let alg = algorithm(compression)?;
    let cipher = cipher(encryption)?;
    if alg == Algorithm::None && cipher.is_none() {
        return Ok(Frame { compression, encryption, payload: json.as_bytes().to_vec() });
    }
    let mut data = match alg {
        Algorithm::None => json.as_bytes().to_vec(),
        Algorithm::Lz4 => pgmoneta_compress::lz4_message_compress(json.as_bytes()).map_err(bad)?,
        a => pgmoneta_compress::compress(a, a.default_level(), json.as_bytes()).map_err(bad)?,
    };
    if let Some(c) = cipher {
        let key = key.ok_or_else(|| bad("an encrypted payload needs the master key"))?;
        data = pgmoneta_crypto::encrypt(key, c, &data).map_err(bad)?;
    }
    Ok(Frame { compression, encryption, payload: openssl::base64::encode_block(&data).into_bytes() })
}

/// The JSON text a frame carries.
///
/// # Errors
/// [`WireError::Management`] for bad base64, data that does not decrypt (wrong key) or
/// decompress, text that is not UTF-8, or an encrypted payload without a master key.
pub fn decode(frame: &Frame, key: Option<&MasterKey>) -> Result<String> {
    let alg = algorithm(frame.compression)?;
    let cipher = cipher(frame.encryption)?;
    let data = if alg == Algorithm::None && cipher.is_none() {
        frame.payload.clone()
    } else {
        let text = std::str::from_utf8(&frame.payload).map_err(|_| bad("payload is not base64 text"))?;
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace() && *c != '\0').collect();
        let mut data = openssl::base64::decode_block(&compact).map_err(|_| bad("payload is not valid base64"))?;
        if let Some(c) = cipher {
            let key = key.ok_or_else(|| bad("the payload is encrypted and no master key is loaded"))?;
            data = pgmoneta_crypto::decrypt(key, c, &data, "management payload").map_err(bad)?;
        }
        let limit = u64::from(MAX_PAYLOAD);
        match alg {
            Algorithm::None => data,
            Algorithm::Lz4 => pgmoneta_compress::lz4_message_decompress(&data, limit).map_err(bad)?,
            a => pgmoneta_compress::decompress(a, &data, limit).map_err(|e: CompressError| bad(e))?,
        }
    };
    let text = String::from_utf8(data).map_err(|_| bad("the document is not UTF-8"))?;
    // Upstream's strings may end with a terminating zero byte.
    Ok(text.trim_end_matches('\0').to_owned())
}
