//! `pgmoneta-cli`: its command line (upstream's commands and options), and how each command
//! becomes a management request, or runs locally.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use pgmoneta_core::config::{CliConfig, Encryption, OutputFormat as ConfOutput, WireCompression};
use pgmoneta_core::CivilDateTime;
use pgmoneta_crypto::{MasterKey, MasterKeyFile};
use pgmoneta_wire::management::check::{self, CheckResponse, Space, State, Thresholds};
use pgmoneta_wire::management::request::{
    self, AnnotateRequest, BackupRequest, ConfSetRequest, DeleteRequest, FileRequest, InfoRequest, KeepRequest,
    ListBackupRequest, ModeRequest, ProgressRequest, RestoreRequest, S3ListRequest, S3RestoreRequest, VerifyRequest,
};
use pgmoneta_wire::management::{Command as Cmd, Document, OutputFormat};
use serde_json::{json, Map, Value};

use crate::admin::{Input, StdinInput};
use crate::client::{call, Endpoint, WireOptions};
use crate::output;

/// The default `pgmoneta_cli.conf`.
pub const DEFAULT_CONFIG: &str = "/etc/pgmoneta/pgmoneta_cli.conf";

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// Translated JSON.
    Json,
    /// The daemon's JSON as sent.
    Raw,
}

/// Options that go before or after the command.
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// pgmoneta_cli.conf (default /etc/pgmoneta/pgmoneta_cli.conf).
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    /// The daemon's host (remote management), or a directory holding its socket.
    #[arg(short = 'h', long = "host", global = true)]
    pub host: Option<String>,
    /// The daemon's management port.
    #[arg(short = 'p', long = "port", global = true)]
    pub port: Option<u16>,
    /// Admin user for remote management.
    #[arg(short = 'U', long = "user", global = true)]
    pub user: Option<String>,
    /// Admin password for remote management.
    #[arg(short = 'P', long = "password", global = true)]
    pub password: Option<String>,
    /// Append a line per command (time, command, outcome) to this file.
    #[arg(short = 'L', long = "logfile", global = true)]
    pub logfile: Option<PathBuf>,
    /// Print `Success (0)` or `Error (N)` at the end.
    #[arg(short = 'v', long = "verbose", global = true)]
    pub verbose: bool,
    /// Output format.
    #[arg(short = 'F', long = "format", global = true, value_enum)]
    pub format: Option<Format>,
    /// Compression on the wire: none, gz, zstd, lz4, bz2.
    #[arg(short = 'C', long = "compress", global = true)]
    pub compress: Option<String>,
    /// Encryption on the wire: none, aes, aes256, aes192, aes128.
    #[arg(short = 'E', long = "encrypt", global = true)]
    pub encrypt: Option<String>,
    /// Order of list-backup: asc or desc.
    #[arg(short = 's', long = "sort", global = true)]
    pub sort: Option<String>,
    /// retain/expunge: also the incremental backup's ancestors.
    #[arg(long = "cascade", global = true)]
    pub cascade: bool,
    /// delete: also a retained backup.
    #[arg(long = "force", global = true)]
    pub force: bool,
}

