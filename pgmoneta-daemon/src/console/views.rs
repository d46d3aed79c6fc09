//! The console's pages and `/api`: what they show, from the daemon's state.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use pgmoneta_core::BackupLabel;
use pgmoneta_storage::info::{compression_name, encryption_name, BackupInfo, BackupType};
use pgmoneta_storage::layout;
use pgmoneta_storage::repository::Repository;
use pgmoneta_wire::management::check::{evaluate, State, Thresholds};
use serde_json::{json, Map, Value};

use super::chart::{self, bar_chart, line_chart, Unit};
use super::history::History;
use super::page::{badge, card, csrf_field, esc, url, Viewer};
use crate::metrics::{format_value, Family};
use crate::state::{Activity, Shared};

/// The category of a metric: the longest prefix of its name (after `pgmoneta_`) of one or two
/// `_`-separated words that another metric shares, else its first word.
pub fn categories(names: &[&str]) -> Vec<String> {
    let stripped: Vec<&str> = names.iter().map(|n| n.strip_prefix("pgmoneta_").unwrap_or(n)).collect();
    let prefixes = |n: &str| -> Vec<String> {
        let words: Vec<&str> = n.split('_').collect();
        (1..words.len().min(3)).rev().map(|k| words[..k].join("_")).collect()
    };
    let mut shared_by = std::collections::HashMap::<String, BTreeSet<&str>>::new();
    for n in &stripped {
        for p in prefixes(n) {
            shared_by.entry(p).or_default().insert(n);
        }
    }
    stripped
        .iter()
        .map(|n| {
            prefixes(n)
                .into_iter()
                .find(|p| shared_by.get(p).is_some_and(|s| s.len() >= 2))
                .unwrap_or_else(|| n.split('_').next().unwrap_or(n).to_owned())
        })
        .collect()
}

/// A metric's name within its category.
fn leaf<'a>(name: &'a str, category: &str) -> &'a str {
    let n = name.strip_prefix("pgmoneta_").unwrap_or(name);
    n.strip_prefix(category).and_then(|r| r.strip_prefix('_')).unwrap_or(n)
}

/// The server a sample is about (its `name` or `server` label), `None` for the daemon's own.
fn sample_server(labels: &[(String, String)]) -> Option<&str> {
    labels.iter().find(|(k, _)| k == "name" || k == "server").map(|(_, v)| v.as_str())
}

/// `/api`: every metric as JSON, grouped as upstream's console groups them
/// (`{"categories":[{"name":..,"metrics":[{"name":..,"type":"gauge","value":..}]}]}`), each
/// metric also with its `labels`.
pub fn api(families: &[Family], version: &str) -> Value {
    let names: Vec<&str> = families.iter().map(|f| f.name).collect();
    let cats = categories(&names);
    let mut grouped: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
    for (f, c) in families.iter().zip(&cats) {
        let list = grouped.entry(c.clone()).or_default();
        for s in &f.samples {
            let labels: Map<String, Value> = s.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            list.push(json!({"name": leaf(f.name, c), "type": "gauge", "value": s.value, "labels": labels}));
        }
    }
    let categories: Vec<Value> =
        grouped.into_iter().map(|(c, metrics)| json!({"name": c, "metrics": metrics})).collect();
    json!({"status": "Running", "version": version, "categories": categories})
}

/// The metrics explorer's choices (query parameters of `/`).
pub struct Explore {
    /// The category shown (the first when absent or unknown).
    pub category: Option<String>,
    /// `advanced` for the name, type, value and labels columns; else the simple view.
    pub advanced: bool,
    /// Only this server's samples (and the daemon's own).
    pub server: Option<String>,
    /// Text to find in any category (3 characters or more).
    pub search: String,
}

fn state_badge(state: State) -> String {
    badge(&state.word().to_ascii_lowercase(), state.word())
}

fn age(seconds: u64) -> String {
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds / 60),
        7200..=172_799 => format!("{:.1} h", seconds as f64 / 3600.0),
        _ => format!("{:.1} d", seconds as f64 / 86_400.0),
    }
}

