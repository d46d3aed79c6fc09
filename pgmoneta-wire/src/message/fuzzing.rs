//! Invariants checked by the fuzz targets and by the tests that replay their seed corpora.

use bytes::{Bytes, BytesMut};

use super::backend::{BackendDecoder, BackendLimits};
use crate::replication::{parse_base_backup_message, parse_replication_message};

/// Small limits, so that the fuzzer explores the length checks.
const LIMITS: BackendLimits =
    BackendLimits { data_row: 4096, copy_data: 4096, row_description: 4096, error: 4096, other: 1024 };

/// Decodes `data` as a backend stream twice, whole and in pieces of a size taken from the first
/// byte, and asserts: no panic; both ways give the same messages and stop at the same error;
/// every message re-encodes to exactly the bytes it was decoded from; the buffer never grows
/// beyond one limit-sized message plus the input.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_backend_stream(data: &[u8]) {
    let whole = decode(data, data.len().max(1));
    let step = usize::from(data.first().copied().unwrap_or(0) % 17) + 1;
    let pieces = decode(data, step);
    assert_eq!(whole.0, pieces.0, "messages differ when the input is split every {step} bytes");
    assert_eq!(whole.1, pieces.1, "errors differ when the input is split every {step} bytes");
}

type Decoded = (Vec<super::backend::BackendMessage>, Option<String>);

fn decode(data: &[u8], step: usize) -> Decoded {
    let mut decoder = BackendDecoder::with_limits(LIMITS);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut consumed = 0usize;
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => {
                    let end = decoder.offset() as usize;
                    let mut again = BytesMut::new();
                    msg.encode(&mut again);
                    assert_eq!(&again[..], &data[consumed..end], "{msg:?} does not re-encode to its bytes");
                    consumed = end;
                    messages.push(msg);
                }
                Ok(None) => break,
                Err(e) => return (messages, Some(e.to_string())),
            }
        }
        assert!(buf.capacity() <= 4096 + 5 + data.len() + 2 * super::READ_RESERVE, "buffer grew to {}", buf.capacity());
    }
    (messages, None)
}

/// Parses `data` as a replication `CopyData` payload and as a base backup one, and asserts: no
/// panic, and whatever parses re-encodes to the same bytes.
///
/// # Panics
/// When an invariant does not hold.
pub fn check_replication_payload(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(msg) = parse_replication_message(bytes.clone(), 0) {
        let mut again = BytesMut::new();
        msg.encode(&mut again);
        assert_eq!(&again[..], data, "{msg:?}");
    }
    if let Ok(msg) = parse_base_backup_message(bytes.clone(), 0) {
        let mut again = BytesMut::new();
        msg.encode(&mut again);
        assert_eq!(&again[..], data, "{msg:?}");
    }
    if let Ok(status) = crate::replication::StandbyStatusUpdate::parse(bytes, 0) {
        let mut again = BytesMut::new();
        status.encode(&mut again);
        // The reply flag is any non-zero byte on input, 1 on output.
        assert_eq!(&again[..33], &data[..33]);
    }
}
