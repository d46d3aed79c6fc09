//! The configuration model: `pgmoneta.conf` and `pgmoneta_cli.conf`.
//!
//! Parsing never stops at the first problem. [`Config::parse`] turns every line it can into typed
//! fields and records a [`Diagnostic`] for each line it cannot; [`Config::validate`] then checks
//! the rules that span keys and sections. [`ParsedConfig::check`] puts both together: an operator
//! sees every problem of a file at once, each with its file, line and key.
//!
//! ```
//! use pgmoneta_core::config::Config;
//!
//! let text = "[pgmoneta]\nhost = *\nunix_socket_dir = /tmp\nbase_dir = /srv/pgmoneta\n\
//!             retention = 7,0\n\n[primary]\nhost = localhost\nport = 5432\nuser = repl\nwal_slot = repl\n";
//! let err = Config::parse(text, "pgmoneta.conf").check().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "pgmoneta.conf:5: retention: weeks must be at least 1, got 0 (use '-' to leave it unset)"
//! );
//! ```

mod cli;
#[doc(hidden)]
pub mod edit;
pub mod fuzzing;
mod ini;
mod model;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

pub use cli::CliConfig;
pub use edit::ConfigFile;
pub use model::{AzureConfig, GcsConfig, MainConfig, PerStandby, S3Config, Secret, ServerConfig, TablespaceMaps};
pub use values::{
    Compression, ConfValue, DirectIo, Encryption, EventBackend, HugePage, List, LogLevel, LogMode, LogType,
    ManifestHash, OutputFormat, Peer, Peers, Retention, SizeValue, StorageEngines, TimeValue, UpdateProcessTitle,
    WireCompression,
};

use crate::error::CoreError;
use model::{KeyDef, MAIN_KEYS, S3_KEYS, SERVER_KEYS};

/// The name of the main section.
pub const MAIN_SECTION: &str = "pgmoneta";
/// Most server sections a configuration may have.
pub const MAX_SERVERS: usize = 64;
/// Most hot standby directories per server.
pub const MAX_HOT_STANDBYS: usize = 8;
/// Most `extra` paths per server.
pub const MAX_EXTRA: usize = 64;

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the configuration is still used.
    Warning,
    /// The configuration cannot be used.
    Error,
}

/// One problem in a configuration, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as the operator named it.
    pub file: String,
    /// The 1-based line, when the problem is on one line.
    pub line: Option<usize>,
    /// The server section, or `None` for `[pgmoneta]` and file-wide problems.
    pub server: Option<String>,
    /// The key, when the problem is about one key.
    pub key: Option<String>,
    /// What is wrong, in words an operator understands.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `pgmoneta.conf:12: retention: weeks must be at least 1, got 0`; server keys read
    /// `[primary] port: ...`; warnings say so after the location.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        match (&self.server, &self.key) {
            (Some(s), Some(k)) => write!(f, "[{s}] {k}: ")?,
            (Some(s), None) => write!(f, "[{s}]: ")?,
            (None, Some(k)) => write!(f, "{k}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// Where each key of a configuration was set, so that later checks can point at the line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The file, as the operator named it (empty when built in code).
    pub file: String,
    main: HashMap<String, usize>,
    main_line: Option<usize>,
    servers: HashMap<String, (usize, HashMap<String, usize>)>,
}

/// Keys accepted so that upstream pgmoneta's files load unchanged but without effect here, each
/// with why; setting one draws a warning that says so. `(section, key, why)`, the section being
/// `None` for `[pgmoneta]` and `Some("server")` for server sections.
pub const NO_EFFECT_KEYS: &[(Option<&str>, &str, &str)] = &[
    (None, "metrics_cache_max_age", "every scrape is rendered afresh"),
    (None, "metrics_cache_max_size", "there is no metrics cache"),
    (None, "libev", "the daemon uses threads and blocking sockets"),
    (None, "progress", "a running backup's progress is always tracked"),
    (None, "keep_alive", "connections keep the system's TCP keep-alive settings"),
    (None, "nodelay", "TCP_NODELAY is always set on the daemon's ports"),
    (None, "non_blocking", "the daemon uses blocking sockets on threads"),
    (None, "backlog", "the system's listen backlog is used"),
    (None, "hugepage", "the daemon has no shared memory segment"),
    (None, "direct_io", "files are written through the page cache and synced"),
    (None, "update_process_title", "the process keeps its name"),
    (Some("server"), "progress", "a running backup's progress is always tracked"),
    (Some("server"), "extra", "server-side files are not fetched (upstream uses its pgmoneta_ext extension)"),
];

