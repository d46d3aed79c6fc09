//! The test corpus: real WAL and data files of PostgreSQL 14 to 18, made by the project itself.
//!
//! [`make`] starts a throwaway cluster of each installed major, runs pgbench and a workload that
//! writes records of every resource manager the WAL decoder describes, and keeps the WAL
//! segments that hold them, the relation files of `pgbench_accounts` and its primary key, an
//! `INFO` file with the range, and where that major's own `pg_waldump` exists (Debian's
//! PostgreSQL 15, and the programs `scripts/setup.sh` unpacks for the others), what it prints
//! for the range. `scripts/make-corpus.sh` (run by
//! `scripts/setup.sh`) builds it into a cache outside the work tree, [`dir`]; it is made again
//! when this file (the workload and the layout) or a server's version changes.
//!
//! Tests and benches read it through [`file`], [`path`] and [`info`], which fail with the command
//! to run when the corpus is missing or was made from other inputs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pgmoneta_core::{Lsn, PgVersion};

use crate::install::PgInstall;
use crate::{Cluster, Result, TestkitError};

/// The cache directory when `PGMONETA_CORPUS` does not name another.
pub const DEFAULT_DIR: &str = "/var/cache/pgmoneta-rs/corpus";

/// The file at the corpus root that says what it was made from.
pub const STAMP: &str = "STAMP";

/// The source of this module and of the cluster set-up: their hash stands for the workload,
/// the layout and the servers' settings.
const SOURCES: [&str; 2] = [include_str!("corpus.rs"), include_str!("cluster.rs")];

/// The majors the corpus holds.
pub const MAJORS: [u32; 5] = [14, 15, 16, 17, 18];

