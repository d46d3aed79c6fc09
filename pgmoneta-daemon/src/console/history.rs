//! A bounded in-memory history of each server's WAL lag and archive size, sampled by a thread
//! of its own, for the console's charts. Nothing is written to disk: after a restart the charts
//! start again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::state::Shared;

/// Seconds between two samples.
pub const EVERY: u64 = 60;
/// Samples kept per server: 24 hours.
pub const KEPT: usize = 24 * 3600 / EVERY as usize;

/// One sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Unix time.
    pub at: i64,
    /// WAL lag in bytes.
    pub wal_lag: u64,
    /// Bytes in the WAL archive.
    pub archive: u64,
    /// Whether WAL was streaming.
    pub streaming: bool,
}

/// The samples of every server, oldest first.
#[derive(Default)]
pub struct History {
    servers: Mutex<HashMap<String, VecDeque<Point>>>,
}

impl History {
    /// Adds a sample of `server`, dropping the oldest beyond [`KEPT`].
    pub fn push(&self, server: &str, point: Point) {
        let mut all = self.servers.lock();
        let ring = all.entry(server.to_owned()).or_default();
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(point);
    }

    /// The samples of `server` taken at or after `since`.
    pub fn since(&self, server: &str, since: i64) -> Vec<Point> {
        self.servers
            .lock()
            .get(server)
            .map(|r| r.iter().filter(|p| p.at >= since).copied().collect())
            .unwrap_or_default()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Takes one sample of every server.
pub fn sample(shared: &Shared, history: &History) {
    let at = now();
    let base = shared.base_dir();
    for state in &shared.servers {
        let progress = state.stream.read().clone();
        let wal_lag = progress.server_end.load().0.saturating_sub(progress.flushed.load().0);
        let (_, archive) = shared.repo.usage(&state.name, &base);
        let streaming = state.wal_streaming.load(Ordering::SeqCst);
        history.push(&state.name, Point { at, wal_lag, archive, streaming });
    }
}

/// Samples every [`EVERY`] seconds until the daemon stops (the first sample at once).
/// `PGMONETA_HISTORY_INTERVAL` (seconds, 1 to 3600) changes the period, for tests and demos
/// that want a chart within seconds; the window stays [`KEPT`] samples.
pub fn spawn(shared: Arc<Shared>, history: Arc<History>) -> JoinHandle<()> {
    let every = std::env::var("PGMONETA_HISTORY_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (1..=3600).contains(s))
        .unwrap_or(EVERY);
    std::thread::Builder::new()
        .name("console history".into())
        .spawn(move || {
            let mut next = std::time::Instant::now();
            while !shared.stopping() {
                if std::time::Instant::now() >= next {
                    sample(&shared, &history);
                    next += Duration::from_secs(every);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .expect("spawning a thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_window() {
        let h = History::default();
        for i in 0..(KEPT as i64 + 10) {
            h.push("a", Point { at: i, wal_lag: i as u64, archive: 0, streaming: true });
        }
        let all = h.since("a", 0);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].at, 10);
        assert_eq!(h.since("a", KEPT as i64 + 5).len(), 5);
        assert!(h.since("b", 0).is_empty());
    }
}
