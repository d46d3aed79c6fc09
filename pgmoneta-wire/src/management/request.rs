//! The `Request` object of each management command, typed: what `pgmoneta-cli` sends and the
//! daemon reads. Field names are upstream's (`Server`, `Backup`, `S3Prefix`...). Reading is
//! tolerant as upstream's clients need: unknown fields are ignored, a missing field is its
//! default, text fields accept numbers, flags accept booleans, `"true"`/`"on"`/`"yes"`/`"1"`
//! and numbers. Writing sends every field, `null` for an absent optional one.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a field is read from whatever JSON value it holds.
trait Field: Sized {
    fn from_json(v: Value) -> Self;
}

/// A text field: a string, or a number as its digits; anything else is absent.
impl Field for Option<String> {
    fn from_json(v: Value) -> Self {
        match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A flag: a boolean, a number (non-zero), or `true`, `on`, `yes`, `1`.
impl Field for bool {
    fn from_json(v: Value) -> Self {
        match v {
            Value::Bool(b) => b,
            Value::String(s) => matches!(s.as_str(), "true" | "on" | "yes" | "1"),
            Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
            _ => false,
        }
    }
}

fn field<'de, D: Deserializer<'de>, T: Field>(d: D) -> Result<T, D::Error> {
    Ok(T::from_json(Value::deserialize(d)?))
}

macro_rules! request {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $kind:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            $($(#[$fdoc])* #[serde(default, deserialize_with = "field")] pub $field: request!(@ty $kind),)*
        }
    };
    (@ty text) => { Option<String> };
    (@ty flag) => { bool };
}

request!(
    /// `backup` (command 1): a full backup, or an incremental one on `backup`.
    BackupRequest {
        /// The server.
        server: text,
        /// The parent of an incremental backup (a label, `oldest`, `newest`).
        backup: text,
    }
);

request!(
    /// `list-backup` (3).
    ListBackupRequest {
        /// The server.
        server: text,
        /// `asc` (the default) or `desc`.
        sort: text,
    }
);

request!(
    /// `restore` (6) and `archive` (9).
    RestoreRequest {
        /// The server.
        server: text,
        /// A label, `oldest`, `newest`.
        backup: text,
        /// The position: recovery target and options (`current`, `lsn=`, `xid=`, `timestamp=`,
        /// `name=`, `inclusive`, `timeline=`, `primary`, `replica`).
        position: text,
        /// The directory to restore or archive into.
        directory: text,
        /// Replace what is in the way.
        force: flag,
    }
);

request!(
    /// `delete` (4).
    DeleteRequest {
        /// The server.
        server: text,
        /// A label, `oldest`, `newest`.
        backup: text,
        /// Delete a retained backup too.
        force: flag,
    }
);

request!(
    /// `retain` (12) and `expunge` (13).
    KeepRequest {
        /// The server.
        server: text,
        /// A label, `oldest`, `newest`.
        backup: text,
        /// Also the backups an incremental backup builds on.
        cascade: flag,
    }
);

request!(
    /// `info` (22).
    InfoRequest {
        /// The server.
        server: text,
        /// A label, `oldest`, `newest`.
        backup: text,
    }
);

request!(
    /// `verify` (8).
    VerifyRequest {
        /// The server.
        server: text,
        /// A label, `oldest`, `newest`.
        backup: text,
        /// The directory the reply's file paths are given under.
        directory: text,
        /// `failed` (the default) or `all`.
        files: text,
    }
);

request!(
    /// `annotate` (25).
    AnnotateRequest {
        /// The server.
        server: text,
        /// A label, `oldest`, `newest`.
        backup: text,
        /// `add`, `update` or `remove`.
        action: text,
        /// The comment's key.
        key: text,
        /// The comment (not for `remove`).
        comment: text,
    }
);

request!(
    /// `mode` (28).
    ModeRequest {
        /// The server.
        server: text,
        /// `online` or `offline`.
        action: text,
    }
);

request!(
    /// `progress` (30).
    ProgressRequest {
        /// The server.
        server: text,
        /// The command whose progress is asked (`backup`).
        command: text,
    }
);

request!(
    /// `conf set` (27).
    ConfSetRequest {
        /// The key (`[pgmoneta]` key, or `<server>.<key>`).
        config_key: text,
        /// The new value.
        config_value: text,
    }
);

request!(
    /// `encrypt`, `decrypt`, `compress`, `decompress` (15, 14, 21, 20).
    FileRequest {
        /// The file, as the daemon sees it.
        source_file: text,
    }
);

request!(
    /// `s3 ls` (29).
    S3ListRequest {
        /// The server.
        server: text,
        /// A prefix under the server's backups.
        s3_prefix: text,
    }
);

request!(
    /// `s3 restore` (31).
    S3RestoreRequest {
        /// The server.
        server: text,
        /// The backup: a label, `oldest`, `newest`.
        s3_prefix: text,
        /// As [`RestoreRequest::position`].
        position: text,
        /// The directory to restore into.
        directory: text,
        /// Replace what is in the way.
        force: flag,
    }
);

request!(
    /// Any command that names only a server.
    ServerRequest {
        /// The server.
        server: text,
    }
);

/// Reads a request object as `T`. Never fails on a JSON object: what cannot be read is
/// absent.
pub fn parse<T: for<'de> Deserialize<'de> + Default>(request: &Map<String, Value>) -> T {
    T::deserialize(Value::Object(request.clone())).unwrap_or_default()
}

/// A request as the object sent in the document.
pub fn to_map<T: Serialize>(request: &T) -> Map<String, Value> {
    match serde_json::to_value(request) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn upstreams_requests_are_read_with_their_quirks() {
        // As upstream's client writes them: numbers where text is meant, flags as words,
        // fields this program does not know.
        let r: RestoreRequest = parse(&object(json!({
            "Server": "primary", "Backup": 20261206101010u64, "Position": "lsn=0/3000060,inclusive",
            "Directory": "/tmp/r", "Force": "on", "Unknown": [1, 2]
        })));
        assert_eq!(r.server.as_deref(), Some("primary"));
        assert_eq!(r.backup.as_deref(), Some("20261206101010"));
        assert_eq!(r.position.as_deref(), Some("lsn=0/3000060,inclusive"));
        assert!(r.force);
        let k: KeepRequest = parse(&object(json!({"Server": "primary", "Backup": "newest", "Cascade": 1})));
        assert!(k.cascade);
        let b: BackupRequest = parse(&object(json!({"Server": "primary", "Backup": null})));
        assert_eq!(b.backup, None);
        let s: S3RestoreRequest = parse(&object(json!({"Server": "p", "S3Prefix": "oldest", "Force": false})));
        assert_eq!((s.s3_prefix.as_deref(), s.force), (Some("oldest"), false));
        let c: ConfSetRequest = parse(&object(json!({"ConfigKey": "primary.workers", "ConfigValue": 4})));
        assert_eq!((c.config_key.as_deref(), c.config_value.as_deref()), (Some("primary.workers"), Some("4")));
        // A field of the wrong shape is absent, as before typing: never a failed request.
        let d: DeleteRequest = parse(&object(json!({"Server": ["x"], "Force": {"a": 1}})));
        assert_eq!(d, DeleteRequest::default());
    }

    #[test]
    fn every_request_round_trips_under_upstreams_names() {
        fn round<T: Serialize + for<'de> Deserialize<'de> + Default + PartialEq + std::fmt::Debug>(
            value: T,
            keys: &[&str],
        ) {
            let map = to_map(&value);
            let mut got: Vec<&str> = map.keys().map(String::as_str).collect();
            got.sort_unstable();
            let mut want = keys.to_vec();
            want.sort_unstable();
            assert_eq!(got, want);
            assert_eq!(parse::<T>(&map), value);
        }
        let s = || Some("primary".to_owned());
        let t = |v: &str| Some(v.to_owned());
        round(BackupRequest { server: s(), backup: None }, &["Server", "Backup"]);
        round(ListBackupRequest { server: s(), sort: t("desc") }, &["Server", "Sort"]);
        round(
            RestoreRequest { server: s(), backup: t("newest"), position: None, directory: t("/r"), force: true },
            &["Server", "Backup", "Position", "Directory", "Force"],
        );
        round(DeleteRequest { server: s(), backup: t("oldest"), force: false }, &["Server", "Backup", "Force"]);
        round(KeepRequest { server: s(), backup: t("oldest"), cascade: true }, &["Server", "Backup", "Cascade"]);
        round(InfoRequest { server: s(), backup: t("newest") }, &["Server", "Backup"]);
        round(
            VerifyRequest { server: s(), backup: t("newest"), directory: t("/v"), files: t("all") },
            &["Server", "Backup", "Directory", "Files"],
        );
        round(
            AnnotateRequest { server: s(), backup: t("newest"), action: t("add"), key: t("k"), comment: t("c") },
            &["Server", "Backup", "Action", "Key", "Comment"],
        );
        round(ModeRequest { server: s(), action: t("offline") }, &["Server", "Action"]);
        round(ProgressRequest { server: s(), command: t("backup") }, &["Server", "Command"]);
        round(ConfSetRequest { config_key: t("workers"), config_value: t("2") }, &["ConfigKey", "ConfigValue"]);
        round(FileRequest { source_file: t("/f") }, &["SourceFile"]);
        round(S3ListRequest { server: s(), s3_prefix: None }, &["Server", "S3Prefix"]);
        round(
            S3RestoreRequest { server: s(), s3_prefix: t("newest"), position: None, directory: t("/r"), force: false },
            &["Server", "S3Prefix", "Position", "Directory", "Force"],
        );
        round(ServerRequest { server: s() }, &["Server"]);
    }
}