/// pgmoneta-cli: command-line interface of the pgmoneta backup daemon.
#[derive(Debug, Parser)]
#[command(
    name = "pgmoneta-cli",
    version,
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Options.
    #[command(flatten)]
    pub global: Global,
    /// Print the version and exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// Print help.
    #[arg(short = '?', long = "help", action = clap::ArgAction::Help, global = true)]
    pub help: Option<bool>,
    /// The command.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a backup of a server: full, or incremental on top of `<parent>` (`backup <server> [<parent>]`).
    Backup {
        /// The server.
        server: String,
        /// The parent backup of an incremental (label, oldest, newest).
        parent: Option<String>,
    },
    /// List the backups of a server.
    ListBackup {
        /// The server.
        server: String,
    },
    /// Restore a backup: `restore <server> <label|oldest|newest> [<position>] <directory>`.
    Restore {
        /// server, backup, [position,] directory.
        #[arg(num_args = 3..=4, required = true)]
        args: Vec<String>,
    },
    /// Restore a backup into a tar archive: `archive <server> <backup> [<position>] <directory>`.
    Archive {
        /// server, backup, [position,] directory.
        #[arg(num_args = 3..=4, required = true)]
        args: Vec<String>,
    },
    /// Delete a backup (`--force` for a retained one). `restore`, `archive` and `s3 restore`
    /// refuse a target directory that already holds files unless given `--force`.
    Delete {
        /// The server.
        server: String,
        /// label, oldest or newest.
        backup: String,
    },
    /// Stop the daemon.
    Shutdown,
    /// Show the daemon's status (`status details` lists every backup).
    Status {
        /// `details`.
        details: Option<String>,
    },
    /// Check that the daemon answers.
    Ping,
    /// `clear prometheus`: reset the Prometheus counters.
    Clear {
        /// `prometheus`.
        what: String,
    },
    /// `conf reload|ls|get [<key>]|set <key> <value>`.
    Conf {
        /// reload, ls, get or set.
        action: String,
        /// The key (get, set).
        key: Option<String>,
        /// The value (set).
        value: Option<String>,
    },
    /// Keep a backup from retention.
    Retain {
        /// The server.
        server: String,
        /// The backup.
        backup: String,
    },
    /// Let retention delete a backup again.
    Expunge {
        /// The server.
        server: String,
        /// The backup.
        backup: String,
    },
    /// Decrypt a file in place (`<file>.aes` -> `<file>`).
    Decrypt {
        /// The file.
        file: PathBuf,
    },
    /// Encrypt a file in place (`<file>` -> `<file>.aes`).
    Encrypt {
        /// The file.
        file: PathBuf,
    },
    /// Decompress a file in place.
    Decompress {
        /// The file.
        file: PathBuf,
    },
    /// Compress a file in place.
    Compress {
        /// The file.
        file: PathBuf,
    },
    /// Show a backup's information.
    Info {
        /// The server.
        server: String,
        /// The backup.
        backup: String,
    },
    /// Verify a backup: `verify <server> <backup> <directory> [failed|all]`.
    Verify {
        /// The server.
        server: String,
        /// The backup.
        backup: String,
        /// A scratch directory (kept for compatibility; the daemon verifies without writing).
        directory: String,
        /// failed (default) or all.
        files: Option<String>,
    },
    /// Edit a backup's comments: `annotate <server> <backup> add|update|remove <key> [<comment>]`.
    Annotate {
        /// The server.
        server: String,
        /// The backup.
        backup: String,
        /// add, update or remove.
        action: String,
        /// The key.
        key: String,
        /// The comment (add, update).
        comment: Option<String>,
    },
    /// Force a server online or offline.
    Mode {
        /// The server.
        server: String,
        /// online or offline.
        action: String,
    },
    /// Show the progress of a server's running operation.
    Progress {
        /// The server.
        server: String,
        /// The operation (backup).
        command: Option<String>,
    },
    /// The remote repository: `s3 ls <server> [<prefix>]` lists its objects;
    /// `s3 restore <server> <backup> [<position>] <directory>` restores from it alone.
    S3 {
        /// ls or restore, then their arguments.
        #[arg(num_args = 2..=5, required = true)]
        args: Vec<String>,
    },
    /// The cluster: `cluster status` shows this node, its peers, and each one's role and lag
    /// for every server.
    Cluster {
        /// status
        action: String,
    },
    /// Fetch a WAL segment or history file from the repository (PostgreSQL's restore_command:
    /// `pgmoneta-cli archive-get -c pgmoneta.conf <server> %f %p`).
    ArchiveGet {
        /// The master key file, for encrypted archives (default ~/.pgmoneta/master.key).
        #[arg(long = "master-key")]
        master_key: Option<PathBuf>,
        /// Segments kept fetched ahead in the spool by a prefetch process that serves the
        /// whole recovery (and derives the master key once); 0 fetches in this process alone.
        #[arg(long = "prefetch", default_value_t = crate::archive_get::DEFAULT_PREFETCH)]
        prefetch: usize,
        /// Where the spool directory pgmoneta-spool-<server> is made (default: beside %p, in
        /// pg_wal); only that directory is ever emptied or removed.
        #[arg(long = "spool")]
        spool: Option<PathBuf>,
        /// Seconds without a request after which the prefetch process removes the spool and
        /// exits (recovery has ended).
        #[arg(long = "prefetch-idle", default_value_t = 30)]
        prefetch_idle: u64,
        /// The server.
        server: String,
        /// The file PostgreSQL asks for (%f).
        file: String,
        /// Where PostgreSQL wants it (%p).
        destination: PathBuf,
    },
    /// The prefetch process archive-get starts (not for direct use).
    #[command(hide = true)]
    ArchivePrefetch {
        /// The master key file.
        #[arg(long = "master-key")]
        master_key: Option<PathBuf>,
        /// The spool directory.
        #[arg(long = "spool")]
        spool: PathBuf,
        /// Segments kept fetched ahead.
        #[arg(long = "depth", default_value_t = crate::archive_get::DEFAULT_PREFETCH)]
        depth: usize,
        /// Threads fetching.
        #[arg(long = "threads", default_value_t = 2)]
        threads: usize,
        /// Seconds without a request after which the process removes the spool and exits.
        #[arg(long = "idle", default_value_t = 30)]
        idle: u64,
        /// The server.
        server: String,
    },
    /// A monitoring check (Nagios, Icinga, NRPE): prints one status line with performance data
    /// and exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (daemon unreachable, bad answer).
    Check {
        /// Age of the newest valid backup that is a WARNING (s, m, h, d, w).
        #[arg(long = "backup-age-warning", default_value = "36h", value_parser = duration_arg)]
        backup_age_warning: u64,
        /// Age of the newest valid backup that is CRITICAL.
        #[arg(long = "backup-age-critical", default_value = "72h", value_parser = duration_arg)]
        backup_age_critical: u64,
        /// WAL lag (bytes the archive is behind the server) that is a WARNING (K, M, G, T).
        #[arg(long = "wal-lag-warning", default_value = "64MB", value_parser = bytes_arg)]
        wal_lag_warning: u64,
        /// WAL lag that is CRITICAL.
        #[arg(long = "wal-lag-critical", default_value = "512MB", value_parser = bytes_arg)]
        wal_lag_critical: u64,
        /// Free space in the repository below which it is a WARNING (a percentage or bytes).
        #[arg(long = "free-warning", default_value = "20%", value_parser = space_arg)]
        free_warning: Space,
        /// Free space below which it is CRITICAL.
        #[arg(long = "free-critical", default_value = "10%", value_parser = space_arg)]
        free_critical: Space,
        /// Do not count backups whose last verification failed (CRITICAL otherwise).
        #[arg(long = "no-verification")]
        no_verification: bool,
        /// The server (all when absent).
        server: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Man,
}

