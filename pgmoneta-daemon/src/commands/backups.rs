//! The commands that act on a server's backups: each maps its request onto one or two calls of
//! the [`Repository`](pgmoneta_storage::Repository), and what those return or fail with onto
//! upstream's reply fields and error codes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmoneta_compress::Compression;
use pgmoneta_core::config::ServerConfig;
use pgmoneta_storage::backup::{BackupOptions, BackupProgress};
use pgmoneta_storage::catalog::BackupSelector;
use pgmoneta_storage::export::{ArchiveOptions, HotStandbyOptions};
use pgmoneta_storage::manifest::ManifestAlgorithm;
use pgmoneta_storage::ops::{Annotation, DeleteOptions};
use pgmoneta_storage::restore::RestoreOptions;
use pgmoneta_storage::sqlbackup::SqlBackupOptions;
use pgmoneta_storage::target::RecoveryTarget;
use pgmoneta_storage::verify::FileVerification;
use pgmoneta_storage::{layout, PgSource, Repository, StorageError};
use pgmoneta_wire::management::error_code as ec;
use pgmoneta_wire::management::request::{
    self, AnnotateRequest, BackupRequest, DeleteRequest, InfoRequest, KeepRequest, ListBackupRequest, RestoreRequest,
    S3ListRequest, S3RestoreRequest, VerifyRequest,
};
use pgmoneta_wire::management::response::{
    ArchiveResponse, DeleteResponse, KeepResponse, ListBackupResponse, ListedBackup, S3ListResponse, S3Object,
    VerifiedFile, VerifiedFiles, VerifyResponse,
};
use serde_json::{Map, Value};

use super::codes::{code, daemon_code, Op, Step};
use super::{
    backup_response, fail, fail_in, info_response, listed_backup, reply, restore_response, server_state, Reply, Srv,
};
use crate::clock::SystemClock;
use crate::state::{Activity, ServerFacts, Shared};
use crate::{pg, walservice};

/// Where combining and rolling up may put temporary files: the server's or the main
/// `workspace`, else `<tmp>/pgmoneta-workspace-<uid>`.
fn workspace(shared: &Shared, srv: &Srv<'_>) -> PathBuf {
    let dir = srv
        .config
        .workspace
        .clone()
        .or_else(|| shared.config().main.workspace.clone())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("pgmoneta-workspace-{}", nix::unistd::geteuid())));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        log::warn!("workspace {}: {e}", dir.display());
    }
    dir
}

/// How long a backup waits for WAL streaming that has not failed yet: the receiver connecting
/// after the daemon started, or reconnecting at once after an interruption. A backup started
/// with the daemon (a timer that was due while the machine was off, a script that starts the
/// service and backs up) would otherwise be refused for being a second early.
const STREAMING_GRACE: Duration = Duration::from_secs(15);

