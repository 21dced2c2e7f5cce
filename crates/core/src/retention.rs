//! Retention planning: a pure function of (backups, policy, clock). `prune` executes the
//! plan; `--dry-run` prints it. Rules:
//! - never delete the newest complete backup, nor the one the last passing drill used;
//! - keep_last, keep_within_days, keep_daily/weekly/monthly (one per calendar bucket in the
//!   configured time zone, newest first), and at least `keep_min` complete backups;
//! - a backup dated in the future (clock skew) is kept;
//! - incomplete backups (no manifest) older than the grace period are removed.

use crate::ids::BackupId;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The `[retention]` table. Unset keys do not keep anything by themselves.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub keep_within_days: Option<u64>,
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
    pub keep_min: Option<usize>,
    pub incomplete_grace_hours: Option<u64>,
    /// IANA time zone for day/week/month buckets (default UTC).
    pub timezone: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RetentionPolicy {
    pub keep_within_days: Option<u64>,
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
    pub keep_min: usize,
    pub incomplete_grace_hours: u64,
    pub tz: TimeZone,
}

impl RetentionPolicy {
    /// From `[retention]`, falling back to the policy's `retention_days` for keep_within_days.
    pub fn from_section(s: &RetentionSection, retention_days: Option<u64>) -> crate::Result<Self> {
        let tz = match &s.timezone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                crate::Error::Invalid(format!("retention.timezone {name:?} is not a known IANA time zone (like Europe/Berlin)"))
            })?,
        };
        Ok(RetentionPolicy {
            keep_within_days: s.keep_within_days.or(retention_days),
            keep_last: s.keep_last,
            keep_daily: s.keep_daily,
            keep_weekly: s.keep_weekly,
            keep_monthly: s.keep_monthly,
            keep_min: s.keep_min.unwrap_or(2),
            incomplete_grace_hours: s.incomplete_grace_hours.unwrap_or(24),
            tz,
        })
    }

    fn has_rules(&self) -> bool {
        self.keep_within_days.is_some()
            || self.keep_last.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
    }
}

/// Names the calendar bucket (day, ISO week, month) a local date falls in.
type BucketKey = fn(&jiff::civil::Date) -> String;

/// One complete backup as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: BackupId,
    pub time: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Kept backups, newest first, with every reason that keeps them.
    pub keep: Vec<(BackupId, Vec<String>)>,
    /// Complete backups to delete, newest first.
    pub delete: Vec<BackupId>,
    /// Incomplete backup folders to remove.
    pub delete_incomplete: Vec<BackupId>,
    /// Set when no rule is configured: nothing is deleted.
    pub note: Option<String>,
}

pub fn plan(
    complete: &[Candidate],
    incomplete: &[(BackupId, Timestamp)],
    protected: &[BackupId],
    p: &RetentionPolicy,
    now: Timestamp,
) -> Plan {
    let mut sorted: Vec<&Candidate> = complete.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    // Each rule adds its reasons in turn: a kept backup lists them in this order.
    let mut reasons = Reasons::default();
    reasons.always_kept(&sorted, protected, now);
    reasons.by_count_and_age(&sorted, p, now);
    reasons.by_calendar(&sorted, p);
    let mut out = Plan::default();
    if !p.has_rules() {
        out.note = Some("no retention rule is configured ([retention] or policy retention_days): nothing is deleted".into());
        for c in &sorted {
            reasons.add(&c.id, "no retention rule".into());
        }
    }
    reasons.keep_min(&sorted, p.keep_min);
    for c in &sorted {
        match reasons.0.remove(&c.id) {
            Some(r) => out.keep.push((c.id.clone(), r)),
            None => out.delete.push(c.id.clone()),
        }
    }
    let grace = (p.incomplete_grace_hours as i64) * 3600;
    for (id, newest) in incomplete {
        if now.as_second() - newest.as_second() > grace {
            out.delete_incomplete.push(id.clone());
        }
    }
    out
}

/// Why each backup is kept (a backup with no reason is deleted), the reasons in the order
/// the rules gave them. The rules take the backups newest first.
#[derive(Default)]
struct Reasons(BTreeMap<BackupId, Vec<String>>);

impl Reasons {
    fn add(&mut self, id: &BackupId, r: String) {
        self.0.entry(id.clone()).or_default().push(r);
    }

