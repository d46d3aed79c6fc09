//! The protocols pgmoneta speaks.
//!
//! This crate owns, as sans-IO codecs with thin blocking transports on top:
//!
//! - the PostgreSQL v3 frontend/backend protocol: startup, SSL negotiation, authentication
//!   (SCRAM-SHA-256 as a socket-free state machine), simple queries and the COPY sub-protocols;
//! - the replication protocol: `IDENTIFY_SYSTEM`, `TIMELINE_HISTORY`, slots, `BASE_BACKUP`,
//!   `UPLOAD_MANIFEST` and `START_REPLICATION` with standby status updates;
//! - WAL page and record decoding for PostgreSQL 14 to 18;
//! - the pgmoneta management protocol: frame header, JSON document, command ids, error codes.
//!
//! Nothing is public yet: the modules arrive one protocol at a time, each with its tests against a
//! real server.
