//! The management commands: each request document is answered with upstream's response fields
//! and error codes (see `docs/management.md`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pgmoneta_compress::{Algorithm, Compression, EncoderOptions};
use pgmoneta_core::config::{Config, ServerConfig};
use pgmoneta_core::{BackupLabel, Clock, Lsn};
use pgmoneta_crypto::Cipher;
use pgmoneta_storage::backup::{take_backup, BackupOptions, BackupProgress};
use pgmoneta_storage::catalog::{list_backups, load_info, BackupSelector, Catalog};
use pgmoneta_storage::export::{archive, ArchiveOptions, HotStandbyOptions};
use pgmoneta_storage::info::{BackupInfo, BackupType};
use pgmoneta_storage::ops::{self, Annotation, DeleteOptions};
use pgmoneta_storage::restore::RestoreOptions;
use pgmoneta_storage::sqlbackup::{self, SqlBackupOptions};
use pgmoneta_storage::store::Store;
use pgmoneta_storage::target::RecoveryTarget;
use pgmoneta_storage::verify::{verify, FileVerification};
use pgmoneta_storage::{layout, StorageError};
use pgmoneta_wire::management::{error_code as ec, Command, Document, Outcome};
use serde_json::{json, Map, Value};

use crate::clock::SystemClock;
use crate::state::{Activity, ServerState, Shared};
use crate::{pg, walservice};

/// The version the daemon reports as `ServerVersion`.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A failed command: upstream's error code, workflow name, and what went wrong in words (logged,
/// and sent as `Outcome.Message`).
#[derive(Debug)]
pub struct Failure {
    code: u32,
    workflow: Option<&'static str>,
    message: String,
}

fn fail(code: u32, what: impl AsRef<str>) -> Failure {
    log::error!("{}", what.as_ref());
    Failure { code, workflow: None, message: what.as_ref().to_owned() }
}

fn fail_in(code: u32, workflow: &'static str, what: impl AsRef<str>) -> Failure {
    log::error!("{}", what.as_ref());
    Failure { code, workflow: Some(workflow), message: what.as_ref().to_owned() }
}

type Reply = Result<Map<String, Value>, Failure>;

/// The `Response` every reply carries.
pub fn base_response() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ServerVersion".into(), json!(SERVER_VERSION));
    m
}

fn text(req: &Map<String, Value>, key: &str) -> Option<String> {
    match req.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn flag(req: &Map<String, Value>, key: &str) -> bool {
    match req.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "on" | "yes" | "1"),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        _ => false,
    }
}

/// Runs the request in `doc` and returns the reply document.
pub fn dispatch(shared: &Arc<Shared>, doc: Document, started: Instant) -> Document {
    let req = &doc.request;
    let command = doc.header.command;
    log::debug!("management: {} {}", command.name(), serde_json::Value::Object(req.clone()));
    let result = match command {
        Command::Backup => backup(shared, req),
        Command::ListBackup => list_backup(shared, req),
        Command::Restore => restore_cmd(shared, req),
        Command::Archive => archive_cmd(shared, req),
        Command::Delete => delete(shared, req),
        Command::Shutdown | Command::Ping => Ok(Map::new()),
        Command::Status => status(shared, false),
        Command::StatusDetails => status(shared, true),
        Command::Reset => {
            shared.log_counters.reset();
            Ok(Map::new())
        }
        Command::Reload => reload_cmd(shared),
        Command::Retain => keep(shared, req, true),
        Command::Expunge => keep(shared, req, false),
        Command::Encrypt => encrypt(shared, req),
        Command::Decrypt => decrypt(shared, req),
        Command::Compress => compress(shared, req),
        Command::Decompress => decompress(req),
        Command::Info => info_cmd(shared, req),
        Command::Verify => verify_cmd(shared, req),
        Command::Annotate => annotate(shared, req),
        Command::ConfLs => Ok(conf_ls(shared)),
        Command::ConfGet => Ok(conf_get(shared, &shared.config())),
        Command::ConfSet => conf_set(shared, req),
        Command::Mode => mode(shared, req),
        Command::Progress => progress(shared, req),
        Command::S3Ls => s3_ls(shared, req),
        Command::S3Restore => s3_restore(shared, req),
        _ => Err(fail(ec::UNKNOWN_COMMAND, format!("management: unknown command id {}", doc.header.command_id))),
    };
    let server = text(req, "Server");
    let mut reply = doc.clone();
    let mut response = base_response();
    if let Some(name) = server.as_deref().filter(|n| shared.server(n).is_some()) {
        response.insert("Server".into(), json!(name));
        if let Some(state) = shared.server(name) {
            let facts = state.facts.read();
            if let Some(v) = facts.version {
                response.insert("MajorVersion".into(), json!(v.major()));
                response.insert("MinorVersion".into(), json!(facts.minor));
            }
        }
    }
    match result {
        Ok(fields) => {
            response.extend(fields);
            reply.response = Some(response);
            reply.outcome = Some(Outcome::success(started.elapsed().as_secs_f64()));
        }
        Err(f) => {
            response.retain(|k, _| k == "Server" || k == "ServerVersion");
            reply.response = Some(response);
            let message = if f.message.is_empty() { ec::describe(f.code).unwrap_or_default() } else { f.message };
            reply.outcome = Some(Outcome::failure(f.code, f.workflow).with_message(message));
        }
    }
    reply
}

/// The server a command names, resolved once when the command starts: its state, and its
/// configuration as it was then (a reload while the command runs changes neither).
struct Srv<'a> {
    name: String,
    state: &'a Arc<ServerState>,
    config: ServerConfig,
    workers: usize,
}

fn server_state<'a>(shared: &'a Shared, req: &Map<String, Value>, code: u32) -> Result<Srv<'a>, Failure> {
    let name = text(req, "Server").unwrap_or_default();
    match (shared.server(&name), shared.server_config(&name)) {
        (Some(state), Some(config)) => {
            let workers = shared.workers(&config);
            Ok(Srv { name, state, config, workers })
        }
        _ => Err(fail(code, format!("no server named {name:?}"))),
    }
}

