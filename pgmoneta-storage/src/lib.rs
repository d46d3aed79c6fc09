//! The backup repository.
//!
//! This crate owns the on-disk layout (`<base_dir>/<server>/backup/<label>/`, `wal/`), `backup.info`
//! and manifests, the backup pipeline fed by a `BASE_BACKUP` stream, the WAL segment writer,
//! restore with recovery targets, incremental combine, verification, deduplicating links,
//! deletion and retention (planned, then applied), archives and hot standbys, behind a small
//! storage trait with local and remote back ends.
//!
//! Where to start: [`Repository`], the one way to act on a repository (catalog, backup of a
//! [`PgSource`] or of any [`pgmoneta_wire::source::BackupSource`] such as archives recorded
//! earlier, restore planned then applied, verify, delete, keep, annotate, retention, archive,
//! uploads). The modules are its parts: [`catalog::Catalog`] answers which backups a
//! server has and which one a label, `oldest`, `newest` or recovery target
//! ([`target::RecoveryTarget`]) means; [`stored`] is how a single file is stored (suffixes,
//! compression, encryption) and read back; [`store::Store`] is the storage trait (remote
//! stores behind the `cloud` and `sftp` features).
#![deny(missing_docs)]

pub mod backup;
pub mod catalog;
mod error;
pub mod export;
pub mod fsio;
pub mod fuzzing;
pub mod incremental;
pub mod info;
pub mod layout;
pub mod manifest;
pub mod ops;
mod pool;
pub mod reach;
pub mod remote;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod sqlbackup;
pub mod store;
pub mod stored;
pub mod summary;
pub use pgmoneta_wire::tar;
pub mod target;
pub mod verify;
pub mod wal;
mod walstop;

pub use backup::BackupOptions;
pub use catalog::{BackupSelector, Catalog};
pub use error::{Result, StorageError};
pub use info::BackupInfo;
pub use repository::{PgSource, Repository, RetentionReport, Verification};
pub use restore::{RestoreOptions, RestorePlan, RestoreReport};
pub use store::{LocalStore, Store};
pub use target::RecoveryTarget;

/// The README's example, compiled with the documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