fn bytes(b: u64) -> String {
    chart::format(Unit::Bytes, b as f64)
}

/// The servers' summary table of the overview.
fn servers_table(shared: &Shared) -> String {
    let facts = crate::commands::check_facts(shared, None).unwrap_or_default();
    // One reading of all the facts: each server's health is the worst of its own findings.
    let verdict = evaluate(&facts, &Thresholds::default());
    let health = |server: Option<&str>| {
        verdict.findings.iter().filter(|f| f.server.as_deref() == server).fold(State::Ok, |s, f| s.worst(f.state))
    };
    let mut out = String::from(
        "<section><h2>Servers</h2><div class=\"scroll\"><table class=\"grid\"><thead><tr><th>Server</th>\
         <th>Health</th><th>PostgreSQL</th><th>WAL</th><th class=\"num\">Lag</th><th class=\"num\">Backups</th>\
         <th>Newest backup</th></tr></thead><tbody>",
    );
    for s in &facts.servers {
        let state = shared.server(&s.server);
        let pg = state
            .map(|st| {
                let f = st.facts.read();
                match f.version {
                    Some(v) => format!("{}.{} {}", v.major(), f.minor, if f.primary { "primary" } else { "standby" }),
                    None => "unknown".to_owned(),
                }
            })
            .unwrap_or_default();
        let wal = if s.wal_streaming {
            badge("ok", "streaming")
        } else if !s.active {
            badge("unknown", "follower")
        } else {
            badge("critical", "stopped")
        };
        let newest = match (&s.newest_backup, s.newest_backup_age) {
            (Some(l), Some(a)) => format!("{} <span class=\"muted\">({} ago)</span>", esc(l), age(a)),
            _ => "<span class=\"muted\">none</span>".to_owned(),
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"/server/{}\">{}</a></td><td>{}</td><td>{}</td><td>{wal}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{newest}</td></tr>",
            url(&s.server),
            esc(&s.server),
            state_badge(health(Some(&s.server))),
            esc(&pg),
            bytes(s.wal_lag),
            s.valid_backups,
        );
    }
    let _ = write!(
        out,
        "</tbody></table></div><p class=\"muted\">Repository: {} free of {}. {}</p></section>",
        bytes(facts.free_space),
        bytes(facts.total_space),
        state_badge(health(None))
    );
    out
}

