//! The scheduler's bookkeeping, pure: which jobs are due, which may start now. Time comes
//! in as arguments; jitter as a function; nothing here sleeps or reads a clock.

use crate::jobs::JobKey;
use crate::schedule::Schedule;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// What the store says about a job's last run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LastRun {
    /// Nothing is recorded for this kind of job (prune): never caught up at start.
    Unknown,
    /// It never ran: caught up at start if the schedule has fired before.
    Never,
    At(Timestamp),
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: JobKey,
    pub schedule: Schedule,
    /// The next nominal fire time.
    pub next_fire: Option<Timestamp>,
    /// When that run starts: the fire time plus jitter.
    pub next_start: Option<Timestamp>,
    /// Due and not started yet. Missed fire times collapse into this one flag, so a job
    /// that missed N runs runs once.
    pub pending: bool,
    /// The nominal fire time the pending (or last started) run is for: replicas sharing a
    /// store skip a run whose slot another one already did.
    pub slot: Option<Timestamp>,
    /// A run skipped because another host held the lease is tried again at this time (so
    /// that a replica that died holding it is replaced once its lease lapses).
    pub retry_at: Option<Timestamp>,
}

#[derive(Clone, Debug)]
pub struct Timetable {
    pub entries: Vec<Entry>,
    tz: TimeZone,
}

impl Timetable {
    /// Entries run in (database, kind) order: backup before drill when both are due.
    pub fn new(mut jobs: Vec<(JobKey, Schedule)>, tz: TimeZone) -> Timetable {
        jobs.sort_by(|a, b| (&a.0.database, a.0.kind).cmp(&(&b.0.database, b.0.kind)));
        Timetable {
            entries: jobs
                .into_iter()
                .map(|(key, schedule)| Entry {
                    key,
                    schedule,
                    next_fire: None,
                    next_start: None,
                    pending: false,
                    slot: None,
                    retry_at: None,
                })
                .collect(),
            tz,
        }
    }

    /// At start: a job whose last run is older than its schedule's previous fire time is
    /// due now (once); every job gets its next fire time after `now`.
    pub fn start(
        &mut self,
        now: Timestamp,
        last: impl Fn(&JobKey) -> LastRun,
        jitter: &mut dyn FnMut() -> u64,
    ) {
        for e in &mut self.entries {
            e.pending = match last(&e.key) {
                LastRun::Unknown => false,
                LastRun::Never => e.schedule.missed(None, now, &self.tz),
                LastRun::At(t) => e.schedule.missed(Some(t), now, &self.tz),
            };
            if e.pending {
                e.slot = e.schedule.prev_at_or_before(now, &self.tz);
            }
            plan_next(e, now, &self.tz, jitter);
        }
    }

    /// Marks the jobs whose start time has come as pending and plans their next fire time
    /// after `now`. Returns the keys that became due.
    pub fn tick(&mut self, now: Timestamp, jitter: &mut dyn FnMut() -> u64) -> Vec<JobKey> {
        let mut due = Vec::new();
        for e in &mut self.entries {
            if e.next_start.is_some_and(|s| s <= now) {
                e.pending = true;
                e.slot = e.next_fire;
                e.retry_at = None;
                due.push(e.key.clone());
                plan_next(e, now, &self.tz, jitter);
            } else if e.retry_at.is_some_and(|r| r <= now) {
                e.pending = true;
                e.retry_at = None;
                due.push(e.key.clone());
            }
        }
        due
    }

    /// Pending jobs that may start given the running ones: never the same job twice, at
    /// most one exclusive job per database, status not during a backup of its database
    /// ([`crate::jobs::JobKind::waits_for`]).
    pub fn runnable(&self, running: &[JobKey]) -> Vec<JobKey> {
        let mut active: Vec<JobKey> = running.to_vec();
        let mut out = Vec::new();
        for e in &self.entries {
            let blocked = active.iter().any(|r| {
                r == &e.key || (r.database == e.key.database && e.key.kind.waits_for(r.kind))
            });
            if e.pending && !blocked {
                active.push(e.key.clone());
                out.push(e.key.clone());
            }
        }
        out
    }

