//! `pgmoneta-config`: creates and edits `pgmoneta.conf` (or `pgmoneta_cli.conf`) without a
//! daemon. Lines it does not touch keep their text; an edit that would make the file invalid
//! for the daemon (by the daemon's own validation) is refused with the daemon's diagnostics and
//! the file is left as it was; a file is replaced whole (written aside, synced, renamed), never
//! half-written.

use std::io::{BufRead, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::exit;

use clap::{ArgAction, Parser, Subcommand};
use pgmoneta_core::config::{CliConfig, Config, ConfigFile, Diagnostic, Severity};

/// Creates and edits pgmoneta's configuration files, with no daemon running.
#[derive(Debug, Parser)]
#[command(name = "pgmoneta-config", version, disable_help_flag = true, disable_version_flag = true)]
struct Cli {
    /// The file `init` writes.
    #[arg(short = 'o', long = "output", value_name = "FILE", default_value = "pgmoneta.conf", global = true)]
    output: PathBuf,
    /// `init` without questions: a working template.
    #[arg(short = 'q', long = "quiet", global = true)]
    quiet: bool,
    /// `init` replaces an existing file.
    #[arg(short = 'F', long = "force", global = true)]
    force: bool,
    /// Print the version (and exit with status 1, as upstream's tools do).
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Print help.
    #[arg(short = '?', long = "help", action = ArgAction::Help, global = true)]
    help: Option<bool>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a new pgmoneta.conf (-o FILE), asking for each setting (-q: none asked).
    #[command(disable_help_flag = true)]
    Init,
    /// Print a key's value.
    #[command(disable_help_flag = true)]
    Get { file: PathBuf, section: String, key: String },
    /// Set a key, adding it (or its section) when missing.
    #[command(disable_help_flag = true)]
    Set { file: PathBuf, section: String, key: String, value: String },
    /// Remove a key, or a whole section.
    #[command(disable_help_flag = true)]
    Del { file: PathBuf, section: String, key: Option<String> },
    /// List the sections, or a section's keys.
    #[command(disable_help_flag = true)]
    Ls { file: PathBuf, section: Option<String> },
}

/// The daemon's (or the client's) errors for `text`, by what they are about: an edit may not
/// add one. Files that are neither (no `[pgmoneta]`, not a client file) are not checked.
fn errors(text: &str, path: &Path) -> Vec<Diagnostic> {
    let name = path.display().to_string();
    let file = ConfigFile::parse(text);
    let sections = file.sections();
    let env = |k: &str| std::env::var(k).ok();
    let all: Vec<Diagnostic> = if sections.iter().any(|s| s == "pgmoneta") {
        let parsed = Config::parse_with_env(text, &name, &env);
        let mut all = parsed.config.validate();
        all.extend(parsed.diagnostics);
        all
    } else if sections.iter().any(|s| s == "pgmoneta-cli") || path.file_name().is_some_and(|n| n == "pgmoneta_cli.conf")
    {
        CliConfig::parse_with_env(text, &name, &env).1
    } else {
        Vec::new()
    };
    all.into_iter().filter(|d| d.severity == Severity::Error).collect()
}

/// What a diagnostic is about, whatever line it is on now.
fn identity(d: &Diagnostic) -> (Option<String>, Option<String>, String) {
    (d.server.clone(), d.key.clone(), d.message.clone())
}

/// Replaces `path` with `text`: written beside it, synced, renamed over it, the directory
/// synced. An existing file's mode and owner are kept; a new one gets 0640.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.pgmoneta-config.{}", std::process::id()));
    let result = (|| {
        // Readable by nobody else until it has its final mode: it may hold secrets.
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        match std::fs::metadata(path) {
            Ok(old) => {
                f.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))?;
                if nix::unistd::geteuid().is_root() {
                    std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()))?;
                }
            }
            Err(_) => f.set_permissions(std::fs::Permissions::from_mode(0o640))?,
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `after` over `path` unless it has errors `before` did not; those are the error.
/// A section being built key by key is the exception: the keys it still lacks (other than the
/// one just removed) are listed, not refused.
fn apply(
    path: &Path,
    before: &str,
    after: &str,
    section: &str,
    key: Option<&str>,
    removing: bool,
) -> Result<(), String> {
    let known: Vec<_> = errors(before, path).iter().map(identity).collect();
    let (mut pending, mut new) = (Vec::new(), Vec::new());
    for d in errors(after, path).into_iter().filter(|d| !known.contains(&identity(d))) {
        let here = match &d.server {
            Some(s) => s == section,
            None => section == "pgmoneta",
        };
        let lacking = d.message.starts_with("is required") && !(removing && d.key.as_deref() == key);
        if here && lacking {
            pending.push(d.key.clone().unwrap_or_default());
        } else {
            new.push(d.to_string());
        }
    }
    if !new.is_empty() {
        return Err(format!(
            "{} left unchanged: the change would make it invalid:\n{}",
            path.display(),
            new.join("\n")
        ));
    }
    replace(path, after).map_err(|e| format!("writing {}: {e}", path.display()))?;
    if !pending.is_empty() {
        eprintln!("pgmoneta-config: [{section}] still needs {} before the daemon accepts it", pending.join(", "));
    }
    Ok(())
}

