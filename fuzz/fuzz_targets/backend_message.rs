//! The backend message decoder: no panic, same result however the input is split, exact
//! re-encoding, bounded buffering.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgmoneta_wire::message::fuzzing::check_backend_stream(data);
});
