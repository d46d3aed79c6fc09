//! Messages the client sends.

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_cstr, split_frame, write_message, write_untagged, Cursor};
use crate::error::{Result, Tag, WireError};

/// Protocol version 3.0, as sent in `StartupMessage`.
pub const PROTOCOL_VERSION_3_0: i32 = 196_608;
/// The code of `SSLRequest`.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// The code of `GSSENCRequest`.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// The code of `CancelRequest`.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Longest start-up packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: u32 = 10_000;

/// Message type bytes of frontend messages.
pub mod tag {
    /// `PasswordMessage`, `SASLInitialResponse`, `SASLResponse` (told apart by context).
    pub const PASSWORD: u8 = b'p';
    /// `Query`.
    pub const QUERY: u8 = b'Q';
    /// `Terminate`.
    pub const TERMINATE: u8 = b'X';
    /// `CopyData`.
    pub const COPY_DATA: u8 = b'd';
    /// `CopyDone`.
    pub const COPY_DONE: u8 = b'c';
    /// `CopyFail`.
    pub const COPY_FAIL: u8 = b'f';
}

/// A message from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrontendMessage {
    /// `StartupMessage`: protocol version and parameters (`user`, `database`, `replication`...).
    Startup {
        /// Protocol version, [`PROTOCOL_VERSION_3_0`].
        version: i32,
        /// Parameter names and values, in order.
        params: Vec<(String, String)>,
    },
    /// `SSLRequest`.
    SslRequest,
    /// `GSSENCRequest`.
    GssEncRequest,
    /// `CancelRequest`.
    CancelRequest {
        /// Process id from `BackendKeyData`.
        process_id: i32,
        /// Secret key from `BackendKeyData`.
        secret_key: Bytes,
    },
    /// `PasswordMessage` (cleartext).
    Password {
        /// The password.
        password: String,
    },
    /// `SASLInitialResponse`.
    SaslInitialResponse {
        /// Chosen mechanism.
        mechanism: String,
        /// Initial client response (SCRAM client-first-message), absent when `-1`.
        data: Option<Bytes>,
    },
    /// `SASLResponse`.
    SaslResponse {
        /// Mechanism data (SCRAM client-final-message).
        data: Bytes,
    },
    /// `Query` (simple query protocol).
    Query {
        /// SQL text, or a replication command on a replication connection.
        sql: String,
    },
    /// `Terminate`.
    Terminate,
    /// `CopyData`.
    CopyData(Bytes),
    /// `CopyDone`.
    CopyDone,
    /// `CopyFail`.
    CopyFail {
        /// Why the copy was abandoned.
        message: String,
    },
}

impl FrontendMessage {
    /// Appends the message to `buf`, as a client sends it.
    pub fn encode(&self, buf: &mut BytesMut) {
        use FrontendMessage as M;
        match self {
            M::Startup { version, params } => write_untagged(buf, |b| {
                b.put_i32(*version);
                for (k, v) in params {
                    put_cstr(b, k);
                    put_cstr(b, v);
                }
                b.put_u8(0);
            }),
            M::SslRequest => write_untagged(buf, |b| b.put_i32(SSL_REQUEST_CODE)),
            M::GssEncRequest => write_untagged(buf, |b| b.put_i32(GSSENC_REQUEST_CODE)),
            M::CancelRequest { process_id, secret_key } => write_untagged(buf, |b| {
                b.put_i32(CANCEL_REQUEST_CODE);
                b.put_i32(*process_id);
                b.put_slice(secret_key);
            }),
            M::Password { password } => write_message(buf, tag::PASSWORD, |b| put_cstr(b, password)),
            M::SaslInitialResponse { mechanism, data } => write_message(buf, tag::PASSWORD, |b| {
                put_cstr(b, mechanism);
                match data {
                    None => b.put_i32(-1),
                    Some(d) => {
                        b.put_i32(d.len() as i32);
                        b.put_slice(d);
                    }
                }
            }),
            M::SaslResponse { data } => write_message(buf, tag::PASSWORD, |b| b.put_slice(data)),
            M::Query { sql } => write_message(buf, tag::QUERY, |b| put_cstr(b, sql)),
            M::Terminate => write_message(buf, tag::TERMINATE, |_| {}),
            M::CopyData(data) => write_message(buf, tag::COPY_DATA, |b| b.put_slice(data)),
            M::CopyDone => write_message(buf, tag::COPY_DONE, |_| {}),
            M::CopyFail { message } => write_message(buf, tag::COPY_FAIL, |b| put_cstr(b, message)),
        }
    }
}

/// What a `'p'` message means at this point of the conversation; only the server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResponseKind {
    /// After `AuthenticationCleartextPassword`.
    Password,
    /// After `AuthenticationSASL`.
    SaslInitial,
    /// After `AuthenticationSASLContinue`.
    Sasl,
}

/// Largest bodies accepted from clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendLimits {
    /// `Query`.
    pub query: u32,
    /// `CopyData`.
    pub copy_data: u32,
    /// Every other type, including passwords and SASL messages.
    pub other: u32,
}

