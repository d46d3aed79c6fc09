//! The typed configuration of the daemon: `[pgmoneta]` and one section per server.

use std::fmt;

use super::values::*;

/// A secret string (keys, passwords): shown as `********` by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

impl ConfValue for Secret {
    fn parse_value(text: &str) -> Result<Secret, String> {
        Ok(Secret(text.to_owned()))
    }
    fn render(&self) -> String {
        self.0.clone()
    }
}

/// One part of a value per hot standby, separated by `|`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PerStandby(pub Vec<String>);

impl ConfValue for PerStandby {
    fn parse_value(text: &str) -> Result<PerStandby, String> {
        // Nothing at all is no part for any standby, as an unset key is.
        if text.trim().is_empty() {
            return Ok(PerStandby::default());
        }
        Ok(PerStandby(text.split('|').map(|s| s.trim().to_owned()).collect()))
    }
    fn render(&self) -> String {
        self.0.join("|")
    }
}

/// Tablespace mappings per hot standby: `from->to,from->to|from->to`, where `from` is a path or
/// a tablespace OID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TablespaceMaps(pub Vec<Vec<(String, String)>>);

impl ConfValue for TablespaceMaps {
    fn parse_value(text: &str) -> Result<TablespaceMaps, String> {
        let mut out = Vec::new();
        if text.trim().is_empty() {
            return Ok(TablespaceMaps(out));
        }
        for group in text.split('|') {
            let mut maps = Vec::new();
            for item in group.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item.split_once("->") {
                    Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                        maps.push((from.trim().to_owned(), to.trim().to_owned()))
                    }
                    _ => return Err(format!("invalid tablespace mapping {item:?}: expected from->to")),
                }
            }
            out.push(maps);
        }
        Ok(TablespaceMaps(out))
    }
    fn render(&self) -> String {
        let group =
            |g: &Vec<(String, String)>| g.iter().map(|(f, t)| format!("{f}->{t}")).collect::<Vec<_>>().join(",");
        self.0.iter().map(group).collect::<Vec<_>>().join("|")
    }
}

/// S3-compatible object storage settings; in a server section, unset keys come from `[pgmoneta]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Config {
    /// `s3_region`.
    pub region: Option<String>,
    /// `s3_access_key_id`.
    pub access_key_id: Option<String>,
    /// `s3_secret_access_key`.
    pub secret_access_key: Option<Secret>,
    /// `s3_bucket`.
    pub bucket: Option<String>,
    /// `s3_base_dir`: key prefix inside the bucket.
    pub base_dir: Option<String>,
    /// `s3_storage_class`, sent only to AWS (no custom endpoint).
    pub storage_class: Option<String>,
    /// `s3_endpoint`: a custom endpoint (MinIO, Garage), addressed path-style unless
    /// `s3_virtual_host` is on.
    pub endpoint: Option<String>,
    /// `s3_port`.
    pub port: Option<u16>,
    /// `s3_use_tls`.
    pub use_tls: Option<bool>,
    /// `s3_virtual_host`: address a custom endpoint virtual-host style
    /// (`<bucket>.<s3_endpoint>`); AWS itself always is.
    pub virtual_host: Option<bool>,
}

impl S3Config {
    /// Each setting of `self`, or of `fallback` where `self` has none.
    pub fn or(&self, fallback: &S3Config) -> S3Config {
        S3Config {
            region: self.region.clone().or_else(|| fallback.region.clone()),
            access_key_id: self.access_key_id.clone().or_else(|| fallback.access_key_id.clone()),
            secret_access_key: self.secret_access_key.clone().or_else(|| fallback.secret_access_key.clone()),
            bucket: self.bucket.clone().or_else(|| fallback.bucket.clone()),
            base_dir: self.base_dir.clone().or_else(|| fallback.base_dir.clone()),
            storage_class: self.storage_class.clone().or_else(|| fallback.storage_class.clone()),
            endpoint: self.endpoint.clone().or_else(|| fallback.endpoint.clone()),
            port: self.port.or(fallback.port),
            use_tls: self.use_tls.or(fallback.use_tls),
            virtual_host: self.virtual_host.or(fallback.virtual_host),
        }
    }
}

