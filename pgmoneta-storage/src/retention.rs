//! Retention planning: which backups a policy keeps, which it deletes, and why.
//!
//! [`plan`] is pure: it takes a summary of every backup of one server, the server's effective
//! [`Retention`] policy (`retention = D,W,M,Y`) and the current local time, and returns a
//! [`RetentionPlan`]. Applying the plan (deleting directories, WAL, hot standbys) is the caller's
//! business; serializing the plan gives the JSON of a dry run.
//!
//! # The policy
//!
//! Labels and `now` are local wall-clock times, compared as civil date-times: no time zone or
//! daylight-saving rule enters the computation, so the caller passes `now` in the time zone the
//! labels were written in (`Clock::now().local()`).
//!
//! A backup is kept when at least one of these holds, and deleted otherwise:
//!
//! - **Future** ([`KeepReason::Future`]): its label is later than `now`. The clock went backwards,
//!   or the label is wrong; either way its age cannot be judged, and what cannot be dated sensibly
//!   is not deleted.
//! - **Keep flag** ([`KeepReason::KeepFlag`]): the operator marked it `keep`. Nothing overrides it.
//! - **Days** ([`KeepReason::Days`]): `D` is set and the label is at or after the same time of day
//!   `D` calendar days before `now` (`now` 2026-11-28 12:00:00 with `D = 7` keeps
//!   2026-11-21 12:00:00 and not 2026-11-21 11:59:59). Every backup in the window is kept, valid or
//!   not: a backup that is still being written, or that just failed, is left for the operator to
//!   look at.
//! - **Weeks** ([`KeepReason::Week`]): `W` is set; the weeks are probed through their Mondays: the
//!   Monday of the current week (the week of `now`, Monday to Sunday), then each Monday 7 days
//!   before the previous one, exactly `W` Mondays. For each, the newest *valid* backup taken on that
//!   Monday (at any time of day) is kept.
//! - **Months** ([`KeepReason::Month`]): `M` is set; for the current month and the `M - 1` before
//!   it (December of the previous year follows January), the newest valid backup taken on the 1st.
//! - **Years** ([`KeepReason::Year`]): `Y` is set; for the current year and the `Y - 1` before it,
//!   the newest valid backup taken on January 1st.
//! - **No policy** ([`KeepReason::NoPolicy`]): no part of the policy is set at all. A policy that
//!   says nothing deletes nothing.
//! - **Parent** ([`KeepReason::ParentOf`]): a kept incremental backup depends on it, directly or
//!   through other incrementals. A chain is never broken: every ancestor of a kept backup is kept,
//!   whatever its age, flags or validity.
//!
//! Further decisions:
//!
//! - Invalid backups (`valid == false`) never stand for a week, month or year: they cannot be
//!   restored, so keeping one in place of a good backup of the same day would lose the day. Outside
//!   the days window they are deleted, unless flagged `keep`, dated in the future, or an ancestor
//!   of a kept backup.
//! - Backups dated after `now` are not candidates for a week, month or year either, so that a
//!   backup of the current Monday taken before `now` still represents its week.
//! - A part set to `0` is taken literally: it selects nothing (the configuration layer rejects `0`
//!   anyway; `-` is how a part is left unset).
//! - A parent label that names no backup of the list is ignored: there is nothing to keep.
//! - Labels are directory names, hence unique. Should the list repeat one anyway, its entries are
//!   merged conservatively: kept if any entry is flagged `keep`, valid if any entry is valid, and
//!   the parents of every entry count.
//! - Periods are matched without scanning period by period, so a large `W`, `M` or `Y` costs
//!   nothing.
//!
//! # Differences from upstream pgmoneta
//!
//! - Upstream moves its probe back cumulatively: the `j`-th week probe subtracts `j * 7` days from
//!   the previous probe (0, 7, 21, 42… days back), so it drifts past the weeks it means to keep.
//!   Here the probes are the current Monday and the `W - 1` Mondays before it, 7 days apart.
//! - Upstream computes the days cut-off as `now - D * 86400` seconds and renders it in local time,
//!   which is an hour off across a daylight-saving change; here it is `D` calendar days.
//! - Upstream deletes at most one backup per run (the oldest deletable), leaving the rest to later
//!   runs, and skips any backup that has a child at all. Here everything not kept is deleted in one
//!   run; since every ancestor of a kept backup is kept, the backups deleted are whole expired
//!   chains or their expired tips, and [`RetentionPlan::delete`] lists children before their
//!   parents so that no partially applied plan leaves an incremental without its parent.
//! - Upstream requires the days part; here every part may be unset, and an empty policy deletes
//!   nothing.
//! - Upstream's scans share one cursor over the sorted backups and stop at the first gap, which can
//!   miss a period; here each period is matched independently.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;

