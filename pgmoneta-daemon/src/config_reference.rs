//! docs/configuration-reference.md against the configuration model: every key of each section
//! documented once and no other, its default as `conf get` renders it, its reload behaviour as
//! [`crate::RESTART_KEYS`] and [`pgmoneta_core::config::NO_EFFECT_KEYS`] have it, and an example
//! that parses.

use std::collections::{BTreeMap, BTreeSet};

use pgmoneta_core::config::{CliConfig, Config, ServerConfig, Severity, NO_EFFECT_KEYS};

/// One documented key: `(type, default, reload, example)`.
type Row = (String, String, String, String);

/// The rows of each `## ` section's table, by key.
fn sections() -> BTreeMap<String, BTreeMap<String, Row>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration-reference.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, Row>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.to_owned();
            continue;
        }
        let Some(rest) = line.strip_prefix("| `") else { continue };
        let cells: Vec<&str> = rest.split(" | ").collect();
        assert_eq!(cells.len(), 6, "{section}: a row of six cells: {line}");
        let key = cells[0].trim_end_matches('`').to_owned();
        let unquote = |c: &str| c.trim().trim_matches('`').to_owned();
        let example = cells[5].trim_end_matches('|').trim().trim_matches('`').to_owned();
        let row = (unquote(cells[1]), unquote(cells[2]), unquote(cells[3]), example);
        assert!(out.entry(section.clone()).or_default().insert(key.clone(), row).is_none(), "{section}: {key} twice");
    }
    out
}

/// The section's rows checked against the model's keys and rendered defaults.
fn check_defaults(name: &str, rows: &BTreeMap<String, Row>, model: &[(&'static str, String)]) {
    let documented: BTreeSet<&str> = rows.keys().map(String::as_str).collect();
    let keys: BTreeSet<&str> = model.iter().map(|(k, _)| *k).collect();
    assert_eq!(documented, keys, "{name}: the documented keys differ from the model's");
    let mut wrong = Vec::new();
    for (key, rendered) in model {
        let (kind, default, _, _) = &rows[*key];
        let kinds = [
            "text",
            "path",
            "port",
            "integer",
            "boolean",
            "time",
            "size",
            "enumeration",
            "list",
            "retention",
            "secret",
        ];
        assert!(kinds.contains(&kind.as_str()), "{name}: {key}: type {kind:?}");
        let expected = if rendered.is_empty() { "none" } else { rendered.as_str() };
        if default != expected {
            wrong.push(format!("{key}: documented {default:?}, is {expected:?}"));
        }
    }
    assert!(wrong.is_empty(), "{name}: defaults differ:\n{}", wrong.join("\n"));
}

fn no_effect(section: Option<&str>, key: &str) -> bool {
    NO_EFFECT_KEYS.iter().any(|(s, k, _)| *s == section && *k == key)
}

#[test]
fn the_configuration_reference_matches_the_model() {
    let sections = sections();
    let main = &sections["`[pgmoneta]`"];
    let server = &sections["Server sections (`[name]`)"];
    let cli = &sections["`pgmoneta_cli.conf`"];

    check_defaults("[pgmoneta]", main, &Config::default().main_entries());
    check_defaults("server", server, &Config::server_entries(&ServerConfig::new("x")));
    check_defaults("pgmoneta_cli.conf", cli, &CliConfig::default().entries());

    for (key, (_, _, reload, _)) in main {
        let expected = if no_effect(None, key) {
            "no effect"
        } else if crate::RESTART_KEYS.contains(&key.as_str()) {
            "restart"
        } else {
            "yes"
        };
        assert_eq!(reload, expected, "[pgmoneta] {key}: reload");
    }
    for (key, (_, _, reload, _)) in server {
        let expected = if no_effect(Some("server"), key) { "no effect" } else { "yes" };
        assert_eq!(reload, expected, "server {key}: reload");
    }
    for (key, (_, _, reload, _)) in cli {
        assert_eq!(reload, "yes", "pgmoneta_cli.conf {key}: read at every run");
    }
    for (section, key, _) in NO_EFFECT_KEYS {
        let rows = if section.is_none() { main } else { server };
        assert!(rows.contains_key(*key), "{key} has no effect but is not documented");
    }

    // Each example sets its own key, and its value parses.
    let env = |_: &str| -> Option<String> { None };
    let base = "[pgmoneta]\nhost = *\nunix_socket_dir = /tmp\nbase_dir = /tmp\n";
    let servers = "[primary]\nhost = localhost\nport = 5432\nuser = repl\nwal_slot = s\n";
    for (in_server, rows) in [(false, main), (true, server)] {
        for (key, (_, _, _, example)) in rows {
            assert!(example.starts_with(&format!("{key} = ")), "{key}: example {example:?}");
            let text =
                if in_server { format!("{base}{servers}{example}\n") } else { format!("{base}{example}\n{servers}") };
            let parsed = Config::parse_with_env(&text, "example", &env);
            let errors: Vec<_> = parsed.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
            assert!(errors.is_empty(), "{key}: example {example:?}: {errors:?}");
            let section = if in_server { Some("primary") } else { None };
            assert!(parsed.config.origin.is_set(section, key), "{key}: example {example:?} does not set it");
        }
    }
    for (key, (_, _, _, example)) in cli {
        assert!(example.starts_with(&format!("{key} = ")), "{key}: example {example:?}");
        let (_, diags) = CliConfig::parse_with_env(&format!("[pgmoneta-cli]\n{example}\n"), "example", &env);
        assert!(diags.is_empty(), "{key}: example {example:?}: {diags:?}");
    }
}

#[test]
fn keys_without_effect_draw_a_warning_naming_why() {
    let text = "[pgmoneta]\nhost = *\nunix_socket_dir = /tmp\nbase_dir = /tmp\nhugepage = off\n\
                [primary]\nhost = localhost\nport = 5432\nuser = repl\nwal_slot = s\nextra = /etc\n";
    let (_, warnings) =
        Config::parse_with_env(text, "pgmoneta.conf", &|_: &str| -> Option<String> { None }).check().unwrap();
    let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|w| w.contains("hugepage") && w.contains("no effect here") && w.contains("shared memory")),
        "{text:?}"
    );
    assert!(text.iter().any(|w| w.contains("[primary] extra") && w.contains("no effect here")), "{text:?}");
    assert_eq!(text.len(), 2, "{text:?}");
}