/// The overview: the servers, then the metrics explorer.
pub fn index(shared: &Shared, families: &[Family], explore: &Explore) -> String {
    let mut out = servers_table(shared);
    let names: Vec<&str> = families.iter().map(|f| f.name).collect();
    let cats = categories(&names);
    let order: Vec<&str> = cats.iter().map(String::as_str).collect::<BTreeSet<&str>>().into_iter().collect();
    let searching = explore.search.chars().count() >= 3;
    let chosen = explore.category.as_deref().filter(|c| order.contains(c)).or(order.first().copied()).unwrap_or("");
    out.push_str("<section><h2>Metrics</h2><form method=\"get\" action=\"/\" class=\"controls\" data-explore>");
    out.push_str("<label>Category <select name=\"category\">");
    for c in &order {
        let sel = if *c == chosen { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{}\"{sel}>{}</option>", esc(c), esc(c));
    }
    out.push_str("</select></label><label>View <select name=\"view\">");
    let _ = write!(
        out,
        "<option value=\"simple\"{}>Simple</option><option value=\"advanced\"{}>Advanced</option></select></label>",
        if explore.advanced { "" } else { " selected" },
        if explore.advanced { " selected" } else { "" }
    );
    out.push_str("<label>Server <select name=\"server\"><option value=\"\">All</option>");
    for s in &shared.servers {
        let sel = if explore.server.as_deref() == Some(s.name.as_str()) { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{}\"{sel}>{}</option>", esc(&s.name), esc(&s.name));
    }
    let _ = write!(
        out,
        "</select></label><label class=\"grow\">Search <input type=\"search\" name=\"q\" value=\"{}\" \
         placeholder=\"3 characters or more, any category\"></label><button type=\"submit\">Show</button></form>",
        esc(&explore.search)
    );
    let needle = explore.search.to_lowercase();
    let mut rows: Vec<(&str, &str, &crate::metrics::Sample)> = Vec::new();
    for (f, c) in families.iter().zip(&cats) {
        if searching {
            if !f.name.to_lowercase().contains(&needle) && !c.to_lowercase().contains(&needle) {
                let any = f.samples.iter().any(|s| s.labels.iter().any(|(_, v)| v.to_lowercase().contains(&needle)));
                if !any {
                    continue;
                }
            }
        } else if c != chosen {
            continue;
        }
        for s in &f.samples {
            if let (Some(want), Some(have)) = (explore.server.as_deref(), sample_server(&s.labels)) {
                if want != have {
                    continue;
                }
            }
            if searching
                && !f.name.to_lowercase().contains(&needle)
                && !c.to_lowercase().contains(&needle)
                && !s.labels.iter().any(|(_, v)| v.to_lowercase().contains(&needle))
            {
                continue;
            }
            rows.push((f.name, c, s));
        }
    }
    let title = if searching { format!("Search: {}", explore.search) } else { chosen.to_owned() };
    let plural = if rows.len() == 1 { "sample" } else { "samples" };
    let _ = write!(out, "<h3>{} <span class=\"muted\">{} {plural}</span></h3>", esc(&title), rows.len());
    out.push_str("<div class=\"scroll\"><table class=\"grid metrics\"><thead><tr>");
    if explore.advanced {
        out.push_str("<th>Name</th><th>Type</th><th class=\"num\">Value</th><th>Labels</th>");
    } else {
        out.push_str("<th>Name</th><th class=\"num\">Value</th>");
    }
    let keys: Vec<String> = if explore.advanced {
        Vec::new()
    } else {
        let mut k: Vec<String> = Vec::new();
        for (_, _, s) in &rows {
            for (name, _) in &s.labels {
                if !k.contains(name) {
                    k.push(name.clone());
                }
            }
        }
        k
    };
    for k in &keys {
        let _ = write!(out, "<th>{}</th>", esc(k));
    }
    out.push_str("</tr></thead><tbody>");
    for (name, c, s) in &rows {
        let server = sample_server(&s.labels).unwrap_or("all");
        let _ = write!(out, "<tr data-server=\"{}\">", esc(server));
        if explore.advanced {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = write!(
                out,
                "<td><code>{}</code></td><td>gauge</td><td class=\"num\">{}</td><td>{}</td>",
                esc(name),
                esc(&format_value(s.value)),
                esc(&labels.join(", "))
            );
        } else {
            let shown = if searching { name.strip_prefix("pgmoneta_").unwrap_or(name) } else { leaf(name, c) };
            let _ = write!(out, "<td>{}</td><td class=\"num\">{}</td>", esc(shown), esc(&format_value(s.value)));
            for k in &keys {
                let _ = write!(out, "<td>{}</td>", esc(s.label(k).unwrap_or("")));
            }
        }
        out.push_str("</tr>");
    }
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"4\" class=\"muted\">Nothing matches.</td></tr>");
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// What a server page may offer: the viewer, when logged in and actions are on.
pub struct Acting<'a> {
    /// The logged-in admin.
    pub viewer: Option<Viewer<'a>>,
    /// `console_actions`.
    pub enabled: bool,
}