use pgmoneta_core::config::Retention;
use pgmoneta_core::{BackupLabel, CivilDateTime};
use serde::{Serialize, Serializer};

const SECONDS_PER_DAY: i64 = 86_400;

/// What the planner needs to know about one backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// The backup's label: when it started, local time.
    pub label: BackupLabel,
    /// Whether the backup completed and can be restored.
    pub valid: bool,
    /// Whether the operator marked the backup to be kept forever.
    pub keep: bool,
    /// The backup an incremental backup builds on; `None` for a full backup.
    pub parent: Option<BackupLabel>,
}

/// A calendar date, printed (and serialized) `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDate {
    /// Year, 1 to 9999.
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
}

impl From<CivilDateTime> for CivilDate {
    fn from(t: CivilDateTime) -> CivilDate {
        CivilDate { year: t.year, month: t.month, day: t.day }
    }
}

impl fmt::Display for CivilDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for CivilDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a backup is kept. A kept backup has one reason or more, in the order of the variants.
///
/// Serialized as an object tagged by `reason`, e.g. `{"reason":"week","monday":"2026-11-23"}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeepReason {
    /// Its label is later than the current time.
    Future,
    /// The operator marked it `keep`.
    KeepFlag,
    /// It was taken within the days window.
    Days,
    /// It is the newest valid backup taken on this Monday, one of the weeks kept.
    Week {
        /// The Monday.
        monday: CivilDate,
    },
    /// It is the newest valid backup taken on the 1st of this month, one of the months kept.
    Month {
        /// The year of the month.
        year: u16,
        /// The month, 1 to 12.
        month: u8,
    },
    /// It is the newest valid backup taken on January 1st of this year, one of the years kept.
    Year {
        /// The year.
        year: u16,
    },
    /// No part of the retention policy is set, so nothing is deleted.
    NoPolicy,
    /// The kept incremental backup `child` builds on it.
    ParentOf {
        /// The kept incremental backup whose parent this is.
        #[serde(serialize_with = "display_str")]
        child: BackupLabel,
    },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::Future => f.write_str("dated after the current time"),
            KeepReason::KeepFlag => f.write_str("marked keep"),
            KeepReason::Days => f.write_str("within the days window"),
            KeepReason::Week { monday } => write!(f, "newest valid backup of Monday {monday}"),
            KeepReason::Month { year, month } => write!(f, "newest valid backup of {year:04}-{month:02}-01"),
            KeepReason::Year { year } => write!(f, "newest valid backup of {year:04}-01-01"),
            KeepReason::NoPolicy => f.write_str("no retention policy set"),
            KeepReason::ParentOf { child } => write!(f, "parent of kept incremental backup {child}"),
        }
    }
}

/// The outcome of [`plan`]: every backup of the input appears exactly once, in `keep` or in `delete`.
///
/// Serializes to `{"keep":[{"label":"…","reasons":[…]}, …],"delete":["…", …]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    /// The backups kept, oldest first, each with why (never an empty list).
    #[serde(serialize_with = "serialize_keep")]
    pub keep: Vec<(BackupLabel, Vec<KeepReason>)>,
    /// The backups to delete, in the order to delete them: every incremental before its parent,
    /// otherwise newest first.
    #[serde(serialize_with = "serialize_labels")]
    pub delete: Vec<BackupLabel>,
}

impl RetentionPlan {
    /// Why `label` is kept, or `None` if it is deleted or not part of the plan.
    pub fn reasons(&self, label: BackupLabel) -> Option<&[KeepReason]> {
        self.keep.iter().find(|(l, _)| *l == label).map(|(_, reasons)| reasons.as_slice())
    }
}

fn display_str<T: fmt::Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn serialize_labels<S: Serializer>(labels: &[BackupLabel], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(labels.iter().map(ToString::to_string))
}

fn serialize_keep<S: Serializer>(keep: &[(BackupLabel, Vec<KeepReason>)], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Kept<'a> {
        #[serde(serialize_with = "display_str")]
        label: &'a BackupLabel,
        reasons: &'a [KeepReason],
    }
    serializer.collect_seq(keep.iter().map(|(label, reasons)| Kept { label, reasons }))
}

