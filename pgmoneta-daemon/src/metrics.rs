//! The Prometheus endpoint: `GET /metrics` in the text exposition format (chunked), `GET /` an
//! HTML overview, 403 for other paths, 400 for other methods; HTTPS when `metrics_cert_file` and
//! `metrics_key_file` are set.
//!
//! Metric names are upstream's; the ones added here (`pgmoneta_wal_lag_bytes`,
//! `pgmoneta_backup_progress_*`, `pgmoneta_wal_flushed_lsn_bytes`,
//! `pgmoneta_verification_failed_backups`) follow the Prometheus naming conventions.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::{Method, StatusCode};

use openssl::ssl::SslAcceptor;
use pgmoneta_core::{TimelineId, WalSegment, WalSegmentSize};
use pgmoneta_storage::catalog::list_backups;
use pgmoneta_storage::info::BackupInfo;
use pgmoneta_wire::management::response::ClusterStatusResponse;

use crate::commands::{dir_size, disk_space, server_usage, SERVER_VERSION};
use crate::http::{Reply, Request};
use crate::state::{Activity, Shared};

/// Collects metric families, keeping each family's samples together (the exposition format
/// requires it) in the order the families first appear.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
    index: std::collections::HashMap<&'static str, usize>,
}

/// One metric family: every metric here is a gauge.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The metric's name.
    pub name: &'static str,
    /// Its help text.
    pub help: String,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// One sample of a family.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Label names and values, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A value as the exposition writes it: integers without a fraction.
pub fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        (value as i64).to_string()
    } else {
        value.to_string()
    }
}

impl Exposition {
    /// Adds one sample of gauge `name`.
    pub fn gauge(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], value: f64) {
        let i = *self.index.entry(name).or_insert_with(|| {
            self.families.push(Family { name, help: help.to_owned(), samples: Vec::new() });
            self.families.len() - 1
        });
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.families[i].samples.push(Sample { labels, value });
    }

    /// The families, in the order they first appeared.
    pub fn families(self) -> Vec<Family> {
        self.families
    }

    /// The text.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for f in self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} gauge", f.name);
            for sample in &f.samples {
                out.push_str(f.name);
                if !sample.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in sample.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", format_value(sample.value));
            }
        }
        out
    }
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

