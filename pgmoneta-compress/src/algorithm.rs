//! Algorithms, upstream's integer codes, configuration names, suffixes, magic bytes and levels.

use std::fmt;

use crate::error::{CompressError, Result};

/// A compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// No compression.
    None,
    /// gzip (RFC 1952), `.gz`.
    Gzip,
    /// Zstandard, `.zstd`.
    Zstd,
    /// LZ4 frame format (read also: upstream's block sequence), `.lz4`.
    Lz4,
    /// bzip2, `.bz2`.
    Bzip2,
}

/// Magic bytes of each format.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Zstandard frame magic (0xFD2FB528 little-endian).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// LZ4 frame magic (0x184D2204 little-endian).
pub const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// bzip2 stream magic, followed by the block size digit `1`-`9`.
pub const BZIP2_MAGIC: [u8; 3] = *b"BZh";

impl Algorithm {
    /// Every algorithm that compresses.
    pub const COMPRESSING: [Algorithm; 4] = [Algorithm::Gzip, Algorithm::Zstd, Algorithm::Lz4, Algorithm::Bzip2];

    /// The algorithm's number in upstream's codes and in management frames: 0 none, 1 gzip,
    /// 2 zstd, 3 lz4, 4 bzip2.
    pub const fn number(self) -> u8 {
        match self {
            Algorithm::None => 0,
            Algorithm::Gzip => 1,
            Algorithm::Zstd => 2,
            Algorithm::Lz4 => 3,
            Algorithm::Bzip2 => 4,
        }
    }

    /// The algorithm for a number.
    pub const fn from_number(n: u8) -> Option<Algorithm> {
        Some(match n {
            0 => Algorithm::None,
            1 => Algorithm::Gzip,
            2 => Algorithm::Zstd,
            3 => Algorithm::Lz4,
            4 => Algorithm::Bzip2,
            _ => return None,
        })
    }

    /// The file suffix, with its dot (`""` for none).
    pub const fn suffix(self) -> &'static str {
        match self {
            Algorithm::None => "",
            Algorithm::Gzip => ".gz",
            Algorithm::Zstd => ".zstd",
            Algorithm::Lz4 => ".lz4",
            Algorithm::Bzip2 => ".bz2",
        }
    }

    /// The algorithm a file name's last suffix names (`.tgz` counts as gzip), if any.
    pub fn from_suffix(name: &str) -> Option<Algorithm> {
        let lower = name.to_ascii_lowercase();
        [
            (".gz", Algorithm::Gzip),
            (".tgz", Algorithm::Gzip),
            (".zstd", Algorithm::Zstd),
            (".zst", Algorithm::Zstd),
            (".lz4", Algorithm::Lz4),
            (".bz2", Algorithm::Bzip2),
        ]
        .into_iter()
        .find(|(s, _)| lower.ends_with(s))
        .map(|(_, a)| a)
    }

    /// The algorithm whose magic bytes start `data` (`None` when none matches; LZ4 only in the
    /// frame format, since upstream's block sequence has no magic).
    pub fn from_magic(data: &[u8]) -> Option<Algorithm> {
        if data.starts_with(&ZSTD_MAGIC) {
            Some(Algorithm::Zstd)
        } else if data.starts_with(&GZIP_MAGIC) {
            Some(Algorithm::Gzip)
        } else if data.starts_with(&LZ4_FRAME_MAGIC) {
            Some(Algorithm::Lz4)
        } else if data.len() >= 4 && data.starts_with(&BZIP2_MAGIC) && (b'1'..=b'9').contains(&data[3]) {
            Some(Algorithm::Bzip2)
        } else {
            None
        }
    }

    /// The levels the algorithm accepts.
    pub const fn level_range(self) -> (i32, i32) {
        match self {
            Algorithm::None => (0, 0),
            Algorithm::Gzip => (1, 9),
            Algorithm::Zstd => (1, 22),
            Algorithm::Lz4 => (1, 12),
            Algorithm::Bzip2 => (1, 9),
        }
    }

    /// The level used when none is configured: gzip 6, zstd 3, lz4 1, bzip2 9.
    pub const fn default_level(self) -> i32 {
        match self {
            Algorithm::None => 0,
            Algorithm::Gzip => 6,
            Algorithm::Zstd => 3,
            Algorithm::Lz4 => 1,
            Algorithm::Bzip2 => 9,
        }
    }

    /// The fastest level.
    pub const fn fastest_level(self) -> i32 {
        self.level_range().0
    }

    /// `level` brought into the algorithm's range (as upstream clamps `compression_level`).
    pub fn clamp_level(self, level: i32) -> i32 {
        let (lo, hi) = self.level_range();
        level.clamp(lo, hi)
    }

    /// A lower-case name (`gzip`, `zstd`, `lz4`, `bzip2`, `none`).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::None => "none",
            Algorithm::Gzip => "gzip",
            Algorithm::Zstd => "zstd",
            Algorithm::Lz4 => "lz4",
            Algorithm::Bzip2 => "bzip2",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where compression happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Here, by pgmoneta.
    Client,
    /// By PostgreSQL while it streams the base backup (15+).
    Server,
}

