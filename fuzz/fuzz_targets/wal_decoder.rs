//! The WAL decoder on arbitrary bytes, whole and in pieces: no panic, the same records either
//! way, only records whose CRC checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgmoneta_wire::wal::fuzzing::check_wal_decoder(data);
});
