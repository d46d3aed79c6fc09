//! How replies are shown: `raw` (the daemon's JSON as sent), `json` (translated for people:
//! names for codes, sizes in units, LSNs as `X/X`), and `text` (the translated document as an
//! indented listing, with aligned tables for `list-backup` and `status`).

use pgmoneta_wire::management::response::{
    self, ClusterServer, ClusterStatusResponse, ListBackupResponse, StatusResponse,
};
use serde_json::{Map, Value};

/// Keys whose numbers are byte counts.
const SIZE_KEYS: &[&str] = &[
    "BackupSize",
    "RestoreSize",
    "BiggestFileSize",
    "UsedSpace",
    "FreeSpace",
    "TotalSpace",
    "ServerSize",
    "WorkspaceFreeSpace",
    "HotStandbySize",
    "Delta",
    "WalLag",
];

/// `1.23MB` style, base 1024, as upstream prints sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

pub use pgmoneta_storage::info::{compression_name, encryption_name};

/// The name of a wire compression code.
pub fn wire_compression_name(code: i64) -> &'static str {
    match code {
        1 => "gzip",
        2 => "zstd",
        3 => "lz4",
        4 => "bzip2",
        _ => "none",
    }
}

fn command_name(id: i64) -> String {
    pgmoneta_wire::management::Command::from_id(id as u32).name().to_owned()
}

