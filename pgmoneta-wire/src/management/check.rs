//! The `check` command (not upstream's, id 1001): the facts a monitoring check needs about each
//! server and the repository, and how they read as a Nagios state with thresholds.
//!
//! The daemon answers with facts only ([`CheckResponse`]); the reading is [`evaluate`], shared by
//! `pgmoneta-cli check` (thresholds from its options) and the daemon's `nagios` port (the
//! defaults). The states and exit codes are the Nagios plugin ones: 0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One server's facts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServerCheck {
    /// The server's name.
    pub server: String,
    /// Whether the daemon can reach PostgreSQL.
    pub online: bool,
    /// Put offline with `mode` (no WAL streaming or backups expected).
    pub offline_mode: bool,
    /// Whether this node archives the server (false on a follower of a cluster).
    pub active: bool,
    /// Whether WAL is streaming into the archive.
    pub wal_streaming: bool,
    /// Why it is not, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_problem: Option<String>,
    /// Bytes between the server's WAL end and what the archive has flushed.
    pub wal_lag: u64,
    /// Valid backups.
    pub valid_backups: u64,
    /// The newest valid backup's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_backup: Option<String>,
    /// Seconds since the newest valid backup was taken (its label's time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_backup_age: Option<u64>,
    /// Backups whose last verification failed, with what failed.
    pub failed_verifications: Vec<FailedVerification>,
    /// Problems the server checks found (grants, settings).
    pub problems: Vec<String>,
}

/// A backup whose last verification failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FailedVerification {
    /// The backup's label.
    pub label: String,
    /// What failed.
    pub message: String,
}

/// `check`'s response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckResponse {
    /// The servers asked about (all when none was named).
    pub servers: Vec<ServerCheck>,
    /// Free bytes on the repository's file system.
    pub free_space: u64,
    /// Size of the repository's file system.
    pub total_space: u64,
}

/// A Nagios state; ordered from best to worst, except that UNKNOWN ranks between WARNING and
/// CRITICAL as Nagios ranks it for a host's services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// 0.
    Ok,
    /// 1.
    Warning,
    /// 2.
    Critical,
    /// 3.
    Unknown,
}

impl State {
    /// The plugin exit code.
    pub fn code(self) -> i32 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    /// The word in the status line.
    pub fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }

    fn rank(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Unknown => 2,
            State::Critical => 3,
        }
    }

    /// The worse of two states.
    #[must_use]
    pub fn worst(self, other: State) -> State {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// A free-space threshold: bytes, or a percentage of the file system.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Space {
    /// At least this many bytes.
    Bytes(u64),
    /// At least this percentage of the file system.
    Percent(f64),
}

impl Space {
    /// `10%`, `5GB`, `512MiB`, `1000000` (bytes).
    ///
    /// # Errors
    /// What is wrong with `text`.
    pub fn parse(text: &str) -> Result<Space, String> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| format!("{text:?}: not a percentage"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("{text:?}: a percentage is between 0 and 100"));
            }
            return Ok(Space::Percent(v));
        }
        parse_bytes(t).map(Space::Bytes)
    }

    fn below(self, free: u64, total: u64) -> bool {
        match self {
            Space::Bytes(b) => free < b,
            Space::Percent(p) => total > 0 && (free as f64) * 100.0 / (total as f64) < p,
        }
    }
}

/// `64MB`, `1GiB`, `512k`, `1000`: bytes with an optional unit (K, M, G, T; B and iB
/// accepted, all powers of 1024 as PostgreSQL counts them).
///
/// # Errors
/// What is wrong with `text`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?}: expected a number of bytes such as 64MB"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("{text:?}: too large"))
}

/// `90s`, `30m`, `36h`, `2d`, `1w`, `3600` (seconds).
///
/// # Errors
/// What is wrong with `text`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?}: expected a duration such as 36h"))?;
    let factor = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?}: unknown unit (use s, m, h, d or w)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{text:?}: too large"))
}

/// Where each fact turns WARNING or CRITICAL.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Age of the newest valid backup, in seconds.
    pub backup_age: (u64, u64),
    /// WAL lag in bytes.
    pub wal_lag: (u64, u64),
    /// Free space in the repository.
    pub free: (Space, Space),
    /// Whether failed verifications count (CRITICAL).
    pub verification: bool,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            backup_age: (36 * 3600, 72 * 3600),
            wal_lag: (64 << 20, 512 << 20),
            free: (Space::Percent(20.0), Space::Percent(10.0)),
            verification: true,
        }
    }
}

/// One finding of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Its state.
    pub state: State,
    /// The server it is about (`None`: the repository).
    pub server: Option<String>,
    /// What was found.
    pub message: String,
}

/// What the facts say: the overall state and every finding worse than OK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The worst finding's state (OK when there is none).
    pub state: State,
    /// The findings, worst first, in server order within a state.
    pub findings: Vec<Finding>,
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn human_age(s: u64) -> String {
    match s {
        0..=5_399 => format!("{} min", s / 60),
        5_400..=172_799 => format!("{:.1} h", s as f64 / 3600.0),
        _ => format!("{:.1} d", s as f64 / 86_400.0),
    }
}

