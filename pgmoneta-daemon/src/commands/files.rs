//! `encrypt`, `decrypt`, `compress` and `decompress` of a single file.

use std::path::PathBuf;
use std::sync::Arc;

use pgmoneta_compress::{Algorithm, Compression, EncoderOptions};
use pgmoneta_crypto::Cipher;
use pgmoneta_wire::management::error_code as ec;
use pgmoneta_wire::management::request::{self, FileRequest};
use pgmoneta_wire::management::response::FileResponse;
use serde_json::{Map, Value};

use super::{fail, reply, Failure, Reply};
use crate::state::Shared;

fn source_file(req: &Map<String, Value>, nofile: u32) -> Result<PathBuf, Failure> {
    let p = PathBuf::from(request::parse::<FileRequest>(req).source_file.unwrap_or_default());
    if !p.is_file() {
        return Err(fail(nofile, format!("no file {}", p.display())));
    }
    Ok(p)
}

fn destination(p: PathBuf) -> Reply {
    reply(&FileResponse { destination_file: p.display().to_string() })
}

fn cipher(shared: &Shared) -> Cipher {
    Cipher::from_code(shared.config().main.encryption.code() as u8).unwrap_or(Cipher::Aes256Gcm)
}

pub(super) fn encrypt(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let path = source_file(req, ec::ENCRYPT_NOFILE)?;
    let key = shared.master_key.as_deref().ok_or_else(|| fail(ec::ENCRYPT_ERROR, "encrypt: no master key"))?;
    let out = pgmoneta_crypto::encrypt_in_place(key, cipher(shared), &path)
        .map_err(|e| fail(ec::ENCRYPT_ERROR, format!("encrypt {}: {e}", path.display())))?;
    destination(out)
}

pub(super) fn decrypt(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let path = source_file(req, ec::DECRYPT_NOFILE)?;
    let key = shared.master_key.as_deref().ok_or_else(|| fail(ec::DECRYPT_ERROR, "decrypt: no master key"))?;
    let out = pgmoneta_crypto::decrypt_in_place(key, cipher(shared), &path)
        .map_err(|e| fail(ec::DECRYPT_ERROR, format!("decrypt {}: {e}", path.display())))?;
    destination(out)
}

/// The NOFILE code of an algorithm's family (ERROR is NOFILE + 3).
fn family(alg: Algorithm) -> u32 {
    match alg {
        Algorithm::Gzip => ec::GZIP_NOFILE,
        Algorithm::Lz4 => ec::LZ4_NOFILE,
        Algorithm::Bzip2 => ec::BZIP2_NOFILE,
        _ => ec::ZSTD_NOFILE,
    }
}

pub(super) fn compress(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let config = shared.config();
    let alg = Compression::from_code(config.main.compression.code()).map_or(Algorithm::Zstd, |c| c.algorithm);
    let alg = if alg == Algorithm::None { Algorithm::Zstd } else { alg };
    let path = source_file(req, family(alg))?;
    let mut options = EncoderOptions::default_for(alg);
    options.level = alg.clamp_level(config.main.compression_level);
    let out = pgmoneta_compress::compress_file(&path, alg, options)
        .map_err(|e| fail(family(alg) + 3, format!("compress {}: {e}", path.display())))?;
    destination(out)
}

pub(super) fn decompress(req: &Map<String, Value>) -> Reply {
    let name = request::parse::<FileRequest>(req).source_file.unwrap_or_default();
    let Some(alg) = Algorithm::from_suffix(&name) else {
        return Err(fail(ec::DECOMPRESS_UNKNOWN, format!("decompress: {name} has no known compression suffix")));
    };
    let path = source_file(req, family(alg))?;
    let out = pgmoneta_compress::decompress_file(&path)
        .map_err(|e| fail(family(alg) + 3, format!("decompress {}: {e}", path.display())))?;
    destination(out)
}