/// Azure Blob storage settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureConfig {
    /// `azure_storage_account`.
    pub storage_account: Option<String>,
    /// `azure_container`.
    pub container: Option<String>,
    /// `azure_shared_key`.
    pub shared_key: Option<Secret>,
    /// `azure_base_dir`.
    pub base_dir: Option<String>,
    /// `azure_endpoint`: a custom endpoint (Azurite).
    pub endpoint: Option<String>,
    /// `azure_port` (default 443).
    pub port: Option<u16>,
    /// `azure_use_tls`.
    pub use_tls: Option<bool>,
}

/// Google Cloud Storage settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcsConfig {
    /// `gcs_bucket`.
    pub bucket: Option<String>,
    /// `gcs_base_dir`: object name prefix inside the bucket.
    pub base_dir: Option<String>,
    /// `gcs_credentials_file`: a service account key file (JSON); without it, the usual
    /// `GOOGLE_*` variables, application default credentials or the instance metadata server.
    pub credentials_file: Option<String>,
}

/// The `[pgmoneta]` section. Field names are the configuration keys.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each field is the key of the same name, documented in docs/configuration.md
pub struct MainConfig {
    pub host: Option<String>,
    pub unix_socket_dir: Option<String>,
    pub base_dir: Option<String>,
    pub metrics: u16,
    pub metrics_cache_max_age: TimeValue,
    pub metrics_cache_max_size: SizeValue,
    pub metrics_cert_file: Option<String>,
    pub metrics_key_file: Option<String>,
    pub metrics_ca_file: Option<String>,
    pub console: u16,
    pub console_actions: bool,
    pub nagios: u16,
    pub management: u16,
    pub compression: Compression,
    pub compression_level: i32,
    pub manifest: ManifestHash,
    pub workers: u32,
    pub workspace: Option<String>,
    pub storage_engine: StorageEngines,
    pub encryption: Encryption,
    pub create_slot: bool,
    pub ssh_hostname: Option<String>,
    pub ssh_username: Option<String>,
    pub ssh_base_dir: Option<String>,
    pub ssh_port: u16,
    pub ssh_ciphers: List,
    pub ssh_public_key_file: Option<String>,
    pub ssh_private_key_file: Option<String>,
    pub s3: S3Config,
    pub azure: AzureConfig,
    pub gcs: GcsConfig,
    pub remote_retry_timeout: TimeValue,
    pub retention: Retention,
    pub retention_interval: u64,
    pub verification: TimeValue,
    pub log_type: LogType,
    pub log_level: LogLevel,
    pub log_path: String,
    pub log_rotation_age: TimeValue,
    pub log_rotation_size: SizeValue,
    pub log_line_prefix: String,
    pub log_mode: LogMode,
    pub tls: bool,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub tls_ca_file: Option<String>,
    pub libev: EventBackend,
    pub max_rate: u64,
    pub progress: bool,
    pub blocking_timeout: TimeValue,
    pub keep_alive: bool,
    pub nodelay: bool,
    pub non_blocking: bool,
    pub backlog: u32,
    pub hugepage: HugePage,
    pub direct_io: DirectIo,
    pub pidfile: Option<String>,
    pub update_process_title: UpdateProcessTitle,
    pub link: bool,
    pub cluster: u16,
    pub cluster_node: Option<String>,
    pub cluster_peers: Peers,
    pub cluster_user: Option<String>,
    pub cluster_heartbeat: TimeValue,
    pub cluster_takeover: TimeValue,
}

