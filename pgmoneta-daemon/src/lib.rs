//! The pgmoneta daemon.
//!
//! This crate composes the libraries into the `pgmoneta` service:
//!
//! - [`state`]: what the threads share (configuration, secrets, per-server status and locks);
//! - [`pg`]: connections to the configured servers and the checks that make one valid;
//! - [`walservice`]: one WAL receiver thread per server under a supervisor;
//! - [`mgmt`] and [`commands`]: the management server (Unix socket, remote TCP with TLS and
//!   SCRAM-SHA-256) and every management command;
//! - [`http`]: the HTTP ports on hyper, with their limits; on them [`metrics`] (the Prometheus
//!   endpoint), [`console`] (the web console and `/api`) and [`nagios`] (the Nagios status
//!   line, which `pgmoneta-cli check` also reads through the `check` command);
//! - [`timers`]: retention, background verification and server re-checks;
//! - [`logging`], [`pidfile`], [`clock`]: the process's plumbing.
#![deny(missing_docs)]

pub mod clock;
pub mod cluster;
pub mod commands;
#[cfg(test)]
mod config_reference;
pub mod console;
pub mod error;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod mgmt;
pub mod nagios;
pub mod pg;
pub mod pidfile;
pub mod remote;
pub mod sdnotify;
pub mod state;
pub mod timers;
pub mod walservice;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pgmoneta_core::config::Config;
use pgmoneta_crypto::{MasterKey, Vault, VaultKind};

use crate::error::{DaemonError, Result};
use crate::state::Shared;

/// `[pgmoneta]` keys whose change needs a restart: a reload keeps their old value and says so.
pub const RESTART_KEYS: &[&str] = &[
    "host",
    "unix_socket_dir",
    "base_dir",
    "workspace",
    "pidfile",
    "libev",
    "log_type",
    "log_path",
    "hugepage",
    "update_process_title",
    "tls",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
    "metrics",
    "console",
    "nagios",
    "management",
    "metrics_cert_file",
    "metrics_key_file",
    "metrics_ca_file",
    "metrics_cache_max_size",
    "metrics_cache_max_age",
    "blocking_timeout",
    "verification",
    "retention_interval",
    "direct_io",
    "cluster",
    "cluster_node",
    "cluster_heartbeat",
    "cluster_takeover",
];

/// Reads a vault and decrypts every password with the master key.
///
/// # Errors
/// The vault unreadable, or a password that does not decrypt, naming the file (and user).
pub fn read_vault(path: &Path, kind: VaultKind, key: Option<&MasterKey>) -> Result<HashMap<String, String>> {
    let vault = Vault::load(path, kind).map_err(|source| DaemonError::Vault { path: path.to_owned(), source })?;
    let mut out = HashMap::new();
    let users: Vec<String> = vault.users().into_iter().map(str::to_owned).collect();
    if users.is_empty() {
        return Ok(out);
    }
    let key = key.ok_or_else(|| DaemonError::VaultNeedsKey { path: path.to_owned() })?;
    for user in users {
        match vault.password(key, &user) {
            Ok(Some(p)) => {
                out.insert(user, p);
            }
            Ok(None) => {}
            Err(source) => return Err(DaemonError::VaultPassword { path: path.to_owned(), user, source }),
        }
    }
    Ok(out)
}

/// Re-reads the configuration and the vaults from disk and applies what can change at run
/// time. Keys that need a restart keep their value; the result says whether any did.
///
/// # Errors
/// Every problem of the new configuration (nothing is applied then).
pub fn reload(shared: &Arc<Shared>) -> Result<bool> {
    let parsed = Config::load(&shared.paths.config)?;
    let (mut next, warnings) = parsed.check()?;
    for w in warnings {
        log::warn!("{w}");
    }
    let current = shared.config();
    let mut restart = false;
    for key in RESTART_KEYS {
        let (old, new) = (current.get(key), next.get(key));
        if let (Ok(old), Ok(new)) = (old, new) {
            if old != new {
                log::warn!("reload: {key} changed from {old:?} to {new:?}; it takes effect after a restart");
                let _ = next.set(key, &old);
                restart = true;
            }
        }
    }
    let names = |c: &Config| c.servers.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if names(&next) != names(&current) {
        log::warn!("reload: the servers changed; the new set takes effect after a restart");
        next.servers = current.servers.clone();
        restart = true;
    }
    let key = shared.master_key.as_deref();
    let users = read_vault(&shared.paths.users, VaultKind::Users, key)?;
    let admins = match &shared.paths.admins {
        Some(p) if p.exists() => read_vault(p, VaultKind::Admins, key)?,
        _ => HashMap::new(),
    };
    *shared.users.write() = users;
    *shared.admins.write() = admins;
    *shared.config.write() = Arc::new(next);
    logging::install(&shared.config().main);
    // Remote repository settings apply to the next upload.
    remote::install(shared);
    // Peers added or removed take effect now.
    if let Some(cluster) = &shared.cluster {
        cluster.reconfigure(&shared.config());
        cluster::link::spawn_new_peers(shared, cluster);
    }
    log::info!("configuration reloaded{}", if restart { " (some changes need a restart)" } else { "" });
    Ok(restart)
}

/// Starts an orderly shutdown: the signal thread wakes and stops everything.
pub fn request_shutdown(shared: &Shared) {
    shared.shutdown.store(true, Ordering::SeqCst);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM);
}
