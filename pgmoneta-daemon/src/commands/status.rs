//! `status` and `status details`: the repository's space, and each server's state, settings
//! and backups.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pgmoneta_storage::catalog::Catalog;
pub use pgmoneta_storage::repository::dir_size;
use serde_json::{json, Map, Value};

use super::{backup_summary, Reply};
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
    let (free, total) = disk_space(&base);
    // The repository is the sum of the servers' backups and WAL.
    let server_sizes: Vec<u64> = config
        .servers
        .iter()
        .map(|s| {
            let (backups, wal) = server_usage(shared, &s.name);
            backups + wal
        })
        .collect();
    let mut m = Map::new();
    m.insert("UsedSpace".into(), json!(server_sizes.iter().sum::<u64>()));
    m.insert("FreeSpace".into(), json!(free));
    m.insert("TotalSpace".into(), json!(total));
    m.insert("Workers".into(), json!(config.main.workers));
    m.insert("NumberOfServers".into(), json!(config.servers.len()));
    if details {
        m.insert("PgmonetaFips".into(), json!(false));
    }
    let mut servers = Vec::new();
    for (s, size) in config.servers.iter().zip(server_sizes) {
        let Some(state) = shared.server(&s.name) else { continue };
        let facts = state.facts.read().clone();
        let retention = config.effective_retention(s);
        let backups = shared.repo.catalog(&s.name).map(Catalog::into_backups).unwrap_or_default();
        let active = state.activity();
        let mut e = Map::new();
        e.insert("Server".into(), json!(s.name));
        e.insert("Online".into(), json!(state.online()));
        e.insert("Primary".into(), json!(facts.primary));
        e.insert("Valid".into(), json!(facts.valid));
        e.insert("Problems".into(), json!(facts.problems));
        for (k, v) in [
            ("RetentionDays", retention.days),
            ("RetentionWeeks", retention.weeks),
            ("RetentionMonths", retention.months),
            ("RetentionYears", retention.years),
        ] {
            e.insert(k.into(), json!(v.map_or(-1, i64::from)));
        }
        e.insert("ActiveBackup".into(), json!(active == Some(Activity::Backup)));
        e.insert("ActiveRestore".into(), json!(active == Some(Activity::Restore)));
        e.insert("ActiveArchive".into(), json!(active == Some(Activity::Archive)));
        e.insert("ActiveDelete".into(), json!(active == Some(Activity::Delete)));
        e.insert("ActiveRetention".into(), json!(active == Some(Activity::Retention)));
        e.insert("ActiveVerify".into(), json!(active == Some(Activity::Verify)));
        e.insert("NumberOfBackups".into(), json!(backups.len()));
        e.insert("ServerSize".into(), json!(size));
        let workspace = s.workspace.clone().or_else(|| config.main.workspace.clone());
        e.insert("WorkspaceFreeSpace".into(), json!(workspace.map_or(0, |w| dir_size(Path::new(&w)))));
        let hs: u64 = s.hot_standby.0.iter().map(|d| dir_size(&Path::new(d).join(&s.name))).sum();
        e.insert("HotStandbySize".into(), json!(hs));
        e.insert("Workers".into(), json!(shared.workers(s)));
        e.insert("Checksums".into(), json!(facts.checksums));
        e.insert("WalStreaming".into(), json!(state.wal_streaming.load(Ordering::SeqCst)));
        if let Some(problem) = state.wal_problem() {
            e.insert("WalProblem".into(), json!(problem));
        }
        let waiting = shared.repo.pending_uploads(&s.name);
        if !waiting.is_empty() {
            // Backups valid here whose upload to the remote repositories waits for a retry.
            e.insert("PendingUploads".into(), json!(waiting));
        }
        let progress = state.stream.read().clone();
        let flushed = progress.flushed.load();
        let server_end = progress.server_end.load();
        e.insert("WalFlushed".into(), json!(flushed.to_string()));
        e.insert("WalLag".into(), json!(server_end.0.saturating_sub(flushed.0)));
        if details {
            e.insert("Fips".into(), json!(facts.fips));
            let seg = if facts.segment_size > 0 { facts.segment_size } else { 16 << 20 };
            let mut list = Vec::new();
            let mut previous: Option<u64> = None;
            for b in &backups {
                let mut bm = backup_summary(b);
                bm.remove("Incremental");
                bm.remove("IncrementalParent");
                let wal = flushed.0.saturating_sub(b.start_lsn.0) / seg * seg;
                bm.insert("WAL".into(), json!(wal));
                // WAL written between the previous backup and this one.
                let delta = previous.map_or(0, |p| b.start_lsn.0.saturating_sub(p) / seg * seg);
                previous = Some(b.start_lsn.0);
                bm.insert("Delta".into(), json!(delta));
                list.push(Value::Object(bm));
            }
            e.insert("Backups".into(), Value::Array(list));
        }
        servers.push(Value::Object(e));
    }
    m.insert("Servers".into(), Value::Array(servers));
    Ok(m)
}