/// Resolves `oldest`, `newest`/`latest` (valid or not) or a label to an existing backup, with
/// the catalog it was found in.
fn resolve(shared: &Shared, server: &str, id: &str) -> Result<(Catalog, BackupInfo), String> {
    let catalog = Catalog::load(shared.store(), server).map_err(|e| e.to_string())?;
    let found = catalog.find_any(&BackupSelector::parse(id)).cloned();
    found.map(|info| (catalog, info)).ok_or_else(|| format!("server [{server}]: no backup {id:?}"))
}

fn lsn_halves(lsn: Lsn) -> (u64, u64) {
    (lsn.0 >> 32, lsn.0 & 0xffff_ffff)
}

fn backup_summary(b: &BackupInfo) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Backup".into(), json!(b.label));
    m.insert("Keep".into(), json!(b.keep));
    m.insert("Valid".into(), json!(i8::from(b.valid)));
    m.insert("BackupSize".into(), json!(b.backup_size));
    m.insert("RestoreSize".into(), json!(b.restore_size));
    m.insert("BiggestFileSize".into(), json!(b.biggest_file));
    m.insert("Compression".into(), json!(b.compression));
    m.insert("Encryption".into(), json!(b.encryption));
    m.insert("Comments".into(), json!(b.comments));
    m.insert("Incremental".into(), json!(b.backup_type == BackupType::Incremental));
    m.insert("IncrementalParent".into(), json!(b.parent));
    m
}

fn info_fields(b: &BackupInfo) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Backup".into(), json!(b.label));
    m.insert("WAL".into(), json!(b.wal));
    m.insert("BackupSize".into(), json!(b.backup_size));
    m.insert("RestoreSize".into(), json!(b.restore_size));
    m.insert("BiggestFileSize".into(), json!(b.biggest_file));
    m.insert("Elapsed".into(), json!(b.elapsed.total));
    m.insert("MajorVersion".into(), json!(b.major_version));
    m.insert("MinorVersion".into(), json!(b.minor_version));
    m.insert("Keep".into(), json!(b.keep));
    m.insert("Valid".into(), json!(i8::from(b.valid)));
    m.insert("NumberOfTablespaces".into(), json!(b.tablespaces.len()));
    m.insert("Compression".into(), json!(b.compression));
    m.insert("Encryption".into(), json!(b.encryption));
    let spaces: Vec<Value> = b.tablespaces.iter().map(|t| json!({"TablespaceName": t.dir})).collect();
    m.insert("Tablespaces".into(), Value::Array(spaces));
    for (name, lsn) in [("Start", b.start_lsn), ("End", b.end_lsn), ("Checkpoint", b.checkpoint_lsn)] {
        let (hi, lo) = lsn_halves(lsn);
        m.insert(format!("{name}HiLSN"), json!(hi));
        m.insert(format!("{name}LoLSN"), json!(lo));
    }
    m.insert("StartTimeline".into(), json!(b.start_timeline));
    m.insert("EndTimeline".into(), json!(b.end_timeline));
    m.insert("Comments".into(), json!(b.comments));
    m.insert("Incremental".into(), json!(b.backup_type == BackupType::Incremental));
    m.insert("IncrementalParent".into(), json!(b.parent));
    m
}

fn new_label(shared: &Shared, server: &str) -> BackupLabel {
    loop {
        let label = BackupLabel::new(SystemClock.now().local());
        if !shared.local.exists(&layout::backup_dir(server, &label.to_string())) {
            return label;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Where combining and rolling up may put temporary files: the server's or the main
/// `workspace`, else `<tmp>/pgmoneta-workspace-<uid>`.
fn workspace(shared: &Shared, name: &str) -> PathBuf {
    let config = shared.config();
    let dir = config
        .server(name)
        .and_then(|s| s.workspace.clone())
        .or_else(|| config.main.workspace.clone())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("pgmoneta-workspace-{}", nix::unistd::geteuid())));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        log::warn!("workspace {}: {e}", dir.display());
    }
    dir
}

fn backup(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let srv = server_state(shared, req, ec::BACKUP_NOSERVER)?;
    let (name, state) = (srv.name.clone(), srv.state);
    let parent = match text(req, "Backup").filter(|p| !p.is_empty() && p != "null") {
        None => None,
        Some(id) => {
            let catalog = Catalog::load(shared.store(), &name).map_err(|e| fail(ec::BACKUP_ERROR, e.to_string()))?;
            if catalog.valid().next().is_none() {
                return Err(fail_in(
                    ec::BACKUP_NOBACKUPS,
                    "Incremental backup",
                    format!("server [{name}]: no valid backup to build an incremental backup on"),
                ));
            }
            let info = catalog.find(&BackupSelector::parse(&id)).ok_or_else(|| {
                fail_in(
                    ec::INCREMENTAL_BACKUP_SETUP,
                    "Incremental backup",
                    format!("server [{name}]: no backup {id:?}"),
                )
            })?;
            if let Some(child) = catalog.child_of(&info.label) {
                return Err(fail_in(
                    ec::BACKUP_ALREADYCHILD,
                    "Incremental backup",
                    format!("server [{name}]: backup {} already has an incremental child, {}", info.label, child.label),
                ));
            }
            Some(info.label.clone())
        }
    };
    if state.forced_offline.load(Ordering::SeqCst) {
        return Err(fail(ec::BACKUP_OFFLINE, format!("server [{name}] is offline (mode offline)")));
    }
    let facts = state.facts.read().clone();
    if !facts.valid {
        return Err(fail(ec::BACKUP_INVALID, format!("server [{name}] is not valid: {}", facts.problems.join("; "))));
    }
    if !state.wal_streaming.load(Ordering::SeqCst) {
        return Err(fail(
            ec::BACKUP_WAL,
            format!("server [{name}]: WAL is not streaming; a backup would not be restorable"),
        ));
    }
    let _guard = state
        .lock(Activity::Backup)
        .map_err(|other| fail(ec::BACKUP_ACTIVE, format!("server [{name}]: busy with {other:?}")))?;
    let result = run_backup(shared, &srv, &facts, parent.as_deref());
    state.record(result.is_ok());
    *state.backup_progress.lock() = None;
    *state.backup_cancel.lock() = None;
    result
}