/// One backup after merging repeated labels.
#[derive(Default)]
struct Node {
    valid: bool,
    keep: bool,
    parents: BTreeSet<BackupLabel>,
}

/// Days since 1970-01-01 of the date of `t`.
fn day_number(t: CivilDateTime) -> i64 {
    t.to_unix(0).div_euclid(SECONDS_PER_DAY)
}

/// Months since year 0 of the month of `t`.
fn month_number(t: CivilDateTime) -> i64 {
    i64::from(t.year) * 12 + i64::from(t.month) - 1
}

/// The parts of the policy turned into ranges to test labels against.
struct Windows {
    now: CivilDateTime,
    /// The oldest time (as civil seconds) the days window keeps.
    days_from: Option<i64>,
    /// The oldest and newest Monday kept, as day numbers.
    mondays: Option<(i64, i64)>,
    /// The oldest and newest month kept, as month numbers.
    months: Option<(i64, i64)>,
    /// The oldest and newest year kept.
    years: Option<(i64, i64)>,
}

impl Windows {
    fn new(policy: &Retention, now: CivilDateTime) -> Windows {
        // `first..=last` where `last` is the current period and `count` periods are kept; a count
        // of zero gives an empty range.
        let span = |last: i64, count: u32, step: i64| (last - (i64::from(count) - 1) * step, last);
        let this_monday = day_number(now) - i64::from(now.weekday());
        Windows {
            now,
            days_from: policy.days.map(|d| now.to_unix(0) - i64::from(d) * SECONDS_PER_DAY),
            mondays: policy.weeks.map(|w| span(this_monday, w, 7)),
            months: policy.months.map(|m| span(month_number(now), m, 1)),
            years: policy.years.map(|y| span(i64::from(now.year), y, 1)),
        }
    }

    /// The reasons that hold for a backup on its own: every reason but the periods and parents.
    fn own_reasons(&self, t: CivilDateTime, node: &Node, out: &mut Vec<KeepReason>) {
        if t > self.now {
            out.push(KeepReason::Future);
        }
        if node.keep {
            out.push(KeepReason::KeepFlag);
        }
        if self.days_from.is_some_and(|from| t.to_unix(0) >= from) {
            out.push(KeepReason::Days);
        }
    }

    /// The periods (week, month, year) a backup taken at `t` may stand for.
    fn periods(&self, t: CivilDateTime) -> impl Iterator<Item = KeepReason> {
        let within = |range: Option<(i64, i64)>, n: i64| range.is_some_and(|(first, last)| first <= n && n <= last);
        let week = (t.weekday() == 0 && within(self.mondays, day_number(t)))
            .then(|| KeepReason::Week { monday: CivilDate::from(t) });
        let month = (t.day == 1 && within(self.months, month_number(t)))
            .then_some(KeepReason::Month { year: t.year, month: t.month });
        let year = (t.month == 1 && t.day == 1 && within(self.years, i64::from(t.year)))
            .then_some(KeepReason::Year { year: t.year });
        [week, month, year].into_iter().flatten()
    }
}

