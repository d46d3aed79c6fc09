//! The daemon's periodic work: retention every `retention_interval`, background verification
//! every `verification` (0 = never), and a re-check of every server every 10 minutes.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgmoneta_core::{BackupLabel, Clock, WalSegment, WalSegmentSize};
use pgmoneta_storage::catalog::{list_backups, Catalog};
use pgmoneta_storage::ops;
use pgmoneta_storage::retention::{plan, BackupSummary};
use pgmoneta_storage::verify::verify_in;

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
/// Skipped while the server's repository is busy.
pub fn run_retention(shared: &Shared, server: &Arc<ServerState>) {
    let Ok(_guard) = server.lock_background(Activity::Retention) else { return };
    let config = shared.config();
    let Some(sc) = config.server(&server.name) else { return };
    let name = &server.name;
    let backups = match list_backups(shared.store(), name) {
        Ok(b) => b,
        Err(e) => {
            log::error!("server [{name}]: retention: {e}");
            return;
        }
    };
    let summaries: Vec<BackupSummary> = backups
        .iter()
        .filter_map(|b| {
            Some(BackupSummary {
                label: b.label.parse::<BackupLabel>().ok()?,
                valid: b.valid,
                keep: b.keep,
                parent: b.parent.parse::<BackupLabel>().ok(),
            })
        })
        .collect();
    let p = plan(&summaries, &config.effective_retention(sc), SystemClock.now().local());
    match ops::apply_retention(shared.store(), name, &p) {
        Ok(deleted) => {
            for l in &deleted {
                log::info!("server [{name}]: retention deleted backup {l}");
            }
            server.record(true);
        }
        Err(e) => {
            log::error!("server [{name}]: retention: {e}");
            server.record(false);
        }
    }
    // WAL older than the oldest remaining valid backup is no longer needed. With no backups
    // nothing is pruned: the WAL is the only copy of the server's history.
    let remaining = list_backups(shared.store(), name).unwrap_or_default();
    if let Some(oldest) = remaining.iter().filter(|b| b.valid).map(|b| b.start_lsn).min() {
        match pgmoneta_storage::summary::prune_before(shared.store(), name, oldest) {
            Ok(n) if n > 0 => log::info!("server [{name}]: pruned {n} WAL summaries ending before {oldest}"),
            Ok(_) => {}
            Err(e) => log::error!("server [{name}]: pruning WAL summaries: {e}"),
        }
    }
    if let Some(first) = ops::oldest_needed_wal(&remaining) {
        let size = server.facts.read().segment_size;
        let seg = WalSegmentSize::new(size).unwrap_or(WalSegmentSize::DEFAULT);
        if let (Ok(keep), Ok(archive)) = (WalSegment::parse(first, seg), walservice::archive(shared, name, size)) {
            match archive.prune_before(keep) {
                Ok(n) if n > 0 => log::info!("server [{name}]: pruned {n} WAL files before {first}"),
                Ok(_) => {}
                Err(e) => log::error!("server [{name}]: pruning WAL: {e}"),
            }
            for r in shared.store.remotes(name) {
                match pgmoneta_storage::remote::prune_wal(r.store.as_ref(), name, first) {
                    Ok(n) if n > 0 => {
                        log::info!("server [{name}]: pruned {n} WAL files before {first} in {} storage", r.engine)
                    }
                    Ok(_) => {}
                    Err(e) => log::error!("server [{name}]: pruning WAL in {} storage: {e}", r.engine),
                }
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
    let catalog = Catalog::load(shared.store(), name).unwrap_or_default();
    for b in catalog.backups() {
        if shared.stopping() {
            return;
        }
        match verify_in(shared.store(), &catalog, &b.label, shared.master_key.as_deref(), workers) {
            Ok((failed, _)) if failed.is_empty() => log::debug!("server [{name}]: backup {} verified", b.label),
            Ok((failed, all)) => {
                for f in &failed {
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
                    failed.len(),
                    all.len()
                );
            }
            Err(e) => log::error!("server [{name}]: verifying backup {}: {e}", b.label),
        }
    }
}