fn run_backup(shared: &Arc<Shared>, srv: &Srv<'_>, facts: &crate::state::ServerFacts, parent: Option<&str>) -> Reply {
    let (name, state, server) = (srv.name.as_str(), srv.state, &srv.config);
    let config = shared.config();
    let version = facts.version.ok_or_else(|| fail(ec::BACKUP_INVALID, "server version unknown"))?;
    let workflow = if parent.is_some() { "Incremental backup" } else { "Backup" };
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
    let label = new_label(shared, name);
    let mut options = BackupOptions::new(name, label);
    options.compression = Compression::from_code(config.main.compression.code()).unwrap_or(Compression::NONE);
    options.level = config.main.compression_level;
    options.workers = srv.workers;
    options.encryption = walservice::encryption(shared).map_err(|e| fail(ec::BACKUP_SETUP, e))?;
    options.tablespace_names = pg::tablespace_names(shared, server).map_err(|e| fail(ec::BACKUP_NETWORK, e))?;
    let rate = if server.max_rate >= 0 { server.max_rate as u64 } else { config.main.max_rate };
    if rate > 0 {
        options.max_rate_kb = Some(rate.div_ceil(1024).clamp(32, 1_048_576) as u32);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    options.cancel = cancel.clone();
    options.progress = Arc::new(BackupProgress::default());
    options.parent = parent.map(str::to_owned);
    options.link = config.main.link;
    *state.backup_cancel.lock() = Some(cancel);
    *state.backup_progress.lock() = Some((options.progress.clone(), Instant::now()));
    match parent {
        Some(p) => log::info!("server [{name}]: incremental backup {label} on {p} started"),
        None => log::info!("server [{name}]: backup {label} started"),
    }
    let (network, execute) = if parent.is_some() {
        (ec::INCREMENTAL_BACKUP_SETUP, ec::INCREMENTAL_BACKUP_EXECUTE)
    } else {
        (ec::BACKUP_NETWORK, ec::BACKUP_EXECUTE)
    };
    let failed = |e: StorageError| {
        let code = match &e {
            StorageError::AlreadyHasChild { .. } => ec::BACKUP_ALREADYCHILD,
            _ => execute,
        };
        fail_in(code, workflow, format!("server [{name}]: backup {label} failed: {e}"))
    };
    let store: Arc<dyn Store> = shared.store.clone();
    let info = if parent.is_some() && !version.has_incremental_backup() {
        // 14 to 16: through SQL, with the changed blocks from the WAL archive.
        let mut conn = pg::connect(shared, server, false).map_err(|e| fail_in(network, workflow, e))?;
        let mut sql = SqlBackupOptions::default();
        sql.wal_encryption = options.encryption.clone();
        sql.master_key = shared.master_key.clone();
        let info =
            sqlbackup::take_incremental(&mut conn, version, facts.minor, store, &options, &sql).map_err(failed)?;
        let _ = conn.close();
        info
    } else {
        let mut conn = pg::connect(shared, server, true).map_err(|e| fail_in(network, workflow, e))?;
        let info = take_backup(&mut conn, version, facts.minor, store, &options).map_err(failed)?;
        let _ = conn.close();
        info
    };
    for (i, dir) in server.hot_standby.0.iter().enumerate() {
        // The copy is <hot_standby>/<server>, with this standby's tablespace map and overrides.
        let mut hs = HotStandbyOptions::new(name, dir);
        hs.master_key = shared.master_key.clone();
        hs.workers = options.workers;
        if let Some(maps) = server.hot_standby_tablespaces.0.get(i) {
            hs.tablespace_map = maps.iter().map(|(from, to)| (from.clone(), PathBuf::from(to))).collect();
        }
        hs.overrides = server.hot_standby_overrides.0.get(i).filter(|o| !o.is_empty()).map(PathBuf::from);
        if let Err(e) = pgmoneta_storage::export::update_hot_standby(shared.store(), &hs) {
            log::error!("server [{name}]: hot standby {dir}: {e}");
        }
    }
    let remote_cancel = state.backup_cancel.lock().clone().unwrap_or_default();
    if let Err(e) = crate::remote::after_backup(shared, name, &label.to_string(), options.workers, &remote_cancel) {
        // The backup is whole here: it stays, with its data, and the upload is tried again.
        shared.pending_uploads.lock().insert((name.to_owned(), label.to_string()));
        return Err(fail_in(
            execute,
            workflow,
            format!(
                "server [{name}]: backup {label} is valid locally but its {e}; the partial remote copy was removed \
                 and the upload will be tried again"
            ),
        ));
    }
    log::info!(
        "server [{name}]: backup {label} done: {} bytes stored, {} to restore, {:.1} s",
        info.backup_size,
        info.restore_size,
        info.elapsed.total
    );
    let mut m = backup_summary(&info);
    m.remove("Keep");
    m.remove("Comments");
    Ok(m)
}

fn list_backup(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, .. } = server_state(shared, req, ec::LIST_BACKUP_NOSERVER)?;
    let sort = text(req, "Sort").unwrap_or_else(|| "asc".into());
    let desc = match sort.as_str() {
        "asc" | "" => false,
        "desc" => true,
        other => return Err(fail(ec::LIST_BACKUP_INVALID_SORT, format!("invalid sort order {other:?}"))),
    };
    let backups = list_backups(shared.store(), &name)
        .map_err(|e| fail(ec::LIST_BACKUP_BACKUPS, format!("server [{name}]: {e}")))?;
    let seg = segment_size(shared, &name);
    let mut entries: Vec<Value> = Vec::new();
    let mut previous: Option<Lsn> = None;
    for b in &backups {
        let mut m = backup_summary(b);
        m.insert("Server".into(), json!(name));
        let wal = previous.map_or(0, |p| b.start_lsn.0.saturating_sub(p.0) / seg * seg);
        m.insert("WAL".into(), json!(wal));
        previous = Some(b.start_lsn);
        entries.push(Value::Object(m));
    }
    if desc {
        entries.reverse();
    }
    let mut m = Map::new();
    m.insert("NumberOfBackups".into(), json!(entries.len()));
    m.insert("Backups".into(), Value::Array(entries));
    Ok(m)
}

