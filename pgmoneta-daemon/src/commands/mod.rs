//! The management commands: each request document is answered with upstream's response fields
//! and error codes (see `docs/management.md`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pgmoneta_core::config::ServerConfig;
use pgmoneta_core::Lsn;
use pgmoneta_storage::info::{BackupInfo, BackupType};
use pgmoneta_wire::management::request::{self, ModeRequest, ProgressRequest, ServerRequest};
use pgmoneta_wire::management::{error_code as ec, Command, Document, Outcome};
use serde_json::{json, Map, Value};

use crate::state::{ServerState, Shared};
use crate::{pg, walservice};

mod backups;
mod codes;
mod conf;
mod files;
mod status;

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

/// Runs the request in `doc` and returns the reply document.
pub fn dispatch(shared: &Arc<Shared>, doc: Document, started: Instant) -> Document {
    let req = &doc.request;
    let command = doc.header.command;
    log::debug!("management: {} {}", command.name(), serde_json::Value::Object(req.clone()));
    let result = match command {
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
        _ => Err(fail(ec::UNKNOWN_COMMAND, format!("management: unknown command id {}", doc.header.command_id))),
    };
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
    let mut m = Map::new();
    m.insert("Online".into(), json!(state.online()));
    Ok(m)
}

fn progress(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let Srv { state, .. } = server_state(shared, req, ec::PROGRESS_NOSERVER)?;
    let running = state.backup_progress.lock().clone();
    let mut m = Map::new();
    m.insert(
        "Command".into(),
        json!(request::parse::<ProgressRequest>(req).command.unwrap_or_else(|| "backup".into())),
    );
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
