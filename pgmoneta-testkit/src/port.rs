//! TCP port reservation shared by every test process on the machine.
//!
//! Binding port 0 and closing the socket hands out a free port, but another process may take it
//! before PostgreSQL binds it. Reservations are therefore lock files, `<port>.lock` created with
//! `O_EXCL` in one directory, holding the owner's pid and the cluster directory. A lock whose owner
//! is dead is stale: its cluster (if still running) is stopped and the lock taken over.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::{Result, TestkitError};

const LOCK_DIR: &str = "pgmoneta-testkit-ports";
const FIRST_PORT: u16 = 21_000;
const PORT_RANGE: u16 = 8_000;

/// A reserved port; the reservation ends on drop.
#[derive(Debug)]
pub(crate) struct PortLock {
    port: u16,
    path: PathBuf,
}

impl PortLock {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Records the cluster directory, so that a later process can clean up after a crash.
    pub(crate) fn record_cluster(&self, dir: &Path) {
        let _ = fs::write(&self.path, format!("{}\n{}\n", std::process::id(), dir.display()));
    }
}

impl Drop for PortLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn lock_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(LOCK_DIR);
    fs::create_dir_all(&dir).map_err(|source| TestkitError::Io { what: "cannot create", path: dir.clone(), source })?;
    // Shared by every user that runs tests on the machine.
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777));
    Ok(dir)
}

fn pid_alive(pid: i32) -> bool {
    // Signal 0 checks existence without sending anything.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Removes `lock` if its owner is dead, stopping a cluster it left behind. Returns whether the
/// port is free to take now.
fn clear_if_stale(lock: &Path, stop_cluster: &dyn Fn(&Path)) -> bool {
    let Ok(text) = fs::read_to_string(lock) else { return false };
    let mut lines = text.lines();
    let Some(pid) = lines.next().and_then(|l| l.trim().parse::<i32>().ok()) else {
        // Being written right now, or garbage; only garbage stays that way.
        return false;
    };
    if pid_alive(pid) {
        return false;
    }
    if let Some(dir) = lines.next().filter(|l| !l.is_empty()) {
        stop_cluster(Path::new(dir));
    }
    fs::remove_file(lock).is_ok()
}

/// Clears every stale lock, stopping and removing the clusters of test processes that died.
pub(crate) fn sweep_stale(stop_cluster: &dyn Fn(&Path)) -> Result<()> {
    let dir = lock_dir()?;
    for entry in
        fs::read_dir(&dir).map_err(|source| TestkitError::Io { what: "cannot list", path: dir.clone(), source })?
    {
        let Ok(entry) = entry else { continue };
        if entry.file_name().to_string_lossy().ends_with(".lock") {
            clear_if_stale(&entry.path(), stop_cluster);
        }
    }
    Ok(())
}

/// Reserves a port no other test cluster uses and nothing currently listens on.
pub(crate) fn reserve(stop_cluster: &dyn Fn(&Path)) -> Result<PortLock> {
    let dir = lock_dir()?;
    // Start at a different place in each process to make collisions rare.
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    for i in 0..PORT_RANGE {
        let port = FIRST_PORT + (seed.wrapping_add(i) % PORT_RANGE);
        let path = dir.join(format!("{port}.lock"));
        let created = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if clear_if_stale(&path, stop_cluster) {
                    OpenOptions::new().write(true).create_new(true).open(&path).ok()
                } else {
                    None
                }
            }
            Err(source) => return Err(TestkitError::Io { what: "cannot create", path, source }),
        };
        let Some(mut file) = created else { continue };
        let _ = writeln!(file, "{}", std::process::id());
        let lock = PortLock { port, path };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(lock);
        }
    }
    Err(TestkitError::NoPort)
}
