//! The management frame: `compression (u8) | encryption (u8) | length (u32, big-endian) | payload`.

use std::io::{self, Read, Write};

use crate::error::{Result, WireError};

/// Largest payload accepted: far above any real document, small enough to refuse a hostile
/// length before allocating.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// One management message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Compression code: 0 none, 1 gzip, 2 zstd, 3 lz4, 4 bzip2.
    pub compression: u8,
    /// Encryption code: 0 none, 1 AES-256-GCM, 2 AES-192-GCM, 3 AES-128-GCM.
    pub encryption: u8,
    /// The payload: JSON text, or base64 of the compressed and encrypted JSON.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + self.payload.len());
        out.push(self.compression);
        out.push(self.encryption);
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

fn io_err(op: &str) -> impl FnOnce(io::Error) -> WireError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            WireError::Management(format!("connection closed while {op}"))
        } else if matches!(source.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            WireError::Timeout(op.to_owned())
        } else {
            WireError::Io { op: op.to_owned(), source }
        }
    }
}

/// Reads one frame.
///
/// # Errors
/// A closed connection or a timeout, a length above [`MAX_PAYLOAD`], an unknown compression or
/// encryption code.
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> Result<Frame> {
    let mut head = [0u8; 6];
    r.read_exact(&mut head).map_err(io_err("reading a management frame header"))?;
    let (compression, encryption) = (head[0], head[1]);
    if compression > 4 {
        return Err(WireError::Management(format!("unknown compression code {compression}")));
    }
    if encryption > 3 {
        return Err(WireError::Management(format!("unknown encryption code {encryption}")));
    }
    let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    if len > MAX_PAYLOAD {
        return Err(WireError::Management(format!("payload of {len} bytes, more than the {MAX_PAYLOAD} allowed")));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).map_err(io_err("reading a management payload"))?;
    Ok(Frame { compression, encryption, payload })
}

/// Writes one frame and flushes.
///
/// # Errors
/// A broken connection, or a payload above [`MAX_PAYLOAD`].
pub fn write_frame<W: Write + ?Sized>(w: &mut W, frame: &Frame) -> Result<()> {
    if frame.payload.len() > MAX_PAYLOAD as usize {
        return Err(WireError::Management(format!("payload of {} bytes is too large", frame.payload.len())));
    }
    w.write_all(&frame.encode()).map_err(io_err("writing a management frame"))?;
    w.flush().map_err(io_err("writing a management frame"))
}
