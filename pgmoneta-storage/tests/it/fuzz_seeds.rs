//! Replays the seed corpora of the repository formats' fuzz targets (`backup.info`,
//! `backup.manifest`/`backup.sha512`, PostgreSQL's `backup_manifest`, tar streams), so that CI
//! checks their invariants without a fuzzer, and checks that the seeds are what they say.

use pgmoneta_storage::fuzzing;
use pgmoneta_testkit::fuzz_seeds as corpus;

fn replay(target: &str, at_least: usize, check: fn(&[u8])) -> Vec<(String, Vec<u8>)> {
    let files = corpus(target);
    assert!(files.len() >= at_least, "{target}: {} seeds", files.len());
    for (name, data) in &files {
        let ok = std::panic::catch_unwind(|| check(data));
        assert!(ok.is_ok(), "{target} seed {name} breaks an invariant");
        // Cut short, it must hold them too.
        for cut in [1, data.len() / 2, data.len().saturating_sub(1)] {
            let ok = std::panic::catch_unwind(|| check(&data[..cut.min(data.len())]));
            assert!(ok.is_ok(), "{target} seed {name} cut at {cut} breaks an invariant");
        }
    }
    files
}

fn seed<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no seed {name}")).1
}

#[test]
fn backup_info_seed_corpus() {
    let files = replay("backup_info", 6, fuzzing::check_backup_info);
    let info = pgmoneta_storage::info::BackupInfo::parse(
        std::str::from_utf8(seed(&files, "incremental-with-tablespace")).unwrap(),
        "x",
    )
    .unwrap();
    assert_eq!((info.tablespaces.len(), info.parent.as_str()), (1, "20261204101010"));
    let err = pgmoneta_storage::info::BackupInfo::parse("STATUS=1\nBACKUP=12x\n", "b/backup.info").unwrap_err();
    assert!(err.to_string().contains("b/backup.info") && err.to_string().contains("line 2"), "{err}");
}

#[test]
fn backup_manifest_seed_corpus() {
    let files = replay("backup_manifest", 5, fuzzing::check_backup_manifest);
    let m = pgmoneta_storage::manifest::BackupManifest::parse(
        std::str::from_utf8(seed(&files, "three-files")).unwrap(),
        "backup.manifest",
    )
    .unwrap();
    assert_eq!(m.files.len(), 3);
}

#[test]
fn pg_backup_manifest_seed_corpus() {
    let files = replay("pg_backup_manifest", 4, fuzzing::check_pg_manifest);
    let m = pgmoneta_storage::manifest::PgManifest::parse(seed(&files, "pg15-like")).unwrap();
    assert_eq!(m.files.len(), 4);
    assert!(m.files.iter().any(|f| f.path == "base(\u{2019})"), "the Encoded-Path seed decodes");
    let v2 = pgmoneta_storage::manifest::PgManifest::parse(seed(&files, "pg17-v2")).unwrap();
    assert_eq!(v2.system_identifier, Some(7445543210987654321));
    assert!(pgmoneta_storage::manifest::PgManifest::parse(seed(&files, "checksum-mismatch")).is_err());
}

#[test]
fn tar_stream_seed_corpus() {
    let files = replay("tar_stream", 7, fuzzing::check_tar);
    let members = pgmoneta_storage::tar::TarParser::new().parse_all(seed(&files, "ustar-data-dir")).unwrap();
    assert_eq!(members.len(), 5);
    let long = pgmoneta_storage::tar::TarParser::new().parse_all(seed(&files, "pax-long-name-and-link")).unwrap();
    assert!(long[0].0.path.as_os_str().len() > 200, "{:?}", long[0].0);
    for bad in ["bad-checksum", "truncated-data", "dotdot-path", "no-end-marker"] {
        let e = pgmoneta_storage::tar::TarParser::new().parse_all(seed(&files, bad));
        assert!(e.is_err(), "{bad} parsed");
    }
}
