use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use super::backend::{BackendDecoder, BackendLimits, BackendMessage, CopyResponseBody, FieldDescription};
use super::frontend::{AuthResponseKind, FrontendDecoder, FrontendMessage, PROTOCOL_VERSION_3_0};
use crate::error::{ErrorFields, WireError};
use crate::replication::{
    parse_base_backup_message, parse_replication_message, BaseBackupMessage, ReplicationMessage, StandbyStatusUpdate,
};
use pgmoneta_core::Lsn;

/// Text without NUL (C strings cannot hold it).
fn cstr() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,20}"
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn fields() -> impl Strategy<Value = ErrorFields> {
    vec((1u8..=255, cstr()), 0..6).prop_map(|fields| ErrorFields { fields })
}

fn copy_body() -> impl Strategy<Value = CopyResponseBody> {
    (0u8..=1, vec(0i16..=1, 0..5)).prop_map(|(format, column_formats)| CopyResponseBody { format, column_formats })
}

fn backend() -> impl Strategy<Value = BackendMessage> {
    use BackendMessage as M;
    prop_oneof![
        Just(M::AuthenticationOk),
        Just(M::AuthenticationCleartextPassword),
        any::<[u8; 4]>().prop_map(|salt| M::AuthenticationMd5Password { salt }),
        vec("[A-Z0-9-]{1,20}", 0..3).prop_map(|mechanisms| M::AuthenticationSasl { mechanisms }),
        bytes(64).prop_map(|data| M::AuthenticationSaslContinue { data }),
        bytes(64).prop_map(|data| M::AuthenticationSaslFinal { data }),
        (prop_oneof![Just(2), Just(7), Just(8), Just(9)], bytes(16))
            .prop_map(|(code, data)| M::AuthenticationOther { code, data }),
        (cstr(), cstr()).prop_map(|(name, value)| M::ParameterStatus { name, value }),
        (any::<i32>(), vec(any::<u8>(), 4..32))
            .prop_map(|(process_id, k)| M::BackendKeyData { process_id, secret_key: Bytes::from(k) }),
        prop_oneof![Just(b'I'), Just(b'T'), Just(b'E')].prop_map(|status| M::ReadyForQuery { status }),
        vec((cstr(), any::<u32>(), any::<i16>(), any::<u32>(), any::<i16>(), any::<i32>(), 0i16..=1), 0..5).prop_map(
            |fs| {
                M::RowDescription {
                    fields: fs
                        .into_iter()
                        .map(|(name, table_oid, column_id, type_oid, type_size, type_modifier, format)| {
                            FieldDescription { name, table_oid, column_id, type_oid, type_size, type_modifier, format }
                        })
                        .collect(),
                }
            }
        ),
        vec(proptest::option::of(bytes(32)), 0..6).prop_map(|columns| M::DataRow { columns }),
        cstr().prop_map(|tag| M::CommandComplete { tag }),
        Just(M::EmptyQueryResponse),
        fields().prop_map(M::ErrorResponse),
        fields().prop_map(M::NoticeResponse),
        (any::<i32>(), cstr(), cstr()).prop_map(|(process_id, channel, payload)| M::NotificationResponse {
            process_id,
            channel,
            payload
        }),
        copy_body().prop_map(M::CopyOutResponse),
        copy_body().prop_map(M::CopyInResponse),
        copy_body().prop_map(M::CopyBothResponse),
        bytes(256).prop_map(M::CopyData),
        Just(M::CopyDone),
        (any::<i32>(), vec(cstr(), 0..3))
            .prop_map(|(newest_minor, unrecognized)| M::NegotiateProtocolVersion { newest_minor, unrecognized }),
    ]
}

fn frontend_after_startup() -> impl Strategy<Value = FrontendMessage> {
    use FrontendMessage as M;
    prop_oneof![
        cstr().prop_map(|password| M::Password { password }),
        (cstr(), proptest::option::of(bytes(64)))
            .prop_map(|(mechanism, data)| M::SaslInitialResponse { mechanism, data }),
        bytes(64).prop_map(|data| M::SaslResponse { data }),
        cstr().prop_map(|sql| M::Query { sql }),
        Just(M::Terminate),
        bytes(256).prop_map(M::CopyData),
        Just(M::CopyDone),
        cstr().prop_map(|message| M::CopyFail { message }),
    ]
}

fn auth_kind(m: &FrontendMessage) -> AuthResponseKind {
    match m {
        FrontendMessage::Password { .. } => AuthResponseKind::Password,
        FrontendMessage::SaslResponse { .. } => AuthResponseKind::Sasl,
        _ => AuthResponseKind::SaslInitial,
    }
}