/// Statements run in order after pgbench, each in its own session (`min_major`, SQL).
/// `@TABLESPACE@` is replaced by a directory the server owns.
pub const WORKLOAD: &[(u32, &str)] = &[
    // Heap, Btree and every other index access method, with their builds and inserts.
    (14, "CREATE TABLE w (id int PRIMARY KEY, v text, a int[], p point, r int4range, n int)"),
    (
        14,
        "INSERT INTO w SELECT g, md5(g::text), ARRAY[g, g + 1], point(g, g), int4range(g, g + 10), 0 \
         FROM generate_series(1, 3000) g",
    ),
    (14, "CREATE INDEX w_hash ON w USING hash (v)"),
    (14, "CREATE INDEX w_gin ON w USING gin (a)"),
    (14, "CREATE INDEX w_gist ON w USING gist (p)"),
    (14, "CREATE INDEX w_spgist ON w USING spgist (r)"),
    (14, "CREATE INDEX w_brin ON w USING brin (id)"),
    // bloom (contrib) writes Generic records for its index pages.
    (14, "CREATE EXTENSION bloom"),
    (14, "CREATE INDEX w_bloom ON w USING bloom (id)"),
    // Index inserts after the builds: hash splits, GIN's pending list, GiST and SP-GiST pages.
    (
        14,
        "INSERT INTO w SELECT g, md5(g::text), ARRAY[g], point(g, -g), int4range(g, g + 3), 0 \
         FROM generate_series(3001, 9000) g",
    ),
    // HOT updates (no index on n), non-HOT ones, key changes, deletes, locks.
    (14, "UPDATE w SET n = n + 1 WHERE id % 3 = 0"),
    (14, "UPDATE w SET v = v || 'x' WHERE id % 7 = 0"),
    (14, "UPDATE w SET id = id + 100000 WHERE id % 11 = 0"),
    (14, "DELETE FROM w WHERE id % 13 = 0"),
    (14, "BEGIN; SELECT id FROM w WHERE id < 50 FOR UPDATE; COMMIT"),
    // Multixacts: a prepared transaction and a session share a row lock.
    (14, "BEGIN; SELECT id FROM w WHERE id = 1 FOR SHARE; PREPARE TRANSACTION 'share_1'"),
    (14, "BEGIN; SELECT id FROM w WHERE id = 1 FOR SHARE; COMMIT"),
    (14, "COMMIT PREPARED 'share_1'"),
    // Subtransactions, aborts, two-phase commit.
    (14, "BEGIN; SAVEPOINT s; INSERT INTO w (id, v) VALUES (-1, 'sub'); RELEASE s; COMMIT"),
    (14, "BEGIN; SAVEPOINT s; INSERT INTO w (id, v) VALUES (-3, 'undone'); ROLLBACK TO s; COMMIT"),
    (14, "BEGIN; INSERT INTO w (id, v) VALUES (-2, 'gone'); ROLLBACK"),
    (14, "CREATE TABLE t2 (x int)"),
    (14, "BEGIN; INSERT INTO t2 VALUES (2); PREPARE TRANSACTION 'p1'"),
    (14, "COMMIT PREPARED 'p1'"),
    (14, "BEGIN; INSERT INTO t2 VALUES (3); PREPARE TRANSACTION 'p2'"),
    (14, "ROLLBACK PREPARED 'p2'"),
    // Sequences, unlogged tables (their init fork), truncation.
    (14, "CREATE SEQUENCE w_seq"),
    (14, "SELECT nextval('w_seq')"),
    (14, "SELECT setval('w_seq', 1000)"),
    (14, "CREATE UNLOGGED TABLE u (x int PRIMARY KEY)"),
    (14, "INSERT INTO u VALUES (1)"),
    (14, "INSERT INTO t2 VALUES (1)"),
    (14, "TRUNCATE t2"),
    // Logical messages, replication origins, restore points.
    (14, "SELECT pg_logical_emit_message(true, 'pgmoneta', 'a message')"),
    (14, "SELECT pg_logical_emit_message(false, 'pgmoneta', 'not transactional')"),
    (14, "SELECT pg_replication_origin_create('pgmoneta_origin')"),
    (14, "SELECT pg_replication_origin_advance('pgmoneta_origin', '0/10')"),
    (
        14,
        "SELECT pg_replication_origin_session_setup('pgmoneta_origin'); \
         SELECT pg_replication_origin_xact_setup('0/20', now()); INSERT INTO t2 VALUES (4)",
    ),
    (14, "SELECT pg_replication_origin_drop('pgmoneta_origin')"),
    (14, "SELECT pg_create_restore_point('corpus')"),
    // Vacuum: pruning, freezing, the visibility map, truncating the emptied end.
    (14, "DELETE FROM w WHERE id > 8000 AND id < 100000"),
    (14, "VACUUM w"),
    (14, "VACUUM (FREEZE) w"),
    (14, "CLUSTER w USING w_pkey"),
    (14, "REINDEX TABLE w"),
    // A mapped catalog rewritten: RelMap.
    (14, "VACUUM FULL pg_class"),
    // Tablespaces and databases, by each strategy the version has.
    (14, "CREATE TABLESPACE corpus_ts LOCATION '@TABLESPACE@'"),
    (14, "CREATE TABLE in_ts (x int) TABLESPACE corpus_ts"),
    (14, "INSERT INTO in_ts SELECT generate_series(1, 100)"),
    (14, "DROP TABLE in_ts"),
    (14, "DROP TABLESPACE corpus_ts"),
    (14, "CREATE DATABASE corpus_db"),
    (14, "DROP DATABASE corpus_db"),
    (15, "CREATE DATABASE corpus_db_copy STRATEGY FILE_COPY"),
    (15, "DROP DATABASE corpus_db_copy"),
    (14, "CHECKPOINT"),
    // Hint bits set on pages a checkpoint has just written: FPI_FOR_HINT with checksums on.
    (14, "SELECT count(*) FROM w"),
    (14, "CHECKPOINT"),
];

