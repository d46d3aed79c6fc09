//! A database with thousands of relations: every operation's work on the repository grows with
//! the number of files it handles, never with its square. The store counts the listings,
//! entries listed and calls of each operation; a count per file that grew with the number of
//! files (a listing per file, a search per file) fails the test whatever the machine's speed.

use std::sync::Arc;
use std::time::Instant;

use pgmoneta_compress::{Algorithm, Compression};
use pgmoneta_storage::backup::BackupOptions;
use pgmoneta_storage::catalog::load_info;
use pgmoneta_storage::catalog::{list_backups, BackupSelector};
use pgmoneta_storage::export::{update_hot_standby, HotStandbyOptions};
use pgmoneta_storage::info::BackupType;
use pgmoneta_storage::ops::{delete_backup_with, DeleteOptions};
use pgmoneta_storage::restore::{restore, RestoreOptions};
use pgmoneta_storage::store::{LocalStore, Store};
use pgmoneta_storage::verify::verify;
use pgmoneta_testkit::Cluster;

use crate::{label, shared_dir, take_incremental, CountingStore, StoreCounts, Streamer};

/// Tables of the test (each a heap, its primary key, a TOAST table and its index): 1,500 by
/// default, `PGMONETA_TEST_TABLES` to change.
fn tables() -> u32 {
    std::env::var("PGMONETA_TEST_TABLES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

/// Most store work an operation may do per file it handles. A listing per file of a
/// directory of thousands costs thousands per file; linear work costs a handful.
const WORK_PER_FILE: u64 = 12;

/// A function, kept in the database and so in its backups, that sums every test table's rows
/// in a fixed order: the same text on a restored cluster means the same data.
const CHECKSUM_FUNCTION: &str = "CREATE FUNCTION rel_checksum() RETURNS text LANGUAGE plpgsql AS $$ \
    DECLARE t text; r text; acc text := ''; BEGIN \
    FOR t IN SELECT relname FROM pg_class WHERE relname LIKE 'rel\\_%' AND relkind = 'r' ORDER BY relname LOOP \
    EXECUTE format('SELECT coalesce(string_agg(id || '':'' || v, '','' ORDER BY id), '''') FROM %I', t) INTO r; \
    acc := md5(acc || t || '=' || r); END LOOP; \
    RETURN (SELECT count(*) FROM pg_class WHERE relname LIKE 'rel\\_%' AND relkind = 'r') || ' ' || acc; END $$";

fn create_tables(cluster: &Cluster, n: u32) {
    // In batches: each table takes four locks, more than one transaction may hold.
    for start in (0..n).step_by(250) {
        let end = (start + 250).min(n);
        cluster
            .execute(&format!(
                "DO $$ BEGIN FOR i IN {start}..{} LOOP \
                 EXECUTE format('CREATE TABLE rel_%s (id int PRIMARY KEY, v text)', i); \
                 EXECUTE format('INSERT INTO rel_%s VALUES (%s, ''row %s'')', i, i, i); \
                 END LOOP; END $$",
                end - 1
            ))
            .unwrap();
    }
    cluster.execute(CHECKSUM_FUNCTION).unwrap();
}

/// The number of files and of symbolic links under a directory.
fn count_under(dir: &std::path::Path) -> (u64, u64) {
    let (mut files, mut links) = (0, 0);
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let kind = e.file_type().unwrap();
            if kind.is_dir() {
                stack.push(e.path());
            } else if kind.is_symlink() {
                links += 1;
            } else {
                files += 1;
            }
        }
    }
    (files, links)
}

/// The number of files under a directory, links included.
fn files_under(dir: &std::path::Path) -> u64 {
    let (files, links) = count_under(dir);
    files + links
}

fn links_under(dir: &std::path::Path) -> u64 {
    count_under(dir).1
}

struct Measured {
    rows: Vec<String>,
    failures: Vec<String>,
}

impl Measured {
    /// Records an operation that handled `files` files, with what the store counted and how
    /// long it took.
    fn record(&mut self, what: &str, files: u64, counts: StoreCounts, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        let per_file = counts.work() as f64 / files.max(1) as f64;
        self.rows.push(format!(
            "{what:<34} {files:>7} files {:>6} lists {:>8} listed {:>8} calls {per_file:>6.2}/file {:>8.1} us/file",
            counts.lists,
            counts.listed,
            counts.calls,
            seconds * 1e6 / files.max(1) as f64
        ));
        if counts.work() > WORK_PER_FILE * files + 1000 {
            self.failures.push(format!("{what}: {per_file:.1} store operations per file ({counts:?})"));
        }
    }
}