    /// A job added while running (a database a server discovery found): due at its
    /// schedule's next fire time after `now`.
    pub fn add(
        &mut self,
        key: JobKey,
        schedule: Schedule,
        now: Timestamp,
        jitter: &mut dyn FnMut() -> u64,
    ) {
        if self.entries.iter().any(|e| e.key == key) {
            return;
        }
        let mut e = Entry {
            key,
            schedule,
            next_fire: None,
            next_start: None,
            pending: false,
            slot: None,
            retry_at: None,
        };
        plan_next(&mut e, now, &self.tz, jitter);
        self.entries.push(e);
    }

    /// The databases with a pending job of `kind`.
    pub fn pending_of(&self, kind: crate::jobs::JobKind) -> Vec<pgdrill_core::ids::DbName> {
        self.entries
            .iter()
            .filter(|e| e.pending && e.key.kind == kind)
            .filter_map(|e| e.key.database.clone())
            .collect()
    }

    /// Drill coverage: of the pending jobs of `kind`, only those of `keep` stay pending;
    /// the others' slot is passed over (they run at a later slot, when their turn comes).
    /// Returns the keys passed over.
    pub fn keep_pending(
        &mut self,
        kind: crate::jobs::JobKind,
        keep: &[pgdrill_core::ids::DbName],
    ) -> Vec<JobKey> {
        let mut passed = Vec::new();
        for e in &mut self.entries {
            let kept = e.key.database.as_ref().is_some_and(|d| keep.contains(d));
            if e.pending && e.key.kind == kind && !kept {
                e.pending = false;
                passed.push(e.key.clone());
            }
        }
        passed
    }

    pub fn started(&mut self, key: &JobKey) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.key == key) {
            e.pending = false;
        }
    }

    /// Tries `key`'s run (same slot) again at `at`, unless its next fire comes first.
    pub fn retry(&mut self, key: &JobKey, at: Timestamp) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.key == key) {
            if e.next_start.is_none_or(|s| at < s) {
                e.retry_at = Some(at);
            }
        }
    }

    /// When something next becomes due.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.entries
            .iter()
            .flat_map(|e| [e.next_start, e.retry_at])
            .flatten()
            .min()
    }

    pub fn entry(&self, key: &JobKey) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.key == key)
    }
}

