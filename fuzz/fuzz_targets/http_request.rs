//! The `http_request` target: see the function it calls for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pgmoneta_daemon::http::check_http_request(data);
});