/// Feeds `wire` to a backend decoder in pieces cut at `cuts`, collecting every message.
fn decode_in_pieces(wire: &[u8], cuts: &[usize]) -> Vec<BackendMessage> {
    let mut decoder = BackendDecoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    let mut from = 0;
    for to in points {
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        while let Some(m) = decoder.decode(&mut buf).unwrap() {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    assert_eq!(decoder.offset(), wire.len() as u64);
    out
}

/// Ends of the backend messages decoded from `data` fed `step` bytes at a time, and the first
/// error's offset and text.
fn backend_offsets(data: &[u8], step: usize) -> (Vec<u64>, Option<(u64, String)>) {
    let mut decoder = BackendDecoder::new();
    let mut buf = BytesMut::new();
    let mut ends = Vec::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => ends.push(decoder.offset()),
                Ok(None) => break,
                Err(e) => {
                    let offset = match &e {
                        WireError::Malformed { offset, .. } | WireError::TooLong { offset, .. } => *offset,
                        other => panic!("not a decoding error: {other}"),
                    };
                    return (ends, Some((offset, e.to_string())));
                }
            }
        }
    }
    (ends, None)
}

/// The frontend messages decoded from `data` fed `step` bytes at a time, and the first error.
fn frontend_in_pieces(data: &[u8], step: usize) -> (Vec<FrontendMessage>, Option<String>) {
    let mut decoder = FrontendDecoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

proptest! {
    #[test]
    fn backend_messages_roundtrip(msg in backend()) {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf);
        let len = buf.len();
        let mut decoder = BackendDecoder::new();
        prop_assert_eq!(decoder.decode(&mut buf).unwrap(), Some(msg));
        prop_assert_eq!(decoder.offset(), len as u64);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn backend_decoding_ignores_how_bytes_are_split(msgs in vec(backend(), 1..8), cuts in vec(any::<usize>(), 0..12)) {
        let mut wire = BytesMut::new();
        for m in &msgs {
            m.encode(&mut wire);
        }
        prop_assert_eq!(decode_in_pieces(&wire, &cuts), msgs);
    }

    #[test]
    fn frontend_messages_roundtrip(params in vec((cstr().prop_filter("non-empty", |s| !s.is_empty()), cstr()), 0..4), msgs in vec(frontend_after_startup(), 0..6)) {
        let startup = FrontendMessage::Startup { version: PROTOCOL_VERSION_3_0, params };
        let mut decoder = FrontendDecoder::new();
        let mut buf = BytesMut::new();
        FrontendMessage::SslRequest.encode(&mut buf);
        startup.encode(&mut buf);
        prop_assert_eq!(decoder.decode(&mut buf).unwrap(), Some(FrontendMessage::SslRequest));
        prop_assert_eq!(decoder.decode(&mut buf).unwrap(), Some(startup));
        for m in msgs {
            m.encode(&mut buf);
            decoder.expect_auth_response(auth_kind(&m));
            prop_assert_eq!(decoder.decode(&mut buf).unwrap(), Some(m));
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn replication_messages_roundtrip(start in any::<u64>(), end in any::<u64>(), time in any::<i64>(), data in bytes(128), reply in any::<bool>()) {
        for msg in [
            ReplicationMessage::XLogData { wal_start: Lsn(start), wal_end: Lsn(end), send_time: time, data: data.clone() },
            ReplicationMessage::Keepalive { wal_end: Lsn(end), send_time: time, reply_requested: reply },
        ] {
            let mut buf = BytesMut::new();
            msg.encode(&mut buf);
            prop_assert_eq!(parse_replication_message(buf.freeze(), 0).unwrap(), msg);
        }
        let status = StandbyStatusUpdate { write: Lsn(start), flush: Lsn(end), apply: Lsn(0), send_time: time, reply_requested: reply };
        let mut buf = BytesMut::new();
        status.encode(&mut buf);
        prop_assert_eq!(buf.len(), 34);
        prop_assert_eq!(StandbyStatusUpdate::parse(buf.freeze(), 0).unwrap(), status);
    }

    #[test]
    fn base_backup_messages_roundtrip(name in cstr(), location in cstr(), data in bytes(64), progress in 0u64..(1 << 62)) {
        for msg in [
            BaseBackupMessage::NewArchive { name: name.clone(), location: location.clone() },
            BaseBackupMessage::Manifest,
            BaseBackupMessage::Data(data.clone()),
            BaseBackupMessage::Progress(progress),
        ] {
            let mut buf = BytesMut::new();
            msg.encode(&mut buf);
            prop_assert_eq!(parse_base_backup_message(buf.freeze(), 0).unwrap(), msg);
        }
    }

    /// Arbitrary bytes, or a valid stream with one byte changed: the backend decoder gives the
    /// same messages and the same error however the input is split, every message re-encodes to
    /// the bytes it came from, and an error names an offset inside the input at or after the
    /// end of the last message decoded. Whatever parses as a replication or base backup
    /// payload re-encodes to the same bytes. The frontend decoder agrees with itself split.
    #[test]
    fn arbitrary_and_damaged_streams_keep_the_decoders_promises(
        data in vec(any::<u8>(), 0..512),
        msgs in vec(backend(), 1..6),
        at in any::<usize>(),
        byte in any::<u8>(),
        step in 1usize..40,
    ) {
        let mut valid = BytesMut::new();
        for m in &msgs {
            m.encode(&mut valid);
        }
        let mut damaged = valid.to_vec();
        let i = at % damaged.len();
        damaged[i] = byte;
        for input in [&data[..], &damaged[..]] {
            super::fuzzing::check_backend_stream(input);
            super::fuzzing::check_replication_payload(input);
            let (whole_msgs, whole_err) = backend_offsets(input, input.len().max(1));
            let (split_msgs, split_err) = backend_offsets(input, step);
            prop_assert_eq!(&whole_msgs, &split_msgs);
            prop_assert_eq!(&whole_err, &split_err);
            if let Some((offset, text)) = whole_err {
                let last_end = whole_msgs.last().copied().unwrap_or(0);
                prop_assert!(offset >= last_end && offset <= input.len() as u64, "offset {} after {} of {}", offset, last_end, input.len());
                prop_assert!(text.contains(&format!("at byte {offset}")), "{}", text);
            }
            prop_assert_eq!(frontend_in_pieces(input, input.len().max(1)), frontend_in_pieces(input, step));
        }
    }
}

#[test]
fn malformed_input_names_offset_and_type() {
    // A ReadyForQuery, then a DataRow whose column claims more bytes than the message holds.
    let mut buf = BytesMut::new();
    BackendMessage::ReadyForQuery { status: b'I' }.encode(&mut buf);
    buf.extend_from_slice(&[b'D', 0, 0, 0, 10, 0, 1, 0, 0, 0, 9]);
    let mut d = BackendDecoder::new();
    assert!(d.decode(&mut buf).unwrap().is_some());
    let err = d.decode(&mut buf).unwrap_err();
    assert_eq!(err.to_string(), "malformed backend message (type 'D') at byte 17: column value needs 9 bytes, 0 left");
    // A length below 4.
    let mut buf = BytesMut::from(&[b'Z', 0, 0, 0, 3][..]);
    let err = BackendDecoder::new().decode(&mut buf).unwrap_err();
    assert!(matches!(err, WireError::Malformed { offset: 1, .. }), "{err}");
    // Trailing garbage.
    let mut buf = BytesMut::from(&[b'C', 0, 0, 0, 7, b'a', 0, b'x'][..]);
    let err = BackendDecoder::new().decode(&mut buf).unwrap_err().to_string();
    assert!(err.contains("1 unexpected bytes at the end"), "{err}");
    // Unknown type.
    let mut buf = BytesMut::from(&[b'?', 0, 0, 0, 4][..]);
    assert!(BackendDecoder::new()
        .decode(&mut buf)
        .unwrap_err()
        .to_string()
        .contains("unknown backend message type '?'"));
}

#[test]
fn over_long_messages_are_refused_before_buffering() {
    // A CopyData announcing 1 GiB: refused from the 5-byte header alone.
    let mut buf = BytesMut::from(&[b'd', 0x40, 0, 0, 4][..]);
    let err = BackendDecoder::new().decode(&mut buf).unwrap_err();
    assert!(matches!(err, WireError::TooLong { len: 1_073_741_824, max: 67_108_864, .. }), "{err}");
    // Limits are per type: a ReadyForQuery body is one byte.
    let mut buf = BytesMut::from(&[b'Z', 0, 0, 0, 6][..]);
    assert!(matches!(BackendDecoder::new().decode(&mut buf), Err(WireError::TooLong { .. })));
    let small = BackendLimits { copy_data: 16, ..BackendLimits::default() };
    let mut buf = BytesMut::new();
    BackendMessage::CopyData(Bytes::from(vec![0u8; 17])).encode(&mut buf);
    assert!(matches!(BackendDecoder::with_limits(small).decode(&mut buf), Err(WireError::TooLong { .. })));
    // A start-up packet over PostgreSQL's limit.
    let mut buf = BytesMut::from(&[0, 0, 0x30, 0, 0, 3, 0, 0][..]);
    assert!(matches!(FrontendDecoder::new().decode(&mut buf), Err(WireError::TooLong { .. })));
}

#[test]
fn incomplete_input_waits_for_more() {
    let mut whole = BytesMut::new();
    BackendMessage::CommandComplete { tag: "SELECT 1".into() }.encode(&mut whole);
    let mut d = BackendDecoder::new();
    for n in 0..whole.len() {
        let mut part = BytesMut::from(&whole[..n]);
        assert_eq!(d.decode(&mut part).unwrap(), None, "{n} bytes");
        assert_eq!(part.len(), n, "nothing consumed");
    }
}

#[test]
fn names_do_not_format_payloads() {
    // Used in "unexpected message" errors, which may meet a 64 MB CopyData.
    assert_eq!(BackendMessage::CopyData(Bytes::from(vec![0u8; 1 << 20])).name(), "CopyData");
    assert_eq!(BackendMessage::ErrorResponse(ErrorFields::default()).name(), "ErrorResponse");
    assert_eq!(BackendMessage::AuthenticationSasl { mechanisms: vec![] }.name(), "AuthenticationSASL");
}
