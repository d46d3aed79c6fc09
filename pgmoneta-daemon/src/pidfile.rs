//! The pidfile, and with it the guarantee that one daemon runs per configuration.
//!
//! Liveness is an exclusive `flock` on the pidfile, held for the daemon's whole life: the kernel
//! drops it the moment the process dies, however it dies, and before anyone reaps it. A
//! supervisor that restarts the daemon right after `kill -9` therefore finds the lock free;
//! a pid written by a dead daemon and since reused by another process never blocks a start; a
//! second daemon on the same configuration finds the lock taken and stops. The pid written in
//! the file is for people and tools; it is never what decides.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{DaemonError, Result};

/// Holds the pidfile's lock for as long as it lives; removes the file when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    lock: Option<Flock<File>>,
    /// The pid a previous, dead daemon left in the file.
    stale: Option<String>,
}

fn file_err(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_owned();
    move |source| DaemonError::File { path, what, source }
}

impl PidFile {
    /// Takes the lock on `path` (created when missing) and writes this process's id into it.
    ///
    /// # Errors
    /// Another daemon holds the lock (its pid is named), or the file cannot be opened or
    /// written.
    pub fn create(path: &Path) -> Result<PidFile> {
        // A few rounds at most: each retry means the file was replaced under us by a daemon
        // that was stopping just then.
        for _ in 0..5 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(file_err(path, ""))?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let holder = text.trim();
                    let holder = if holder.is_empty() { "unknown".to_owned() } else { holder.to_owned() };
                    return Err(DaemonError::AlreadyRunning { path: path.to_owned(), pid: holder });
                }
                Err((_, e)) => return Err(file_err(path, "locking: ")(e.into())),
            };
            // A daemon stopping while we waited may have removed the file we opened; the lock
            // then guards nothing and the path must be opened again.
            let held = lock.metadata().map_err(file_err(path, ""))?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
                _ => continue,
            }
            let mut previous = String::new();
            let _ = lock.read_to_string(&mut previous);
            let mut pidfile = PidFile { path: path.to_owned(), lock: Some(lock), stale: None };
            pidfile.stale = Some(previous.trim().to_owned()).filter(|p| !p.is_empty());
            pidfile.write_own_pid()?;
            return Ok(pidfile);
        }
        Err(DaemonError::PidfileReplaced { path: path.to_owned() })
    }

    /// Writes this process's id into the file (again after going to the background).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_own_pid(&mut self) -> Result<()> {
        let path = &self.path;
        let lock = self.lock.as_mut().expect("held until dropped");
        lock.set_len(0).map_err(file_err(path, ""))?;
        lock.seek(SeekFrom::Start(0)).map_err(file_err(path, ""))?;
        writeln!(lock, "{}", std::process::id()).map_err(file_err(path, ""))?;
        lock.sync_all().map_err(file_err(path, ""))
    }

    /// Logs what the file held before, when a daemon that is gone left it behind (once
    /// logging is set up).
    pub fn report(&self) {
        if let Some(previous) = &self.stale {
            log::warn!(
                "{}: replaced the stale pidfile of pid {previous}, which no longer held its lock (not running)",
                self.path.display()
            );
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so that no other daemon can take a lock on a file that
        // is about to disappear; the lock goes with the descriptor just after.
        let _ = std::fs::remove_file(&self.path);
        drop(self.lock.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_refuses_and_a_dead_holder_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgmoneta.all.pid");
        // A pidfile naming a live process (this one) that holds no lock: not a reason to stop.
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        let pf = PidFile::create(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), std::process::id().to_string());
        // While it is held, a second taker is refused with the holder's pid; nothing changes.
        let err = PidFile::create(&path).unwrap_err();
        match &err {
            DaemonError::AlreadyRunning { pid, .. } => assert_eq!(*pid, std::process::id().to_string()),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("already running"), "{err}");
        assert!(path.exists());
        drop(pf);
        assert!(!path.exists());
        // Free again.
        let again = PidFile::create(&path).unwrap();
        assert!(again.path().exists());
    }

    #[test]
    fn a_killed_holder_frees_the_lock_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgmoneta.all.pid");
        // A child process takes the lock (and keeps it to itself: `-o`) and is killed; it is
        // not reaped before the retry.
        let ready = dir.path().join("ready");
        let mut child = std::process::Command::new("flock")
            .arg("-x")
            .arg("-o")
            .arg(&path)
            .arg("sh")
            .arg("-c")
            .arg(format!("touch {}; sleep 30", ready.display()))
            .spawn()
            .expect("flock(1) from util-linux");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ready.exists() {
            assert!(std::time::Instant::now() < until, "the child never took the lock");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(matches!(PidFile::create(&path).unwrap_err(), DaemonError::AlreadyRunning { .. }));
        let _ = child.kill();
        // Not waited for: the process is a zombie holding no lock.
        let taken = (0..200).find_map(|_| match PidFile::create(&path) {
            Ok(p) => Some(p),
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                None
            }
        });
        assert!(taken.is_some(), "the lock of a killed holder was not released");
        let _ = child.wait();
    }
}
