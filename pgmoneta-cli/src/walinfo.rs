//! `pgmoneta-walinfo`: WAL records, described, from a segment, a directory, a tar archive, and
//! compressed or encrypted files as the repository stores them.
//!
//! Formats: `raw` (one line per record, `|`-separated columns), `json`, and `--waldump`
//! (exactly `pg_waldump`'s lines, for diffing the two tools); `-S` prints per resource manager
//! statistics instead of records.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use pgmoneta_core::{Lsn, WalFileKind, WalSegmentSize};
use pgmoneta_crypto::{Cipher, MasterKey, MasterKeyFile};
use pgmoneta_storage::stored::{decode_stored, stored_form};
use pgmoneta_storage::tar::TarParser;
use pgmoneta_wire::wal::{
    desc, map_closed_file, waldump_line_into, DecodedRecord, WalDecoder, FORK_NAMES, XLOG_BLCKSZ,
};
use serde_json::{json, Value};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `|`-separated columns.
    Raw,
    /// A JSON document.
    Json,
    /// `pg_waldump`'s lines.
    Waldump,
}

/// What to show.
#[derive(Clone, Debug)]
pub struct Options {
    /// A segment, a directory, or a tar archive (any of them compressed and/or encrypted).
    pub input: PathBuf,
    /// The format.
    pub format: Format,
    /// Write here instead of standard output.
    pub output: Option<PathBuf>,
    /// Decode and check, print nothing per record.
    pub quiet: bool,
    /// Colours: `None` on a terminal only.
    pub color: Option<bool>,
    /// Only these resource managers (exact names).
    pub rmgrs: Vec<String>,
    /// Only records at or after this position.
    pub start: Option<Lsn>,
    /// Only records before this position.
    pub end: Option<Lsn>,
    /// Only these transactions.
    pub xids: Vec<u32>,
    /// At most this many records.
    pub limit: Option<usize>,
    /// Statistics per resource manager instead of records.
    pub summary: bool,
    /// Names for tablespace, database and relation OIDs: `{"tablespaces": [{"name": "oid"}],
    /// "databases": [...], "relations": [...]}`.
    pub mapping: Option<PathBuf>,
    /// The master key file for encrypted input (default `~/.pgmoneta/master.key`).
    pub master_key: Option<PathBuf>,
    /// Look names up on the servers of `config` (`pgmoneta_walinfo.conf`), with their users'
    /// passwords from this users vault; a mapping file wins over what the servers say.
    pub users: Option<PathBuf>,
    /// `pgmoneta_walinfo.conf`: server sections with `host`, `port` and `user`.
    pub config: Option<PathBuf>,
    /// Only records touching these tablespaces (names with translation, else OIDs).
    pub tablespaces: Vec<String>,
    /// Only records touching these databases.
    pub databases: Vec<String>,
    /// Only records touching these relations.
    pub relations: Vec<String>,
    /// Only records touching a tablespace, database or relation of these names.
    pub names: Vec<String>,
    /// Progress on standard error: each file read, and the records shown.
    pub verbose: bool,
    /// Browse the records on the terminal instead of printing them.
    pub interactive: bool,
}

/// One WAL file's contents, with where it starts.
pub(crate) struct Segment {
    pub name: String,
    pub timeline: u32,
    pub start: Lsn,
    pub bytes: Bytes,
}

fn segment_size_of(bytes: &[u8], name: &str) -> Result<WalSegmentSize> {
    if bytes.len() < 40 {
        bail!("{name}: too short for a WAL segment ({} bytes)", bytes.len());
    }
    let size = u32::from_le_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]);
    WalSegmentSize::new(u64::from(size))
        .map_err(|e| anyhow!("{name}: the first page does not give a segment size: {e}"))
}

/// Names of WAL files we read (segments and partial segments), with the plain name.
pub(crate) fn wal_name(name: &str) -> Option<String> {
    let (plain, _, _) = stored_form(name);
    let plain = plain.strip_suffix(".partial").unwrap_or(plain);
    (plain.len() == 24 && plain.bytes().all(|b| b.is_ascii_hexdigit())).then(|| plain.to_owned())
}

pub(crate) struct Reader {
    pub key: Option<MasterKey>,
    pub key_file: Option<PathBuf>,
}

