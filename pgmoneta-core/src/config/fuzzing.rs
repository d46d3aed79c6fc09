//! Invariants of the configuration parser, checked by the `config_parse` fuzz target and by the
//! test that replays its seed corpus.

use super::{Config, Severity};

/// Picks a quote character that cannot end `value` early, or `None` when the value holds both
/// quote characters (such a value cannot be written back unambiguously).
fn quote_for(value: &str) -> Option<char> {
    if !value.contains('"') {
        Some('"')
    } else if !value.contains('\'') {
        Some('\'')
    } else {
        None
    }
}

/// The line writing `key = value` back; `None` when it cannot be written. An empty value is
/// left out (unset) when the key's default is empty too, and written as `""` when the default
/// is not (`log_line_prefix =`: set to nothing, which is not the default).
fn entry(key: &str, value: &str, defaults: &[(&'static str, String)]) -> Option<String> {
    if value.is_empty() {
        let default_is_empty = defaults.iter().find(|(k, _)| *k == key).is_none_or(|(_, d)| d.is_empty());
        return Some(if default_is_empty { String::new() } else { format!("{key} = \"\"\n") });
    }
    quote_for(value).map(|q| format!("{key} = {q}{value}{q}\n"))
}

/// Parses `data` as `pgmoneta.conf` and asserts what must hold for any input:
/// - parsing and validation never panic, whatever the bytes;
/// - every diagnostic points at a line that exists and says something;
/// - a configuration that passes validation, written back with its rendered values, parses to
///   the same configuration.
///
/// # Panics
/// When an invariant does not hold: that is a bug to fix.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count().max(1);
    let parsed = Config::parse_with_env(text, "fuzz.conf", &|name| (name == "HOME").then(|| "/home/fuzz".to_owned()));
    for d in parsed.diagnostics.iter().chain(parsed.config.validate().iter()) {
        if let Some(line) = d.line {
            assert!(line >= 1 && line <= lines, "diagnostic on line {line} of {lines}: {d}");
        }
        assert!(!d.message.is_empty(), "empty diagnostic {d:?}");
        assert!(d.to_string().starts_with("fuzz.conf"), "{d}");
    }
    let Ok((config, warnings)) = parsed.check() else { return };
    assert!(warnings.iter().all(|w| w.severity == Severity::Warning));

    let defaults = Config::default().main_entries();
    let mut rendered = String::from("[pgmoneta]\n");
    for (key, value) in config.main_entries() {
        let Some(line) = entry(key, &value, &defaults) else { return };
        rendered.push_str(&line);
    }
    for server in &config.servers {
        if server.name.contains(['"', '\'', '#', ';', ']', '[']) || server.name.trim() != server.name {
            return;
        }
        rendered.push_str(&format!("[{}]\n", server.name));
        let server_defaults = Config::server_entries(&Default::default());
        for (key, value) in Config::server_entries(server) {
            let Some(line) = entry(key, &value, &server_defaults) else { return };
            rendered.push_str(&line);
        }
    }
    // Values were expanded once already: a literal '$' must stay literal, so no environment.
    let again = Config::parse_with_env(&rendered, "rendered.conf", &|_| None);
    let errors: Vec<String> =
        again.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "rendered configuration does not parse: {errors:?}\n{rendered}");
    assert_eq!(again.config.main, config.main, "main section changed through rendering\n{rendered}");
    assert_eq!(again.config.servers, config.servers, "servers changed through rendering\n{rendered}");
}
