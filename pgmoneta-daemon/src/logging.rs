//! The daemon's log: to the console, a file (rotated by age and size) or syslog, each line
//! prefixed by `log_line_prefix` (strftime-style), with counters of lines per level for the
//! Prometheus endpoint.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;
use pgmoneta_core::config::{LogLevel, LogMode, LogType, MainConfig};
use pgmoneta_core::{CivilDateTime, Clock};

use crate::clock::SystemClock;

/// Lines logged per level since start (or the last `clear prometheus`).
#[derive(Debug, Default)]
pub struct LogCounters {
    /// INFO lines (and DEBUG).
    pub info: AtomicU64,
    /// WARN lines.
    pub warn: AtomicU64,
    /// ERROR lines.
    pub error: AtomicU64,
    /// FATAL lines (errors that stop the daemon).
    pub fatal: AtomicU64,
}

impl LogCounters {
    /// Zeroes every counter.
    pub fn reset(&self) {
        for c in [&self.info, &self.warn, &self.error, &self.fatal] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The `log` level filter for a configured level.
pub fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug5 | LogLevel::Debug4 | LogLevel::Debug3 | LogLevel::Debug2 => LevelFilter::Trace,
        LogLevel::Debug1 => LevelFilter::Debug,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Warn => LevelFilter::Warn,
        _ => LevelFilter::Error,
    }
}

/// Renders a strftime-style prefix: `%Y %m %d %H %M %S %z %%` and `%F` / `%T`.
pub fn format_time(pattern: &str, t: CivilDateTime, utc_offset: i32) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&format!("{:04}", t.year)),
            Some('m') => out.push_str(&format!("{:02}", t.month)),
            Some('d') => out.push_str(&format!("{:02}", t.day)),
            Some('H') => out.push_str(&format!("{:02}", t.hour)),
            Some('M') => out.push_str(&format!("{:02}", t.minute)),
            Some('S') => out.push_str(&format!("{:02}", t.second)),
            Some('F') => out.push_str(&format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)),
            Some('T') => out.push_str(&format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second)),
            Some('z') => {
                let sign = if utc_offset < 0 { '-' } else { '+' };
                let a = utc_offset.unsigned_abs();
                out.push_str(&format!("{sign}{:02}{:02}", a / 3600, (a % 3600) / 60));
            }
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// A log file rotated when older than `age` or larger than `size` bytes: the file is renamed
/// `<path>.<YYYYMMDDhhmmss>` (with `-<n>` when that name is taken) and a new one started.
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    opened: Instant,
    written: u64,
    age: Option<Duration>,
    size: u64,
}

impl RotatingFile {
    /// Opens (appends to, or with `LogMode::Create` truncates) `path`.
    pub fn open(path: PathBuf, mode: LogMode, age: Option<Duration>, size: u64) -> RotatingFile {
        let file = open_log(&path, mode);
        let written = file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
        RotatingFile { path, file, opened: Instant::now(), written, age, size }
    }

    /// Changes the rotation limits (reload).
    pub fn set_limits(&mut self, age: Option<Duration>, size: u64) {
        self.age = age;
        self.size = size;
    }

    /// Writes one line, rotating first when a limit is reached. `false` when the file could
    /// not be written (the caller falls back to standard error).
    pub fn write_line(&mut self, line: &str) -> bool {
        let too_old = self.age.is_some_and(|age| self.opened.elapsed() >= age);
        let too_big = self.size > 0 && self.written > 0 && self.written + line.len() as u64 > self.size;
        if self.file.is_some() && (too_old || too_big) {
            self.rotate();
        }
        let Some(f) = &mut self.file else { return false };
        if f.write_all(line.as_bytes()).is_err() {
            return false;
        }
        self.written += line.len() as u64;
        true
    }

    fn rotate(&mut self) {
        let now = SystemClock.now();
        let stamp = format_time("%Y%m%d%H%M%S", now.local(), now.utc_offset);
        let base = format!("{}.{stamp}", self.path.display());
        let mut target = PathBuf::from(&base);
        let mut n = 1;
        while target.exists() {
            target = PathBuf::from(format!("{base}-{n}"));
            n += 1;
        }
        if let Some(f) = self.file.take() {
            let _ = f.sync_all();
        }
        let _ = std::fs::rename(&self.path, &target);
        self.file = open_log(&self.path, LogMode::Create);
        self.opened = Instant::now();
        self.written = 0;
    }

    fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
    }
}

enum Sink {
    Console,
    File(RotatingFile),
    Syslog(Option<UnixDatagram>),
}

struct Settings {
    prefix: String,
}

/// The logger installed with [`install`].
pub struct Logger {
    sink: Mutex<Sink>,
    settings: Mutex<Settings>,
    counters: Arc<LogCounters>,
}

