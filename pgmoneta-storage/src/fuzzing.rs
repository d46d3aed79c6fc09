//! Invariants of the repository's own file formats, checked by the fuzz targets and by the
//! tests that replay their seed corpora: `backup.info`, `backup.manifest` and `backup.sha512`,
//! PostgreSQL's `backup_manifest`, and tar streams (member headers above all).

use crate::info::BackupInfo;
use crate::manifest::{BackupManifest, PgManifest, Sha512Sums};
use crate::tar::{TarEvent, TarParser};

/// `backup.info`: no panic; an error names the file; what parses is written back as text that
/// parses to the same text again.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_backup_info(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match BackupInfo::parse(text, "fuzz/backup.info") {
        Ok(info) => {
            let written = info.to_text();
            let again = BackupInfo::parse(&written, "fuzz/backup.info").expect("a written backup.info parses");
            assert_eq!(again.to_text(), written, "backup.info does not survive a round trip");
        }
        Err(e) => assert!(e.to_string().contains("fuzz/backup.info"), "the error does not name the file: {e}"),
    }
}

/// `backup.manifest` and `backup.sha512`: no panic; an error names the file; what parses is
/// written back and parses to the same.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_backup_manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match BackupManifest::parse(text, "fuzz/backup.manifest") {
        Ok(m) => assert_eq!(BackupManifest::parse(&m.to_text(), "fuzz/backup.manifest").expect("parses"), m),
        Err(e) => assert!(e.to_string().contains("fuzz/backup.manifest"), "{e}"),
    }
    match Sha512Sums::parse(text, "fuzz/backup.sha512") {
        Ok(s) => assert_eq!(Sha512Sums::parse(&s.to_text(), "fuzz/backup.sha512").expect("parses"), s),
        Err(e) => assert!(e.to_string().contains("fuzz/backup.sha512"), "{e}"),
    }
}

/// PostgreSQL's `backup_manifest`: no panic; what parses is written back (with its checksum)
/// and parses to the same files, WAL ranges and identity.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_pg_manifest(data: &[u8]) {
    if let Ok(m) = PgManifest::parse(data) {
        let written = m.to_bytes("2026-01-01 00:00:00 GMT");
        let again = PgManifest::parse(&written).expect("a written backup_manifest parses");
        assert_eq!(again.files.len(), m.files.len());
        for (a, b) in again.files.iter().zip(&m.files) {
            assert_eq!(
                (&a.path, a.size, &a.checksum_algorithm, &a.checksum),
                (&b.path, b.size, &b.checksum_algorithm, &b.checksum)
            );
        }
        assert_eq!(again.wal_ranges, m.wal_ranges);
        assert_eq!(again.system_identifier, m.system_identifier.filter(|_| m.version >= 2));
    }
}

/// What a parse saw: each event (data as bytes), and the error if any.
fn parse_in_pieces(data: &[u8], step: usize) -> (Vec<String>, Option<String>) {
    let mut parser = TarParser::new();
    let mut events: Vec<String> = Vec::new();
    let mut error = None;
    for piece in data.chunks(step.max(1)) {
        let r = parser.feed(piece, |e| {
            match e {
                // Data may arrive split differently: joined into the previous data event.
                TarEvent::Data(d) => match events.last_mut() {
                    Some(last) if last.starts_with("data ") => last.push_str(&hex(d)),
                    _ => events.push(format!("data {}", hex(d))),
                },
                other => events.push(format!("{other:?}")),
            }
            Ok::<(), crate::tar::TarError>(())
        });
        if let Err(e) = r {
            error = Some(e);
            break;
        }
    }
    let error = error.or_else(|| parser.finish().err());
    if let Some(e) = &error {
        if let Some(offset) = e.offset() {
            assert!(offset <= data.len() as u64, "{e} for {} bytes", data.len());
            assert!(e.to_string().contains(&format!("at byte {offset}")), "the error does not say where: {e}");
        }
    }
    (events, error.map(|e| e.to_string()))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tar stream: no panic; the same members, data and error whether it arrives whole or in
/// pieces of a size taken from its first byte; an error's offset lies within the input and is
/// named in its message.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_tar(data: &[u8]) {
    let whole = parse_in_pieces(data, data.len().max(1));
    let step = usize::from(data.first().copied().unwrap_or(0)) * 7 + 1;
    let split = parse_in_pieces(data, step);
    assert_eq!(whole, split, "parses differ when the stream arrives in pieces of {step} bytes");
}