impl Default for MainConfig {
    fn default() -> MainConfig {
        MainConfig {
            host: None,
            unix_socket_dir: None,
            base_dir: None,
            metrics: 0,
            metrics_cache_max_age: TimeValue(0),
            metrics_cache_max_size: SizeValue(256 << 10),
            metrics_cert_file: None,
            metrics_key_file: None,
            metrics_ca_file: None,
            console: 0,
            console_actions: true,
            nagios: 0,
            management: 0,
            compression: Compression::ClientZstd,
            compression_level: 3,
            manifest: ManifestHash::Sha512,
            workers: 0,
            workspace: None,
            storage_engine: StorageEngines::default(),
            encryption: Encryption::None,
            create_slot: false,
            ssh_hostname: None,
            ssh_username: None,
            ssh_base_dir: None,
            ssh_port: 0,
            ssh_ciphers: List(vec!["aes256-ctr".into(), "aes192-ctr".into(), "aes128-ctr".into()]),
            ssh_public_key_file: None,
            ssh_private_key_file: None,
            s3: S3Config::default(),
            azure: AzureConfig::default(),
            gcs: GcsConfig::default(),
            remote_retry_timeout: TimeValue(180),
            retention: Retention::DEFAULT,
            retention_interval: 300,
            verification: TimeValue(0),
            log_type: LogType::Console,
            log_level: LogLevel::Info,
            log_path: "pgmoneta.log".to_owned(),
            log_rotation_age: TimeValue(0),
            log_rotation_size: SizeValue(0),
            log_line_prefix: "%Y-%m-%d %H:%M:%S".to_owned(),
            log_mode: LogMode::Append,
            tls: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            libev: EventBackend::Auto,
            max_rate: 0,
            progress: false,
            blocking_timeout: TimeValue(30),
            keep_alive: true,
            nodelay: true,
            non_blocking: true,
            backlog: 16,
            hugepage: HugePage::Try,
            direct_io: DirectIo::Off,
            pidfile: None,
            update_process_title: UpdateProcessTitle::Verbose,
            link: true,
            cluster: 0,
            cluster_node: None,
            cluster_peers: Peers::default(),
            cluster_user: None,
            cluster_heartbeat: TimeValue(1),
            cluster_takeover: TimeValue(5),
        }
    }
}

/// A server section, `[name]`: the PostgreSQL cluster to back up. Unset values inherit from
/// `[pgmoneta]` where the key exists there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// The section name, used in paths and commands.
    pub name: String,
    /// Host name or address of PostgreSQL; a value starting with `/` is a Unix socket directory.
    pub host: Option<String>,
    /// Port of PostgreSQL.
    pub port: Option<u16>,
    /// Replication role; its password is in the users vault.
    pub user: Option<String>,
    /// Physical replication slot to stream WAL from.
    pub wal_slot: Option<String>,
    /// Create the slot when missing (overrides `[pgmoneta]`).
    pub create_slot: Option<bool>,
    /// Another server to fail over to.
    pub follow: Option<String>,
    /// Retention; unset parts come from `[pgmoneta]`.
    pub retention: Retention,
    /// A directory that receives an extra copy of WAL, in `<dir>/<server>/wal/`.
    pub wal_shipping: Option<String>,
    /// Scratch directory (overrides `[pgmoneta]`).
    pub workspace: Option<String>,
    /// Hot standby directories, up to 8.
    pub hot_standby: List,
    /// Directories copied over each hot standby, `|`-separated in hot standby order.
    pub hot_standby_overrides: PerStandby,
    /// Tablespace mappings per hot standby.
    pub hot_standby_tablespaces: TablespaceMaps,
    /// Worker threads; -1 inherits `[pgmoneta]`.
    pub workers: i32,
    /// `backup.manifest`'s checksum (overrides `[pgmoneta]`).
    pub manifest: Option<ManifestHash>,
    /// Base backup rate limit in bytes per second; -1 inherits `[pgmoneta]`.
    pub max_rate: i64,
    /// Progress tracking (overrides `[pgmoneta]`).
    pub progress: Option<bool>,
    /// Client certificate for TLS to PostgreSQL.
    pub tls_cert_file: Option<String>,
    /// Client key for TLS to PostgreSQL.
    pub tls_key_file: Option<String>,
    /// CA that signed PostgreSQL's certificate.
    pub tls_ca_file: Option<String>,
    /// Server-side files and directories fetched with each backup.
    pub extra: List,
    /// S3 settings overriding `[pgmoneta]`.
    pub s3: S3Config,
}

