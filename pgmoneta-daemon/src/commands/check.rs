//! `check` (not upstream's, id 1001): the facts a monitoring check reads, for one server or all.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pgmoneta_core::BackupLabel;
use pgmoneta_storage::catalog::Catalog;
use pgmoneta_wire::management::check::{CheckResponse, FailedVerification, ServerCheck};
use pgmoneta_wire::management::error_code as ec;
use pgmoneta_wire::management::request::{self, ServerRequest};
use serde_json::{Map, Value};

use super::{disk_space, fail, reply, Failure, Reply};
use crate::state::{ServerState, Shared};

pub(super) fn check(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let server = request::parse::<ServerRequest>(req).server.filter(|s| !s.is_empty());
    reply(&facts(shared, server.as_deref())?)
}

/// The facts of `server`, or of every server when `None`.
///
/// # Errors
/// `CHECK_NOSERVER` for a server that is not configured.
pub fn facts(shared: &Shared, server: Option<&str>) -> Result<CheckResponse, Failure> {
    let servers: Vec<&Arc<ServerState>> = match server {
        Some(name) => vec![shared
            .server(name)
            .ok_or_else(|| fail(ec::CHECK_NOSERVER, format!("check: no server named {name:?}")))?],
        None => shared.servers.iter().collect(),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let offset = crate::clock::utc_offset(now);
    let (free_space, total_space) = disk_space(&shared.base_dir());
    let mut out = CheckResponse { servers: Vec::new(), free_space, total_space };
    for state in servers {
        let name = &state.name;
        let facts = state.facts.read().clone();
        let catalog = shared.repo.catalog(name).unwrap_or_else(|_| Catalog::default());
        let valid: Vec<_> = catalog.backups().iter().filter(|b| b.valid).collect();
        let newest = valid.iter().max_by(|a, b| a.label.cmp(&b.label));
        let age = newest.and_then(|b| b.label.parse::<BackupLabel>().ok()).map(|l| {
            let taken = l.datetime().to_unix(offset);
            u64::try_from(now - taken).unwrap_or(0)
        });
        let progress = state.stream.read().clone();
        let active = shared.cluster.as_ref().is_none_or(|c| c.may_write(name));
        out.servers.push(ServerCheck {
            server: name.clone(),
            online: state.online(),
            offline_mode: state.forced_offline.load(Ordering::SeqCst),
            active,
            wal_streaming: state.wal_streaming.load(Ordering::SeqCst),
            wal_problem: state.wal_problem(),
            wal_lag: progress.server_end.load().0.saturating_sub(progress.flushed.load().0),
            valid_backups: valid.len() as u64,
            newest_backup: newest.map(|b| b.label.clone()),
            newest_backup_age: age,
            failed_verifications: state
                .failed_verifications_among(&catalog.backups().iter().map(|b| b.label.as_str()).collect())
                .into_iter()
                .map(|(label, message)| FailedVerification { label, message })
                .collect(),
            problems: facts.problems.clone(),
        });
    }
    Ok(out)
}
