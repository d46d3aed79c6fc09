//! Value syntax of the configuration files: booleans, times, sizes, retention, enumerations and
//! lists, each parsed from and rendered back to the text upstream pgmoneta uses.

use std::fmt;

/// A configuration value: parsed from the text after `=`, rendered back for `conf get`.
pub trait ConfValue: Sized {
    /// Parses the (unquoted, trimmed) text. The error says what was expected.
    ///
    /// # Errors
    /// A sentence for the operator, without the key or location (the caller adds those).
    fn parse_value(text: &str) -> Result<Self, String>;
    /// Renders the value as it would be written in the file.
    fn render(&self) -> String;
}

impl ConfValue for String {
    fn parse_value(text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }
    fn render(&self) -> String {
        self.clone()
    }
}

/// An optional value: empty text leaves it unset.
impl<T: ConfValue> ConfValue for Option<T> {
    fn parse_value(text: &str) -> Result<Option<T>, String> {
        if text.is_empty() {
            Ok(None)
        } else {
            T::parse_value(text).map(Some)
        }
    }
    fn render(&self) -> String {
        self.as_ref().map(T::render).unwrap_or_default()
    }
}

impl ConfValue for bool {
    fn parse_value(text: &str) -> Result<bool, String> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(format!("invalid boolean {text:?}: expected on/off, yes/no, true/false or 1/0")),
        }
    }
    fn render(&self) -> String {
        if *self { "on" } else { "off" }.to_owned()
    }
}