fn duration_arg(s: &str) -> std::result::Result<u64, String> {
    pgmoneta_wire::management::check::parse_duration(s)
}

fn bytes_arg(s: &str) -> std::result::Result<u64, String> {
    pgmoneta_wire::management::check::parse_bytes(s)
}

fn space_arg(s: &str) -> std::result::Result<Space, String> {
    Space::parse(s)
}

fn now_stamp() -> String {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let t = CivilDateTime::from_unix(unix, 0);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

fn wire_compression(s: &str) -> Result<u8> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "none" => 0,
        "gz" | "gzip" => 1,
        "zstd" => 2,
        "lz4" => 3,
        "bz2" | "bzip2" => 4,
        other => bail!("unknown wire compression {other:?}: expected none, gz, zstd, lz4 or bz2"),
    })
}

fn wire_encryption(s: &str) -> Result<u8> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "none" => 0,
        "aes" | "aes256" | "aes-256" | "aes-256-gcm" | "aes256-gcm" | "aes-gcm" => 1,
        "aes192" | "aes-192" | "aes-192-gcm" | "aes192-gcm" => 2,
        "aes128" | "aes-128" | "aes-128-gcm" | "aes128-gcm" => 3,
        other => bail!("unknown wire encryption {other:?}: expected none, aes, aes256, aes192 or aes128"),
    })
}

/// What a run resolved: where the daemon is, the wire settings, the output format.
struct Setup {
    endpoint: Option<Endpoint>,
    wire: WireOptions,
    key: Option<Arc<MasterKey>>,
    format: Format,
}

