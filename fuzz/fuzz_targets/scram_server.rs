//! The `scram_server` target: see the function it calls for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgmoneta_wire::auth::fuzzing::check_scram_server(data);
});