fn segment_size(shared: &Shared, name: &str) -> u64 {
    shared.server(name).map(|s| s.facts.read().segment_size).filter(|s| *s > 0).unwrap_or(16 << 20)
}

fn restore_options(
    shared: &Shared,
    srv: (&str, &ServerConfig, usize),
    id: &str,
    position: &str,
    directory: &str,
) -> RestoreOptions {
    let (name, server, workers) = srv;
    let mut o = RestoreOptions::new(name, BackupSelector::parse(id), directory);
    o.position = position.to_owned();
    o.workers = workers;
    o.master_key = shared.master_key.clone();
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
    store: &dyn Store,
    name: &str,
    options: &RestoreOptions,
) -> pgmoneta_storage::Result<pgmoneta_storage::restore::RestoreReport> {
    let plan = pgmoneta_storage::restore::plan(store, options)?;
    log::info!("server [{name}]: restore plan: {}", plan.to_string().trim_end().replace('\n', "; "));
    pgmoneta_storage::restore::apply(store, options, &plan)
}

/// What `restore` and `s3 restore` answer: the backup's summary, without `Keep` and `Valid`.
fn restore_reply(info: &BackupInfo) -> Map<String, Value> {
    let mut m = backup_summary(info);
    m.remove("Keep");
    m.remove("Valid");
    m
}

fn restore_cmd(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, state, config: server, workers } = server_state(shared, req, ec::RESTORE_NOSERVER)?;
    let id = text(req, "Backup").unwrap_or_else(|| "newest".into());
    let position = text(req, "Position").unwrap_or_default();
    let Some(directory) = text(req, "Directory").filter(|d| !d.is_empty()) else {
        return Err(fail(ec::RESTORE_SETUP, "restore: no directory given"));
    };
    let _guard = state
        .lock(Activity::Restore)
        .map_err(|other| fail(ec::RESTORE_ACTIVE, format!("server [{name}]: busy with {other:?}")))?;
    let mut options = restore_options(shared, (&name, &server, workers), &id, &position, &directory);
    options.force = flag(req, "Force");
    let result = plan_and_apply(shared.store(), &name, &options);
    state.record(result.is_ok());
    let report = result.map_err(|e| {
        let code = match &e {
            StorageError::NotFound(_) => ec::RESTORE_NOBACKUP,
            e if e.is_out_of_space() => ec::RESTORE_NODISK,
            StorageError::NotEmpty { .. } | StorageError::Unreachable(_) | StorageError::Invalid(_) => {
                ec::RESTORE_SETUP
            }
            _ => ec::RESTORE_EXECUTE,
        };
        fail_in(code, "Restore", format!("server [{name}]: restore of {id} failed: {e}"))
    })?;
    log::info!("server [{name}]: backup {} restored into {}", report.info.label, report.data_dir.display());
    Ok(restore_reply(&report.info))
}

/// The remote repository the `s3` commands use: the S3 one, else the first remote.
fn command_remote(shared: &Shared, name: &str) -> Option<pgmoneta_storage::remote::Remote> {
    let remotes = shared.store.remotes(name);
    remotes.iter().find(|r| r.engine == "s3").or(remotes.first()).cloned()
}

/// `s3 ls <server> [<prefix>]`: the objects of the server's backups in its remote repository
/// (under `<server>/backup/<prefix>`), as repository paths.
fn s3_ls(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, .. } = server_state(shared, req, ec::LIST_S3_NOSERVER)?;
    let remote = command_remote(shared, &name).ok_or_else(|| {
        fail_in(ec::LIST_S3_WORKFLOW, "S3 list", format!("server [{name}]: no remote storage engine is configured"))
    })?;
    let prefix = text(req, "S3Prefix").unwrap_or_default();
    let dir = format!("{}/{}", layout::backups_dir(&name), prefix.trim_matches('/'));
    let objects = pgmoneta_storage::remote::walk(remote.store.as_ref(), dir.trim_end_matches('/')).map_err(|e| {
        fail_in(ec::LIST_S3_NETWORK, "S3 list", format!("server [{name}]: listing {} storage: {e}", remote.engine))
    })?;
    let mut m = Map::new();
    m.insert("Server".into(), json!(name));
    m.insert("S3Objects".into(), Value::Array(objects.into_iter().map(|(k, _)| json!({"S3Key": k})).collect()));
    Ok(m)
}

/// `s3 restore <server> <backup> [<position>] <directory>`: a restore that reads the backup
/// and the WAL from the remote repository alone, whatever the local one holds.
fn s3_restore(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, state, config: server, workers } = server_state(shared, req, ec::RESTORE_S3_NOSERVER)?;
    let remote = command_remote(shared, &name).ok_or_else(|| {
        fail_in(
            ec::RESTORE_S3_WORKFLOW,
            "S3 restore",
            format!("server [{name}]: no remote storage engine is configured"),
        )
    })?;
    let id = text(req, "S3Prefix").unwrap_or_else(|| "newest".into());
    let position = text(req, "Position").unwrap_or_default();
    let Some(directory) = text(req, "Directory").filter(|d| !d.is_empty()) else {
        return Err(fail(ec::RESTORE_S3_ERROR, "s3 restore: no directory given"));
    };
    let _guard = state
        .lock(Activity::Restore)
        .map_err(|other| fail(ec::RESTORE_S3_ERROR, format!("server [{name}]: busy with {other:?}")))?;
    let mut options = restore_options(shared, (&name, &server, workers), &id, &position, &directory);
    options.force = flag(req, "Force");
    let result = plan_and_apply(remote.store.as_ref(), &name, &options);
    state.record(result.is_ok());
    let report = result.map_err(|e| {
        let code = match &e {
            StorageError::Remote { .. } => ec::RESTORE_S3_NETWORK,
            _ => ec::RESTORE_S3_ERROR,
        };
        fail_in(
            code,
            "S3 restore",
            format!("server [{name}]: restore of {id} from {} storage failed: {e}", remote.engine),
        )
    })?;
    log::info!(
        "server [{name}]: backup {} restored from {} storage into {}",
        report.info.label,
        remote.engine,
        report.data_dir.display()
    );
    Ok(restore_reply(&report.info))
}

