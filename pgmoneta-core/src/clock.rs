//! Time as the rest of the workspace sees it, injectable for tests.

use crate::label::CivilDateTime;

/// An instant: seconds since the Unix epoch, and the local offset from UTC in force then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since 1970-01-01 00:00:00 UTC.
    pub unix: i64,
    /// Local offset from UTC at that instant, in seconds east of UTC.
    pub utc_offset: i32,
}

impl Timestamp {
    /// The local civil time of this instant.
    pub fn local(self) -> CivilDateTime {
        CivilDateTime::from_unix(self.unix, self.utc_offset)
    }
}

/// Where "now" comes from. Retention, labels and recovery targets take a clock so that tests can
/// fix the time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// A clock stuck at one instant.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}
