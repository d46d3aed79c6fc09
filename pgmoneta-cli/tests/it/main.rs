//! The command-line tools against real PostgreSQL servers.

mod admin;
mod completions;
mod pitr;
mod walfilter;
mod walinfo;