fn load_cli_config(g: &Global) -> Result<CliConfig> {
    let path = match &g.config {
        Some(p) => p.clone(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(CliConfig::default()),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (config, diags) = CliConfig::parse(&text, &path.display().to_string());
    for d in &diags {
        eprintln!("pgmoneta-cli: {d}");
    }
    Ok(config)
}

fn setup(g: &Global, needs_daemon: bool) -> Result<Setup> {
    let conf = load_cli_config(g)?;
    let host = g.host.clone().or(conf.host.clone());
    let port = g.port.or((conf.port > 0).then_some(conf.port));
    let endpoint = match (host, port) {
        (Some(h), _) if h.starts_with('/') => Some(Endpoint::Unix(PathBuf::from(h).join(".s.pgmoneta"))),
        (Some(h), Some(p)) => {
            let mut input = StdinInput::new();
            let user = match &g.user {
                Some(u) => u.clone(),
                None => input.line("User name: ").context("reading the user name")?,
            };
            let password = match g.password.clone().or_else(|| std::env::var("PGMONETA_PASSWORD").ok()) {
                Some(p) => p,
                None => input.secret("Password : ").context("reading the password")?,
            };
            Some(Endpoint::Tcp { host: h, port: p, user, password })
        }
        _ => conf.unix_socket_dir.as_ref().map(|d| Endpoint::Unix(PathBuf::from(d).join(".s.pgmoneta"))),
    };
    if needs_daemon && endpoint.is_none() {
        bail!("no daemon to talk to: give -c pgmoneta_cli.conf (with unix_socket_dir, or host and port), -h <socket dir>, or -h <host> -p <port>");
    }
    let key_file = MasterKeyFile::default_location().ok().filter(|f| f.path().exists());
    let explicit = g.compress.is_some()
        || g.encrypt.is_some()
        || conf.compression != WireCompression::None
        || conf.encryption != Encryption::None;
    let mut wire = WireOptions {
        compression: match &g.compress {
            Some(c) => wire_compression(c)?,
            None => conf.compression.code() as u8,
        },
        encryption: match &g.encrypt {
            Some(e) => wire_encryption(e)?,
            None => conf.encryption.code() as u8,
        },
    };
    if !explicit && key_file.is_some() {
        // Upstream's default: compressed and encrypted frames, when this user has a master key.
        wire = WireOptions { compression: 2, encryption: 1 };
    }
    let key = match (&key_file, wire.encryption) {
        (_, 0) => None,
        (Some(f), _) => Some(Arc::new(f.load().with_context(|| format!("loading {}", f.path().display()))?)),
        (None, _) => bail!("wire encryption needs this user's master key (~/.pgmoneta/master.key)"),
    };
    let format = g.format.unwrap_or(match conf.output {
        ConfOutput::Json => Format::Json,
        ConfOutput::Raw => Format::Raw,
        _ => Format::Text,
    });
    Ok(Setup { endpoint, wire, key, format })
}

fn request(command: Cmd, fields: Value, format: Format) -> Document {
    let output = match format {
        Format::Text => OutputFormat::Text,
        Format::Json => OutputFormat::Json,
        Format::Raw => OutputFormat::Raw,
    };
    let map = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Document::request(command, map, output, &now_stamp())
}

/// A typed request as the document's `Request` object.
fn typed<T: serde::Serialize>(request: T) -> Value {
    Value::Object(request::to_map(&request))
}

/// The request for a command that goes to the daemon; `None` for local commands.
fn build(command: &Command, g: &Global) -> Result<Option<(Cmd, Value)>> {
    // <server> <backup> [<position>] <directory>
    let split = |args: &[String]| -> (Option<String>, Option<String>, Option<String>, Option<String>) {
        let position = (args.len() == 4).then(|| args[2].clone());
        (Some(args[0].clone()), Some(args[1].clone()), position, Some(args[args.len() - 1].clone()))
    };
    let some = |s: &String| Some(s.clone());
    Ok(Some(match command {
        Command::Backup { server, parent } => {
            (Cmd::Backup, typed(BackupRequest { server: some(server), backup: parent.clone() }))
        }
        Command::ListBackup { server } => (
            Cmd::ListBackup,
            typed(ListBackupRequest {
                server: some(server),
                sort: Some(g.sort.clone().unwrap_or_else(|| "asc".into())),
            }),
        ),
        Command::Restore { args } | Command::Archive { args } => {
            let (server, backup, position, directory) = split(args);
            let cmd = if matches!(command, Command::Restore { .. }) { Cmd::Restore } else { Cmd::Archive };
            (cmd, typed(RestoreRequest { server, backup, position, directory, force: g.force }))
        }
        Command::Delete { server, backup } => {
            (Cmd::Delete, typed(DeleteRequest { server: some(server), backup: some(backup), force: g.force }))
        }
        Command::Shutdown => (Cmd::Shutdown, json!({})),
        Command::Status { details } => match details.as_deref() {
            None => (Cmd::Status, json!({})),
            Some("details") => (Cmd::StatusDetails, json!({})),
            Some(other) => bail!("status {other}: expected `status` or `status details`"),
        },
        Command::Ping => (Cmd::Ping, json!({})),
        Command::Clear { what } if what == "prometheus" => (Cmd::Reset, json!({})),
        Command::Clear { what } => bail!("clear {what}: expected `clear prometheus`"),
        Command::Conf { action, key, value } => match (action.as_str(), key, value) {
            ("reload", None, None) => (Cmd::Reload, json!({})),
            ("ls", None, None) => (Cmd::ConfLs, json!({})),
            ("get", _, None) => (Cmd::ConfGet, json!({})),
            ("set", Some(k), Some(v)) => {
                (Cmd::ConfSet, typed(ConfSetRequest { config_key: some(k), config_value: some(v) }))
            }
            _ => bail!("conf: expected `conf reload`, `conf ls`, `conf get [<key>]` or `conf set <key> <value>`"),
        },
        Command::Retain { server, backup } | Command::Expunge { server, backup } => {
            let cmd = if matches!(command, Command::Retain { .. }) { Cmd::Retain } else { Cmd::Expunge };
            (cmd, typed(KeepRequest { server: some(server), backup: some(backup), cascade: g.cascade }))
        }
        Command::Decrypt { file }
        | Command::Encrypt { file }
        | Command::Decompress { file }
        | Command::Compress { file } => {
            let cmd = match command {
                Command::Decrypt { .. } => Cmd::Decrypt,
                Command::Encrypt { .. } => Cmd::Encrypt,
                Command::Decompress { .. } => Cmd::Decompress,
                _ => Cmd::Compress,
            };
            (cmd, typed(FileRequest { source_file: Some(absolute(file)) }))
        }
        Command::Info { server, backup } => {
            (Cmd::Info, typed(InfoRequest { server: some(server), backup: some(backup) }))
        }
        Command::Verify { server, backup, directory, files } => {
            let files = files.clone().unwrap_or_else(|| "failed".into());
            if files != "failed" && files != "all" {
                bail!("verify: files must be `failed` or `all`, not {files:?}");
            }
            let r = VerifyRequest {
                server: some(server),
                backup: some(backup),
                directory: some(directory),
                files: Some(files),
            };
            (Cmd::Verify, typed(r))
        }
        Command::Annotate { server, backup, action, key, comment } => {
            let r = AnnotateRequest {
                server: some(server),
                backup: some(backup),
                action: some(action),
                key: some(key),
                comment: Some(comment.clone().unwrap_or_default()),
            };
            (Cmd::Annotate, typed(r))
        }
        Command::Mode { server, action } => {
            (Cmd::Mode, typed(ModeRequest { server: some(server), action: some(action) }))
        }
        Command::Progress { server, command } => {
            let command = Some(command.clone().unwrap_or_else(|| "backup".into()));
            (Cmd::Progress, typed(ProgressRequest { server: some(server), command }))
        }
        Command::S3 { args } => match args.split_first() {
            Some((action, rest)) if action == "ls" && (1..=2).contains(&rest.len()) => {
                (Cmd::S3Ls, typed(S3ListRequest { server: some(&rest[0]), s3_prefix: rest.get(1).cloned() }))
            }
            Some((action, rest)) if action == "restore" && (3..=4).contains(&rest.len()) => {
                let (server, s3_prefix, position, directory) = split(rest);
                (Cmd::S3Restore, typed(S3RestoreRequest { server, s3_prefix, position, directory, force: g.force }))
            }
            _ => bail!(
                "s3: expected `s3 ls <server> [<prefix>]` or `s3 restore <server> <backup> [<position>] <directory>`"
            ),
        },
        Command::Cluster { action } if action == "status" => (Cmd::ClusterStatus, json!({})),
        Command::Cluster { action } => bail!("cluster: expected `cluster status`, not `cluster {action}`"),
        Command::ArchiveGet { .. }
        | Command::ArchivePrefetch { .. }
        | Command::Check { .. }
        | Command::Completions { .. }
        | Command::Man => return Ok(None),
    }))
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned()).display().to_string()
}

/// Runs the command line; returns the exit status (0 only on success).
pub fn run(cli: Cli) -> i32 {
    if cli.version {
        println!("pgmoneta-cli {}", env!("CARGO_PKG_VERSION"));
        return 1;
    }
    let Some(command) = cli.command else {
        let _ = Cli::command().print_help();
        return 1;
    };
    match execute(&command, &cli.global) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgmoneta-cli: {e:#}");
            if cli.global.verbose {
                println!("Error (1)");
            }
            1
        }
    }
}

