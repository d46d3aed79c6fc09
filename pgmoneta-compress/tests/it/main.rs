//! pgmoneta-compress on real PostgreSQL files, against the command-line tools, and on damaged
//! input.

mod cli_tools;
mod codecs;
mod fuzz_seeds;

use std::path::PathBuf;

/// A file of the shared corpus (real PostgreSQL 15 files).
pub fn corpus(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
