//! The `Response` object of each management command, typed: what the daemon sends and
//! `pgmoneta-cli` reads. Field names and value types are upstream's (`BackupSize` a byte count,
//! `Valid` of a backup an integer, LSNs as two 32-bit halves...).
//!
//! Every reply also carries the fields the daemon adds to any response (`ServerVersion`, and
//! for a command on a server `Server`, `MajorVersion`, `MinorVersion`); they are not repeated
//! here. Reading ignores fields a type does not know and gives a missing field its default, so
//! replies of other versions read; a field of the wrong type fails [`read`], and a reader then
//! falls back on the document as it is.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A backup in `list-backup`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListedBackup {
    /// The server.
    pub server: String,
    /// The label.
    pub backup: String,
    /// Kept by retention.
    pub keep: bool,
    /// 1 valid, 0 not.
    pub valid: i8,
    /// Bytes stored.
    pub backup_size: u64,
    /// Bytes once restored.
    pub restore_size: u64,
    /// The largest file's size.
    pub biggest_file_size: u64,
    /// Upstream's compression code (`18` client zstd...).
    pub compression: i64,
    /// Upstream's encryption code (`1` AES-256-GCM...).
    pub encryption: i64,
    /// The annotations, `key|value,key|value`.
    pub comments: String,
    /// An incremental backup.
    pub incremental: bool,
    /// The backup an incremental one builds on, or empty.
    pub incremental_parent: String,
    /// Bytes of WAL between the previous backup and this one.
    #[serde(rename = "WAL")]
    pub wal: u64,
}

/// `list-backup` (2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListBackupResponse {
    /// How many backups follow.
    pub number_of_backups: u64,
    /// The backups, in the order asked.
    pub backups: Vec<ListedBackup>,
}

/// `backup` (1): the new backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BackupResponse {
    /// The new label.
    pub backup: String,
    /// Bytes stored.
    pub backup_size: u64,
    /// Bytes once restored.
    pub restore_size: u64,
    /// The largest file's size.
    pub biggest_file_size: u64,
    /// Upstream's compression code.
    pub compression: i64,
    /// Upstream's encryption code.
    pub encryption: i64,
    /// 1 valid, 0 not.
    pub valid: i8,
    /// An incremental backup.
    pub incremental: bool,
    /// The backup an incremental one builds on, or empty.
    pub incremental_parent: String,
}

/// `restore` (3) and `s3 restore` (201): the backup restored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestoreResponse {
    /// The label.
    pub backup: String,
    /// Bytes stored.
    pub backup_size: u64,
    /// Bytes once restored.
    pub restore_size: u64,
    /// The largest file's size.
    pub biggest_file_size: u64,
    /// The annotations.
    pub comments: String,
    /// Upstream's compression code.
    pub compression: i64,
    /// Upstream's encryption code.
    pub encryption: i64,
    /// An incremental backup.
    pub incremental: bool,
    /// The backup an incremental one builds on, or empty.
    pub incremental_parent: String,
}

/// A tablespace of a backup, in `info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TablespaceName {
    /// The tablespace's directory name in the backup.
    pub tablespace_name: String,
}