fn action_form(
    server: &str,
    action: &str,
    viewer: &Viewer<'_>,
    fields: &[(&str, &str)],
    label: &str,
    class: &str,
) -> String {
    let mut out = format!(
        "<form method=\"post\" action=\"/server/{}/{}\" class=\"inline\">{}",
        url(server),
        esc(action),
        csrf_field(viewer)
    );
    for (k, v) in fields {
        let _ = write!(out, "<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(k), esc(v));
    }
    let _ = write!(out, "<button type=\"submit\" class=\"{}\">{}</button></form>", esc(class), esc(label));
    out
}

/// The WAL archive's extent: first and last segment, count, timelines seen.
fn archive_extent(shared: &Shared, name: &str) -> (Vec<(String, String)>, BTreeSet<u32>) {
    let dir = shared.base_dir().join(layout::wal_dir(name));
    let mut segments: Vec<String> = Vec::new();
    let mut timelines = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.len() >= 24 && n[..24].bytes().all(|b| b.is_ascii_hexdigit()) {
                if let Ok(tli) = u32::from_str_radix(&n[..8], 16) {
                    timelines.insert(tli);
                }
                segments.push(n[..24].to_owned());
            } else if let Some(tli) = n.strip_suffix(".history").and_then(|t| u32::from_str_radix(t, 16).ok()) {
                timelines.insert(tli);
            }
        }
    }
    segments.sort();
    segments.dedup();
    let mut rows = Vec::new();
    match (segments.first(), segments.last()) {
        (Some(a), Some(b)) => {
            rows.push(("Oldest".to_owned(), format!("<code>{}</code>", esc(a))));
            rows.push(("Newest".to_owned(), format!("<code>{}</code>", esc(b))));
            rows.push(("Segments".to_owned(), segments.len().to_string()));
        }
        _ => rows.push(("Segments".to_owned(), "none yet".to_owned())),
    }
    (rows, timelines)
}

