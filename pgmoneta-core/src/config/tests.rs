use super::*;

const GOOD: &str = "\
# Main section
[pgmoneta]
host = *
metrics = 5001
management = 5002
base_dir = ${BASE}/backup
unix_socket_dir = /tmp/
compression = server-zstd
compression_level = 9
storage_engine = local
encryption = aes-192
retention = 14,4,12,2
log_type = file
log_level = debug3
log_path = $BASE/log/pgmoneta.log
log_rotation_age = 1d
log_rotation_size = 10M
blocking_timeout = 2m
verification = 1w
metrics_cache_max_size = 512K
workers = 4
manifest = SHA256
hugepage = off
update_process_title = minimal

[primary]
host = localhost
port = 5432
user = repl
wal_slot = repl
retention = 30
hot_standby = /srv/hs1,/srv/hs2
hot_standby_overrides = /srv/o1|/srv/o2
hot_standby_tablespaces = /a->/b,16384->/c|
workers = 2
progress = on

[replica]
host = /var/run/postgresql
port = 5433
user = repl
wal_slot = repl2
follow = primary
";

fn env(name: &str) -> Option<String> {
    (name == "BASE").then(|| "/srv/pgmoneta".to_owned())
}

fn parse(text: &str) -> ParsedConfig {
    Config::parse_with_env(text, "pgmoneta.conf", &env)
}

