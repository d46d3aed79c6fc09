//! Invariants checked by the `wal_decoder` fuzz target and by the test that replays its seeds.

use pgmoneta_core::{Lsn, WalSegmentSize};

use super::{desc, waldump_line, WalDecoder};

/// Decodes `data` as WAL starting at a segment boundary, whole and in pieces of a size taken
/// from the first byte, and asserts: no panic (descriptions included); both ways give the same
/// records and stop at the same error; every record lies within the bytes fed and its CRC was
/// checked (its recomputed CRC equals the stored one).
///
/// # Panics
/// When an invariant does not hold.
pub fn check_wal_decoder(data: &[u8]) {
    let whole = decode(data, data.len().max(1));
    let step = usize::from(data.first().copied().unwrap_or(0)) * 31 + 1;
    let pieces = decode(data, step);
    assert_eq!(whole.0, pieces.0, "records differ when the input is split every {step} bytes");
    assert_eq!(whole.1, pieces.1, "errors differ when the input is split every {step} bytes");
}

/// Where the input starts: its first page's address when that is a page boundary (a slice of a
/// real segment), else the start of segment 1.
fn start_of(data: &[u8]) -> u64 {
    let addr = data.get(8..16).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    if addr != 0 && addr % 8192 == 0 && addr < 1 << 40 {
        addr
    } else {
        0x0100_0000
    }
}

fn decode(data: &[u8], step: usize) -> (Vec<String>, Option<String>) {
    let start = start_of(data);
    let mut d = WalDecoder::new(Lsn(start), None, WalSegmentSize::DEFAULT);
    let mut lines = Vec::new();
    for chunk in data.chunks(step) {
        d.feed(chunk);
        loop {
            match d.next_record() {
                Ok(Some(r)) => {
                    assert!(r.lsn.0 >= start && r.end.0 <= start + data.len() as u64, "record outside the input");
                    assert_eq!(super::record_crc(&r.raw), r.crc, "a record whose CRC does not match was returned");
                    let _ = desc::identify(&r);
                    lines.push(waldump_line(&r));
                }
                Ok(None) => break,
                Err(e) => return (lines, Some(e.to_string())),
            }
        }
    }
    (lines, None)
}
