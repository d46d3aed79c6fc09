//! pgmoneta-compress on real PostgreSQL files, against the command-line tools, and on damaged
//! input.

mod cli_tools;
mod codecs;
mod fuzz_seeds;

pub use pgmoneta_testkit::corpus::file as corpus;

/// The `i`th WAL segment of the PostgreSQL 15 corpus (0, 1 or 2: it holds three).
pub fn wal_segment(i: usize) -> Vec<u8> {
    let info = pgmoneta_testkit::corpus::info(15);
    assert!(i < info.segments.len(), "the PostgreSQL 15 corpus has {} segments, not {}", info.segments.len(), i + 1);
    corpus(&format!("pg15/wal/{}", info.segments[i]))
}