/// The corpus directory: `PGMONETA_CORPUS`, else [`DEFAULT_DIR`].
pub fn dir() -> PathBuf {
    std::env::var_os("PGMONETA_CORPUS").map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// The hash of the corpus's inputs (this module's and the cluster set-up's sources), as the
/// stamp holds it.
pub fn inputs_hash() -> String {
    let mut h = openssl::sha::Sha256::new();
    for s in SOURCES {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    h.finish().iter().map(|b| format!("{b:02x}")).collect()
}

fn checked_dir() -> &'static std::result::Result<PathBuf, String> {
    static CHECKED: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let d = dir();
        let stamp = d.join(STAMP);
        let remedy = "run scripts/make-corpus.sh (scripts/setup.sh runs it) to make it";
        let text = fs::read_to_string(&stamp)
            .map_err(|e| format!("the test corpus is missing ({}: {e}): {remedy}", stamp.display()))?;
        let made_from = text.lines().find_map(|l| l.strip_prefix("inputs=")).unwrap_or_default();
        if made_from != inputs_hash() {
            return Err(format!(
                "the test corpus at {} was made from other inputs (its stamp says {made_from}, these sources {}): {remedy}",
                d.display(),
                inputs_hash()
            ));
        }
        Ok(d)
    })
}

/// The path of a corpus file, like `pg15/wal/000000010000000000000001`.
///
/// # Panics
/// When the corpus is missing, stale, or has no such file: the message says what to run.
pub fn path(rel: &str) -> PathBuf {
    let d = checked_dir().as_ref().unwrap_or_else(|e| panic!("{e}"));
    let p = d.join(rel);
    assert!(p.exists(), "the test corpus has no {}", p.display());
    p
}

