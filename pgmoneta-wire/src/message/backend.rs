//! Messages the server sends.

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_cstr, split_frame, write_message, Cursor};
use crate::error::{ErrorFields, Result};

/// `Authentication*` request codes.
pub mod auth_code {
    /// `AuthenticationOk`.
    pub const OK: i32 = 0;
    /// `AuthenticationKerberosV5`.
    pub const KERBEROS_V5: i32 = 2;
    /// `AuthenticationCleartextPassword`.
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    /// `AuthenticationMD5Password`.
    pub const MD5_PASSWORD: i32 = 5;
    /// `AuthenticationGSS`.
    pub const GSS: i32 = 7;
    /// `AuthenticationGSSContinue`.
    pub const GSS_CONTINUE: i32 = 8;
    /// `AuthenticationSSPI`.
    pub const SSPI: i32 = 9;
    /// `AuthenticationSASL`.
    pub const SASL: i32 = 10;
    /// `AuthenticationSASLContinue`.
    pub const SASL_CONTINUE: i32 = 11;
    /// `AuthenticationSASLFinal`.
    pub const SASL_FINAL: i32 = 12;
}

/// Message type bytes of backend messages.
pub mod tag {
    /// `Authentication*`.
    pub const AUTHENTICATION: u8 = b'R';
    /// `BackendKeyData`.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// `ParameterStatus`.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// `ReadyForQuery`.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// `RowDescription`.
    pub const ROW_DESCRIPTION: u8 = b'T';
    /// `DataRow`.
    pub const DATA_ROW: u8 = b'D';
    /// `CommandComplete`.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// `EmptyQueryResponse`.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// `ErrorResponse`.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// `NoticeResponse`.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// `NotificationResponse`.
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// `CopyOutResponse`.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// `CopyInResponse`.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// `CopyBothResponse`.
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// `CopyData`.
    pub const COPY_DATA: u8 = b'd';
    /// `CopyDone`.
    pub const COPY_DONE: u8 = b'c';
    /// `NegotiateProtocolVersion`.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
}

/// One column of a `RowDescription`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// OID of the table, or 0.
    pub table_oid: u32,
    /// Attribute number in the table, or 0.
    pub column_id: i16,
    /// OID of the data type.
    pub type_oid: u32,
    /// `pg_type.typlen`.
    pub type_size: i16,
    /// `pg_attribute.atttypmod`.
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// A `CopyInResponse`, `CopyOutResponse` or `CopyBothResponse` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyResponseBody {
    /// Overall format: 0 text, 1 binary.
    pub format: u8,
    /// Per-column formats.
    pub column_formats: Vec<i16>,
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendMessage {
    /// `AuthenticationOk`.
    AuthenticationOk,
    /// `AuthenticationCleartextPassword`.
    AuthenticationCleartextPassword,
    /// `AuthenticationMD5Password` with its salt.
    AuthenticationMd5Password {
        /// The 4-byte salt.
        salt: [u8; 4],
    },
    /// `AuthenticationSASL`: the mechanisms the server offers.
    AuthenticationSasl {
        /// Mechanism names, like `SCRAM-SHA-256`.
        mechanisms: Vec<String>,
    },
    /// `AuthenticationSASLContinue`: a server challenge.
    AuthenticationSaslContinue {
        /// Mechanism data (SCRAM server-first-message).
        data: Bytes,
    },
    /// `AuthenticationSASLFinal`: the server's last SASL message.
    AuthenticationSaslFinal {
        /// Mechanism data (SCRAM server-final-message).
        data: Bytes,
    },
    /// Another authentication method (Kerberos, GSS, SSPI), by code.
    AuthenticationOther {
        /// The request code.
        code: i32,
        /// The rest of the body.
        data: Bytes,
    },
    /// `ParameterStatus`.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its current value.
        value: String,
    },
    /// `BackendKeyData`, for cancel requests.
    BackendKeyData {
        /// Backend process id.
        process_id: i32,
        /// Secret key (4 bytes in protocol 3.0).
        secret_key: Bytes,
    },
    /// `ReadyForQuery` with the transaction status: `I` idle, `T` in a transaction, `E` failed.
    ReadyForQuery {
        /// Transaction status byte.
        status: u8,
    },
    /// `RowDescription`.
    RowDescription {
        /// The columns.
        fields: Vec<FieldDescription>,
    },
    /// `DataRow`; `None` is SQL NULL.
    DataRow {
        /// Column values.
        columns: Vec<Option<Bytes>>,
    },
    /// `CommandComplete` with its tag (`SELECT 1`, `BASE_BACKUP`...).
    CommandComplete {
        /// The command tag.
        tag: String,
    },
    /// `EmptyQueryResponse`.
    EmptyQueryResponse,
    /// `ErrorResponse`.
    ErrorResponse(ErrorFields),
    /// `NoticeResponse`.
    NoticeResponse(ErrorFields),
    /// `NotificationResponse`.
    NotificationResponse {
        /// Notifying backend's process id.
        process_id: i32,
        /// Channel name.
        channel: String,
        /// Payload.
        payload: String,
    },
    /// `CopyOutResponse`.
    CopyOutResponse(CopyResponseBody),
    /// `CopyInResponse`.
    CopyInResponse(CopyResponseBody),
    /// `CopyBothResponse` (streaming replication).
    CopyBothResponse(CopyResponseBody),
    /// `CopyData`.
    CopyData(Bytes),
    /// `CopyDone`.
    CopyDone,
    /// `NegotiateProtocolVersion`.
    NegotiateProtocolVersion {
        /// Newest minor protocol version the server supports.
        newest_minor: i32,
        /// Options the server did not recognise.
        unrecognized: Vec<String>,
    },
}

