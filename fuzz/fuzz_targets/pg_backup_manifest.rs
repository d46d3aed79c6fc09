//! The `pg_backup_manifest` target: see the function it calls for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgmoneta_storage::fuzzing::check_pg_manifest(data);
});