/// `info` (18) and `annotate` (20): one backup in full.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InfoResponse {
    /// The label.
    pub backup: String,
    /// The first WAL segment the backup needs.
    #[serde(rename = "WAL")]
    pub wal: String,
    /// Bytes stored.
    pub backup_size: u64,
    /// Bytes once restored.
    pub restore_size: u64,
    /// The largest file's size.
    pub biggest_file_size: u64,
    /// Seconds the backup took.
    pub elapsed: f64,
    /// PostgreSQL's major version when the backup was taken.
    pub major_version: u32,
    /// And its minor version.
    pub minor_version: u32,
    /// Kept by retention.
    pub keep: bool,
    /// 1 valid, 0 not.
    pub valid: i8,
    /// How many tablespaces besides the default ones.
    pub number_of_tablespaces: u64,
    /// Upstream's compression code.
    pub compression: i64,
    /// Upstream's encryption code.
    pub encryption: i64,
    /// The tablespaces.
    pub tablespaces: Vec<TablespaceName>,
    /// Start LSN, high half.
    #[serde(rename = "StartHiLSN")]
    pub start_hi_lsn: u64,
    /// Start LSN, low half.
    #[serde(rename = "StartLoLSN")]
    pub start_lo_lsn: u64,
    /// End LSN, high half.
    #[serde(rename = "EndHiLSN")]
    pub end_hi_lsn: u64,
    /// End LSN, low half.
    #[serde(rename = "EndLoLSN")]
    pub end_lo_lsn: u64,
    /// Checkpoint LSN, high half.
    #[serde(rename = "CheckpointHiLSN")]
    pub checkpoint_hi_lsn: u64,
    /// Checkpoint LSN, low half.
    #[serde(rename = "CheckpointLoLSN")]
    pub checkpoint_lo_lsn: u64,
    /// The timeline at the start.
    pub start_timeline: u32,
    /// The timeline at the end.
    pub end_timeline: u32,
    /// The annotations.
    pub comments: String,
    /// An incremental backup.
    pub incremental: bool,
    /// The backup an incremental one builds on, or empty.
    pub incremental_parent: String,
}

/// `archive` (4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ArchiveResponse {
    /// The label archived.
    pub backup: String,
    /// The archive written.
    pub file_name: String,
}

/// A file checked by `verify`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VerifiedFile {
    /// The directory the file is named under.
    pub directory: String,
    /// The file, relative to `directory`.
    pub file_name: String,
    /// The checksum recorded.
    pub original: String,
    /// `SHA512`.
    pub hash_algorithm: String,
    /// The checksum found (`Unknown` when the file could not be read); only for a failed file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calculated: Option<String>,
}

/// The files of a `verify` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VerifiedFiles {
    /// The files that failed.
    pub failed: Vec<VerifiedFile>,
    /// Every file of the manifest, when `all` was asked; null otherwise.
    pub all: Option<Vec<VerifiedFile>>,
}

/// `verify` (19).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VerifyResponse {
    /// The label verified.
    pub backup: String,
    /// What was found.
    pub files: VerifiedFiles,
}

/// `delete` (5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteResponse {
    /// The label deleted.
    pub backup: String,
}

/// `retain` (12) and `expunge` (13).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct KeepResponse {
    /// The labels whose flag changed.
    pub backups: Vec<String>,
    /// The label asked for.
    pub backup: String,
    /// 1 valid, 0 not.
    pub valid: i8,
    /// The annotations.
    pub comments: String,
    /// The flag now.
    pub keep: bool,
    /// Whether the backups it builds on were changed too.
    pub cascade: bool,
}

/// A backup in `status details`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StatusBackup {
    /// The label.
    pub backup: String,
    /// Kept by retention.
    pub keep: bool,
    /// 1 valid, 0 not.
    pub valid: i8,
    /// Bytes stored.
    pub backup_size: u64,
    /// Bytes once restored.
    pub restore_size: u64,
    /// The largest file's size.
    pub biggest_file_size: u64,
    /// Upstream's compression code.
    pub compression: i64,
    /// Upstream's encryption code.
    pub encryption: i64,
    /// The annotations.
    pub comments: String,
    /// Bytes of WAL from this backup to the newest flushed.
    #[serde(rename = "WAL")]
    pub wal: u64,
    /// Bytes of WAL between the previous backup and this one.
    pub delta: u64,
}