fn archive_cmd(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, state, workers, .. } = server_state(shared, req, ec::ARCHIVE_NOSERVER)?;
    let id = text(req, "Backup").unwrap_or_else(|| "newest".into());
    let Some(directory) = text(req, "Directory").filter(|d| !d.is_empty()) else {
        return Err(fail(ec::ARCHIVE_SETUP, "archive: no directory given"));
    };
    // The backup archive() will take (valid ones only), chosen once so the reply names it.
    let catalog = Catalog::load(shared.store(), &name).map_err(|e| fail(ec::ARCHIVE_ERROR, e.to_string()))?;
    let info = catalog
        .select(&BackupSelector::parse(&id), &RecoveryTarget::default())
        .cloned()
        .map_err(|e| fail(ec::ARCHIVE_NOBACKUP, format!("server [{name}]: {e}")))?;
    let _guard = state
        .lock(Activity::Archive)
        .map_err(|other| fail(ec::ARCHIVE_ACTIVE, format!("server [{name}]: busy with {other:?}")))?;
    let config = shared.config();
    let mut o = ArchiveOptions::new(&name, BackupSelector::Label(info.label.clone()), &directory);
    o.workers = workers;
    o.master_key = shared.master_key.clone();
    o.level = config.main.compression_level;
    o.force = flag(req, "Force");
    let result = archive(shared.store(), &o);
    state.record(result.is_ok());
    let file = result.map_err(|e| {
        let code = match &e {
            StorageError::NotEmpty { .. } => ec::ARCHIVE_SETUP,
            _ => ec::ARCHIVE_EXECUTE,
        };
        fail_in(code, "Archive", format!("server [{name}]: archive failed: {e}"))
    })?;
    let mut m = Map::new();
    m.insert("FileName".into(), json!(file.display().to_string()));
    m.insert("Backup".into(), json!(info.label));
    Ok(m)
}

fn delete(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, state, workers, .. } = server_state(shared, req, ec::DELETE_NOSERVER)?;
    let id = text(req, "Backup").unwrap_or_default();
    let force = flag(req, "Force");
    let (_, info) = resolve(shared, &name, &id).map_err(|e| fail_in(ec::DELETE_BACKUP_NOBACKUP, "Delete backup", e))?;
    let _guard = state
        .lock(Activity::Delete)
        .map_err(|other| fail(ec::DELETE_BACKUP_ACTIVE, format!("server [{name}]: busy with {other:?}")))?;
    // Read under the lock: a backup built on this one may have completed since it was resolved.
    let child = Catalog::load(shared.store(), &name)
        .ok()
        .and_then(|catalog| catalog.child_of(&info.label).map(|b| b.label.clone()));
    let has_child = child.is_some();
    // A roll-up rewrites the child from both backups' files: those kept only remotely are
    // fetched first, and the new child goes up again afterwards.
    let remote_roll_up = child.as_ref().is_some_and(|c| {
        crate::remote::is_remote_only(shared, &name, c) || crate::remote::is_remote_only(shared, &name, &info.label)
    });
    if let (true, Some(c)) = (remote_roll_up, &child) {
        for l in [c.as_str(), info.label.as_str()] {
            crate::remote::materialize(shared, &name, l, workers).map_err(|e| {
                fail_in(
                    ec::DELETE_BACKUP_ROLLUP,
                    "Delete backup",
                    format!("server [{name}]: delete {}: {e}", info.label),
                )
            })?;
        }
    }
    let mut options = DeleteOptions::default();
    options.force = force;
    options.master_key = shared.master_key.clone();
    options.workspace = workspace(shared, &name);
    let result = ops::delete_backup_with(shared.store(), &name, &info.label, &options);
    state.record(result.is_ok());
    result.map_err(|e| {
        let code = match &e {
            StorageError::NotFound(_) => ec::DELETE_BACKUP_NOBACKUP,
            StorageError::Invalid(m) if m.contains("retained") => ec::DELETE_BACKUP_RETAINED,
            _ if has_child => ec::DELETE_BACKUP_ROLLUP,
            _ => ec::DELETE_BACKUP_EXECUTE,
        };
        fail_in(code, "Delete backup", format!("server [{name}]: delete {}: {e}", info.label))
    })?;
    if let (true, Some(c)) = (remote_roll_up, &child) {
        let never = AtomicBool::new(false);
        crate::remote::after_backup(shared, &name, c, workers, &never).map_err(|e| {
            fail_in(ec::DELETE_BACKUP_ROLLUP, "Delete backup", format!("server [{name}]: rolled-up backup {c}: {e}"))
        })?;
    }
    log::info!("server [{name}]: backup {} deleted", info.label);
    let mut m = Map::new();
    m.insert("Backup".into(), json!(info.label));
    Ok(m)
}

fn keep(shared: &Arc<Shared>, req: &Map<String, Value>, on: bool) -> Reply {
    let (noserver, nobackup, error) = if on {
        (ec::RETAIN_NOSERVER, ec::RETAIN_NOBACKUP, ec::RETAIN_ERROR)
    } else {
        (ec::EXPUNGE_NOSERVER, ec::EXPUNGE_NOBACKUP, ec::EXPUNGE_ERROR)
    };
    let Srv { name, .. } = server_state(shared, req, noserver)?;
    let id = text(req, "Backup").unwrap_or_default();
    let cascade = flag(req, "Cascade");
    let (_, info) = resolve(shared, &name, &id).map_err(|e| fail(nobackup, e))?;
    let touched = ops::set_keep(shared.store(), &name, &info.label, on, cascade)
        .map_err(|e| fail(error, format!("server [{name}]: {e}")))?;
    for l in &touched {
        crate::remote::refresh_info(shared, &name, l);
    }
    let after = load_info(shared.store(), &name, &info.label).map_err(|e| fail(error, e.to_string()))?;
    let mut m = Map::new();
    m.insert("Backups".into(), json!(touched));
    m.insert("Backup".into(), json!(after.label));
    m.insert("Valid".into(), json!(i8::from(after.valid)));
    m.insert("Comments".into(), json!(after.comments));
    m.insert("Keep".into(), json!(after.keep));
    m.insert("Cascade".into(), json!(cascade));
    Ok(m)
}