impl Reader {
    fn key(&mut self) -> Result<&MasterKey> {
        if self.key.is_none() {
            let file = match &self.key_file {
                Some(p) => MasterKeyFile::new(p),
                None => MasterKeyFile::default_location()?,
            };
            self.key = Some(file.load().with_context(|| format!("loading the master key {}", file.path().display()))?);
        }
        Ok(self.key.as_ref().expect("loaded above"))
    }

    /// The plain bytes of a file as stored: decrypted and decompressed by its suffixes.
    fn plain(&mut self, name: &str, raw: &[u8]) -> Result<Vec<u8>> {
        let (_, algorithm, encrypted) = stored_form(name);
        if !encrypted && algorithm == pgmoneta_compress::Algorithm::None {
            return Ok(raw.to_vec());
        }
        let key = if encrypted { Some(self.key()?) } else { None };
        let mut out = Vec::new();
        let mut input = raw;
        decode_stored(&mut input, name, Some(Cipher::Aes256Gcm), key, &mut out, Path::new(name))?;
        Ok(out)
    }

    fn segments_of_tar(&mut self, name: &str, raw: &[u8], out: &mut Vec<(String, Bytes)>) -> Result<()> {
        let plain = self.plain(name, raw)?;
        let members = TarParser::new().parse_all(&plain).map_err(|e| anyhow!("{name}: {e}"))?;
        for (entry, data) in members {
            let member = entry.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if wal_name(&member).is_some() {
                let bytes = self.plain(&member, &data)?;
                out.push((member, bytes.into()));
            }
        }
        Ok(())
    }

    pub(crate) fn collect(&mut self, path: &Path) -> Result<Vec<(String, Bytes)>> {
        let mut files = Vec::new();
        let add = |me: &mut Reader, p: &Path, files: &mut Vec<(String, Bytes)>| -> Result<()> {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let (plain, _, _) = stored_form(&name);
            if plain.ends_with(".tar") || plain.ends_with(".tgz") {
                let raw = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                return me.segments_of_tar(&name, &raw, files);
            }
            if wal_name(&name).is_some() {
                let (_, algorithm, encrypted) = stored_form(&name);
                let closed = !name.contains(".partial");
                if closed && !encrypted && algorithm == pgmoneta_compress::Algorithm::None {
                    // A plain, complete segment: mapped, not copied.
                    let bytes = map_closed_file(p).with_context(|| format!("reading {}", p.display()))?;
                    files.push((name.clone(), bytes));
                } else {
                    let raw = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                    files.push((
                        name.clone(),
                        me.plain(&name, &raw).with_context(|| format!("{}", p.display()))?.into(),
                    ));
                }
            }
            Ok(())
        };
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            for p in entries {
                add(self, &p, &mut files)?;
            }
        } else {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let (plain, _, _) = stored_form(&name);
            if wal_name(&name).is_none() && !(plain.ends_with(".tar") || plain.ends_with(".tgz")) {
                bail!("{}: not a WAL segment, directory or tar archive", path.display());
            }
            add(self, path, &mut files)?;
        }
        if files.is_empty() {
            bail!("{}: no WAL files found", path.display());
        }
        Ok(files)
    }
}

pub(crate) fn segments(files: Vec<(String, Bytes)>) -> Result<Vec<(Segment, WalSegmentSize)>> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let plain = wal_name(&name).unwrap_or_default();
        let size = segment_size_of(&bytes, &name)?;
        let kind = WalFileKind::parse(&plain, size).map_err(|e| anyhow!("{name}: {e}"))?;
        let (WalFileKind::Segment(seg) | WalFileKind::Partial(seg)) = kind else { continue };
        out.push((Segment { name, timeline: seg.timeline.0, start: seg.start_lsn(size), bytes }, size));
    }
    out.sort_by_key(|(s, _)| (s.timeline, s.start));
    Ok(out)
}

/// Per resource manager: records, record bytes (without images), image bytes.
#[derive(Default)]
struct Stats {
    by_rmgr: BTreeMap<u8, (u64, u64, u64)>,
}

impl Stats {
    fn add(&mut self, r: &DecodedRecord) {
        let e = self.by_rmgr.entry(r.rmid).or_default();
        e.0 += 1;
        e.1 += u64::from(r.total_len - r.fpi_len());
        e.2 += u64::from(r.fpi_len());
    }
}

