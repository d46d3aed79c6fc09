//! pgmoneta-storage against real PostgreSQL servers: backups are restored and PostgreSQL is
//! started on the result.

mod backup_restore;
mod export;
mod front_door;
mod fuzz_seeds;
mod incremental;
mod recorded;
mod repository;
mod scale;
mod wal;

#[path = "../common/mod.rs"]
mod common;
pub use common::*;