fn info_cmd(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, .. } = server_state(shared, req, ec::INFO_NOSERVER)?;
    let id = text(req, "Backup").unwrap_or_default();
    let (_, info) = resolve(shared, &name, &id).map_err(|e| fail(ec::INFO_NOBACKUP, e))?;
    Ok(info_fields(&info))
}

fn annotate(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, .. } = server_state(shared, req, ec::ANNOTATE_NOSERVER)?;
    let id = text(req, "Backup").unwrap_or_default();
    let (_, info) = resolve(shared, &name, &id).map_err(|e| fail(ec::ANNOTATE_NOBACKUP, e))?;
    let key = text(req, "Key").unwrap_or_default();
    let comment = text(req, "Comment").unwrap_or_default();
    let change = match text(req, "Action").unwrap_or_default().as_str() {
        "add" => Annotation::Add(key, comment),
        "update" => Annotation::Update(key, comment),
        "remove" => Annotation::Remove(key),
        other => return Err(fail(ec::ANNOTATE_UNKNOWN_ACTION, format!("annotate: unknown action {other:?}"))),
    };
    ops::annotate(shared.store(), &name, &info.label, &change)
        .map_err(|e| fail(ec::ANNOTATE_FAILED, format!("server [{name}]: annotate {}: {e}", info.label)))?;
    crate::remote::refresh_info(shared, &name, &info.label);
    let after = load_info(shared.store(), &name, &info.label).map_err(|e| fail(ec::ANNOTATE_ERROR, e.to_string()))?;
    Ok(info_fields(&after))
}

/// A verified file as upstream reports it: files of the manifest under the directory the
/// backup would be restored to (`<Directory>/<server>-<label>`), with their manifest path; the
/// repository's own files (backup.info, the manifest, the backup's WAL) under the backup's
/// directory. `Calculated` only for a file that failed.
fn file_entry(f: &FileVerification, in_manifest: bool, restore_dir: &str, backup_dir: &str, failed: bool) -> Value {
    let mut m = Map::new();
    m.insert("Directory".into(), json!(if in_manifest { restore_dir } else { backup_dir }));
    m.insert("FileName".into(), json!(f.path));
    m.insert("Original".into(), json!(f.expected));
    m.insert("HashAlgorithm".into(), json!("SHA512"));
    if failed {
        m.insert("Calculated".into(), json!(if f.computed.is_empty() { "Unknown" } else { f.computed.as_str() }));
    }
    Value::Object(m)
}

fn verify_cmd(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, state, workers, .. } = server_state(shared, req, ec::VERIFY_NOSERVER)?;
    let id = text(req, "Backup").unwrap_or_default();
    let all = text(req, "Files").is_some_and(|f| f == "all");
    let (_, info) = resolve(shared, &name, &id).map_err(|e| fail_in(ec::VERIFY_SETUP, "Verify", e))?;
    let _guard = state
        .lock(Activity::Verify)
        .map_err(|other| fail(ec::VERIFY_ERROR, format!("server [{name}]: busy with {other:?}")))?;
    let result = verify(shared.store(), &name, &info.label, shared.master_key.as_deref(), workers);
    state.record(result.is_ok());
    let (failed, every) = result
        .map_err(|e| fail_in(ec::VERIFY_EXECUTE, "Verify", format!("server [{name}]: verify {}: {e}", info.label)))?;
    if failed.is_empty() {
        log::info!("server [{name}]: backup {} verified: {} files", info.label, every.len());
    } else {
        log::error!(
            "server [{name}]: backup {}: {} of {} files failed verification",
            info.label,
            failed.len(),
            every.len()
        );
    }
    let manifest = pgmoneta_storage::catalog::load_manifest(shared.store(), &name, &info.label)
        .map(|m| m.files)
        .unwrap_or_default();
    let directory = text(req, "Directory").unwrap_or_default();
    let restore_dir = format!("{}/{name}-{}", directory.trim_end_matches('/'), info.label);
    let backup_dir = shared.base_dir().join(layout::backup_dir(&name, &info.label)).display().to_string();
    let entry = |f: &FileVerification, failed: bool| {
        file_entry(f, manifest.contains_key(&f.path), &restore_dir, &backup_dir, failed)
    };
    let mut files = Map::new();
    files.insert("Failed".into(), Value::Array(failed.iter().map(|f| entry(f, true)).collect()));
    let listed = every.iter().filter(|f| manifest.contains_key(&f.path));
    files.insert("All".into(), if all { Value::Array(listed.map(|f| entry(f, false)).collect()) } else { Value::Null });
    let mut m = Map::new();
    m.insert("Backup".into(), json!(info.label));
    m.insert("Files".into(), Value::Object(files));
    Ok(m)
}

