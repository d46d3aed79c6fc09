//! Core types shared by every pgmoneta-rs crate.
//!
//! This crate does no I/O beyond reading a configuration file on request, and depends on no other
//! crate of the workspace. It owns:
//!
//! - [`Lsn`] and [`AtomicLsn`]: WAL positions, printed `16/B374D848`, with segment and page math;
//! - [`TimelineId`], [`WalSegmentSize`], [`WalSegment`] and [`WalFileKind`]: the names of files in
//!   `pg_wal` for any segment size from 1 MB to 1 GB;
//! - [`PgVersion`]: the supported PostgreSQL majors (14 to 18);
//! - [`BackupLabel`] and [`CivilDateTime`]: backup names (`YYYYMMDDhhmmss`) and calendar math;
//! - [`Clock`]: an injectable "now";
//! - [`config`]: `pgmoneta.conf` and `pgmoneta_cli.conf`, parsed into typed structs whose
//!   validation reports every problem with file, line and key;
//! - [`CoreError`] and the workspace's error policy.
//!
//! ```
//! use pgmoneta_core::{Lsn, TimelineId, WalSegment, WalSegmentSize};
//!
//! let lsn: Lsn = "16/B374D848".parse()?;
//! let segment = WalSegment::containing(TimelineId(1), lsn, WalSegmentSize::DEFAULT);
//! assert_eq!(segment.file_name(WalSegmentSize::DEFAULT), "0000000100000016000000B3");
//! assert_eq!(lsn.segment_offset(WalSegmentSize::DEFAULT), 0x74D848);
//! # Ok::<(), pgmoneta_core::CoreError>(())
//! ```

mod clock;
pub mod config;
pub mod crash;
mod error;
mod label;
mod lsn;
mod version;
mod wal;

pub use clock::{Clock, FixedClock, Timestamp};
pub use error::CoreError;
pub use label::{days_in_month, BackupLabel, CivilDateTime};
pub use lsn::{AtomicLsn, Lsn, XLOG_BLCKSZ};
pub use version::PgVersion;
pub use wal::{TimelineId, WalFileKind, WalSegment, WalSegmentSize};