/// A configured compression: algorithm and side, with upstream's integer code (client `0x10` or
/// server `0x20`, plus the algorithm number: `client-zstd` is 18, `server-lz4` 35, none 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Compression {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Where it runs.
    pub side: Side,
}

impl Compression {
    /// No compression.
    pub const NONE: Compression = Compression { algorithm: Algorithm::None, side: Side::Client };

    /// Client-side compression with `algorithm`.
    pub const fn client(algorithm: Algorithm) -> Compression {
        Compression { algorithm, side: Side::Client }
    }

    /// Upstream's integer code.
    pub const fn code(self) -> i32 {
        match (self.algorithm, self.side) {
            (Algorithm::None, _) => 0,
            (a, Side::Client) => 0x10 | a.number() as i32,
            (a, Side::Server) => 0x20 | a.number() as i32,
        }
    }

    /// The compression for an integer code. Legacy `backup.info` codes 5, 6 and 7 mean
    /// server-side gzip, zstd and lz4.
    ///
    /// # Errors
    /// [`CompressError::Unknown`] for any other code, and for server-side bzip2, which PostgreSQL
    /// does not offer.
    pub fn from_code(code: i32) -> Result<Compression> {
        let server = |a| Ok(Compression { algorithm: a, side: Side::Server });
        match code {
            0 => Ok(Compression::NONE),
            5 => server(Algorithm::Gzip),
            6 => server(Algorithm::Zstd),
            7 => server(Algorithm::Lz4),
            c if c & 0x30 == 0x10 && (1..=4).contains(&(c & 0x0f)) && c & !0x3f == 0 => {
                Ok(Compression::client(Algorithm::from_number((c & 0x0f) as u8).unwrap_or(Algorithm::None)))
            }
            c if c & 0x30 == 0x20 && (1..=3).contains(&(c & 0x0f)) && c & !0x3f == 0 => {
                server(Algorithm::from_number((c & 0x0f) as u8).unwrap_or(Algorithm::None))
            }
            c => Err(CompressError::Unknown(format!("code {c}"))),
        }
    }

    /// The name in `pgmoneta.conf` (`zstd`, `server-lz4`, `none`...).
    pub fn config_name(self) -> String {
        match (self.algorithm, self.side) {
            (Algorithm::None, _) => "none".to_owned(),
            (Algorithm::Bzip2, Side::Client) => "bz2".to_owned(),
            (a, Side::Client) => a.name().to_owned(),
            (a, Side::Server) => format!("server-{}", a.name()),
        }
    }

    /// Parses a `pgmoneta.conf` name, case-insensitively (`gzip`, `client-gzip`, `server-gzip`,
    /// `zstd`..., `bz2`, `bzip2`, `none`).
    ///
    /// # Errors
    /// [`CompressError::Unknown`] for anything else.
    pub fn from_config_name(name: &str) -> Result<Compression> {
        let lower = name.to_ascii_lowercase();
        let (side, algo) = match lower.split_once('-') {
            Some(("server", a)) => (Side::Server, a),
            Some(("client", a)) => (Side::Client, a),
            _ => (Side::Client, lower.as_str()),
        };
        let algorithm = match algo {
            "none" if side == Side::Client && lower == "none" => Algorithm::None,
            "gzip" => Algorithm::Gzip,
            "zstd" => Algorithm::Zstd,
            "lz4" => Algorithm::Lz4,
            "bz2" | "bzip2" if side == Side::Client => Algorithm::Bzip2,
            _ => return Err(CompressError::Unknown(format!("name {name:?}"))),
        };
        Ok(Compression { algorithm, side })
    }

    /// The suffix files stored with this compression get.
    pub const fn suffix(self) -> &'static str {
        self.algorithm.suffix()
    }
}