struct Names {
    tablespaces: HashMap<u32, String>,
    databases: HashMap<u32, String>,
    relations: HashMap<u32, String>,
}

impl Names {
    fn load(path: &Path) -> Result<Names> {
        let v: Value =
            serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
                .with_context(|| format!("{}: not JSON", path.display()))?;
        let table = |key: &str| -> HashMap<u32, String> {
            let mut m = HashMap::new();
            for item in v.get(key).and_then(Value::as_array).into_iter().flatten() {
                for (name, oid) in item.as_object().into_iter().flatten() {
                    let oid = oid.as_u64().or_else(|| oid.as_str().and_then(|s| s.parse().ok()));
                    if let Some(oid) = oid {
                        m.insert(oid as u32, name.clone());
                    }
                }
            }
            m
        };
        Ok(Names { tablespaces: table("tablespaces"), databases: table("databases"), relations: table("relations") })
    }

    /// `other`'s names replace these where both have one.
    fn overlay(&mut self, other: Names) {
        self.tablespaces.extend(other.tablespaces);
        self.databases.extend(other.databases);
        self.relations.extend(other.relations);
    }

    /// Names read from the servers of a `pgmoneta_walinfo.conf`: tablespaces and databases, and
    /// every relation's file number in every database that accepts connections.
    fn from_servers(config: &Path, users: &Path, reader: &mut Reader) -> Result<Names> {
        let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
        let key = reader.key()?;
        let vault = pgmoneta_crypto::Vault::load(users, pgmoneta_crypto::VaultKind::Users)?;
        let mut names = Names { tablespaces: HashMap::new(), databases: HashMap::new(), relations: HashMap::new() };
        for (section, keys) in ini_sections(&text) {
            if section == "pgmoneta-walinfo" || section == "pgmoneta_walinfo" {
                continue;
            }
            let get = |k: &str| keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let (Some(host), Some(port), Some(user)) = (get("host"), get("port"), get("user")) else {
                bail!("{}: [{section}] needs host, port and user", config.display());
            };
            let port: u16 = port.parse().map_err(|_| anyhow!("{}: [{section}] port {port:?}", config.display()))?;
            let password =
                vault.password(key, &user)?.ok_or_else(|| anyhow!("{}: no password for {user:?}", users.display()))?;
            let connect = |db: &str| {
                let opts = pgmoneta_wire::ConnectOptions::new(&host, port, &user).password(&password).database(db);
                pgmoneta_wire::PgConnection::connect(&opts).map_err(|e| anyhow!("[{section}] {host}:{port}/{db}: {e}"))
            };
            let mut conn = connect("postgres")?;
            let pairs = |conn: &mut pgmoneta_wire::PgConnection, sql: &str| -> Result<Vec<(String, u32)>> {
                Ok(conn
                    .query(sql)?
                    .iter()
                    .filter_map(|r| Some((r.get(0).ok()??.to_owned(), r.get(1).ok()??.parse().ok()?)))
                    .collect())
            };
            for (n, oid) in pairs(&mut conn, "SELECT spcname, oid FROM pg_tablespace")? {
                names.tablespaces.insert(oid, n);
            }
            let databases = pairs(&mut conn, "SELECT datname, oid FROM pg_database WHERE datallowconn")?;
            let _ = conn.close();
            for (db, oid) in databases {
                names.databases.insert(oid, db.clone());
                let Ok(mut c) = connect(&db) else { continue };
                let sql = "SELECT relname, pg_relation_filenode(oid) FROM pg_class WHERE pg_relation_filenode(oid) IS NOT NULL";
                for (rel, node) in pairs(&mut c, sql).unwrap_or_default() {
                    names.relations.insert(node, rel);
                }
                let _ = c.close();
            }
        }
        Ok(names)
    }

    fn rel(&self, (spc, db, rel): (u32, u32, u32)) -> String {
        let pick = |m: &HashMap<u32, String>, oid: u32| m.get(&oid).cloned().unwrap_or_else(|| oid.to_string());
        format!("{}/{}/{}", pick(&self.tablespaces, spc), pick(&self.databases, db), pick(&self.relations, rel))
    }
}