fn translate_object(m: &mut Map<String, Value>, in_header: bool) {
    // LSN halves become one `X/X` value.
    for name in ["Start", "End", "Checkpoint"] {
        let (hi, lo) = (format!("{name}HiLSN"), format!("{name}LoLSN"));
        if let (Some(h), Some(l)) = (m.get(&hi).and_then(Value::as_u64), m.get(&lo).and_then(Value::as_u64)) {
            m.remove(&hi);
            m.remove(&lo);
            m.insert(format!("{name}LSN"), Value::String(format!("{h:X}/{l:X}")));
        }
    }
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        let v = m.get_mut(&k).expect("key listed");
        match (k.as_str(), &*v) {
            ("Command", Value::Number(n)) if in_header => *v = Value::String(command_name(n.as_i64().unwrap_or(0))),
            ("Output", Value::Number(n)) if in_header => {
                *v = Value::String(
                    ["text", "json", "raw"].get(n.as_u64().unwrap_or(0) as usize).unwrap_or(&"text").to_string(),
                )
            }
            ("Compression", Value::Number(n)) if in_header => {
                *v = Value::String(wire_compression_name(n.as_i64().unwrap_or(0)).into())
            }
            ("Compression", Value::Number(n)) => *v = Value::String(compression_name(n.as_i64().unwrap_or(0))),
            ("Encryption", Value::Number(n)) => *v = Value::String(encryption_name(n.as_i64().unwrap_or(0)).into()),
            ("Valid", Value::Number(n)) => {
                *v = Value::String(
                    match n.as_i64() {
                        Some(1) => "yes",
                        Some(0) => "no",
                        _ => "unknown",
                    }
                    .into(),
                )
            }
            (k, Value::Number(n)) if k.starts_with("Retention") && n.as_i64() == Some(-1) => {
                *v = Value::String("Unspecified".into())
            }
            (k, Value::Number(n)) if SIZE_KEYS.contains(&k) => *v = Value::String(human_size(n.as_u64().unwrap_or(0))),
            ("WAL", Value::Number(n)) => *v = Value::String(human_size(n.as_u64().unwrap_or(0))),
            (_, Value::Object(_)) => {
                if let Value::Object(inner) = v {
                    translate_object(inner, false);
                }
            }
            (_, Value::Array(_)) => {
                if let Value::Array(items) = v {
                    for item in items {
                        if let Value::Object(inner) = item {
                            translate_object(inner, false);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The reply translated for people.
pub fn translate(doc: &Value) -> Value {
    let mut v = doc.clone();
    if let Value::Object(top) = &mut v {
        for (k, section) in top.iter_mut() {
            if let Value::Object(m) = section {
                translate_object(m, k == "Header");
            }
        }
    }
    v
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An indented listing of `v`, keys sorted, list items as `- `.
pub fn listing(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                match &m[k] {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        listing(&m[k], indent + 2, out);
                    }
                    Value::Array(items) if !items.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        listing(&m[k], indent + 2, out);
                    }
                    Value::Object(_) | Value::Array(_) => out.push_str(&format!("{pad}{k}: \n")),
                    other => out.push_str(&format!("{pad}{k}: {}\n", scalar(other))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) => {
                        let mut inner = String::new();
                        listing(item, indent + 2, &mut inner);
                        let mut lines = inner.lines();
                        if let Some(first) = lines.next() {
                            out.push_str(&format!("{pad}- {}\n", first.trim_start()));
                        }
                        for l in lines {
                            out.push_str(l);
                            out.push('\n');
                        }
                    }
                    other => out.push_str(&format!("{pad}- {}\n", scalar(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Rows as an aligned table with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn valid_word(valid: i8) -> String {
    match valid {
        1 => "yes",
        0 => "no",
        _ => "unknown",
    }
    .into()
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.into()
}

fn list_backup_text(server: &str, r: &ListBackupResponse) -> String {
    let mut out = format!("Server: {server}\nNumberOfBackups: {}\n", r.number_of_backups);
    let rows: Vec<Vec<String>> = r
        .backups
        .iter()
        .map(|b| {
            vec![
                b.backup.clone(),
                valid_word(b.valid),
                yes_no(b.keep),
                human_size(b.backup_size),
                human_size(b.restore_size),
                human_size(b.wal),
                compression_name(b.compression),
                encryption_name(b.encryption).into(),
                if b.incremental { format!("incremental of {}", b.incremental_parent) } else { "full".into() },
                b.comments.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["Backup", "Valid", "Keep", "Size", "Restore", "WAL", "Compression", "Encryption", "Type", "Comments"],
            &rows,
        ));
    }
    out
}

fn cluster_server_line(s: &ClusterServer) -> String {
    let role = if s.role.is_empty() { "unknown role" } else { s.role.as_str() };
    let mut line = format!("  {}: {role}, WAL to {}, {} backups", s.server, s.archive_end, s.number_of_backups);
    if let Some(lag) = s.lag_bytes {
        line.push_str(&format!(", {} of WAL behind", human_size(lag)));
    }
    if let Some(missing) = s.missing_backups.filter(|m| *m > 0) {
        line.push_str(&format!(", {missing} backups missing"));
    }
    line.push('\n');
    line
}

fn cluster_status_text(r: &ClusterStatusResponse) -> String {
    let mut out = format!("Node {}\n", r.node);
    for s in &r.servers {
        out.push_str(&cluster_server_line(s));
    }
    for p in &r.peers {
        let state = match (&p.problem, p.last_heard_ms) {
            _ if p.reachable => format!("reachable, heard {} ms ago", p.last_heard_ms.unwrap_or(0)),
            (Some(problem), _) => format!("unreachable: {problem}"),
            (None, Some(ms)) => format!("unreachable, last heard {} s ago", ms / 1000),
            (None, None) => "never heard".to_owned(),
        };
        out.push_str(&format!("Peer {} ({}): {state}\n", p.node, p.address));
        for s in &p.servers {
            out.push_str(&cluster_server_line(s));
        }
    }
    out
}

fn status_text(r: &StatusResponse, details: bool) -> String {
    let mut out = String::new();
    for (k, v) in [
        ("UsedSpace", human_size(r.used_space)),
        ("FreeSpace", human_size(r.free_space)),
        ("TotalSpace", human_size(r.total_space)),
        ("Workers", r.workers.to_string()),
        ("NumberOfServers", r.number_of_servers.to_string()),
    ] {
        out.push_str(&format!("{k}: {v}\n"));
    }
    let rows: Vec<Vec<String>> = r
        .servers
        .iter()
        .map(|s| {
            let active = [
                ("backup", s.active_backup),
                ("restore", s.active_restore),
                ("archive", s.active_archive),
                ("delete", s.active_delete),
                ("retention", s.active_retention),
                ("verify", s.active_verify),
            ]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(",");
            vec![
                s.server.clone(),
                if s.online { "online" } else { "offline" }.into(),
                if s.primary { "primary" } else { "standby" }.into(),
                yes_no(s.wal_streaming),
                s.wal_flushed.clone(),
                human_size(s.wal_lag),
                s.number_of_backups.to_string(),
                human_size(s.server_size),
                if active.is_empty() { "-".into() } else { active },
                s.problems.join("; "),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["Server", "State", "Role", "Streaming", "Flushed", "Lag", "Backups", "Size", "Active", "Problems"],
        &rows,
    ));
    if details {
        for s in &r.servers {
            let backups = s.backups.as_deref().unwrap_or_default();
            if backups.is_empty() {
                continue;
            }
            out.push_str(&format!("\n{}:\n", s.server));
            let rows: Vec<Vec<String>> = backups
                .iter()
                .map(|b| {
                    vec![
                        b.backup.clone(),
                        valid_word(b.valid),
                        human_size(b.backup_size),
                        human_size(b.restore_size),
                        human_size(b.wal),
                        b.comments.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(&["Backup", "Valid", "Size", "Restore", "WAL", "Comments"], &rows));
        }
    }
    out
}

/// Text for a reply of `command` as received: tables for `list-backup` and `status` (read as
/// their typed responses), an indented listing of the translated reply for the rest, and for a
/// response that does not read as its type.
pub fn text(command: pgmoneta_wire::management::Command, reply: &Value) -> String {
    use pgmoneta_wire::management::Command as C;
    let translated = translate(reply);
    let ok = translated.get("Outcome").and_then(|o| o.get("Status")).and_then(Value::as_bool).unwrap_or(false);
    let mut out = String::new();
    if !ok {
        listing(translated.get("Outcome").unwrap_or(&Value::Null), 0, &mut out);
        return out;
    }
    let response = reply.get("Response").and_then(Value::as_object).cloned().unwrap_or_default();
    let typed = match command {
        C::ListBackup => response::read::<ListBackupResponse>(&response).ok().map(|r| {
            let server = response.get("Server").map(scalar).unwrap_or_default();
            list_backup_text(&server, &r)
        }),
        C::Status | C::StatusDetails => {
            response::read::<StatusResponse>(&response).ok().map(|r| status_text(&r, command == C::StatusDetails))
        }
        C::ClusterStatus => response::read::<ClusterStatusResponse>(&response).ok().map(|r| cluster_status_text(&r)),
        _ => None,
    };
    if let Some(text) = typed {
        return text;
    }
    if let Some(Value::Object(m)) = translated.get("Response") {
        let mut m = m.clone();
        m.remove("ServerVersion");
        listing(&Value::Object(m), 0, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_and_codes_read_like_upstream() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1536), "1.50kB");
        assert_eq!(human_size(5 << 30), "5.00GB");
        assert_eq!(compression_name(18), "zstd");
        assert_eq!(compression_name(35), "server-lz4");
        assert_eq!(encryption_name(1), "aes-256-gcm");
    }

    #[test]
    fn translates_a_reply() {
        let doc = json!({
            "Header": {"Command": 18, "Output": 1, "Compression": 2, "Encryption": 1},
            "Response": {"BackupSize": 2048, "Compression": 18, "Encryption": 0, "Valid": 1,
                         "StartHiLSN": 1, "StartLoLSN": 0x2A000028u32, "RetentionWeeks": -1},
            "Outcome": {"Status": true}
        });
        let t = translate(&doc);
        assert_eq!(t["Header"]["Command"], "info");
        assert_eq!(t["Header"]["Compression"], "zstd");
        assert_eq!(t["Header"]["Encryption"], "aes-256-gcm");
        assert_eq!(t["Response"]["BackupSize"], "2.00kB");
        assert_eq!(t["Response"]["Compression"], "zstd");
        assert_eq!(t["Response"]["Valid"], "yes");
        assert_eq!(t["Response"]["StartLSN"], "1/2A000028");
        assert_eq!(t["Response"]["RetentionWeeks"], "Unspecified");
    }

    #[test]
    fn lists_and_tables() {
        let mut out = String::new();
        listing(&json!({"b": [ {"x": 1, "y": "z"}, 2 ], "a": "v"}), 0, &mut out);
        assert_eq!(out, "a: v\nb:\n  - x: 1\n    y: z\n  - 2\n");
        let t = table(&["A", "Long"], &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(t, "A    Long\nxyz  1\nq    22\n");
    }

    #[test]
    fn cluster_status_is_one_line_per_node_and_server() {
        use pgmoneta_wire::management::Command;
        let reply = json!({
            "Header": {"Command": 1000},
            "Outcome": {"Status": true},
            "Response": {"Node": "a", "ServerVersion": "0.22.0",
                "Servers": [{"Server": "primary", "Role": "active", "ArchiveEnd": "0/5000000", "NumberOfBackups": 2}],
                "Peers": [
                    {"Node": "b", "Address": "127.0.0.1:5010", "Reachable": true, "LastHeardMs": 420,
                     "Servers": [{"Server": "primary", "Role": "follower", "ArchiveEnd": "0/4000000",
                                  "NumberOfBackups": 1, "LagBytes": 16777216, "MissingBackups": 1}]},
                    {"Node": "c", "Address": "127.0.0.1:5011", "Reachable": false, "Problem": "refused", "Servers": []}]}
        });
        let text = text(Command::ClusterStatus, &reply);
        assert_eq!(
            text,
            "Node a\n  primary: active, WAL to 0/5000000, 2 backups\n\
             Peer b (127.0.0.1:5010): reachable, heard 420 ms ago\n\
             \x20 primary: follower, WAL to 0/4000000, 1 backups, 16.00MB of WAL behind, 1 backups missing\n\
             Peer c (127.0.0.1:5011): unreachable: refused\n"
        );
    }

    #[test]
    fn list_backup_and_status_read_as_typed_responses() {
        use pgmoneta_wire::management::Command;
        let reply = json!({
            "Header": {"Command": 2},
            "Outcome": {"Status": true},
            "Response": {"Server": "primary", "ServerVersion": "0.1.0", "NumberOfBackups": 1, "Backups": [
                {"Server": "primary", "Backup": "20261206101010", "Keep": true, "Valid": 1, "BackupSize": 2048,
                 "RestoreSize": 4096, "BiggestFileSize": 1, "Compression": 18, "Encryption": 1, "Comments": "",
                 "Incremental": true, "IncrementalParent": "20261206090000", "WAL": 16_777_216u64}]}
        });
        let out = text(Command::ListBackup, &reply);
        assert!(out.starts_with("Server: primary\nNumberOfBackups: 1\n"), "{out}");
        let row = out.lines().last().unwrap();
        for cell in ["20261206101010", "yes", "2.00kB", "4.00kB", "16.00MB", "zstd", "aes-256-gcm"] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert!(row.contains("incremental of 20261206090000"), "{row}");
        // A response whose fields do not have their types is listed as it came.
        let odd = json!({"Outcome": {"Status": true}, "Response": {"Servers": "none", "UsedSpace": 1}});
        assert_eq!(text(Command::Status, &odd), "Servers: none\nUsedSpace: 1B\n");
        let status = json!({"Outcome": {"Status": true}, "Response": {"UsedSpace": 1024, "Workers": 2,
            "NumberOfServers": 1, "Servers": [{"Server": "primary", "Online": true, "Primary": true,
            "WalStreaming": true, "WalFlushed": "0/3000148", "WalLag": 0, "ActiveVerify": true,
            "Problems": ["a", "b"]}]}});
        let out = text(Command::Status, &status);
        assert!(out.starts_with("UsedSpace: 1.00kB\n"), "{out}");
        let row = out.lines().last().unwrap();
        for cell in ["primary", "online", "yes", "0/3000148", "verify", "a; b"] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
    }
}
