//! pgmoneta's management protocol: how `pgmoneta-cli` and the daemon talk, on the local Unix
//! socket and (after the SCRAM handshake of [`crate::auth`]) on the remote management port.
//!
//! One request and one response per connection, each a [`Frame`]: a compression code, an
//! encryption code, a big-endian 32-bit length and the payload. The payload is the JSON
//! [`Document`], as compact text when both codes are 0, else
//! `base64(encrypt(compress(json)))` with the master key ([`payload`]). The server answers with
//! the compression and encryption it received.

pub mod check;
pub mod client;
mod document;
mod frame;
pub mod fuzzing;
pub mod payload;
pub mod request;
pub mod response;

pub use document::{Command, Document, Header, Outcome, OutputFormat, CLIENT_VERSION};
pub use frame::{read_frame, write_frame, Frame, MAX_PAYLOAD};

/// Upstream's error codes (`Outcome.Error`).
#[allow(missing_docs)] // each constant is named after upstream's code
pub mod error_code {
    pub const BAD_PAYLOAD: u32 = 1;
    pub const UNKNOWN_COMMAND: u32 = 2;
    pub const ALLOCATION: u32 = 3;
    pub const BACKUP_INVALID: u32 = 100;
    pub const BACKUP_WAL: u32 = 101;
    pub const BACKUP_ACTIVE: u32 = 102;
    pub const BACKUP_NOBACKUPS: u32 = 103;
    pub const BACKUP_NOCHILD: u32 = 104;
    pub const BACKUP_ALREADYCHILD: u32 = 105;
    pub const BACKUP_SETUP: u32 = 106;
    pub const BACKUP_EXECUTE: u32 = 107;
    pub const BACKUP_TEARDOWN: u32 = 108;
    pub const BACKUP_NETWORK: u32 = 109;
    pub const BACKUP_OFFLINE: u32 = 110;
    pub const BACKUP_NOSERVER: u32 = 111;
    pub const BACKUP_NOFORK: u32 = 112;
    pub const BACKUP_ERROR: u32 = 113;
    pub const INCREMENTAL_BACKUP_SETUP: u32 = 200;
    pub const INCREMENTAL_BACKUP_EXECUTE: u32 = 201;
    pub const INCREMENTAL_BACKUP_TEARDOWN: u32 = 202;
    pub const LIST_BACKUP_DEQUE_CREATE: u32 = 300;
    pub const LIST_BACKUP_BACKUPS: u32 = 301;
    pub const LIST_BACKUP_JSON_VALUE: u32 = 302;
    pub const LIST_BACKUP_NETWORK: u32 = 303;
    pub const LIST_BACKUP_NOSERVER: u32 = 304;
    pub const LIST_BACKUP_NOFORK: u32 = 305;
    pub const LIST_BACKUP_INVALID_SORT: u32 = 306;
    pub const LIST_BACKUP_ERROR: u32 = 307;
    pub const DELETE_SETUP: u32 = 400;
    pub const DELETE_NOSERVER: u32 = 403;
    pub const DELETE_NOFORK: u32 = 404;
    pub const DELETE_NETWORK: u32 = 405;
    pub const DELETE_ERROR: u32 = 406;
    pub const DELETE_BACKUP_SETUP: u32 = 500;
    pub const DELETE_BACKUP_EXECUTE: u32 = 501;
    pub const DELETE_BACKUP_TEARDOWN: u32 = 502;
    pub const DELETE_BACKUP_ACTIVE: u32 = 503;
    pub const DELETE_BACKUP_NOBACKUPS: u32 = 504;
    pub const DELETE_BACKUP_NOBACKUP: u32 = 505;
    pub const DELETE_BACKUP_RETAINED: u32 = 506;
    pub const DELETE_BACKUP_ROLLUP: u32 = 507;
    pub const DELETE_BACKUP_FULL: u32 = 508;
    pub const DELETE_BACKUP_ERROR: u32 = 509;
    pub const RESTORE_NOBACKUP: u32 = 600;
    pub const RESTORE_NODISK: u32 = 601;
    pub const RESTORE_ACTIVE: u32 = 602;
    pub const RESTORE_NOSERVER: u32 = 603;
    pub const RESTORE_SETUP: u32 = 604;
    pub const RESTORE_EXECUTE: u32 = 605;
    pub const RESTORE_TEARDOWN: u32 = 606;
    pub const RESTORE_NOFORK: u32 = 607;
    pub const RESTORE_NETWORK: u32 = 608;
    pub const RESTORE_ERROR: u32 = 609;
    pub const COMBINE_SETUP: u32 = 700;
    pub const COMBINE_EXECUTE: u32 = 701;
    pub const COMBINE_TEARDOWN: u32 = 702;
    pub const VERIFY_NOSERVER: u32 = 800;
    pub const VERIFY_SETUP: u32 = 801;
    pub const VERIFY_EXECUTE: u32 = 802;
    pub const VERIFY_TEARDOWN: u32 = 803;
    pub const VERIFY_NOFORK: u32 = 804;
    pub const VERIFY_NETWORK: u32 = 805;
    pub const VERIFY_ERROR: u32 = 806;
    pub const ARCHIVE_NOBACKUP: u32 = 900;
    pub const ARCHIVE_NOSERVER: u32 = 901;
    pub const ARCHIVE_ACTIVE: u32 = 902;
    pub const ARCHIVE_SETUP: u32 = 903;
    pub const ARCHIVE_EXECUTE: u32 = 904;
    pub const ARCHIVE_TEARDOWN: u32 = 905;
    pub const ARCHIVE_NOFORK: u32 = 906;
    pub const ARCHIVE_NETWORK: u32 = 907;
    pub const ARCHIVE_ERROR: u32 = 908;
    pub const STATUS_NOFORK: u32 = 1000;
    pub const STATUS_NETWORK: u32 = 1001;
    pub const STATUS_DETAILS_NOFORK: u32 = 1100;
    pub const STATUS_DETAILS_NETWORK: u32 = 1101;
    pub const RETAIN_NOBACKUP: u32 = 1200;
    pub const RETAIN_NOSERVER: u32 = 1201;
    pub const RETAIN_NOFORK: u32 = 1202;
    pub const RETAIN_NETWORK: u32 = 1203;
    pub const RETAIN_ERROR: u32 = 1204;
    pub const EXPUNGE_NOBACKUP: u32 = 1300;
    pub const EXPUNGE_NOSERVER: u32 = 1301;
    pub const EXPUNGE_NOFORK: u32 = 1302;
    pub const EXPUNGE_NETWORK: u32 = 1303;
    pub const EXPUNGE_ERROR: u32 = 1304;
    pub const DECRYPT_NOFILE: u32 = 1400;
    pub const DECRYPT_NOFORK: u32 = 1401;
    pub const DECRYPT_NETWORK: u32 = 1402;
    pub const DECRYPT_ERROR: u32 = 1403;
    pub const ENCRYPT_NOFILE: u32 = 1500;
    pub const ENCRYPT_NOFORK: u32 = 1501;
    pub const ENCRYPT_NETWORK: u32 = 1502;
    pub const ENCRYPT_ERROR: u32 = 1503;
    pub const GZIP_NOFILE: u32 = 1600;
    pub const GZIP_NOFORK: u32 = 1601;
    pub const GZIP_NETWORK: u32 = 1602;
    pub const GZIP_ERROR: u32 = 1603;
    pub const ZSTD_NOFILE: u32 = 1700;
    pub const ZSTD_NOFORK: u32 = 1701;
    pub const ZSTD_NETWORK: u32 = 1702;
    pub const ZSTD_ERROR: u32 = 1703;
    pub const LZ4_NOFILE: u32 = 1800;
    pub const LZ4_NOFORK: u32 = 1801;
    pub const LZ4_NETWORK: u32 = 1802;
    pub const LZ4_ERROR: u32 = 1803;
    pub const BZIP2_NOFILE: u32 = 1900;
    pub const BZIP2_NOFORK: u32 = 1901;
    pub const BZIP2_NETWORK: u32 = 1902;
    pub const BZIP2_ERROR: u32 = 1903;
    pub const DECOMPRESS_NOFORK: u32 = 2000;
    pub const DECOMPRESS_UNKNOWN: u32 = 2001;
    pub const COMPRESS_NOFORK: u32 = 2100;
    pub const COMPRESS_UNKNOWN: u32 = 2101;
    pub const INFO_NOBACKUP: u32 = 2200;
    pub const INFO_NOSERVER: u32 = 2201;
    pub const INFO_NOFORK: u32 = 2202;
    pub const INFO_NETWORK: u32 = 2203;
    pub const INFO_ERROR: u32 = 2204;
    pub const ANNOTATE_NOBACKUP: u32 = 2500;
    pub const ANNOTATE_NOSERVER: u32 = 2501;
    pub const ANNOTATE_NOFORK: u32 = 2502;
    pub const ANNOTATE_FAILED: u32 = 2503;
    pub const ANNOTATE_NETWORK: u32 = 2504;
    pub const ANNOTATE_ERROR: u32 = 2505;
    pub const ANNOTATE_UNKNOWN_ACTION: u32 = 2506;
    pub const CONF_GET_NOFORK: u32 = 2600;
    pub const CONF_GET_NETWORK: u32 = 2602;
    pub const CONF_GET_ERROR: u32 = 2603;
    pub const CONF_SET_NOFORK: u32 = 2700;
    pub const CONF_SET_NOREQUEST: u32 = 2701;
    pub const CONF_SET_NOCONFIG_KEY_OR_VALUE: u32 = 2702;
    pub const CONF_SET_NORESPONSE: u32 = 2703;
    pub const CONF_SET_UNKNOWN_CONFIGURATION_KEY: u32 = 2704;
    pub const CONF_SET_UNKNOWN_SERVER: u32 = 2705;
    pub const CONF_SET_NETWORK: u32 = 2706;
    pub const CONF_SET_ERROR: u32 = 2707;
    pub const MODE_NOSERVER: u32 = 2800;
    pub const MODE_NOFORK: u32 = 2801;
    pub const MODE_FAILED: u32 = 2802;
    pub const MODE_NETWORK: u32 = 2803;
    pub const MODE_ERROR: u32 = 2804;
    pub const MODE_UNKNOWN_ACTION: u32 = 2805;
    pub const PROGRESS_NOSERVER: u32 = 3000;
    pub const PROGRESS_NOFORK: u32 = 3001;
    pub const PROGRESS_NETWORK: u32 = 3002;
    pub const PROGRESS_ERROR: u32 = 3003;
    pub const LIST_S3_NOSERVER: u32 = 2900;
    pub const LIST_S3_NOFORK: u32 = 2901;
    pub const LIST_S3_WORKFLOW: u32 = 2902;
    pub const LIST_S3_JSON_VALUE: u32 = 2903;
    pub const LIST_S3_NETWORK: u32 = 2904;
    pub const LIST_S3_ERROR: u32 = 2905;
    pub const RESTORE_S3_NOSERVER: u32 = 3100;
    pub const RESTORE_S3_NOFORK: u32 = 3101;
    pub const RESTORE_S3_WORKFLOW: u32 = 3102;
    pub const RESTORE_S3_NETWORK: u32 = 3103;
    pub const RESTORE_S3_ERROR: u32 = 3104;
    pub const CLUSTER_STATUS_OFF: u32 = 10000;
    /// A command that writes a server's repository reached a node of a cluster that is not
    /// active for that server, and no active node is known to forward it to.
    pub const CLUSTER_NOT_ACTIVE: u32 = 10001;
    /// The command was to be forwarded to the node active for its server, which could not be
    /// reached or did not answer.
    pub const CLUSTER_FORWARD: u32 = 10002;
    /// `check` named a server that is not configured.
    pub const CHECK_NOSERVER: u32 = 10100;

