//! What the daemon's threads share: the configuration in force, the secrets, and each server's
//! status, locks and counters. Nothing here is re-read from disk per request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use pgmoneta_core::config::{Config, ServerConfig};
use pgmoneta_core::PgVersion;
use pgmoneta_crypto::MasterKey;
use pgmoneta_storage::backup::BackupProgress;
use pgmoneta_storage::store::{LocalStore, Store};
use pgmoneta_storage::wal::StreamProgress;
use pgmoneta_storage::Repository;

use crate::logging::LogCounters;

/// The files the daemon was started with.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `pgmoneta.conf`.
    pub config: PathBuf,
    /// The users vault.
    pub users: PathBuf,
    /// The admins vault, when one is used.
    pub admins: Option<PathBuf>,
    /// The pidfile.
    pub pidfile: PathBuf,
    /// The management socket.
    pub socket: PathBuf,
}

/// What the last check of a server found.
#[derive(Clone, Debug, Default)]
pub struct ServerFacts {
    /// The major version.
    pub version: Option<PgVersion>,
    /// `server_version_num % 10000`.
    pub minor: u32,
    /// Not in recovery.
    pub primary: bool,
    /// `data_checksums`.
    pub checksums: bool,
    /// `summarize_wal` (17+).
    pub summarize_wal: bool,
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
    /// Every check passed.
    pub valid: bool,
    /// What failed, in words an operator can act on; empty when valid.
    pub problems: Vec<String>,
    /// FIPS mode of the server's OpenSSL, when the server says.
    pub fips: bool,
    /// Extensions installed in the `postgres` database: name, version, comment.
    pub extensions: Vec<(String, String, String)>,
}

/// The operation holding a server's repository lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// A backup.
    Backup,
    /// A restore.
    Restore,
    /// An archive.
    Archive,
    /// A delete.
    Delete,
    /// Retention.
    Retention,
    /// Verification.
    Verify,
    /// A backup's upload to the remote repositories, tried again in the background. Other
    /// operations wait for it rather than fail.
    Upload,
}

/// Live state of one configured server.
#[derive(Debug)]
pub struct ServerState {
    /// The section name.
    pub name: String,
    /// Set by `mode offline`; no backups or streaming while set.
    pub forced_offline: AtomicBool,
    /// What the last check found.
    pub facts: RwLock<ServerFacts>,
    /// The WAL receiver is connected and streaming.
    pub wal_streaming: AtomicBool,
    /// The WAL receiver's progress (replaced each time it connects).
    pub stream: RwLock<Arc<StreamProgress>>,
    /// Set to stop the current WAL stream (mode offline, shutdown).
    pub stream_stop: Mutex<Option<Arc<AtomicBool>>>,
    /// In a cluster, the furthest the server may be told WAL is flushed: where the archives of
    /// the live followers end, so the slot keeps what they still lack (zero: no hold).
    pub wal_hold: Arc<pgmoneta_core::AtomicLsn>,
    /// Why WAL streaming last stopped, and the flushed position then; cleared once the
    /// archive grows past that point again (see [`ServerState::wal_problem`]).
    pub wal_failure: Mutex<Option<(String, pgmoneta_core::Lsn)>>,
    /// The last streaming failure was a full file system.
    pub wal_out_of_space: AtomicBool,
    /// The operation holding the repository lock.
    pub active: Mutex<Option<Activity>>,
    /// The holder of the lock is background work (timers, pending uploads), which ends by
    /// itself: an operator's command waits for it instead of failing.
    pub background: AtomicBool,
    /// The running backup's progress, and when it started.
    pub backup_progress: Mutex<Option<(Arc<BackupProgress>, Instant)>>,
    /// The label of the backup being taken.
    pub backup_label: Mutex<Option<String>>,
    /// Set to abandon the running backup (shutdown).
    pub backup_cancel: Mutex<Option<Arc<AtomicBool>>>,
    /// Operations run and failed, and when last.
    pub operations: AtomicU64,
    /// Failed operations.
    pub failed_operations: AtomicU64,
    /// Unix time of the last operation.
    pub last_operation: AtomicI64,
    /// Unix time of the last failed operation.
    pub last_failed_operation: AtomicI64,
    /// Backups whose last verification (command or timer) failed, with what failed.
    pub failed_verifications: Mutex<std::collections::BTreeMap<String, String>>,
}