/// Two full backups (the second linked to the first), a hot standby copied and updated, an
/// incremental, verify, a combined restore that PostgreSQL starts on, and the deletions that
/// relink and roll up, on a database of thousands of tables.
#[test]
fn thousands_of_relations_cost_linear_work() {
    let n = tables();
    // The checksum reads every table in one transaction, a lock each.
    let cluster = Cluster::builder().setting("max_locks_per_transaction", &(n / 50 + 64).to_string()).start().unwrap();
    create_tables(&cluster, n);
    cluster.execute("CHECKPOINT").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let local: Arc<dyn Store> = Arc::new(LocalStore::new(repo.path()));
    let _wal = Streamer::start(&cluster, repo.path());
    let counting = Arc::new(CountingStore::new(local.clone()));
    let store: Arc<dyn Store> = counting.clone();
    let mut m = Measured { rows: Vec::new(), failures: Vec::new() };
    let backup_files = |lbl: &str| files_under(&repo.path().join(format!("primary/backup/{lbl}")));
    let options = |i: u32, parent: Option<&str>| {
        let mut o = BackupOptions::new("primary", label(i));
        o.compression = Compression::client(Algorithm::Lz4);
        o.workers = 2;
        o.parent = parent.map(str::to_owned);
        o
    };

    counting.take();
    let t = Instant::now();
    let first = take_incremental(&cluster, store.clone(), &options(1, None));
    let files = backup_files(&first.label);
    assert!(u64::from(n) * 4 <= files, "{files} files for {n} tables");
    m.record("full backup", files, counting.take(), t);

    // A few tables change; the second full backup links every other file to the first.
    cluster.execute("UPDATE rel_1 SET v = 'changed'; INSERT INTO rel_2 VALUES (-2, 'new row')").unwrap();
    cluster.execute("CHECKPOINT").unwrap();
    let t = Instant::now();
    let second = take_incremental(&cluster, store.clone(), &options(2, None));
    m.record("second full backup, linked", backup_files(&second.label), counting.take(), t);
    let linked = links_under(&repo.path().join(format!("primary/backup/{}", second.label)));
    assert!(linked > u64::from(n) * 3, "only {linked} files of the second backup are links");
    assert!(second.elapsed.linking > 0.0);

    // A hot standby: a full copy of the second backup, then updated in place from the
    // incremental below.
    let hs = shared_dir("pgmoneta-scale-hs-");
    let mut hs_options = HotStandbyOptions::new("primary", hs.path());
    hs_options.workers = 2;
    let t = Instant::now();
    let copied = update_hot_standby(store.as_ref(), &hs_options).unwrap();
    m.record("hot standby, full copy", copied as u64, counting.take(), t);

    cluster.execute("UPDATE rel_3 SET v = 'changed again'; DELETE FROM rel_4").unwrap();
    cluster.execute(&format!("CREATE TABLE rel_{n} AS SELECT 1 AS id, 'late'::text AS v")).unwrap();
    let expected = cluster.query_scalar("SELECT rel_checksum()").unwrap();
    let t = Instant::now();
    let third = take_incremental(&cluster, store.clone(), &options(3, Some(&second.label)));
    assert_eq!(third.backup_type, BackupType::Incremental);
    let increments = std::fs::read_dir(repo.path().join(format!("primary/backup/{}/data/base", third.label)))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("INCREMENTAL."))
        .count();
    assert!(increments as u64 > u64::from(n), "only {increments} incremental files");
    m.record("incremental backup", backup_files(&third.label), counting.take(), t);

    let t = Instant::now();
    update_hot_standby(store.as_ref(), &hs_options).unwrap();
    m.record("hot standby, incremental update", backup_files(&third.label), counting.take(), t);

    let t = Instant::now();
    let backups = list_backups(store.as_ref(), "primary").unwrap();
    assert_eq!(backups.len(), 3);
    m.record("list backups", 3, counting.take(), t);

    for info in [&second, &third] {
        let t = Instant::now();
        let (failed, all) = verify(store.as_ref(), "primary", &info.label, None, 2).unwrap();
        assert!(failed.is_empty(), "{}: {failed:?}", info.label);
        m.record(&format!("verify {:?}", info.backup_type), all.len() as u64, counting.take(), t);
    }

    // The incremental restored through its chain; PostgreSQL starts on it with the same data.
    let root = shared_dir("pgmoneta-scale-restore-");
    let mut ropts = RestoreOptions::new("primary", BackupSelector::Label(third.label.clone()), root.path());
    ropts.workers = 2;
    let t = Instant::now();
    let report = restore(store.as_ref(), &ropts).unwrap();
    m.record("restore, combined chain", report.files as u64, counting.take(), t);
    {
        let restored =
            Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password()).unwrap();
        assert_eq!(restored.query_scalar("SELECT rel_checksum()").unwrap(), expected);
    }
    std::fs::remove_dir_all(&report.data_dir).unwrap();

    // Deleting the first backup moves every file the second links to into the second.
    let mut delete = DeleteOptions::default();
    delete.workspace = repo.path().to_owned();
    let t = Instant::now();
    delete_backup_with(store.as_ref(), "primary", &first.label, &delete).unwrap();
    m.record("delete with relink", backup_files(&second.label), counting.take(), t);
    // Deleting the second rolls it up into the incremental, which becomes full.
    let t = Instant::now();
    delete_backup_with(store.as_ref(), "primary", &second.label, &delete).unwrap();
    m.record("delete with roll-up", backup_files(&third.label), counting.take(), t);
    let survivor = load_info(local.as_ref(), "primary", &third.label).unwrap();
    assert_eq!(survivor.backup_type, BackupType::Full);
    let (failed, _) = verify(local.as_ref(), "primary", &third.label, None, 2).unwrap();
    assert!(failed.is_empty(), "after the deletions: {failed:?}");

    let t = Instant::now();
    let report = restore(store.as_ref(), &ropts).unwrap();
    m.record("restore, plain", report.files as u64, counting.take(), t);
    let restored =
        Cluster::start_on(cluster.install().clone(), &report.data_dir, cluster.superuser_password()).unwrap();
    assert_eq!(restored.query_scalar("SELECT rel_checksum()").unwrap(), expected);

    eprintln!("PostgreSQL {}, {n} tables:\n{}", cluster.version().major(), m.rows.join("\n"));
    assert!(m.failures.is_empty(), "work growing faster than the files handled:\n{}", m.failures.join("\n"));
}