fn execute(command: &Command, g: &Global) -> Result<i32> {
    match command {
        Command::ArchiveGet { master_key, prefetch, spool, prefetch_idle, server, file, destination } => {
            let config = g.config.clone().unwrap_or_else(|| PathBuf::from("/etc/pgmoneta/pgmoneta.conf"));
            return Ok(crate::archive_get::run(&crate::archive_get::ArchiveGet {
                config,
                master_key: master_key.clone(),
                server: server.clone(),
                file: file.clone(),
                destination: destination.clone(),
                prefetch: *prefetch,
                spool: spool.clone(),
                idle: Duration::from_secs(*prefetch_idle),
            }));
        }
        Command::ArchivePrefetch { master_key, spool, depth, threads, idle, server } => {
            let config = g.config.clone().unwrap_or_else(|| PathBuf::from("/etc/pgmoneta/pgmoneta.conf"));
            return Ok(crate::prefetch::serve(&crate::prefetch::PrefetchOptions {
                config,
                master_key: master_key.clone(),
                server: server.clone(),
                spool: spool.clone(),
                depth: *depth,
                threads: *threads,
                idle: Duration::from_secs(*idle),
            }));
        }
        Command::Check {
            backup_age_warning,
            backup_age_critical,
            wal_lag_warning,
            wal_lag_critical,
            free_warning,
            free_critical,
            no_verification,
            server,
        } => {
            let limits = Thresholds {
                backup_age: (*backup_age_warning, *backup_age_critical),
                wal_lag: (*wal_lag_warning, *wal_lag_critical),
                free: (*free_warning, *free_critical),
                verification: !no_verification,
            };
            return Ok(run_check(g, server.as_deref(), &limits));
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "pgmoneta-cli", &mut script);
            return print_bytes(&script);
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            return print_bytes(&page);
        }
        _ => {}
    }
    let local = matches!(
        command,
        Command::Encrypt { .. } | Command::Decrypt { .. } | Command::Compress { .. } | Command::Decompress { .. }
    );
    let s = setup(g, !local)?;
    let Some((cmd, fields)) = build(command, g)? else { return Ok(0) };
    let Some(endpoint) = s.endpoint.clone() else { return local_file_command(command, g.verbose) };
    let doc = request(cmd, fields.clone(), s.format);
    let progress = start_progress(cmd, &fields, &endpoint, s.wire, s.key.clone());
    let result = call(&endpoint, &doc, s.wire, s.key.as_deref());
    if let Some(p) = progress {
        p.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[K");
        }
    }
    let (reply, raw) = result?;
    let value: Value = serde_json::from_str(&raw).context("the reply is not JSON")?;
    let ok = reply.outcome.as_ref().is_some_and(|o| o.status);
    let code = reply.outcome.as_ref().and_then(|o| o.error).unwrap_or(0);
    if let Some(path) = &g.logfile {
        log_line(path, cmd, &if ok { "Success (0)".to_owned() } else { format!("Error ({code})") });
    }
    let mut out = std::io::stdout().lock();
    // `conf get <key>`: only that key, picked out here as upstream's client does.
    if let (Command::Conf { action, key: Some(k), .. }, true) = (command, ok) {
        if action == "get" {
            let v = conf_value(&value, k)?;
            let bare = k.rsplit('.').next().unwrap_or(k);
            match s.format {
                Format::Raw => writeln!(out, "{v}")?,
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&json!({"Response": {bare: v}}))?)?,
                Format::Text => writeln!(out, "{}", conf_text(&v))?,
            }
            return Ok(0);
        }
    }
    match s.format {
        Format::Raw => writeln!(out, "{raw}")?,
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&output::translate(&value))?)?,
        Format::Text => {
            let text = output::text(cmd, &value);
            write!(out, "{text}")?;
        }
    }
    if g.verbose {
        if ok {
            writeln!(out, "Success (0)")?;
        } else {
            writeln!(out, "Error ({code})")?;
        }
    }
    if !ok {
        eprintln!("pgmoneta-cli: {}", failure_line(cmd, reply.outcome.as_ref()));
    }
    Ok(if ok { 0 } else { 1 })
}

