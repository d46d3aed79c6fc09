//! `reload`, `conf ls`, `conf get` and `conf set`.

use std::sync::Arc;

use pgmoneta_core::config::Config;
use pgmoneta_wire::management::error_code as ec;
use pgmoneta_wire::management::request::{self, ConfSetRequest};
use pgmoneta_wire::management::response::{self, ConfLsResponse, ConfSetResponse, ReloadResponse};
use serde_json::{json, Map, Value};

use super::{fail, reply, Reply};
use crate::state::Shared;

pub(super) fn reload_cmd(shared: &Arc<Shared>) -> Reply {
    let restart = crate::reload(shared).map_err(|e| fail(ec::UNKNOWN_COMMAND, format!("reload: {e}")))?;
    reply(&ReloadResponse { restart })
}

pub(super) fn conf_ls(shared: &Shared) -> Map<String, Value> {
    let p = &shared.paths;
    response::to_map(&ConfLsResponse {
        main_configuration_path: p.config.display().to_string(),
        users_configuration_path: p.users.display().to_string(),
        admin_configuration_path: p.admins.as_ref().map(|a| a.display().to_string()).unwrap_or_default(),
    })
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

pub(super) fn conf_get(shared: &Shared, config: &Config) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in config.main_entries() {
        m.insert(k.to_owned(), main_value(config, k, &v));
    }
    // Upstream shows the algorithm's name in capitals.
    m.insert("manifest".into(), json!(config.main.manifest.as_str().to_ascii_uppercase()));
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

pub(super) fn conf_set(shared: &Arc<Shared>, req: &Map<String, Value>) -> Reply {
    let r: ConfSetRequest = request::parse(req);
    let (Some(key), Some(value)) = (r.config_key, r.config_value) else {
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
    let main_key = !key.contains('.') || key.starts_with("pgmoneta.");
    if main_key && crate::RESTART_KEYS.contains(&bare) {
        return reply(&ConfSetResponse {
            status: "success_restart_required".into(),
            message: format!("{key} takes effect after a restart; the current value stays in force"),
            config_key: key,
            requested_value: Some(new),
            current_value: Some(old),
            restart_required: true,
            ..ConfSetResponse::default()
        });
    }
    *shared.config.write() = Arc::new(next);
    crate::logging::install(&shared.config().main);
    log::info!("conf set: {key} = {new} (was {old})");
    reply(&ConfSetResponse {
        status: "success".into(),
        message: format!("{key} changed"),
        config_key: key,
        old_value: Some(old),
        new_value: Some(new),
        ..ConfSetResponse::default()
    })
}