fn mbs(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (bytes as f64 / (1024.0 * 1024.0) / seconds * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// Renders every metric in the text exposition format.
pub fn render(shared: &Shared) -> String {
    collect(shared).finish()
}

/// Every metric.
pub fn collect(shared: &Shared) -> Exposition {
    let config = shared.config();
    let m = &config.main;
    let mut e = Exposition::default();
    e.gauge("pgmoneta_state", "The state of pgmoneta", &[], 1.0);
    e.gauge("pgmoneta_version", "The version of pgmoneta", &[("version", SERVER_VERSION)], 1.0);
    e.gauge("pgmoneta_fips", "FIPS mode of pgmoneta's OpenSSL", &[], 0.0);
    let c = &shared.log_counters;
    for (metric, help, counter) in [
        ("pgmoneta_logging_info", "The number of INFO logging statements", &c.info),
        ("pgmoneta_logging_warn", "The number of WARN logging statements", &c.warn),
        ("pgmoneta_logging_error", "The number of ERROR logging statements", &c.error),
        ("pgmoneta_logging_fatal", "The number of FATAL logging statements", &c.fatal),
    ] {
        e.gauge(metric, help, &[], counter.load(Ordering::Relaxed) as f64);
    }
    let r = m.retention;
    let part = |v: Option<u32>| v.map_or(-1.0, f64::from);
    e.gauge("pgmoneta_retention_days", "The retention days of pgmoneta", &[], part(r.days));
    e.gauge("pgmoneta_retention_weeks", "The retention weeks of pgmoneta", &[], part(r.weeks));
    e.gauge("pgmoneta_retention_months", "The retention months of pgmoneta", &[], part(r.months));
    e.gauge("pgmoneta_retention_years", "The retention years of pgmoneta", &[], part(r.years));
    e.gauge("pgmoneta_compression", "The compression used", &[], f64::from(m.compression.code()));
    let base = shared.base_dir();
    let (free, total) = disk_space(&base);
    // Each server's backups (from their backup.info) and WAL (one listing).
    let sizes: Vec<(u64, u64)> = config.servers.iter().map(|s| server_usage(shared, &s.name)).collect();
    let used: u64 = sizes.iter().map(|(b, w)| b + w).sum();
    e.gauge("pgmoneta_used_space", "The disk space used for pgmoneta", &[], used as f64);
    e.gauge("pgmoneta_free_space", "The free disk space for pgmoneta", &[], free as f64);
    e.gauge("pgmoneta_total_space", "The total disk space for pgmoneta", &[], total as f64);

    for (s, &(backup_total, wal_total)) in config.servers.iter().zip(&sizes) {
        let name = s.name.as_str();
        let l = [("name", name)];
        let rs = config.effective_retention(s);
        for (p, v) in [("days", rs.days), ("weeks", rs.weeks), ("months", rs.months), ("years", rs.years)] {
            e.gauge(
                "pgmoneta_retention_server",
                "The retention of a server",
                &[("name", name), ("parameter", p)],
                part(v),
            );
        }
        let Some(state) = shared.server(name) else { continue };
        let facts = state.facts.read().clone();
        let ws = s.wal_shipping.as_deref();
        e.gauge("pgmoneta_wal_shipping", "The WAL shipping directory is configured", &l, b(ws.is_some()));
        let (wf, wt) = ws.map_or((0, 0), |d| disk_space(std::path::Path::new(d)));
        let wu = ws.map_or(0, |d| dir_size(&std::path::Path::new(d).join(name)));
        e.gauge("pgmoneta_wal_shipping_used_space", "Disk space used by WAL shipping", &l, wu as f64);
        e.gauge("pgmoneta_wal_shipping_free_space", "Free disk space for WAL shipping", &l, wf as f64);
        e.gauge("pgmoneta_wal_shipping_total_space", "Total disk space for WAL shipping", &l, wt as f64);
        let workspace = s.workspace.clone().or_else(|| m.workspace.clone());
        e.gauge("pgmoneta_workspace", "The workspace directory is configured", &l, b(workspace.is_some()));
        let (pf, pt) = workspace.as_deref().map_or((0, 0), |d| disk_space(std::path::Path::new(d)));
        e.gauge("pgmoneta_workspace_free_space", "Free disk space for the workspace", &l, pf as f64);
        e.gauge("pgmoneta_workspace_total_space", "Total disk space for the workspace", &l, pt as f64);
        let hs = s.hot_standby.0.first();
        e.gauge("pgmoneta_hot_standby", "A hot standby is configured", &l, b(hs.is_some()));
        let (hf, ht) = hs.map_or((0, 0), |d| disk_space(std::path::Path::new(d)));
        e.gauge("pgmoneta_hot_standby_free_space", "Free disk space for the hot standby", &l, hf as f64);
        e.gauge("pgmoneta_hot_standby_total_space", "Total disk space for the hot standby", &l, ht as f64);
        let progress = state.stream.read().clone();
        let tli = progress.timeline.load(Ordering::Relaxed);
        e.gauge("pgmoneta_server_timeline", "The timeline of the server", &l, f64::from(tli));
        e.gauge("pgmoneta_server_workers", "The number of workers", &l, shared.workers(s) as f64);
        e.gauge("pgmoneta_server_online", "The server is online", &l, b(state.online()));
        e.gauge("pgmoneta_server_primary", "The server is a primary", &l, b(facts.primary));
        e.gauge("pgmoneta_server_valid", "The server passed its checks", &l, b(facts.valid));
        let streaming = state.wal_streaming.load(Ordering::SeqCst);
        e.gauge("pgmoneta_wal_streaming", "WAL is streaming from the server", &l, b(streaming));
        let waiting = shared.repo.pending_uploads(&s.name).len();
        e.gauge(
            "pgmoneta_remote_pending_uploads",
            "Backups valid locally whose upload to the remote repositories waits for a retry",
            &l,
            waiting as f64,
        );
        let problem = state.wal_problem();
        e.gauge(
            "pgmoneta_wal_problem",
            "WAL archiving is failing (the reason is in status and the log)",
            &l,
            b(problem.is_some()),
        );
        e.gauge(
            "pgmoneta_wal_out_of_space",
            "WAL archiving is failing for lack of disk space",
            &l,
            b(problem.is_some() && state.wal_out_of_space.load(Ordering::SeqCst)),
        );
        for (metric, help, value) in [
            ("pgmoneta_server_operation_count", "Operations run", state.operations.load(Ordering::Relaxed) as f64),
            (
                "pgmoneta_server_failed_operation_count",
                "Operations failed",
                state.failed_operations.load(Ordering::Relaxed) as f64,
            ),
            (
                "pgmoneta_server_last_operation_time",
                "Unix time of the last operation",
                state.last_operation.load(Ordering::Relaxed) as f64,
            ),
            (
                "pgmoneta_server_last_failed_operation_time",
                "Unix time of the last failed operation",
                state.last_failed_operation.load(Ordering::Relaxed) as f64,
            ),
        ] {
            e.gauge(metric, help, &l, value);
        }
        e.gauge("pgmoneta_server_checksums", "Data checksums are on", &l, b(facts.checksums));
        e.gauge("pgmoneta_server_summarize_wal", "summarize_wal is on", &l, b(facts.summarize_wal));
        e.gauge("pgmoneta_server_fips_mode", "FIPS mode of the server", &l, b(facts.fips));
        e.gauge("pgmoneta_server_extensions_detected", "Extensions detected", &l, facts.extensions.len() as f64);
        for (ext, version, comment) in &facts.extensions {
            e.gauge(
                "pgmoneta_server_extension",
                "An extension installed on the server",
                &[("name", name), ("extension", ext), ("version", version), ("comment", comment)],
                1.0,
            );
        }
        let pgmoneta_ext = facts.extensions.iter().find(|(n, _, _)| n == "pgmoneta_ext");
        e.gauge(
            "pgmoneta_extension_pgmoneta_ext",
            "The pgmoneta_ext extension is installed",
            &[("name", name), ("version", pgmoneta_ext.map_or("", |(_, v, _)| v.as_str()))],
            b(pgmoneta_ext.is_some()),
        );
        for (tli, parent, switchpoint) in timeline_history(shared, name) {
            let (tli, parent) = (tli.to_string(), f64::from(parent));
            e.gauge("pgmoneta_server_parent_tli", "The parent of a timeline", &[("name", name), ("tli", &tli)], parent);
            e.gauge(
                "pgmoneta_server_timeline_switchpos",
                "Where a timeline branched off its parent",
                &[("name", name), ("tli", &tli), ("walpos", &switchpoint)],
                1.0,
            );
        }
        let active = state.activity();
        for (metric, a) in [
            ("pgmoneta_active_backup", Activity::Backup),
            ("pgmoneta_active_restore", Activity::Restore),
            ("pgmoneta_active_archive", Activity::Archive),
            ("pgmoneta_active_delete", Activity::Delete),
            ("pgmoneta_active_retention", Activity::Retention),
        ] {
            e.gauge(metric, "The operation is running", &l, b(active == Some(a)));
        }
        let flushed = progress.flushed.load();
        let end = progress.server_end.load();
        let seg = WalSegmentSize::new(facts.segment_size).unwrap_or(WalSegmentSize::DEFAULT);
        if streaming && tli > 0 {
            let file = WalSegment::containing(TimelineId(tli), flushed, seg).file_name(seg);
            e.gauge(
                "pgmoneta_current_wal_file",
                "The WAL file being streamed",
                &[("name", name), ("file", &file)],
                1.0,
            );
            let lsn = flushed.to_string();
            e.gauge("pgmoneta_current_wal_lsn", "The WAL position flushed", &[("name", name), ("lsn", &lsn)], 1.0);
        }
        e.gauge(
            "pgmoneta_wal_lag_bytes",
            "Bytes of WAL the server has that are not yet flushed to the archive",
            &l,
            end.0.saturating_sub(flushed.0) as f64,
        );
        e.gauge(
            "pgmoneta_wal_flushed_lsn_bytes",
            "The WAL position flushed to the archive, in bytes",
            &l,
            flushed.0 as f64,
        );
        let (done, total, elapsed) = match state.backup_progress.lock().as_ref() {
            Some((p, since)) => {
                (p.done.load(Ordering::Relaxed), p.total.load(Ordering::Relaxed), since.elapsed().as_secs_f64())
            }
            None => (0, 0, 0.0),
        };
        e.gauge("pgmoneta_backup_progress_done_bytes", "Bytes received by the running backup", &l, done as f64);
        e.gauge("pgmoneta_backup_progress_total_bytes", "Estimated size of the running backup", &l, total as f64);
        e.gauge("pgmoneta_backup_progress_elapsed_seconds", "Seconds the running backup has run", &l, elapsed);
        let workflow = [("name", name), ("workflow", "backup"), ("phase", "Base backup")];
        e.gauge("pgmoneta_progress_done", "Progress done", &workflow, done as f64);
        e.gauge("pgmoneta_progress_total", "Progress total", &workflow, total as f64);
        let pct = (done.min(total) * 100).checked_div(total).unwrap_or(0) as f64;
        e.gauge("pgmoneta_progress_percentage", "Progress percentage", &workflow, pct);
        e.gauge("pgmoneta_progress_elapsed_time", "Progress elapsed time", &workflow, elapsed);

        backups(&mut e, shared, name, backup_total, wal_total);
    }
    if let Some(cluster) = &shared.cluster {
        cluster_metrics(&mut e, &cluster.status(shared));
    }
    e
}

/// This node's role per server, and each peer's reachability and lag.
fn cluster_metrics(e: &mut Exposition, status: &ClusterStatusResponse) {
    for s in &status.servers {
        for role in ["active", "follower", "claiming", "fenced"] {
            let labels = [("name", s.server.as_str()), ("role", role)];
            e.gauge(
                "pgmoneta_cluster_role",
                "This node's role for the server (1 for the one it has)",
                &labels,
                b(s.role == role),
            );
        }
    }
    for p in &status.peers {
        let node = [("node", p.node.as_str())];
        e.gauge(
            "pgmoneta_cluster_peer_reachable",
            "Whether the peer was heard from within cluster_takeover",
            &node,
            b(p.reachable),
        );
        let heard = p.last_heard_ms.map_or(-1.0, |ms| ms as f64 / 1000.0);
        e.gauge(
            "pgmoneta_cluster_peer_last_heard_seconds",
            "Seconds since the peer was heard from (-1: never)",
            &node,
            heard,
        );
        for s in &p.servers {
            let labels = [("node", p.node.as_str()), ("name", s.server.as_str())];
            if let Some(lag) = s.lag_bytes {
                e.gauge(
                    "pgmoneta_cluster_peer_wal_lag_bytes",
                    "Bytes of WAL the peer lacks against this node's archive",
                    &labels,
                    lag as f64,
                );
            }
            if let Some(missing) = s.missing_backups {
                e.gauge(
                    "pgmoneta_cluster_peer_missing_backups",
                    "Valid backups this node holds that the peer does not",
                    &labels,
                    missing as f64,
                );
            }
        }
    }
}

/// Timelines of the server's archive from its history files: (timeline, parent, switch point).
fn timeline_history(shared: &Shared, name: &str) -> Vec<(u32, u32, String)> {
    let dir = shared.base_dir().join(name).join("wal");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(tli) = file.strip_suffix(".history").and_then(|t| u32::from_str_radix(t, 16).ok()) else { continue };
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        // The last line names the direct parent: "<parent tli>\t<switch point>\t<reason>".
        let last = text.lines().rfind(|l| !l.trim().is_empty() && !l.starts_with('#'));
        let mut fields = last.unwrap_or_default().split_whitespace();
        if let (Some(parent), Some(pos)) = (fields.next().and_then(|p| p.parse::<u32>().ok()), fields.next()) {
            out.push((tli, parent, pos.to_owned()));
        }
    }
    out.sort();
    out
}

fn backups(e: &mut Exposition, shared: &Shared, name: &str, backup_total: u64, wal_total: u64) {
    let l = [("name", name)];
    let list: Vec<BackupInfo> = list_backups(shared.store(), name).unwrap_or_default();
    let valid: Vec<&BackupInfo> = list.iter().filter(|b| b.valid).collect();
    let label_num = |b: Option<&&BackupInfo>| b.and_then(|b| b.label.parse::<f64>().ok()).unwrap_or(0.0);
    e.gauge("pgmoneta_backup_oldest", "The oldest valid backup", &l, label_num(valid.first()));
    e.gauge("pgmoneta_backup_newest", "The newest valid backup", &l, label_num(valid.last()));
    e.gauge("pgmoneta_backup_valid", "Valid backups", &l, valid.len() as f64);
    e.gauge("pgmoneta_backup_invalid", "Invalid backups", &l, (list.len() - valid.len()) as f64);
    if let Some(state) = shared.server(name) {
        let labels = list.iter().map(|b| b.label.as_str()).collect();
        let failed = state.failed_verifications_among(&labels).len();
        e.gauge("pgmoneta_verification_failed_backups", "Backups whose last verification failed", &l, failed as f64);
    }
    e.gauge("pgmoneta_backup_total_size", "Size of the backups", &l, backup_total as f64);
    e.gauge("pgmoneta_wal_total_size", "Size of the WAL archive", &l, wal_total as f64);
    e.gauge("pgmoneta_total_size", "Size of the server's repository", &l, (backup_total + wal_total) as f64);
    let newest = valid.last();
    e.gauge("pgmoneta_backup_newest_size", "Size of the newest backup", &l, newest.map_or(0, |b| b.backup_size) as f64);
    e.gauge(
        "pgmoneta_restore_newest_size",
        "Restore size of the newest backup",
        &l,
        newest.map_or(0, |b| b.restore_size) as f64,
    );
    if list.is_empty() {
        e.gauge("pgmoneta_backup", "The backup is valid", &[("name", name), ("label", "0")], 0.0);
        return;
    }
    let mut previous_restore = 0u64;
    for bi in &list {
        let bl = [("name", name), ("label", bi.label.as_str())];
        let el = &bi.elapsed;
        e.gauge("pgmoneta_backup", "The backup is valid", &bl, b(bi.valid));
        e.gauge("pgmoneta_backup_retain", "The backup is retained", &bl, b(bi.keep));
        e.gauge("pgmoneta_backup_size", "Stored size of the backup", &bl, bi.backup_size as f64);
        e.gauge("pgmoneta_restore_size", "Restore size of the backup", &bl, bi.restore_size as f64);
        e.gauge(
            "pgmoneta_restore_size_increment",
            "Restore size change from the previous backup",
            &bl,
            bi.restore_size as f64 - previous_restore as f64,
        );
        previous_restore = bi.restore_size;
        let ratio = if bi.restore_size > 0 { 1.0 - bi.backup_size as f64 / bi.restore_size as f64 } else { 0.0 };
        e.gauge(
            "pgmoneta_backup_compression_ratio",
            "Compression ratio of the backup",
            &bl,
            (ratio * 100.0).round() / 100.0,
        );
        e.gauge("pgmoneta_backup_throughput", "Backup throughput in MB/s", &bl, mbs(bi.restore_size, el.total));
        e.gauge("pgmoneta_backup_total_elapsed_time", "Seconds the backup took", &bl, el.total);
        e.gauge("pgmoneta_backup_basebackup_elapsed_time", "Seconds of BASE_BACKUP", &bl, el.basebackup);
        e.gauge("pgmoneta_backup_basebackup_mbs", "BASE_BACKUP MB/s", &bl, mbs(bi.restore_size, el.basebackup));
        e.gauge("pgmoneta_backup_manifest_elapsed_time", "Seconds of the manifest check", &bl, el.manifest);
        e.gauge("pgmoneta_backup_manifest_mbs", "Manifest check MB/s", &bl, mbs(bi.restore_size, el.manifest));
        for (metric, mb, secs) in [
            (
                "pgmoneta_backup_compression_gzip_elapsed_time",
                "pgmoneta_backup_compression_gzip_mbs",
                el.compression_gzip,
            ),
            (
                "pgmoneta_backup_compression_zstd_elapsed_time",
                "pgmoneta_backup_compression_zstd_mbs",
                el.compression_zstd,
            ),
            ("pgmoneta_backup_compression_lz4_elapsed_time", "pgmoneta_backup_compression_lz4_mbs", el.compression_lz4),
            (
                "pgmoneta_backup_compression_bzip2_elapsed_time",
                "pgmoneta_backup_compression_bzip2_mbs",
                el.compression_bzip2,
            ),
            ("pgmoneta_backup_encryption_elapsed_time", "pgmoneta_backup_encryption_mbs", el.encryption),
            ("pgmoneta_backup_linking_elapsed_time", "pgmoneta_backup_linking_mbs", el.linking),
            ("pgmoneta_backup_remote_ssh_elapsed_time", "pgmoneta_backup_remote_ssh_mbs", el.remote_ssh),
            ("pgmoneta_backup_remote_s3_elapsed_time", "pgmoneta_backup_remote_s3_mbs", el.remote_s3),
            ("pgmoneta_backup_remote_azure_elapsed_time", "pgmoneta_backup_remote_azure_mbs", el.remote_azure),
        ] {
            e.gauge(metric, "Seconds of the step", &bl, secs);
            e.gauge(mb, "MB/s of the step", &bl, mbs(bi.restore_size, secs));
        }
        e.gauge("pgmoneta_backup_start_timeline", "Start timeline of the backup", &bl, f64::from(bi.start_timeline));
        e.gauge("pgmoneta_backup_end_timeline", "End timeline of the backup", &bl, f64::from(bi.end_timeline));
        for (metric, lsn) in [
            ("pgmoneta_backup_start_walpos", bi.start_lsn),
            ("pgmoneta_backup_end_walpos", bi.end_lsn),
            ("pgmoneta_backup_checkpoint_walpos", bi.checkpoint_lsn),
        ] {
            let pos = lsn.to_string();
            e.gauge(
                metric,
                "WAL position of the backup",
                &[("name", name), ("label", &bi.label), ("walpos", &pos)],
                1.0,
            );
        }
        e.gauge(
            "pgmoneta_backup_incremental",
            "The backup is incremental (1) or full (0), with its parent",
            &[("name", name), ("label", &bi.label), ("parent", &bi.parent)],
            b(bi.backup_type == pgmoneta_storage::info::BackupType::Incremental),
        );
        let (major, minor) = (bi.major_version.to_string(), bi.minor_version.to_string());
        e.gauge(
            "pgmoneta_backup_version",
            "PostgreSQL version of the backup",
            &[("name", name), ("label", &bi.label), ("major", &major), ("minor", &minor)],
            1.0,
        );
    }
}

const OVERVIEW: &str = "<!DOCTYPE html>\n<html>\n<head><title>pgmoneta</title></head>\n<body>\n<h1>pgmoneta</h1>\n\
<p>Prometheus metrics of the pgmoneta backup daemon are at <a href=\"/metrics\">/metrics</a>.</p>\n\
<p>Every metric is a gauge; servers are labelled <code>name</code>, backups <code>label</code>.</p>\n</body>\n</html>\n";

/// Answers a request on the metrics port: `GET /metrics` the exposition (chunked), `GET /` the
/// overview, 403 for any other path, 400 for any other method.
pub fn handle(shared: &Shared, request: &Request) -> Reply {
    if request.method != Method::GET {
        return Reply::empty(StatusCode::BAD_REQUEST);
    }
    match request.path.as_str() {
        "/metrics" => Reply::new(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", render(shared)).chunked(),
        "/" | "/index.html" => Reply::new(StatusCode::OK, "text/html; charset=utf-8", OVERVIEW).chunked(),
        _ => Reply::empty(StatusCode::FORBIDDEN),
    }
}

/// The metrics port's endpoint: every reply closes its connection, as Prometheus expects
/// nothing else.
pub fn endpoint(shared: Arc<Shared>, listener: TcpListener, tls: Option<Arc<SslAcceptor>>) -> crate::http::Endpoint {
    crate::http::Endpoint {
        name: "metrics",
        listener,
        tls,
        handler: Arc::new(move |request: &Request| handle(&shared, request)),
        close: true,
        silent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_help_and_type_once_per_family() {
        let mut e = Exposition::default();
        e.gauge("pgmoneta_x", "An x", &[("name", "a")], 1.0);
        e.gauge("pgmoneta_x", "An x", &[("name", "b\"q")], 2.5);
        e.gauge("pgmoneta_y", "A y", &[], 0.0);
        assert_eq!(
            e.finish(),
            "# HELP pgmoneta_x An x\n# TYPE pgmoneta_x gauge\npgmoneta_x{name=\"a\"} 1\npgmoneta_x{name=\"b\\\"q\"} 2.5\n\
             # HELP pgmoneta_y A y\n# TYPE pgmoneta_y gauge\npgmoneta_y 0\n"
        );
    }
}
