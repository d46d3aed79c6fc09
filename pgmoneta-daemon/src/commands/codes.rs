//! The one table from a repository failure to upstream's error code: for each operation, the
//! step that failed (finding the backup a request names, or doing the work) and the kind of
//! [`StorageError`]. The numbers and their meanings are upstream's (`docs/management.md`).

use pgmoneta_storage::StorageError as E;

use crate::error::DaemonError;
use pgmoneta_wire::management::error_code as ec;

/// An operation on a server's backups, as upstream numbers its failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Backup,
    IncrementalBackup,
    ListBackup,
    Restore,
    S3List,
    S3Restore,
    Archive,
    Delete,
    Retain,
    Expunge,
    Info,
    Annotate,
    Verify,
}

/// Which step of the operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Finding the backup the request names (or, for an incremental backup, its parent).
    Find,
    /// The work itself.
    Run,
}

impl Op {
    /// The workflow name upstream reports a failure in, where it names one.
    pub(super) fn workflow(self) -> &'static str {
        match self {
            Op::Backup => "Backup",
            Op::IncrementalBackup => "Incremental backup",
            Op::ListBackup => "List backup",
            Op::Restore => "Restore",
            Op::S3List => "S3 list",
            Op::S3Restore => "S3 restore",
            Op::Archive => "Archive",
            Op::Delete => "Delete backup",
            Op::Retain => "Retain",
            Op::Expunge => "Expunge",
            Op::Info => "Info",
            Op::Annotate => "Annotate",
            Op::Verify => "Verify",
        }
    }
}

/// Upstream's code for `e`, failed in `step` of `op`.
pub(super) fn code(op: Op, step: Step, e: &E) -> u32 {
    use Op::*;
    use Step::*;
    match (op, step, e) {
        (Backup | IncrementalBackup, _, E::NothingToBuildOn { .. }) => ec::BACKUP_NOBACKUPS,
        (Backup | IncrementalBackup, _, E::AlreadyHasChild { .. }) => ec::BACKUP_ALREADYCHILD,
        (Backup | IncrementalBackup, Find, E::NotFound(_)) => ec::INCREMENTAL_BACKUP_SETUP,
        (Backup | IncrementalBackup, Find, _) => ec::BACKUP_ERROR,
        (Backup, Run, E::Connection { .. }) => ec::BACKUP_NETWORK,
        (Backup, Run, _) => ec::BACKUP_EXECUTE,
        (IncrementalBackup, Run, E::Connection { .. }) => ec::INCREMENTAL_BACKUP_SETUP,
        (IncrementalBackup, Run, _) => ec::INCREMENTAL_BACKUP_EXECUTE,

        (ListBackup, _, _) => ec::LIST_BACKUP_BACKUPS,

        (Restore, _, E::NotFound(_)) => ec::RESTORE_NOBACKUP,
        (Restore, _, e) if e.is_out_of_space() => ec::RESTORE_NODISK,
        (Restore, _, E::NotEmpty { .. } | E::Unreachable(_) | E::Invalid(_)) => ec::RESTORE_SETUP,
        (Restore, _, _) => ec::RESTORE_EXECUTE,
        (S3List, _, _) => ec::LIST_S3_NETWORK,
        (S3Restore, _, E::Remote { .. }) => ec::RESTORE_S3_NETWORK,
        (S3Restore, _, _) => ec::RESTORE_S3_ERROR,

        (Archive, Find, E::NotFound(_) | E::Unreachable(_)) => ec::ARCHIVE_NOBACKUP,
        (Archive, Find, _) => ec::ARCHIVE_ERROR,
        (Archive, Run, E::NotEmpty { .. }) => ec::ARCHIVE_SETUP,
        (Archive, Run, _) => ec::ARCHIVE_EXECUTE,

        (Delete, _, E::NotFound(_)) => ec::DELETE_BACKUP_NOBACKUP,
        (Delete, Find, _) => ec::DELETE_BACKUP_NOBACKUP,
        (Delete, Run, E::Retained { .. }) => ec::DELETE_BACKUP_RETAINED,
        (Delete, Run, E::RollUp { .. }) => ec::DELETE_BACKUP_ROLLUP,
        (Delete, Run, _) => ec::DELETE_BACKUP_EXECUTE,

        (Retain, Find, _) => ec::RETAIN_NOBACKUP,
        (Retain, Run, _) => ec::RETAIN_ERROR,
        (Expunge, Find, _) => ec::EXPUNGE_NOBACKUP,
        (Expunge, Run, _) => ec::EXPUNGE_ERROR,
        (Info, _, _) => ec::INFO_NOBACKUP,
        (Annotate, Find, _) => ec::ANNOTATE_NOBACKUP,
        (Annotate, Run, _) => ec::ANNOTATE_FAILED,
        (Verify, Find, _) => ec::VERIFY_SETUP,
        (Verify, Run, _) => ec::VERIFY_EXECUTE,
    }
}

/// Upstream's code for a failure of the daemon's own part of `op` (reaching the server,
/// the master key).
pub(super) fn daemon_code(op: Op, e: &DaemonError) -> u32 {
    match (op, e) {
        (Op::Backup | Op::IncrementalBackup, DaemonError::NoMasterKey) => ec::BACKUP_SETUP,
        (Op::IncrementalBackup, _) => ec::INCREMENTAL_BACKUP_SETUP,
        (Op::Backup, _) => ec::BACKUP_NETWORK,
        (op, _) => code(op, Step::Run, &E::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_upstreams_numbers() {
        let missing = E::NotFound("no backup".into());
        let retained = E::Retained { label: "20261206000000".into() };
        let roll = E::RollUp { label: "a".into(), child: "b".into(), source: Box::new(E::Cancelled) };
        let full = E::NoSpace { path: "/r".into(), needed: 2, available: 1 };
        let connection = E::Connection {
            server: "primary".into(),
            what: "connecting",
            source: pgmoneta_wire::WireError::Protocol("refused".into()),
        };
        // The numbers as upstream's clients know them.
        let cases: &[(Op, Step, &E, u32)] = &[
            (Op::Backup, Step::Run, &connection, 109),
            (Op::IncrementalBackup, Step::Run, &connection, 200),
            (Op::Backup, Step::Run, &E::Cancelled, 107),
            (Op::IncrementalBackup, Step::Run, &E::Cancelled, 201),
            (Op::IncrementalBackup, Step::Find, &missing, 200),
            (Op::Restore, Step::Run, &missing, 600),
            (Op::Restore, Step::Run, &full, 601),
            (Op::Delete, Step::Run, &retained, 506),
            (Op::Delete, Step::Run, &roll, 507),
            (Op::Delete, Step::Find, &missing, 505),
            (Op::Archive, Step::Find, &missing, 900),
            (Op::Verify, Step::Run, &E::Cancelled, 802),
        ];
        for (op, step, e, expected) in cases {
            assert_eq!(code(*op, *step, e), *expected, "{op:?} {step:?} {e}");
        }
    }
}
