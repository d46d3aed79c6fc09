//! Remote repositories (`storage_engine` with `ssh`, `s3`, `azure`, `gcs`): which ones a server
//! has, the upload after each backup, and the thread that ships WAL files as they complete.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgmoneta_core::config::{Config, ServerConfig};
use pgmoneta_storage::remote::{self, AzureOptions, GcsOptions, RemoteSpec, RemoteTuning, S3Options, SftpOptions};

use crate::state::Shared;

/// How often finished WAL files are shipped to the remote repositories.
const WAL_SHIP_INTERVAL: Duration = Duration::from_secs(10);

/// How often the uploads that failed are tried again.
const UPLOAD_RETRY_INTERVAL: Duration = Duration::from_secs(30);

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

fn url(endpoint: &str, port: Option<u16>, tls: Option<bool>) -> String {
    if endpoint.contains("://") {
        return endpoint.to_owned();
    }
    let scheme = if tls.unwrap_or(false) { "https" } else { "http" };
    match port {
        Some(p) if p > 0 && !endpoint.contains(':') => format!("{scheme}://{endpoint}:{p}"),
        _ => format!("{scheme}://{endpoint}"),
    }
}

/// The remote repositories `server` is configured with, in `storage_engine`'s order.
pub fn specs(config: &Config, server: &ServerConfig) -> Vec<RemoteSpec> {
    let m = &config.main;
    let engines = m.storage_engine;
    let mut out = Vec::new();
    if engines.ssh {
        let private = m.ssh_private_key_file.clone().map_or_else(|| home().join(".ssh/id_rsa"), PathBuf::from);
        out.push(RemoteSpec::Sftp(SftpOptions {
            host: m.ssh_hostname.clone().unwrap_or_default(),
            port: m.ssh_port,
            user: m.ssh_username.clone().unwrap_or_default(),
            base_dir: m.ssh_base_dir.clone().unwrap_or_default(),
            public_key_file: m.ssh_public_key_file.clone().map(PathBuf::from),
            private_key_file: private,
            ciphers: m.ssh_ciphers.0.iter().map(|c| ssh_cipher(c)).collect(),
            known_hosts_file: Some(home().join(".ssh/known_hosts")).filter(|p| p.exists()),
        }));
    }
    if engines.s3 {
        let s3 = config.effective_s3(server);
        out.push(RemoteSpec::S3(S3Options {
            bucket: s3.bucket.unwrap_or_default(),
            region: s3.region.unwrap_or_default(),
            access_key_id: s3.access_key_id,
            secret_access_key: s3.secret_access_key.map(|s| s.0),
            base_dir: s3.base_dir.unwrap_or_default(),
            storage_class: s3.storage_class,
            endpoint: s3.endpoint.as_deref().map(|e| url(e, s3.port, s3.use_tls)),
            virtual_hosted: s3.virtual_host.unwrap_or(false),
        }));
    }
    if engines.azure {
        let a = &m.azure;
        let account = a.storage_account.clone().unwrap_or_default();
        out.push(RemoteSpec::Azure(AzureOptions {
            account: account.clone(),
            container: a.container.clone().unwrap_or_default(),
            shared_key: a.shared_key.clone().map(|s| s.0),
            base_dir: a.base_dir.clone().unwrap_or_default(),
            // Azurite serves every account under one host: the account is the path's first part.
            endpoint: a.endpoint.as_deref().map(|e| {
                let base = url(e, a.port, Some(a.use_tls.unwrap_or(true)));
                if base.trim_end_matches('/').ends_with(&account) {
                    base
                } else {
                    format!("{}/{account}", base.trim_end_matches('/'))
                }
            }),
        }));
    }
    if engines.gcs {
        out.push(RemoteSpec::Gcs(GcsOptions {
            bucket: m.gcs.bucket.clone().unwrap_or_default(),
            base_dir: m.gcs.base_dir.clone().unwrap_or_default(),
            credentials_file: m.gcs.credentials_file.clone(),
        }));
    }
    out
}

