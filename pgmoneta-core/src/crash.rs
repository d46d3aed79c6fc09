//! Crash points: named places where a test build can make the process die exactly as
//! `kill -9` would, to prove that every stage of an operation leaves the repository in a
//! state a restart recovers from.
//!
//! They exist only with the `crash-points` feature, which the workspace turns on through
//! dev-dependencies: binaries built for `cargo test` have them, release builds do not (there
//! [`point`] is an empty inline function). In a test build the environment variable
//! `PGMONETA_CRASH_POINT=<name>[@<n>]` makes the process send itself SIGKILL the `n`-th time
//! (the first by default) it reaches the point `<name>`; nothing else changes.

/// The names of every crash point, as the code reaches them.
pub const POINTS: &[&str] = &[
    "backup:streaming",
    "backup:file-stored",
    "backup:before-info",
    "backup:linking",
    "delete:moving",
    "delete:before-remove",
    "wal:before-rename",
    "wal:after-rename",
    "upload:file",
];

/// Reached a crash point: in a test build configured for it, the process dies here.
#[inline]
pub fn point(name: &'static str) {
    #[cfg(feature = "crash-points")]
    armed::reach(name);
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}

#[cfg(feature = "crash-points")]
mod armed {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    fn spec() -> Option<&'static (String, u64)> {
        SPEC.get_or_init(|| {
            let v = std::env::var("PGMONETA_CRASH_POINT").ok()?;
            let (name, nth) = match v.split_once('@') {
                Some((n, c)) => (n.to_owned(), c.parse().unwrap_or(1)),
                None => (v, 1),
            };
            assert!(super::POINTS.contains(&name.as_str()), "PGMONETA_CRASH_POINT={name}: no such crash point");
            Some((name, nth.max(1)))
        })
        .as_ref()
    }

    pub(super) fn reach(name: &'static str) {
        let Some((want, nth)) = spec() else { return };
        if want != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *nth {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "pgmoneta: crash point {name}@{nth} reached: SIGKILL");
        let _ = err.flush();
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