impl Origin {
    /// Whether `key` was set in `[pgmoneta]` (`server == None`) or in the server's section.
    pub fn is_set(&self, server: Option<&str>, key: &str) -> bool {
        match server {
            None => self.main.contains_key(key),
            Some(s) => self.servers.get(s).is_some_and(|(_, keys)| keys.contains_key(key)),
        }
    }

    /// The line where `key` was set, in `[pgmoneta]` (`server == None`) or a server section; for a
    /// key that was not set, the line of the section header.
    pub fn line(&self, server: Option<&str>, key: Option<&str>) -> Option<usize> {
        match server {
            None => key.and_then(|k| self.main.get(k).copied()).or(self.main_line),
            Some(s) => {
                let (header, keys) = self.servers.get(s)?;
                Some(key.and_then(|k| keys.get(k).copied()).unwrap_or(*header))
            }
        }
    }
}

/// The daemon's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The `[pgmoneta]` section.
    pub main: MainConfig,
    /// The server sections, in file order.
    pub servers: Vec<ServerConfig>,
    /// Where each value came from.
    pub origin: Origin,
}

/// The result of [`Config::parse`]: the configuration as far as it could be read, and the problems
/// found on the way.
#[derive(Clone, Debug)]
pub struct ParsedConfig {
    /// The configuration; fields whose lines had errors keep their defaults.
    pub config: Config,
    /// Syntax and value problems, and warnings such as unknown keys, in line order.
    pub diagnostics: Vec<Diagnostic>,
}

impl ParsedConfig {
    /// Adds [`Config::validate`]'s findings; succeeds with the warnings when nothing is an error.
    ///
    /// # Errors
    /// [`CoreError::InvalidConfig`] listing every error and warning, in line order.
    pub fn check(self) -> Result<(Config, Vec<Diagnostic>), CoreError> {
        let mut all = self.diagnostics;
        all.extend(self.config.validate());
        all.sort_by_key(|d| (d.line.is_none(), d.line));
        if all.iter().any(|d| d.severity == Severity::Error) {
            Err(CoreError::InvalidConfig { diagnostics: all })
        } else {
            Ok((self.config, all))
        }
    }
}

fn find<'a, T>(table: &'a [KeyDef<T>], name: &str) -> Option<&'a KeyDef<T>> {
    table.iter().find(|k| k.name == name)
}

fn prepare(path: bool, raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if path {
        ini::interpolate(raw, env)
    } else {
        Ok(raw.to_owned())
    }
}