fn plan_next(e: &mut Entry, now: Timestamp, tz: &TimeZone, jitter: &mut dyn FnMut() -> u64) {
    e.next_fire = e.schedule.next_after(now, tz);
    e.next_start = e.next_fire.map(|f| {
        f.checked_add(SignedDuration::from_secs(jitter() as i64))
            .unwrap_or(f)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobKind;
    use pgdrill_core::ids::DbName;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn key(kind: JobKind, db: &str) -> JobKey {
        JobKey {
            kind,
            database: Some(DbName::parse(db).expect("db")),
        }
    }

    fn table(jobs: &[(JobKind, &str, &str)]) -> Timetable {
        Timetable::new(
            jobs.iter()
                .map(|(k, db, s)| (key(*k, db), Schedule::parse(s).expect("schedule")))
                .collect(),
            TimeZone::UTC,
        )
    }

    /// A run skipped for a lease another replica holds is tried again for the same slot;
    /// the next fire time starts a new slot and drops the retry.
    #[test]
    fn a_locked_run_is_retried_for_its_slot_until_the_next_fire() {
        let mut t = table(&[(JobKind::Backup, "app", "every 1h")]);
        t.start(ts("2026-05-10T12:30:00Z"), |_| LastRun::Unknown, &mut || 7);
        let k = key(JobKind::Backup, "app");
        assert!(t.tick(ts("2026-05-10T13:00:06Z"), &mut || 7).is_empty());
        assert_eq!(
            t.tick(ts("2026-05-10T13:00:07Z"), &mut || 7),
            vec![k.clone()]
        );
        let slot = Some(ts("2026-05-10T13:00:00Z"));
        assert_eq!(
            t.entry(&k).expect("entry").slot,
            slot,
            "the nominal fire time"
        );
        t.started(&k);
        t.retry(&k, ts("2026-05-10T13:02:00Z"));
        assert_eq!(t.next_wakeup(), Some(ts("2026-05-10T13:02:00Z")));
        assert!(t.tick(ts("2026-05-10T13:01:59Z"), &mut || 7).is_empty());
        assert_eq!(
            t.tick(ts("2026-05-10T13:02:00Z"), &mut || 7),
            vec![k.clone()]
        );
        assert_eq!(t.entry(&k).expect("entry").slot, slot, "the same slot");
        t.started(&k);
        // A retry after the next fire is not planned: the next slot's run comes first.
        t.retry(&k, ts("2026-05-10T14:30:00Z"));
        assert_eq!(t.next_wakeup(), Some(ts("2026-05-10T14:00:07Z")));
        assert_eq!(
            t.tick(ts("2026-05-10T14:00:07Z"), &mut || 7),
            vec![k.clone()]
        );
        assert_eq!(
            t.entry(&k).expect("entry").slot,
            Some(ts("2026-05-10T14:00:00Z"))
        );
    }

    #[test]
    fn missed_runs_are_caught_up_once_at_start_and_not_again() {
        let mut t = table(&[
            (JobKind::Backup, "app", "every 6h"),
            (JobKind::Drill, "app", "first_sunday"),
            (JobKind::Prune, "app", "0 3 * * *"),
        ]);
        let now = ts("2026-05-10T13:00:00Z");
        t.start(
            now,
            |k| match k.kind {
                // Three days without a backup: twelve missed fire times.
                JobKind::Backup => LastRun::At(ts("2026-05-07T13:00:00Z")),
                JobKind::Drill => LastRun::At(ts("2026-05-03T04:30:00Z")),
                _ => LastRun::Unknown,
            },
            &mut || 0,
        );
        assert_eq!(t.runnable(&[]), [key(JobKind::Backup, "app")]);
        t.started(&key(JobKind::Backup, "app"));
        assert_eq!(
            t.entry(&key(JobKind::Backup, "app"))
                .and_then(|e| e.next_start),
            Some(ts("2026-05-10T18:00:00Z"))
        );
        // Seconds later nothing is due again.
        assert!(t.tick(ts("2026-05-10T13:00:05Z"), &mut || 0).is_empty());
        assert!(t.runnable(&[]).is_empty());
        assert_eq!(t.next_wakeup(), Some(ts("2026-05-10T18:00:00Z")));
    }

    #[test]
    fn a_long_sleep_makes_a_job_due_once() {
        let mut t = table(&[(JobKind::Backup, "app", "every 1m")]);
        t.start(ts("2026-01-01T00:00:00Z"), |_| LastRun::Unknown, &mut || 0);
        // The process was suspended for an hour: sixty fire times passed.
        let due = t.tick(ts("2026-01-01T01:00:30Z"), &mut || 0);
        assert_eq!(due.len(), 1);
        assert!(t.tick(ts("2026-01-01T01:00:31Z"), &mut || 0).is_empty());
        assert_eq!(
            t.entry(&key(JobKind::Backup, "app"))
                .and_then(|e| e.next_fire),
            Some(ts("2026-01-01T01:01:00Z"))
        );
    }

    #[test]
    fn one_exclusive_job_per_database_status_runs_alongside_a_drill() {
        let mut t = table(&[
            (JobKind::Drill, "app", "every 1m"),
            (JobKind::Backup, "app", "every 1m"),
            (JobKind::Status, "app", "every 1m"),
            (JobKind::Backup, "other", "every 1m"),
        ]);
        t.start(ts("2026-01-01T00:00:30Z"), |_| LastRun::Never, &mut || 0);
        // The backup goes first; status waits for it; the other database is independent.
        assert_eq!(
            t.runnable(&[]),
            [key(JobKind::Backup, "app"), key(JobKind::Backup, "other")]
        );
        let backup = key(JobKind::Backup, "app");
        t.started(&backup);
        assert_eq!(
            t.runnable(std::slice::from_ref(&backup)),
            [key(JobKind::Backup, "other")],
            "the drill and status wait for the backup of the same database"
        );
        let drill = key(JobKind::Drill, "app");
        assert_eq!(
            t.runnable(&[]),
            [
                drill.clone(),
                key(JobKind::Status, "app"),
                key(JobKind::Backup, "other")
            ]
        );
        t.started(&drill);
        assert_eq!(
            t.runnable(&[drill]),
            [key(JobKind::Status, "app"), key(JobKind::Backup, "other")],
            "status runs during a drill"
        );
    }

    #[test]
    fn jitter_delays_the_start_not_the_fire_time() {
        let mut t = table(&[(JobKind::Backup, "app", "every 1h")]);
        t.start(ts("2026-01-01T00:10:00Z"), |_| LastRun::Unknown, &mut || 90);
        let e = t.entry(&key(JobKind::Backup, "app")).expect("entry");
        assert_eq!(e.next_fire, Some(ts("2026-01-01T01:00:00Z")));
        assert_eq!(e.next_start, Some(ts("2026-01-01T01:01:30Z")));
        assert!(t.tick(ts("2026-01-01T01:00:10Z"), &mut || 90).is_empty());
        assert_eq!(t.tick(ts("2026-01-01T01:01:30Z"), &mut || 90).len(), 1);
    }

    /// Drill coverage on a clock under the test's control: three databases drilled daily,
    /// one per slot, take turns (never-drilled first, then the least recently proven).
    #[test]
    fn coverage_keeps_one_drill_per_slot_in_turn() {
        let mut t = table(&[
            (JobKind::Drill, "a", "0 3 * * *"),
            (JobKind::Drill, "b", "0 3 * * *"),
            (JobKind::Drill, "c", "0 3 * * *"),
            (JobKind::Backup, "x", "0 3 * * *"),
        ]);
        let mut last: Vec<(DbName, Option<Timestamp>)> = ["a", "b", "c"]
            .iter()
            .map(|d| (DbName::parse(d).expect("db"), None))
            .collect();
        last[0].1 = Some(ts("2026-11-01T03:00:00Z"));
        t.start(ts("2026-12-01T00:00:00Z"), |_| LastRun::Unknown, &mut || 0);
        let mut order = Vec::new();
        for day in 1..=6 {
            let now = ts(&format!("2026-12-{day:02}T03:00:00Z"));
            t.tick(now, &mut || 0);
            let pending = t.pending_of(JobKind::Drill);
            assert_eq!(pending.len(), 3, "every drill fires at the slot");
            let mine: Vec<_> = last
                .iter()
                .filter(|(d, _)| pending.contains(d))
                .cloned()
                .collect();
            let chosen = pgdrill_core::fleet::coverage::pick(&mine, 1);
            let passed = t.keep_pending(JobKind::Drill, &chosen);
            assert_eq!(passed.len(), 2);
            let runnable = t.runnable(&[]);
            let drills: Vec<_> = runnable
                .iter()
                .filter(|k| k.kind == JobKind::Drill)
                .collect();
            assert_eq!(drills.len(), 1, "one drill per slot");
            assert!(
                runnable.iter().any(|k| k.kind == JobKind::Backup),
                "backups are untouched"
            );
            for k in &runnable {
                t.started(k);
            }
            let db = drills[0].database.clone().expect("db");
            if let Some(e) = last.iter_mut().find(|(d, _)| *d == db) {
                e.1 = Some(now);
            }
            order.push(db.to_string());
        }
        assert_eq!(order, vec!["b", "c", "a", "b", "c", "a"]);
    }
}
