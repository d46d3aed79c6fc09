//! The WAL decoder on the real WAL of `../shared/corpus`: every record of PostgreSQL 14 to 18
//! decodes with its CRC checked and no unknown record type, and for 15 the `--waldump` lines
//! match `pg_waldump`'s own output.

use std::collections::BTreeMap;

use pgmoneta_core::{Lsn, PgVersion, WalSegmentSize};
use pgmoneta_testkit::shared_corpus;
use pgmoneta_wire::wal::{desc, waldump_line, DecodedRecord, WalDecoder};

fn info(major: u32) -> BTreeMap<String, String> {
    let text = String::from_utf8(shared_corpus(&format!("pg{major}/INFO"))).unwrap();
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Every record of a corpus, decoded from the first segment's start, fed in `chunk`-byte pieces.
pub fn corpus_records(major: u32, chunk: usize) -> Vec<DecodedRecord> {
    let i = info(major);
    let first = &i["first_segment"];
    let last = &i["last_segment"];
    let seg = WalSegmentSize::DEFAULT;
    let start = u64::from_str_radix(&first[16..], 16).unwrap() * seg.bytes();
    let mut d = WalDecoder::new(Lsn(start), None, seg);
    let mut out = Vec::new();
    let mut name = first.clone();
    loop {
        let bytes = shared_corpus(&format!("pg{major}/wal/{name}"));
        for piece in bytes.chunks(chunk) {
            d.feed(piece);
            while let Some(r) = d.next_record().unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}")) {
                out.push(r);
            }
        }
        if &name == last {
            break;
        }
        let n = u64::from_str_radix(&name[16..], 16).unwrap() + 1;
        name = format!("{}{n:08X}", &name[..16]);
    }
    out
}

#[test]
fn waldump_lines_match_pg_waldump() {
    let i = info(15);
    let start: Lsn = i["start_lsn"].parse().unwrap();
    let end: Lsn = i["end_lsn"].parse().unwrap();
    let records: Vec<DecodedRecord> =
        corpus_records(15, 1 << 20).into_iter().filter(|r| r.lsn >= start && r.lsn < end).collect();
    let expected = String::from_utf8(shared_corpus("pg15/pg_waldump.txt")).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(records.len(), expected.len(), "record count");
    let mut per_rmgr: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut shown = 0;
    for (r, want) in records.iter().zip(&expected) {
        let got = waldump_line(r);
        let e = per_rmgr.entry(desc::rmgr_name(r.rmid).into_owned()).or_default();
        e.1 += 1;
        if got.trim_end() == want.trim_end() {
            e.0 += 1;
        } else if shown < 40 {
            shown += 1;
            eprintln!("got:  {got}\nwant: {want}\n");
        }
    }
    let (mut ok, mut all) = (0, 0);
    for (rmgr, (good, total)) in &per_rmgr {
        eprintln!("{rmgr:<18} {good:>6}/{total:<6} {:.2}%", *good as f64 * 100.0 / *total as f64);
        ok += good;
        all += total;
    }
    let overall = ok as f64 * 100.0 / all as f64;
    eprintln!("overall {ok}/{all} {overall:.2}%");
    // Every line matches, for every resource manager in the corpus (the goal was all of Heap,
    // Heap2, Btree, XLOG, Transaction, Standby and Storage, and 98% overall).
    for (rmgr, (good, total)) in &per_rmgr {
        assert_eq!(good, total, "{rmgr}: {good} of {total} lines match");
    }
    assert_eq!(ok, all, "{overall:.2}% of lines match");
}

#[test]
fn every_version_decodes_with_no_unknown_record() {
    for major in [14, 15, 16, 17, 18] {
        let records = corpus_records(major, 1 << 20);
        assert!(records.len() > 1000, "PostgreSQL {major}: {} records", records.len());
        let version = PgVersion::from_major(major).unwrap();
        for r in &records {
            assert_eq!(r.version, version);
            assert!(
                desc::identify(r).is_some(),
                "PostgreSQL {major}: unknown record at {}: {}",
                r.lsn,
                waldump_line(r)
            );
        }
    }
}

