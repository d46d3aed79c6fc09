//! Replication and base backup `CopyData` payloads: no panic, exact re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgmoneta_wire::message::fuzzing::check_replication_payload(data);
});