/// Plans retention for the backups of one server under `policy` at local time `now`.
///
/// See the [module documentation](self) for the rules. The plan keeps every backup flagged
/// `keep`, every backup dated after `now`, and every ancestor of a kept incremental backup; with
/// no part of `policy` set it keeps everything.
pub fn plan(backups: &[BackupSummary], policy: &Retention, now: CivilDateTime) -> RetentionPlan {
    let mut nodes: BTreeMap<BackupLabel, Node> = BTreeMap::new();
    for backup in backups {
        let node = nodes.entry(backup.label).or_default();
        node.valid |= backup.valid;
        node.keep |= backup.keep;
        node.parents.extend(backup.parent.filter(|p| *p != backup.label));
    }

    let windows = Windows::new(policy, now);
    let no_policy =
        policy.days.is_none() && policy.weeks.is_none() && policy.months.is_none() && policy.years.is_none();
    let mut reasons: BTreeMap<BackupLabel, Vec<KeepReason>> = BTreeMap::new();
    // Each period's newest valid backup: labels are visited oldest first, so the last one wins.
    let mut representative: BTreeMap<KeepReason, BackupLabel> = BTreeMap::new();
    for (&label, node) in &nodes {
        let t = label.datetime();
        let mut own = Vec::new();
        windows.own_reasons(t, node, &mut own);
        if no_policy {
            own.push(KeepReason::NoPolicy);
        }
        if !own.is_empty() {
            reasons.insert(label, own);
        }
        if node.valid && t <= now {
            for period in windows.periods(t) {
                representative.insert(period, label);
            }
        }
    }
    for (period, label) in representative {
        reasons.entry(label).or_default().push(period);
    }

    // Close the kept set over parents. Each kept backup is expanded once, so each parent link
    // yields at most one `ParentOf`.
    let mut pending: Vec<BackupLabel> = reasons.keys().copied().collect();
    let mut expanded = BTreeSet::new();
    while let Some(child) = pending.pop() {
        if !expanded.insert(child) {
            continue;
        }
        for &parent in nodes.get(&child).map(|n| &n.parents).into_iter().flatten() {
            if nodes.contains_key(&parent) {
                reasons.entry(parent).or_default().push(KeepReason::ParentOf { child });
                pending.push(parent);
            }
        }
    }

    let delete = deletion_order(&nodes, &reasons);
    let keep = reasons
        .into_iter()
        .map(|(label, mut why)| {
            why.sort();
            (label, why)
        })
        .collect();
    RetentionPlan { keep, delete }
}