/// `check`: asks the daemon for the facts and reads them with `limits`; prints the status line
/// (or, with `-F json`, the facts and the verdict) and returns the plugin exit code. Anything
/// that keeps the facts from being read is UNKNOWN.
fn run_check(g: &Global, server: Option<&str>, limits: &Thresholds) -> i32 {
    let unknown = |why: String| {
        println!("PGMONETA UNKNOWN - {}", why.replace(['\n', '|'], " "));
        State::Unknown.code()
    };
    let facts = (|| -> Result<CheckResponse> {
        let s = setup(g, true)?;
        let endpoint = s.endpoint.clone().context("no daemon to talk to")?;
        let fields = typed(request::ServerRequest { server: server.map(str::to_owned) });
        let doc = request(Cmd::Check, fields, Format::Json);
        let (reply, raw) = call(&endpoint, &doc, s.wire, s.key.as_deref())?;
        if !reply.outcome.as_ref().is_some_and(|o| o.status) {
            bail!("{}", failure_line(Cmd::Check, reply.outcome.as_ref()));
        }
        let value: Value = serde_json::from_str(&raw).context("the reply is not JSON")?;
        let response = value.get("Response").cloned().unwrap_or(Value::Null);
        serde_json::from_value(response).context("the reply is not a check response (is the daemon older?)")
    })();
    let facts = match facts {
        Ok(f) => f,
        Err(e) => return unknown(format!("{e:#}")),
    };
    let verdict = check::evaluate(&facts, limits);
    if g.format == Some(Format::Json) {
        let findings: Vec<Value> = verdict
            .findings
            .iter()
            .map(|f| json!({"State": f.state.word(), "Server": f.server, "Message": f.message}))
            .collect();
        let out =
            json!({"State": verdict.state.word(), "Code": verdict.state.code(), "Findings": findings, "Facts": facts});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", check::status_line(&facts, limits));
    }
    verdict.state.code()
}

