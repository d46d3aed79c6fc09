//! `pgmoneta_cli.conf`: how `pgmoneta-cli` reaches the daemon and logs. Section headers are
//! allowed and ignored.

use super::ini;
use super::model::{key, KeyDef};
use super::values::*;
use super::{Diagnostic, Severity};

/// The settings of `pgmoneta-cli`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each field is the key of the same name, documented in docs/configuration.md
pub struct CliConfig {
    pub host: Option<String>,
    pub port: u16,
    pub unix_socket_dir: Option<String>,
    pub compression: WireCompression,
    pub encryption: Encryption,
    pub output: OutputFormat,
    pub log_type: LogType,
    pub log_level: LogLevel,
    pub log_path: String,
    pub log_mode: LogMode,
    pub log_rotation_age: TimeValue,
    pub log_rotation_size: SizeValue,
    pub log_line_prefix: String,
}

impl Default for CliConfig {
    fn default() -> CliConfig {
        CliConfig {
            host: None,
            port: 0,
            unix_socket_dir: None,
            compression: WireCompression::None,
            encryption: Encryption::None,
            output: OutputFormat::Text,
            log_type: LogType::Console,
            log_level: LogLevel::Info,
            log_path: "pgmoneta-cli.log".to_owned(),
            log_mode: LogMode::Append,
            log_rotation_age: TimeValue(0),
            log_rotation_size: SizeValue(0),
            log_line_prefix: "%Y-%m-%d %H:%M:%S".to_owned(),
        }
    }
}

static CLI_KEYS: &[KeyDef<CliConfig>] = &[
    key!("host" => host),
    key!("port" => port),
    key!(path "unix_socket_dir" => unix_socket_dir),
    key!("compression" => compression),
    key!("encryption" => encryption),
    key!("output" => output),
    key!("log_type" => log_type),
    key!("log_level" => log_level),
    key!(path "log_path" => log_path),
    key!("log_mode" => log_mode),
    key!("log_rotation_age" => log_rotation_age),
    key!("log_rotation_size" => log_rotation_size),
    key!("log_line_prefix" => log_line_prefix),
];

impl CliConfig {
    /// Parses `pgmoneta_cli.conf` text; `file` names it in diagnostics. Returns the settings and
    /// every problem found (value errors as errors, unknown keys as warnings).
    pub fn parse_with_env(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (CliConfig, Vec<Diagnostic>) {
        let doc = ini::parse(text);
        let mut config = CliConfig::default();
        let mut diags = Vec::new();
        let mut push = |severity, line, key: Option<&str>, message| {
            diags.push(Diagnostic {
                severity,
                file: file.to_owned(),
                line: Some(line),
                server: None,
                key: key.map(str::to_owned),
                message,
            })
        };
        for (line, message) in doc.problems {
            push(Severity::Error, line, None, message);
        }
        let entries = doc.preamble.iter().chain(doc.sections.iter().flat_map(|s| s.entries.iter()));
        for e in entries {
            match CLI_KEYS.iter().find(|d| d.name == e.key) {
                Some(def) => {
                    let value = if def.path { ini::interpolate(&e.value, env) } else { Ok(e.value.clone()) };
                    if let Err(msg) = value.and_then(|v| (def.set)(&mut config, &v)) {
                        push(Severity::Error, e.line, Some(&e.key), msg);
                    }
                }
                None => {
                    push(Severity::Warning, e.line, Some(&e.key), format!("unknown key (value {:?} ignored)", e.value))
                }
            }
        }
        diags.sort_by_key(|d| d.line);
        (config, diags)
    }

    /// Like [`CliConfig::parse_with_env`] with the process environment.
    pub fn parse(text: &str, file: &str) -> (CliConfig, Vec<Diagnostic>) {
        CliConfig::parse_with_env(text, file, &|k| std::env::var(k).ok())
    }

    /// Every key with its rendered value.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        CLI_KEYS.iter().map(|d| (d.name, (d.get)(self))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_conf() {
        let env = |k: &str| (k == "HOME").then(|| "/home/op".to_owned());
        let text = "[pgmoneta-cli]\nhost = backup.example\nport = 5002\nunix_socket_dir = $HOME/run\n\
                    compression = gzip\nencryption = aes256\noutput = json\nlog_level = debug\ncolour = yes\n";
        let (cfg, diags) = CliConfig::parse_with_env(text, "pgmoneta_cli.conf", &env);
        assert_eq!(cfg.host.as_deref(), Some("backup.example"));
        assert_eq!(cfg.port, 5002);
        assert_eq!(cfg.unix_socket_dir.as_deref(), Some("/home/op/run"));
        assert_eq!(cfg.compression, WireCompression::Gzip);
        assert_eq!(cfg.encryption, Encryption::Aes256Gcm);
        assert_eq!(cfg.output, OutputFormat::Json);
        assert_eq!(cfg.log_level, LogLevel::Debug1);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].to_string(), "pgmoneta_cli.conf:9: warning: colour: unknown key (value \"yes\" ignored)");
    }

    #[test]
    fn reports_bad_values_with_lines() {
        let (_, diags) = CliConfig::parse_with_env("port = 99999\noutput = yaml\n", "cli.conf", &|_| None);
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            text,
            [
                "cli.conf:1: port: invalid number \"99999\": expected a whole number from 0 to 65535",
                "cli.conf:2: output: invalid output format \"yaml\": expected one of text, json, raw",
            ]
        );
    }
}