macro_rules! integer_value {
    ($($t:ty),*) => {$(
        impl ConfValue for $t {
            fn parse_value(text: &str) -> Result<$t, String> {
                text.parse::<$t>().map_err(|_| {
                    format!("invalid number {text:?}: expected a whole number from {} to {}", <$t>::MIN, <$t>::MAX)
                })
            }
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_value!(u16, u32, i32, u64, i64);

/// A duration in whole seconds, written with an optional unit: `30`, `30s`, `5m`, `2h`, `1d`, `1w`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeValue(pub u64);

impl TimeValue {
    /// The duration in seconds.
    pub const fn seconds(self) -> u64 {
        self.0
    }
}

impl ConfValue for TimeValue {
    fn parse_value(text: &str) -> Result<TimeValue, String> {
        let bad = || {
            format!(
                "invalid time {text:?}: expected a whole number with at most one unit s, m, h, d or w \
                 and no spaces (like 30s, 5m, 2h, 1d, 1w)"
            )
        };
        let (digits, unit) = match text.as_bytes().last() {
            Some(c) if c.is_ascii_alphabetic() => (&text[..text.len() - 1], c.to_ascii_lowercase()),
            _ => (text, b's'),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let factor = match unit {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86_400,
            b'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        n.checked_mul(factor).map(TimeValue).ok_or_else(bad)
    }
    fn render(&self) -> String {
        let s = self.0;
        match s {
            0 => "0s".to_owned(),
            _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
            _ if s % 3600 == 0 => format!("{}h", s / 3600),
            _ if s % 60 == 0 => format!("{}m", s / 60),
            _ => format!("{s}s"),
        }
    }
}

impl fmt::Display for TimeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// A size in bytes, written with an optional base-1024 unit: `4096`, `512K`, `256KB`, `1M`, `2GB`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SizeValue(pub u64);

impl SizeValue {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl ConfValue for SizeValue {
    fn parse_value(text: &str) -> Result<SizeValue, String> {
        let bad = || {
            format!(
                "invalid size {text:?}: expected a whole number of bytes with an optional unit \
                 B, K/KB, M/MB or G/GB (base 1024, no spaces)"
            )
        };
        let digits_end = text.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(digits_end);
        if digits.is_empty() {
            return Err(bad());
        }
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1 << 10,
            "m" | "mb" => 1 << 20,
            "g" | "gb" => 1 << 30,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        n.checked_mul(factor).map(SizeValue).ok_or_else(bad)
    }
    fn render(&self) -> String {
        format!("{}B", self.0)
    }
}

/// How long backups are kept: days, weeks, months and years; `None` is unset.
///
/// Written `D,W,M,Y`; trailing parts may be omitted, and `-`, `x` or an empty part leave one unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Retention {
    /// Keep every backup of the last this many days.
    pub days: Option<u32>,
    /// Keep one backup (Monday's) for each of the last this many weeks.
    pub weeks: Option<u32>,
    /// Keep one backup (the 1st's) for each of the last this many months.
    pub months: Option<u32>,
    /// Keep one backup (January 1st's) for each of the last this many years.
    pub years: Option<u32>,
}

impl Retention {
    /// Upstream's default: seven days.
    pub const DEFAULT: Retention = Retention { days: Some(7), weeks: None, months: None, years: None };

    /// Each part of `self`, or of `fallback` where `self` leaves it unset.
    pub fn or(self, fallback: Retention) -> Retention {
        Retention {
            days: self.days.or(fallback.days),
            weeks: self.weeks.or(fallback.weeks),
            months: self.months.or(fallback.months),
            years: self.years.or(fallback.years),
        }
    }

    /// The rules a complete policy must follow; each broken one as a sentence.
    /// `require_days` is false for a server section, whose unset days come from `[pgmoneta]`.
    pub fn problems(&self, require_days: bool) -> Vec<String> {
        let mut out = Vec::new();
        if require_days && self.days.is_none() {
            out.push("days must be set (at least 1)".to_owned());
        }
        for (name, value) in
            [("days", self.days), ("weeks", self.weeks), ("months", self.months), ("years", self.years)]
        {
            if value == Some(0) {
                out.push(format!("{name} must be at least 1, got 0 (use '-' to leave it unset)"));
            }
        }
        if let (Some(w @ 5..), Some(_)) = (self.weeks, self.months) {
            out.push(format!("weeks must be at most 4 when months are set, got {w}"));
        }
        if let (Some(m @ 13..), Some(_)) = (self.months, self.years) {
            out.push(format!("months must be at most 12 when years are set, got {m}"));
        }
        out
    }
}

impl ConfValue for Retention {
    fn parse_value(text: &str) -> Result<Retention, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if parts.len() > 4 {
            return Err(format!("invalid retention {text:?}: expected at most four parts, days,weeks,months,years"));
        }
        let mut values = [None; 4];
        for (i, part) in parts.iter().enumerate() {
            values[i] = match *part {
                "" | "-" | "x" | "X" => None,
                p => Some(p.parse::<u32>().map_err(|_| {
                    let name = ["days", "weeks", "months", "years"][i];
                    format!("invalid retention {text:?}: {name} must be a whole number, '-' or 'x', got {p:?}")
                })?),
            };
        }
        let [days, weeks, months, years] = values;
        Ok(Retention { days, weeks, months, years })
    }
    fn render(&self) -> String {
        let part = |v: Option<u32>| v.map_or("-".to_owned(), |n| n.to_string());
        format!("{},{},{},{}", part(self.days), part(self.weeks), part(self.months), part(self.years))
    }
}

/// A comma-separated list of strings (each trimmed, empty items dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct List(pub Vec<String>);

impl ConfValue for List {
    fn parse_value(text: &str) -> Result<List, String> {
        Ok(List(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()))
    }
    fn render(&self) -> String {
        self.0.join(",")
    }
}

/// One node of a cluster, as `cluster_peers` names it: `name=host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The node's name (its `cluster_node`).
    pub name: String,
    /// Host name or address of its cluster port.
    pub host: String,
    /// Its cluster port.
    pub port: u16,
}

/// `cluster_peers`: comma-separated `name=host:port`, an IPv6 address in brackets
/// (`c=[::1]:5010`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Peers(pub Vec<Peer>);

/// Whether `name` may name a cluster node: letters, digits, `-`, `_` and `.`.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl ConfValue for Peers {
    fn parse_value(text: &str) -> Result<Peers, String> {
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |why: &str| format!("invalid peer {item:?}: {why} (expected name=host:port)");
            let (name, address) = item.split_once('=').ok_or_else(|| bad("no name"))?;
            let name = name.trim();
            if !valid_node_name(name) {
                return Err(bad("a name is letters, digits, '-', '_' and '.'"));
            }
            let (host, port) = address.trim().rsplit_once(':').ok_or_else(|| bad("no port"))?;
            let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
            if host.is_empty() {
                return Err(bad("no host"));
            }
            let port = port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port is 1 to 65535"))?;
            out.push(Peer { name: name.to_owned(), host: host.to_owned(), port });
        }
        Ok(Peers(out))
    }
    fn render(&self) -> String {
        let one = |p: &Peer| {
            if p.host.contains(':') {
                format!("{}=[{}]:{}", p.name, p.host, p.port)
            } else {
                format!("{}={}:{}", p.name, p.host, p.port)
            }
        };
        self.0.iter().map(one).collect::<Vec<_>>().join(",")
    }
}

/// Declares a case-insensitive enumeration: its variants, the words accepted for each (the first
/// is the one rendered) and the integer code upstream uses for it.
macro_rules! conf_enum {
    (
        $(#[$meta:meta])* $name:ident, $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $code:literal : [$($word:literal),+],)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The integer code `conf get` reports (upstream's, where upstream has one).
            pub const fn code(self) -> i32 {
                match self { $($name::$variant => $code,)+ }
            }

            /// The variant for an upstream integer code.
            pub fn from_code(code: i32) -> Option<$name> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// The word written in configuration files.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => conf_enum!(@first $($word),+),)+ }
            }
        }

        impl ConfValue for $name {
            fn parse_value(text: &str) -> Result<$name, String> {
                let lower = text.to_ascii_lowercase();
                $(if [$($word),+].contains(&lower.as_str()) { return Ok($name::$variant); })+
                let words: Vec<&str> = vec![$($($word),+),+];
                Err(format!("invalid {} {text:?}: expected one of {}", $what, words.join(", ")))
            }
            fn render(&self) -> String {
                self.as_str().to_owned()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (@first $first:literal $(, $rest:literal)*) => { $first };
}

conf_enum! {
    /// Backup and WAL compression (`compression`). The code is upstream's: client 0x10 or server
    /// 0x20, plus 1 gzip, 2 zstd, 3 lz4, 4 bzip2.
    Compression, "compression" {
        /// Stored uncompressed.
        None = 0: ["none"],
        /// gzip, compressed here.
        ClientGzip = 17: ["gzip", "client-gzip"],
        /// zstd, compressed here.
        ClientZstd = 18: ["zstd", "client-zstd"],
        /// lz4, compressed here.
        ClientLz4 = 19: ["lz4", "client-lz4"],
        /// bzip2, compressed here.
        ClientBzip2 = 20: ["bz2", "client-bz2", "bzip2", "client-bzip2"],
        /// gzip, compressed by the PostgreSQL server during `BASE_BACKUP`.
        ServerGzip = 33: ["server-gzip"],
        /// zstd, compressed by the PostgreSQL server during `BASE_BACKUP`.
        ServerZstd = 34: ["server-zstd"],
        /// lz4, compressed by the PostgreSQL server during `BASE_BACKUP`.
        ServerLz4 = 35: ["server-lz4"],
    }
}

conf_enum! {
    /// The checksum each file of a backup gets in `backup.manifest` (`manifest`). The code is
    /// upstream's `HASH_ALGORITHM` in `backup.info`.
    ManifestHash, "manifest algorithm" {
        /// SHA-512, as upstream writes and verifies.
        Sha512 = 5: ["sha512", "sha-512"],
        /// SHA-256.
        Sha256 = 3: ["sha256", "sha-256"],
        /// CRC32C, as PostgreSQL's own manifest by default.
        Crc32c = 1: ["crc32c"],
    }
}

conf_enum! {
    /// Backup, WAL and vault encryption (`encryption`).
    Encryption, "encryption" {
        /// Not encrypted.
        None = 0: ["none"],
        /// AES-256-GCM.
        Aes256Gcm = 1: ["aes-256-gcm", "aes", "aes-256", "aes256", "aes-gcm", "aes256-gcm"],
        /// AES-192-GCM.
        Aes192Gcm = 2: ["aes-192-gcm", "aes-192", "aes192", "aes192-gcm"],
        /// AES-128-GCM.
        Aes128Gcm = 3: ["aes-128-gcm", "aes-128", "aes128", "aes128-gcm"],
    }
}

conf_enum! {
    /// Where log lines go (`log_type`).
    LogType, "log type" {
        /// Standard error.
        Console = 0: ["console"],
        /// The file `log_path`.
        File = 1: ["file"],
        /// The system log.
        Syslog = 2: ["syslog"],
    }
}

conf_enum! {
    /// How much is logged (`log_level`).
    LogLevel, "log level" {
        /// Debugging, most detailed.
        Debug5 = 1: ["debug5"],
        /// Debugging.
        Debug4 = 2: ["debug4"],
        /// Debugging.
        Debug3 = 3: ["debug3"],
        /// Debugging.
        Debug2 = 4: ["debug2"],
        /// Debugging, least detailed.
        Debug1 = 5: ["debug1", "debug"],
        /// Normal operation.
        Info = 6: ["info"],
        /// Something looks wrong.
        Warn = 7: ["warn", "warning"],
        /// An operation failed.
        Error = 8: ["error"],
        /// The program cannot go on.
        Fatal = 9: ["fatal"],
    }
}

conf_enum! {
    /// Whether a log file is appended to or recreated (`log_mode`).
    LogMode, "log mode" {
        /// Append to an existing file.
        Append = 0: ["append", "a"],
        /// Truncate the file on open.
        Create = 1: ["create", "c"],
    }
}

conf_enum! {
    /// Huge pages for shared memory (`hugepage`).
    HugePage, "hugepage setting" {
        /// Never.
        Off = 0: ["off"],
        /// When available.
        Try = 1: ["try"],
        /// Always; failing otherwise.
        On = 2: ["on"],
    }
}

conf_enum! {
    /// `O_DIRECT` file I/O (`direct_io`).
    DirectIo, "direct_io setting" {
        /// Never.
        Off = 0: ["off"],
        /// When the file system supports it.
        Auto = 1: ["auto", "try"],
        /// Always; failing otherwise.
        On = 2: ["on"],
    }
}

conf_enum! {
    /// How much the process title says (`update_process_title`).
    UpdateProcessTitle, "update_process_title setting" {
        /// Never changed.
        Never = 0: ["never", "off"],
        /// Only within the original title's length.
        Strict = 1: ["strict"],
        /// The job only.
        Minimal = 2: ["minimal"],
        /// Job and server.
        Verbose = 3: ["verbose", "full"],
    }
}

conf_enum! {
    /// Event loop back end (`libev`). Accepted for compatibility; threads and blocking sockets
    /// serve every choice the same way.
    EventBackend, "libev backend" {
        /// Chosen automatically.
        Auto = 0: ["auto"],
        /// `select(2)`.
        Select = 1: ["select"],
        /// `poll(2)`.
        Poll = 2: ["poll"],
        /// `epoll(7)`.
        Epoll = 3: ["epoll"],
        /// io_uring.
        IoUring = 4: ["iouring", "io_uring"],
        /// Solaris `/dev/poll`.
        DevPoll = 5: ["devpoll"],
        /// Solaris event ports.
        Port = 6: ["port"],
    }
}

conf_enum! {
    /// Output format of `pgmoneta-cli` (`output` in `pgmoneta_cli.conf`).
    OutputFormat, "output format" {
        /// Indented text.
        Text = 0: ["text"],
        /// Translated JSON.
        Json = 1: ["json"],
        /// Untranslated JSON.
        Raw = 2: ["raw"],
    }
}

conf_enum! {
    /// Compression of management frames (`compression` in `pgmoneta_cli.conf`, `-C`). Codes are the
    /// frame header's.
    WireCompression, "compression" {
        /// Plain JSON.
        None = 0: ["none"],
        /// gzip.
        Gzip = 1: ["gz", "gzip"],
        /// zstd.
        Zstd = 2: ["zstd"],
        /// lz4.
        Lz4 = 3: ["lz4"],
        /// bzip2.
        Bzip2 = 4: ["bz2", "bzip2"],
    }
}

/// Storage engines a server's backups go to (`storage_engine`, a comma list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StorageEngines {
    /// The local `base_dir`.
    pub local: bool,
    /// A remote directory over SSH/SFTP.
    pub ssh: bool,
    /// S3-compatible object storage.
    pub s3: bool,
    /// Azure Blob storage.
    pub azure: bool,
    /// Google Cloud Storage.
    pub gcs: bool,
}

impl Default for StorageEngines {
    fn default() -> StorageEngines {
        StorageEngines { local: true, ssh: false, s3: false, azure: false, gcs: false }
    }
}

impl StorageEngines {
    /// Whether any remote engine is on.
    pub fn any_remote(&self) -> bool {
        self.ssh || self.s3 || self.azure || self.gcs
    }
}

impl ConfValue for StorageEngines {
    fn parse_value(text: &str) -> Result<StorageEngines, String> {
        let mut engines = StorageEngines { local: false, ssh: false, s3: false, azure: false, gcs: false };
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "local" => engines.local = true,
                "ssh" => engines.ssh = true,
                "s3" => engines.s3 = true,
                "azure" => engines.azure = true,
                "gcs" => engines.gcs = true,
                _ => {
                    return Err(format!(
                        "invalid storage engine {item:?}: expected a comma list of local, ssh, s3, azure, gcs"
                    ))
                }
            }
        }
        if engines == (StorageEngines { local: false, ssh: false, s3: false, azure: false, gcs: false }) {
            return Err("storage_engine is empty: name at least one of local, ssh, s3, azure, gcs".to_owned());
        }
        Ok(engines)
    }
    fn render(&self) -> String {
        let names =
            [("local", self.local), ("ssh", self.ssh), ("s3", self.s3), ("azure", self.azure), ("gcs", self.gcs)];
        names.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_values() {
        let good = [
            ("0", 0),
            ("30", 30),
            ("30s", 30),
            ("30S", 30),
            ("5m", 300),
            ("2h", 7200),
            ("1d", 86_400),
            ("1w", 604_800),
            ("2W", 1_209_600),
        ];
        for (text, secs) in good {
            assert_eq!(TimeValue::parse_value(text), Ok(TimeValue(secs)), "{text}");
        }
        for bad in
            ["10x", "-1s", "1h5s", "1h 5s", "10 s", "abc", "", "s", "1.5h", "+5s", " 5s", "99999999999999999999w"]
        {
            let err = TimeValue::parse_value(bad).unwrap_err();
            assert!(err.starts_with("invalid time"), "{bad}: {err}");
        }
        let rendered =
            [(0, "0s"), (30, "30s"), (300, "5m"), (7200, "2h"), (86_400, "1d"), (90, "90s"), (604_800, "7d")];
        for (secs, text) in rendered {
            assert_eq!(TimeValue(secs).render(), text);
            assert_eq!(TimeValue::parse_value(text), Ok(TimeValue(secs)));
        }
    }

    #[test]
    fn size_values() {
        let good = [
            ("0", 0),
            ("4096", 4096),
            ("4096b", 4096),
            ("1k", 1024),
            ("256KB", 262_144),
            ("1M", 1 << 20),
            ("2gb", 2 << 30),
        ];
        for (text, bytes) in good {
            assert_eq!(SizeValue::parse_value(text), Ok(SizeValue(bytes)), "{text}");
        }
        for bad in ["", "k", "1 k", "1kbb", "-1", "1t", "1.5m", "99999999999999999999g"] {
            assert!(SizeValue::parse_value(bad).is_err(), "{bad}");
        }
        assert_eq!(SizeValue(4096).render(), "4096B");
    }

    #[test]
    fn booleans() {
        for t in ["on", "ON", "yes", "true", "1", "True"] {
            assert_eq!(bool::parse_value(t), Ok(true));
        }
        for f in ["off", "no", "false", "0", "NO"] {
            assert_eq!(bool::parse_value(f), Ok(false));
        }
        assert!(bool::parse_value("y").unwrap_err().contains("on/off"));
    }

    #[test]
    fn retention_syntax_and_rules() {
        let r = |d, w, m, y| Retention { days: d, weeks: w, months: m, years: y };
        let cases = [
            ("7", r(Some(7), None, None, None)),
            ("7,-,-,-", r(Some(7), None, None, None)),
            ("7,4,12,5", r(Some(7), Some(4), Some(12), Some(5))),
            ("7, x ,X,", r(Some(7), None, None, None)),
            ("-,2", r(None, Some(2), None, None)),
            ("", r(None, None, None, None)),
        ];
        for (text, want) in cases {
            assert_eq!(Retention::parse_value(text), Ok(want), "{text}");
        }
        assert_eq!(Retention::parse_value("7,4,12,5").unwrap().render(), "7,4,12,5");
        assert_eq!(Retention::DEFAULT.render(), "7,-,-,-");
        assert!(Retention::parse_value("1,2,3,4,5").unwrap_err().contains("four parts"));
        assert!(Retention::parse_value("7,-1").unwrap_err().contains("weeks must be a whole number"));

        assert!(r(Some(7), Some(4), Some(12), Some(5)).problems(true).is_empty());
        assert_eq!(
            r(Some(7), Some(0), None, None).problems(true),
            vec!["weeks must be at least 1, got 0 (use '-' to leave it unset)"]
        );
        assert_eq!(r(None, None, None, None).problems(true), vec!["days must be set (at least 1)"]);
        assert!(r(None, None, None, None).problems(false).is_empty());
        assert_eq!(
            r(Some(1), Some(5), Some(1), None).problems(true),
            vec!["weeks must be at most 4 when months are set, got 5"]
        );
        assert!(r(Some(1), Some(5), None, None).problems(true).is_empty());
        assert_eq!(
            r(Some(1), None, Some(13), Some(1)).problems(true),
            vec!["months must be at most 12 when years are set, got 13"]
        );
        assert_eq!(r(None, Some(2), None, None).or(Retention::DEFAULT), r(Some(7), Some(2), None, None));
    }

    #[test]
    fn enums() {
        assert_eq!(Compression::parse_value("ZSTD"), Ok(Compression::ClientZstd));
        assert_eq!(Compression::parse_value("client-bzip2"), Ok(Compression::ClientBzip2));
        assert_eq!(Compression::parse_value("server-lz4").map(Compression::code), Ok(35));
        assert!(Compression::parse_value("brotli").unwrap_err().contains("expected one of none, gzip"));
        assert_eq!(Encryption::parse_value("aes").map(|e| e.render()), Ok("aes-256-gcm".to_owned()));
        assert_eq!(Encryption::from_code(3), Some(Encryption::Aes128Gcm));
        assert_eq!(LogLevel::parse_value("debug"), Ok(LogLevel::Debug1));
        assert_eq!(UpdateProcessTitle::parse_value("full"), Ok(UpdateProcessTitle::Verbose));
        for c in Compression::ALL {
            assert_eq!(Compression::parse_value(&c.render()), Ok(*c));
            assert_eq!(Compression::from_code(c.code()), Some(*c));
        }
        assert_eq!(StorageEngines::parse_value("local, s3").unwrap().render(), "local,s3");
        assert!(StorageEngines::parse_value("local,ftp").is_err());
        assert!(StorageEngines::parse_value(",").is_err());
    }
}
