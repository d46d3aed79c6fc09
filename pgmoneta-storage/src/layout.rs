//! Repository paths, as upstream lays them out under `<base_dir>`:
//! `<server>/backup/<label>/{backup.info, backup.manifest, backup.sha512, data/, tblspc_<name>/}`
//! and `<server>/wal/`.

use crate::store::join;

/// The directory of a server's backups.
pub fn backups_dir(server: &str) -> String {
    join(&[server, "backup"])
}

/// The directory of one backup.
pub fn backup_dir(server: &str, label: &str) -> String {
    join(&[server, "backup", label])
}

/// A file of a backup's own (`backup.info`, `backup.manifest`, `backup.sha512`).
pub fn backup_file(server: &str, label: &str, name: &str) -> String {
    format!("{}/{name}", backup_dir(server, label))
}

/// The data directory copy of a backup.
pub fn data_dir(server: &str, label: &str) -> String {
    join(&[server, "backup", label, "data"])
}

/// A server's WAL archive.
pub fn wal_dir(server: &str) -> String {
    join(&[server, "wal"])
}

/// The directory name of a tablespace in a backup.
pub fn tablespace_dir_name(name: &str) -> String {
    format!("tblspc_{name}")
}

/// Files stored as they are, never compressed or encrypted.
pub fn is_kept_plain(rel: &str) -> bool {
    rel == "backup_label" || rel == "backup_manifest"
}