/// The sections of an INI file and their `key = value` lines (comments `#` and `;`).
fn ini_sections(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.trim().to_owned(), Vec::new()));
        } else if let (Some((k, v)), Some(section)) = (line.split_once('='), out.last_mut()) {
            section.1.push((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()));
        }
    }
    out
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const BLUE: &str = "\x1b[34m";
const MAGENTA: &str = "\x1b[35m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// The `-RT/-RD/-RR/-R` filters: a record passes when one of its block references names a
/// listed tablespace, database or relation (by name with translation, by OID always). Lists
/// are OR-ed within a filter and the filters AND-ed.
fn name_filter_matches(opts: &Options, r: &DecodedRecord, names: Option<&Names>) -> bool {
    let any = !opts.tablespaces.is_empty()
        || !opts.databases.is_empty()
        || !opts.relations.is_empty()
        || !opts.names.is_empty();
    if !any {
        return true;
    }
    let name = |m: Option<&HashMap<u32, String>>, oid: u32| {
        m.and_then(|m| m.get(&oid).cloned()).unwrap_or_else(|| oid.to_string())
    };
    let listed = |list: &[String], value: &str, oid: u32| {
        list.is_empty() || list.iter().any(|w| w == value || *w == oid.to_string())
    };
    r.blocks.iter().any(|b| {
        let (spc, db, rel) = b.locator;
        let (ts, dn, rn) = (
            name(names.map(|n| &n.tablespaces), spc),
            name(names.map(|n| &n.databases), db),
            name(names.map(|n| &n.relations), rel),
        );
        listed(&opts.tablespaces, &ts, spc)
            && listed(&opts.databases, &dn, db)
            && listed(&opts.relations, &rn, rel)
            && (opts.names.is_empty()
                || opts
                    .names
                    .iter()
                    .any(|w| *w == ts || *w == dn || *w == rn || [spc, db, rel].iter().any(|o| *w == o.to_string())))
    })
}

fn block_refs(r: &DecodedRecord, names: Option<&Names>) -> String {
    let mut s = String::new();
    for b in &r.blocks {
        let rel = match names {
            Some(n) => n.rel(b.locator),
            None => format!("{}/{}/{}", b.locator.0, b.locator.1, b.locator.2),
        };
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(
            s,
            "blkref #{}: rel {rel} fork {} blk {}",
            b.id,
            FORK_NAMES.get(usize::from(b.fork)).unwrap_or(&"?"),
            b.block
        );
        if let Some(img) = b.image {
            let _ = write!(
                s,
                " (FPW{}); hole: offset: {}, length: {}, compression saved: {}, method: {}",
                if img.apply { "" } else { " for WAL verification" },
                img.hole_offset,
                img.hole_length,
                if img.compression.is_some() {
                    8192u32.saturating_sub(u32::from(img.length) + u32::from(img.hole_length))
                } else {
                    0
                },
                img.compression.unwrap_or("none")
            );
        }
    }
    s
}

fn description(r: &DecodedRecord) -> String {
    let mut s = String::new();
    desc::name_and_describe(r, &mut s);
    s.trim_end().to_owned()
}