fn errors(text: &str) -> Vec<String> {
    match parse(text).check() {
        Ok((_, warnings)) => panic!("expected errors, got none (warnings: {warnings:?})"),
        Err(CoreError::InvalidConfig { diagnostics }) => diagnostics.iter().map(|d| d.to_string()).collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// A valid file whose `[pgmoneta]` gets `extra` appended.
fn with_main(extra: &str) -> String {
    format!(
        "[pgmoneta]\nhost = *\nunix_socket_dir = /tmp\nbase_dir = /srv\n{extra}\n\n\
         [primary]\nhost = localhost\nport = 5432\nuser = repl\nwal_slot = repl\n"
    )
}

#[test]
fn parses_every_kind_of_value() {
    let (config, warnings) = parse(GOOD).check().unwrap();
    // Only the keys upstream has and this daemon does not use, each saying so.
    let mut noted: Vec<String> = warnings.iter().map(|w| w.key.clone().unwrap_or_default()).collect();
    noted.sort();
    assert_eq!(noted, ["hugepage", "metrics_cache_max_size", "progress", "update_process_title"], "{warnings:?}");
    assert!(warnings.iter().all(|w| w.message.contains("no effect here")), "{warnings:?}");
    let m = &config.main;
    assert_eq!(m.host.as_deref(), Some("*"));
    assert_eq!(m.base_dir.as_deref(), Some("/srv/pgmoneta/backup"));
    assert_eq!(m.log_path, "/srv/pgmoneta/log/pgmoneta.log");
    assert_eq!((m.metrics, m.management), (5001, 5002));
    assert_eq!(m.compression, Compression::ServerZstd);
    assert_eq!(m.compression_level, 9);
    assert_eq!(m.encryption, Encryption::Aes192Gcm);
    assert_eq!(m.retention, Retention { days: Some(14), weeks: Some(4), months: Some(12), years: Some(2) });
    assert_eq!(m.log_type, LogType::File);
    assert_eq!(m.log_level, LogLevel::Debug3);
    assert_eq!(m.log_rotation_age, TimeValue(86_400));
    assert_eq!(m.log_rotation_size, SizeValue(10 << 20));
    assert_eq!(m.blocking_timeout, TimeValue(120));
    assert_eq!(m.verification, TimeValue(604_800));
    assert_eq!(m.metrics_cache_max_size, SizeValue(512 << 10));
    assert_eq!(m.workers, 4);
    assert_eq!(m.hugepage, HugePage::Off);
    assert_eq!(m.update_process_title, UpdateProcessTitle::Minimal);
    // Untouched keys keep upstream's defaults.
    assert_eq!(m.retention_interval, 300);
    assert!(m.keep_alive && m.nodelay && !m.tls && m.link);

    assert_eq!(config.servers.len(), 2);
    let p = config.server("primary").unwrap();
    assert_eq!(
        (p.host.as_deref(), p.port, p.user.as_deref(), p.wal_slot.as_deref()),
        (Some("localhost"), Some(5432), Some("repl"), Some("repl"))
    );
    assert_eq!(
        config.effective_retention(p),
        Retention { days: Some(30), weeks: Some(4), months: Some(12), years: Some(2) }
    );
    assert_eq!(p.hot_standby.0, ["/srv/hs1", "/srv/hs2"]);
    assert_eq!(p.hot_standby_overrides.0, ["/srv/o1", "/srv/o2"]);
    assert_eq!(
        p.hot_standby_tablespaces.0,
        vec![vec![("/a".to_owned(), "/b".to_owned()), ("16384".to_owned(), "/c".to_owned())], vec![]]
    );
    assert_eq!((p.workers, p.max_rate, p.progress), (2, -1, Some(true)));
    let r = config.server("replica").unwrap();
    assert_eq!(r.follow.as_deref(), Some("primary"));
    assert_eq!(r.host.as_deref(), Some("/var/run/postgresql"));
}

#[test]
fn invalid_time_values_are_reported_with_line_and_key() {
    for bad in ["10x", "-1s", "1h5s", "1h 5s", "10 s", "abc"] {
        let errs = errors(&with_main(&format!("blocking_timeout = {bad}")));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        let want = format!("pgmoneta.conf:5: blocking_timeout: invalid time {bad:?}: ");
        assert!(errs[0].starts_with(&want), "{bad}: {}", errs[0]);
    }
}

#[test]
fn values_of_every_type_are_checked() {
    let cases = [
        ("metrics = 70000", "metrics: invalid number \"70000\""),
        ("keep_alive = maybe", "keep_alive: invalid boolean \"maybe\""),
        ("compression = rar", "compression: invalid compression \"rar\""),
        ("encryption = des", "encryption: invalid encryption \"des\""),
        (
            "manifest = md5",
            "manifest: invalid manifest algorithm \"md5\": expected one of sha512, sha-512, sha256, sha-256, crc32c",
        ),
        ("log_level = loud", "log_level: invalid log level \"loud\""),
        ("log_rotation_size = 10T", "log_rotation_size: invalid size \"10T\""),
        ("retention = 7,a", "retention: invalid retention \"7,a\": weeks must be a whole number"),
        ("retention = 7,0", "retention: weeks must be at least 1, got 0"),
        ("retention = 7,5,1", "retention: weeks must be at most 4 when months are set, got 5"),
        ("retention = -", "retention: days must be set"),
        ("retention_interval = 0", "retention_interval: must be at least 1 second"),
        ("storage_engine = tape", "storage_engine: invalid storage engine \"tape\""),
        ("metrics_cache_max_size = 2M", "metrics_cache_max_size: must be at most 1048576B"),
        ("base_dir = $UNSET_VARIABLE/x", "base_dir: environment variable UNSET_VARIABLE is not set"),
        ("console = 5003", "console: the web console needs metrics"),
        ("cluster_peers = b", "cluster_peers: invalid peer \"b\": no name (expected name=host:port)"),
        ("cluster_peers = b=h", "cluster_peers: invalid peer \"b=h\": no port"),
        ("cluster_peers = b=h:0", "cluster_peers: invalid peer \"b=h:0\": the port is 1 to 65535"),
        ("cluster_peers = b c=h:1", "cluster_peers: invalid peer \"b c=h:1\": a name is letters"),
        ("cluster_peers = b=h:1, b=k:2", "cluster_peers: peer \"b\" is named twice"),
        ("cluster = 5010", "cluster_node: is required when cluster is enabled"),
        ("cluster = 5010", "cluster_user: is required when cluster is enabled"),
        ("cluster = 5010", "tls: tls = on with tls_cert_file and tls_key_file is required when cluster is enabled"),
        ("cluster = 5010\ncluster_node = a\ncluster_peers = a=h:1", "cluster_peers: names this node (a) as a peer"),
        ("cluster = 5010\ncluster_heartbeat = 0", "cluster_heartbeat: must be at least 1 second"),
        (
            "cluster = 5010\ncluster_heartbeat = 3s",
            "cluster_takeover: must be at least twice cluster_heartbeat (3s), got 5s",
        ),
        ("management = 5002\ncluster = 5002", "cluster: port 5002 is already used by management"),
        ("metrics = 5001\nmanagement = 5001", "management: port 5001 is already used by metrics"),
        ("tls = on\nmanagement = 5002", "tls_cert_file: is required when tls = on"),
        ("storage_engine = local,ssh", "ssh_hostname: is required when storage_engine includes ssh"),
        ("storage_engine = s3", "[primary] s3_region: is required (here or in [pgmoneta])"),
        ("storage_engine = azure", "azure_container: is required when storage_engine includes azure"),
        ("storage_engine = gcs", "gcs_bucket: is required when storage_engine includes gcs"),
        (
            "storage_engine = s3\ns3_region = r\ns3_bucket = b\ns3_access_key_id = k",
            "[primary] s3_secret_access_key: is required (here or in [pgmoneta])",
        ),
    ];
    for (line, want) in cases {
        let errs = errors(&with_main(line));
        assert!(errs.iter().any(|e| e.contains(want)), "{line}: want {want:?} in {errs:#?}");
    }
}

#[test]
fn reports_every_problem_at_once() {
    let text = "\
key_before_section = 1
[pgmoneta]
host = *
retention = 7,0
blocking_timeout = 1h5s
nonsense line

[primary]
port = 5432
user = repl
follow = nowhere

[all]
host = x

[primary]
host = y
";
    let errs = errors(text);
    let want = [
        "pgmoneta.conf:1: key_before_section: set before any section: put it under [pgmoneta] or a server section",
        "pgmoneta.conf:4: retention: weeks must be at least 1, got 0 (use '-' to leave it unset)",
        "pgmoneta.conf:5: blocking_timeout: invalid time \"1h5s\": expected a whole number with at most one unit s, m, h, d or w and no spaces (like 30s, 5m, 2h, 1d, 1w)",
        "pgmoneta.conf:6: expected 'key = value', got \"nonsense line\"",
        "pgmoneta.conf:8: [primary] host: is required",
        "pgmoneta.conf:8: [primary] wal_slot: is required",
        "pgmoneta.conf:11: [primary] follow: no server section named [nowhere]",
        "pgmoneta.conf:13: [all]: 'all' is reserved and cannot name a server",
        "pgmoneta.conf:16: [primary]: server defined twice (first at line 8)",
        "pgmoneta.conf:2: unix_socket_dir: is required in [pgmoneta]",
        "pgmoneta.conf:2: base_dir: is required in [pgmoneta]",
    ];
    let mut sorted_want: Vec<&str> = want.to_vec();
    sorted_want.sort();
    let mut sorted_got: Vec<&str> = errs.iter().map(String::as_str).collect();
    sorted_got.sort();
    assert_eq!(sorted_got, sorted_want);
}

#[test]
fn missing_servers_and_duplicate_slots() {
    let errs = errors("[pgmoneta]\nhost = *\nunix_socket_dir = /tmp\nbase_dir = /srv\n");
    assert_eq!(errs, ["pgmoneta.conf:1: no server sections: add one [name] section per PostgreSQL server to back up"]);

    let text = format!("{}\n[second]\nhost = localhost\nport = 5432\nuser = repl\nwal_slot = repl\n", with_main(""));
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("[second] wal_slot: slot \"repl\" on localhost is also used by server [primary]"),
        "{}",
        errs[0]
    );
}

#[test]
fn server_retention_combines_with_main() {
    let base = with_main("retention = 7,-,6");
    let ok = base.replace("wal_slot = repl\n", "wal_slot = repl\nretention = -,4\n");
    let (config, _) = parse(&ok).check().unwrap();
    let s = &config.servers[0];
    assert_eq!(config.effective_retention(s).render(), "7,4,6,-");
    let bad = base.replace("wal_slot = repl\n", "wal_slot = repl\nretention = -,5\n");
    let errs = errors(&bad);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("[primary] retention: weeks must be at most 4 when months are set, got 5 (combined with [pgmoneta] retention 7,-,6,-)"));
}