impl Logger {
    fn write_line(&self, level: Level, text: &str) {
        let now = SystemClock.now();
        let prefix = format_time(&self.settings.lock().prefix, now.local(), now.utc_offset);
        let line = format!("{prefix} {:<5} {text}\n", level.as_str());
        let mut sink = self.sink.lock();
        match &mut *sink {
            Sink::Console => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::File(f) => {
                if !f.write_line(&line) {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            }
            Sink::Syslog(socket) => {
                // RFC 3164 over /dev/log, facility daemon (3).
                let severity = match level {
                    Level::Error => 3,
                    Level::Warn => 4,
                    Level::Info => 6,
                    Level::Debug | Level::Trace => 7,
                };
                let msg =
                    format!("<{}>pgmoneta[{}]: {:<5} {text}", 3 * 8 + severity, std::process::id(), level.as_str());
                let sent = socket.as_ref().is_some_and(|s| s.send(msg.as_bytes()).is_ok());
                if !sent {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            }
        }
    }
}

fn open_log(path: &PathBuf, mode: LogMode) -> Option<File> {
    let mut opts = OpenOptions::new();
    opts.create(true);
    if mode == LogMode::Create {
        opts.write(true).truncate(true);
    } else {
        opts.append(true);
    }
    opts.open(path).ok()
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Libraries' debug chatter stays out of an info log; their warnings and errors do not.
        let counter = match record.level() {
            Level::Error => &self.counters.error,
            Level::Warn => &self.counters.warn,
            _ => &self.counters.info,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.write_line(record.level(), &record.args().to_string());
    }

    fn flush(&self) {
        if let Sink::File(f) = &mut *self.sink.lock() {
            f.flush();
        }
    }
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Installs the logger for `config` (once per process); later calls apply a reloaded level,
/// prefix and rotation settings. Returns the line counters.
pub fn install(config: &MainConfig) -> Arc<LogCounters> {
    let settings = Settings { prefix: config.log_line_prefix.clone() };
    let age = (config.log_rotation_age.0 > 0).then(|| Duration::from_secs(config.log_rotation_age.0));
    let size = config.log_rotation_size.bytes();
    log::set_max_level(level_filter(config.log_level));
    if let Some(existing) = LOGGER.get() {
        *existing.settings.lock() = settings;
        if let Sink::File(f) = &mut *existing.sink.lock() {
            f.set_limits(age, size);
        }
        return existing.counters.clone();
    }
    let sink = match config.log_type {
        LogType::File => {
            let now = SystemClock.now();
            let path = PathBuf::from(format_time(&config.log_path, now.local(), now.utc_offset));
            Sink::File(RotatingFile::open(path, config.log_mode, age, size))
        }
        LogType::Syslog => {
            let socket = UnixDatagram::unbound().ok().filter(|s| s.connect("/dev/log").is_ok());
            Sink::Syslog(socket)
        }
        _ => Sink::Console,
    };
    let logger = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(sink),
        settings: Mutex::new(settings),
        counters: Arc::new(LogCounters::default()),
    });
    let _ = log::set_logger(logger);
    logger.counters.clone()
}

/// Logs a fatal error (counted apart from errors) before the daemon exits.
pub fn fatal(text: &str) {
    match LOGGER.get() {
        Some(l) => {
            l.counters.fatal.fetch_add(1, Ordering::Relaxed);
            l.write_line(Level::Error, &format!("FATAL: {text}"));
        }
        None => eprintln!("pgmoneta: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_strftime_prefixes() {
        let t = CivilDateTime::new(2026, 11, 28, 9, 5, 7).unwrap();
        assert_eq!(format_time("%Y-%m-%d %H:%M:%S", t, 0), "2026-11-28 09:05:07");
        assert_eq!(format_time("%F %T %z 100%% %q", t, -5400), "2026-11-28 09:05:07 -0130 100% %q");
        assert_eq!(format_time("/var/log/pgmoneta-%Y%m%d.log", t, 3600), "/var/log/pgmoneta-20261128.log");
    }

    #[test]
    fn rotates_by_size_without_losing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgmoneta.log");
        let mut f = RotatingFile::open(path.clone(), LogMode::Append, None, 100);
        for i in 0..10 {
            assert!(f.write_line(&format!("line {i:02} {}\n", "x".repeat(30))));
        }
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert!(files.len() >= 4, "{files:?}");
        let mut all = String::new();
        for name in &files {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() <= 100, "{name} has {} bytes", text.len());
            all.push_str(&text);
        }
        for i in 0..10 {
            assert!(all.contains(&format!("line {i:02} ")), "line {i} lost");
        }
    }

    #[test]
    fn rotates_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgmoneta.log");
        let mut f = RotatingFile::open(path.clone(), LogMode::Create, Some(Duration::from_millis(50)), 0);
        assert!(f.write_line("first\n"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(f.write_line("second\n"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn maps_levels() {
        assert_eq!(level_filter(LogLevel::Debug3), LevelFilter::Trace);
        assert_eq!(level_filter(LogLevel::Debug1), LevelFilter::Debug);
        assert_eq!(level_filter(LogLevel::Info), LevelFilter::Info);
        assert_eq!(level_filter(LogLevel::Warn), LevelFilter::Warn);
    }
}
