//! pgmoneta-compress on real PostgreSQL files, against the command-line tools, and on damaged
//! input.

mod cli_tools;
mod codecs;
mod fuzz_seeds;

pub use pgmoneta_testkit::shared_corpus as corpus;