/// Reads `facts` with `limits`.
pub fn evaluate(facts: &CheckResponse, limits: &Thresholds) -> Verdict {
    let mut findings = Vec::new();
    let mut add = |state: State, server: Option<&str>, message: String| {
        findings.push(Finding { state, server: server.map(str::to_owned), message });
    };
    for s in &facts.servers {
        let name = Some(s.server.as_str());
        if s.offline_mode {
            add(State::Warning, name, "offline (mode): no WAL streaming or backups".into());
        } else if s.active && !s.wal_streaming {
            let why = s.wal_problem.as_deref().map(|p| format!(": {p}")).unwrap_or_default();
            add(State::Critical, name, format!("WAL is not streaming{why}"));
        } else if s.active {
            let (w, c) = limits.wal_lag;
            if s.wal_lag >= c {
                add(State::Critical, name, format!("WAL lag {}", human_bytes(s.wal_lag)));
            } else if s.wal_lag >= w {
                add(State::Warning, name, format!("WAL lag {}", human_bytes(s.wal_lag)));
            }
        }
        if !s.online && !s.offline_mode {
            add(State::Warning, name, "PostgreSQL cannot be reached".into());
        }
        match (s.newest_backup.as_deref(), s.newest_backup_age) {
            (Some(label), Some(age)) => {
                let (w, c) = limits.backup_age;
                let text = || format!("newest valid backup {label} is {} old", human_age(age));
                if age >= c {
                    add(State::Critical, name, text());
                } else if age >= w {
                    add(State::Warning, name, text());
                }
            }
            _ => add(State::Critical, name, "no valid backup".into()),
        }
        if limits.verification {
            for f in &s.failed_verifications {
                add(State::Critical, name, format!("backup {} failed verification: {}", f.label, f.message));
            }
        }
        for p in &s.problems {
            add(State::Warning, name, p.clone());
        }
    }
    let (w, c) = limits.free;
    let free = || {
        let pct = if facts.total_space > 0 { facts.free_space as f64 * 100.0 / facts.total_space as f64 } else { 0.0 };
        format!("repository free space {} ({pct:.1}%)", human_bytes(facts.free_space))
    };
    if c.below(facts.free_space, facts.total_space) {
        add(State::Critical, None, free());
    } else if w.below(facts.free_space, facts.total_space) {
        add(State::Warning, None, free());
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.state.rank()));
    let state = findings.iter().fold(State::Ok, |s, f| s.worst(f.state));
    Verdict { state, findings }
}

/// A performance-data label: quoted when it holds anything but letters, digits, `_`, `-`, `.`.
fn perf_label(label: &str) -> String {
    if label.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        label.to_owned()
    } else {
        format!("'{}'", label.replace(['\'', '='], "_"))
    }
}

/// The performance data: per server `<name>_wal_lag` (bytes), `<name>_backup_age` (seconds),
/// `<name>_valid_backups`, `<name>_wal_streaming` (1 or 0); and `repository_free` (bytes, with
/// the file system's size as maximum).
pub fn perf_data(facts: &CheckResponse, limits: &Thresholds) -> String {
    let mut out = String::new();
    let mut item = |label: String, value: String| {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{}={value}", perf_label(&label));
    };
    for s in &facts.servers {
        let n = &s.server;
        item(format!("{n}_wal_lag"), format!("{}B;{};{};0", s.wal_lag, limits.wal_lag.0, limits.wal_lag.1));
        if let Some(age) = s.newest_backup_age {
            item(format!("{n}_backup_age"), format!("{age}s;{};{};0", limits.backup_age.0, limits.backup_age.1));
        }
        item(format!("{n}_valid_backups"), format!("{};;;0", s.valid_backups));
        item(format!("{n}_wal_streaming"), format!("{};;;0;1", u8::from(s.wal_streaming)));
    }
    item("repository_free".into(), format!("{}B;;;0;{}", facts.free_space, facts.total_space));
    out
}