/// Runs walinfo; returns the number of records shown.
///
/// # Errors
/// Unreadable or damaged input (with the file and position), a wrong master key, an output
/// that cannot be written.
pub fn run(opts: &Options) -> Result<usize> {
    let mut reader = Reader { key: None, key_file: opts.master_key.clone() };
    let files = reader.collect(&opts.input)?;
    if opts.verbose {
        for (name, bytes) in &files {
            eprintln!("pgmoneta-walinfo: {name}: {} bytes", bytes.len());
        }
    }
    let segments = segments(files)?;
    let mut names = match (&opts.users, &opts.config) {
        (Some(users), Some(config)) => Some(Names::from_servers(config, users, &mut reader)?),
        (Some(_), None) => bail!("-u needs -c pgmoneta_walinfo.conf naming the servers to ask"),
        _ => None,
    };
    if let Some(file) = opts.mapping.as_deref() {
        let mapped = Names::load(file)?;
        match &mut names {
            Some(n) => n.overlay(mapped),
            None => names = Some(mapped),
        }
    }
    let mut out: Box<dyn Write> = match &opts.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let color =
        opts.color.unwrap_or(opts.output.is_none() && std::io::stdout().is_terminal()) && opts.format == Format::Raw;
    let paint = |c: &str, text: &str| if color { format!("{c}{text}{RESET}") } else { text.to_owned() };
    let mut stats = Stats::default();
    let mut shown = 0usize;
    let mut json_started = false;
    let mut line = String::with_capacity(256);
    let mut decoder: Option<(WalDecoder, Lsn, u32)> = None;
    let mut browse: Vec<crate::walview::Entry> = Vec::new();
    'files: for (seg, size) in &segments {
        let seg_end = Lsn(seg.start.0 + seg.bytes.len() as u64);
        // With -s, what lies before the start is not decoded at all, as pg_waldump does: whole
        // segments are passed over, and the segment holding the start is entered at the page
        // holding it (a record continued from the page before is skipped there).
        if opts.start.is_some_and(|s| seg_end <= s) {
            continue;
        }
        let from = match opts.start {
            Some(s) if s > seg.start => Lsn(s.0 - s.0 % XLOG_BLCKSZ),
            _ => seg.start,
        };
        let at = (from.0 - seg.start.0) as usize;
        // A zeroed page (the padding after a WAL switch, the unwritten end of a segment) holds
        // no record, and neither does the rest of its segment.
        if from != seg.start && seg.bytes[at..(at + XLOG_BLCKSZ as usize).min(seg.bytes.len())].iter().all(|&b| b == 0)
        {
            continue;
        }
        // A new decoder at a gap or a timeline change.
        let contiguous = decoder.as_ref().is_some_and(|(_, next, tli)| *next == from && *tli == seg.timeline);
        if !contiguous {
            decoder = Some((WalDecoder::new(from, None, *size), from, seg.timeline));
        }
        let (d, next, _) = decoder.as_mut().expect("set above");
        d.feed_bytes(seg.bytes.slice(at..));
        *next = seg_end;
        loop {
            let record = d.next_record().with_context(|| seg.name.clone())?;
            let Some(r) = record else { break };
            if opts.end.is_some_and(|e| r.lsn >= e) {
                break 'files;
            }
            if opts.start.is_some_and(|s| r.lsn < s) {
                continue;
            }
            // XLOG NOOP records are what walfilter leaves of removed records.
            if r.rmid == desc::rmid::XLOG && r.record_info() == 0x20 && opts.format != Format::Waldump {
                continue;
            }
            let rmgr = desc::rmgr_name(r.rmid);
            if !opts.rmgrs.is_empty() && !opts.rmgrs.iter().any(|n| n == rmgr.as_ref()) {
                continue;
            }
            if !opts.xids.is_empty() && !opts.xids.contains(&r.xid) {
                continue;
            }
            if !name_filter_matches(opts, &r, names.as_ref()) {
                continue;
            }
            if opts.limit.is_some_and(|l| shown >= l) {
                break 'files;
            }
            shown += 1;
            stats.add(&r);
            if opts.interactive {
                let refs = block_refs(&r, names.as_ref());
                let time = desc::record_time(&r).unwrap_or_default();
                let text = description(&r);
                let line = format!(
                    "{rmgr:<17} | {:>11} | {:>6} | {:>10} | {text} {refs}",
                    r.lsn.to_string(),
                    r.total_len,
                    r.xid
                );
                let detail = format!(
                    "{text}{}{}",
                    if time.is_empty() { String::new() } else { format!("; time {time}") },
                    if refs.is_empty() { String::new() } else { format!("; {refs}") }
                );
                browse.push(crate::walview::Entry { line, record: r, detail });
                continue;
            }
            if opts.quiet || opts.summary {
                continue;
            }
            line.clear();
            match opts.format {
                Format::Waldump => waldump_line_into(&r, &mut line),
                Format::Raw => {
                    let time = desc::record_time(&r).unwrap_or_default();
                    let refs = block_refs(&r, names.as_ref());
                    let _ = write!(
                        line,
                        "{} | {} | {} | {} | {} | {} | {time:<30} | {}{}{}",
                        paint(RED, &format!("{rmgr:<17}")),
                        paint(MAGENTA, &format!("{:>11}", r.lsn.to_string())),
                        paint(MAGENTA, &format!("{:>11}", r.end.to_string())),
                        paint(BLUE, &format!("{:>6}", r.total_len - r.fpi_len())),
                        paint(YELLOW, &format!("{:>6}", r.total_len)),
                        paint(CYAN, &format!("{:>10}", r.xid)),
                        paint(GREEN, &description(&r)),
                        if refs.is_empty() { "" } else { " " },
                        refs
                    );
                }
                Format::Json => {
                    let mut rec = json!({
                        "ResourceManager": rmgr,
                        "ResourceManagerId": r.rmid,
                        "RecordLength": r.total_len - r.fpi_len(),
                        "TotalLength": r.total_len,
                        "Xid": r.xid,
                        "Info": r.info,
                        "Crc": r.crc,
                        "StartLSN": r.lsn.0,
                        "EndLSN": r.end.0,
                        "Data": description(&r),
                        "Description": block_refs(&r, names.as_ref()),
                        "Partial": false,
                    });
                    if let Some(t) = desc::record_time(&r) {
                        rec["Timestamp"] = json!(t);
                    }
                    line.push_str(if json_started { ",\n" } else { "{ \"WAL\": [\n" });
                    json_started = true;
                    line.push_str(&json!({ "Record": rec }).to_string());
                }
            }
            if opts.format != Format::Json {
                line.push('\n');
            }
            out.write_all(line.as_bytes())?;
        }
    }
    if opts.interactive {
        drop(out);
        crate::walview::browse(&browse)?;
        return Ok(shown);
    }
    if opts.summary {
        write_summary(&mut out, &stats, opts.format == Format::Json)?;
    } else if opts.format == Format::Json && !opts.quiet {
        out.write_all(if json_started { b"\n]}\n" } else { b"{ \"WAL\": [\n]}\n" })?;
    }
    out.flush()?;
    if opts.verbose {
        eprintln!("pgmoneta-walinfo: {shown} records");
    }
    Ok(shown)
}

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

