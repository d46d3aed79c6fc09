//! Finding PostgreSQL binaries and their version.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgmoneta_core::PgVersion;

use crate::{Result, TestkitError};

/// A PostgreSQL installation: where its binaries are and which version they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgInstall {
    bindir: PathBuf,
    version: PgVersion,
    version_string: String,
}

/// Installed `/usr/lib/postgresql/<major>/bin` directories holding `program`, newest first.
fn debian_bindirs(program: &str) -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join(program).is_file().then_some((major, bin))
        })
        .collect();
    found.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    found.into_iter().map(|(_, p)| p).collect()
}

impl PgInstall {
    /// The installation tests should use: `PGMONETA_TEST_PG_BIN`, else the newest
    /// `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
    ///
    /// # Errors
    /// [`TestkitError::NoInstall`] when none of those has a working `postgres`.
    pub fn discover() -> Result<PgInstall> {
        if let Some(dir) = std::env::var_os("PGMONETA_TEST_PG_BIN") {
            return PgInstall::at(Path::new(&dir));
        }
        if let Some(dir) = debian_bindirs("postgres").into_iter().next() {
            return PgInstall::at(&dir);
        }
        let out = Command::new("pg_config").arg("--bindir").output().map_err(|e| {
            TestkitError::NoInstall(format!(
                "PGMONETA_TEST_PG_BIN is not set, /usr/lib/postgresql/*/bin has no server and pg_config cannot run ({e})"
            ))
        })?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        PgInstall::at(Path::new(&dir))
    }

    /// The installation whose server binaries are in `bindir`.
    ///
    /// # Errors
    /// [`TestkitError::NoInstall`] when `bindir/postgres` is missing, does not run, or reports a
    /// version outside 14 to 18.
    pub fn at(bindir: &Path) -> Result<PgInstall> {
        let postgres = bindir.join("postgres");
        let out = Command::new(&postgres)
            .arg("--version")
            .output()
            .map_err(|e| TestkitError::NoInstall(format!("cannot run {}: {e}", postgres.display())))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // "postgres (PostgreSQL) 17.10" or "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let version_string = text
            .split(") ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| {
                TestkitError::NoInstall(format!("unexpected version output {text:?} from {}", postgres.display()))
            })?
            .to_owned();
        let version =
            PgVersion::from_version_string(&version_string).map_err(|e| TestkitError::NoInstall(e.to_string()))?;
        Ok(PgInstall { bindir: bindir.to_owned(), version, version_string })
    }

    /// The directory of the server binaries.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The major version.
    pub fn version(&self) -> PgVersion {
        self.version
    }

    /// The full version, like `17.10`.
    pub fn version_string(&self) -> &str {
        &self.version_string
    }

    /// Path of a server program (`initdb`, `pg_ctl`, `postgres`).
    pub fn server_program(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// A program of this same major (`pg_verifybackup`, `pg_waldump`, `pg_combinebackup`...):
    /// from this installation's directory, else from the programs `scripts/setup.sh` unpacks
    /// for the majors whose servers come without them (`PGMONETA_PG_TOOLS`, by default
    /// `/var/cache/pgmoneta-rs/postgresql-tools`, then `<major>/bin`), else from Debian's
    /// package of that major. `None` when none has it.
    pub fn same_major_program(&self, name: &str) -> Option<PathBuf> {
        let major = self.version.major();
        let tools = std::env::var_os("PGMONETA_PG_TOOLS")
            .map_or_else(|| PathBuf::from("/var/cache/pgmoneta-rs/postgresql-tools"), PathBuf::from);
        [
            self.bindir.clone(),
            tools.join(major.to_string()).join("bin"),
            PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        ]
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
    }

    /// Path of a client program (`psql`, `pgbench`, `pg_waldump`...): from this installation when
    /// it has one, else from the newest installed PostgreSQL, else the bare name for `PATH`.
    pub fn client_program(&self, name: &str) -> PathBuf {
        let own = self.bindir.join(name);
        if own.is_file() {
            return own;
        }
        debian_bindirs(name).into_iter().next().map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
    }
}
