//! `pgmoneta.conf` parsing and validation: no panic on any input, diagnostics point at real
//! lines, and a valid configuration survives being written back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgmoneta_core::config::fuzzing::check_config(data);
});
