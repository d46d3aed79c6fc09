//! PostgreSQL major versions.

use std::fmt;

use crate::error::CoreError;

/// A supported PostgreSQL major version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum PgVersion {
    /// PostgreSQL 14.
    V14,
    /// PostgreSQL 15.
    V15,
    /// PostgreSQL 16.
    V16,
    /// PostgreSQL 17.
    V17,
    /// PostgreSQL 18.
    V18,
}

impl PgVersion {
    /// Every supported version, oldest first.
    pub const ALL: [PgVersion; 5] = [PgVersion::V14, PgVersion::V15, PgVersion::V16, PgVersion::V17, PgVersion::V18];

    /// The version for a major number (`15`).
    ///
    /// # Errors
    /// [`CoreError::UnsupportedVersion`] outside 14 to 18.
    pub fn from_major(major: u32) -> Result<PgVersion, CoreError> {
        Ok(match major {
            14 => PgVersion::V14,
            15 => PgVersion::V15,
            16 => PgVersion::V16,
            17 => PgVersion::V17,
            18 => PgVersion::V18,
            _ => return Err(CoreError::UnsupportedVersion { major }),
        })
    }

    /// The major number.
    pub const fn major(self) -> u32 {
        match self {
            PgVersion::V14 => 14,
            PgVersion::V15 => 15,
            PgVersion::V16 => 16,
            PgVersion::V17 => 17,
            PgVersion::V18 => 18,
        }
    }

    /// Version and minor release from `server_version_num` (`150004` is 15.4).
    ///
    /// # Errors
    /// [`CoreError::InvalidVersionNum`] when the text is not a number,
    /// [`CoreError::UnsupportedVersion`] outside 14 to 18.
    pub fn from_server_version_num(text: &str) -> Result<(PgVersion, u32), CoreError> {
        let num: u32 = text.trim().parse().map_err(|_| CoreError::InvalidVersionNum { input: text.to_owned() })?;
        // From version 10 on, the number is major * 10000 + minor.
        Ok((PgVersion::from_major(num / 10_000)?, num % 10_000))
    }

    /// The version from a version string as `server_version` reports it (`15.4`,
    /// `15.18 (Debian 15.18-0+deb12u1)`, `18beta1`).
    ///
    /// # Errors
    /// [`CoreError::InvalidVersion`] when the text does not start with a number,
    /// [`CoreError::UnsupportedVersion`] outside 14 to 18.
    pub fn from_version_string(text: &str) -> Result<PgVersion, CoreError> {
        let digits: &str = text.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap_or("");
        let major = digits.parse::<u32>().map_err(|_| CoreError::InvalidVersion { input: text.to_owned() })?;
        PgVersion::from_major(major)
    }

    /// Whether the server has native incremental backups and WAL summaries (17+).
    pub fn has_incremental_backup(self) -> bool {
        self >= PgVersion::V17
    }

    /// Whether `BASE_BACKUP` takes the parenthesised option list (15+) rather than bare keywords.
    pub fn has_new_base_backup_syntax(self) -> bool {
        self >= PgVersion::V15
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.major())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_server_version_num() {
        assert_eq!(PgVersion::from_server_version_num("150004").unwrap(), (PgVersion::V15, 4));
        assert_eq!(PgVersion::from_server_version_num("140023").unwrap(), (PgVersion::V14, 23));
        assert_eq!(PgVersion::from_server_version_num("180000").unwrap(), (PgVersion::V18, 0));
        assert_eq!(PgVersion::from_server_version_num(" 170010\n").unwrap(), (PgVersion::V17, 10));
        let err = PgVersion::from_server_version_num("130011").unwrap_err();
        assert_eq!(err.to_string(), "PostgreSQL 13 is not supported: supported versions are 14 to 18");
        assert!(PgVersion::from_server_version_num("15.4").is_err());
        assert!(PgVersion::from_server_version_num("").is_err());
    }

    #[test]
    fn from_version_string() {
        assert_eq!(PgVersion::from_version_string("15.18 (Debian 15.18-0+deb12u1)").unwrap(), PgVersion::V15);
        assert_eq!(PgVersion::from_version_string("17.10").unwrap(), PgVersion::V17);
        assert_eq!(PgVersion::from_version_string("18beta1").unwrap(), PgVersion::V18);
        assert!(matches!(PgVersion::from_version_string("12.3"), Err(CoreError::UnsupportedVersion { major: 12 })));
        assert!(matches!(PgVersion::from_version_string("devel"), Err(CoreError::InvalidVersion { .. })));
        assert!(matches!(PgVersion::from_version_string(""), Err(CoreError::InvalidVersion { .. })));
    }

    #[test]
    fn majors_roundtrip_and_order() {
        for v in PgVersion::ALL {
            assert_eq!(PgVersion::from_major(v.major()).unwrap(), v);
        }
        assert!(PgVersion::V14 < PgVersion::V18);
        assert!(PgVersion::V17.has_incremental_backup() && !PgVersion::V16.has_incremental_backup());
        assert!(PgVersion::V15.has_new_base_backup_syntax() && !PgVersion::V14.has_new_base_backup_syntax());
    }
}