impl ServerState {
    fn new(name: &str) -> ServerState {
        ServerState {
            name: name.to_owned(),
            forced_offline: AtomicBool::new(false),
            facts: RwLock::new(ServerFacts::default()),
            wal_streaming: AtomicBool::new(false),
            stream: RwLock::new(Arc::new(StreamProgress::default())),
            stream_stop: Mutex::new(None),
            wal_hold: Arc::new(pgmoneta_core::AtomicLsn::new(pgmoneta_core::Lsn(0))),
            wal_failure: Mutex::new(None),
            wal_out_of_space: AtomicBool::new(false),
            active: Mutex::new(None),
            background: AtomicBool::new(false),
            backup_progress: Mutex::new(None),
            backup_label: Mutex::new(None),
            backup_cancel: Mutex::new(None),
            operations: AtomicU64::new(0),
            failed_operations: AtomicU64::new(0),
            last_operation: AtomicI64::new(0),
            last_failed_operation: AtomicI64::new(0),
            failed_verifications: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// The backups among `labels` (the server's backups now) whose last verification failed,
    /// with what failed; entries of backups that are gone are dropped.
    pub fn failed_verifications_among(&self, labels: &std::collections::HashSet<&str>) -> Vec<(String, String)> {
        let mut failed = self.failed_verifications.lock();
        failed.retain(|label, _| labels.contains(label.as_str()));
        failed.iter().map(|(l, m)| (l.clone(), m.clone())).collect()
    }

    /// Records the outcome of verifying backup `label`: `None` when it passed, else what failed.
    pub fn record_verification(&self, label: &str, failure: Option<String>) {
        let mut failed = self.failed_verifications.lock();
        match failure {
            Some(what) => {
                failed.insert(label.to_owned(), what);
            }
            None => {
                failed.remove(label);
            }
        }
    }

    /// What keeps WAL from being archived, in words, while it lasts: the last streaming
    /// failure, until the receiver streams again and the archive grows past where it stood.
    pub fn wal_problem(&self) -> Option<String> {
        let mut failure = self.wal_failure.lock();
        let (message, at) = failure.as_ref()?;
        let progress = self.stream.read().clone();
        if self.wal_streaming.load(Ordering::SeqCst) && progress.flushed.load() > *at {
            log::info!("server [{}]: WAL is archived again after: {message}", self.name);
            *failure = None;
            return None;
        }
        Some(message.clone())
    }

    /// Online: checks passed and not forced offline.
    pub fn online(&self) -> bool {
        !self.forced_offline.load(Ordering::SeqCst) && self.facts.read().valid
    }

    /// Takes the repository lock for `what`, after a background upload holding it ends; `Err`
    /// names any other operation holding it.
    pub fn lock(self: &Arc<Self>, what: Activity) -> Result<RepoGuard, Activity> {
        self.take(what, false)
    }

    /// Takes the repository lock for background work (retention, verification and uploads
    /// run by the daemon itself): it never waits, and an operator's command that arrives
    /// meanwhile queues behind it rather than failing.
    pub fn lock_background(self: &Arc<Self>, what: Activity) -> Result<RepoGuard, Activity> {
        self.take(what, true)
    }

    fn take(self: &Arc<Self>, what: Activity, background: bool) -> Result<RepoGuard, Activity> {
        loop {
            {
                let mut active = self.active.lock();
                match *active {
                    None => {
                        *active = Some(what);
                        self.background.store(background, Ordering::SeqCst);
                        return Ok(RepoGuard { server: self.clone() });
                    }
                    // Background work ends by itself: the operation queues behind it.
                    Some(_) if !background && self.background.load(Ordering::SeqCst) => {}
                    Some(other) => return Err(other),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Records the end of an operation for the metrics.
    pub fn record(&self, ok: bool) {
        let now = crate::clock::now_unix();
        self.operations.fetch_add(1, Ordering::Relaxed);
        self.last_operation.store(now, Ordering::Relaxed);
        if !ok {
            self.failed_operations.fetch_add(1, Ordering::Relaxed);
            self.last_failed_operation.store(now, Ordering::Relaxed);
        }
    }

    /// The operation holding the lock.
    pub fn activity(&self) -> Option<Activity> {
        *self.active.lock()
    }
}

/// Holds a server's repository lock until dropped.
#[derive(Debug)]
pub struct RepoGuard {
    server: Arc<ServerState>,
}

impl Drop for RepoGuard {
    fn drop(&mut self) {
        let mut active = self.server.active.lock();
        self.server.background.store(false, Ordering::SeqCst);
        *active = None;
    }
}

/// Everything the daemon's threads share.
pub struct Shared {
    /// The configuration in force (swapped on reload).
    pub config: RwLock<Arc<Config>>,
    /// The configuration files.
    pub paths: Paths,
    /// The master key, when one exists (needed for the vaults and encryption).
    pub master_key: Option<Arc<MasterKey>>,
    /// Passwords of the users vault, by user.
    pub users: RwLock<HashMap<String, String>>,
    /// Passwords of the admins vault, by admin.
    pub admins: RwLock<HashMap<String, String>>,
    /// Per server, in configuration order.
    pub servers: Vec<Arc<ServerState>>,
    /// The repository: the local one, with each server's remote repositories behind it.
    pub repo: Arc<Repository>,
    /// `base_dir`, the local repository's root.
    base_dir: PathBuf,
    /// Set when the daemon stops.
    pub shutdown: AtomicBool,
    /// Lines logged per level.
    pub log_counters: Arc<LogCounters>,
    /// When the daemon started.
    pub started: Instant,
    /// This node's cluster, when `cluster` is set.
    pub cluster: Option<Arc<crate::cluster::node::Cluster>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("paths", &self.paths).field("servers", &self.servers).finish_non_exhaustive()
    }
}

impl Shared {
    /// Builds the shared state for `config`.
    pub fn new(
        config: Config,
        paths: Paths,
        master_key: Option<Arc<MasterKey>>,
        users: HashMap<String, String>,
        admins: HashMap<String, String>,
        log_counters: Arc<LogCounters>,
    ) -> Shared {
        let base = config.main.base_dir.clone().unwrap_or_default();
        let servers = config.servers.iter().map(|s| Arc::new(ServerState::new(&s.name))).collect();
        let local = Arc::new(LocalStore::new(&base));
        let repo = Arc::new(Repository::open(local, master_key.clone()));
        let cluster = crate::cluster::node::Cluster::from_config(&config, Instant::now()).map(Arc::new);
        let shared = Shared {
            config: RwLock::new(Arc::new(config)),
            paths,
            master_key,
            users: RwLock::new(users),
            admins: RwLock::new(admins),
            servers,
            repo,
            base_dir: base.into(),
            shutdown: AtomicBool::new(false),
            log_counters,
            started: Instant::now(),
            cluster,
        };
        crate::remote::install(&shared);
        shared
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// The state of server `name`.
    pub fn server(&self, name: &str) -> Option<&Arc<ServerState>> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The configuration of server `name`.
    pub fn server_config(&self, name: &str) -> Option<ServerConfig> {
        self.config().server(name).cloned()
    }

    /// The repository as a [`Store`].
    pub fn store(&self) -> &dyn Store {
        self.repo.store()
    }

    /// The base directory.
    pub fn base_dir(&self) -> PathBuf {
        self.base_dir.clone()
    }

    /// Worker threads for `server`: its own setting, else `[pgmoneta]`'s, at least 1 and at
    /// most the number of processors.
    pub fn workers(&self, server: &ServerConfig) -> usize {
        let config = self.config();
        let n = if server.workers >= 0 { server.workers as usize } else { config.main.workers as usize };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        n.clamp(1, cpus)
    }

    /// Whether the daemon is stopping.
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_queue_behind_background_work_and_background_work_never_waits() {
        let server = Arc::new(ServerState::new("primary"));
        let verify = server.lock_background(Activity::Verify).unwrap();
        // Background work finds the lock taken and gives up at once.
        assert_eq!(server.lock_background(Activity::Retention).unwrap_err(), Activity::Verify);
        // A command waits for the background verification instead of failing.
        let waiting = {
            let server = server.clone();
            std::thread::spawn(move || server.lock(Activity::Backup).map(drop))
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!waiting.is_finished(), "the backup did not wait");
        drop(verify);
        waiting.join().unwrap().unwrap();
        // A command holding the lock makes the next command fail with what holds it.
        let backup = server.lock(Activity::Backup).unwrap();
        assert_eq!(server.lock(Activity::Delete).unwrap_err(), Activity::Backup);
        assert_eq!(server.lock_background(Activity::Upload).unwrap_err(), Activity::Backup);
        drop(backup);
        assert!(!server.background.load(Ordering::SeqCst));
    }
}
