//! BASE_BACKUP as a streaming reader.

use std::collections::BTreeMap;

use pgmoneta_core::PgVersion;
use pgmoneta_testkit::Cluster;
use pgmoneta_wire::replication::{BaseBackupEvent, BaseBackupOptions, ServerCompression};

use crate::tar::{self, Kind};
use crate::{connect, repl_opts};

struct Backup {
    archives: BTreeMap<String, Vec<u8>>,
    manifest: serde_json::Value,
    manifest_raw: Vec<u8>,
    last_progress: Option<u64>,
}

fn take_backup(cluster: &Cluster, opts: &BaseBackupOptions) -> Backup {
    let mut conn = connect(&repl_opts(cluster));
    let mut backup = conn.base_backup(opts, cluster.version()).unwrap();
    assert_eq!(backup.start_timeline().0, 1);
    assert!(backup.tablespaces().iter().any(|t| t.oid.is_none()), "{:?}", backup.tablespaces());
    let start = backup.start_lsn();
    let mut archives: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut manifest = Vec::new();
    let mut current = None;
    let mut last_progress = None;
    let mut manifest_started = false;
    while let Some(event) = backup.next_event().unwrap() {
        match event {
            BaseBackupEvent::Archive(info) => {
                assert!(!manifest_started, "archive after the manifest");
                current = Some(info.name.clone());
                archives.insert(info.name, Vec::new());
            }
            BaseBackupEvent::ArchiveData(d) => {
                archives.get_mut(current.as_ref().unwrap()).unwrap().extend_from_slice(&d)
            }
            BaseBackupEvent::Manifest => manifest_started = true,
            BaseBackupEvent::ManifestData(d) => manifest.extend_from_slice(&d),
            BaseBackupEvent::Progress(p) => {
                assert!(last_progress.is_none_or(|l| l <= p), "progress went backwards");
                last_progress = Some(p);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (end, tli) = backup.end().unwrap();
    assert!(end > start, "end {end} not after start {start}");
    assert_eq!(tli.0, 1);
    // The connection is ready for the next command.
    conn.identify_system().unwrap();
    Backup {
        archives,
        manifest: serde_json::from_slice(&manifest).expect("manifest is JSON"),
        manifest_raw: manifest,
        last_progress,
    }
}

/// Checks a plain tar of the main data directory against the manifest: the same files with the
/// same sizes, plus the WAL that makes the backup consistent.
fn check_against_manifest(base_tar: &[u8], manifest: &serde_json::Value) {
    let entries = tar::read(base_tar);
    let files: BTreeMap<&str, usize> =
        entries.iter().filter(|e| e.kind == Kind::File).map(|e| (e.path.as_str(), e.data.len())).collect();
    let listed = manifest["Files"].as_array().expect("Files");
    assert!(listed.len() > 900, "only {} files in the manifest", listed.len());
    let mut manifest_bytes = 0u64;
    for f in listed {
        let path = f["Path"].as_str().unwrap();
        let size = f["Size"].as_u64().unwrap();
        assert_eq!(f["Checksum-Algorithm"], "SHA512", "{path}");
        manifest_bytes += size;
        assert_eq!(files.get(path).copied(), Some(size as usize), "{path}");
    }
    let tar_bytes: u64 = files.iter().filter(|(p, _)| !p.starts_with("pg_wal/")).map(|(_, s)| *s as u64).sum();
    assert_eq!(tar_bytes, manifest_bytes, "tar member sizes add up to the manifest's");
    let wal: Vec<&&str> = files.keys().filter(|p| p.starts_with("pg_wal/")).collect();
    assert!(!wal.is_empty(), "no WAL in the backup");
    assert!(files.contains_key("backup_label") && files.contains_key("global/pg_control"));
    // pgbench_accounts at scale 5 is about 64 MB of heap.
    assert!(manifest_bytes > 60 << 20, "{manifest_bytes}");
}

#[test]
fn base_backup_streams_archives_and_manifest() {
    let cluster = Cluster::builder().start().unwrap();
    cluster.pgbench_init(5).unwrap();
    let backup = take_backup(&cluster, &BaseBackupOptions::new("pgmoneta_20261128000001"));
    assert_eq!(backup.archives.keys().collect::<Vec<_>>(), ["base.tar"]);
    let base = &backup.archives["base.tar"];
    check_against_manifest(base, &backup.manifest);
    if cluster.version() >= PgVersion::V15 {
        // Progress counts every archive byte sent.
        assert_eq!(backup.last_progress, Some(base.len() as u64));
    }
    // The label we asked for is in backup_label.
    let label = tar::read(base).into_iter().find(|e| e.path == "backup_label").unwrap();
    assert!(String::from_utf8_lossy(&label.data).contains("LABEL: pgmoneta_20261128000001"));
}

/// Whether the server was built with `method` (the npm builds of PostgreSQL lack zstd and lz4).
fn server_supports(cluster: &Cluster, method: &str) -> bool {
    let mut conn = connect(&repl_opts(cluster));
    let mut opts = BaseBackupOptions::new("probe");
    opts.compression = Some(ServerCompression { method: method.into(), detail: None });
    opts.manifest = false;
    match conn.base_backup(&opts, cluster.version()) {
        Ok(mut backup) => {
            while backup.next_event().unwrap().is_some() {}
            true
        }
        Err(e) if e.to_string().contains("does not support compression") => false,
        Err(e) => panic!("{method}: {e}"),
    }
}

#[test]
fn base_backup_with_server_side_compression_passes_the_stream_through() {
    let cluster = Cluster::builder().start().unwrap();
    if cluster.version() < PgVersion::V15 {
        let mut conn = connect(&repl_opts(&cluster));
        let mut opts = BaseBackupOptions::new("pgmoneta_x");
        opts.compression = Some(ServerCompression { method: "zstd".into(), detail: None });
        assert!(conn.base_backup(&opts, cluster.version()).is_err());
        return;
    }
    cluster.pgbench_init(5).unwrap();
    // zstd where the server has it (Debian's builds do); gzip is in every build.
    let (method, suffix, magic): (&str, &str, &[u8]) = if server_supports(&cluster, "zstd") {
        ("zstd", "zst", &[0x28, 0xb5, 0x2f, 0xfd])
    } else {
        ("gzip", "gz", &[0x1f, 0x8b])
    };
    eprintln!("server-side compression: {method}");
    let mut opts = BaseBackupOptions::new("pgmoneta_20261128000002");
    opts.compression = Some(ServerCompression { method: method.into(), detail: Some("level=3".into()) });
    let backup = take_backup(&cluster, &opts);
    let name = format!("base.tar.{suffix}");
    assert_eq!(backup.archives.keys().collect::<Vec<_>>(), [&name]);
    let compressed = &backup.archives[&name];
    assert_eq!(&compressed[..magic.len()], magic, "{method} magic");
    let plain = match method {
        "zstd" => zstd::stream::decode_all(&compressed[..]).unwrap(),
        _ => {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut out).unwrap();
            out
        }
    };
    assert!(compressed.len() * 3 < plain.len(), "{} compressed to {}", plain.len(), compressed.len());
    check_against_manifest(&plain, &backup.manifest);
}

#[test]
fn base_backup_errors_leave_the_connection_usable() {
    let cluster = Cluster::builder().start().unwrap();
    let mut conn = connect(&repl_opts(&cluster));
    let mut opts = BaseBackupOptions::new("x");
    opts.manifest_checksums = Some("NO_SUCH_ALGORITHM".into());
    let err = conn.base_backup(&opts, cluster.version()).unwrap_err();
    assert!(err.server_error().is_some(), "{err}");
    assert!(err.to_string().contains("NO_SUCH_ALGORITHM"), "{err}");
    conn.identify_system().unwrap();
}

#[test]
fn incremental_base_backup_after_upload_manifest() {
    let cluster = Cluster::builder().start().unwrap();
    cluster
        .execute("CREATE TABLE big AS SELECT g AS n, repeat('x', 100) AS pad FROM generate_series(1, 100000) g")
        .unwrap();
    cluster.execute("CREATE TABLE small AS SELECT 1 AS n").unwrap();
    let full = take_backup(&cluster, &BaseBackupOptions::new("pgmoneta_full"));
    let mut incremental = BaseBackupOptions::new("pgmoneta_incremental");
    incremental.incremental = true;

    if cluster.version() < PgVersion::V17 {
        let mut conn = connect(&repl_opts(&cluster));
        let err = conn.base_backup(&incremental, cluster.version()).unwrap_err();
        assert!(err.to_string().contains("needs PostgreSQL 17"), "{err}");
        return;
    }
    // Change one table only; WAL summaries must cover the range, so wait for the summarizer.
    cluster.execute("UPDATE small SET n = 2").unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let mut conn = connect(&repl_opts(&cluster));
    // A manifest that is not one is refused by the server, and the connection stays usable.
    let err = conn.upload_manifest(b"{ not a manifest").unwrap_err();
    assert!(err.server_error().is_some(), "{err}");
    conn.upload_manifest(&full.manifest_raw).unwrap();
    let mut backup = conn.base_backup(&incremental, cluster.version()).unwrap();
    let mut base = Vec::new();
    let manifest = backup
        .for_each_archive(|info, bytes| {
            assert_eq!(info.name, "base.tar");
            base.extend_from_slice(bytes);
            Ok(())
        })
        .unwrap();
    let entries = tar::read(&base);
    let incremental_files =
        entries.iter().filter(|e| e.path.rsplit('/').next().unwrap().starts_with("INCREMENTAL.")).count();
    assert!(incremental_files > 100, "only {incremental_files} INCREMENTAL.* files");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert!(manifest["Files"].as_array().unwrap().len() > 900);
    // The incremental backup is much smaller than the full one.
    let full_size = full.archives["base.tar"].len();
    assert!(base.len() * 2 < full_size, "incremental {} vs full {full_size}", base.len());
}
