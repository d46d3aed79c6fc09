//! The command-line tools: `pgmoneta-cli` (drives the daemon over the management protocol, and
//! serves PostgreSQL's `restore_command`), `pgmoneta-admin` (master key and user vaults) and
//! `pgmoneta-walinfo` (decodes WAL).
#![deny(missing_docs)]

pub mod admin;
pub mod archive_get;
pub mod cli;
pub mod client;
pub mod output;
pub mod prefetch;
pub mod walfilter;
pub mod walinfo;
pub mod walview;
