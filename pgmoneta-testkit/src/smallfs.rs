//! A small tmpfs, mounted for a test that needs a file system to fill up, and unmounted when
//! dropped. Mounting needs root (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs of a fixed size.
#[derive(Debug)]
pub struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `megabytes` on a new directory under /tmp (mode 0777, so that the
    /// `postgres` user can use it too). `None`, through [`crate::require`], when not root: a
    /// failure under `CI=true`, a note elsewhere.
    ///
    /// # Panics
    /// When running as root and `mount` fails.
    pub fn mount(megabytes: u64, for_what: &str) -> Option<SmallFs> {
        let root = nix::unistd::geteuid().is_root().then_some(());
        crate::require(root, "running as root (to mount a small tmpfs)", for_what)?;
        let dir = tempfile::Builder::new().prefix("pgmoneta-smallfs-").tempdir_in("/tmp").expect("a directory");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0777"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs on {}", dir.path().display());
        Some(SmallFs { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with `<path>/filler` until writes fail; returns the filler's path.
    /// Removing the filler gives the space back.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("creating the filler");
        let block = vec![0xA5u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        // What is left is less than a block; take it too.
        while f.write_all(&block[..512]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}