    /// What a code means, in a sentence an operator can read without the source: the
    /// command it belongs to and what went wrong. `None` for a code this protocol does not
    /// define. A reply's `Message` says more (which file, which server); this is the fallback
    /// for a daemon that sends the code alone.
    pub fn describe(code: u32) -> Option<String> {
        let (name, _) = NAMES.iter().find(|(_, c)| *c == code)?;
        let general = match code {
            BAD_PAYLOAD => Some("the request could not be read (bad frame, JSON or encryption)"),
            UNKNOWN_COMMAND => Some("the daemon does not know this command"),
            ALLOCATION => Some("the daemon is handling too many requests; try again"),
            BACKUP_WAL => Some("backup: WAL is not being archived, so a backup would not be restorable"),
            BACKUP_ACTIVE => Some("backup: another operation is running on this server"),
            BACKUP_NOBACKUPS => Some("backup: there is no backup to build an incremental backup on"),
            BACKUP_NOCHILD => Some("backup: the backup has no incremental child"),
            BACKUP_ALREADYCHILD => Some("backup: the parent backup already has an incremental child"),
            BACKUP_OFFLINE => Some("backup: the server is offline"),
            DELETE_BACKUP_RETAINED => Some("delete: the backup is marked to be kept (retain); expunge it first"),
            DELETE_BACKUP_ROLLUP => Some("delete: the incremental chain could not be rolled up"),
            DELETE_BACKUP_FULL => Some("delete: the full backup has incremental children"),
            RESTORE_NODISK => Some("restore: not enough free space in the target directory"),
            COMBINE_SETUP | COMBINE_EXECUTE | COMBINE_TEARDOWN => {
                Some("restore: combining an incremental chain failed")
            }
            LIST_BACKUP_INVALID_SORT => Some("list-backup: unknown sort order"),
            ANNOTATE_FAILED => Some("annotate: the annotation could not be changed"),
            ANNOTATE_UNKNOWN_ACTION => Some("annotate: unknown action (add, update or remove)"),
            CONF_SET_NOREQUEST => Some("conf set: the request is missing"),
            CONF_SET_NOCONFIG_KEY_OR_VALUE => Some("conf set: no key or no value given"),
            CONF_SET_NORESPONSE => Some("conf set: no response could be built"),
            CONF_SET_UNKNOWN_CONFIGURATION_KEY => Some("conf set: unknown configuration key"),
            CONF_SET_UNKNOWN_SERVER => Some("conf set: unknown server"),
            MODE_FAILED => Some("mode: the server's mode could not be changed"),
            MODE_UNKNOWN_ACTION => Some("mode: unknown mode (online or offline)"),
            DECOMPRESS_UNKNOWN | COMPRESS_UNKNOWN => Some("the file's compression is unknown"),
            CLUSTER_STATUS_OFF => Some("cluster status: this node is not in a cluster (cluster = 0)"),
            CLUSTER_NOT_ACTIVE => Some("cluster: no node is known to be active for the server just now"),
            CLUSTER_FORWARD => Some("cluster: the node active for the server could not be reached"),
            _ => None,
        };
        if let Some(g) = general {
            return Some(g.to_owned());
        }
        let area = match code / 100 {
            1 => "backup",
            2 => "incremental backup",
            3 => "list-backup",
            4 => "delete",
            5 => "delete (of a backup)",
            6 => "restore",
            8 => "verify",
            9 => "archive",
            10 => "status",
            11 => "status details",
            12 => "retain",
            13 => "expunge",
            14 => "decrypt",
            15 => "encrypt",
            16 => "gzip",
            17 => "zstd",
            18 => "lz4",
            19 => "bzip2",
            20 => "decompress",
            21 => "compress",
            22 => "info",
            25 => "annotate",
            26 => "conf get",
            27 => "conf set",
            28 => "mode",
            29 => "s3 ls",
            30 => "progress",
            31 => "s3 restore",
            101 => "check",
            _ => "the command",
        };
        let kind = name.rsplit('_').next().unwrap_or_default();
        let what = match kind {
            "NOSERVER" => "no server of that name is configured",
            "NOBACKUP" | "NOBACKUPS" => "no such backup (or it is not valid)",
            "NOFILE" => "no such file",
            "NOFORK" => "the operation could not be started",
            "NETWORK" => "the reply could not be sent to the client",
            "ACTIVE" => "another operation is running on this server",
            "SETUP" => "the request could not be prepared (bad arguments or state)",
            "EXECUTE" => "the operation failed while running",
            "TEARDOWN" => "the operation could not be finished cleanly",
            "WORKFLOW" => "no remote storage is configured for this server",
            "BACKUPS" => "the backups could not be listed",
            "VALUE" => "the reply could not be built",
            "INVALID" => "the request is not valid",
            _ => "the operation failed",
        };
        Some(format!("{area}: {what}"))
    }