impl ServerConfig {
    /// A server section with nothing set but its name, inheriting everything else.
    pub fn new(name: impl Into<String>) -> ServerConfig {
        ServerConfig { name: name.into(), workers: -1, max_rate: -1, ..ServerConfig::default() }
    }
}

/// A configuration key: how to set it from text and render it back.
pub(crate) struct KeyDef<T> {
    pub name: &'static str,
    /// Whether `$VAR` and `${VAR}` are expanded in the value.
    pub path: bool,
    pub set: fn(&mut T, &str) -> Result<(), String>,
    pub get: fn(&T) -> String,
}

macro_rules! key {
    (path $name:literal => $($field:ident).+) => { key!(@ $name, true, $($field).+) };
    ($name:literal => $($field:ident).+) => { key!(@ $name, false, $($field).+) };
    (@ $name:literal, $path:expr, $($field:ident).+) => {
        KeyDef {
            name: $name,
            path: $path,
            set: |c, v| {
                c.$($field).+ = ConfValue::parse_value(v)?;
                Ok(())
            },
            get: |c| ConfValue::render(&c.$($field).+),
        }
    };
}
pub(crate) use key;

/// The S3 keys, shared by `[pgmoneta]` and server sections.
pub(crate) static S3_KEYS: &[KeyDef<S3Config>] = &[
    key!("s3_region" => region),
    key!("s3_access_key_id" => access_key_id),
    key!("s3_secret_access_key" => secret_access_key),
    key!("s3_bucket" => bucket),
    key!("s3_base_dir" => base_dir),
    key!("s3_storage_class" => storage_class),
    key!("s3_endpoint" => endpoint),
    key!("s3_port" => port),
    key!("s3_use_tls" => use_tls),
    key!("s3_virtual_host" => virtual_host),
];

