//! `archive-get` through its prefetch process, at file level: what it hands over equals the
//! archived file, the spool holds the segments ahead and no more, a missing file and a wrong
//! key get PostgreSQL's exit statuses, two spools serve side by side, and the spool is gone
//! once requests stop. (Recovery of a real server through it is in `pitr`.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmoneta_compress::Algorithm;
use pgmoneta_core::{TimelineId, WalSegment, WalSegmentSize};
use pgmoneta_crypto::{Cipher, MasterKeyFile};
use pgmoneta_storage::wal::{WalArchive, WalOptions};

const SEG: WalSegmentSize = WalSegmentSize::DEFAULT;
const SEGMENTS: u64 = 10;

fn name(number: u64) -> String {
    WalSegment { timeline: TimelineId(1), number }.file_name(SEG)
}

/// A segment's contents: its number, repeated, and a little that differs by position.
fn contents(number: u64) -> Vec<u8> {
    let mut v = vec![0u8; SEG.bytes() as usize];
    for (i, chunk) in v.chunks_mut(8192).enumerate() {
        chunk[..8].copy_from_slice(&number.to_le_bytes());
        chunk[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    }
    v
}

struct Setup {
    _top: tempfile::TempDir,
    dir: PathBuf,
    conf: PathBuf,
    key: PathBuf,
}

fn setup() -> Setup {
    let top = tempfile::Builder::new().prefix("pgmoneta-prefetch-").tempdir_in("/tmp").unwrap();
    let dir = top.path().to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key_file = MasterKeyFile::new(dir.join("master.key"));
    key_file.create("a master key for the prefetch test").unwrap();
    let key = Arc::new(key_file.load().unwrap());
    let mut options = WalOptions::new(Algorithm::Zstd, 1);
    options.encryption = Some((Cipher::Aes256Gcm, key));
    let archive = WalArchive::open(dir.join("repo/primary/wal"), SEG, options).unwrap();
    for n in 1..=SEGMENTS {
        std::fs::write(dir.join("repo/primary/wal").join(name(n)), contents(n)).unwrap();
        archive.seal(&name(n)).unwrap();
    }
    archive.store_history("00000002.history", b"1\t0/A000000\tbefore 0/A000000\n").unwrap();
    let conf = dir.join("pgmoneta.conf");
    std::fs::write(
        &conf,
        format!(
            "[pgmoneta]\nhost = localhost\nmetrics = 0\nbase_dir = {}\nunix_socket_dir = /tmp\ncompression = zstd\nencryption = aes-256-gcm\n\n[primary]\nhost = 127.0.0.1\nport = 5432\nuser = repl\nwal_slot = pgmoneta\n",
            dir.join("repo").display()
        ),
    )
    .unwrap();
    Setup { conf, key: key_file.path().to_owned(), dir, _top: top }
}

/// Runs `archive-get` for `file` into `dest` with the spool `spool` (which must be named
/// `pgmoneta-spool-primary`: `--spool` names the directory it is made in); its exit status.
fn archive_get(s: &Setup, key: &Path, spool: &Path, file: &str, dest: &Path, extra: &[&str]) -> i32 {
    archive_get_with(&s.conf, key, spool, file, dest, extra).status.code().unwrap_or(-1)
}

fn archive_get_with(
    conf: &Path,
    key: &Path,
    spool: &Path,
    file: &str,
    dest: &Path,
    extra: &[&str],
) -> std::process::Output {
    assert!(spool.ends_with("pgmoneta-spool-primary"));
    let out = Command::new(env!("CARGO_BIN_EXE_pgmoneta-cli"))
        .arg("-c")
        .arg(conf)
        .arg("archive-get")
        .arg("--master-key")
        .arg(key)
        .arg("--spool")
        .arg(spool.parent().unwrap())
        .args(if extra.contains(&"--prefetch") { extra } else { &["--prefetch", "3"] })
        .args(["--prefetch-idle", "3"])
        .args(["primary", file])
        .arg(dest)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("archive-get {file}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// The WAL segments in the spool.
fn spooled(spool: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(spool)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.len() == 24);
    v.sort();
    v
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_prefetch_process_hands_over_each_segment_and_keeps_the_next_ones_ready() {
    let s = setup();
    let spool = s.dir.join("pg_wal/pgmoneta-spool-primary");
    std::fs::create_dir_all(s.dir.join("pg_wal")).unwrap();
    let dest = s.dir.join("pg_wal/RECOVERYXLOG");
    // The spool's own directory is the process's; what is beside it is not.
    std::fs::write(s.dir.join("pg_wal/keep-me"), b"not the spool's").unwrap();

    for n in 1..=3 {
        assert_eq!(archive_get(&s, &s.key, &spool, &name(n), &dest, &[]), 0);
        assert!(std::fs::read(&dest).unwrap() == contents(n), "segment {n} differs");
        // The three that follow are fetched ahead, and nothing else is kept.
        let ahead: Vec<String> = (n + 1..=n + 3).map(name).collect();
        wait_for(&format!("the spool never held {ahead:?}: {:?}", spooled(&spool)), || spooled(&spool) == ahead);
    }
    // Asked out of order, a segment is fetched first; history files too.
    assert_eq!(archive_get(&s, &s.key, &spool, &name(9), &dest, &[]), 0);
    assert!(std::fs::read(&dest).unwrap() == contents(9));
    assert_eq!(archive_get(&s, &s.key, &spool, "00000002.history", &dest, &[]), 0);
    assert_eq!(std::fs::read(&dest).unwrap(), b"1\t0/A000000\tbefore 0/A000000\n");
    // What the archive does not have ends recovery (1); at the archive's end the window
    // holds only what exists.
    assert_eq!(archive_get(&s, &s.key, &spool, &name(SEGMENTS + 1), &dest, &[]), 1);
    assert_eq!(archive_get(&s, &s.key, &spool, "00000003.history", &dest, &[]), 1);
    assert_eq!(archive_get(&s, &s.key, &spool, &name(SEGMENTS), &dest, &[]), 0);
    assert!(std::fs::read(&dest).unwrap() == contents(SEGMENTS));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(spooled(&spool), Vec::<String>::new());
    // A call for another configuration through the same spool is not served from this
    // repository's process: it fetches by itself.
    let conf2 = s.dir.join("pgmoneta-copy.conf");
    std::fs::copy(&s.conf, &conf2).unwrap();
    let out = archive_get_with(&conf2, &s.key, &spool, &name(4), &dest, &[]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("serves another configuration"), "{said}");
    assert!(std::fs::read(&dest).unwrap() == contents(4));
    // Without prefetch, the same file.
    assert_eq!(archive_get(&s, &s.key, &spool, &name(5), &dest, &["--prefetch", "0"]), 0);
    assert!(std::fs::read(&dest).unwrap() == contents(5));

    // PostgreSQL passes %p relative to the data directory; when the spool cannot be made the
    // file is fetched directly, still to where %p points.
    std::fs::remove_file(&dest).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgmoneta-cli"))
        .current_dir(&s.dir)
        .arg("-c")
        .arg(&s.conf)
        .args(["archive-get", "--master-key"])
        .arg(&s.key)
        .args(["--spool", "/proc/no-spool-here", "primary", &name(6), "pg_wal/RECOVERYXLOG"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("prefetch unavailable") && said.contains("/proc/no-spool-here"), "{said}");
    assert!(std::fs::read(&dest).unwrap() == contents(6));

    // A wrong key is fatal to recovery (126), through a spool of its own.
    let wrong = MasterKeyFile::new(s.dir.join("wrong.key"));
    wrong.create("not the key the archive was written with").unwrap();
    let other = s.dir.join("other/pgmoneta-spool-primary");
    assert_eq!(archive_get(&s, wrong.path(), &other, &name(2), &dest, &[]), 126);

    // Two recoveries at once, each with its own spool, each gets its own segments right.
    let spools: Vec<PathBuf> = (0..2).map(|i| s.dir.join(format!("side-{i}/pgmoneta-spool-primary"))).collect();
    std::thread::scope(|scope| {
        for (i, spool) in spools.iter().enumerate() {
            let s = &s;
            scope.spawn(move || {
                let dest = s.dir.join(format!("side-{i}.wal"));
                for n in (1..=6).map(|k| k + i as u64) {
                    assert_eq!(archive_get(s, &s.key, spool, &name(n), &dest, &[]), 0);
                    assert!(std::fs::read(&dest).unwrap() == contents(n), "side {i}: segment {n} differs");
                }
            });
        }
    });

    // Requests stop: each spool is removed, its process gone.
    for spool in [&spool, &other, &spools[0], &spools[1]] {
        wait_for(&format!("{} was not removed", spool.display()), || !spool.exists());
    }
    assert_eq!(std::fs::read(s.dir.join("pg_wal/keep-me")).unwrap(), b"not the spool's");
}
