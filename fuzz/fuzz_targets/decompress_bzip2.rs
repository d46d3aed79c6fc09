//! The bzip2 decoder on arbitrary bytes: an error or data, never a panic, a hang or
//! unbounded output; streamed and one-shot decoding agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgmoneta_compress::Algorithm;

fuzz_target!(|data: &[u8]| {
    pgmoneta_compress::fuzzing::check_decoder(Algorithm::Bzip2, data);
});