/// Sets `key` on a section, through the section's own table or the shared S3 table; `None` when
/// the section has no such key.
fn set_key<T>(
    table: &[KeyDef<T>],
    target: &mut T,
    s3: fn(&mut T) -> &mut S3Config,
    key: &str,
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<(), String>> {
    if let Some(def) = find(table, key) {
        return Some(prepare(def.path, raw, env).and_then(|v| (def.set)(target, &v)));
    }
    let def = find(S3_KEYS, key)?;
    Some(prepare(def.path, raw, env).and_then(|v| (def.set)(s3(target), &v)))
}

/// Renders `key` of a section; `None` when the section has no such key.
fn get_key<T>(table: &[KeyDef<T>], target: &T, s3: fn(&T) -> &S3Config, key: &str) -> Option<String> {
    if let Some(def) = find(table, key) {
        return Some((def.get)(target));
    }
    find(S3_KEYS, key).map(|def| (def.get)(s3(target)))
}

fn os_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads and parses `path`, expanding `$VAR` from the process environment.
    ///
    /// # Errors
    /// [`CoreError::ReadConfig`] when the file cannot be read.
    pub fn load(path: &Path) -> Result<ParsedConfig, CoreError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CoreError::ReadConfig { path: path.to_owned(), source })?;
        Ok(Config::parse_with_env(&text, &path.display().to_string(), &os_env))
    }

    /// Parses `pgmoneta.conf` text; `file` names it in diagnostics. `$VAR` comes from the process
    /// environment.
    pub fn parse(text: &str, file: &str) -> ParsedConfig {
        Config::parse_with_env(text, file, &os_env)
    }

    /// Like [`Config::parse`], with the environment given as a lookup function.
    pub fn parse_with_env(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> ParsedConfig {
        let doc = ini::parse(text);
        let mut config = Config { origin: Origin { file: file.to_owned(), ..Origin::default() }, ..Config::default() };
        let mut diags = Vec::new();
        let diag = |severity, line, server: Option<&str>, key: Option<&str>, message: String| Diagnostic {
            severity,
            file: file.to_owned(),
            line: Some(line),
            server: server.map(str::to_owned),
            key: key.map(str::to_owned),
            message,
        };
        for (line, message) in doc.problems {
            diags.push(diag(Severity::Error, line, None, None, message));
        }
        for entry in &doc.preamble {
            let msg = "set before any section: put it under [pgmoneta] or a server section".to_owned();
            diags.push(diag(Severity::Error, entry.line, None, Some(&entry.key), msg));
        }
        for section in &doc.sections {
            if section.name.is_empty() {
                continue; // already reported as a syntax problem
            }
            if section.name == MAIN_SECTION {
                if let Some(first) = config.origin.main_line {
                    let msg = format!("[pgmoneta] appears again (first at line {first}); its keys are merged");
                    diags.push(diag(Severity::Warning, section.line, None, None, msg));
                } else {
                    config.origin.main_line = Some(section.line);
                }
                for e in &section.entries {
                    if let Some(prev) = config.origin.main.insert(e.key.clone(), e.line) {
                        let msg = format!("set again; the value from line {prev} is replaced");
                        diags.push(diag(Severity::Warning, e.line, None, Some(&e.key), msg));
                    }
                    match set_key(MAIN_KEYS, &mut config.main, |m| &mut m.s3, &e.key, &e.value, env) {
                        Some(Ok(())) => {}
                        Some(Err(msg)) => diags.push(diag(Severity::Error, e.line, None, Some(&e.key), msg)),
                        None => {
                            let msg = format!("unknown key in [pgmoneta] (value {:?} ignored)", e.value);
                            diags.push(diag(Severity::Warning, e.line, None, Some(&e.key), msg));
                        }
                    }
                }
                continue;
            }
            let name = section.name.as_str();
            if name == "all" {
                let msg = "'all' is reserved and cannot name a server".to_owned();
                diags.push(diag(Severity::Error, section.line, Some(name), None, msg));
                continue;
            }
            if let Some((first, _)) = config.origin.servers.get(name) {
                let msg = format!("server defined twice (first at line {first})");
                diags.push(diag(Severity::Error, section.line, Some(name), None, msg));
                continue;
            }
            let mut server = ServerConfig::new(name);
            let mut lines = HashMap::new();
            for e in &section.entries {
                if let Some(prev) = lines.insert(e.key.clone(), e.line) {
                    let msg = format!("set again; the value from line {prev} is replaced");
                    diags.push(diag(Severity::Warning, e.line, Some(name), Some(&e.key), msg));
                }
                match set_key(SERVER_KEYS, &mut server, |s| &mut s.s3, &e.key, &e.value, env) {
                    Some(Ok(())) => {}
                    Some(Err(msg)) => diags.push(diag(Severity::Error, e.line, Some(name), Some(&e.key), msg)),
                    None => {
                        let msg = if find(MAIN_KEYS, &e.key).is_some() {
                            format!("only valid in [pgmoneta], not in a server section (value {:?} ignored)", e.value)
                        } else {
                            format!("unknown key in a server section (value {:?} ignored)", e.value)
                        };
                        diags.push(diag(Severity::Warning, e.line, Some(name), Some(&e.key), msg));
                    }
                }
            }
            config.origin.servers.insert(name.to_owned(), (section.line, lines));
            config.servers.push(server);
        }
        diags.sort_by_key(|d| d.line);
        ParsedConfig { config, diagnostics: diags }
    }

    /// The server section called `name`.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The retention in force for `server`: its own parts, the rest from `[pgmoneta]`.
    pub fn effective_retention(&self, server: &ServerConfig) -> Retention {
        server.retention.or(self.main.retention)
    }

    /// The S3 settings in force for `server`.
    pub fn effective_s3(&self, server: &ServerConfig) -> S3Config {
        server.s3.or(&self.main.s3)
    }

    /// Checks the rules that span keys and sections. Returns every problem found, errors and
    /// warnings, each pointing at the line of the key (or of the section header when the key is
    /// missing).
    pub fn validate(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut report = |severity, server: Option<&str>, key: Option<&str>, message: String| {
            out.push(Diagnostic {
                severity,
                file: if self.origin.file.is_empty() { "configuration".to_owned() } else { self.origin.file.clone() },
                line: self.origin.line(server, key),
                server: server.map(str::to_owned),
                key: key.map(str::to_owned),
                message,
            })
        };
        use Severity::{Error, Warning};
        let m = &self.main;

        for (section, key, why) in NO_EFFECT_KEYS {
            let servers: Vec<Option<&str>> = match section {
                None => vec![None],
                Some(_) => self.servers.iter().map(|s| Some(s.name.as_str())).collect(),
            };
            for server in servers {
                if self.origin.is_set(server, key) {
                    report(Warning, server, Some(key), format!("accepted for compatibility, no effect here: {why}"));
                }
            }
        }

        for (key, value) in [("host", &m.host), ("unix_socket_dir", &m.unix_socket_dir), ("base_dir", &m.base_dir)] {
            if value.as_deref().is_none_or(str::is_empty) {
                report(Error, None, Some(key), "is required in [pgmoneta]".to_owned());
            }
        }
        for problem in m.retention.problems(true) {
            report(Error, None, Some("retention"), problem);
        }
        if m.retention_interval < 1 {
            report(Error, None, Some("retention_interval"), "must be at least 1 second".to_owned());
        }
        if m.metrics_cache_max_size.bytes() > 1 << 20 {
            let msg = format!("must be at most 1048576B (1 MB), got {}", m.metrics_cache_max_size.render());
            report(Error, None, Some("metrics_cache_max_size"), msg);
        }
        if m.backlog < 16 {
            report(Warning, None, Some("backlog"), format!("raised to the minimum of 16 (got {})", m.backlog));
        }
        if m.console != 0 && m.metrics == 0 {
            report(
                Error,
                None,
                Some("console"),
                "the web console needs metrics to be enabled (metrics = <port>)".to_owned(),
            );
        }
        let ports = [
            ("metrics", m.metrics),
            ("console", m.console),
            ("nagios", m.nagios),
            ("management", m.management),
            ("cluster", m.cluster),
        ];
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if *pa != 0 && pa == pb {
                    report(Error, None, Some(b), format!("port {pb} is already used by {a}"));
                }
            }
        }
        if m.tls && m.management != 0 {
            for key in ["tls_cert_file", "tls_key_file"] {
                let value = if key == "tls_cert_file" { &m.tls_cert_file } else { &m.tls_key_file };
                if value.is_none() {
                    report(Error, None, Some(key), "is required when tls = on and management is enabled".to_owned());
                }
            }
        }
        for (key, problem) in cluster_problems(m) {
            report(Error, None, Some(key), problem);
        }
        if m.metrics_cert_file.is_some() != m.metrics_key_file.is_some() {
            let msg = "metrics_cert_file and metrics_key_file must be set together".to_owned();
            report(Error, None, Some("metrics_cert_file"), msg);
        }
        if m.storage_engine.ssh {
            for (key, value) in [
                ("ssh_hostname", &m.ssh_hostname),
                ("ssh_username", &m.ssh_username),
                ("ssh_base_dir", &m.ssh_base_dir),
            ] {
                if value.is_none() {
                    report(Error, None, Some(key), "is required when storage_engine includes ssh".to_owned());
                }
            }
        }
        if m.storage_engine.azure {
            let a = &m.azure;
            // Without a shared key, the credentials come from the environment (managed or
            // workload identity, a service principal).
            let required =
                [("azure_storage_account", a.storage_account.is_none()), ("azure_container", a.container.is_none())];
            for (key, missing) in required {
                if missing {
                    report(Error, None, Some(key), "is required when storage_engine includes azure".to_owned());
                }
            }
        }
        if m.storage_engine.gcs && m.gcs.bucket.is_none() {
            report(Error, None, Some("gcs_bucket"), "is required when storage_engine includes gcs".to_owned());
        }

        if self.servers.is_empty() {
            report(
                Error,
                None,
                None,
                "no server sections: add one [name] section per PostgreSQL server to back up".to_owned(),
            );
        }
        if self.servers.len() > MAX_SERVERS {
            report(
                Error,
                None,
                None,
                format!("{} servers defined; at most {MAX_SERVERS} are supported", self.servers.len()),
            );
        }
        let mut slots: HashMap<(String, Option<u16>, String), &str> = HashMap::new();
        for s in &self.servers {
            let name = Some(s.name.as_str());
            let required = [
                ("host", s.host.as_deref().is_none_or(str::is_empty)),
                ("port", s.port.is_none()),
                ("user", s.user.as_deref().is_none_or(str::is_empty)),
                ("wal_slot", s.wal_slot.as_deref().is_none_or(str::is_empty)),
            ];
            for (key, missing) in required {
                if missing {
                    report(Error, name, Some(key), "is required".to_owned());
                }
            }
            if s.port == Some(0) {
                report(Error, name, Some("port"), "must be from 1 to 65535".to_owned());
            }
            if let (Some(host), Some(slot)) = (&s.host, &s.wal_slot) {
                if let Some(other) = slots.insert((host.clone(), s.port, slot.clone()), &s.name) {
                    let msg = format!(
                        "slot {slot:?} on {host} is also used by server [{other}]; each server needs its own slot"
                    );
                    report(Error, name, Some("wal_slot"), msg);
                }
            }
            if let Some(follow) = &s.follow {
                if follow == &s.name {
                    report(Error, name, Some("follow"), "a server cannot follow itself".to_owned());
                } else if self.server(follow).is_none() {
                    report(Error, name, Some("follow"), format!("no server section named [{follow}]"));
                }
            }
            let own = s.retention.problems(false);
            if own.is_empty() && m.retention.problems(true).is_empty() {
                for problem in self.effective_retention(s).problems(true) {
                    let msg = format!("{problem} (combined with [pgmoneta] retention {})", m.retention.render());
                    report(Error, name, Some("retention"), msg);
                }
            }
            for problem in own {
                report(Error, name, Some("retention"), problem);
            }
            if s.workers < -1 {
                report(Error, name, Some("workers"), format!("must be -1 (inherit) or more, got {}", s.workers));
            }
            if s.max_rate < -1 {
                report(Error, name, Some("max_rate"), format!("must be -1 (inherit) or more, got {}", s.max_rate));
            }
            let standbys = s.hot_standby.0.len();
            if standbys > MAX_HOT_STANDBYS {
                report(
                    Error,
                    name,
                    Some("hot_standby"),
                    format!("{standbys} directories given; at most {MAX_HOT_STANDBYS}"),
                );
            }
            if s.hot_standby_overrides.0.len() > standbys.max(1)
                || (standbys == 0 && !s.hot_standby_overrides.0.is_empty())
            {
                let msg = format!(
                    "{} '|'-separated parts for {standbys} hot standby directories",
                    s.hot_standby_overrides.0.len()
                );
                report(Error, name, Some("hot_standby_overrides"), msg);
            }
            if s.hot_standby_tablespaces.0.len() > standbys.max(1)
                || (standbys == 0 && !s.hot_standby_tablespaces.0.is_empty())
            {
                let msg = format!(
                    "{} '|'-separated parts for {standbys} hot standby directories",
                    s.hot_standby_tablespaces.0.len()
                );
                report(Error, name, Some("hot_standby_tablespaces"), msg);
            }
            if s.extra.0.len() > MAX_EXTRA {
                report(Error, name, Some("extra"), format!("{} paths given; at most {MAX_EXTRA}", s.extra.0.len()));
            }
            if m.storage_engine.s3 {
                let s3 = self.effective_s3(s);
                // Without keys, the credentials come from the environment (AWS_* variables,
                // web identity, the instance or task metadata); with one, both are needed.
                let keys = s3.access_key_id.is_some() || s3.secret_access_key.is_some();
                let required = [
                    ("s3_region", s3.region.is_none()),
                    ("s3_access_key_id", keys && s3.access_key_id.is_none()),
                    ("s3_secret_access_key", keys && s3.secret_access_key.is_none()),
                    ("s3_bucket", s3.bucket.is_none()),
                ];
                for (key, missing) in required {
                    if missing {
                        report(
                            Error,
                            name,
                            Some(key),
                            "is required (here or in [pgmoneta]) when storage_engine includes s3".to_owned(),
                        );
                    }
                }
            }
        }
        out
    }

    /// Renders one key for `conf get`: `key` or `pgmoneta.key` for `[pgmoneta]`,
    /// `server.<name>.key` (or `<name>.key`) for a server.
    ///
    /// # Errors
    /// A sentence naming the unknown server or key.
    pub fn get(&self, key: &str) -> Result<String, String> {
        match self.resolve(key)? {
            (None, k) => {
                get_key(MAIN_KEYS, &self.main, |m| &m.s3, k).ok_or_else(|| format!("unknown key {k:?} in [pgmoneta]"))
            }
            (Some(i), k) => get_key(SERVER_KEYS, &self.servers[i], |s| &s.s3, k)
                .ok_or_else(|| format!("unknown key {k:?} in a server section")),
        }
    }

    /// Changes one key (named as for [`Config::get`]) from text, as `conf set` does. The caller
    /// runs [`Config::validate`] afterwards.
    ///
    /// # Errors
    /// A sentence naming the unknown server or key, or what is wrong with the value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = ini::unquote(value.trim());
        match self.resolve(key)? {
            (None, k) => set_key(MAIN_KEYS, &mut self.main, |m| &mut m.s3, k, value, &os_env)
                .unwrap_or_else(|| Err(format!("unknown key {k:?} in [pgmoneta]"))),
            (Some(i), k) => set_key(SERVER_KEYS, &mut self.servers[i], |s| &mut s.s3, k, value, &os_env)
                .unwrap_or_else(|| Err(format!("unknown key {k:?} in a server section"))),
        }
    }

    fn resolve<'k>(&self, key: &'k str) -> Result<(Option<usize>, &'k str), String> {
        let (section, k) = match key.split_once('.') {
            None => return Ok((None, key)),
            Some((MAIN_SECTION, k)) => return Ok((None, k)),
            Some(("server", rest)) => {
                rest.split_once('.').ok_or_else(|| format!("expected server.<name>.<key>, got {key:?}"))?
            }
            Some(pair) => pair,
        };
        let index = self
            .servers
            .iter()
            .position(|s| s.name == section)
            .ok_or_else(|| format!("no server named {section:?}"))?;
        Ok((Some(index), k))
    }

    /// Every key of `[pgmoneta]` with its rendered value, in documentation order.
    pub fn main_entries(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<_> = MAIN_KEYS.iter().map(|d| (d.name, (d.get)(&self.main))).collect();
        out.extend(S3_KEYS.iter().map(|d| (d.name, (d.get)(&self.main.s3))));
        out
    }

    /// Every key of a server section with its rendered value.
    pub fn server_entries(server: &ServerConfig) -> Vec<(&'static str, String)> {
        let mut out: Vec<_> = SERVER_KEYS.iter().map(|d| (d.name, (d.get)(server))).collect();
        out.extend(S3_KEYS.iter().map(|d| (d.name, (d.get)(&server.s3))));
        out
    }
}