/// The line that explains a failed command: the daemon's own words when it sent them (ours
/// does), else what the code means.
fn failure_line(cmd: Cmd, outcome: Option<&pgmoneta_wire::management::Outcome>) -> String {
    let code = outcome.and_then(|o| o.error).unwrap_or(0);
    let workflow = outcome.and_then(|o| o.workflow.as_deref()).map(|w| format!(" in {w}")).unwrap_or_default();
    let why = match outcome.and_then(|o| o.message.as_deref()).filter(|m| !m.is_empty()) {
        Some(m) => m.to_owned(),
        None => match pgmoneta_wire::management::error_code::describe(code) {
            Some(d) => format!("{d} (the daemon's log says more)"),
            None => "the daemon's log says why".to_owned(),
        },
    };
    format!("{} failed with error {code}{workflow}: {why}", cmd.name())
}

/// Writes generated text to standard output; a reader that stops early (`| head`) is fine.
fn print_bytes(bytes: &[u8]) -> Result<i32> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// Appends one line per command to the `-L` log file: when, what, and how it ended.
fn log_line(path: &Path, command: Cmd, outcome: &str) {
    let line = format!("{} {} {outcome}\n", now_stamp(), command.name());
    let _ =
        std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| f.write_all(line.as_bytes()));
}

