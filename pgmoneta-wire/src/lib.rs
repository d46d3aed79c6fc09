//! The PostgreSQL protocols pgmoneta speaks, usable on their own.
//!
//! - [`message`]: the v3 frontend/backend messages as sans-IO codecs
//!   ([`message::backend::BackendDecoder`], [`message::frontend::FrontendDecoder`]), each message
//!   type bounded in length before it is buffered;
//! - [`auth::scram`]: SCRAM-SHA-256 client and server as socket-free state machines;
//! - [`PgConnection`]: a blocking connection over TCP, a Unix socket or TLS (modes disable,
//!   prefer, require, verify-ca, verify-full), with simple queries returning text rows;
//! - [`replication`]: `IDENTIFY_SYSTEM`, `SHOW`, `TIMELINE_HISTORY`, `READ_REPLICATION_SLOT`,
//!   slot creation and removal, `BASE_BACKUP` as a streaming reader, `UPLOAD_MANIFEST`, and
//!   `START_REPLICATION` with standby status updates and timeline switches.
//!
//! Stream 1 MB of WAL from a slot:
//!
//! ```no_run
//! use pgmoneta_wire::replication::WalEvent;
//! use pgmoneta_wire::{ConnectOptions, PgConnection, ReplicationMode, SslMode};
//! use std::time::Duration;
//!
//! let opts = ConnectOptions::new("127.0.0.1", 5432, "repl")
//!     .password("secret")
//!     .replication(ReplicationMode::Physical)
//!     .ssl_mode(SslMode::Prefer)
//!     .read_timeout(Some(Duration::from_secs(1)));
//! let mut conn = PgConnection::connect(&opts)?;
//! let system = conn.identify_system()?;
//! let size = pgmoneta_core::WalSegmentSize::DEFAULT;
//! let start = system.xlogpos.segment_start(size);
//! let mut stream = conn.start_replication(Some("repl"), start, system.timeline)?;
//! let (mut received, mut end) = (0u64, start);
//! while received < 1 << 20 {
//!     match stream.next_event()? {
//!         Some(WalEvent::Data { start, data, .. }) => {
//!             received += data.len() as u64;
//!             end = start + data.len() as u64;
//!             // ... write `data` at `start`, fsync, then:
//!             stream.send_status(end, end, false)?;
//!         }
//!         Some(WalEvent::Keepalive { reply_requested: true, .. }) | None => stream.send_status(end, end, false)?,
//!         Some(WalEvent::End { .. }) => break,
//!         Some(_) => {}
//!     }
//! }
//! stream.stop()?;
//! # Ok::<(), pgmoneta_wire::WireError>(())
//! ```
#![deny(missing_docs)]

pub mod auth;
pub mod cluster;
mod connection;
mod error;
pub mod management;
pub mod message;
pub mod replication;
pub mod source;
pub mod tar;
pub mod wal;

pub use connection::{
    ConnectOptions, PgConnection, QueryResult, ReplicationMode, Row, ShutdownHandle, SslMode, Stream,
};
pub use error::{ErrorFields, Result, Tag, WireError};