fn write_summary(out: &mut dyn Write, stats: &Stats, json: bool) -> Result<()> {
    let (count, rec, fpi) = stats.by_rmgr.values().fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
    let total = rec + fpi;
    if json {
        let rows: Vec<Value> = stats
            .by_rmgr
            .iter()
            .map(|(id, (c, r, f))| {
                json!({
                    "resource_manager": desc::rmgr_name(*id),
                    "count": c, "count_percentage": pct(*c, count),
                    "record_size": r, "record_size_percentage": pct(*r, rec),
                    "fpi_size": f, "fpi_size_percentage": pct(*f, fpi),
                    "combined_size": r + f, "combined_size_percentage": pct(r + f, total),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({ "wal_stats": rows }))?)?;
        return Ok(());
    }
    let header = [
        "Resource Manager",
        "Count",
        "Count %",
        "Record Size",
        "Record %",
        "FPI Size",
        "FPI %",
        "Combined Size",
        "Combined %",
    ];
    let mut rows: Vec<Vec<String>> = stats
        .by_rmgr
        .iter()
        .map(|(id, (c, r, f))| {
            vec![
                desc::rmgr_name(*id).into_owned(),
                c.to_string(),
                format!("{:.2}%", pct(*c, count)),
                r.to_string(),
                format!("{:.2}%", pct(*r, rec)),
                f.to_string(),
                format!("{:.2}%", pct(*f, fpi)),
                (r + f).to_string(),
                format!("{:.2}%", pct(r + f, total)),
            ]
        })
        .collect();
    rows.push(vec![
        "Total".into(),
        count.to_string(),
        "100.00%".into(),
        rec.to_string(),
        "100.00%".into(),
        fpi.to_string(),
        "100.00%".into(),
        total.to_string(),
        "100.00%".into(),
    ]);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let render = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(s, "{c:<w$} |", w = widths[i]);
            } else {
                let _ = write!(s, " {c:>w$} |", w = widths[i]);
            }
        }
        s
    };
    let head = render(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    let ruler = "-".repeat(head.len());
    writeln!(out, "{head}\n{ruler}")?;
    let last = rows.len() - 1;
    for (i, r) in rows.iter().enumerate() {
        if i == last {
            writeln!(out, "{ruler}")?;
        }
        writeln!(out, "{}", render(r))?;
    }
    Ok(())
}