#[test]
fn records_are_the_same_however_the_input_is_split() {
    let whole = corpus_records(16, 1 << 24);
    for chunk in [1usize, 7, 8191, 8192, 65_537] {
        let split = corpus_records(16, chunk);
        assert!(split == whole, "chunks of {chunk} bytes decode differently");
    }
}

fn first_segment(major: u32) -> (Vec<u8>, Lsn) {
    let i = info(major);
    let first = &i["first_segment"];
    let start = u64::from_str_radix(&first[16..], 16).unwrap() * WalSegmentSize::DEFAULT.bytes();
    (shared_corpus(&format!("pg{major}/wal/{first}")), Lsn(start))
}

fn decode_all(bytes: &[u8], start: Lsn) -> Result<usize, pgmoneta_wire::WireError> {
    let mut d = WalDecoder::new(start, None, WalSegmentSize::DEFAULT);
    d.feed(bytes);
    let mut n = 0;
    while d.next_record()?.is_some() {
        n += 1;
    }
    Ok(n)
}

#[test]
fn damage_is_reported_with_its_position() {
    let (bytes, start) = first_segment(15);
    let clean = decode_all(&bytes, start).unwrap();
    assert!(clean > 1000);
    // A flipped byte inside a record: its CRC fails, at its LSN.
    let records = corpus_records(15, 1 << 24);
    let victim = &records[100];
    let offset = (victim.lsn.0 - start.0) as usize + 30;
    let mut bad = bytes.clone();
    bad[offset] ^= 0x40;
    let err = decode_all(&bad, start).unwrap_err().to_string();
    assert!(err.contains(&victim.lsn.to_string()) && err.contains("checksum"), "{err}");
    // A page with a wrong magic.
    let mut bad = bytes.clone();
    bad[8192 * 3] ^= 0xFF;
    let err = decode_all(&bad, start).unwrap_err().to_string();
    assert!(err.contains("magic"), "{err}");
    // A page with the wrong address.
    let mut bad = bytes.clone();
    bad[8192 * 5 + 9] ^= 0x01;
    let err = decode_all(&bad, start).unwrap_err().to_string();
    assert!(err.contains("page address"), "{err}");
    // Truncated: the records before the cut, then a request for more bytes, never an error.
    let cut = &bytes[..bytes.len() / 2 + 3];
    let mut d = WalDecoder::new(start, None, WalSegmentSize::DEFAULT);
    d.feed(cut);
    let mut n = 0;
    while d.next_record().unwrap().is_some() {
        n += 1;
    }
    assert!(n > 0 && n < clean);
}

/// Started at a record in the middle of a page (an incremental backup reads from its parent's
/// start), the decoder must know the version before that page's records: PostgreSQL 14 marks
/// an image restored at replay with the bit that 15 and later use for a pglz-compressed one.
#[test]
fn a_decoder_started_mid_page_reads_images_by_the_pages_version() {
    let (bytes, start) = first_segment(14);
    let seg_end = start.0 + bytes.len() as u64;
    let records = corpus_records(14, 1 << 24);
    let at = records
        .iter()
        .position(|r| {
            r.lsn.0 % 8192 > 64
                && r.end.0 < seg_end
                && r.blocks.iter().any(|b| b.image.is_some_and(|i| i.has_hole && i.apply && i.compression.is_none()))
        })
        .expect("a PostgreSQL 14 image with a hole in the first segment");
    let target = &records[at];
    let expected: Vec<_> = records[at..].iter().take_while(|r| r.end.0 <= seg_end).collect();
    // From the page's start: the header gives the version, the same records come out.
    let page = target.lsn.0 - target.lsn.0 % 8192;
    let mut d = WalDecoder::from_page_start(target.lsn, None, WalSegmentSize::DEFAULT);
    d.feed(&bytes[(page - start.0) as usize..]);
    let mut got = Vec::new();
    while let Some(r) = d.next_record().unwrap() {
        got.push(r);
    }
    assert_eq!(d.version(), Some(PgVersion::V14));
    assert!(got.iter().eq(expected.iter().copied()), "{} records, expected {}", got.len(), expected.len());
    // From the record itself, the version given: the same.
    let mut d = WalDecoder::new(target.lsn, Some(PgVersion::V14), WalSegmentSize::DEFAULT);
    d.feed(&bytes[(target.lsn.0 - start.0) as usize..]);
    assert!(d.next_record().unwrap().as_ref() == Some(target));
    // Not given and not learnt: an error that says so, never a guess.
    let mut d = WalDecoder::new(target.lsn, None, WalSegmentSize::DEFAULT);
    d.feed(&bytes[(target.lsn.0 - start.0) as usize..]);
    let err = d.next_record().unwrap_err().to_string();
    assert!(err.contains("version is not known") && err.contains(&target.lsn.to_string()), "{err}");
    // A position that is not a record's start on its page is refused.
    let mut d = WalDecoder::from_page_start(Lsn(page + 8), None, WalSegmentSize::DEFAULT);
    d.feed(&bytes[(page - start.0) as usize..]);
    let err = d.next_record().unwrap_err().to_string();
    assert!(err.contains("not a record's start"), "{err}");
}