/// The Nagios status line: `PGMONETA OK - pgmoneta is running|perf`, or the state and the
/// findings (`PGMONETA CRITICAL - primary: WAL is not streaming; ...|perf`), ending in `\n`.
pub fn status_line(facts: &CheckResponse, limits: &Thresholds) -> String {
    let verdict = evaluate(facts, limits);
    let summary = if verdict.findings.is_empty() {
        "pgmoneta is running".to_owned()
    } else {
        verdict
            .findings
            .iter()
            .map(|f| match &f.server {
                Some(s) => format!("{s}: {}", f.message),
                None => f.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // The summary is one line and holds no `|`, which starts the performance data.
    let summary = summary.replace(['\n', '\r'], " ").replace('|', "/");
    format!("PGMONETA {} - {summary}|{}\n", verdict.state.word(), perf_data(facts, limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(name: &str) -> ServerCheck {
        ServerCheck {
            server: name.into(),
            online: true,
            active: true,
            wal_streaming: true,
            wal_lag: 1000,
            valid_backups: 2,
            newest_backup: Some("20261207100000".into()),
            newest_backup_age: Some(3600),
            ..ServerCheck::default()
        }
    }

    fn facts(servers: Vec<ServerCheck>) -> CheckResponse {
        CheckResponse { servers, free_space: 50 << 30, total_space: 100 << 30 }
    }

    #[test]
    fn a_healthy_repository_is_ok() {
        let f = facts(vec![healthy("primary")]);
        let v = evaluate(&f, &Thresholds::default());
        assert_eq!(v, Verdict { state: State::Ok, findings: vec![] });
        assert_eq!(
            status_line(&f, &Thresholds::default()),
            "PGMONETA OK - pgmoneta is running|primary_wal_lag=1000B;67108864;536870912;0 \
             primary_backup_age=3600s;129600;259200;0 primary_valid_backups=2;;;0 primary_wal_streaming=1;;;0;1 \
             repository_free=53687091200B;;;0;107374182400\n"
        );
    }

    #[test]
    fn each_fact_crosses_its_thresholds() {
        let t = Thresholds::default();
        let state = |s: ServerCheck| evaluate(&facts(vec![s]), &t).state;
        let mut s = healthy("a");
        s.newest_backup_age = Some(40 * 3600);
        assert_eq!(state(s.clone()), State::Warning);
        s.newest_backup_age = Some(80 * 3600);
        assert_eq!(state(s), State::Critical);
        let mut s = healthy("a");
        (s.newest_backup, s.newest_backup_age, s.valid_backups) = (None, None, 0);
        assert_eq!(state(s), State::Critical);
        let mut s = healthy("a");
        s.wal_lag = 100 << 20;
        assert_eq!(state(s.clone()), State::Warning);
        s.wal_lag = 1 << 30;
        assert_eq!(state(s), State::Critical);
        let mut s = healthy("a");
        s.wal_streaming = false;
        s.wal_problem = Some("out of space".into());
        let v = evaluate(&facts(vec![s.clone()]), &t);
        assert_eq!(v.state, State::Critical);
        assert_eq!(v.findings[0].message, "WAL is not streaming: out of space");
        // A follower of a cluster does not stream: nothing to say about it.
        s.active = false;
        assert_eq!(state(s), State::Ok);
        let mut s = healthy("a");
        s.failed_verifications.push(FailedVerification { label: "b1".into(), message: "data/base/1/2".into() });
        assert_eq!(state(s.clone()), State::Critical);
        assert_eq!(evaluate(&facts(vec![s]), &Thresholds { verification: false, ..t.clone() }).state, State::Ok);
        let mut s = healthy("a");
        s.offline_mode = true;
        s.wal_streaming = false;
        assert_eq!(state(s), State::Warning);
        let mut s = healthy("a");
        s.problems.push("the role lacks pg_read_all_settings".into());
        assert_eq!(state(s), State::Warning);

        let mut f = facts(vec![healthy("a")]);
        f.free_space = 15 << 30;
        assert_eq!(evaluate(&f, &t).state, State::Warning);
        f.free_space = 5 << 30;
        assert_eq!(evaluate(&f, &t).state, State::Critical);
        let bytes = Thresholds { free: (Space::Bytes(1 << 30), Space::Bytes(1 << 20)), ..t };
        assert_eq!(evaluate(&f, &bytes).state, State::Ok);
    }

    #[test]
    fn findings_are_worst_first_and_the_line_names_them() {
        let mut a = healthy("a");
        a.newest_backup_age = Some(40 * 3600);
        let mut b = healthy("b|x");
        b.wal_streaming = false;
        let f = facts(vec![a, b]);
        let line = status_line(&f, &Thresholds::default());
        assert!(
            line.starts_with(
                "PGMONETA CRITICAL - b/x: WAL is not streaming; a: newest valid backup 20261207100000 is 40.0 h old|"
            ),
            "{line}"
        );
        assert!(line.contains(" 'b|x_wal_lag'=1000B;"), "{line}");
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn parses_thresholds() {
        assert_eq!(parse_bytes("64MB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("12 parsecs").is_err() && parse_bytes("").is_err());
        assert_eq!(parse_duration("36h"), Ok(36 * 3600));
        assert_eq!(parse_duration("2d"), Ok(2 * 86_400));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("3 fortnights").is_err());
        assert_eq!(Space::parse("10%"), Ok(Space::Percent(10.0)));
        assert_eq!(Space::parse("5GB"), Ok(Space::Bytes(5 << 30)));
        assert!(Space::parse("120%").is_err());
        assert_eq!(State::Critical.worst(State::Unknown), State::Critical);
        assert_eq!(State::Warning.worst(State::Unknown), State::Unknown);
    }

    #[test]
    fn the_response_round_trips_with_upstream_style_keys() {
        let mut s = healthy("primary");
        s.failed_verifications.push(FailedVerification { label: "b".into(), message: "m".into() });
        let f = facts(vec![s]);
        let v = serde_json::to_value(&f).unwrap();
        assert!(v["Servers"][0]["WalStreaming"].as_bool().unwrap());
        assert_eq!(v["Servers"][0]["FailedVerifications"][0]["Label"], "b");
        assert_eq!(serde_json::from_value::<CheckResponse>(v).unwrap(), f);
    }
}
