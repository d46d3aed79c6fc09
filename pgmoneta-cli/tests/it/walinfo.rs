//! pgmoneta-walinfo on the real WAL of the test corpus (`pgmoneta_testkit::corpus`).

use std::path::{Path, PathBuf};
use std::process::Command;

use pgmoneta_compress::{Algorithm, EncoderOptions};
use pgmoneta_crypto::{Cipher, MasterKeyFile};

fn corpus() -> PathBuf {
    pgmoneta_testkit::corpus::path("pg15")
}

fn range() -> (String, String) {
    let info = pgmoneta_testkit::corpus::info(15);
    (info.start_lsn.to_string(), info.end_lsn.to_string())
}

fn walinfo(args: &[&str], home: Option<&Path>) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgmoneta-walinfo"));
    c.args(args);
    if let Some(h) = home {
        c.env("HOME", h);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn trimmed(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_owned()).collect()
}

#[test]
fn waldump_mode_prints_pg_waldump_lines() {
    let (start, end) = range();
    let dir = corpus().join("wal");
    let (code, out, err) = walinfo(&["--waldump", "-s", &start, "-e", &end, dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let expected = std::fs::read_to_string(corpus().join("pg_waldump.txt")).unwrap();
    assert!(trimmed(&out) == trimmed(&expected), "walinfo --waldump differs from pg_waldump");
}

/// `-s` anywhere (a segment's start, inside a page header, mid-page, inside a record continued
/// from the page before, in a later segment, in a zeroed page) skips what comes before without decoding it and
/// prints the same records as decoding everything and keeping those at or after the start.
#[test]
fn start_anywhere_matches_a_whole_decode() {
    let dir = corpus().join("wal");
    let (code, all, err) = walinfo(&["--waldump", dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let lsn_of = |line: &str| {
        let text = line.split("lsn: ").nth(1).unwrap().split(',').next().unwrap();
        let (hi, lo) = text.split_once('/').unwrap();
        (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
    };
    let (range_start, range_end) = range();
    // Positions in the corpus's segments: a segment's start, inside its page header, the
    // range's start, just before and at the next segment, inside its header, mid-record, and
    // a page near the end of the third.
    let info = pgmoneta_testkit::corpus::info(15);
    assert!(info.segments.len() >= 3, "{:?}", info.segments);
    let (s0, s1, s2) = (info.segment_start(0).0, info.segment_start(1).0, info.segment_start(2).0);
    let starts: Vec<String> = [s0, s0 + 0x10, s1 - 0x10, s1, s1 + 0x10, s1 + 0x12_3457, s2 - 0x2000]
        .into_iter()
        .map(|l| pgmoneta_core::Lsn(l).to_string())
        .chain([range_start.clone()])
        .collect();
    for start in starts.iter().map(String::as_str) {
        let (hi, lo) = start.split_once('/').unwrap();
        let from = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
        let expected: Vec<String> = trimmed(&all).into_iter().filter(|l| lsn_of(l) >= from).collect();
        let (code, out, err) = walinfo(&["--waldump", "-s", start, dir.to_str().unwrap()], None);
        assert_eq!(code, 0, "-s {start}: {err}");
        assert!(!expected.is_empty());
        assert!(trimmed(&out) == expected, "-s {start}: {} lines, expected {}", out.lines().count(), expected.len());
    }
    // In the never written end of the last segment, after the switch: nothing to print, and
    // no error.
    let end: pgmoneta_core::Lsn = range_end.parse().unwrap();
    let past = pgmoneta_core::Lsn((end.0 + 0x10000) & !0x1FFF);
    assert_eq!(past.0 >> 24, end.0 >> 24, "the corpus's range ends too near its last segment's end");
    let (code, out, err) = walinfo(&["--waldump", "-s", &past.to_string(), dir.to_str().unwrap()], None);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

#[test]
fn reads_compressed_encrypted_and_tar_input() {
    let (start, end) = range();
    let plain_dir = corpus().join("wal");
    let (_, plain, _) = walinfo(&["--waldump", "-s", &start, "-e", &end, plain_dir.to_str().unwrap()], None);

    // The segments as the repository stores them: zstd, then AES-256-GCM.
    let home = tempfile::tempdir().unwrap();
    let key_file = MasterKeyFile::new(home.path().join(".pgmoneta/master.key"));
    key_file.create("walinfo test key").unwrap();
    let key = key_file.load().unwrap();
    let sealed = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&plain_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let copy = sealed.path().join(name);
        std::fs::copy(plain_dir.join(name), &copy).unwrap();
        let z = pgmoneta_compress::compress_file(&copy, Algorithm::Zstd, EncoderOptions::default_for(Algorithm::Zstd))
            .unwrap();
        let aes = PathBuf::from(format!("{}.aes", z.display()));
        pgmoneta_crypto::encrypt_file(&key, Cipher::Aes256Gcm, &z, &aes).unwrap();
        std::fs::remove_file(&z).unwrap();
    }
    let (code, out, err) =
        walinfo(&["--waldump", "-s", &start, "-e", &end, sealed.path().to_str().unwrap()], Some(home.path()));
    assert_eq!(code, 0, "{err}");
    assert!(out == plain, "compressed and encrypted segments decode differently");

    // A wrong master key is reported, naming the file.
    let other = tempfile::tempdir().unwrap();
    MasterKeyFile::new(other.path().join(".pgmoneta/master.key")).create("another key entirely").unwrap();
    let (code, _, err) = walinfo(&["-q", sealed.path().to_str().unwrap()], Some(other.path()));
    assert_ne!(code, 0);
    assert!(err.contains("000000010000000000000001.zstd.aes"), "{err}");

    // A gzip-compressed tar of the segments.
    let tar_path = sealed.path().join("wal.tar.gz");
    {
        let f = std::fs::File::create(&tar_path).unwrap();
        let gz =
            pgmoneta_compress::Encoder::new(Algorithm::Gzip, EncoderOptions::default_for(Algorithm::Gzip), f).unwrap();
        let mut tar = pgmoneta_storage::tar::TarWriter::new(gz);
        for name in &names {
            let data = std::fs::read(plain_dir.join(name)).unwrap();
            tar.append_file(format!("pg_wal/{name}"), 0o600, 0, data.len() as u64, &data[..]).unwrap();
        }
        tar.finish().unwrap().finish().unwrap();
    }
    let (code, out, err) = walinfo(&["--waldump", "-s", &start, "-e", &end, tar_path.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out == plain, "the tar archive decodes differently");
}

#[test]
fn filters_formats_and_summary() {
    let (start, end) = range();
    let dir = corpus().join("wal");
    let d = dir.to_str().unwrap();
    // The counts come from pg_waldump's own output for the range.
    let reference = std::fs::read_to_string(corpus().join("pg_waldump.txt")).unwrap();
    let count = |rmgr: &str| reference.lines().filter(|l| l.starts_with(&format!("rmgr: {rmgr} "))).count();
    let xid = reference.lines().next().unwrap().split("tx:").nth(1).unwrap().split(',').next().unwrap().trim();
    let of_xid = reference.lines().filter(|l| l.contains(&format!("tx: {xid:>10},"))).count();
    let (code, out, _) = walinfo(&["-s", &start, "-e", &end, "-r", "Heap", d], None);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), count("Heap"), "Heap records in the range");
    assert!(lines.iter().all(|l| l.starts_with("Heap ")));
    let (_, out, _) = walinfo(&["-l", "5", "-s", &start, d], None);
    assert_eq!(out.lines().count(), 5);
    assert!(out.lines().next().unwrap().contains(&format!("| {:>11} |", start)), "{out}");
    let (_, out, _) = walinfo(&["-x", xid, "-s", &start, "-e", &end, d], None);
    assert_eq!(out.lines().count(), of_xid, "{out}");
    assert!(of_xid > 10 && out.lines().all(|l| l.contains(&format!("| {xid:>10} |"))), "{out}");

    let (code, out, err) = walinfo(&["-F", "json", "-s", &start, "-e", &end, "-r", "Transaction", d], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let records = v["WAL"].as_array().unwrap();
    assert_eq!(records.len(), count("Transaction"));
    let first = &records[0]["Record"];
    assert_eq!(first["ResourceManager"], "Transaction");
    assert!(first["Timestamp"].as_str().unwrap().ends_with(" UTC"));
    assert!(first["Data"].as_str().unwrap().starts_with("COMMIT "));

    let (_, out, _) = walinfo(&["-S", "-F", "json", "-s", &start, "-e", &end, d], None);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let total: u64 = v["wal_stats"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(total as usize, reference.lines().count());
    let (_, out, _) = walinfo(&["-S", "-s", &start, "-e", &end, d], None);
    assert!(out.contains("Resource Manager") && out.lines().last().unwrap().starts_with("Total"), "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.contains(&format!(" {} |", reference.lines().count())), "{out}");

    // Translation from a mapping file.
    let map = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(map.path(), r#"{"tablespaces": [{"pg_default": "1663"}], "databases": [{"postgres": 5}], "relations": [{"pg_type": "1247"}]}"#).unwrap();
    let (_, out, _) = walinfo(&["-t", "-m", map.path().to_str().unwrap(), "-l", "4", "-s", &start, d], None);
    // pgbench's first table is entered in pg_type among the first records.
    let pg_type_block = reference
        .lines()
        .take(4)
        .find_map(|l| l.split("rel 1663/5/1247 blk ").nth(1))
        .and_then(|rest| rest.split([' ', ',']).next())
        .expect("a pg_type block among the first four records");
    assert!(out.contains(&format!("rel pg_default/postgres/pg_type fork main blk {pg_type_block}")), "{out}");

    // Bad input names itself.
    let junk = tempfile::tempdir().unwrap();
    let bad = junk.path().join("000000010000000000000009");
    std::fs::write(&bad, vec![7u8; 8192 * 2]).unwrap();
    let (code, _, err) = walinfo(&[bad.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(err.contains("000000010000000000000009"), "{err}");
    let (code, _, err) = walinfo(&[], None);
    assert_ne!(code, 0);
    assert!(err.contains("Usage"), "{err}");
}

#[test]
fn names_come_from_the_server_with_a_users_vault() {
    let cluster = pgmoneta_testkit::Cluster::builder().start().unwrap();
    cluster.execute("CREATE TABLE named_table (x int)").unwrap();
    let start = cluster.query_scalar("SELECT pg_current_wal_insert_lsn()").unwrap();
    let segment = cluster.query_scalar(&format!("SELECT pg_walfile_name('{start}')")).unwrap();
    cluster.execute("INSERT INTO named_table SELECT generate_series(1, 100)").unwrap();
    cluster.switch_wal().unwrap();
    let wal = tempfile::tempdir().unwrap();
    std::fs::copy(cluster.data_dir().join("pg_wal").join(&segment), wal.path().join(&segment)).unwrap();

    let home = tempfile::tempdir().unwrap();
    let key_file = MasterKeyFile::new(home.path().join(".pgmoneta/master.key"));
    key_file.create("walinfo names key").unwrap();
    let key = key_file.load().unwrap();
    let users = home.path().join("pgmoneta_users.conf");
    let mut vault = pgmoneta_crypto::Vault::new(pgmoneta_crypto::VaultKind::Users);
    vault.add(&key, cluster.replication_user(), cluster.replication_password()).unwrap();
    vault.save(&users).unwrap();
    let conf = home.path().join("pgmoneta_walinfo.conf");
    std::fs::write(
        &conf,
        format!(
            "[pgmoneta-walinfo]\nlog_type = console\n\n[primary]\nhost = {}\nport = {}\nuser = {}\n",
            cluster.host(),
            cluster.port(),
            cluster.replication_user()
        ),
    )
    .unwrap();
    let (code, out, err) = walinfo(
        &[
            "-t",
            "-u",
            users.to_str().unwrap(),
            "-c",
            conf.to_str().unwrap(),
            "-r",
            "Heap",
            "-s",
            &start,
            wal.path().to_str().unwrap(),
        ],
        Some(home.path()),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rel pg_default/postgres/named_table fork main blk 0"), "{out}");
    // Name filters, with upstream's two-letter options.
    let base = ["-t", "-u", users.to_str().unwrap(), "-c", conf.to_str().unwrap(), "-s", &start];
    let w = wal.path().to_str().unwrap();
    let (_, only, _) = walinfo(&[&base[..], &["-RR", "named_table", w]].concat(), Some(home.path()));
    assert!(only.lines().count() >= 1 && only.lines().all(|l| l.contains("named_table")), "{only}");
    let (_, none, _) =
        walinfo(&[&base[..], &["-RD", "template1", "-RR", "named_table", w]].concat(), Some(home.path()));
    assert_eq!(none.lines().count(), 0, "{none}");
    let (_, any, _) = walinfo(&[&base[..], &["-R", "named_table,nothing", w]].concat(), Some(home.path()));
    assert_eq!(any, only);
}

#[test]
fn interactive_viewer_moves_shows_marks_and_writes_walfilter_yaml() {
    use std::io::Write;
    let (start, _) = range();
    let dir = corpus().join("wal");
    let cwd = tempfile::tempdir().unwrap();
    let cmd = format!("{} -I -s {start} -l 2000 {}", env!("CARGO_BIN_EXE_pgmoneta-walinfo"), dir.display());
    // `script` gives the viewer a terminal; keys are typed into it.
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(cwd.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    for k in ["", "jjj", "\r", "b", "q", "m", "g", "/COMMIT\r", "q"] {
        std::thread::sleep(std::time::Duration::from_millis(if k.is_empty() { 1500 } else { 300 }));
        keys.write_all(k.as_bytes()).unwrap();
        keys.flush().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // The fourth record (as --waldump prints it) in detail, then as hex: its length first.
    let (code, lines, err) = walinfo(&["--waldump", "-s", &start, dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let fourth = lines.lines().nth(3).unwrap();
    let field = |name: &str| fourth.split(name).nth(1).unwrap().trim_start().split([',', ' ']).next().unwrap();
    let rmgr = fourth.strip_prefix("rmgr: ").unwrap().split_whitespace().next().unwrap();
    let lsn: pgmoneta_core::Lsn = field("lsn:").parse().unwrap();
    // "len (rec/tot):     53/  5013, ..."
    let lengths = fourth.split("):").nth(1).unwrap();
    let total: u32 = lengths.split('/').nth(1).unwrap().split(',').next().unwrap().trim().parse().unwrap();
    let xid = field("tx:");
    assert!(screen.contains(&format!("rmgr: {rmgr}  lsn: {lsn}")), "no detail view of {fourth}");
    let hex: Vec<String> = total.to_le_bytes().iter().map(|b| format!("{b:02X}")).collect();
    assert!(screen.contains(&format!("00000000  {}", hex.join(" "))), "no hex view of {fourth}");
    assert!(screen.contains("search \"COMMIT\""));
    let yaml = std::fs::read_to_string(cwd.path().join("walfilter.yaml")).unwrap();
    assert!(yaml.contains(&format!("xids: [{xid}]")), "{yaml}\n(the fourth record: {fourth})");
}