/// `ssh_ciphers` names as the SSH protocol spells them (`aes-256-ctr` is `aes256-ctr`).
fn ssh_cipher(name: &str) -> String {
    match name {
        "aes" | "aes-256" | "aes256" => "aes256-cbc".to_owned(),
        "aes-192" | "aes192" => "aes192-cbc".to_owned(),
        "aes-128" | "aes128" => "aes128-cbc".to_owned(),
        "aes-256-ctr" => "aes256-ctr".to_owned(),
        "aes-192-ctr" => "aes192-ctr".to_owned(),
        "aes-128-ctr" => "aes128-ctr".to_owned(),
        other => other.to_owned(),
    }
}

/// How hard requests try, from `remote_retry_timeout`.
pub fn tuning(config: &Config) -> RemoteTuning {
    RemoteTuning {
        retry_timeout: Duration::from_secs(config.main.remote_retry_timeout.seconds().max(1)),
        ..RemoteTuning::default()
    }
}

/// Opens every server's remote repositories into the repository; an engine that cannot be
/// opened is logged, and the uploads of that server fail (and stay pending) until it can.
pub fn install(shared: &Shared) {
    let config = shared.config();
    let tuning = tuning(&config);
    for server in &config.servers {
        let mut remotes = Vec::new();
        let mut unopened = Vec::new();
        for spec in specs(&config, server) {
            match remote::open(&spec, &tuning) {
                Ok(r) => remotes.push(r),
                Err(e) => {
                    log::error!("server [{}]: {} storage: {e}", server.name, spec.engine());
                    unopened.push(spec.engine());
                }
            }
        }
        shared.repo.set_remotes(&server.name, remotes, unopened);
    }
    shared.repo.set_keep_local(config.main.storage_engine.local);
}

/// Ships each server's finished WAL files to its remote repositories every few seconds, and
/// tries pending backup uploads again every 30 seconds, until the daemon stops.
pub fn spawn_wal_shipper(shared: Arc<Shared>) -> Option<JoinHandle<()>> {
    if !shared.config().main.storage_engine.any_remote() {
        return None;
    }
    let spawned = std::thread::Builder::new().name("wal-ship".into()).spawn(move || {
        let mut failing: std::collections::HashSet<String> = std::collections::HashSet::new();
        let names: Vec<&str> = shared.servers.iter().map(|s| s.name.as_str()).collect();
        shared.repo.find_pending(&names);
        let mut last = Instant::now() - WAL_SHIP_INTERVAL;
        let mut last_upload = Instant::now() - UPLOAD_RETRY_INTERVAL;
        while !shared.stopping() {
            if last.elapsed() < WAL_SHIP_INTERVAL {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            last = Instant::now();
            ship_all(&shared, &mut failing);
            if last_upload.elapsed() >= UPLOAD_RETRY_INTERVAL && shared.repo.has_pending_uploads() {
                last_upload = Instant::now();
                upload_pending(&shared);
            }
        }
    });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            log::error!("cannot start the WAL shipping thread: {e}");
            None
        }
    }
}

/// One pass of WAL shipping over every server and remote; failures are logged once until the
/// remote works again.
pub fn ship_all(shared: &Shared, failing: &mut std::collections::HashSet<String>) {
    let suffix = sealed_suffix(&shared.config());
    for s in &shared.servers {
        // In a cluster, only the node active for a server writes to its remote copies.
        if shared.cluster.as_ref().is_some_and(|c| !c.may_write(&s.name)) {
            continue;
        }
        for (engine, result) in shared.repo.ship_wal(&s.name, &suffix) {
            let key = format!("{}/{engine}", s.name);
            match result {
                Ok(report) => {
                    if failing.remove(&key) {
                        log::info!("server [{}]: WAL shipping to {engine} storage works again", s.name);
                    }
                    if report.files > 0 {
                        log::debug!("server [{}]: {} WAL files shipped to {engine} storage", s.name, report.files);
                    }
                }
                Err(e) => {
                    if failing.insert(key) {
                        log::error!("server [{}]: WAL shipping to {engine} storage: {e}", s.name);
                    }
                }
            }
        }
    }
}

/// The suffix the WAL archive gives sealed segments: compression, then encryption.
fn sealed_suffix(config: &Config) -> String {
    let compression = pgmoneta_compress::Compression::from_code(config.main.compression.code())
        .unwrap_or(pgmoneta_compress::Compression::NONE);
    let mut s = compression.algorithm.suffix().to_owned();
    if pgmoneta_crypto::Cipher::from_code(config.main.encryption.code() as u8).is_some() {
        s.push_str(pgmoneta_crypto::AES_SUFFIX);
    }
    s
}

