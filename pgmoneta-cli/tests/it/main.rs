//! The command-line tools against real PostgreSQL servers.

mod admin;
mod completions;
mod pitr;
mod prefetch;
mod walfilter;
mod walinfo;