/// The keys of `[pgmoneta]`, besides [`S3_KEYS`].
pub(crate) static MAIN_KEYS: &[KeyDef<MainConfig>] = &[
    key!("host" => host),
    key!(path "unix_socket_dir" => unix_socket_dir),
    key!(path "base_dir" => base_dir),
    key!("metrics" => metrics),
    key!("metrics_cache_max_age" => metrics_cache_max_age),
    key!("metrics_cache_max_size" => metrics_cache_max_size),
    key!(path "metrics_cert_file" => metrics_cert_file),
    key!(path "metrics_key_file" => metrics_key_file),
    key!(path "metrics_ca_file" => metrics_ca_file),
    key!("console" => console),
    key!("console_actions" => console_actions),
    key!("nagios" => nagios),
    key!("management" => management),
    key!("compression" => compression),
    key!("compression_level" => compression_level),
    key!("manifest" => manifest),
    key!("workers" => workers),
    key!(path "workspace" => workspace),
    key!("storage_engine" => storage_engine),
    key!("encryption" => encryption),
    key!("create_slot" => create_slot),
    key!("ssh_hostname" => ssh_hostname),
    key!("ssh_username" => ssh_username),
    key!(path "ssh_base_dir" => ssh_base_dir),
    key!("ssh_port" => ssh_port),
    key!("ssh_ciphers" => ssh_ciphers),
    key!(path "ssh_public_key_file" => ssh_public_key_file),
    key!(path "ssh_private_key_file" => ssh_private_key_file),
    key!("azure_storage_account" => azure.storage_account),
    key!("azure_container" => azure.container),
    key!("azure_shared_key" => azure.shared_key),
    key!("azure_base_dir" => azure.base_dir),
    key!("azure_endpoint" => azure.endpoint),
    key!("azure_port" => azure.port),
    key!("azure_use_tls" => azure.use_tls),
    key!("gcs_bucket" => gcs.bucket),
    key!("gcs_base_dir" => gcs.base_dir),
    key!(path "gcs_credentials_file" => gcs.credentials_file),
    key!("remote_retry_timeout" => remote_retry_timeout),
    key!("retention" => retention),
    key!("retention_interval" => retention_interval),
    key!("verification" => verification),
    key!("log_type" => log_type),
    key!("log_level" => log_level),
    key!(path "log_path" => log_path),
    key!("log_rotation_age" => log_rotation_age),
    key!("log_rotation_size" => log_rotation_size),
    key!("log_line_prefix" => log_line_prefix),
    key!("log_mode" => log_mode),
    key!("tls" => tls),
    key!(path "tls_cert_file" => tls_cert_file),
    key!(path "tls_key_file" => tls_key_file),
    key!(path "tls_ca_file" => tls_ca_file),
    key!("libev" => libev),
    key!("max_rate" => max_rate),
    key!("progress" => progress),
    key!("blocking_timeout" => blocking_timeout),
    key!("keep_alive" => keep_alive),
    key!("nodelay" => nodelay),
    key!("non_blocking" => non_blocking),
    key!("backlog" => backlog),
    key!("hugepage" => hugepage),
    key!("direct_io" => direct_io),
    key!(path "pidfile" => pidfile),
    key!("update_process_title" => update_process_title),
    key!("link" => link),
    key!("cluster" => cluster),
    key!("cluster_node" => cluster_node),
    key!("cluster_peers" => cluster_peers),
    key!("cluster_user" => cluster_user),
    key!("cluster_heartbeat" => cluster_heartbeat),
    key!("cluster_takeover" => cluster_takeover),
];

/// The keys of a server section, besides [`S3_KEYS`].
pub(crate) static SERVER_KEYS: &[KeyDef<ServerConfig>] = &[
    key!("host" => host),
    key!("port" => port),
    key!("user" => user),
    key!("wal_slot" => wal_slot),
    key!("create_slot" => create_slot),
    key!("follow" => follow),
    key!("retention" => retention),
    key!(path "wal_shipping" => wal_shipping),
    key!(path "workspace" => workspace),
    key!(path "hot_standby" => hot_standby),
    key!(path "hot_standby_overrides" => hot_standby_overrides),
    key!("hot_standby_tablespaces" => hot_standby_tablespaces),
    key!("workers" => workers),
    key!("manifest" => manifest),
    key!("max_rate" => max_rate),
    key!("progress" => progress),
    key!(path "tls_cert_file" => tls_cert_file),
    key!(path "tls_key_file" => tls_key_file),
    key!(path "tls_ca_file" => tls_ca_file),
    key!("extra" => extra),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_per_standby_value_is_no_value() {
        for text in ["", "  "] {
            assert_eq!(PerStandby::parse_value(text), Ok(PerStandby::default()));
            assert_eq!(TablespaceMaps::parse_value(text), Ok(TablespaceMaps::default()));
        }
        let two = PerStandby::parse_value("a| b").unwrap();
        assert_eq!(two, PerStandby(vec!["a".into(), "b".into()]));
        assert_eq!(PerStandby::parse_value(&two.render()), Ok(two));
        // An empty part for one standby of two is kept: it means "nothing for that one".
        assert_eq!(PerStandby::parse_value("|b").unwrap().0.len(), 2);
        let maps = TablespaceMaps::parse_value("/a->/b|16384->/c").unwrap();
        assert_eq!(TablespaceMaps::parse_value(&maps.render()), Ok(maps));
    }
}