/// A server in `status` and `status details`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServerStatus {
    /// The server.
    pub server: String,
    /// Reachable and not set offline.
    pub online: bool,
    /// A primary (not in recovery).
    pub primary: bool,
    /// Passed the daemon's checks.
    pub valid: bool,
    /// What the checks found wrong.
    pub problems: Vec<String>,
    /// Effective retention in days, -1 when unset.
    pub retention_days: i64,
    /// In weeks.
    pub retention_weeks: i64,
    /// In months.
    pub retention_months: i64,
    /// In years.
    pub retention_years: i64,
    /// A backup runs.
    pub active_backup: bool,
    /// A restore runs.
    pub active_restore: bool,
    /// An archive runs.
    pub active_archive: bool,
    /// A delete runs.
    pub active_delete: bool,
    /// Retention runs.
    pub active_retention: bool,
    /// A verify runs.
    pub active_verify: bool,
    /// Backups held.
    pub number_of_backups: u64,
    /// Bytes held (backups and WAL).
    pub server_size: u64,
    /// Bytes in the workspace.
    pub workspace_free_space: u64,
    /// Bytes in the hot standbys.
    pub hot_standby_size: u64,
    /// Effective workers.
    pub workers: u64,
    /// Data checksums on.
    pub checksums: bool,
    /// WAL streams.
    pub wal_streaming: bool,
    /// Why WAL does not stream, while it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_problem: Option<String>,
    /// Backups whose upload to remote storage waits for a retry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_uploads: Vec<String>,
    /// The LSN flushed to the archive, `X/X`.
    pub wal_flushed: String,
    /// Bytes the archive is behind the server.
    pub wal_lag: u64,
    /// The server runs in FIPS mode (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fips: Option<bool>,
    /// The backups (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<Vec<StatusBackup>>,
}

/// `status` (7) and `status details` (8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StatusResponse {
    /// Bytes the servers' backups and WAL take.
    pub used_space: u64,
    /// Free bytes where the repository is.
    pub free_space: u64,
    /// Total bytes there.
    pub total_space: u64,
    /// `workers` of `[pgmoneta]`.
    pub workers: u64,
    /// Servers configured.
    pub number_of_servers: u64,
    /// pgmoneta runs in FIPS mode (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pgmoneta_fips: Option<bool>,
    /// The servers.
    pub servers: Vec<ServerStatus>,
}

/// `mode` (24).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ModeResponse {
    /// Online after the change.
    pub online: bool,
}

/// A duration as upstream's configuration values are sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeValue {
    /// Seconds.
    pub value: u64,
    /// As written, `30s`.
    pub string_value: String,
}

/// `progress` (25).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProgressResponse {
    /// The command asked about.
    pub command: String,
    /// 0 nothing runs, 1 running.
    pub progress_state: u8,
    /// Bytes done.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
    /// Seconds since the start.
    pub elapsed: f64,
    /// 0-100.
    pub percentage: u64,
    /// Time left, estimated.
    pub remaining: TimeValue,
}

/// `reload` (11).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReloadResponse {
    /// A changed key takes effect only after a restart.
    pub restart: bool,
}

/// `conf ls` (21).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfLsResponse {
    /// `pgmoneta.conf`.
    pub main_configuration_path: String,
    /// The users' vault.
    pub users_configuration_path: String,
    /// The admins' vault, or empty.
    pub admin_configuration_path: String,
}

/// `conf set` (23). A key applied at once has `old_value` and `new_value`; one that needs a
/// restart has `requested_value` and `current_value`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfSetResponse {
    /// `success` or `success_restart_required`.
    pub status: String,
    /// In words.
    pub message: String,
    /// The key.
    pub config_key: String,
    /// The value before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_value: Option<String>,
    /// The value now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_value: Option<String>,
    /// The value asked for, in force after a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_value: Option<String>,
    /// The value in force until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_value: Option<String>,
    /// Whether a restart is needed.
    pub restart_required: bool,
}

/// `encrypt`, `decrypt`, `compress`, `decompress` (15, 14, 17, 16).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FileResponse {
    /// The file written.
    pub destination_file: String,
}

/// An object in `s3 ls`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct S3Object {
    /// Its path in the remote repository.
    pub s3_key: String,
}

/// `s3 ls` (200).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct S3ListResponse {
    /// The objects.
    pub s3_objects: Vec<S3Object>,
}

/// One server as a cluster node sees it (`cluster status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ClusterServer {
    /// The server.
    pub server: String,
    /// The node's role for it: `active`, `follower`, `claiming`, `fenced`; empty when unknown.
    pub role: String,
    /// Where the node's WAL archive ends, `X/X`.
    pub archive_end: String,
    /// Valid backups the node holds.
    pub number_of_backups: u64,
    /// For a peer: bytes of WAL it lacks against this node's archive (0 when ahead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// For a peer: backups this node holds that it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_backups: Option<u64>,
}

