//! Clustering: several pgmoneta nodes sharing the work for the same servers, so that no backup
//! host is a single point of failure. See `docs/clustering.md`.
//!
//! [`role`] decides, per server, whether this node is active (streams from the server's slot,
//! takes backups) or follows a peer; the server's replication slot is the arbiter.

pub mod backups;
pub mod copy;
pub mod link;
pub mod node;
pub mod role;