/// A server's page.
pub fn server(shared: &Shared, history: &History, name: &str, hours: u32, acting: &Acting<'_>) -> Option<String> {
    let state = shared.server(name)?;
    let facts = crate::commands::check_facts(shared, Some(name)).ok()?;
    let s = facts.servers.first()?.clone();
    let verdict = evaluate(&facts, &Thresholds::default());
    let mut out = String::new();
    let _ = write!(out, "<div class=\"title\"><h1>{}</h1>{}</div>", esc(name), state_badge(verdict.state));
    if !verdict.findings.is_empty() {
        out.push_str("<ul class=\"findings\">");
        for f in &verdict.findings {
            let _ = write!(out, "<li>{} {}</li>", state_badge(f.state), esc(&f.message));
        }
        out.push_str("</ul>");
    }

    // Cards: PostgreSQL, WAL streaming, the archive, the running operation.
    let pg = state.facts.read().clone();
    let progress = state.stream.read().clone();
    let flushed = progress.flushed.load();
    let mut cards = String::from("<div class=\"cards\">");
    cards.push_str(&card(
        "PostgreSQL",
        &[
            ("Version", pg.version.map_or("unknown".to_owned(), |v| format!("{}.{}", v.major(), pg.minor))),
            ("Role", if pg.primary { "primary".to_owned() } else { "standby".to_owned() }),
            ("Reachable", if s.online { badge("ok", "yes") } else { badge("critical", "no") }),
            ("Data checksums", if pg.checksums { "on".to_owned() } else { "off".to_owned() }),
        ],
    ));
    let streaming = if s.offline_mode {
        badge("warning", "offline (mode)")
    } else if s.wal_streaming {
        badge("ok", "streaming")
    } else if !s.active {
        badge("unknown", "follower")
    } else {
        badge("critical", "stopped")
    };
    let mut wal_rows = vec![
        ("Streaming", streaming),
        ("Flushed", format!("<code>{}</code>", esc(&flushed.to_string()))),
        ("Lag", bytes(s.wal_lag)),
    ];
    if let Some(p) = &s.wal_problem {
        wal_rows.push(("Problem", esc(p)));
    }
    cards.push_str(&card("WAL streaming", &wal_rows));
    let (extent, timelines) = archive_extent(shared, name);
    let (backup_bytes, wal_bytes) = shared.repo.usage(name, &shared.base_dir());
    let mut archive_rows: Vec<(&str, String)> = extent.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    archive_rows.push(("Size", bytes(wal_bytes)));
    let tl: Vec<String> = timelines.iter().map(u32::to_string).collect();
    archive_rows.push(("Timelines", if tl.is_empty() { "none".to_owned() } else { tl.join(", ") }));
    cards.push_str(&card("WAL archive", &archive_rows));
    let running = match state.activity() {
        None => "<span class=\"muted\">none</span>".to_owned(),
        Some(Activity::Backup) => {
            let label = state.backup_label.lock().clone().unwrap_or_default();
            match state.backup_progress.lock().as_ref() {
                Some((p, since)) => {
                    let done = p.done.load(Ordering::Relaxed);
                    let total = p.total.load(Ordering::Relaxed).max(done);
                    format!(
                        "backup {} <progress max=\"{total}\" value=\"{done}\"></progress> {} of {} · {}",
                        esc(&label),
                        bytes(done),
                        bytes(total),
                        age(since.elapsed().as_secs())
                    )
                }
                None => format!("backup {}", esc(&label)),
            }
        }
        Some(other) => esc(&format!("{other:?}").to_lowercase()),
    };
    cards.push_str(&card(
        "Repository",
        &[("Backups", format!("{} valid", s.valid_backups)), ("Stored", bytes(backup_bytes)), ("Running", running)],
    ));
    cards.push_str("</div>");
    out.push_str(&cards);

    // Acting: a backup now.
    if let (true, Some(v)) = (acting.enabled, &acting.viewer) {
        out.push_str("<section class=\"actions\"><h2>Act</h2>");
        out.push_str(&action_form(name, "backup", v, &[], "Back up now (full)", "primary"));
        let newest_valid = s.newest_backup.clone();
        if let Some(parent) = newest_valid.filter(|_| pg.version.is_some_and(|v| v.major() >= 14)) {
            out.push_str(&action_form(name, "backup", v, &[("parent", &parent)], "Incremental on the newest", ""));
        }
        out.push_str("</section>");
    }

    // Pictures: WAL lag and archive growth over the last hours.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let offset = crate::clock::utc_offset(now);
    let from = now - i64::from(hours) * 3600;
    let points = history.since(name, from);
    let lag: Vec<(f64, f64)> = points.iter().map(|p| (p.at as f64, p.wal_lag as f64)).collect();
    let size: Vec<(f64, f64)> = points.iter().map(|p| (p.at as f64, p.archive as f64)).collect();
    let _ = write!(out, "<section><div class=\"title\"><h2>The last {hours} hours</h2><span class=\"range\">");
    for h in [1, 6, 24] {
        let cur = if h == hours { " aria-current=\"page\"" } else { "" };
        let _ = write!(out, "<a href=\"/server/{}?hours={h}\"{cur}>{h} h</a>", url(name));
    }
    out.push_str("</span></div><div class=\"charts\">");
    let _ = write!(
        out,
        "<figure>{}<figcaption>WAL lag: bytes the server has written that the archive has not flushed</figcaption></figure>",
        line_chart("WAL lag", Unit::Bytes, &[("lag", lag)], from as f64, now as f64, offset)
    );
    let _ = write!(
        out,
        "<figure>{}<figcaption>WAL archive size</figcaption></figure>",
        line_chart("WAL archive size", Unit::Bytes, &[("size", size)], from as f64, now as f64, offset)
    );
    out.push_str("</div></section>");

    // The backups: charts, then the table.
    let backups: Vec<BackupInfo> =
        shared.repo.catalog(name).map(pgmoneta_storage::catalog::Catalog::into_backups).unwrap_or_default();
    let short = |label: &str| -> String {
        label.parse::<BackupLabel>().map_or(label.to_owned(), |l| {
            let t = l.datetime();
            format!("{:02}-{:02} {:02}:{:02}", t.month, t.day, t.hour, t.minute)
        })
    };
    let kind = |b: &BackupInfo| if b.backup_type == BackupType::Incremental { "incremental" } else { "full" };
    let shown: Vec<&BackupInfo> = backups.iter().rev().take(60).rev().collect();
    let sizes: Vec<(String, f64, &str)> =
        shown.iter().map(|b| (short(&b.label), b.backup_size as f64, kind(b))).collect();
    let durations: Vec<(String, f64, &str)> =
        shown.iter().map(|b| (short(&b.label), b.elapsed.total, kind(b))).collect();
    out.push_str("<section><h2>Backups</h2><div class=\"charts\">");
    let _ = write!(
        out,
        "<figure>{}<figcaption>Stored size per backup (<span class=\"key full\">full</span> \
         <span class=\"key incremental\">incremental</span>)</figcaption></figure>",
        bar_chart("Stored size per backup", Unit::Bytes, &sizes)
    );
    let _ = write!(
        out,
        "<figure>{}<figcaption>Duration per backup</figcaption></figure>",
        bar_chart("Duration per backup", Unit::Seconds, &durations)
    );
    out.push_str("</div>");
    let wal = Repository::wal_between(&backups, if pg.segment_size > 0 { pg.segment_size } else { 16 << 20 });
    let failed: std::collections::HashMap<String, String> =
        state.failed_verifications_among(&backups.iter().map(|b| b.label.as_str()).collect()).into_iter().collect();
    let can_act = acting.enabled && acting.viewer.is_some();
    out.push_str(
        "<div class=\"scroll\"><table class=\"grid backups\"><thead><tr><th>Backup</th><th>Status</th>\
         <th>Type</th><th class=\"num\">Size</th><th class=\"num\">Restore size</th><th class=\"num\">WAL</th>\
         <th>Stored as</th><th class=\"num\">Took</th><th>Comments</th>",
    );
    if can_act {
        out.push_str("<th>Actions</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for (b, wal) in backups.iter().zip(&wal).rev() {
        let mut valid = match (b.valid, failed.get(&b.label)) {
            (true, None) => badge("ok", "valid"),
            (true, Some(why)) => format!("<span title=\"{}\">{}</span>", esc(why), badge("critical", "damaged")),
            (false, _) => badge("critical", "invalid"),
        };
        if b.keep {
            valid.push(' ');
            valid.push_str(&badge("unknown", "kept"));
        }
        let stored = match (compression_name(i64::from(b.compression)), encryption_name(i64::from(b.encryption))) {
            (c, "none") => c,
            (c, e) => format!("{c} · {e}"),
        };
        let kind = if b.backup_type == BackupType::Incremental {
            format!("incremental of <code>{}</code>", esc(&b.parent))
        } else {
            "full".to_owned()
        };
        let _ = write!(
            out,
            "<tr id=\"b{label}\"><td><code>{label}</code></td><td>{valid}</td><td>{kind}</td>\
             <td class=\"num\">{size}</td><td class=\"num\">{restore}</td><td class=\"num\">{wal}</td><td>{stored}</td>\
             <td class=\"num\">{took}</td><td>{comments}</td>",
            label = esc(&b.label),
            stored = esc(&stored),
            size = bytes(b.backup_size),
            restore = bytes(b.restore_size),
            wal = bytes(*wal),
            took = esc(&chart::format(Unit::Seconds, b.elapsed.total)),
            comments = esc(&b.comments.replace(',', ", ").replace('|', ": ")),
        );
        if let (true, Some(v)) = (can_act, &acting.viewer) {
            out.push_str("<td class=\"acts\">");
            out.push_str(&action_form(name, "verify", v, &[("backup", &b.label)], "Verify", "small"));
            if b.keep {
                out.push_str(&action_form(name, "expunge", v, &[("backup", &b.label)], "Expunge", "small"));
            } else {
                out.push_str(&action_form(name, "retain", v, &[("backup", &b.label)], "Retain", "small"));
            }
            let _ = write!(
                out,
                "<details><summary>More</summary><form method=\"post\" action=\"/server/{srv}/annotate\" \
                 class=\"stack\">{csrf}<input type=\"hidden\" name=\"backup\" value=\"{label}\">\
                 <label>Action <select name=\"action\"><option value=\"add\">add</option>\
                 <option value=\"update\">update</option><option value=\"remove\">remove</option></select></label>\
                 <label>Key <input name=\"key\" required maxlength=\"128\"></label>\
                 <label>Comment <input name=\"comment\" maxlength=\"1024\"></label>\
                 <button type=\"submit\" class=\"small\">Annotate</button></form>\
                 <form method=\"post\" action=\"/server/{srv}/delete\" class=\"stack\" data-confirm=\"Delete backup {label}?\">\
                 {csrf}<input type=\"hidden\" name=\"backup\" value=\"{label}\">\
                 <label class=\"check\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> I mean it</label>\
                 <button type=\"submit\" class=\"small danger\">Delete</button></form></details></td>",
                srv = url(name),
                csrf = csrf_field(v),
                label = esc(&b.label),
            );
        }
        out.push_str("</tr>");
    }
    if backups.is_empty() {
        out.push_str("<tr><td colspan=\"10\" class=\"muted\">No backups yet.</td></tr>");
    }
    out.push_str("</tbody></table></div></section>");
    Some(out)
}

/// The login page.
pub fn login(next: &str, error: Option<&str>, tls: bool) -> String {
    let mut out = String::from("<section class=\"login card\"><h1>Log in</h1>");
    out.push_str(
        "<p class=\"muted\">As an admin of <code>pgmoneta_admins.conf</code>, the users of remote management.</p>",
    );
    if let Some(e) = error {
        let _ = write!(out, "<p class=\"notice error\" role=\"alert\">{}</p>", esc(e));
    }
    if !tls {
        out.push_str(
            "<p class=\"notice warn\">This connection is not encrypted: the password crosses the network in clear.</p>",
        );
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/login\" class=\"stack\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>User <input name=\"user\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" class=\"primary\">Log in</button></form></section>",
        esc(next)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Sample;

    #[test]
    fn groups_metrics_by_shared_prefix() {
        let names = [
            "pgmoneta_state",
            "pgmoneta_backup_valid",
            "pgmoneta_backup_size",
            "pgmoneta_backup_start_timeline",
            "pgmoneta_backup_start_walpos",
            "pgmoneta_backup_compression_zstd_mbs",
            "pgmoneta_backup_compression_zstd_elapsed_time",
            "pgmoneta_wal_streaming",
            "pgmoneta_wal_shipping_used_space",
            "pgmoneta_wal_shipping_free_space",
            "pgmoneta_logging_info",
            "pgmoneta_logging_warn",
        ];
        assert_eq!(
            categories(&names),
            [
                "state",
                "backup",
                "backup",
                "backup_start",
                "backup_start",
                "backup_compression",
                "backup_compression",
                "wal",
                "wal_shipping",
                "wal_shipping",
                "logging",
                "logging"
            ]
        );
        assert_eq!(leaf("pgmoneta_backup_start_walpos", "backup_start"), "walpos");
        assert_eq!(leaf("pgmoneta_state", "state"), "state");
    }

    #[test]
    fn the_api_is_upstreams_shape_with_labels() {
        let families = vec![
            Family { name: "pgmoneta_state", help: "s".into(), samples: vec![Sample { labels: vec![], value: 1.0 }] },
            Family {
                name: "pgmoneta_backup_valid",
                help: "v".into(),
                samples: vec![Sample { labels: vec![("name".into(), "primary".into())], value: 2.0 }],
            },
            Family {
                name: "pgmoneta_backup_size",
                help: "v".into(),
                samples: vec![Sample { labels: vec![("name".into(), "primary".into())], value: 1.5 }],
            },
        ];
        let v = api(&families, "0.1.0");
        assert_eq!(
            v["categories"][1],
            json!({"name": "state", "metrics": [{"name": "state", "type": "gauge", "value": 1.0, "labels": {}}]})
        );
        assert_eq!(v["categories"][0]["name"], "backup");
        assert_eq!(v["categories"][0]["metrics"][1]["name"], "size");
        assert_eq!(v["categories"][0]["metrics"][1]["labels"]["name"], "primary");
    }
}
