//! The command-line tools against real PostgreSQL servers.

mod admin;
mod completions;
mod config_tool;
mod pitr;
mod prefetch;
mod walfilter;
mod walinfo;