#[test]
fn unknown_and_misplaced_keys_warn() {
    let text = with_main("colour = blue\nhost = 127.0.0.1")
        .replace("wal_slot = repl\n", "wal_slot = repl\nverification = 1d\nfoo=bar\n");
    let (config, warnings) = parse(&text).check().unwrap();
    assert_eq!(config.main.host.as_deref(), Some("127.0.0.1"));
    let got: Vec<String> = warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        got,
        [
            "pgmoneta.conf:5: warning: colour: unknown key in [pgmoneta] (value \"blue\" ignored)",
            "pgmoneta.conf:6: warning: host: set again; the value from line 2 is replaced",
            "pgmoneta.conf:13: warning: [primary] verification: only valid in [pgmoneta], not in a server section (value \"1d\" ignored)",
            "pgmoneta.conf:14: warning: [primary] foo: unknown key in a server section (value \"bar\" ignored)",
        ]
    );
}

#[test]
fn get_renders_in_upstream_format_and_set_round_trips() {
    let (mut config, _) = parse(GOOD).check().unwrap();
    let cases = [
        ("blocking_timeout", "2m"),
        ("pgmoneta.verification", "7d"),
        ("log_rotation_age", "1d"),
        ("log_rotation_size", "10485760B"),
        ("metrics_cache_max_age", "0s"),
        ("retention", "14,4,12,2"),
        ("compression", "server-zstd"),
        ("encryption", "aes-192-gcm"),
        ("manifest", "sha256"),
        ("keep_alive", "on"),
        ("tls", "off"),
        ("storage_engine", "local"),
        ("s3_region", ""),
        ("server.primary.retention", "30,-,-,-"),
        ("primary.port", "5432"),
        ("server.replica.follow", "primary"),
        ("server.primary.hot_standby_tablespaces", "/a->/b,16384->/c|"),
    ];
    for (key, want) in cases {
        assert_eq!(config.get(key).as_deref(), Ok(want), "{key}");
    }
    assert!(config.get("server.nope.port").unwrap_err().contains("no server named"));
    assert!(config.get("bogus").unwrap_err().contains("unknown key"));

    config.set("blocking_timeout", "45").unwrap();
    assert_eq!(config.get("blocking_timeout").unwrap(), "45s");
    config.set("server.primary.port", "6543").unwrap();
    assert_eq!(config.server("primary").unwrap().port, Some(6543));
    assert!(config.set("log_level", "chatty").unwrap_err().contains("invalid log level"));

    // Everything rendered parses back to the same configuration.
    let mut text = String::from("[pgmoneta]\n");
    for (k, v) in config.main_entries() {
        if !v.is_empty() {
            text.push_str(&format!("{k} = \"{v}\"\n"));
        }
    }
    for s in &config.servers {
        text.push_str(&format!("[{}]\n", s.name));
        for (k, v) in Config::server_entries(s) {
            if !v.is_empty() {
                text.push_str(&format!("{k} = \"{v}\"\n"));
            }
        }
    }
    let (reparsed, _) = Config::parse_with_env(&text, "rendered", &|_| None).check().unwrap();
    assert_eq!(reparsed.main, config.main);
    assert_eq!(reparsed.servers, config.servers);
}

