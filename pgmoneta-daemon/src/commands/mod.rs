//! The management commands: each request document is answered with upstream's response fields
//! and error codes (see `docs/management.md`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pgmoneta_core::config::ServerConfig;
use pgmoneta_core::Lsn;
use pgmoneta_storage::info::{BackupInfo, BackupType};
use pgmoneta_wire::management::request::{self, ModeRequest, ProgressRequest, ServerRequest};
use pgmoneta_wire::management::response::{
    self, BackupResponse, InfoResponse, ListedBackup, ModeResponse, ProgressResponse, RestoreResponse, StatusBackup,
    TablespaceName, TimeValue,
};
use pgmoneta_wire::management::{error_code as ec, Command, Document, Outcome};
use serde_json::{json, Map, Value};

use crate::state::{ServerState, Shared};
use crate::{pg, walservice};

mod backups;
mod check;
mod cluster;
mod codes;
mod conf;
mod files;
mod status;

pub use check::facts as check_facts;
pub use status::{dir_size, disk_space, server_usage};

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

impl Failure {
    /// What went wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What failed in a verification, in one line: the first failed file and how many failed.
pub fn describe_failed_files(v: &pgmoneta_storage::Verification) -> String {
    let Some(first) = v.failed.first() else { return String::new() };
    let why = first.error.as_deref().unwrap_or("checksum mismatch");
    match v.failed.len() {
        1 => format!("{}: {why}", first.path),
        n => format!("{}: {why} (and {} more of {} files)", first.path, n - 1, v.all.len()),
    }
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

/// Runs the request in `doc` and returns the reply document. In a cluster, a command that
/// writes a server's repository (see [`forwardable`]) runs on the node active for that server:
/// another node forwards it there and answers with that node's reply.
pub fn dispatch(shared: &Arc<Shared>, doc: Document, started: Instant) -> Document {
    run(shared, doc, started, true)
}

/// Runs a request another node of the cluster forwarded: here or nowhere.
pub fn dispatch_forwarded(shared: &Arc<Shared>, doc: Document, started: Instant) -> Document {
    run(shared, doc, started, false)
}

/// Whether `command` writes a server's repository, so that in a cluster only the node active
/// for the server runs it (the others copy what it wrote).
pub fn forwardable(command: Command) -> bool {
    matches!(command, Command::Backup | Command::Delete | Command::Retain | Command::Expunge | Command::Annotate)
}

fn run(shared: &Arc<Shared>, doc: Document, started: Instant, may_forward: bool) -> Document {
    let req = &doc.request;
    let command = doc.header.command;
    log::debug!("management: {} {}", command.name(), serde_json::Value::Object(req.clone()));
    let routed = if forwardable(command) { cluster::route(shared, &doc, may_forward) } else { None };
    let result = match routed {
        Some(cluster::Routed::Elsewhere(reply)) => return reply,
        Some(cluster::Routed::Refused(failure)) => Err(failure),
        None => run_here(shared, &doc, command),
    };
    finish(shared, &doc, result, started)
}

fn run_here(shared: &Arc<Shared>, doc: &Document, command: Command) -> Reply {
    let req = &doc.request;
    match command {
        Command::Backup => backups::backup(shared, req),
        Command::ListBackup => backups::list_backup(shared, req),
        Command::Restore => backups::restore(shared, req),
        Command::Archive => backups::archive(shared, req),
        Command::Delete => backups::delete(shared, req),
        Command::Shutdown | Command::Ping => Ok(Map::new()),
        Command::Status => status::status(shared, false),
        Command::StatusDetails => status::status(shared, true),
        Command::Reset => {
            shared.log_counters.reset();
            Ok(Map::new())
        }
        Command::Reload => conf::reload_cmd(shared),
        Command::Retain => backups::keep(shared, req, true),
        Command::Expunge => backups::keep(shared, req, false),
        Command::Encrypt => files::encrypt(shared, req),
        Command::Decrypt => files::decrypt(shared, req),
        Command::Compress => files::compress(shared, req),
        Command::Decompress => files::decompress(req),
        Command::Info => backups::info(shared, req),
        Command::Verify => backups::verify(shared, req),
        Command::Annotate => backups::annotate(shared, req),
        Command::ConfLs => Ok(conf::conf_ls(shared)),
        Command::ConfGet => Ok(conf::conf_get(shared, &shared.config())),
        Command::ConfSet => conf::conf_set(shared, req),
        Command::Mode => mode(shared, req),
        Command::Progress => progress(shared, req),
        Command::S3Ls => backups::s3_ls(shared, req),
        Command::S3Restore => backups::s3_restore(shared, req),
        Command::ClusterStatus => cluster::cluster_status(shared),
        Command::Check => check::check(shared, req),
        _ => Err(fail(ec::UNKNOWN_COMMAND, format!("management: unknown command id {}", doc.header.command_id))),
    }
}

fn finish(shared: &Arc<Shared>, doc: &Document, result: Reply, started: Instant) -> Document {
    let req = &doc.request;
    let server = request::parse::<ServerRequest>(req).server;
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
    let name = request::parse::<ServerRequest>(req).server.unwrap_or_default();
    match (shared.server(&name), shared.server_config(&name)) {
        (Some(state), Some(config)) => {
            let workers = shared.workers(&config);
            Ok(Srv { name, state, config, workers })
        }
        _ => Err(fail(code, format!("no server named {name:?}"))),
    }
}

fn lsn_halves(lsn: Lsn) -> (u64, u64) {
    (lsn.0 >> 32, lsn.0 & 0xffff_ffff)
}

/// A typed response as the reply's fields.
fn reply<T: serde::Serialize>(response: &T) -> Reply {
    Ok(response::to_map(response))
}

fn parent(b: &BackupInfo) -> String {
    b.parent.clone()
}

fn incremental(b: &BackupInfo) -> bool {
    b.backup_type == BackupType::Incremental
}

fn backup_response(b: &BackupInfo) -> BackupResponse {
    BackupResponse {
        backup: b.label.clone(),
        backup_size: b.backup_size,
        restore_size: b.restore_size,
        biggest_file_size: b.biggest_file,
        compression: b.compression.into(),
        encryption: b.encryption.into(),
        valid: i8::from(b.valid),
        incremental: incremental(b),
        incremental_parent: parent(b),
    }
}

fn restore_response(b: &BackupInfo) -> RestoreResponse {
    RestoreResponse {
        backup: b.label.clone(),
        backup_size: b.backup_size,
        restore_size: b.restore_size,
        biggest_file_size: b.biggest_file,
        comments: b.comments.clone(),
        compression: b.compression.into(),
        encryption: b.encryption.into(),
        incremental: incremental(b),
        incremental_parent: parent(b),
    }
}

fn listed_backup(b: &BackupInfo, server: &str, wal: u64) -> ListedBackup {
    ListedBackup {
        server: server.to_owned(),
        backup: b.label.clone(),
        keep: b.keep,
        valid: i8::from(b.valid),
        backup_size: b.backup_size,
        restore_size: b.restore_size,
        biggest_file_size: b.biggest_file,
        compression: b.compression.into(),
        encryption: b.encryption.into(),
        comments: b.comments.clone(),
        incremental: incremental(b),
        incremental_parent: parent(b),
        wal,
    }
}

fn status_backup(b: &BackupInfo, wal: u64, delta: u64) -> StatusBackup {
    StatusBackup {
        backup: b.label.clone(),
        keep: b.keep,
        valid: i8::from(b.valid),
        backup_size: b.backup_size,
        restore_size: b.restore_size,
        biggest_file_size: b.biggest_file,
        compression: b.compression.into(),
        encryption: b.encryption.into(),
        comments: b.comments.clone(),
        wal,
        delta,
    }
}

fn info_response(b: &BackupInfo) -> InfoResponse {
    let (start_hi_lsn, start_lo_lsn) = lsn_halves(b.start_lsn);
    let (end_hi_lsn, end_lo_lsn) = lsn_halves(b.end_lsn);
    let (checkpoint_hi_lsn, checkpoint_lo_lsn) = lsn_halves(b.checkpoint_lsn);
    InfoResponse {
        backup: b.label.clone(),
        wal: b.wal.clone(),
        backup_size: b.backup_size,
        restore_size: b.restore_size,
        biggest_file_size: b.biggest_file,
        elapsed: b.elapsed.total,
        major_version: b.major_version,
        minor_version: b.minor_version,
        keep: b.keep,
        valid: i8::from(b.valid),
        number_of_tablespaces: b.tablespaces.len() as u64,
        compression: b.compression.into(),
        encryption: b.encryption.into(),
        tablespaces: b.tablespaces.iter().map(|t| TablespaceName { tablespace_name: t.dir.clone() }).collect(),
        start_hi_lsn,
        start_lo_lsn,
        end_hi_lsn,
        end_lo_lsn,
        checkpoint_hi_lsn,
        checkpoint_lo_lsn,
        start_timeline: b.start_timeline,
        end_timeline: b.end_timeline,
        comments: b.comments.clone(),
        incremental: incremental(b),
        incremental_parent: parent(b),
    }
}

fn mode(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { name, state, config: server, .. } = server_state(shared, req, ec::MODE_NOSERVER)?;
    match request::parse::<ModeRequest>(req).action.unwrap_or_default().as_str() {
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
    reply(&ModeResponse { online: state.online() })
}

fn progress(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { state, .. } = server_state(shared, req, ec::PROGRESS_NOSERVER)?;
    let running = state.backup_progress.lock().clone();
    let mut r = ProgressResponse {
        command: request::parse::<ProgressRequest>(req).command.unwrap_or_else(|| "backup".into()),
        remaining: TimeValue { value: 0, string_value: "0s".into() },
        ..ProgressResponse::default()
    };
    if let Some((p, since)) = running {
        let done = p.done.load(Ordering::Relaxed);
        let total = p.total.load(Ordering::Relaxed).max(done);
        let elapsed = since.elapsed().as_secs_f64();
        let remaining = if done > 0 { elapsed * (total - done) as f64 / done as f64 } else { 0.0 };
        let secs = remaining.round() as u64;
        r.progress_state = 1;
        r.done = done;
        r.total = total;
        r.elapsed = elapsed;
        r.percentage = (done * 100).checked_div(total).unwrap_or(0);
        r.remaining = TimeValue { value: secs, string_value: format!("{secs}s") };
    }
    reply(&r)
}
