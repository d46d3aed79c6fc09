//! The command-line tools against real PostgreSQL servers.

mod admin;
mod pitr;
mod walfilter;
mod walinfo;