/// The bytes of a corpus file.
///
/// # Panics
/// As [`path`], or when the file cannot be read.
pub fn file(rel: &str) -> Vec<u8> {
    let p = path(rel);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What the `INFO` file of a major's corpus says.
#[derive(Clone, Debug)]
pub struct Info {
    /// The server's full version.
    pub server_version: String,
    /// The first record of the range (pgbench and the workload).
    pub start_lsn: Lsn,
    /// Where the range ends: the insert position after the last statement.
    pub end_lsn: Lsn,
    /// The segment files, in order; the first holds the server's first record after initdb.
    pub segments: Vec<String>,
    /// Whether `pg_waldump.txt` and `pg_waldump-stats.txt` are there.
    pub waldump: bool,
}

/// The directory of `major`'s segments.
///
/// # Panics
/// As [`path`].
pub fn wal_dir(major: u32) -> PathBuf {
    path(&format!("pg{major}/wal"))
}

impl Info {
    /// The LSN where the first segment starts (the corpus's segments are 16 MB).
    pub fn first_segment_start(&self) -> Lsn {
        self.segment_start(0)
    }

    /// The LSN where segment `i` starts.
    pub fn segment_start(&self, i: usize) -> Lsn {
        let name = &self.segments[i];
        let hi = u64::from_str_radix(&name[8..16], 16).expect("a segment name");
        let lo = u64::from_str_radix(&name[16..24], 16).expect("a segment name");
        let size = 16 * 1024 * 1024;
        Lsn((hi << 32) + lo * size)
    }
}

/// The `INFO` of `major`'s corpus.
///
/// # Panics
/// As [`path`], or when the file does not parse.
pub fn info(major: u32) -> Info {
    let text = String::from_utf8(file(&format!("pg{major}/INFO"))).expect("INFO is text");
    let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| *map.get(k).unwrap_or_else(|| panic!("pg{major}/INFO has no {k}"));
    Info {
        server_version: get("server_version").to_owned(),
        start_lsn: get("start_lsn").parse().expect("start_lsn"),
        end_lsn: get("end_lsn").parse().expect("end_lsn"),
        segments: get("segments").split(',').map(str::to_owned).collect(),
        waldump: get("pg_waldump") == "yes",
    }
}

/// The stamp a corpus made with `installs` carries: the inputs, each server's version and
/// which `pg_waldump` (if any) described its WAL.
fn stamp_for(installs: &[PgInstall]) -> String {
    let mut s = format!("inputs={}\n", inputs_hash());
    for i in installs {
        let major = i.version().major();
        s.push_str(&format!("pg{major}={}\n", i.version_string()));
        let waldump = i.same_major_program("pg_waldump").map_or_else(|| "none".to_owned(), |p| p.display().to_string());
        s.push_str(&format!("pg{major}_waldump={waldump}\n"));
    }
    s
}

/// Whether the corpus at `out` was made with these inputs and servers.
pub fn is_current(out: &Path, installs: &[PgInstall]) -> bool {
    fs::read_to_string(out.join(STAMP)).is_ok_and(|s| s == stamp_for(installs))
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TestkitError {
    let path = path.to_owned();
    move |source| TestkitError::Io { what, path, source }
}

/// Makes the corpus of each installation into `out`, replacing what is there: built beside it
/// under a temporary name, then renamed into place, so a reader never sees half a corpus.
///
/// # Errors
/// A cluster that does not start, a statement that fails, a file that cannot be copied.
pub fn make(installs: &[PgInstall], out: &Path) -> Result<()> {
    let parent = out.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    let name = out.file_name().unwrap_or_default().to_string_lossy().into_owned();
    // A directory of its own, so two makers never share one; removed if this one fails.
    let building = tempfile::Builder::new()
        .prefix(&format!(".{name}.building-"))
        .tempdir_in(parent)
        .map_err(io("cannot create a directory in", parent))?;
    for install in installs {
        let major = install.version().major();
        log::info!("making the PostgreSQL {major} corpus");
        make_major(install, &building.path().join(format!("pg{major}")))?;
    }
    let stamp = building.path().join(STAMP);
    fs::write(&stamp, stamp_for(installs)).map_err(io("cannot write", &stamp))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(building.path(), fs::Permissions::from_mode(0o755))
        .map_err(io("cannot set permissions of", building.path()))?;
    // The old corpus moves aside and the new one takes its place at once; the old one is
    // removed last, so a failure there leaves a whole corpus in place.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = out.exists();
    if had_old {
        fs::rename(out, &old).map_err(io("cannot move", out))?;
    }
    let built = building.keep();
    fs::rename(&built, out).map_err(io("cannot move", &built))?;
    if had_old {
        fs::remove_dir_all(&old).map_err(io("cannot remove", &old))?;
    }
    Ok(())
}

fn make_major(install: &PgInstall, out: &Path) -> Result<()> {
    let major = install.version().major();
    let cluster = Cluster::builder()
        .install(install.clone())
        .setting("track_commit_timestamp", "on")
        .setting("max_prepared_transactions", "5")
        .setting("full_page_writes", "on")
        .setting("wal_compression", "off")
        // Every segment since initdb stays in pg_wal to be copied.
        .setting("wal_keep_size", "4GB")
        .setting("max_wal_size", "4GB")
        .setting("checkpoint_timeout", "1h")
        .start()?;
    let tablespace = tempfile::Builder::new()
        .prefix("pgmoneta-corpus-ts-")
        .tempdir_in("/tmp")
        .map_err(io("cannot create", Path::new("/tmp")))?;
    cluster.give_to_server(tablespace.path())?;
    let start: Lsn = lsn(&cluster.query_scalar("SELECT pg_current_wal_insert_lsn()")?)?;
    cluster.pgbench_init(1)?;
    cluster.pgbench_run(2, 150)?;
    for (min, sql) in WORKLOAD {
        if major >= *min {
            let sql = sql.replace("@TABLESPACE@", &tablespace.path().to_string_lossy());
            cluster.execute(&sql)?;
        }
    }
    let end: Lsn = lsn(&cluster.query_scalar("SELECT pg_current_wal_insert_lsn()")?)?;
    let last = cluster.query_scalar("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")?;
    cluster.switch_wal()?;
    let relations = cluster.query(
        "SELECT relname, pg_relation_filepath(oid) FROM pg_class \
         WHERE relname IN ('pgbench_accounts', 'pgbench_accounts_pkey') ORDER BY relname",
    )?;

    let wal = out.join("wal");
    let data = out.join("data");
    fs::create_dir_all(&wal).map_err(io("cannot create", &wal))?;
    fs::create_dir_all(&data).map_err(io("cannot create", &data))?;
    let pg_wal = cluster.data_dir().join("pg_wal");
    let mut names: Vec<String> = fs::read_dir(&pg_wal)
        .map_err(io("cannot list", &pg_wal))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()) && n.as_str() <= last.as_str())
        .collect();
    names.sort();
    let first = names.first().cloned().ok_or_else(|| TestkitError::Io {
        what: "no WAL segment in",
        path: pg_wal.clone(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    for n in &names {
        copy(&pg_wal.join(n), &wal.join(n))?;
    }
    for row in &relations {
        copy(&cluster.data_dir().join(&row[1]), &data.join(&row[0]))?;
    }
    drop(cluster);

    let own_waldump = install.same_major_program("pg_waldump");
    let waldump = own_waldump.is_some();
    if let Some(own_waldump) = own_waldump {
        let range = [
            "-p".to_owned(),
            wal.to_string_lossy().into_owned(),
            "-s".to_owned(),
            start.to_string(),
            "-e".to_owned(),
            end.to_string(),
        ];
        run_to_file(Command::new(&own_waldump).args(&range), &out.join("pg_waldump.txt"))?;
        run_to_file(Command::new(&own_waldump).args(&range).arg("--stats=record"), &out.join("pg_waldump-stats.txt"))?;
    }
    let info = format!(
        "server_version={}\nstart_lsn={start}\nend_lsn={end}\nfirst_segment={first}\nlast_segment={last}\nsegments={}\npg_waldump={}\n",
        install.version_string(),
        names.join(","),
        if waldump { "yes" } else { "no" },
    );
    let info_path = out.join("INFO");
    fs::write(&info_path, info).map_err(io("cannot write", &info_path))?;
    Ok(())
}

fn lsn(text: &str) -> Result<Lsn> {
    text.parse().map_err(|_| TestkitError::NoInstall(format!("the server answered {text:?} for an LSN")))
}

/// Copies a file, read-only for everyone: tests copy what they must change.
fn copy(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::copy(from, to).map_err(io("cannot copy", from))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o444)).map_err(io("cannot set permissions of", to))
}

fn run_to_file(cmd: &mut Command, to: &Path) -> Result<()> {
    cmd.env("TZ", "UTC").env("LC_ALL", "C");
    let out = cmd.output().map_err(io("cannot run", Path::new(cmd.get_program())))?;
    if !out.status.success() {
        return Err(TestkitError::Command {
            command: format!("{cmd:?}"),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    fs::write(to, &out.stdout).map_err(io("cannot write", to))
}

/// The installations of every major in [`MAJORS`], from "major=bindir" arguments.
///
/// # Errors
/// An argument that is not "major=bindir", a major given twice or missing, a directory whose
/// server is another major.
pub fn installs_from_args(args: &[String]) -> Result<Vec<PgInstall>> {
    let mut by_major: BTreeMap<u32, PgInstall> = BTreeMap::new();
    for a in args {
        let (m, bindir) =
            a.split_once('=').ok_or_else(|| TestkitError::NoInstall(format!("{a:?} is not major=bindir")))?;
        let major: u32 = m.parse().map_err(|_| TestkitError::NoInstall(format!("{m:?} is not a major version")))?;
        let install = PgInstall::at(Path::new(bindir))?;
        if install.version() != PgVersion::from_major(major).map_err(|e| TestkitError::NoInstall(e.to_string()))? {
            return Err(TestkitError::NoInstall(format!(
                "{bindir} holds PostgreSQL {}, not {major}",
                install.version_string()
            )));
        }
        if by_major.insert(major, install).is_some() {
            return Err(TestkitError::NoInstall(format!("PostgreSQL {major} given twice")));
        }
    }
    for m in MAJORS {
        if !by_major.contains_key(&m) {
            return Err(TestkitError::NoInstall(format!("no server binaries for PostgreSQL {m}")));
        }
    }
    Ok(by_major.into_values().collect())
}
