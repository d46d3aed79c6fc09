//! The daemon's periodic work: retention every `retention_interval`, background verification
//! every `verification` (0 = never), and a re-check of every server every 10 minutes.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgmoneta_core::Clock;

use crate::clock::SystemClock;
use crate::state::{Activity, ServerState, Shared};
use crate::{pg, walservice};

/// How often valid servers are checked again.
const RECHECK: Duration = Duration::from_secs(600);

/// Starts the timer thread.
pub fn spawn(shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("timers".into())
        .spawn(move || {
            let start = Instant::now();
            let mut last_retention = start;
            let mut last_verification = start;
            let mut last_check = start;
            while !shared.stopping() {
                std::thread::sleep(Duration::from_millis(250));
                let config = shared.config();
                if last_retention.elapsed() >= Duration::from_secs(config.main.retention_interval.max(1)) {
                    last_retention = Instant::now();
                    for s in &shared.servers {
                        run_retention(&shared, s);
                    }
                }
                let every = config.main.verification.0;
                if every > 0 && last_verification.elapsed() >= Duration::from_secs(every) {
                    last_verification = Instant::now();
                    for s in &shared.servers {
                        run_verification(&shared, s);
                    }
                }
                if last_check.elapsed() >= RECHECK {
                    last_check = Instant::now();
                    for s in &shared.servers {
                        if let Some(c) = shared.server_config(&s.name) {
                            if s.facts.read().valid {
                                pg::recheck(&shared, s, &c, false);
                            }
                        }
                    }
                }
            }
        })
        .expect("spawning a thread")
}

/// Applies the retention policy to one server, then prunes the WAL no remaining backup needs.
/// Skipped while the server's repository is busy, and in a cluster on a node not active for it.
pub fn run_retention(shared: &Shared, server: &Arc<ServerState>) {
    // In a cluster only the node active for the server applies retention; the others copy
    // what it keeps.
    if shared.cluster.as_ref().is_some_and(|c| !c.may_write(&server.name)) {
        return;
    }
    let Ok(_guard) = server.lock_background(Activity::Retention) else { return };
    let config = shared.config();
    let Some(sc) = config.server(&server.name) else { return };
    let name = &server.name;
    let plan = match shared.repo.plan_retention(name, &config.effective_retention(sc), SystemClock.now().local()) {
        Ok(p) => p,
        Err(e) => {
            log::error!("server [{name}]: retention: {e}");
            return;
        }
    };
    if let Some((node, label)) = shared.cluster.as_ref().and_then(|c| c.busy_elsewhere(name).into_iter().next()) {
        if !plan.delete.is_empty() {
            log::info!("server [{name}]: retention waits: node {node} is copying backup {label}");
            return;
        }
    }
    let wal = walservice::archive(shared, name, server.facts.read().segment_size).ok();
    let (outcome, report) = shared.repo.apply_retention(name, &plan, wal.as_ref());
    for l in &report.deleted {
        log::info!("server [{name}]: retention deleted backup {l}");
    }
    if let Some(cluster) = &shared.cluster {
        cluster.note_deleted(shared, name, &report.deleted);
    }
    match outcome {
        Ok(()) => server.record(true),
        Err(e) => {
            log::error!("server [{name}]: retention: {e}");
            server.record(false);
        }
    }
    if report.summaries_pruned > 0 {
        log::info!("server [{name}]: pruned {} WAL summaries", report.summaries_pruned);
    }
    if let Some(first) = &report.wal_kept_from {
        if report.wal_pruned > 0 {
            log::info!("server [{name}]: pruned {} WAL files before {first}", report.wal_pruned);
        }
        for (engine, pruned) in &report.remote_wal_pruned {
            match pruned {
                Ok(n) if *n > 0 => {
                    log::info!("server [{name}]: pruned {n} WAL files before {first} in {engine} storage")
                }
                Ok(_) => {}
                Err(e) => log::error!("server [{name}]: pruning WAL in {engine} storage: {e}"),
            }
        }
    }
}

/// Verifies every backup of one server; failures are logged. Skipped while the repository is
/// busy.
pub fn run_verification(shared: &Shared, server: &Arc<ServerState>) {
    let Ok(_guard) = server.lock_background(Activity::Verify) else { return };
    let name = &server.name;
    let config = shared.config();
    let workers = config.server(name).map_or(1, |s| shared.workers(s));
    let catalog = shared.repo.catalog(name).unwrap_or_default();
    for b in catalog.backups() {
        if shared.stopping() {
            return;
        }
        let result = shared.repo.verify_in(&catalog, &b.label, workers);
        server.record_verification(
            &b.label,
            match &result {
                Ok(v) if v.failed.is_empty() => None,
                Ok(v) => Some(crate::commands::describe_failed_files(v)),
                Err(e) => Some(e.to_string()),
            },
        );
        match result {
            Ok(v) if v.failed.is_empty() => log::debug!("server [{name}]: backup {} verified", b.label),
            Ok(v) => {
                for f in &v.failed {
                    log::error!(
                        "server [{name}]: backup {}: {} failed verification{}",
                        b.label,
                        f.path,
                        f.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                    );
                }
                log::error!(
                    "server [{name}]: backup {}: {} of {} files failed verification",
                    b.label,
                    v.failed.len(),
                    v.all.len()
                );
            }
            Err(e) => log::error!("server [{name}]: verifying backup {}: {e}", b.label),
        }
    }
}
