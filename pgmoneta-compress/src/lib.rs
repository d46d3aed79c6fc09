//! Compression for backups, WAL and management frames.
//!
//! - [`Algorithm`] (gzip, zstd, lz4, bzip2) with file suffixes (`.gz .zstd .lz4 .bz2`), magic
//!   bytes and level ranges; [`Compression`] adds the side (client or server) and upstream's
//!   integer codes (`client-zstd` is 18, `server-lz4` 35).
//! - [`Encoder`] (`Write`, [`Encoder::finish`] returns the inner writer) and [`Decoder`] (`Read`)
//!   stream in bounded memory. gzip uses zlib-rs through flate2: memory-safe Rust and faster than
//!   the C zlib on both compression and decompression. zstd writes every file as one frame, as
//!   upstream pgmoneta's reader needs: an input of up to 16 MB with zstd's one-shot call, a
//!   longer one with its streaming compressor, on `workers` zstd threads when asked; it reads
//!   any zstd file, several frames included. LZ4 writes the frame format the `lz4` tool reads,
//!   and reads both frames and the block sequence upstream pgmoneta wrote.
//! - One-shot [`compress`] and [`decompress`] (with an output limit, so hostile input cannot
//!   exhaust memory), and in-place [`compress_file`] / [`decompress_file`] that never leave a
//!   partial file under the final name.
//!
//! ```
//! use pgmoneta_compress::{compress, decompress, Algorithm};
//!
//! let data = b"pgmoneta ".repeat(1000);
//! let packed = compress(Algorithm::Zstd, 3, &data)?;
//! assert!(packed.len() < data.len() / 10);
//! assert_eq!(decompress(Algorithm::Zstd, &packed, 1 << 20)?, data);
//! # Ok::<(), pgmoneta_compress::CompressError>(())
//! ```
#![deny(missing_docs)]

mod algorithm;
mod buffer;
mod error;
mod file;
#[doc(hidden)]
pub mod fuzzing;
mod legacy_lz4;
mod lz4_message;
mod stream;
mod zstd_frames;

pub use algorithm::{Algorithm, Compression, Side, BZIP2_MAGIC, GZIP_MAGIC, LZ4_FRAME_MAGIC, ZSTD_MAGIC};
pub use buffer::{compress, decompress, decompress_detect};
pub use error::{CompressError, Result};
pub use file::{check_magic, compress_file, decompress_file};
pub use legacy_lz4::LegacyLz4Decoder;
pub use lz4_message::{lz4_message_compress, lz4_message_decompress};
pub use stream::{CopyError, Decoder, Encoder, EncoderOptions};
