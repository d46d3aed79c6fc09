//! Backup labels and calendar arithmetic.
//!
//! A backup is named by the local wall-clock time it started, `YYYYMMDDhhmmss`; names sort in time
//! order as plain strings. PostgreSQL sees the label `pgmoneta_<label>`.

use std::fmt;
use std::str::FromStr;

use crate::error::CoreError;

/// A date and time on the proleptic Gregorian calendar, without a time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDateTime {
    /// Year, 1 to 9999.
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 59.
    pub second: u8,
}

/// Days in `month` of `year`.
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a civil date (negative before). Works by counting from March 1st, so
/// that the leap day is the last day of the counted year.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let month_from_march = (month + 9) % 12; // March = 0
    let day_of_year = (153 * i64::from(month_from_march) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097; // 0..=146096
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl CivilDateTime {
    /// Checks the fields and builds the value.
    ///
    /// # Errors
    /// A message naming the field out of range.
    pub fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Result<CivilDateTime, &'static str> {
        if !(1..=9999).contains(&year) {
            return Err("year must be from 1 to 9999");
        }
        if !(1..=12).contains(&month) {
            return Err("month must be from 01 to 12");
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err("day does not exist in that month");
        }
        if hour > 23 {
            return Err("hour must be from 00 to 23");
        }
        if minute > 59 {
            return Err("minute must be from 00 to 59");
        }
        if second > 59 {
            return Err("second must be from 00 to 59");
        }
        Ok(CivilDateTime { year, month, day, hour, minute, second })
    }

    /// The civil time `unix_seconds` after the epoch, shifted by `utc_offset_seconds` (east of UTC
    /// positive). Years outside 1 to 9999 are clamped to the range's ends.
    pub fn from_unix(unix_seconds: i64, utc_offset_seconds: i32) -> CivilDateTime {
        let t = unix_seconds.saturating_add(i64::from(utc_offset_seconds));
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        if year < 1 {
            return CivilDateTime { year: 1, month: 1, day: 1, hour: 0, minute: 0, second: 0 };
        }
        if year > 9999 {
            return CivilDateTime { year: 9999, month: 12, day: 31, hour: 23, minute: 59, second: 59 };
        }
        CivilDateTime {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
        }
    }

    /// Seconds since the epoch of this civil time read at `utc_offset_seconds`.
    pub fn to_unix(self, utc_offset_seconds: i32) -> i64 {
        let days = days_from_civil(i64::from(self.year), u32::from(self.month), u32::from(self.day));
        days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)
            - i64::from(utc_offset_seconds)
    }

    /// Day of the week, 0 = Monday to 6 = Sunday.
    pub fn weekday(self) -> u8 {
        let days = days_from_civil(i64::from(self.year), u32::from(self.month), u32::from(self.day));
        // 1970-01-01 was a Thursday (3).
        (days + 3).rem_euclid(7) as u8
    }

    /// Parses `YYYY-MM-DD HH:MM:SS`, the form of recovery time targets.
    ///
    /// # Errors
    /// [`CoreError::InvalidLabel`]-style message through `Err(&str)` naming what is wrong.
    pub fn parse_iso(text: &str) -> Result<CivilDateTime, &'static str> {
        let b = text.as_bytes();
        let shape_ok = b.len() == 19
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b' ' || *c == b'T',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            });
        if !shape_ok {
            return Err("expected YYYY-MM-DD HH:MM:SS");
        }
        let n = |r: std::ops::Range<usize>| text[r].parse::<u16>().unwrap_or(0);
        CivilDateTime::new(n(0..4), n(5..7) as u8, n(8..10) as u8, n(11..13) as u8, n(14..16) as u8, n(17..19) as u8)
    }
}

impl fmt::Display for CivilDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The name of a backup, `YYYYMMDDhhmmss` in local time at the start of the backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupLabel(CivilDateTime);

impl BackupLabel {
    /// The label for a civil time.
    pub const fn new(at: CivilDateTime) -> BackupLabel {
        BackupLabel(at)
    }

    /// The civil time the label names.
    pub const fn datetime(self) -> CivilDateTime {
        self.0
    }

    /// The label PostgreSQL is given in `BASE_BACKUP`, `pgmoneta_<label>`.
    pub fn postgres_label(self) -> String {
        format!("pgmoneta_{self}")
    }
}

impl fmt::Display for BackupLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(f, "{:04}{:02}{:02}{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
    }
}

impl FromStr for BackupLabel {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<BackupLabel, CoreError> {
        let bad = |why| CoreError::InvalidLabel { input: s.to_owned(), why };
        if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("a label is 14 digits, YYYYMMDDhhmmss"));
        }
        let n = |r: std::ops::Range<usize>| s[r].parse::<u16>().unwrap_or(0);
        CivilDateTime::new(n(0..4), n(4..6) as u8, n(6..8) as u8, n(8..10) as u8, n(10..12) as u8, n(12..14) as u8)
            .map(BackupLabel)
            .map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels() {
        let l: BackupLabel = "20261128093015".parse().unwrap();
        assert_eq!(l.to_string(), "20261128093015");
        assert_eq!(l.postgres_label(), "pgmoneta_20261128093015");
        assert_eq!(l.datetime().to_string(), "2026-11-28 09:30:15");
        assert!("20240229000000".parse::<BackupLabel>().is_ok());
        for (bad, why) in [
            ("2026112809301", "14 digits"),
            ("2026112809301x", "14 digits"),
            ("20230229000000", "day does not exist"),
            ("20261328093015", "month"),
            ("20261128243015", "hour"),
            ("20261128096015", "minute"),
            ("20261128093060", "second"),
            ("00001128093015", "year"),
        ] {
            let err = bad.parse::<BackupLabel>().unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
        let a: BackupLabel = "20250101000000".parse().unwrap();
        let b: BackupLabel = "20250101000001".parse().unwrap();
        assert!(a < b);
    }

    #[test]
    fn unix_conversion_known_points() {
        assert_eq!(CivilDateTime::from_unix(0, 0).to_string(), "1970-01-01 00:00:00");
        assert_eq!(CivilDateTime::from_unix(951_782_400, 0).to_string(), "2000-02-29 00:00:00");
        assert_eq!(CivilDateTime::from_unix(1_700_000_000, 3600).to_string(), "2023-11-14 23:13:20");
        assert_eq!(CivilDateTime::from_unix(-1, 0).to_string(), "1969-12-31 23:59:59");
        assert_eq!(CivilDateTime::from_unix(0, 0).weekday(), 3);
        assert_eq!(CivilDateTime::parse_iso("2026-11-30 00:00:00").unwrap().weekday(), 0);
        assert!(CivilDateTime::parse_iso("2026-11-30 0:00:00").is_err());
        assert!(CivilDateTime::parse_iso("2026-02-30 00:00:00").is_err());
    }

    proptest! {
        #[test]
        fn unix_roundtrip(t in -62_135_596_800i64..253_402_300_799, off in -50_400i32..50_400) {
            let c = CivilDateTime::from_unix(t, off);
            prop_assume!(c.year > 1 && c.year < 9999);
            prop_assert_eq!(c.to_unix(off), t);
            let label = BackupLabel::new(c);
            prop_assert_eq!(label.to_string().parse::<BackupLabel>().unwrap(), label);
        }
    }
}
