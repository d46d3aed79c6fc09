//! Running PostgreSQL programs, as the `postgres` user when we are root.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use nix::unistd::{Gid, Uid, User};

use crate::{Result, TestkitError};

/// Environment variables that would redirect libpq-based tools to another server.
const PG_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGOPTIONS",
    "PGDATA",
    "PGREQUIREAUTH",
    "PGCHANNELBINDING",
];

/// The operating system user that owns and runs clusters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunAs {
    /// `Some` when we are root and must switch to the `postgres` user.
    pub switch: Option<(Uid, Gid)>,
}

impl RunAs {
    pub(crate) fn detect() -> Result<RunAs> {
        if !Uid::effective().is_root() {
            return Ok(RunAs { switch: None });
        }
        let user = User::from_name("postgres").ok().flatten().ok_or_else(|| {
            TestkitError::NoInstall("running as root, but there is no 'postgres' user to run PostgreSQL as".to_owned())
        })?;
        Ok(RunAs { switch: Some((user.uid, user.gid)) })
    }

    /// Hands `path` (recursively, following tablespace links) to the cluster's user.
    pub(crate) fn own(&self, path: &Path) -> Result<()> {
        let Some((uid, gid)) = self.switch else { return Ok(()) };
        chown_tree(path, uid, gid)
    }

    /// A command for a PostgreSQL program: cleaned environment, run as the cluster's user, in
    /// `cwd` (which that user can enter).
    pub(crate) fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        cmd.env("LC_ALL", "C").env("TZ", "UTC").current_dir(cwd).stdin(Stdio::null());
        if let Some((uid, gid)) = self.switch {
            use std::os::unix::process::CommandExt;
            // std drops supplementary groups before setuid when started as root.
            cmd.uid(uid.as_raw()).gid(gid.as_raw()).env("HOME", cwd).env("USER", "postgres");
        }
        cmd
    }
}

fn chown_tree(path: &Path, uid: Uid, gid: Gid) -> Result<()> {
    let io = |what, source| TestkitError::Io { what, path: path.to_owned(), source };
    let meta = std::fs::symlink_metadata(path).map_err(|e| io("cannot inspect", e))?;
    nix::unistd::fchownat(None, path, Some(uid), Some(gid), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| io("cannot change the owner of", e.into()))?;
    if meta.file_type().is_symlink() {
        // Tablespace links point at directories the cluster must own as well.
        if path.parent().and_then(Path::file_name).is_some_and(|n| n == "pg_tblspc") {
            let target = std::fs::read_link(path).map_err(|e| io("cannot read link", e))?;
            let target = if target.is_absolute() { target } else { path.parent().unwrap_or(path).join(target) };
            if target.is_dir() {
                chown_tree(&target, uid, gid)?;
            }
        }
        return Ok(());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| io("cannot list", e))? {
            let entry = entry.map_err(|e| io("cannot list", e))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Runs `cmd` to completion; fails with what it printed unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let line = format!("{cmd:?}");
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().map_err(|source| TestkitError::Io {
        what: "cannot start",
        path: cmd.get_program().into(),
        source,
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(TestkitError::Command {
            command: line,
            status: out.status.to_string(),
            output: format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)),
        })
    }
}