/// A workload touching most resource managers, one statement (or transaction) per entry.
const WORKLOAD: &[&str] = &[
    "CREATE TABLE w (id int PRIMARY KEY, v text, a int[], p point, r int4range)",
    "INSERT INTO w SELECT g, md5(g::text), ARRAY[g, g + 1], point(g, g), int4range(g, g + 10) FROM generate_series(1, 3000) g",
    "CREATE INDEX w_hash ON w USING hash (v)",
    "CREATE INDEX w_gin ON w USING gin (a)",
    "CREATE INDEX w_gist ON w USING gist (p)",
    "CREATE INDEX w_spgist ON w USING spgist (r)",
    "CREATE INDEX w_brin ON w USING brin (id)",
    // bloom (contrib) writes Generic records for its index pages.
    "CREATE EXTENSION bloom",
    "CREATE INDEX w_bloom ON w USING bloom (id)",
    "UPDATE w SET v = v || 'x' WHERE id % 7 = 0",
    "UPDATE w SET id = id + 100000 WHERE id % 11 = 0",
    "DELETE FROM w WHERE id % 13 = 0",
    "BEGIN; SAVEPOINT s; INSERT INTO w VALUES (-1, 'sub'); RELEASE s; COMMIT",
    "BEGIN; INSERT INTO w VALUES (-2, 'gone'); ROLLBACK",
    "CREATE SEQUENCE w_seq",
    "SELECT nextval('w_seq')",
    "CREATE UNLOGGED TABLE u (x int)",
    "INSERT INTO u VALUES (1)",
    "CREATE TABLE t2 (x int)",
    "INSERT INTO t2 VALUES (1)",
    "TRUNCATE t2",
    "SELECT pg_logical_emit_message(true, 'pgmoneta', 'a message')",
    "SELECT pg_create_restore_point('fresh')",
    "VACUUM w",
    "CLUSTER w USING w_pkey",
    "REINDEX TABLE w",
    "BEGIN; INSERT INTO t2 VALUES (2); PREPARE TRANSACTION 'p1'",
    "COMMIT PREPARED 'p1'",
    "CREATE DATABASE fresh_db",
    "DROP DATABASE fresh_db",
    "CHECKPOINT",
];

