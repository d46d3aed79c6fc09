//! The `pgmoneta` daemon and `pgmoneta-cli` end to end: real binaries, a real PostgreSQL.

mod cli;
mod clustering;
mod console;
mod crash;
mod cuts;
mod faults;
mod frames;
mod hot_standby;
mod incremental;
mod metrics;
mod monitoring;
mod remote;
mod startup;
mod timers;

#[path = "../common/mod.rs"]
mod common;
pub use common::*;
