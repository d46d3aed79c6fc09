//! The pgmoneta daemon.
//!
//! This crate composes the libraries into the `pgmoneta` service: configuration and vault loading,
//! one WAL receiver thread per server under a supervisor, the management server (Unix socket and
//! remote TCP with SCRAM-SHA-256 and TLS), the worker pool, timers for retention and verification,
//! the Prometheus endpoint, signals and reload.
//!
//! Nothing is public yet; the `pgmoneta` binary is added with the services it runs.