/// The backups not in `kept`, each child before its parents, otherwise newest first.
///
/// A kept backup's parents are all kept, so a deleted backup's children are all deleted: ordering
/// within the deleted set is enough.
fn deletion_order(
    nodes: &BTreeMap<BackupLabel, Node>,
    kept: &BTreeMap<BackupLabel, Vec<KeepReason>>,
) -> Vec<BackupLabel> {
    let doomed: BTreeSet<BackupLabel> = nodes.keys().filter(|l| !kept.contains_key(l)).copied().collect();
    // For each doomed backup, how many doomed children still have to go before it.
    let mut waiting_children: BTreeMap<BackupLabel, usize> = doomed.iter().map(|&l| (l, 0)).collect();
    for label in &doomed {
        for parent in &nodes[label].parents {
            if let Some(count) = waiting_children.get_mut(parent) {
                *count += 1;
            }
        }
    }
    let mut ready: BinaryHeap<BackupLabel> =
        waiting_children.iter().filter(|(_, &count)| count == 0).map(|(&l, _)| l).collect();
    let mut order = Vec::with_capacity(doomed.len());
    while let Some(label) = ready.pop() {
        order.push(label);
        for parent in &nodes[&label].parents {
            if let Some(count) = waiting_children.get_mut(parent) {
                *count -= 1;
                if *count == 0 {
                    ready.push(*parent);
                }
            }
        }
    }
    // Parent links that form a cycle (a corrupt repository) leave backups behind: newest first.
    if order.len() < doomed.len() {
        let placed: BTreeSet<BackupLabel> = order.iter().copied().collect();
        order.extend(doomed.iter().rev().filter(|l| !placed.contains(l)));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgmoneta_core::config::ConfValue;
    use proptest::prelude::*;

    /// Saturday 2026-11-28 12:00:00; its week's Monday is 2026-11-23.
    fn now() -> CivilDateTime {
        CivilDateTime::new(2026, 11, 28, 12, 0, 0).unwrap()
    }

    fn label(text: &str) -> BackupLabel {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// `"<label> [keep] [invalid] [<parent-label>]"`.
    fn backup(spec: &str) -> BackupSummary {
        let mut words = spec.split_whitespace();
        let mut b = BackupSummary { label: label(words.next().unwrap()), valid: true, keep: false, parent: None };
        for word in words {
            match word {
                "keep" => b.keep = true,
                "invalid" => b.valid = false,
                parent if parent.starts_with('<') => b.parent = Some(label(&parent[1..])),
                other => panic!("unknown flag {other:?} in {spec:?}"),
            }
        }
        b
    }

    fn policy(text: &str) -> Retention {
        Retention::parse_value(text).unwrap()
    }

    fn run(policy_text: &str, specs: &[&str]) -> RetentionPlan {
        let backups: Vec<BackupSummary> = specs.iter().map(|s| backup(s)).collect();
        plan(&backups, &policy(policy_text), now())
    }

    #[test]
    fn reference_dates() {
        assert_eq!(now().weekday(), 5, "2026-11-28 is a Saturday");
        for monday in ["20261123000000", "20261116000000", "20261109000000", "20261102000000", "20261026000000"] {
            assert_eq!(label(monday).datetime().weekday(), 0, "{monday}");
        }
    }

    struct Case {
        name: &'static str,
        /// `D,W,M,Y` as in `pgmoneta.conf`.
        policy: &'static str,
        /// `"<label> [keep] [invalid] [<parent>]"`, see [`backup`].
        backups: &'static [&'static str],
        /// Exactly the deletions, in order; every other backup is kept.
        delete: &'static [&'static str],
    }

    const CASES: &[Case] = &[
        Case { name: "empty list", policy: "7", backups: &[], delete: &[] },
        Case {
            name: "no part of the policy set",
            policy: "-,-,-,-",
            backups: &["20200101000000", "20241231000000 invalid", "20261101000000 <20200101000000"],
            delete: &[],
        },
        Case {
            name: "days window boundary to the second",
            policy: "7",
            backups: &["20261101000000", "20261121115959", "20261121120000", "20261125000000", "20261128120000"],
            delete: &["20261121115959", "20261101000000"],
        },
        Case {
            name: "days window keeps invalid backups, deletes older invalid ones",
            policy: "7",
            backups: &["20261120000000 invalid", "20261127000000 invalid", "20261128110000 invalid"],
            delete: &["20261120000000"],
        },
        Case {
            name: "weeks: newest backup on each of the last W Mondays",
            policy: "1,4",
            backups: &[
                "20261026000000", // fifth Monday back: outside
                "20261102000000", // fourth Monday
                "20261103000000", // Tuesday
                "20261110000000", // Tuesday, no Monday backup that week
                "20261116010000", // Monday, but not the newest of the day
                "20261116230000", // Monday, newest
                "20261123080000", // current week's Monday
                "20261124080000", // Tuesday of the current week, before the days window
                "20261127130000", // days window
            ],
            delete: &["20261124080000", "20261116010000", "20261110000000", "20261103000000", "20261026000000"],
        },
        Case {
            name: "weeks: an invalid Monday backup does not stand for its week",
            policy: "1,2",
            backups: &["20261116090000", "20261116100000 invalid", "20261123100000 invalid"],
            delete: &["20261123100000", "20261116100000"],
        },
        Case {
            name: "months: the 1st of each of the last M months, across the year boundary",
            policy: "1,-,12",
            backups: &[
                "20251101000000", // thirteenth month back: outside
                "20251201000000", // twelfth month: December of the previous year
                "20251231230000",
                "20260101000000",
                "20260301000000 invalid",
                "20261001010000",
                "20261001200000", // newest on October 1st
                "20261101000000", // current month
                "20261102000000",
            ],
            delete: &["20261102000000", "20261001010000", "20260301000000", "20251231230000", "20251101000000"],
        },
        Case {
            name: "years: January 1st of each of the last Y years",
            policy: "1,-,-,3",
            backups: &[
                "20230101000000", // fourth year back: outside
                "20240101000000",
                "20240229000000",
                "20241231235959",
                "20250101120000",
                "20250102000000",
                "20260101000000",
            ],
            delete: &["20250102000000", "20241231235959", "20240229000000", "20230101000000"],
        },
        Case {
            name: "one backup may stand for a week, a month and a year",
            policy: "1,520,1200,100",
            backups: &["20180101000000", "20180101060000", "20180102000000"],
            delete: &["20180102000000", "20180101000000"],
        },
        Case {
            name: "keep flags win over everything",
            policy: "1",
            backups: &["20200101000000 keep", "20200102000000", "20210101000000 keep invalid"],
            delete: &["20200102000000"],
        },
        Case {
            name: "a chain whose newest incremental is in the days window is kept whole",
            policy: "2",
            backups: &[
                "20261001000000",
                "20261101000000",
                "20261110000000 <20261101000000",
                "20261127000000 <20261110000000",
            ],
            delete: &["20261001000000"],
        },
        Case {
            name: "an expired parent of a kept incremental stays, even invalid",
            policy: "1",
            backups: &["20260101120000 invalid", "20260105000000 keep <20260101120000", "20260106000000"],
            delete: &["20260106000000"],
        },
        Case {
            name: "an expired chain is deleted whole, children first",
            policy: "1",
            backups: &[
                "20261001000000",
                "20261002000000 <20261001000000",
                "20261003000000 <20261002000000",
                "20261004000000",
            ],
            delete: &["20261004000000", "20261003000000", "20261002000000", "20261001000000"],
        },
        Case {
            name: "an expired tip goes, the kept part of its chain stays",
            policy: "-,1",
            backups: &["20261123000000", "20261124000000 <20261123000000", "20261125000000 <20261124000000"],
            delete: &["20261125000000", "20261124000000"],
        },
        Case {
            name: "a child dated before its parent is still deleted first",
            policy: "1",
            backups: &["20261004000000 <20261005000000", "20261005000000", "20261006000000"],
            delete: &["20261006000000", "20261004000000", "20261005000000"],
        },
        Case {
            name: "backups dated after now are kept",
            policy: "-,1",
            backups: &["20261123000000", "20261125000000", "20261128120001", "20270101000000 invalid"],
            delete: &["20261125000000"],
        },
        Case {
            name: "a missing parent is ignored",
            policy: "1",
            backups: &["20261128000000 <20261001000000", "20261020000000 <20261001000000"],
            delete: &["20261020000000"],
        },
        Case {
            name: "a part set to zero selects nothing",
            policy: "0,0,0,0",
            backups: &["20261123000000", "20261101000000", "20260101000000"],
            delete: &["20261123000000", "20261101000000", "20260101000000"],
        },
    ];

    #[test]
    fn golden() {
        for case in CASES {
            let result = run(case.policy, case.backups);
            let deleted: Vec<String> = result.delete.iter().map(ToString::to_string).collect();
            assert_eq!(deleted, case.delete, "{}: deletions", case.name);
            let kept: BTreeSet<String> = result.keep.iter().map(|(l, _)| l.to_string()).collect();
            let expected_kept: BTreeSet<String> = case
                .backups
                .iter()
                .map(|s| backup(s).label.to_string())
                .filter(|l| !case.delete.contains(&l.as_str()))
                .collect();
            assert_eq!(kept, expected_kept, "{}: kept", case.name);
            assert!(result.keep.iter().all(|(_, why)| !why.is_empty()), "{}: a kept backup without reason", case.name);
        }
    }

    #[test]
    fn reasons() {
        use KeepReason::*;
        let date = |y, m, d| CivilDate { year: y, month: m, day: d };
        let result = run(
            "2,4,12,2",
            &[
                "20251201000000",
                "20260101000000 invalid",
                "20260101010000",
                "20261101000000",
                "20261116230000 keep",
                "20261123080000",
                "20261123090000 <20261123080000",
                "20261127000000 <20261123090000",
                "20261130000000",
            ],
        );
        let expected: &[(&str, &[KeepReason])] = &[
            ("20251201000000", &[Month { year: 2025, month: 12 }]),
            ("20260101010000", &[Month { year: 2026, month: 1 }, Year { year: 2026 }]),
            ("20261101000000", &[Month { year: 2026, month: 11 }]),
            ("20261116230000", &[KeepFlag, Week { monday: date(2026, 11, 16) }]),
            ("20261123080000", &[ParentOf { child: label("20261123090000") }]),
            ("20261123090000", &[Week { monday: date(2026, 11, 23) }, ParentOf { child: label("20261127000000") }]),
            ("20261127000000", &[Days]),
            ("20261130000000", &[Future, Days]),
        ];
        let got: Vec<(String, Vec<KeepReason>)> = result.keep.iter().map(|(l, r)| (l.to_string(), r.clone())).collect();
        let want: Vec<(String, Vec<KeepReason>)> =
            expected.iter().map(|(l, r)| ((*l).to_owned(), r.to_vec())).collect();
        assert_eq!(got, want);
        assert_eq!(result.delete, [label("20260101000000")]);
        assert_eq!(result.reasons(label("20261127000000")), Some(&[Days][..]));
        assert_eq!(result.reasons(label("20260101000000")), None);

        let empty = run("-", &["20200101000000"]);
        assert_eq!(empty.reasons(label("20200101000000")), Some(&[NoPolicy][..]));
    }

    #[test]
    fn json_and_display() {
        let result = run("1,1", &["20261101000000", "20261123000000", "20261128000000 <20261123000000"]);
        let json = serde_json::to_string(&result).unwrap();
        assert_eq!(
            json,
            r#"{"keep":[{"label":"20261123000000","reasons":[{"reason":"week","monday":"2026-11-23"},"#.to_owned()
                + r#"{"reason":"parent_of","child":"20261128000000"}]},"#
                + r#"{"label":"20261128000000","reasons":[{"reason":"days"}]}],"delete":["20261101000000"]}"#
        );
        let reason = KeepReason::Month { year: 2026, month: 1 };
        assert_eq!(reason.to_string(), "newest valid backup of 2026-01-01");
        assert_eq!(
            KeepReason::ParentOf { child: label("20261128000000") }.to_string(),
            "parent of kept incremental backup 20261128000000"
        );
    }

    #[test]
    fn repeated_labels_are_merged() {
        let result = run("1", &["20200101000000", "20200101000000 keep", "20200102000000", "20200102000000"]);
        assert_eq!(result.delete, [label("20200102000000")]);
        assert_eq!(result.keep.len(), 1);
    }

    #[test]
    fn parent_cycles_terminate() {
        let result = run("1", &["20200101000000 <20200102000000", "20200102000000 <20200101000000", "20261128000000"]);
        assert_eq!(result.delete, [label("20200102000000"), label("20200101000000")]);
        let result = run("1", &["20200101000000 <20200102000000", "20200102000000 <20200101000000 keep"]);
        assert!(result.delete.is_empty());
    }

    fn arb_backups() -> impl Strategy<Value = Vec<BackupSummary>> {
        // Whole days back (some ahead) plus a time of day, so that Mondays and 1sts come up often.
        let one =
            (-3i64..1200, 0i64..SECONDS_PER_DAY, any::<bool>(), any::<bool>(), any::<Option<prop::sample::Index>>());
        prop::collection::vec(one, 0..40).prop_map(|specs| {
            let midnight = now().to_unix(0).div_euclid(SECONDS_PER_DAY) * SECONDS_PER_DAY;
            let labels: Vec<BackupLabel> = specs
                .iter()
                .map(|(days, secs, ..)| {
                    BackupLabel::new(CivilDateTime::from_unix(midnight - days * SECONDS_PER_DAY + secs, 0))
                })
                .collect();
            specs
                .iter()
                .enumerate()
                .map(|(i, (_, _, valid, keep, parent))| BackupSummary {
                    label: labels[i],
                    valid: *valid,
                    keep: *keep,
                    // Parents come earlier in the list, in any label order: no cycles.
                    parent: parent.as_ref().filter(|_| i > 0).map(|p| labels[p.index(i)]),
                })
                .collect()
        })
    }

    fn arb_policy() -> impl Strategy<Value = Retention> {
        let part = || prop::option::of(0u32..20);
        (part(), part(), part(), part()).prop_map(|(days, weeks, months, years)| Retention {
            days,
            weeks,
            months,
            years,
        })
    }

    proptest! {
        #[test]
        fn invariants(backups in arb_backups(), policy in arb_policy()) {
            let result = plan(&backups, &policy, now());
            let all: BTreeSet<BackupLabel> = backups.iter().map(|b| b.label).collect();
            let kept: BTreeSet<BackupLabel> = result.keep.iter().map(|(l, _)| *l).collect();
            let deleted: BTreeSet<BackupLabel> = result.delete.iter().copied().collect();

            // Every backup exactly once.
            prop_assert_eq!(kept.len(), result.keep.len());
            prop_assert_eq!(deleted.len(), result.delete.len());
            prop_assert!(kept.is_disjoint(&deleted));
            prop_assert_eq!(&kept.union(&deleted).copied().collect::<BTreeSet<_>>(), &all);
            prop_assert!(result.keep.iter().all(|(_, why)| !why.is_empty()));

            for b in &backups {
                if b.keep || b.label.datetime() > now() {
                    prop_assert!(kept.contains(&b.label), "{} deleted", b.label);
                }
                if let Some(parent) = b.parent.filter(|p| kept.contains(&b.label) && all.contains(p)) {
                    prop_assert!(kept.contains(&parent), "parent {} of kept {} deleted", parent, b.label);
                }
                if let Some(parent) = b.parent.filter(|p| deleted.contains(p) && deleted.contains(&b.label)) {
                    let at = |l: BackupLabel| result.delete.iter().position(|d| *d == l);
                    prop_assert!(at(b.label) < at(parent), "{} deleted after its parent {}", b.label, parent);
                }
            }
            if policy == Retention::default() {
                prop_assert!(result.delete.is_empty());
            }
            // The order of the input does not matter.
            let mut reversed = backups.clone();
            reversed.reverse();
            prop_assert_eq!(plan(&reversed, &policy, now()), result);
        }
    }
}