#[test]
fn secrets_are_redacted_in_debug() {
    let (config, _) =
        parse(&with_main("s3_secret_access_key = hunter2\nazure_shared_key = topsecret")).check().unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2") && !debug.contains("topsecret"));
    assert_eq!(config.get("s3_secret_access_key").unwrap(), "hunter2");
}

#[test]
fn a_cluster_node_is_configured_in_pgmoneta_and_round_trips() {
    let text = with_main(
        "cluster = 5010\ncluster_node = a\ncluster_user = admin\ncluster_peers = b=10.0.0.2:5010, c=[::1]:5011\n\
         cluster_heartbeat = 2s\ncluster_takeover = 8s\ntls = on\ntls_cert_file = /c\ntls_key_file = /k",
    );
    let (config, warnings) = parse(&text).check().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let m = &config.main;
    assert_eq!((m.cluster, m.cluster_node.as_deref(), m.cluster_user.as_deref()), (5010, Some("a"), Some("admin")));
    let peers: Vec<(&str, &str, u16)> = m.cluster_peers.0.iter().map(|p| (&*p.name, &*p.host, p.port)).collect();
    assert_eq!(peers, [("b", "10.0.0.2", 5010), ("c", "::1", 5011)]);
    assert_eq!((m.cluster_heartbeat.seconds(), m.cluster_takeover.seconds()), (2, 8));
    assert_eq!(ConfValue::render(&m.cluster_peers), "b=10.0.0.2:5010,c=[::1]:5011");
}