/// Largest body accepted for each message type. The defaults fit everything a backup tool meets:
/// rows and COPY chunks up to 64 MiB (PostgreSQL sends at most a few hundred kB per `CopyData`),
/// errors up to 1 MiB, and a few kB for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendLimits {
    /// `DataRow`.
    pub data_row: u32,
    /// `CopyData`.
    pub copy_data: u32,
    /// `RowDescription`.
    pub row_description: u32,
    /// `ErrorResponse`, `NoticeResponse` and `NotificationResponse`.
    pub error: u32,
    /// Every other type.
    pub other: u32,
}

impl Default for BackendLimits {
    fn default() -> BackendLimits {
        BackendLimits {
            data_row: 64 << 20,
            copy_data: 64 << 20,
            row_description: 1 << 20,
            error: 1 << 20,
            other: 64 << 10,
        }
    }
}

impl BackendLimits {
    /// The largest body for message type `t`.
    pub fn max_len(&self, t: u8) -> u32 {
        match t {
            tag::DATA_ROW => self.data_row,
            tag::COPY_DATA => self.copy_data,
            tag::ROW_DESCRIPTION => self.row_description,
            tag::ERROR_RESPONSE | tag::NOTICE_RESPONSE | tag::NOTIFICATION_RESPONSE => self.error,
            tag::READY_FOR_QUERY => 1,
            tag::COPY_DONE | tag::EMPTY_QUERY_RESPONSE => 0,
            _ => self.other,
        }
    }
}

/// Decodes the server's message stream.
#[derive(Debug, Default)]
pub struct BackendDecoder {
    limits: BackendLimits,
    consumed: u64,
}

impl BackendDecoder {
    /// A decoder with the default limits.
    pub fn new() -> BackendDecoder {
        BackendDecoder::default()
    }

    /// A decoder with other limits.
    pub fn with_limits(limits: BackendLimits) -> BackendDecoder {
        BackendDecoder { limits, consumed: 0 }
    }

    /// Bytes consumed so far: the stream offset of the next message.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Takes one message off the front of `buf`. `Ok(None)` means the message is not complete
    /// yet: read more into `buf` and call again.
    ///
    /// # Errors
    /// [`WireError::TooLong`](crate::WireError::TooLong) for a length over the type's limit
    /// (nothing is buffered for it), [`WireError::Malformed`](crate::WireError::Malformed) for a
    /// body that does not parse; both carry the stream offset and the type.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BackendMessage>> {
        let limits = self.limits;
        let Some((t, body)) = split_frame(buf, self.consumed, "backend", |t| limits.max_len(t))? else {
            return Ok(None);
        };
        let start = self.consumed;
        self.consumed += 5 + body.len() as u64;
        decode_body(t, body, start + 5).map(Some)
    }
}