/// Bytes under `path` (files as stored, links not followed).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Bytes a server's repository holds on the local disk: the stored bytes of its backups whose
/// data is here, from their `backup.info` (so that a request does not walk every file of every
/// backup), and its WAL archive, from one listing.
pub fn server_usage(shared: &Shared, name: &str) -> (u64, u64) {
    let local = shared.local.as_ref();
    let backups = list_backups(shared.store(), name)
        .unwrap_or_default()
        .iter()
        .filter(|b| pgmoneta_storage::remote::has_local_data(local, name, &b.label))
        .map(|b| b.backup_size)
        .sum();
    (backups, dir_size(&shared.base_dir().join(layout::wal_dir(name))))
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

fn status(shared: &Arc<Shared>, details: bool) -> Reply {
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
        let backups = list_backups(shared.store(), &s.name).unwrap_or_default();
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
        let waiting: Vec<String> =
            shared.pending_uploads.lock().iter().filter(|(srv, _)| *srv == s.name).map(|(_, l)| l.clone()).collect();
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

fn reload_cmd(shared: &Arc<Shared>) -> Reply {
    let restart = crate::reload(shared).map_err(|e| fail(ec::UNKNOWN_COMMAND, format!("reload: {e}")))?;
    let mut m = Map::new();
    m.insert("Restart".into(), json!(restart));
    Ok(m)
}

fn conf_ls(shared: &Shared) -> Map<String, Value> {
    let p = &shared.paths;
    let mut m = Map::new();
    m.insert("main_configuration_path".into(), json!(p.config.display().to_string()));
    m.insert("users_configuration_path".into(), json!(p.users.display().to_string()));
    m.insert(
        "admin_configuration_path".into(),
        json!(p.admins.as_ref().map(|a| a.display().to_string()).unwrap_or_default()),
    );
    m
}

fn enum_value(value: i64, word: &str) -> Value {
    json!({"value": value, "string_value": word})
}

/// A `[pgmoneta]` key as upstream's `conf get` sends it: enumerations as
/// `{"value": code, "string_value": word}` with upstream's codes, times and sizes likewise,
/// booleans and numbers as such, unset strings as null.
fn main_value(config: &Config, key: &str, rendered: &str) -> Value {
    let m = &config.main;
    let level = |l: pgmoneta_core::config::LogLevel| {
        use pgmoneta_core::config::LogLevel as L;
        match l {
            L::Debug5 | L::Debug4 | L::Debug3 | L::Debug2 => (1, "debug"),
            L::Debug1 => (2, "debug"),
            L::Info => (3, "info"),
            L::Warn => (4, "warn"),
            L::Error => (5, "error"),
            _ => (6, "fatal"),
        }
    };
    match key {
        "compression" => return enum_value(i64::from(m.compression.code()), rendered),
        "encryption" => return enum_value(i64::from(m.encryption.code()), rendered),
        "log_type" => return enum_value(i64::from(m.log_type.code()), rendered),
        "log_level" => {
            let (code, word) = level(m.log_level);
            return enum_value(code, word);
        }
        "log_mode" => {
            let append = m.log_mode == pgmoneta_core::config::LogMode::Append;
            return enum_value(i64::from(append), if append { "append" } else { "create" });
        }
        "hugepage" => return enum_value(i64::from(m.hugepage.code()), rendered),
        "direct_io" => return enum_value(i64::from(m.direct_io.code()), rendered),
        "update_process_title" => return enum_value(i64::from(m.update_process_title.code()), rendered),
        "create_slot" => {
            return enum_value(if m.create_slot { 1 } else { 2 }, if m.create_slot { "yes" } else { "no" })
        }
        "storage_engine" => {
            let e = &m.storage_engine;
            let bits = i64::from(e.local)
                | (i64::from(e.ssh) << 1)
                | (i64::from(e.s3) << 2)
                | (i64::from(e.azure) << 3)
                | (i64::from(e.gcs) << 4);
            return enum_value(bits, rendered);
        }
        "metrics_cache_max_age" => return enum_value(m.metrics_cache_max_age.0 as i64, rendered),
        "blocking_timeout" => return enum_value(m.blocking_timeout.0 as i64, rendered),
        "verification" => return enum_value(m.verification.0 as i64, rendered),
        "log_rotation_age" => return enum_value(m.log_rotation_age.0 as i64, rendered),
        "metrics_cache_max_size" => return enum_value(m.metrics_cache_max_size.bytes() as i64, rendered),
        "log_rotation_size" => return enum_value(m.log_rotation_size.bytes() as i64, rendered),
        _ => {}
    }
    plain_value(rendered)
}

fn plain_value(rendered: &str) -> Value {
    if rendered.is_empty() {
        return Value::Null;
    }
    if let Ok(n) = rendered.parse::<i64>() {
        return json!(n);
    }
    match rendered {
        "on" | "true" => json!(true),
        "off" | "false" => json!(false),
        _ => json!(rendered),
    }
}

fn conf_get(shared: &Shared, config: &Config) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in config.main_entries() {
        m.insert(k.to_owned(), main_value(config, k, &v));
    }
    m.insert("manifest".into(), json!("SHA512"));
    m.extend(conf_ls(shared));
    let mut servers = Map::new();
    for s in &config.servers {
        let mut e = Map::new();
        for (k, v) in Config::server_entries(s) {
            let value = match k {
                // upstream: 0 undefined (inherit), 1 yes, 2 no
                "create_slot" => json!(match s.create_slot {
                    None => 0,
                    Some(true) => 1,
                    Some(false) => 2,
                }),
                _ => plain_value(&v),
            };
            e.insert(k.to_owned(), value);
        }
        if let Some(state) = shared.server(&s.name) {
            e.insert("online".into(), json!(state.online()));
        }
        servers.insert(s.name.clone(), Value::Object(e));
    }
    m.insert("server".into(), Value::Object(servers));
    m
}

fn conf_set(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let (Some(key), Some(value)) = (text(req, "ConfigKey"), text(req, "ConfigValue")) else {
        return Err(fail(ec::CONF_SET_NOCONFIG_KEY_OR_VALUE, "conf set: ConfigKey and ConfigValue are required"));
    };
    let current = shared.config();
    // An unknown key or server is 2707 like any other refusal, as upstream answers (2704 and
    // 2705 are declared there but never sent); the message says which it was.
    let old = current.get(&key).map_err(|e| fail(ec::CONF_SET_ERROR, format!("conf set {key}: {e}")))?;
    let mut next = (*current).clone();
    next.set(&key, &value).map_err(|e| fail(ec::CONF_SET_ERROR, format!("conf set {key}: {e}")))?;
    let problems: Vec<String> = next
        .validate()
        .into_iter()
        .filter(|d| d.severity == pgmoneta_core::config::Severity::Error)
        .map(|d| d.to_string())
        .collect();
    if !problems.is_empty() {
        return Err(fail(ec::CONF_SET_ERROR, format!("conf set {key}: {}", problems.join("; "))));
    }
    let new = next.get(&key).unwrap_or_else(|_| value.clone());
    let bare = key.rsplit('.').next().unwrap_or(&key);
    let mut m = Map::new();
    m.insert("config_key".into(), json!(key));
    let main_key = !key.contains('.') || key.starts_with("pgmoneta.");
    if main_key && crate::RESTART_KEYS.contains(&bare) {
        m.insert("status".into(), json!("success_restart_required"));
        m.insert(
            "message".into(),
            json!(format!("{key} takes effect after a restart; the current value stays in force")),
        );
        m.insert("requested_value".into(), json!(new));
        m.insert("current_value".into(), json!(old));
        m.insert("restart_required".into(), json!(true));
        return Ok(m);
    }
    *shared.config.write() = Arc::new(next);
    crate::logging::install(&shared.config().main);
    log::info!("conf set: {key} = {new} (was {old})");
    m.insert("status".into(), json!("success"));
    m.insert("message".into(), json!(format!("{key} changed")));
    m.insert("old_value".into(), json!(old));
    m.insert("new_value".into(), json!(new));
    m.insert("restart_required".into(), json!(false));
    Ok(m)
}

fn mode(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, state, config: server, .. } = server_state(shared, req, ec::MODE_NOSERVER)?;
    match text(req, "Action").unwrap_or_default().as_str() {
        "offline" => {
            state.forced_offline.store(true, Ordering::SeqCst);
            walservice::stop_stream(state);
            log::info!("server [{name}]: offline by request");
        }
        "online" => {
            pg::recheck(shared, state, &server, true);
            state.forced_offline.store(false, Ordering::SeqCst);
            log::info!("server [{name}]: online by request");
        }
        other => return Err(fail(ec::MODE_UNKNOWN_ACTION, format!("mode: unknown action {other:?}"))),
    }
    let mut m = Map::new();
    m.insert("Online".into(), json!(state.online()));
    Ok(m)
}