    /// Whatever the rules say: the newest backup, the one the last passing drill used, and
    /// any dated in the future (the clock may be wrong, not the backup).
    fn always_kept(&mut self, sorted: &[&Candidate], protected: &[BackupId], now: Timestamp) {
        if let Some(newest) = sorted.first() {
            self.add(&newest.id, "newest complete backup".into());
        }
        for c in sorted {
            if protected.contains(&c.id) {
                self.add(&c.id, "used by the last passing drill".into());
            }
            if c.time > now {
                self.add(&c.id, "dated in the future (clock skew?)".into());
            }
        }
    }

    /// `keep_last` and `keep_within_days`.
    fn by_count_and_age(&mut self, sorted: &[&Candidate], p: &RetentionPolicy, now: Timestamp) {
        if let Some(n) = p.keep_last {
            for c in sorted.iter().take(n) {
                self.add(&c.id, format!("keep_last {n}"));
            }
        }
        if let Some(days) = p.keep_within_days {
            let cutoff = now.as_second() - (days as i64) * 86_400;
            for c in sorted.iter().filter(|c| c.time.as_second() >= cutoff) {
                self.add(&c.id, format!("within {days} days"));
            }
        }
    }

    /// `keep_daily`, `keep_weekly`, `keep_monthly`: the newest backup of each of the last
    /// N days, ISO weeks or months (in the policy's time zone) that have one.
    fn by_calendar(&mut self, sorted: &[&Candidate], p: &RetentionPolicy) {
        let buckets: [(&str, Option<usize>, BucketKey); 3] = [
            ("daily", p.keep_daily, |d| d.to_string()),
            ("weekly", p.keep_weekly, |d| {
                let w = d.iso_week_date();
                format!("{}-W{:02}", w.year(), w.week())
            }),
            ("monthly", p.keep_monthly, |d| {
                format!("{}-{:02}", d.year(), d.month())
            }),
        ];
        for (label, n, key) in buckets {
            let Some(n) = n else { continue };
            let mut seen = BTreeSet::new();
            for c in sorted {
                if seen.len() >= n {
                    break;
                }
                let date = c.time.to_zoned(p.tz.clone()).date();
                if seen.insert(key(&date)) {
                    self.add(&c.id, format!("keep_{label} {n}"));
                }
            }
        }
    }