/// Uploads the pending backups, oldest first, each when its server is idle; a failure leaves
/// it pending for the next pass.
pub fn upload_pending(shared: &Shared) {
    let begin = |server: &str| {
        if shared.cluster.as_ref().is_some_and(|c| !c.may_write(server)) {
            return None;
        }
        let state = shared.server(server)?;
        let guard = state.lock_background(crate::state::Activity::Upload).ok()?;
        let workers = shared.server_config(server).map_or(1, |c| shared.workers(&c));
        Some((guard, workers))
    };
    let names: Vec<&str> = shared.servers.iter().map(|s| s.name.as_str()).collect();
    shared.repo.forget_pending_except(&names);
    for (server, _, e) in shared.repo.retry_uploads(begin, &|| shared.stopping()) {
        log::warn!("server [{server}]: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(main: &str) -> Config {
        let text = format!(
            "[pgmoneta]\nhost = localhost\nunix_socket_dir = /tmp\nbase_dir = /tmp/b\n{main}\n\n\
             [primary]\nhost = localhost\nport = 5432\nuser = repl\nwal_slot = repl\n"
        );
        Config::parse(&text, "pgmoneta.conf").check().unwrap().0
    }

    #[test]
    fn specs_follow_the_configuration() {
        let c = config(
            "storage_engine = local,ssh,s3,azure,gcs\nssh_hostname = backup.example\nssh_username = pgm\n\
             ssh_base_dir = /srv/repo\nssh_port = 2222\nssh_ciphers = aes-256-ctr,aes\n\
             ssh_private_key_file = /k/id\nssh_public_key_file = /k/id.pub\n\
             s3_region = eu-west-1\ns3_bucket = b\ns3_endpoint = minio.local\ns3_port = 9000\ns3_use_tls = on\n\
             azure_storage_account = devstoreaccount1\nazure_container = c\nazure_endpoint = 127.0.0.1\n\
             azure_port = 10000\nazure_use_tls = off\ngcs_bucket = g\ngcs_base_dir = pre",
        );
        let all = specs(&c, &c.servers[0]);
        let engines: Vec<_> = all.iter().map(RemoteSpec::engine).collect();
        assert_eq!(engines, ["ssh", "s3", "azure", "gcs"]);
        match &all[0] {
            RemoteSpec::Sftp(o) => {
                assert_eq!((o.host.as_str(), o.port, o.user.as_str()), ("backup.example", 2222, "pgm"));
                assert_eq!(o.ciphers, ["aes256-ctr", "aes256-cbc"]);
                assert_eq!(o.private_key_file, PathBuf::from("/k/id"));
            }
            other => panic!("{other:?}"),
        }
        match &all[1] {
            RemoteSpec::S3(o) => {
                assert_eq!(o.endpoint.as_deref(), Some("https://minio.local:9000"));
                assert!(!o.virtual_hosted && o.access_key_id.is_none());
            }
            other => panic!("{other:?}"),
        }
        match &all[2] {
            // Azurite: the account is the endpoint path's first part.
            RemoteSpec::Azure(o) => assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:10000/devstoreaccount1")),
            other => panic!("{other:?}"),
        }
        match &all[3] {
            RemoteSpec::Gcs(o) => assert_eq!((o.bucket.as_str(), o.base_dir.as_str()), ("g", "pre")),
            other => panic!("{other:?}"),
        }
        assert!(specs(&config("storage_engine = local"), &c.servers[0]).is_empty());
        let vhost =
            config("storage_engine = s3\ns3_region = r\ns3_bucket = b\ns3_endpoint = s3.lan\ns3_virtual_host = on");
        match &specs(&vhost, &vhost.servers[0])[0] {
            RemoteSpec::S3(o) => assert!(o.virtual_hosted),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_sealed_suffix_is_the_archives() {
        assert_eq!(sealed_suffix(&config("compression = zstd\nencryption = aes")), ".zstd.aes");
        assert_eq!(sealed_suffix(&config("compression = none")), "");
        assert_eq!(sealed_suffix(&config("compression = lz4")), ".lz4");
    }
}
