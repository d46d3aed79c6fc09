//! The WAL decoder on the real WAL of the test corpus (`pgmoneta_testkit::corpus`): every
//! record of PostgreSQL 14 to 18 decodes with its CRC checked and no unknown record type, and
//! where the corpus has `pg_waldump`'s output (15) the `--waldump` lines match it.

use std::collections::BTreeMap;

use pgmoneta_core::{Lsn, PgVersion, WalSegmentSize};
use pgmoneta_testkit::corpus;
use pgmoneta_wire::wal::{desc, waldump_line, DecodedRecord, WalDecoder};

/// Every record of a corpus, decoded from the first segment's start, fed in `chunk`-byte pieces.
pub fn corpus_records(major: u32, chunk: usize) -> Vec<DecodedRecord> {
    corpus_records_upto(major, chunk, usize::MAX)
}

/// The records of the first `limit` bytes of a corpus.
fn corpus_records_upto(major: u32, chunk: usize, limit: usize) -> Vec<DecodedRecord> {
    let info = corpus::info(major);
    let mut d = WalDecoder::new(info.first_segment_start(), None, WalSegmentSize::DEFAULT);
    let mut out = Vec::new();
    let mut left = limit;
    for name in &info.segments {
        let bytes = corpus::file(&format!("pg{major}/wal/{name}"));
        let bytes = &bytes[..bytes.len().min(left)];
        left -= bytes.len();
        for piece in bytes.chunks(chunk) {
            d.feed(piece);
            while let Some(r) = d.next_record().unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}")) {
                out.push(r);
            }
        }
        if left == 0 {
            break;
        }
    }
    out
}

/// Our lines against each major's own `pg_waldump`: whole lines for 14 and 15 (whose wording
/// ours follows); from 16, which words descriptions differently, everything but the
/// description: record boundaries, lengths, transaction, position, previous record, resource
/// manager and block references.
#[test]
fn waldump_lines_match_pg_waldump() {
    let mut compared = Vec::new();
    for major in corpus::MAJORS {
        if corpus::info(major).waldump {
            waldump_lines_match_for(major);
            compared.push(major);
        } else if !pgmoneta_testkit::in_ci() {
            eprintln!("SKIPPED the comparison with pg_waldump for PostgreSQL {major}: the corpus has no output of it");
        }
    }
    // Debian's PostgreSQL 15 has pg_waldump; the set-up unpacks the others'.
    let wanted: &[u32] = if pgmoneta_testkit::in_ci() { &corpus::MAJORS } else { &[15] };
    for m in wanted {
        assert!(
            compared.contains(m),
            "the corpus has no pg_waldump output for PostgreSQL {m} (only {compared:?}): run scripts/setup.sh"
        );
    }
    eprintln!("compared with pg_waldump: PostgreSQL {compared:?}");
}

/// A `pg_waldump` line without its description (kept up to "desc:", then from the first block
/// reference).
fn without_description(line: &str) -> String {
    let line = line.trim_end();
    match line.split_once(" desc: ") {
        Some((head, rest)) => match rest.find(", blkref #").or_else(|| rest.find("blkref #")) {
            Some(at) => format!("{head} {}", &rest[at..]),
            None => head.to_owned(),
        },
        None => line.to_owned(),
    }
}

