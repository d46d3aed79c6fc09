//! The system clock with the local UTC offset, for backup labels and retention.

use pgmoneta_core::{Clock, Timestamp};

/// The machine's clock, in the time zone of the process (`TZ` or `/etc/localtime`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        Timestamp { unix, utc_offset: utc_offset(unix) }
    }
}

/// The local offset from UTC, in seconds east, at `unix`.
#[allow(unsafe_code)]
pub fn utc_offset(unix: i64) -> i32 {
    let t: libc::time_t = unix as libc::time_t;
    // SAFETY: `tm` is plain data that `localtime_r` fills in; zeroed is a valid value for it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live, properly aligned locals for the duration of the call;
    // `localtime_r` is the thread-safe form and keeps no pointer to them.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff as i32
    } else {
        0
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemClock.now().unix
}