/// One key of `conf get`: `key`, `pgmoneta.key`, `server.<name>.key` or `<name>.key`.
fn conf_value(reply: &Value, key: &str) -> Result<Value> {
    let r = reply.get("Response").ok_or_else(|| anyhow!("no Response in the reply"))?;
    let found = match key.split('.').collect::<Vec<_>>().as_slice() {
        [k] | ["pgmoneta", k] => r.get(*k),
        ["server", s, k] | [s, k] => r.get("server").and_then(|v| v.get(*s)).and_then(|v| v.get(*k)),
        _ => None,
    };
    found.cloned().ok_or_else(|| anyhow!("no configuration key {key:?}"))
}

/// A configuration value for people: the word of an enumeration, the text of a string.
fn conf_text(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            m.get("string_value").map_or_else(|| v.to_string(), |s| s.as_str().unwrap_or("").to_owned())
        }
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// encrypt/decrypt/compress/decompress with no daemon configured: done here, with this user's
/// master key (compress uses zstd).
fn local_file_command(command: &Command, verbose: bool) -> Result<i32> {
    let key = || -> Result<MasterKey> {
        let f = MasterKeyFile::default_location()?;
        f.load().with_context(|| format!("loading {}", f.path().display()))
    };
    let out = match command {
        Command::Encrypt { file } => {
            pgmoneta_crypto::encrypt_in_place(&key()?, pgmoneta_crypto::Cipher::Aes256Gcm, file)?
        }
        Command::Decrypt { file } => {
            pgmoneta_crypto::decrypt_in_place(&key()?, pgmoneta_crypto::Cipher::Aes256Gcm, file)?
        }
        Command::Compress { file } => {
            let alg = pgmoneta_compress::Algorithm::Zstd;
            pgmoneta_compress::compress_file(file, alg, pgmoneta_compress::EncoderOptions::default_for(alg))?
        }
        Command::Decompress { file } => pgmoneta_compress::decompress_file(file)?,
        _ => bail!("not a local command"),
    };
    println!("DestinationFile: {}", out.display());
    if verbose {
        println!("Success (0)");
    }
    Ok(0)
}

/// For long operations on a terminal: polls `progress` once a second on another connection and
/// shows it on standard error. Returns the flag that stops it.
fn start_progress(
    cmd: Cmd,
    fields: &Value,
    endpoint: &Endpoint,
    wire: WireOptions,
    key: Option<Arc<MasterKey>>,
) -> Option<Arc<AtomicBool>> {
    if !matches!(cmd, Cmd::Backup | Cmd::Restore | Cmd::Verify | Cmd::Archive) || !std::io::stderr().is_terminal() {
        return None;
    }
    let server = fields.get("Server")?.as_str()?.to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let endpoint = endpoint.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        while !flag.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(500));
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let progress = ProgressRequest { server: Some(server.clone()), command: Some(cmd.name().to_owned()) };
            let doc = request(Cmd::Progress, typed(progress), Format::Raw);
            let line = match call(&endpoint, &doc, wire, key.as_deref()) {
                Ok((reply, _)) => {
                    let r = reply.response.unwrap_or_default();
                    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
                    if n("ProgressState") == 1 && n("Total") > 0 {
                        format!(
                            "{} {server}: {}% ({} of {}), {:.0} s",
                            cmd.name(),
                            n("Percentage"),
                            output::human_size(n("Done")),
                            output::human_size(n("Total")),
                            started.elapsed().as_secs_f64()
                        )
                    } else {
                        format!("{} {server}: running, {:.0} s", cmd.name(), started.elapsed().as_secs_f64())
                    }
                }
                Err(_) => format!("{} {server}: running, {:.0} s", cmd.name(), started.elapsed().as_secs_f64()),
            };
            if !flag.load(Ordering::SeqCst) {
                eprint!("\r\x1b[K{line}");
            }
        }
    });
    Some(stop)
}