    /// `keep_min`: the newest backups not kept otherwise, until at least `keep_min` are kept.
    fn keep_min(&mut self, sorted: &[&Candidate], keep_min: usize) {
        let mut kept = sorted.iter().filter(|c| self.0.contains_key(&c.id)).count();
        for c in sorted {
            if kept >= keep_min {
                break;
            }
            if !self.0.contains_key(&c.id) {
                self.add(&c.id, format!("keep_min {keep_min}"));
                kept += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn cand(t: &str) -> Candidate {
        let time = ts(t);
        let id = BackupId::parse(&format!("{}-0000", time.strftime("%Y%m%dT%H%M%SZ"))).expect("id");
        Candidate { id, time }
    }

    fn policy(tz: &str) -> RetentionPolicy {
        RetentionPolicy {
            keep_within_days: None,
            keep_last: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_min: 1,
            incomplete_grace_hours: 24,
            tz: TimeZone::get(tz).expect("tz"),
        }
    }

    fn kept_times(plan: &Plan, all: &[Candidate]) -> Vec<String> {
        plan.keep
            .iter()
            .map(|(id, _)| {
                all.iter()
                    .find(|c| &c.id == id)
                    .map(|c| c.time.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn daily_buckets_follow_the_time_zone() {
        // 23:30 UTC on the 1st is the 2nd in Berlin: in UTC these are two days, in Berlin one.
        let all = vec![
            cand("2026-03-01T22:30:00Z"),
            cand("2026-03-01T23:30:00Z"),
            cand("2026-03-02T10:00:00Z"),
        ];
        let now = ts("2026-03-03T00:00:00Z");
        let mut p = policy("UTC");
        p.keep_daily = Some(7);
        let utc = plan(&all, &[], &[], &p, now);
        assert_eq!(
            kept_times(&utc, &all),
            vec!["2026-03-02T10:00:00Z", "2026-03-01T23:30:00Z"]
        );
        p.tz = TimeZone::get("Europe/Berlin").expect("tz");
        let berlin = plan(&all, &[], &[], &p, now);
        assert_eq!(
            kept_times(&berlin, &all),
            vec!["2026-03-02T10:00:00Z", "2026-03-01T22:30:00Z"]
        );
    }

    #[test]
    fn dst_change_does_not_merge_or_split_days() {
        // New York springs forward on 2026-03-08; one backup a day at 06:30 UTC.
        let all: Vec<Candidate> = (5..=11)
            .map(|d| cand(&format!("2026-03-{d:02}T06:30:00Z")))
            .collect();
        let mut p = policy("America/New_York");
        p.keep_daily = Some(7);
        let out = plan(&all, &[], &[], &p, ts("2026-03-12T00:00:00Z"));
        assert_eq!(out.keep.len(), 7);
        assert!(out.delete.is_empty());
    }

    #[test]
    fn gfs_keeps_one_per_bucket_and_deletes_the_rest() {
        let mut all = Vec::new();
        for d in 1..=60 {
            let day = jiff::civil::date(2026, 1, 1)
                .checked_add(jiff::Span::new().days(d - 1))
                .expect("date");
            all.push(cand(&format!("{day}T02:00:00Z")));
            all.push(cand(&format!("{day}T14:00:00Z")));
        }
        let mut p = policy("UTC");
        p.keep_daily = Some(7);
        p.keep_weekly = Some(4);
        p.keep_monthly = Some(3);
        let out = plan(&all, &[], &[], &p, ts("2026-03-02T00:00:00Z"));
        // 7 daily (newest each day) + weekly/monthly representatives that are not already daily.
        assert!(
            out.keep.len() >= 7 && out.keep.len() <= 7 + 4 + 3,
            "{}",
            out.keep.len()
        );
        assert_eq!(out.keep.len() + out.delete.len(), all.len());
        assert!(out.keep[0]
            .1
            .contains(&"newest complete backup".to_string()));
    }

    #[test]
    fn a_single_backup_is_never_deleted() {
        let all = vec![cand("2020-01-01T00:00:00Z")];
        let mut p = policy("UTC");
        p.keep_within_days = Some(1);
        p.keep_min = 0;
        let out = plan(&all, &[], &[], &p, ts("2026-01-01T00:00:00Z"));
        assert_eq!(out.keep.len(), 1);
        assert!(out.delete.is_empty());
    }

    #[test]
    fn every_recent_run_failed_keeps_the_old_complete_ones() {
        // Only old complete backups and recent incomplete ones: keep_min protects the old.
        let all = vec![
            cand("2026-01-01T00:00:00Z"),
            cand("2026-01-02T00:00:00Z"),
            cand("2026-01-03T00:00:00Z"),
        ];
        let failed = cand("2026-02-01T00:00:00Z");
        let mut p = policy("UTC");
        p.keep_within_days = Some(7);
        p.keep_min = 2;
        let now = ts("2026-02-03T00:00:00Z");
        let out = plan(&all, &[(failed.id.clone(), failed.time)], &[], &p, now);
        assert_eq!(
            kept_times(&out, &all),
            vec!["2026-01-03T00:00:00Z", "2026-01-02T00:00:00Z"]
        );
        assert_eq!(out.delete.len(), 1);
        assert_eq!(out.delete_incomplete, vec![failed.id]);
    }

    #[test]
    fn clock_skew_and_the_drilled_backup_are_kept() {
        let all = vec![
            cand("2026-01-01T00:00:00Z"),
            cand("2026-01-05T00:00:00Z"),
            cand("2026-03-01T00:00:00Z"),
        ];
        let mut p = policy("UTC");
        p.keep_last = Some(1);
        p.keep_min = 0;
        // "now" is before the newest backup: the clock of the host running prune is behind.
        let out = plan(
            &all,
            &[],
            &[all[0].id.clone()],
            &p,
            ts("2026-02-01T00:00:00Z"),
        );
        let kept: Vec<&BackupId> = out.keep.iter().map(|(id, _)| id).collect();
        assert!(kept.contains(&&all[2].id), "future-dated newest is kept");
        assert!(kept.contains(&&all[0].id), "drilled backup is kept");
        assert_eq!(out.delete, vec![all[1].id.clone()]);
    }

    #[test]
    fn incomplete_backups_inside_the_grace_period_stay() {
        let young = cand("2026-01-01T12:00:00Z");
        let old = cand("2025-12-30T00:00:00Z");
        let p = policy("UTC");
        let out = plan(
            &[],
            &[(young.id.clone(), young.time), (old.id.clone(), old.time)],
            &[],
            &p,
            ts("2026-01-02T00:00:00Z"),
        );
        assert_eq!(out.delete_incomplete, vec![old.id]);
    }

    #[test]
    fn no_rule_deletes_nothing() {
        let all = vec![
            cand("2026-01-01T00:00:00Z"),
            cand("2026-01-02T00:00:00Z"),
            cand("2026-01-03T00:00:00Z"),
        ];
        let out = plan(&all, &[], &[], &policy("UTC"), ts("2027-01-01T00:00:00Z"));
        assert!(out.delete.is_empty());
        assert!(out.note.is_some());
    }
}