fn error_fields(c: &mut Cursor) -> Result<ErrorFields> {
    let mut fields = Vec::new();
    loop {
        let code = c.u8("field type")?;
        if code == 0 {
            break;
        }
        fields.push((code, c.cstr("field value")?));
    }
    Ok(ErrorFields { fields })
}

fn copy_response(c: &mut Cursor) -> Result<CopyResponseBody> {
    let format = c.u8("format")?;
    let n = c.count16("column count", 2)?;
    let column_formats = (0..n).map(|_| c.i16("column format")).collect::<Result<_>>()?;
    Ok(CopyResponseBody { format, column_formats })
}

/// Parses the body of a backend message of type `t` that starts at stream offset `base`.
fn decode_body(t: u8, body: Bytes, base: u64) -> Result<BackendMessage> {
    let mut c = Cursor::new(body, base, t, "backend");
    let msg = match t {
        tag::AUTHENTICATION => {
            let code = c.i32("authentication code")?;
            match code {
                auth_code::OK => BackendMessage::AuthenticationOk,
                auth_code::CLEARTEXT_PASSWORD => BackendMessage::AuthenticationCleartextPassword,
                auth_code::MD5_PASSWORD => {
                    let s = c.bytes(4, "MD5 salt")?;
                    BackendMessage::AuthenticationMd5Password { salt: [s[0], s[1], s[2], s[3]] }
                }
                auth_code::SASL => {
                    let mut mechanisms = Vec::new();
                    loop {
                        let m = c.cstr("SASL mechanism")?;
                        if m.is_empty() {
                            break;
                        }
                        mechanisms.push(m);
                    }
                    BackendMessage::AuthenticationSasl { mechanisms }
                }
                auth_code::SASL_CONTINUE => BackendMessage::AuthenticationSaslContinue { data: c.rest() },
                auth_code::SASL_FINAL => BackendMessage::AuthenticationSaslFinal { data: c.rest() },
                code @ (auth_code::KERBEROS_V5 | auth_code::GSS | auth_code::GSS_CONTINUE | auth_code::SSPI) => {
                    BackendMessage::AuthenticationOther { code, data: c.rest() }
                }
                other => return Err(c.error(format!("unknown authentication request code {other}"))),
            }
        }
        tag::PARAMETER_STATUS => BackendMessage::ParameterStatus { name: c.cstr("name")?, value: c.cstr("value")? },
        tag::BACKEND_KEY_DATA => {
            let process_id = c.i32("process id")?;
            let n = c.remaining();
            if !(4..=256).contains(&n) {
                return Err(c.error(format!("secret key of {n} bytes (expected 4 to 256)")));
            }
            BackendMessage::BackendKeyData { process_id, secret_key: c.rest() }
        }
        tag::READY_FOR_QUERY => {
            let status = c.u8("transaction status")?;
            if !matches!(status, b'I' | b'T' | b'E') {
                return Err(c.error(format!("unknown transaction status {:?}", status as char)));
            }
            BackendMessage::ReadyForQuery { status }
        }
        tag::ROW_DESCRIPTION => {
            let n = c.count16("field count", 19)?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                fields.push(FieldDescription {
                    name: c.cstr("field name")?,
                    table_oid: c.i32("table OID")? as u32,
                    column_id: c.i16("column number")?,
                    type_oid: c.i32("type OID")? as u32,
                    type_size: c.i16("type size")?,
                    type_modifier: c.i32("type modifier")?,
                    format: c.i16("format code")?,
                });
            }
            BackendMessage::RowDescription { fields }
        }
        tag::DATA_ROW => {
            let n = c.count16("column count", 4)?;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let len = c.i32("column length")?;
                columns.push(match len {
                    -1 => None,
                    l if l < 0 => return Err(c.error(format!("negative column length {l}"))),
                    l => Some(c.bytes(l as usize, "column value")?),
                });
            }
            BackendMessage::DataRow { columns }
        }
        tag::COMMAND_COMPLETE => BackendMessage::CommandComplete { tag: c.cstr("command tag")? },
        tag::EMPTY_QUERY_RESPONSE => BackendMessage::EmptyQueryResponse,
        tag::ERROR_RESPONSE => BackendMessage::ErrorResponse(error_fields(&mut c)?),
        tag::NOTICE_RESPONSE => BackendMessage::NoticeResponse(error_fields(&mut c)?),
        tag::NOTIFICATION_RESPONSE => BackendMessage::NotificationResponse {
            process_id: c.i32("process id")?,
            channel: c.cstr("channel")?,
            payload: c.cstr("payload")?,
        },
        tag::COPY_OUT_RESPONSE => BackendMessage::CopyOutResponse(copy_response(&mut c)?),
        tag::COPY_IN_RESPONSE => BackendMessage::CopyInResponse(copy_response(&mut c)?),
        tag::COPY_BOTH_RESPONSE => BackendMessage::CopyBothResponse(copy_response(&mut c)?),
        tag::COPY_DATA => BackendMessage::CopyData(c.rest()),
        tag::COPY_DONE => BackendMessage::CopyDone,
        tag::NEGOTIATE_PROTOCOL_VERSION => {
            let newest_minor = c.i32("newest minor version")?;
            let n = c.i32("option count")?;
            if n < 0 || n as usize > c.remaining() {
                return Err(c.error(format!("option count {n} does not fit the message")));
            }
            let unrecognized = (0..n).map(|_| c.cstr("option name")).collect::<Result<_>>()?;
            BackendMessage::NegotiateProtocolVersion { newest_minor, unrecognized }
        }
        other => return Err(c.error(format!("unknown backend message type {:?}", other as char))),
    };
    c.finish()?;
    Ok(msg)
}

