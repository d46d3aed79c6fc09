//! Invariants checked by the `decompress_*` fuzz targets and by the tests that replay their seed
//! corpora.

use std::io::Read;

use crate::{decompress, Algorithm, CompressError, Decoder};

/// Output limit for fuzzed input: large enough for real seeds, small enough to stay fast.
const LIMIT: u64 = 16 << 20;

/// Decodes `data` as `algorithm` and asserts: no panic, no endless loop (the call returns), the
/// output limit holds, and reading through the streaming decoder in small pieces gives the same
/// outcome as the one-shot helper.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_decoder(algorithm: Algorithm, data: &[u8]) {
    let whole = decompress(algorithm, data, LIMIT);
    if let Ok(out) = &whole {
        assert!(out.len() as u64 <= LIMIT);
    }
    let mut pieces = Vec::new();
    let streamed = Decoder::new(algorithm, data).and_then(|mut d| {
        let mut buf = [0u8; 333];
        loop {
            let n = d.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            pieces.extend_from_slice(&buf[..n]);
            if pieces.len() as u64 > LIMIT {
                return Err(std::io::Error::other("limit"));
            }
        }
    });
    match (&whole, &streamed) {
        (Ok(out), Ok(())) => assert!(*out == pieces, "{algorithm}: one-shot and streamed output differ"),
        (Err(CompressError::OutputLimit { .. }), _) | (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("{algorithm}: one-shot succeeded, streaming failed: {e}"),
        (Err(e), Ok(())) => panic!("{algorithm}: streaming succeeded, one-shot failed: {e}"),
    }
}