fn waldump_lines_match_for(major: u32) {
    let whole_lines = major <= 15;
    let info = corpus::info(major);
    let (start, end) = (info.start_lsn, info.end_lsn);
    let records: Vec<DecodedRecord> =
        corpus_records(major, 1 << 20).into_iter().filter(|r| r.lsn >= start && r.lsn < end).collect();
    let expected = String::from_utf8(corpus::file(&format!("pg{major}/pg_waldump.txt"))).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(records.len(), expected.len(), "PostgreSQL {major}: record count");
    let mut per_rmgr: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut shown = 0;
    for (r, want) in records.iter().zip(&expected) {
        let got = waldump_line(r);
        let e = per_rmgr.entry(desc::rmgr_name(r.rmid).into_owned()).or_default();
        e.1 += 1;
        let same = if whole_lines {
            got.trim_end() == want.trim_end()
        } else {
            without_description(&got) == without_description(want)
        };
        if same {
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
        assert_eq!(good, total, "PostgreSQL {major}: {rmgr}: {good} of {total} lines match");
    }
    assert_eq!(ok, all, "PostgreSQL {major}: {overall:.2}% of lines match");
}

#[test]
fn every_version_decodes_with_no_unknown_record() {
    for major in corpus::MAJORS {
        let records = corpus_records(major, 1 << 20);
        assert!(records.len() > 1000, "PostgreSQL {major}: {} records", records.len());
        let version = PgVersion::from_major(major).unwrap();
        // Every resource manager writes in the workload, but CLOG and CommitTs, which log only
        // when a transaction starts a new page of theirs (every 32,768 transactions or so).
        let present: std::collections::BTreeSet<u8> = records.iter().map(|r| r.rmid).collect();
        let missing: Vec<&str> = desc::RMGR_NAMES
            .iter()
            .enumerate()
            .filter(|(id, name)| !present.contains(&(*id as u8)) && !["CLOG", "CommitTs"].contains(name))
            .map(|(_, name)| *name)
            .collect();
        assert!(missing.is_empty(), "PostgreSQL {major}: no record of {missing:?}");
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
    for chunk in [7, 8191, 8192, 65_537] {
        let split = corpus_records(16, chunk);
        assert!(split == whole, "chunks of {chunk} bytes decode differently");
    }
    // A byte at a time over the first segment and a half (a segment boundary included).
    let limit = 24 << 20;
    let whole = corpus_records_upto(16, 1 << 24, limit);
    assert!(corpus_records_upto(16, 1, limit) == whole, "single bytes decode differently");
}

fn first_segment(major: u32) -> (Vec<u8>, Lsn) {
    let info = corpus::info(major);
    (corpus::file(&format!("pg{major}/wal/{}", info.segments[0])), info.first_segment_start())
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

#[test]
fn fresh_wal_matches_pg_waldump_of_the_same_range() {
    use pgmoneta_testkit::Cluster;
    let cluster = Cluster::builder()
        .setting("track_commit_timestamp", "on")
        .setting("max_prepared_transactions", "5")
        .start()
        .unwrap();
    // The corpus's workload, on this server.
    let tablespace = tempfile::Builder::new().prefix("pgmoneta-wal-ts-").tempdir_in("/tmp").unwrap();
    cluster.give_to_server(tablespace.path()).unwrap();
    let start: Lsn = cluster.query_scalar("SELECT pg_current_wal_insert_lsn()").unwrap().parse().unwrap();
    for (min, sql) in corpus::WORKLOAD {
        if cluster.version().major() >= *min {
            let sql = sql.replace("@TABLESPACE@", &tablespace.path().to_string_lossy());
            cluster.execute(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
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
    let mut offset = (d.fed_until().0 % seg.bytes()) as usize;
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
    let major = cluster.version().major();
    let Some(tool) = pgmoneta_testkit::require(
        cluster.install().same_major_program("pg_waldump"),
        &format!("pg_waldump of PostgreSQL {major} (scripts/setup.sh installs it)"),
        "the comparison with pg_waldump",
    ) else {
        return;
    };
    let out = std::process::Command::new(tool)
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
        // Whole lines up to 15, whose wording ours follows; from 16 all but the descriptions.
        let same = if major <= 15 {
            got.trim_end() == want.trim_end()
        } else {
            without_description(&got) == without_description(want)
        };
        if !same {
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
    let mut first_created = None;
    for r in corpus_records(15, 1 << 24) {
        table.add_record(&r);
        if first_created.is_none() && r.rmid == desc::rmid::SMGR && r.record_info() == 0x10 {
            let d = r.main_data();
            let u = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
            first_created = Some(RelFork { spc: u(0), db: u(4), rel: u(8), fork: u(12) as u8 });
        }
    }
    // A relation created in the range: nothing of it can come from an earlier backup.
    let created = first_created.expect("a relation created in the corpus");
    assert_eq!(table.get(&created).unwrap().limit_block, Some(0), "{created:?}");
    // Every block reference of every record is in the table, as a changed block or beyond a
    // limit (a relation created or truncated).
    let mut refs = 0;
    for r in corpus_records(15, 1 << 24) {
        for b in &r.blocks {
            let (spc, db, rel) = b.locator;
            let fork = RelFork { spc, db, rel, fork: b.fork };
            let entry = table.get(&fork).unwrap_or_else(|| panic!("{fork:?} of the record at {} is missing", r.lsn));
            assert!(
                entry.blocks.contains(&b.block) || entry.limit_block.is_some_and(|l| b.block >= l),
                "block {} of {fork:?} (record at {}) is missing",
                b.block,
                r.lsn
            );
            refs += 1;
        }
    }
    assert!(refs > 10_000, "{refs} block references");
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
