//! `status` and `status details`: the repository's space, and each server's state, settings
//! and backups.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pgmoneta_storage::catalog::Catalog;
pub use pgmoneta_storage::repository::dir_size;
use pgmoneta_wire::management::response::{ServerStatus, StatusResponse};

use super::{reply, status_backup, Reply};
use crate::state::{Activity, Shared};

/// Bytes a server's repository holds on the local disk: the stored bytes of its backups whose
/// data is here, from their `backup.info` (so that a request does not walk every file of every
/// backup), and its WAL archive, from one listing.
pub fn server_usage(shared: &Shared, name: &str) -> (u64, u64) {
    shared.repo.usage(name, &shared.base_dir())
}

/// Free and total bytes of the file system holding `path`.
pub fn disk_space(path: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let f = s.fragment_size();
            (s.blocks_available() * f, s.blocks() * f)
        }
        Err(_) => (0, 0),
    }
}

pub(super) fn status(shared: &Arc<Shared>, details: bool) -> Reply {
    let config = shared.config();
    let base = shared.base_dir();
    let (free_space, total_space) = disk_space(&base);
    // The repository is the sum of the servers' backups and WAL.
    let server_sizes: Vec<u64> = config
        .servers
        .iter()
        .map(|s| {
            let (backups, wal) = server_usage(shared, &s.name);
            backups + wal
        })
        .collect();
    let mut r = StatusResponse {
        used_space: server_sizes.iter().sum(),
        free_space,
        total_space,
        workers: config.main.workers as u64,
        number_of_servers: config.servers.len() as u64,
        pgmoneta_fips: details.then_some(false),
        servers: Vec::new(),
    };
    for (s, server_size) in config.servers.iter().zip(server_sizes) {
        let Some(state) = shared.server(&s.name) else { continue };
        let facts = state.facts.read().clone();
        let retention = config.effective_retention(s);
        let backups = shared.repo.catalog(&s.name).map(Catalog::into_backups).unwrap_or_default();
        let active = state.activity();
        let workspace = s.workspace.clone().or_else(|| config.main.workspace.clone());
        let progress = state.stream.read().clone();
        let flushed = progress.flushed.load();
        let server_end = progress.server_end.load();
        let or_unset = |v: Option<u32>| v.map_or(-1, i64::from);
        let mut e = ServerStatus {
            server: s.name.clone(),
            online: state.online(),
            primary: facts.primary,
            valid: facts.valid,
            problems: facts.problems.clone(),
            retention_days: or_unset(retention.days),
            retention_weeks: or_unset(retention.weeks),
            retention_months: or_unset(retention.months),
            retention_years: or_unset(retention.years),
            active_backup: active == Some(Activity::Backup),
            active_restore: active == Some(Activity::Restore),
            active_archive: active == Some(Activity::Archive),
            active_delete: active == Some(Activity::Delete),
            active_retention: active == Some(Activity::Retention),
            active_verify: active == Some(Activity::Verify),
            number_of_backups: backups.len() as u64,
            server_size,
            workspace_free_space: workspace.map_or(0, |w| dir_size(Path::new(&w))),
            hot_standby_size: s.hot_standby.0.iter().map(|d| dir_size(&Path::new(d).join(&s.name))).sum(),
            workers: shared.workers(s) as u64,
            checksums: facts.checksums,
            wal_streaming: state.wal_streaming.load(Ordering::SeqCst),
            wal_problem: state.wal_problem(),
            // Backups valid here whose upload to the remote repositories waits for a retry.
            pending_uploads: shared.repo.pending_uploads(&s.name),
            wal_flushed: flushed.to_string(),
            wal_lag: server_end.0.saturating_sub(flushed.0),
            fips: None,
            backups: None,
        };
        if details {
            e.fips = Some(facts.fips);
            let seg = if facts.segment_size > 0 { facts.segment_size } else { 16 << 20 };
            let mut list = Vec::new();
            let mut previous: Option<u64> = None;
            for b in &backups {
                let wal = flushed.0.saturating_sub(b.start_lsn.0) / seg * seg;
                // WAL written between the previous backup and this one.
                let delta = previous.map_or(0, |p| b.start_lsn.0.saturating_sub(p) / seg * seg);
                previous = Some(b.start_lsn.0);
                list.push(status_backup(b, wal, delta));
            }
            e.backups = Some(list);
        }
        r.servers.push(e);
    }
    reply(&r)
}
