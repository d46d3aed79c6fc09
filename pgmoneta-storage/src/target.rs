//! Recovery targets: upstream's position tokens (`current`, `lsn=`, `time=`, `xid=`, `name=`,
//! `inclusive=`, `timeline=`, `action=`, `primary`/`replica`) and the settings they become.

use crate::error::{Result, StorageError};

/// Where recovery stops: upstream's position tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryTarget {
    /// `current`/`immediate`, `name=`, `xid=`, `lsn=`, `time=`: at most one.
    pub target: Option<TargetKind>,
    /// `inclusive=`.
    pub inclusive: Option<bool>,
    /// `timeline=`.
    pub timeline: Option<String>,
    /// `action=` (`pause`, `promote`, `shutdown`).
    pub action: Option<String>,
    /// `replica` (a standby) rather than `primary` (the default).
    pub replica: bool,
    /// Other `key=value` tokens, written as settings as they are.
    pub other: Vec<(String, String)>,
}

/// A recovery target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// A named restore point.
    Name(String),
    /// A transaction id.
    Xid(String),
    /// An LSN.
    Lsn(pgmoneta_core::Lsn),
    /// A time, as PostgreSQL reads it.
    Time(String),
}

impl RecoveryTarget {
    /// Parses upstream's comma-separated position string.
    ///
    /// # Errors
    /// [`StorageError::Invalid`] for two targets, an unknown bare word, a bad LSN or flag.
    pub fn parse(position: &str) -> Result<RecoveryTarget> {
        let mut t = RecoveryTarget::default();
        let bad = |m: String| StorageError::Invalid(format!("restore position {position:?}: {m}"));
        for token in position.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = match token.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
                None => (token, None),
            };
            let target = match (k, v) {
                ("current" | "immediate", None) => Some(TargetKind::Immediate),
                ("name", Some(v)) => Some(TargetKind::Name(v)),
                ("xid", Some(v)) => {
                    v.parse::<u64>().map_err(|_| bad(format!("xid {v:?} is not a transaction id")))?;
                    Some(TargetKind::Xid(v))
                }
                ("lsn", Some(v)) => Some(TargetKind::Lsn(v.parse().map_err(|e| bad(format!("lsn: {e}")))?)),
                ("time", Some(v)) => Some(TargetKind::Time(v)),
                // A bare `inclusive`, as upstream accepts it.
                ("inclusive", None) => {
                    t.inclusive = Some(true);
                    None
                }
                ("inclusive", Some(v)) => {
                    t.inclusive = Some(match v.as_str() {
                        "on" | "true" | "yes" | "1" => true,
                        "off" | "false" | "no" | "0" => false,
                        _ => return Err(bad(format!("inclusive={v} is not on or off"))),
                    });
                    None
                }
                ("timeline", Some(v)) => {
                    t.timeline = Some(v);
                    None
                }
                ("action", Some(v)) => {
                    if !matches!(v.as_str(), "pause" | "promote" | "shutdown") {
                        return Err(bad(format!("action={v}: expected pause, promote or shutdown")));
                    }
                    t.action = Some(v);
                    None
                }
                ("primary", None) => {
                    t.replica = false;
                    None
                }
                ("replica", None) => {
                    t.replica = true;
                    None
                }
                (k, Some(v)) => {
                    t.other.push((k.to_owned(), v));
                    None
                }
                (k, None) => return Err(bad(format!("unknown word {k:?}"))),
            };
            if let Some(target) = target {
                if t.target.is_some() {
                    return Err(bad("more than one recovery target".into()));
                }
                t.target = Some(target);
            }
        }
        Ok(t)
    }

    /// The settings recovery needs, `key = 'value'` lines. `restore_command` fetches WAL from
    /// the repository (required by PostgreSQL for targeted recovery).
    pub fn settings(
        &self,
        restore_command: Option<&str>,
        primary_conninfo: Option<&str>,
        slot: Option<&str>,
    ) -> String {
        let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
        let mut s = String::from("# Written by pgmoneta restore\n");
        if let Some(c) = restore_command {
            s += &format!("restore_command = {}\n", quote(c));
        }
        match &self.target {
            Some(TargetKind::Immediate) => s += "recovery_target = 'immediate'\n",
            Some(TargetKind::Name(n)) => s += &format!("recovery_target_name = {}\n", quote(n)),
            Some(TargetKind::Xid(x)) => s += &format!("recovery_target_xid = {}\n", quote(x)),
            Some(TargetKind::Lsn(l)) => s += &format!("recovery_target_lsn = '{l}'\n"),
            Some(TargetKind::Time(t)) => s += &format!("recovery_target_time = {}\n", quote(t)),
            None => {}
        }
        if let Some(i) = self.inclusive {
            s += &format!("recovery_target_inclusive = {}\n", if i { "on" } else { "off" });
        }
        if let Some(tl) = &self.timeline {
            s += &format!("recovery_target_timeline = {}\n", quote(tl));
        }
        if self.target.is_some() {
            // Upstream's default is pause; a primary restore should come up usable.
            let action = self.action.as_deref().unwrap_or(if self.replica { "pause" } else { "promote" });
            s += &format!("recovery_target_action = '{action}'\n");
        }
        if self.replica {
            if let Some(c) = primary_conninfo {
                s += &format!("primary_conninfo = {}\n", quote(c));
            }
            if let Some(slot) = slot {
                s += &format!("primary_slot_name = {}\n", quote(slot));
            }
        }
        for (k, v) in &self.other {
            s += &format!("{k} = {}\n", quote(v));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_like_upstream() {
        let t = RecoveryTarget::parse("lsn=0/3000060,inclusive=off,timeline=current,action=promote").unwrap();
        assert_eq!(t.target, Some(TargetKind::Lsn("0/3000060".parse().unwrap())));
        assert_eq!(t.inclusive, Some(false));
        let s = t.settings(Some("cmd %f %p"), None, None);
        assert!(s.contains("restore_command = 'cmd %f %p'\n"), "{s}");
        assert!(s.contains("recovery_target_lsn = '0/3000060'\n") && s.contains("recovery_target_inclusive = off\n"));
        assert!(s.contains("recovery_target_action = 'promote'\n"));
        let t = RecoveryTarget::parse("name=before it's gone,replica").unwrap();
        assert!(t.replica);
        let s = t.settings(Some("c"), Some("host=h port=5432"), Some("slot"));
        assert!(s.contains("recovery_target_name = 'before it''s gone'\n"), "{s}");
        assert!(s.contains("primary_slot_name = 'slot'\n"));
        assert_eq!(RecoveryTarget::parse("current").unwrap().target, Some(TargetKind::Immediate));
        for bad in ["lsn=0/1,xid=5", "xid=abc", "lsn=zz", "inclusive=maybe", "frobnicate", "action=explode"] {
            assert!(RecoveryTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