fn put_fields(buf: &mut BytesMut, fields: &ErrorFields) {
    for (code, value) in &fields.fields {
        buf.put_u8(*code);
        put_cstr(buf, value);
    }
    buf.put_u8(0);
}

fn put_copy_response(buf: &mut BytesMut, body: &CopyResponseBody) {
    buf.put_u8(body.format);
    buf.put_i16(body.column_formats.len() as i16);
    for f in &body.column_formats {
        buf.put_i16(*f);
    }
}

impl BackendMessage {
    /// The message's protocol name (`CopyData`, `ErrorResponse`...), for error messages.
    pub fn name(&self) -> &'static str {
        use BackendMessage as M;
        match self {
            M::AuthenticationOk => "AuthenticationOk",
            M::AuthenticationCleartextPassword => "AuthenticationCleartextPassword",
            M::AuthenticationMd5Password { .. } => "AuthenticationMD5Password",
            M::AuthenticationSasl { .. } => "AuthenticationSASL",
            M::AuthenticationSaslContinue { .. } => "AuthenticationSASLContinue",
            M::AuthenticationSaslFinal { .. } => "AuthenticationSASLFinal",
            M::AuthenticationOther { .. } => "Authentication",
            M::ParameterStatus { .. } => "ParameterStatus",
            M::BackendKeyData { .. } => "BackendKeyData",
            M::ReadyForQuery { .. } => "ReadyForQuery",
            M::RowDescription { .. } => "RowDescription",
            M::DataRow { .. } => "DataRow",
            M::CommandComplete { .. } => "CommandComplete",
            M::EmptyQueryResponse => "EmptyQueryResponse",
            M::ErrorResponse(_) => "ErrorResponse",
            M::NoticeResponse(_) => "NoticeResponse",
            M::NotificationResponse { .. } => "NotificationResponse",
            M::CopyOutResponse(_) => "CopyOutResponse",
            M::CopyInResponse(_) => "CopyInResponse",
            M::CopyBothResponse(_) => "CopyBothResponse",
            M::CopyData(_) => "CopyData",
            M::CopyDone => "CopyDone",
            M::NegotiateProtocolVersion { .. } => "NegotiateProtocolVersion",
        }
    }

    /// Appends the message to `buf`, as a server sends it.
    pub fn encode(&self, buf: &mut BytesMut) {
        use BackendMessage as M;
        let auth = |buf: &mut BytesMut, code: i32, data: &[u8]| {
            write_message(buf, tag::AUTHENTICATION, |b| {
                b.put_i32(code);
                b.put_slice(data);
            })
        };
        match self {
            M::AuthenticationOk => auth(buf, auth_code::OK, &[]),
            M::AuthenticationCleartextPassword => auth(buf, auth_code::CLEARTEXT_PASSWORD, &[]),
            M::AuthenticationMd5Password { salt } => auth(buf, auth_code::MD5_PASSWORD, salt),
            M::AuthenticationSasl { mechanisms } => write_message(buf, tag::AUTHENTICATION, |b| {
                b.put_i32(auth_code::SASL);
                for m in mechanisms {
                    put_cstr(b, m);
                }
                b.put_u8(0);
            }),
            M::AuthenticationSaslContinue { data } => auth(buf, auth_code::SASL_CONTINUE, data),
            M::AuthenticationSaslFinal { data } => auth(buf, auth_code::SASL_FINAL, data),
            M::AuthenticationOther { code, data } => auth(buf, *code, data),
            M::ParameterStatus { name, value } => write_message(buf, tag::PARAMETER_STATUS, |b| {
                put_cstr(b, name);
                put_cstr(b, value);
            }),
            M::BackendKeyData { process_id, secret_key } => write_message(buf, tag::BACKEND_KEY_DATA, |b| {
                b.put_i32(*process_id);
                b.put_slice(secret_key);
            }),
            M::ReadyForQuery { status } => write_message(buf, tag::READY_FOR_QUERY, |b| b.put_u8(*status)),
            M::RowDescription { fields } => write_message(buf, tag::ROW_DESCRIPTION, |b| {
                b.put_i16(fields.len() as i16);
                for f in fields {
                    put_cstr(b, &f.name);
                    b.put_u32(f.table_oid);
                    b.put_i16(f.column_id);
                    b.put_u32(f.type_oid);
                    b.put_i16(f.type_size);
                    b.put_i32(f.type_modifier);
                    b.put_i16(f.format);
                }
            }),
            M::DataRow { columns } => write_message(buf, tag::DATA_ROW, |b| {
                b.put_i16(columns.len() as i16);
                for col in columns {
                    match col {
                        None => b.put_i32(-1),
                        Some(v) => {
                            b.put_i32(v.len() as i32);
                            b.put_slice(v);
                        }
                    }
                }
            }),
            M::CommandComplete { tag: t } => write_message(buf, tag::COMMAND_COMPLETE, |b| put_cstr(b, t)),
            M::EmptyQueryResponse => write_message(buf, tag::EMPTY_QUERY_RESPONSE, |_| {}),
            M::ErrorResponse(f) => write_message(buf, tag::ERROR_RESPONSE, |b| put_fields(b, f)),
            M::NoticeResponse(f) => write_message(buf, tag::NOTICE_RESPONSE, |b| put_fields(b, f)),
            M::NotificationResponse { process_id, channel, payload } => {
                write_message(buf, tag::NOTIFICATION_RESPONSE, |b| {
                    b.put_i32(*process_id);
                    put_cstr(b, channel);
                    put_cstr(b, payload);
                })
            }
            M::CopyOutResponse(body) => write_message(buf, tag::COPY_OUT_RESPONSE, |b| put_copy_response(b, body)),
            M::CopyInResponse(body) => write_message(buf, tag::COPY_IN_RESPONSE, |b| put_copy_response(b, body)),
            M::CopyBothResponse(body) => write_message(buf, tag::COPY_BOTH_RESPONSE, |b| put_copy_response(b, body)),
            M::CopyData(data) => write_message(buf, tag::COPY_DATA, |b| b.put_slice(data)),
            M::CopyDone => write_message(buf, tag::COPY_DONE, |_| {}),
            M::NegotiateProtocolVersion { newest_minor, unrecognized } => {
                write_message(buf, tag::NEGOTIATE_PROTOCOL_VERSION, |b| {
                    b.put_i32(*newest_minor);
                    b.put_i32(unrecognized.len() as i32);
                    for o in unrecognized {
                        put_cstr(b, o);
                    }
                })
            }
        }
    }
}