/// Whether WAL streams, or starts to within [`STREAMING_GRACE`]. A recorded streaming failure
/// answers at once: that is not a receiver about to connect.
fn streaming_soon(shared: &Shared, state: &crate::state::ServerState) -> bool {
    let since = Instant::now();
    loop {
        if state.wal_streaming.load(Ordering::SeqCst) {
            return true;
        }
        if state.wal_failure.lock().is_some() || shared.stopping() || since.elapsed() >= STREAMING_GRACE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn backup(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: BackupRequest = request::parse(req);
    let srv = server_state(shared, req, ec::BACKUP_NOSERVER)?;
    let (name, state) = (srv.name.as_str(), srv.state);
    let parent = match r.backup.clone().filter(|p| !p.is_empty() && p != "null") {
        None => None,
        Some(id) => Some(shared.repo.parent_for(name, &id).map(|p| p.label).map_err(|e| {
            let op = Op::IncrementalBackup;
            let message = match e {
                StorageError::AlreadyHasChild { .. } => format!("server [{name}]: {e}"),
                _ => e.to_string(),
            };
            fail_in(code(op, Step::Find, &e), op.workflow(), message)
        })?),
    };
    if state.forced_offline.load(Ordering::SeqCst) {
        return Err(fail(ec::BACKUP_OFFLINE, format!("server [{name}] is offline (mode offline)")));
    }
    let facts = state.facts.read().clone();
    if !facts.valid {
        return Err(fail(ec::BACKUP_INVALID, format!("server [{name}] is not valid: {}", facts.problems.join("; "))));
    }
    if !streaming_soon(shared, state) {
        let why = state.wal_problem().map(|p| format!(" ({p})")).unwrap_or_default();
        return Err(fail(
            ec::BACKUP_WAL,
            format!("server [{name}]: WAL is not streaming{why}; a backup would not be restorable"),
        ));
    }
    let _guard = state
        .lock(Activity::Backup)
        .map_err(|other| fail(ec::BACKUP_ACTIVE, format!("server [{name}]: busy with {other:?}")))?;
    let _advisory = match &shared.cluster {
        Some(_) => Some(backup_lock(shared, &srv)?),
        None => None,
    };
    let result = run_backup(shared, &srv, &facts, parent);
    state.record(result.is_ok());
    *state.backup_progress.lock() = None;
    *state.backup_label.lock() = None;
    *state.backup_cancel.lock() = None;
    result
}

/// The session-level advisory lock pgmoneta nodes take on a server for the length of a
/// backup: the slot says which node is active, and this makes sure two nodes that both
/// believe they are (for the moment fencing takes) never back the server up at once. Held
/// while the returned connection is open.
const BACKUP_LOCK: (i32, i32) = (0x7067_6d6f, 1);

fn backup_lock(shared: &Shared, srv: &Srv<'_>) -> Result<pgmoneta_wire::PgConnection, super::Failure> {
    let name = &srv.name;
    let mut conn = crate::pg::connect(shared, &srv.config, false)
        .map_err(|e| fail(ec::BACKUP_ERROR, format!("server [{name}]: taking the backup lock: {e}")))?;
    let sql = format!("SELECT pg_try_advisory_lock({}, {})", BACKUP_LOCK.0, BACKUP_LOCK.1);
    let held = conn
        .query_one(&sql)
        .and_then(|row| row.parse_required::<String>(0))
        .map_err(|e| fail(ec::BACKUP_ERROR, format!("server [{name}]: taking the backup lock: {e}")))?;
    if held != "t" {
        return Err(fail(
            ec::BACKUP_ACTIVE,
            format!(
                "server [{name}]: another pgmoneta node holds the backup lock on the server; no backup was started"
            ),
        ));
    }
    Ok(conn)
}

/// The hot standbys of a server: `<hot_standby>/<server>`, each with its own tablespace map
/// and overrides.
fn hot_standbys(srv: &Srv<'_>) -> Vec<HotStandbyOptions> {
    let server = &srv.config;
    let mut all = Vec::new();
    for (i, dir) in server.hot_standby.0.iter().enumerate() {
        let mut hs = HotStandbyOptions::new(&srv.name, dir);
        hs.workers = srv.workers;
        if let Some(maps) = server.hot_standby_tablespaces.0.get(i) {
            hs.tablespace_map = maps.iter().map(|(from, to)| (from.clone(), PathBuf::from(to))).collect();
        }
        hs.overrides = server.hot_standby_overrides.0.get(i).filter(|o| !o.is_empty()).map(PathBuf::from);
        all.push(hs);
    }
    all
}

/// The storage's algorithm for a `manifest` setting (both use upstream's codes).
fn manifest_algorithm(setting: pgmoneta_core::config::ManifestHash) -> ManifestAlgorithm {
    u32::try_from(setting.code()).ok().and_then(ManifestAlgorithm::from_code).unwrap_or_default()
}

fn run_backup(shared: &Arc<Shared>, srv: &Srv<'_>, facts: &ServerFacts, parent: Option<String>) -> Reply {
    let (name, state, server) = (srv.name.as_str(), srv.state, &srv.config);
    let config = shared.config();
    let version = facts.version.ok_or_else(|| fail(ec::BACKUP_INVALID, "server version unknown"))?;
    let op = if parent.is_some() { Op::IncrementalBackup } else { Op::Backup };
    let workflow = op.workflow();
    if parent.is_some() && version.has_incremental_backup() && !facts.summarize_wal {
        return Err(fail_in(
            ec::INCREMENTAL_BACKUP_SETUP,
            workflow,
            format!(
                "server [{name}]: summarize_wal is off; incremental backups of PostgreSQL {} need summarize_wal = on",
                version.major()
            ),
        ));
    }
    let connect = |replication| {
        pg::connect_options(shared, server, replication).map_err(|e| fail(daemon_code(op, &e), e.to_string()))
    };
    let source = PgSource::new(name, connect(false)?, connect(true)?, version, facts.minor);
    let label = shared.repo.new_label(name, &SystemClock);
    let mut options = BackupOptions::new(name, label);
    options.compression = Compression::from_code(config.main.compression.code()).unwrap_or(Compression::NONE);
    options.level = config.main.compression_level;
    options.manifest = manifest_algorithm(server.manifest.unwrap_or(config.main.manifest));
    options.workers = srv.workers;
    options.encryption = walservice::encryption(shared).map_err(|e| fail(daemon_code(op, &e), e.to_string()))?;
    let rate = if server.max_rate >= 0 { server.max_rate as u64 } else { config.main.max_rate };
    if rate > 0 {
        options.max_rate_kb = Some(rate.div_ceil(1024).clamp(32, 1_048_576) as u32);
    }
    options.cancel = Arc::new(AtomicBool::new(false));
    options.progress = Arc::new(BackupProgress::default());
    options.parent = parent.clone();
    options.link = config.main.link;
    options.hot_standbys = hot_standbys(srv);
    *state.backup_cancel.lock() = Some(options.cancel.clone());
    *state.backup_progress.lock() = Some((options.progress.clone(), Instant::now()));
    *state.backup_label.lock() = Some(label.to_string());
    match &parent {
        Some(p) => log::info!("server [{name}]: incremental backup {label} on {p} started"),
        None => log::info!("server [{name}]: backup {label} started"),
    }
    let mut wal = SqlBackupOptions::default();
    wal.wal_encryption = options.encryption.clone();
    let info = shared.repo.backup(&source, &options, &wal).map_err(|e| {
        let message = match e {
            StorageError::Connection { .. } => e.to_string(),
            // The backup is whole here: it stays, with its data, and the upload is tried again.
            StorageError::UploadPending { .. } => format!("server [{name}]: {e}"),
            _ => format!("server [{name}]: backup {label} failed: {e}"),
        };
        fail_in(code(op, Step::Run, &e), workflow, message)
    })?;
    log::info!(
        "server [{name}]: backup {label} done: {} bytes stored, {} to restore, {:.1} s",
        info.backup_size,
        info.restore_size,
        info.elapsed.total
    );
    reply(&backup_response(&info))
}

pub(super) fn list_backup(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: ListBackupRequest = request::parse(req);
    let Srv { name, state, .. } = server_state(shared, req, ec::LIST_BACKUP_NOSERVER)?;
    let sort = r.sort.clone().unwrap_or_else(|| "asc".into());
    let desc = match sort.as_str() {
        "asc" | "" => false,
        "desc" => true,
        other => return Err(fail(ec::LIST_BACKUP_INVALID_SORT, format!("invalid sort order {other:?}"))),
    };
    let catalog = shared
        .repo
        .catalog(&name)
        .map_err(|e| fail(code(Op::ListBackup, Step::Run, &e), format!("server [{name}]: {e}")))?;
    let seg = Some(state.facts.read().segment_size).filter(|s| *s > 0).unwrap_or(16 << 20);
    let wal = Repository::wal_between(catalog.backups(), seg);
    let mut backups: Vec<ListedBackup> =
        catalog.backups().iter().zip(wal).map(|(b, wal)| listed_backup(b, &name, wal)).collect();
    if desc {
        backups.reverse();
    }
    reply(&ListBackupResponse { number_of_backups: backups.len() as u64, backups })
}

fn restore_options(shared: &Shared, srv: &Srv<'_>, id: &str, position: &str, directory: &str) -> RestoreOptions {
    let server: &ServerConfig = &srv.config;
    let mut o = RestoreOptions::new(&srv.name, BackupSelector::parse(id), directory);
    o.position = position.to_owned();
    o.workers = srv.workers;
    // With a target, the WAL from the backup on is copied into pg_wal: the restored cluster
    // reaches its target without access to the repository.
    o.copy_wal = true;
    let password = server.user.as_ref().and_then(|u| shared.users.read().get(u).cloned()).unwrap_or_default();
    o.primary_conninfo = Some(format!(
        "host={} port={} user={} password={} application_name={}",
        server.host.as_deref().unwrap_or("localhost"),
        server.port.unwrap_or(5432),
        server.user.as_deref().unwrap_or(""),
        password,
        server.wal_slot.as_deref().unwrap_or("pgmoneta")
    ));
    o.primary_slot = server.wal_slot.clone();
    o
}

/// A restore, its plan logged before anything is written.
fn plan_and_apply(
    repo: &Repository,
    name: &str,
    options: &RestoreOptions,
) -> pgmoneta_storage::Result<pgmoneta_storage::restore::RestoreReport> {
    let plan = repo.plan_restore(options)?;
    log::info!("server [{name}]: restore plan: {}", plan.to_string().trim_end().replace('\n', "; "));
    repo.apply_restore(options, &plan)
}

pub(super) fn restore(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: RestoreRequest = request::parse(req);
    let srv = server_state(shared, req, ec::RESTORE_NOSERVER)?;
    let (name, state) = (srv.name.as_str(), srv.state);
    let id = r.backup.clone().unwrap_or_else(|| "newest".into());
    let position = r.position.clone().unwrap_or_default();
    let Some(directory) = r.directory.clone().filter(|d| !d.is_empty()) else {
        return Err(fail(ec::RESTORE_SETUP, "restore: no directory given"));
    };
    let _guard = state
        .lock(Activity::Restore)
        .map_err(|other| fail(ec::RESTORE_ACTIVE, format!("server [{name}]: busy with {other:?}")))?;
    let mut options = restore_options(shared, &srv, &id, &position, &directory);
    options.force = r.force;
    let result = plan_and_apply(&shared.repo, name, &options);
    state.record(result.is_ok());
    let report = result.map_err(|e| {
        let op = Op::Restore;
        fail_in(code(op, Step::Run, &e), op.workflow(), format!("server [{name}]: restore of {id} failed: {e}"))
    })?;
    log::info!("server [{name}]: backup {} restored into {}", report.info.label, report.data_dir.display());
    reply(&restore_response(&report.info))
}

/// `s3 ls <server> [<prefix>]`: the objects of the server's backups in its remote repository
/// (under `<server>/backup/<prefix>`), as repository paths.
pub(super) fn s3_ls(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: S3ListRequest = request::parse(req);
    let Srv { name, .. } = server_state(shared, req, ec::LIST_S3_NOSERVER)?;
    let (engine, remote) = shared.repo.remote_only(&name).ok_or_else(|| {
        fail_in(ec::LIST_S3_WORKFLOW, "S3 list", format!("server [{name}]: no remote storage engine is configured"))
    })?;
    let prefix = r.s3_prefix.clone().unwrap_or_default();
    let dir = format!("{}/{}", layout::backups_dir(&name), prefix.trim_matches('/'));
    let objects = pgmoneta_storage::remote::walk(remote.store(), dir.trim_end_matches('/')).map_err(|e| {
        let op = Op::S3List;
        fail_in(code(op, Step::Run, &e), op.workflow(), format!("server [{name}]: listing {engine} storage: {e}"))
    })?;
    reply(&S3ListResponse { s3_objects: objects.into_iter().map(|(s3_key, _)| S3Object { s3_key }).collect() })
}

/// `s3 restore <server> <backup> [<position>] <directory>`: a restore that reads the backup
/// and the WAL from the remote repository alone, whatever the local one holds.
pub(super) fn s3_restore(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: S3RestoreRequest = request::parse(req);
    let srv = server_state(shared, req, ec::RESTORE_S3_NOSERVER)?;
    let (name, state) = (srv.name.as_str(), srv.state);
    let (engine, remote) = shared.repo.remote_only(name).ok_or_else(|| {
        fail_in(
            ec::RESTORE_S3_WORKFLOW,
            "S3 restore",
            format!("server [{name}]: no remote storage engine is configured"),
        )
    })?;
    let id = r.s3_prefix.clone().unwrap_or_else(|| "newest".into());
    let position = r.position.clone().unwrap_or_default();
    let Some(directory) = r.directory.clone().filter(|d| !d.is_empty()) else {
        return Err(fail(ec::RESTORE_S3_ERROR, "s3 restore: no directory given"));
    };
    let _guard = state
        .lock(Activity::Restore)
        .map_err(|other| fail(ec::RESTORE_S3_ERROR, format!("server [{name}]: busy with {other:?}")))?;
    let mut options = restore_options(shared, &srv, &id, &position, &directory);
    options.force = r.force;
    let result = plan_and_apply(&remote, name, &options);
    state.record(result.is_ok());
    let report = result.map_err(|e| {
        let op = Op::S3Restore;
        let message = format!("server [{name}]: restore of {id} from {engine} storage failed: {e}");
        fail_in(code(op, Step::Run, &e), op.workflow(), message)
    })?;
    log::info!(
        "server [{name}]: backup {} restored from {engine} storage into {}",
        report.info.label,
        report.data_dir.display()
    );
    reply(&restore_response(&report.info))
}

pub(super) fn archive(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: RestoreRequest = request::parse(req);
    let Srv { name, state, workers, .. } = server_state(shared, req, ec::ARCHIVE_NOSERVER)?;
    let id = r.backup.clone().unwrap_or_else(|| "newest".into());
    let Some(directory) = r.directory.clone().filter(|d| !d.is_empty()) else {
        return Err(fail(ec::ARCHIVE_SETUP, "archive: no directory given"));
    };
    // The backup to archive (valid ones only), chosen once so the reply names it.
    let info = shared
        .repo
        .select(&name, &BackupSelector::parse(&id), &RecoveryTarget::default())
        .map_err(|e| fail(code(Op::Archive, Step::Find, &e), format!("server [{name}]: {e}")))?;
    let _guard = state
        .lock(Activity::Archive)
        .map_err(|other| fail(ec::ARCHIVE_ACTIVE, format!("server [{name}]: busy with {other:?}")))?;
    let mut o = ArchiveOptions::new(&name, BackupSelector::Label(info.label.clone()), &directory);
    o.workers = workers;
    o.level = shared.config().main.compression_level;
    o.force = r.force;
    let result = shared.repo.archive(&o);
    state.record(result.is_ok());
    let file = result.map_err(|e| {
        let op = Op::Archive;
        fail_in(code(op, Step::Run, &e), op.workflow(), format!("server [{name}]: archive failed: {e}"))
    })?;
    reply(&ArchiveResponse { backup: info.label, file_name: file.display().to_string() })
}

pub(super) fn delete(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: DeleteRequest = request::parse(req);
    let srv = server_state(shared, req, ec::DELETE_NOSERVER)?;
    let (name, state) = (srv.name.as_str(), srv.state);
    let id = r.backup.clone().unwrap_or_default();
    let info = shared
        .repo
        .find(name, &id)
        .map_err(|e| fail_in(code(Op::Delete, Step::Find, &e), Op::Delete.workflow(), e.to_string()))?;
    let _guard = state
        .lock(Activity::Delete)
        .map_err(|other| fail(ec::DELETE_BACKUP_ACTIVE, format!("server [{name}]: busy with {other:?}")))?;
    // A peer copying a backup of this server would lose it, or its parent, half-way.
    if let Some((node, label)) = shared.cluster.as_ref().and_then(|c| c.busy_elsewhere(name).into_iter().next()) {
        return Err(fail(
            ec::DELETE_BACKUP_ACTIVE,
            format!("server [{name}]: node {node} is copying backup {label}; try again when it is done"),
        ));
    }
    let mut options = DeleteOptions::default();
    options.force = r.force;
    options.workspace = workspace(shared, &srv);
    let result = shared.repo.delete(name, &info.label, &options, srv.workers);
    state.record(result.is_ok());
    result.map_err(|e| {
        let op = Op::Delete;
        fail_in(code(op, Step::Run, &e), op.workflow(), format!("server [{name}]: delete {}: {e}", info.label))
    })?;
    log::info!("server [{name}]: backup {} deleted", info.label);
    if let Some(cluster) = &shared.cluster {
        cluster.note_deleted(shared, name, std::slice::from_ref(&info.label));
    }
    reply(&DeleteResponse { backup: info.label })
}

pub(super) fn keep(shared: &Arc<Shared>, req: &Map<String, Value>, on: bool) -> Reply {
    let r: KeepRequest = request::parse(req);
    let (op, noserver) = if on { (Op::Retain, ec::RETAIN_NOSERVER) } else { (Op::Expunge, ec::EXPUNGE_NOSERVER) };
    let Srv { name, .. } = server_state(shared, req, noserver)?;
    let id = r.backup.clone().unwrap_or_default();
    let cascade = r.cascade;
    let info = shared.repo.find(&name, &id).map_err(|e| fail(code(op, Step::Find, &e), e.to_string()))?;
    let touched = shared
        .repo
        .set_keep(&name, &info.label, on, cascade)
        .map_err(|e| fail(code(op, Step::Run, &e), format!("server [{name}]: {e}")))?;
    let after = shared.repo.info(&name, &info.label).map_err(|e| fail(code(op, Step::Run, &e), e.to_string()))?;
    reply(&KeepResponse {
        backups: touched,
        backup: after.label,
        valid: i8::from(after.valid),
        comments: after.comments,
        keep: after.keep,
        cascade,
    })
}

pub(super) fn info(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: InfoRequest = request::parse(req);
    let Srv { name, .. } = server_state(shared, req, ec::INFO_NOSERVER)?;
    let id = r.backup.clone().unwrap_or_default();
    let info = shared.repo.find(&name, &id).map_err(|e| fail(code(Op::Info, Step::Find, &e), e.to_string()))?;
    reply(&info_response(&info))
}

pub(super) fn annotate(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: AnnotateRequest = request::parse(req);
    let Srv { name, .. } = server_state(shared, req, ec::ANNOTATE_NOSERVER)?;
    let id = r.backup.clone().unwrap_or_default();
    let info = shared.repo.find(&name, &id).map_err(|e| fail(code(Op::Annotate, Step::Find, &e), e.to_string()))?;
    let key = r.key.clone().unwrap_or_default();
    let comment = r.comment.clone().unwrap_or_default();
    let change = match r.action.clone().unwrap_or_default().as_str() {
        "add" => Annotation::Add(key, comment),
        "update" => Annotation::Update(key, comment),
        "remove" => Annotation::Remove(key),
        other => return Err(fail(ec::ANNOTATE_UNKNOWN_ACTION, format!("annotate: unknown action {other:?}"))),
    };
    let after = shared.repo.annotate(&name, &info.label, &change).map_err(|e| {
        fail(code(Op::Annotate, Step::Run, &e), format!("server [{name}]: annotate {}: {e}", info.label))
    })?;
    reply(&info_response(&after))
}

/// A verified file as upstream reports it: files of the manifest under the directory the
/// backup would be restored to (`<Directory>/<server>-<label>`), with their manifest path; the
/// repository's own files (backup.info, the manifest, the backup's WAL) under the backup's
/// directory. `Calculated` only for a file that failed.
fn file_entry(
    f: &FileVerification,
    in_manifest: bool,
    restore_dir: &str,
    backup_dir: &str,
    failed: bool,
) -> VerifiedFile {
    VerifiedFile {
        directory: if in_manifest { restore_dir } else { backup_dir }.to_owned(),
        file_name: f.path.clone(),
        original: f.expected.clone(),
        hash_algorithm: "SHA512".into(),
        calculated: failed.then(|| if f.computed.is_empty() { "Unknown".into() } else { f.computed.clone() }),
    }
}

pub(super) fn verify(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: VerifyRequest = request::parse(req);
    let Srv { name, state, workers, .. } = server_state(shared, req, ec::VERIFY_NOSERVER)?;
    let id = r.backup.clone().unwrap_or_default();
    let all = r.files.clone().is_some_and(|f| f == "all");
    let info = shared
        .repo
        .find(&name, &id)
        .map_err(|e| fail_in(code(Op::Verify, Step::Find, &e), Op::Verify.workflow(), e.to_string()))?;
    let _guard = state
        .lock(Activity::Verify)
        .map_err(|other| fail(ec::VERIFY_ERROR, format!("server [{name}]: busy with {other:?}")))?;
    let result = shared.repo.verify(&name, &info.label, workers);
    state.record(result.is_ok());
    state.record_verification(
        &info.label,
        match &result {
            Ok(v) if v.failed.is_empty() => None,
            Ok(v) => Some(super::describe_failed_files(v)),
            Err(e) => Some(e.to_string()),
        },
    );
    let v = result.map_err(|e| {
        let op = Op::Verify;
        fail_in(code(op, Step::Run, &e), op.workflow(), format!("server [{name}]: verify {}: {e}", info.label))
    })?;
    if v.failed.is_empty() {
        log::info!("server [{name}]: backup {} verified: {} files", info.label, v.all.len());
    } else {
        log::error!(
            "server [{name}]: backup {}: {} of {} files failed verification",
            info.label,
            v.failed.len(),
            v.all.len()
        );
    }
    let directory = r.directory.clone().unwrap_or_default();
    let restore_dir = format!("{}/{name}-{}", directory.trim_end_matches('/'), info.label);
    let backup_dir = shared.base_dir().join(layout::backup_dir(&name, &info.label)).display().to_string();
    let entry = |f: &FileVerification, failed: bool| {
        file_entry(f, v.manifest.contains(&f.path), &restore_dir, &backup_dir, failed)
    };
    let listed = v.all.iter().filter(|f| v.manifest.contains(&f.path));
    let files = VerifiedFiles {
        failed: v.failed.iter().map(|f| entry(f, true)).collect(),
        all: all.then(|| listed.map(|f| entry(f, false)).collect()),
    };
    reply(&VerifyResponse { backup: info.label.clone(), files })
}