    /// Every code above with its name.
    pub const NAMES: &[(&str, u32)] = &[
        ("BAD_PAYLOAD", BAD_PAYLOAD),
        ("UNKNOWN_COMMAND", UNKNOWN_COMMAND),
        ("ALLOCATION", ALLOCATION),
        ("BACKUP_INVALID", BACKUP_INVALID),
        ("BACKUP_WAL", BACKUP_WAL),
        ("BACKUP_ACTIVE", BACKUP_ACTIVE),
        ("BACKUP_NOBACKUPS", BACKUP_NOBACKUPS),
        ("BACKUP_NOCHILD", BACKUP_NOCHILD),
        ("BACKUP_ALREADYCHILD", BACKUP_ALREADYCHILD),
        ("BACKUP_SETUP", BACKUP_SETUP),
        ("BACKUP_EXECUTE", BACKUP_EXECUTE),
        ("BACKUP_TEARDOWN", BACKUP_TEARDOWN),
        ("BACKUP_NETWORK", BACKUP_NETWORK),
        ("BACKUP_OFFLINE", BACKUP_OFFLINE),
        ("BACKUP_NOSERVER", BACKUP_NOSERVER),
        ("BACKUP_NOFORK", BACKUP_NOFORK),
        ("BACKUP_ERROR", BACKUP_ERROR),
        ("INCREMENTAL_BACKUP_SETUP", INCREMENTAL_BACKUP_SETUP),
        ("INCREMENTAL_BACKUP_EXECUTE", INCREMENTAL_BACKUP_EXECUTE),
        ("INCREMENTAL_BACKUP_TEARDOWN", INCREMENTAL_BACKUP_TEARDOWN),
        ("LIST_BACKUP_DEQUE_CREATE", LIST_BACKUP_DEQUE_CREATE),
        ("LIST_BACKUP_BACKUPS", LIST_BACKUP_BACKUPS),
        ("LIST_BACKUP_JSON_VALUE", LIST_BACKUP_JSON_VALUE),
        ("LIST_BACKUP_NETWORK", LIST_BACKUP_NETWORK),
        ("LIST_BACKUP_NOSERVER", LIST_BACKUP_NOSERVER),
        ("LIST_BACKUP_NOFORK", LIST_BACKUP_NOFORK),
        ("LIST_BACKUP_INVALID_SORT", LIST_BACKUP_INVALID_SORT),
        ("LIST_BACKUP_ERROR", LIST_BACKUP_ERROR),
        ("DELETE_SETUP", DELETE_SETUP),
        ("DELETE_NOSERVER", DELETE_NOSERVER),
        ("DELETE_NOFORK", DELETE_NOFORK),
        ("DELETE_NETWORK", DELETE_NETWORK),
        ("DELETE_ERROR", DELETE_ERROR),
        ("DELETE_BACKUP_SETUP", DELETE_BACKUP_SETUP),
        ("DELETE_BACKUP_EXECUTE", DELETE_BACKUP_EXECUTE),
        ("DELETE_BACKUP_TEARDOWN", DELETE_BACKUP_TEARDOWN),
        ("DELETE_BACKUP_ACTIVE", DELETE_BACKUP_ACTIVE),
        ("DELETE_BACKUP_NOBACKUPS", DELETE_BACKUP_NOBACKUPS),
        ("DELETE_BACKUP_NOBACKUP", DELETE_BACKUP_NOBACKUP),
        ("DELETE_BACKUP_RETAINED", DELETE_BACKUP_RETAINED),
        ("DELETE_BACKUP_ROLLUP", DELETE_BACKUP_ROLLUP),
        ("DELETE_BACKUP_FULL", DELETE_BACKUP_FULL),
        ("DELETE_BACKUP_ERROR", DELETE_BACKUP_ERROR),
        ("RESTORE_NOBACKUP", RESTORE_NOBACKUP),
        ("RESTORE_NODISK", RESTORE_NODISK),
        ("RESTORE_ACTIVE", RESTORE_ACTIVE),
        ("RESTORE_NOSERVER", RESTORE_NOSERVER),
        ("RESTORE_SETUP", RESTORE_SETUP),
        ("RESTORE_EXECUTE", RESTORE_EXECUTE),
        ("RESTORE_TEARDOWN", RESTORE_TEARDOWN),
        ("RESTORE_NOFORK", RESTORE_NOFORK),
        ("RESTORE_NETWORK", RESTORE_NETWORK),
        ("RESTORE_ERROR", RESTORE_ERROR),
        ("COMBINE_SETUP", COMBINE_SETUP),
        ("COMBINE_EXECUTE", COMBINE_EXECUTE),
        ("COMBINE_TEARDOWN", COMBINE_TEARDOWN),
        ("VERIFY_NOSERVER", VERIFY_NOSERVER),
        ("VERIFY_SETUP", VERIFY_SETUP),
        ("VERIFY_EXECUTE", VERIFY_EXECUTE),
        ("VERIFY_TEARDOWN", VERIFY_TEARDOWN),
        ("VERIFY_NOFORK", VERIFY_NOFORK),
        ("VERIFY_NETWORK", VERIFY_NETWORK),
        ("VERIFY_ERROR", VERIFY_ERROR),
        ("ARCHIVE_NOBACKUP", ARCHIVE_NOBACKUP),
        ("ARCHIVE_NOSERVER", ARCHIVE_NOSERVER),
        ("ARCHIVE_ACTIVE", ARCHIVE_ACTIVE),
        ("ARCHIVE_SETUP", ARCHIVE_SETUP),
        ("ARCHIVE_EXECUTE", ARCHIVE_EXECUTE),
        ("ARCHIVE_TEARDOWN", ARCHIVE_TEARDOWN),
        ("ARCHIVE_NOFORK", ARCHIVE_NOFORK),
        ("ARCHIVE_NETWORK", ARCHIVE_NETWORK),
        ("ARCHIVE_ERROR", ARCHIVE_ERROR),
        ("STATUS_NOFORK", STATUS_NOFORK),
        ("STATUS_NETWORK", STATUS_NETWORK),
        ("STATUS_DETAILS_NOFORK", STATUS_DETAILS_NOFORK),
        ("STATUS_DETAILS_NETWORK", STATUS_DETAILS_NETWORK),
        ("RETAIN_NOBACKUP", RETAIN_NOBACKUP),
        ("RETAIN_NOSERVER", RETAIN_NOSERVER),
        ("RETAIN_NOFORK", RETAIN_NOFORK),
        ("RETAIN_NETWORK", RETAIN_NETWORK),
        ("RETAIN_ERROR", RETAIN_ERROR),
        ("EXPUNGE_NOBACKUP", EXPUNGE_NOBACKUP),
        ("EXPUNGE_NOSERVER", EXPUNGE_NOSERVER),
        ("EXPUNGE_NOFORK", EXPUNGE_NOFORK),
        ("EXPUNGE_NETWORK", EXPUNGE_NETWORK),
        ("EXPUNGE_ERROR", EXPUNGE_ERROR),
        ("DECRYPT_NOFILE", DECRYPT_NOFILE),
        ("DECRYPT_NOFORK", DECRYPT_NOFORK),
        ("DECRYPT_NETWORK", DECRYPT_NETWORK),
        ("DECRYPT_ERROR", DECRYPT_ERROR),
        ("ENCRYPT_NOFILE", ENCRYPT_NOFILE),
        ("ENCRYPT_NOFORK", ENCRYPT_NOFORK),
        ("ENCRYPT_NETWORK", ENCRYPT_NETWORK),
        ("ENCRYPT_ERROR", ENCRYPT_ERROR),
        ("GZIP_NOFILE", GZIP_NOFILE),
        ("GZIP_NOFORK", GZIP_NOFORK),
        ("GZIP_NETWORK", GZIP_NETWORK),
        ("GZIP_ERROR", GZIP_ERROR),
        ("ZSTD_NOFILE", ZSTD_NOFILE),
        ("ZSTD_NOFORK", ZSTD_NOFORK),
        ("ZSTD_NETWORK", ZSTD_NETWORK),
        ("ZSTD_ERROR", ZSTD_ERROR),
        ("LZ4_NOFILE", LZ4_NOFILE),
        ("LZ4_NOFORK", LZ4_NOFORK),
        ("LZ4_NETWORK", LZ4_NETWORK),
        ("LZ4_ERROR", LZ4_ERROR),
        ("BZIP2_NOFILE", BZIP2_NOFILE),
        ("BZIP2_NOFORK", BZIP2_NOFORK),
        ("BZIP2_NETWORK", BZIP2_NETWORK),
        ("BZIP2_ERROR", BZIP2_ERROR),
        ("DECOMPRESS_NOFORK", DECOMPRESS_NOFORK),
        ("DECOMPRESS_UNKNOWN", DECOMPRESS_UNKNOWN),
        ("COMPRESS_NOFORK", COMPRESS_NOFORK),
        ("COMPRESS_UNKNOWN", COMPRESS_UNKNOWN),
        ("INFO_NOBACKUP", INFO_NOBACKUP),
        ("INFO_NOSERVER", INFO_NOSERVER),
        ("INFO_NOFORK", INFO_NOFORK),
        ("INFO_NETWORK", INFO_NETWORK),
        ("INFO_ERROR", INFO_ERROR),
        ("ANNOTATE_NOBACKUP", ANNOTATE_NOBACKUP),
        ("ANNOTATE_NOSERVER", ANNOTATE_NOSERVER),
        ("ANNOTATE_NOFORK", ANNOTATE_NOFORK),
        ("ANNOTATE_FAILED", ANNOTATE_FAILED),
        ("ANNOTATE_NETWORK", ANNOTATE_NETWORK),
        ("ANNOTATE_ERROR", ANNOTATE_ERROR),
        ("ANNOTATE_UNKNOWN_ACTION", ANNOTATE_UNKNOWN_ACTION),
        ("CONF_GET_NOFORK", CONF_GET_NOFORK),
        ("CONF_GET_NETWORK", CONF_GET_NETWORK),
        ("CONF_GET_ERROR", CONF_GET_ERROR),
        ("CONF_SET_NOFORK", CONF_SET_NOFORK),
        ("CONF_SET_NOREQUEST", CONF_SET_NOREQUEST),
        ("CONF_SET_NOCONFIG_KEY_OR_VALUE", CONF_SET_NOCONFIG_KEY_OR_VALUE),
        ("CONF_SET_NORESPONSE", CONF_SET_NORESPONSE),
        ("CONF_SET_UNKNOWN_CONFIGURATION_KEY", CONF_SET_UNKNOWN_CONFIGURATION_KEY),
        ("CONF_SET_UNKNOWN_SERVER", CONF_SET_UNKNOWN_SERVER),
        ("CONF_SET_NETWORK", CONF_SET_NETWORK),
        ("CONF_SET_ERROR", CONF_SET_ERROR),
        ("MODE_NOSERVER", MODE_NOSERVER),
        ("MODE_NOFORK", MODE_NOFORK),
        ("MODE_FAILED", MODE_FAILED),
        ("MODE_NETWORK", MODE_NETWORK),
        ("MODE_ERROR", MODE_ERROR),
        ("MODE_UNKNOWN_ACTION", MODE_UNKNOWN_ACTION),
        ("PROGRESS_NOSERVER", PROGRESS_NOSERVER),
        ("PROGRESS_NOFORK", PROGRESS_NOFORK),
        ("PROGRESS_NETWORK", PROGRESS_NETWORK),
        ("PROGRESS_ERROR", PROGRESS_ERROR),
        ("LIST_S3_NOSERVER", LIST_S3_NOSERVER),
        ("LIST_S3_NOFORK", LIST_S3_NOFORK),
        ("LIST_S3_WORKFLOW", LIST_S3_WORKFLOW),
        ("LIST_S3_JSON_VALUE", LIST_S3_JSON_VALUE),
        ("LIST_S3_NETWORK", LIST_S3_NETWORK),
        ("LIST_S3_ERROR", LIST_S3_ERROR),
        ("RESTORE_S3_NOSERVER", RESTORE_S3_NOSERVER),
        ("RESTORE_S3_NOFORK", RESTORE_S3_NOFORK),
        ("RESTORE_S3_WORKFLOW", RESTORE_S3_WORKFLOW),
        ("RESTORE_S3_NETWORK", RESTORE_S3_NETWORK),
        ("RESTORE_S3_ERROR", RESTORE_S3_ERROR),
        ("CLUSTER_STATUS_OFF", CLUSTER_STATUS_OFF),
        ("CLUSTER_NOT_ACTIVE", CLUSTER_NOT_ACTIVE),
        ("CLUSTER_FORWARD", CLUSTER_FORWARD),
        ("CHECK_NOSERVER", CHECK_NOSERVER),
    ];
}

#[cfg(test)]
mod tests {
    use super::error_code;

    #[test]
    fn every_error_code_is_named_and_described() {
        // The constants as written in this file: none may be left out of the table.
        let source = include_str!("mod.rs");
        let mut declared = 0;
        for line in source.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("pub const ") else { continue };
            let Some((name, value)) = rest.split_once(": u32 = ") else { continue };
            let value: u32 = value.trim_end_matches(';').parse().unwrap();
            assert!(error_code::NAMES.contains(&(name, value)), "{name} = {value} is missing from NAMES");
            declared += 1;
        }
        assert_eq!(declared, error_code::NAMES.len());
        let mut seen = std::collections::HashSet::new();
        for &(name, code) in error_code::NAMES {
            assert!(seen.insert(code), "{name}: code {code} twice");
            let text = error_code::describe(code).unwrap_or_else(|| panic!("{name} has no description"));
            assert!(text.len() > 15 && !text.contains("the command:"), "{name}: {text:?}");
        }
        assert_eq!(error_code::describe(4242), None);
        assert_eq!(
            error_code::describe(error_code::RESTORE_NOSERVER).unwrap(),
            "restore: no server of that name is configured"
        );
    }
}
