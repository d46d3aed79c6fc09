//! The `cluster_message` target: see the function it calls for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgmoneta_wire::cluster::check_messages(data);
});