/// What is wrong with the cluster keys of `[pgmoneta]`, by key. Nothing is checked when
/// clustering is off (`cluster = 0`) besides the names of peers.
fn cluster_problems(m: &MainConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in &m.cluster_peers.0 {
        if !seen.insert(p.name.as_str()) {
            out.push(("cluster_peers", format!("peer {:?} is named twice", p.name)));
        }
    }
    if m.cluster == 0 {
        return out;
    }
    match m.cluster_node.as_deref() {
        None => out.push(("cluster_node", "is required when cluster is enabled (this node's name)".to_owned())),
        Some(n) if !values::valid_node_name(n) => {
            out.push(("cluster_node", format!("{n:?}: a name is letters, digits, '-', '_' and '.'")));
        }
        Some(n) if seen.contains(n) => {
            out.push(("cluster_peers", format!("names this node ({n}) as a peer")));
        }
        Some(_) => {}
    }
    if m.cluster_user.is_none() {
        out.push((
            "cluster_user",
            "is required when cluster is enabled (the admin whose password, in the admins vault, nodes present to each other)"
                .to_owned(),
        ));
    }
    // Nodes talk over TLS only: a peer never sends backups or passwords in the clear.
    if !m.tls || m.tls_cert_file.is_none() || m.tls_key_file.is_none() {
        out.push((
            "tls",
            "tls = on with tls_cert_file and tls_key_file is required when cluster is enabled".to_owned(),
        ));
    }
    if m.cluster_heartbeat.seconds() == 0 {
        out.push(("cluster_heartbeat", "must be at least 1 second".to_owned()));
    } else if m.cluster_takeover.seconds() < 2 * m.cluster_heartbeat.seconds() {
        out.push((
            "cluster_takeover",
            format!(
                "must be at least twice cluster_heartbeat ({}s), got {}s",
                m.cluster_heartbeat.seconds(),
                m.cluster_takeover.seconds()
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests;