#[test]
fn fresh_wal_matches_pg_waldump_of_the_same_range() {
    use pgmoneta_testkit::Cluster;
    let cluster = Cluster::builder()
        .setting("track_commit_timestamp", "on")
        .setting("max_prepared_transactions", "5")
        .start()
        .unwrap();
    let start: Lsn = cluster.query_scalar("SELECT pg_current_wal_insert_lsn()").unwrap().parse().unwrap();
    for sql in WORKLOAD {
        cluster.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let end: Lsn = cluster.query_scalar("SELECT pg_current_wal_insert_lsn()").unwrap().parse().unwrap();
    cluster.execute("SELECT pg_switch_wal()").unwrap();
    let seg = WalSegmentSize::new(
        cluster
            .query_scalar("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'")
            .unwrap()
            .parse()
            .unwrap(),
    )
    .unwrap();
    let tli: u32 = cluster.query_scalar("SELECT timeline_id FROM pg_control_checkpoint()").unwrap().parse().unwrap();
    let pg_wal = cluster.data_dir().join("pg_wal");

    // Ours, from `start`, through the segments that hold the range.
    let mut d = WalDecoder::from_page_start(start, None, seg);
    let mut ours = Vec::new();
    let mut segno = start.0 / seg.bytes();
    let mut offset = (start.0 % seg.bytes() - start.0 % 8192) as usize;
    'segments: loop {
        let name = format!(
            "{tli:08X}{:08X}{:08X}",
            segno / (0x1_0000_0000 / seg.bytes()),
            segno % (0x1_0000_0000 / seg.bytes())
        );
        let bytes = std::fs::read(pg_wal.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        d.feed(&bytes[offset..]);
        offset = 0;
        while let Some(r) = d.next_record().unwrap() {
            if r.lsn >= end {
                break 'segments;
            }
            ours.push(r);
        }
        segno += 1;
    }
    assert!(ours.len() > 1000, "{} records", ours.len());
    assert!(ours.iter().any(|r| r.rmid == desc::rmid::GENERIC), "the bloom index wrote no Generic record");
    for r in &ours {
        assert!(desc::identify(r).is_some(), "unknown record at {}: {}", r.lsn, waldump_line(r));
    }
    if cluster.version() != PgVersion::V15 {
        // pg_waldump's line format is PostgreSQL 15's here; other versions decode above.
        return;
    }
    let out = std::process::Command::new(cluster.install().client_program("pg_waldump"))
        .arg("-p")
        .arg(&pg_wal)
        .args(["-s", &start.to_string(), "-e", &end.to_string()])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let theirs = String::from_utf8_lossy(&out.stdout).into_owned();
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(ours.len(), theirs.len(), "records in the range:\n{}", String::from_utf8_lossy(&out.stderr));
    let mut differ = 0;
    for (r, want) in ours.iter().zip(&theirs) {
        let got = waldump_line(r);
        if got.trim_end() != want.trim_end() {
            differ += 1;
            if differ < 10 {
                eprintln!("got:  {got}\nwant: {want}\n");
            }
        }
    }
    assert_eq!(differ, 0, "{differ} of {} lines differ from pg_waldump", ours.len());
}

#[test]
fn block_reference_summary_of_the_corpus() {
    use pgmoneta_wire::wal::summary::{BlockRefTable, RelFork};
    let mut table = BlockRefTable::default();
    for r in corpus_records(15, 1 << 24) {
        table.add_record(&r);
    }
    // pg_type (1247) block 14 is changed by the first records of the workload.
    let pg_type = table.get(&RelFork { spc: 1663, db: 5, rel: 1247, fork: 0 }).unwrap();
    assert!(pg_type.blocks.contains(&14));
    // base/5/16384 is created in the range: nothing of it can come from an earlier backup.
    let created = table.get(&RelFork { spc: 1663, db: 5, rel: 16384, fork: 0 }).unwrap();
    assert_eq!(created.limit_block, Some(0));
    // Every block reference of every record is in the table.
    let total: usize = table.iter().map(|(_, c)| c.blocks.len()).sum();
    assert!(total > 1000, "{total} blocks");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// The same records, whatever the split points (the first 512 kB of a real segment).
    #[test]
    fn any_split_gives_the_same_records(cuts in proptest::collection::vec(1usize..(512 << 10), 0..12)) {
        let (bytes, start) = first_segment(17);
        let data = &bytes[..512 << 10];
        let mut whole = WalDecoder::new(start, None, WalSegmentSize::DEFAULT);
        whole.feed(data);
        let mut expected = Vec::new();
        while let Some(r) = whole.next_record().unwrap() {
            expected.push(r);
        }
        let mut points = cuts.clone();
        points.sort_unstable();
        points.dedup();
        let mut d = WalDecoder::new(start, None, WalSegmentSize::DEFAULT);
        let mut got = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([data.len()]) {
            d.feed(&data[from..p]);
            from = p;
            while let Some(r) = d.next_record().unwrap() {
                got.push(r);
            }
        }
        proptest::prop_assert!(got == expected, "split at {:?}", cuts);
    }
}
