//! Drill coverage (`[drill] coverage_days`, `max_concurrent`): which databases a drill slot
//! drills, and whether every database was proven within the window. Pure functions of
//! (databases with their last passing drill, settings, clock).

use crate::ids::DbName;
use crate::time::{self, Timestamp};
use serde::Serialize;

/// The databases a drill slot drills: those whose last passing drill is oldest (never
/// drilled first, then by name), at most `max`. Drilling the least recently proven at
/// every slot proves each database within the window as long as
/// `databases / max_concurrent` slots fit in it.
pub fn pick(databases: &[(DbName, Option<Timestamp>)], max: usize) -> Vec<DbName> {
    let mut v: Vec<&(DbName, Option<Timestamp>)> = databases.iter().collect();
    // `None` sorts before any time: never-drilled databases come first.
    v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().take(max).map(|(d, _)| d.clone()).collect()
}

/// The last passing drill of each database, from the store.
pub async fn last_passing(
    store: &pgdrill_store::Store,
    databases: &[DbName],
) -> crate::Result<Vec<(DbName, Option<Timestamp>)>> {
    let mut out = Vec::new();
    for db in databases {
        let drills = crate::drill::list(store, db).await?;
        let last = drills
            .iter()
            .filter(|d| d.passed())
            .filter_map(|d| time::parse(&d.started_at))
            .max();
        out.push((db.clone(), last));
    }
    Ok(out)
}

/// Of `databases`, the `max` a drill run drills ([`pick`] on the store's drill history).
pub async fn due(
    store: &pgdrill_store::Store,
    databases: Vec<crate::config::DatabaseSettings>,
    max: usize,
) -> crate::Result<Vec<crate::config::DatabaseSettings>> {
    let names: Vec<DbName> = databases.iter().map(|d| d.name.clone()).collect();
    let chosen = pick(&last_passing(store, &names).await?, max);
    Ok(databases
        .into_iter()
        .filter(|d| chosen.contains(&d.name))
        .collect())
}

/// The coverage SLO: databases with a passing drill in the last `days` days, of all.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CoverageReport {
    pub days: u64,
    pub proven: usize,
    pub total: usize,
    pub ok: bool,
    /// The databases without a passing drill in the window, least recently proven first.
    pub overdue: Vec<Overdue>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Overdue {
    pub database: DbName,
    /// RFC 3339 start of its last passing drill, if it ever passed one.
    pub last_passing_drill: Option<String>,
}

impl CoverageReport {
    /// One line for people: "2/3 databases proven in the last 30 days; overdue: a (never)".
    pub fn detail(&self) -> String {
        let mut s = format!(
            "{}/{} databases proven by a passing drill in the last {} days",
            self.proven, self.total, self.days
        );
        if !self.overdue.is_empty() {
            let names: Vec<String> = self
                .overdue
                .iter()
                .map(|o| {
                    format!(
                        "{} ({})",
                        o.database,
                        o.last_passing_drill
                            .as_deref()
                            .map(|t| format!("last passed {t}"))
                            .unwrap_or_else(|| "never drilled".into())
                    )
                })
                .collect();
            s.push_str(&format!("; overdue: {}", names.join(", ")));
        }
        s
    }
}

pub fn report(
    databases: &[(DbName, Option<Timestamp>)],
    days: u64,
    now: Timestamp,
) -> CoverageReport {
    let window = days.min(i64::MAX as u64 / 86_400) as i64 * 86_400;
    let mut overdue: Vec<&(DbName, Option<Timestamp>)> = databases
        .iter()
        .filter(|(_, t)| t.is_none_or(|t| time::seconds_between(t, now) > window))
        .collect();
    overdue.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    CoverageReport {
        days,
        proven: databases.len() - overdue.len(),
        total: databases.len(),
        ok: overdue.is_empty(),
        overdue: overdue
            .into_iter()
            .map(|(d, t)| Overdue {
                database: d.clone(),
                last_passing_drill: t.map(|t| t.to_string()),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> DbName {
        DbName::parse(s).expect("name")
    }

    fn day(d: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + d * 86_400).expect("time")
    }

    #[test]
    fn never_drilled_first_then_the_oldest_at_most_max() {
        let dbs = vec![
            (n("b"), Some(day(3))),
            (n("a"), Some(day(1))),
            (n("z"), None),
            (n("c"), Some(day(2))),
            (n("y"), None),
        ];
        assert_eq!(pick(&dbs, 1), vec![n("y")]);
        assert_eq!(pick(&dbs, 3), vec![n("y"), n("z"), n("a")]);
        assert_eq!(pick(&dbs, 10).len(), 5);
        assert!(pick(&[], 2).is_empty());
    }

    /// A fleet of 6 databases, one slot a day, 2 per slot, coverage 30 days: simulated on
    /// a clock under the test's control, every database is proven within the window from
    /// the third slot on, and no database waits longer than 3 days.
    #[test]
    fn daily_slots_prove_every_database_within_the_window() {
        let mut dbs: Vec<(DbName, Option<Timestamp>)> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|s| (n(s), None))
            .collect();
        for slot in 0..40 {
            let now = day(slot);
            for d in pick(&dbs, 2) {
                if let Some(e) = dbs.iter_mut().find(|(x, _)| *x == d) {
                    e.1 = Some(now);
                }
            }
            let r = report(&dbs, 30, now);
            if slot >= 2 {
                assert!(r.ok, "slot {slot}: {}", r.detail());
                let oldest = dbs.iter().filter_map(|(_, t)| *t).min().expect("t");
                assert!(time::seconds_between(oldest, now) <= 2 * 86_400);
            } else {
                assert!(!r.ok);
            }
        }
    }

    #[test]
    fn report_names_the_overdue_oldest_first() {
        let now = day(100);
        let dbs = vec![
            (n("fresh"), Some(day(95))),
            (n("stale"), Some(day(60))),
            (n("edge"), Some(day(70))),
            (n("never"), None),
        ];
        let r = report(&dbs, 30, now);
        assert_eq!((r.proven, r.total, r.ok), (2, 4, false));
        let names: Vec<_> = r.overdue.iter().map(|o| o.database.as_str()).collect();
        assert_eq!(names, vec!["never", "stale"]);
        assert!(r.detail().contains("2/4"), "{}", r.detail());
        assert!(
            r.detail().contains("never (never drilled)"),
            "{}",
            r.detail()
        );
        assert!(report(&dbs[..1], 30, now).ok);
    }
}