/// Asks for a value on standard input, `default` when the answer is empty; a required
/// setting (no default) is asked again until it is answered.
fn ask(input: &mut dyn BufRead, question: &str, default: Option<&str>) -> Result<String, String> {
    loop {
        match default {
            Some(d) => print!("{question} [{d}]: "),
            None => print!("{question}: "),
        }
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if input.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return default.map(str::to_owned).ok_or_else(|| format!("no answer for {question:?}"));
        }
        let answer = line.trim();
        match (answer.is_empty(), default) {
            (false, _) => return Ok(answer.to_owned()),
            (true, Some(d)) => return Ok(d.to_owned()),
            (true, None) => println!("{question} is required"),
        }
    }
}

/// The settings `init` writes, in order: `(section, key, question, default)`; the server's
/// section name is asked first.
const INIT: &[(&str, &str, &str, Option<&str>)] = &[
    ("pgmoneta", "host", "Address to listen on (* for all)", Some("*")),
    ("pgmoneta", "metrics", "Prometheus metrics port (0: off)", Some("5001")),
    ("pgmoneta", "base_dir", "Backup directory", Some("/var/lib/pgmoneta/backup")),
    ("pgmoneta", "compression", "Compression (none, gzip, zstd, lz4, bzip2)", Some("zstd")),
    ("pgmoneta", "retention", "Retention in days", Some("7")),
    ("pgmoneta", "log_type", "Log to (console, file, syslog)", Some("file")),
    ("pgmoneta", "log_level", "Log level", Some("info")),
    ("pgmoneta", "log_path", "Log file", Some("/var/log/pgmoneta/pgmoneta.log")),
    ("pgmoneta", "unix_socket_dir", "Management socket directory", Some("/run/pgmoneta")),
    ("", "host", "PostgreSQL host", Some("localhost")),
    ("", "port", "PostgreSQL port", Some("5432")),
    ("", "user", "Replication user (its password goes in pgmoneta_users.conf)", None),
    ("", "wal_slot", "Replication slot", Some("pgmoneta")),
];

fn init(cli: &Cli) -> Result<(), String> {
    let path = &cli.output;
    if path.exists() && !cli.force {
        return Err(format!("{} exists; -F replaces it", path.display()));
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let server = if cli.quiet { "primary".to_owned() } else { ask(&mut input, "Server name", Some("primary"))? };
    let mut file = ConfigFile::parse("# pgmoneta.conf, written by pgmoneta-config init\n\n");
    for (section, key, question, default) in INIT {
        let value = if cli.quiet { default.unwrap_or("repl").to_owned() } else { ask(&mut input, question, *default)? };
        let target: &str = if section.is_empty() { &server } else { section };
        file.set(target, key, &value);
    }
    file.set(&server, "create_slot", "yes");
    let text = file.text();
    let problems: Vec<String> = errors(&text, path).iter().map(ToString::to_string).collect();
    if !problems.is_empty() {
        return Err(format!("the answers make an invalid configuration, nothing written:\n{}", problems.join("\n")));
    }
    replace(path, &text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("{} written", path.display());
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    let Some(command) = &cli.command else {
        return Err("a command is needed: init, get, set, del or ls (see -?)".into());
    };
    match command {
        Cmd::Init => init(&cli),
        Cmd::Get { file, section, key } => {
            let f = ConfigFile::parse(&read(file)?);
            let value = f.get(section, key).ok_or_else(|| format!("{}: no {key} in [{section}]", file.display()))?;
            println!("{value}");
            Ok(())
        }
        Cmd::Set { file, section, key, value } => {
            let before = if file.exists() { read(file)? } else { String::new() };
            let mut f = ConfigFile::parse(&before);
            f.set(section, key, value);
            apply(file, &before, &f.text(), section, Some(key), false)
        }
        Cmd::Del { file, section, key } => {
            let before = read(file)?;
            let mut f = ConfigFile::parse(&before);
            let removed = match key {
                Some(k) => f.remove_key(section, k),
                None => f.remove_section(section),
            };
            if !removed {
                let what = key.as_ref().map_or(format!("section [{section}]"), |k| format!("{k} in [{section}]"));
                return Err(format!("{}: no {what}", file.display()));
            }
            apply(file, &before, &f.text(), section, key.as_deref(), true)
        }
        Cmd::Ls { file, section } => {
            let f = ConfigFile::parse(&read(file)?);
            match section {
                None => f.sections().iter().for_each(|s| println!("{s}")),
                Some(s) => {
                    let keys = f.keys(s).ok_or_else(|| format!("{}: no section [{s}]", file.display()))?;
                    keys.iter().for_each(|(k, _)| println!("{k}"));
                }
            }
            Ok(())
        }
    }
}

fn main() {
    pgmoneta_cli::print_man_page_if_asked(<Cli as clap::CommandFactory>::command());
    let cli = Cli::parse();
    if cli.version {
        println!("pgmoneta-config {}", env!("CARGO_PKG_VERSION"));
        exit(1);
    }
    if let Err(e) = run(cli) {
        eprintln!("pgmoneta-config: {e}");
        exit(1);
    }
}