/// A peer as this node sees it (`cluster status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ClusterPeer {
    /// Its name.
    pub node: String,
    /// Its cluster address.
    pub address: String,
    /// Heard from within the takeover time.
    pub reachable: bool,
    /// Milliseconds since it was last heard from; absent when never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heard_ms: Option<u64>,
    /// Why it cannot be reached, while it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Its view of each server, as last heard.
    pub servers: Vec<ClusterServer>,
}

/// `cluster status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ClusterStatusResponse {
    /// This node's name.
    pub node: String,
    /// This node's view of each server.
    pub servers: Vec<ClusterServer>,
    /// Its peers.
    pub peers: Vec<ClusterPeer>,
}

/// A response as the object sent in the document.
pub fn to_map<T: Serialize>(response: &T) -> Map<String, Value> {
    super::request::to_map(response)
}

/// Reads a `Response` object as `T`.
///
/// # Errors
/// A field `T` knows holds a value of another type.
pub fn read<T: DeserializeOwned>(response: &Map<String, Value>) -> Result<T, serde_json::Error> {
    T::deserialize(Value::Object(response.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// Reads `sent` (a response as upstream's daemon writes it) as `T`, writes it again, and
    /// checks that every field `T` knows comes back with the same value, and that the fields
    /// written are exactly `T`'s.
    fn round<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(sent: Value, extra: &[&str]) -> T {
        let sent = object(sent);
        let typed: T = read(&sent).unwrap_or_else(|e| panic!("{e}: {sent:?}"));
        let written = to_map(&typed);
        for (k, v) in &written {
            assert_eq!(sent.get(k), Some(v), "field {k}");
        }
        for k in sent.keys() {
            assert!(written.contains_key(k) || extra.contains(&k.as_str()), "field {k} not read");
        }
        assert_eq!(read::<T>(&written).unwrap(), typed);
        typed
    }

    /// The fields the daemon adds to every response on a server.
    const BASE: &[&str] = &["Server", "ServerVersion", "MajorVersion", "MinorVersion"];

    #[test]
    fn backup_list_and_info_read_as_upstream_sends_them() {
        let b: BackupResponse = round(
            json!({"ServerVersion": "0.22.0", "Server": "primary", "MajorVersion": 17, "MinorVersion": 2,
                   "Backup": "20261206101010", "BackupSize": 3_145_728u64, "RestoreSize": 41_943_040u64,
                   "BiggestFileSize": 8192, "Compression": 18, "Encryption": 1, "Valid": 1,
                   "Incremental": true, "IncrementalParent": "20261206090000"}),
            BASE,
        );
        assert_eq!((b.compression, b.incremental_parent.as_str()), (18, "20261206090000"));
        let l: ListBackupResponse = round(
            json!({"ServerVersion": "0.22.0", "Server": "primary", "NumberOfBackups": 2, "Backups": [
                {"Server": "primary", "Backup": "20261206090000", "Keep": true, "Valid": 1, "BackupSize": 10,
                 "RestoreSize": 20, "BiggestFileSize": 8, "Compression": 0, "Encryption": 0,
                 "Comments": "k|v", "Incremental": false, "IncrementalParent": "", "WAL": 16_777_216u64},
                {"Server": "primary", "Backup": "20261206101010", "Keep": false, "Valid": 0, "BackupSize": 1,
                 "RestoreSize": 2, "BiggestFileSize": 1, "Compression": 34, "Encryption": 3,
                 "Comments": "", "Incremental": true, "IncrementalParent": "20261206090000", "WAL": 0}]}),
            BASE,
        );
        assert_eq!(l.backups.len(), 2);
        assert!(l.backups[0].keep && l.backups[1].incremental);
        let i: InfoResponse = round(
            json!({"ServerVersion": "0.22.0", "Server": "primary", "Backup": "20261206101010",
                   "WAL": "000000010000000000000003", "BackupSize": 1, "RestoreSize": 2, "BiggestFileSize": 3,
                   "Elapsed": 1.25, "MajorVersion": 16, "MinorVersion": 4, "Keep": false, "Valid": 1,
                   "NumberOfTablespaces": 1, "Compression": 18, "Encryption": 0,
                   "Tablespaces": [{"TablespaceName": "tblspc"}],
                   "StartHiLSN": 0, "StartLoLSN": 50_331_688u64, "EndHiLSN": 0, "EndLoLSN": 50_331_992u64,
                   "CheckpointHiLSN": 0, "CheckpointLoLSN": 50_331_744u64, "StartTimeline": 1, "EndTimeline": 1,
                   "Comments": "", "Incremental": false, "IncrementalParent": ""}),
            &["Server", "ServerVersion"],
        );
        assert_eq!((i.start_lo_lsn, i.tablespaces[0].tablespace_name.as_str()), (50_331_688, "tblspc"));
    }

    #[test]
    fn status_reads_with_and_without_details() {
        let server = json!({"Server": "primary", "Online": true, "Primary": true, "Valid": true, "Problems": [],
            "RetentionDays": 7, "RetentionWeeks": -1, "RetentionMonths": -1, "RetentionYears": -1,
            "ActiveBackup": false, "ActiveRestore": false, "ActiveArchive": false, "ActiveDelete": false,
            "ActiveRetention": false, "ActiveVerify": true, "NumberOfBackups": 1, "ServerSize": 100,
            "WorkspaceFreeSpace": 0, "HotStandbySize": 0, "Workers": 2, "Checksums": true,
            "WalStreaming": true, "WalFlushed": "0/3000148", "WalLag": 0});
        let s: StatusResponse = round(
            json!({"ServerVersion": "0.22.0", "UsedSpace": 100, "FreeSpace": 5, "TotalSpace": 10, "Workers": 2,
                   "NumberOfServers": 1, "Servers": [server.clone()]}),
            &["ServerVersion"],
        );
        let plain = &s.servers[0];
        assert!(plain.fips.is_none() && plain.wal_problem.is_none() && plain.pending_uploads.is_empty());
        assert!(plain.backups.is_none() && s.pgmoneta_fips.is_none());
        let mut detailed = server;
        detailed["Fips"] = json!(false);
        detailed["WalProblem"] = json!("connection refused");
        detailed["PendingUploads"] = json!(["20261206101010"]);
        detailed["Backups"] = json!([{"Backup": "20261206101010", "Keep": false, "Valid": 1, "BackupSize": 1,
            "RestoreSize": 2, "BiggestFileSize": 1, "Compression": 18, "Encryption": 0, "Comments": "",
            "WAL": 33_554_432u64, "Delta": 0}]);
        let d: StatusResponse = round(
            json!({"ServerVersion": "0.22.0", "UsedSpace": 100, "FreeSpace": 5, "TotalSpace": 10, "Workers": 2,
                   "NumberOfServers": 1, "PgmonetaFips": false, "Servers": [detailed]}),
            &["ServerVersion"],
        );
        let one = &d.servers[0];
        assert_eq!(one.backups.as_ref().map(|b| b[0].wal), Some(33_554_432));
        assert_eq!(one.pending_uploads, ["20261206101010"]);
        assert_eq!(d.pgmoneta_fips, Some(false));
    }

    #[test]
    fn cluster_status_reads_and_writes_back() {
        let r: ClusterStatusResponse = round(
            json!({"ServerVersion": "0.22.0", "Node": "a",
                   "Servers": [{"Server": "primary", "Role": "active", "ArchiveEnd": "0/5000000", "NumberOfBackups": 2}],
                   "Peers": [
                       {"Node": "b", "Address": "10.0.0.2:5010", "Reachable": true, "LastHeardMs": 420,
                        "Servers": [{"Server": "primary", "Role": "follower", "ArchiveEnd": "0/4000000",
                                     "NumberOfBackups": 1, "LagBytes": 16777216, "MissingBackups": 1}]},
                       {"Node": "c", "Address": "10.1.0.3:5010", "Reachable": false,
                        "Problem": "authentication failed", "Servers": []}]}),
            &["ServerVersion"],
        );
        assert_eq!(r.peers[0].servers[0].lag_bytes, Some(16 << 20));
        assert_eq!((r.peers[1].last_heard_ms, r.peers[1].problem.as_deref()), (None, Some("authentication failed")));
    }

    #[test]
    fn the_other_commands_read_as_upstream_sends_them() {
        let base = &["Server", "ServerVersion", "MajorVersion", "MinorVersion"];
        let r: RestoreResponse = round(
            json!({"Server": "p", "ServerVersion": "0.22.0", "Backup": "20261206101010", "BackupSize": 1,
                   "RestoreSize": 2, "BiggestFileSize": 1, "Comments": "", "Compression": 18, "Encryption": 0,
                   "Incremental": false, "IncrementalParent": ""}),
            base,
        );
        assert_eq!(r.backup, "20261206101010");
        round::<ArchiveResponse>(
            json!({"Server": "p", "Backup": "20261206101010", "FileName": "/a/p-20261206101010.tar.zstd"}),
            base,
        );
        let v: VerifyResponse = round(
            json!({"Server": "p", "Backup": "20261206101010", "Files": {"All": null, "Failed": [
                {"Directory": "/r/p-20261206101010", "FileName": "base/1/1259", "Original": "ab",
                 "HashAlgorithm": "SHA512", "Calculated": "Unknown"}]}}),
            base,
        );
        assert_eq!((v.files.all.is_none(), v.files.failed[0].calculated.as_deref()), (true, Some("Unknown")));
        let all: VerifyResponse = round(
            json!({"Backup": "x", "Files": {"Failed": [], "All": [
                {"Directory": "/r", "FileName": "PG_VERSION", "Original": "cd", "HashAlgorithm": "SHA512"}]}}),
            base,
        );
        assert_eq!(all.files.all.map(|a| a.len()), Some(1));
        round::<DeleteResponse>(json!({"Server": "p", "Backup": "20261206101010"}), base);
        let k: KeepResponse = round(
            json!({"Server": "p", "Backups": ["a", "b"], "Backup": "b", "Valid": 1, "Comments": "",
                   "Keep": true, "Cascade": true}),
            base,
        );
        assert_eq!(k.backups, ["a", "b"]);
        round::<ModeResponse>(json!({"Server": "p", "Online": false}), base);
        let p: ProgressResponse = round(
            json!({"Server": "p", "Command": "backup", "ProgressState": 1, "Done": 5, "Total": 10,
                   "Elapsed": 2.5, "Percentage": 50, "Remaining": {"value": 3, "string_value": "3s"}}),
            base,
        );
        assert_eq!(p.remaining.value, 3);
        round::<ReloadResponse>(json!({"ServerVersion": "0.22.0", "Restart": true}), base);
        round::<ConfLsResponse>(
            json!({"main_configuration_path": "/etc/pgmoneta/pgmoneta.conf",
                   "users_configuration_path": "/etc/pgmoneta/pgmoneta_users.conf",
                   "admin_configuration_path": ""}),
            base,
        );
        let applied: ConfSetResponse = round(
            json!({"status": "success", "message": "log_level changed", "config_key": "log_level",
                   "old_value": "info", "new_value": "debug1", "restart_required": false}),
            base,
        );
        assert_eq!(applied.requested_value, None);
        let later: ConfSetResponse = round(
            json!({"status": "success_restart_required", "message": "later", "config_key": "unix_socket_dir",
                   "requested_value": "/a", "current_value": "/b", "restart_required": true}),
            base,
        );
        assert_eq!(later.old_value, None);
        round::<FileResponse>(json!({"DestinationFile": "/f.zstd"}), base);
        round::<S3ListResponse>(json!({"Server": "p", "S3Objects": [{"S3Key": "p/backup/x/backup.info"}]}), base);
    }

    #[test]
    fn unknown_and_missing_fields_are_tolerated_and_wrong_types_are_not() {
        // A newer daemon's extra field, and a field an older one does not send.
        let r: DeleteResponse = read(&object(json!({"Backup": "x", "Unknown": {"a": [1]}}))).unwrap();
        assert_eq!(r.backup, "x");
        let l: ListBackupResponse = read(&object(json!({"Backups": [{"Backup": "x"}]}))).unwrap();
        assert_eq!((l.number_of_backups, l.backups[0].valid), (0, 0));
        assert!(read::<ListBackupResponse>(&object(json!({"Backups": "none"}))).is_err());
    }
}