impl Default for FrontendLimits {
    fn default() -> FrontendLimits {
        FrontendLimits { query: 1 << 20, copy_data: 64 << 20, other: 16 << 10 }
    }
}

/// Decodes a client's message stream, start-up packets included (server side).
#[derive(Debug)]
pub struct FrontendDecoder {
    limits: FrontendLimits,
    consumed: u64,
    in_startup: bool,
    auth: AuthResponseKind,
}

impl Default for FrontendDecoder {
    fn default() -> FrontendDecoder {
        FrontendDecoder::new()
    }
}

impl FrontendDecoder {
    /// A decoder expecting a start-up packet first.
    pub fn new() -> FrontendDecoder {
        FrontendDecoder {
            limits: FrontendLimits::default(),
            consumed: 0,
            in_startup: true,
            auth: AuthResponseKind::SaslInitial,
        }
    }

    /// A decoder with other limits.
    pub fn with_limits(limits: FrontendLimits) -> FrontendDecoder {
        FrontendDecoder { limits, ..FrontendDecoder::new() }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Tells the decoder how to read the next `'p'` message.
    pub fn expect_auth_response(&mut self, kind: AuthResponseKind) {
        self.auth = kind;
    }

    /// Takes one message off `buf`; `Ok(None)` until a whole one is buffered.
    ///
    /// # Errors
    /// Over-long or malformed messages, with their stream offset and type.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<FrontendMessage>> {
        if self.in_startup {
            return self.decode_startup(buf);
        }
        let limits = self.limits;
        let max = move |t: u8| match t {
            tag::QUERY => limits.query,
            tag::COPY_DATA => limits.copy_data,
            tag::TERMINATE | tag::COPY_DONE => 0,
            _ => limits.other,
        };
        let Some((t, body)) = split_frame(buf, self.consumed, "frontend", max)? else { return Ok(None) };
        let base = self.consumed + 5;
        self.consumed += 5 + body.len() as u64;
        let mut c = Cursor::new(body, base, t, "frontend");
        let msg = match t {
            tag::PASSWORD => match self.auth {
                AuthResponseKind::Password => FrontendMessage::Password { password: c.cstr("password")? },
                AuthResponseKind::SaslInitial => {
                    let mechanism = c.cstr("SASL mechanism")?;
                    let len = c.i32("initial response length")?;
                    let data = match len {
                        -1 => None,
                        l if l < 0 => return Err(c.error(format!("negative initial response length {l}"))),
                        l => Some(c.bytes(l as usize, "initial response")?),
                    };
                    FrontendMessage::SaslInitialResponse { mechanism, data }
                }
                AuthResponseKind::Sasl => FrontendMessage::SaslResponse { data: c.rest() },
            },
            tag::QUERY => FrontendMessage::Query { sql: c.cstr("query")? },
            tag::TERMINATE => FrontendMessage::Terminate,
            tag::COPY_DATA => FrontendMessage::CopyData(c.rest()),
            tag::COPY_DONE => FrontendMessage::CopyDone,
            tag::COPY_FAIL => FrontendMessage::CopyFail { message: c.cstr("message")? },
            other => return Err(c.error(format!("unknown frontend message type {:?}", other as char))),
        };
        c.finish()?;
        Ok(Some(msg))
    }

    fn decode_startup(&mut self, buf: &mut BytesMut) -> Result<Option<FrontendMessage>> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let bad = |reason: String| WireError::Malformed { what: "startup", tag: Tag(0), offset: self.consumed, reason };
        if len < 8 {
            return Err(bad(format!("start-up packet length {len} is less than 8")));
        }
        if len > MAX_STARTUP_PACKET {
            return Err(WireError::TooLong {
                what: "startup",
                tag: Tag(0),
                offset: self.consumed,
                len: u64::from(len),
                max: u64::from(MAX_STARTUP_PACKET),
            });
        }
        if buf.len() < len as usize {
            buf.reserve(len as usize - buf.len());
            return Ok(None);
        }
        let packet = buf.split_to(len as usize).freeze();
        let mut c = Cursor::new(packet.slice(4..), self.consumed + 4, 0, "startup");
        self.consumed += u64::from(len);
        let code = c.i32("protocol version")?;
        let msg = match code {
            SSL_REQUEST_CODE => FrontendMessage::SslRequest,
            GSSENC_REQUEST_CODE => FrontendMessage::GssEncRequest,
            CANCEL_REQUEST_CODE => {
                let process_id = c.i32("process id")?;
                FrontendMessage::CancelRequest { process_id, secret_key: c.rest() }
            }
            version if version >> 16 == 3 => {
                let mut params = Vec::new();
                loop {
                    let name = c.cstr("parameter name")?;
                    if name.is_empty() {
                        break;
                    }
                    params.push((name, c.cstr("parameter value")?));
                }
                self.in_startup = false;
                FrontendMessage::Startup { version, params }
            }
            other => return Err(c.error(format!("unsupported protocol version {}.{}", other >> 16, other & 0xffff))),
        };
        c.finish()?;
        Ok(Some(msg))
    }
}