fn progress(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { state, .. } = server_state(shared, req, ec::PROGRESS_NOSERVER)?;
    let running = state.backup_progress.lock().clone();
    let mut m = Map::new();
    m.insert("Command".into(), json!(text(req, "Command").unwrap_or_else(|| "backup".into())));
    match running {
        Some((p, since)) => {
            let done = p.done.load(Ordering::Relaxed);
            let total = p.total.load(Ordering::Relaxed).max(done);
            let elapsed = since.elapsed().as_secs_f64();
            let pct = (done * 100).checked_div(total).unwrap_or(0);
            let remaining = if done > 0 { elapsed * (total - done) as f64 / done as f64 } else { 0.0 };
            m.insert("ProgressState".into(), json!(1));
            m.insert("Done".into(), json!(done));
            m.insert("Total".into(), json!(total));
            m.insert("Elapsed".into(), json!(elapsed));
            m.insert("Percentage".into(), json!(pct));
            let secs = remaining.round() as u64;
            m.insert("Remaining".into(), json!({"value": secs, "string_value": format!("{secs}s")}));
        }
        None => {
            m.insert("ProgressState".into(), json!(0));
            for k in ["Done", "Total", "Percentage"] {
                m.insert(k.into(), json!(0));
            }
            m.insert("Elapsed".into(), json!(0.0));
            m.insert("Remaining".into(), json!({"value": 0, "string_value": "0s"}));
        }
    }
    Ok(m)
}

fn source_file(req: &Map<String, Value>, nofile: u32) -> Result<PathBuf, Failure> {
    let p = PathBuf::from(text(req, "SourceFile").unwrap_or_default());
    if !p.is_file() {
        return Err(fail(nofile, format!("no file {}", p.display())));
    }
    Ok(p)
}

fn destination(p: PathBuf) -> Reply {
    let mut m = Map::new();
    m.insert("DestinationFile".into(), json!(p.display().to_string()));
    Ok(m)
}

fn cipher(shared: &Shared) -> Cipher {
    Cipher::from_code(shared.config().main.encryption.code() as u8).unwrap_or(Cipher::Aes256Gcm)
}

fn encrypt(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let path = source_file(req, ec::ENCRYPT_NOFILE)?;
    let key = shared.master_key.as_deref().ok_or_else(|| fail(ec::ENCRYPT_ERROR, "encrypt: no master key"))?;
    let out = pgmoneta_crypto::encrypt_in_place(key, cipher(shared), &path)
        .map_err(|e| fail(ec::ENCRYPT_ERROR, format!("encrypt {}: {e}", path.display())))?;
    destination(out)
}

fn decrypt(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let path = source_file(req, ec::DECRYPT_NOFILE)?;
    let key = shared.master_key.as_deref().ok_or_else(|| fail(ec::DECRYPT_ERROR, "decrypt: no master key"))?;
    let out = pgmoneta_crypto::decrypt_in_place(key, cipher(shared), &path)
        .map_err(|e| fail(ec::DECRYPT_ERROR, format!("decrypt {}: {e}", path.display())))?;
    destination(out)
}

/// The NOFILE code of an algorithm's family (ERROR is NOFILE + 3).
fn family(alg: Algorithm) -> u32 {
    match alg {
        Algorithm::Gzip => ec::GZIP_NOFILE,
        Algorithm::Lz4 => ec::LZ4_NOFILE,
        Algorithm::Bzip2 => ec::BZIP2_NOFILE,
        _ => ec::ZSTD_NOFILE,
    }
}

fn compress(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let config = shared.config();
    let alg = Compression::from_code(config.main.compression.code()).map_or(Algorithm::Zstd, |c| c.algorithm);
    let alg = if alg == Algorithm::None { Algorithm::Zstd } else { alg };
    let path = source_file(req, family(alg))?;
    let mut options = EncoderOptions::default_for(alg);
    options.level = alg.clamp_level(config.main.compression_level);
    let out = pgmoneta_compress::compress_file(&path, alg, options)
        .map_err(|e| fail(family(alg) + 3, format!("compress {}: {e}", path.display())))?;
    destination(out)
}

fn decompress(req: &Map<String, Value>) -> Reply {
    let name = text(req, "SourceFile").unwrap_or_default();
    let Some(alg) = Algorithm::from_suffix(&name) else {
        return Err(fail(ec::DECOMPRESS_UNKNOWN, format!("decompress: {name} has no known compression suffix")));
    };
    let path = source_file(req, family(alg))?;
    let out = pgmoneta_compress::decompress_file(&path)
        .map_err(|e| fail(family(alg) + 3, format!("decompress {}: {e}", path.display())))?;
    destination(out)
}
