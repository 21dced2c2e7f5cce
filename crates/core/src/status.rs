//! SLO status, a pure function of (backups, drills, last failure, policy, clock): backup
//! freshness, drill freshness, last RTO/RPO against targets, size anomaly, last failure.

use crate::config::Policy;
use crate::drill::evidence::DrillResult;
use crate::manifest::Manifest;
use crate::schedule::Schedule;
use crate::time::{self, Timestamp};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A failed job, recorded best-effort in the store (`<db>/last_failure.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FailureRecord {
    pub job: String,
    /// Written as chrono wrote it ([`time::chrono_compat`]).
    #[serde(with = "time::chrono_compat")]
    pub at: Timestamp,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Slo {
    pub name: String,
    pub ok: bool,
    /// What was measured, for people ("newest backup 3.2 h old").
    pub detail: String,
}

pub mod copies;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DbStatus {
    pub database: String,
    pub backups: usize,
    pub newest_backup: Option<crate::ids::BackupId>,
    pub newest_snapshot: Option<String>,
    pub newest_age_seconds: Option<i64>,
    pub freshness_threshold_seconds: i64,
    pub newest_raw_bytes: Option<u64>,
    pub newest_stored_bytes: Option<u64>,
    pub last_drill: Option<String>,
    pub last_drill_verdict: Option<crate::drill::evidence::Verdict>,
    pub last_passing_drill_at: Option<String>,
    pub last_rto_seconds: Option<f64>,
    pub last_rpo_seconds: Option<f64>,
    /// The policy's targets (`rto_minutes`, `rpo_minutes`) in seconds.
    pub rto_target_seconds: Option<u64>,
    pub rpo_target_seconds: Option<u64>,
    pub last_failure: Option<FailureRecord>,
    pub slos: Vec<Slo>,
    /// The `[[server]]` the database was discovered on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// No longer on its server: not backed up any more, its backups kept by retention.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
    /// On its server but no longer selected by the server's patterns: not backed up any
    /// more, its backups kept by retention.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub excluded: bool,
    /// With several stores: what each holds of this database (the `backup_copies` SLO).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<copies::StoreCopies>,
}

impl DbStatus {
    pub fn ok(&self) -> bool {
        self.slos.iter().all(|s| s.ok)
    }

    /// A database drilled from another tool's physical backups (`[database.drill] source`)
    /// has no pgdrill backups: its backup freshness is judged from the newest backup a drill
    /// recovered (its end as the tool listed it; `drills` newest first), not "no complete
    /// backup".
    pub fn physical_freshness(&mut self, kind: &str, drills: &[DrillResult], now: Timestamp) {
        let seen = drills
            .iter()
            .filter(|d| d.source == kind)
            .filter_map(|d| time::parse(&d.backup.finished_at))
            .max();
        let threshold = self.freshness_threshold_seconds;
        let age = seen.map(|t| time::seconds_between(t, now));
        self.newest_age_seconds = age;
        self.newest_snapshot = seen.map(time::rfc3339_secs);
        let slo = Slo {
            name: "backup_freshness".into(),
            ok: age.is_some_and(|a| a <= threshold),
            detail: match age {
                Some(a) => format!(
                    "newest {kind} backup a drill recovered is {} old (threshold {})",
                    hours(a.max(0)),
                    hours(threshold)
                ),
                None => format!("no drill has recovered a {kind} backup yet"),
            },
        };
        match self.slos.iter_mut().find(|s| s.name == "backup_freshness") {
            Some(s) => *s = slo,
            None => self.slos.insert(0, slo),
        }
    }

    /// Backups whose manifest cannot be read (truncated, empty, invalid) violate the
    /// `manifest_integrity` SLO: the freshness above only counts the readable ones, so a
    /// damaged newest backup must not pass unseen.
    pub fn add_damaged_manifests(&mut self, unreadable: &[(crate::ids::BackupId, String)]) {
        if unreadable.is_empty() {
            return;
        }
        let list: Vec<String> = unreadable
            .iter()
            .map(|(id, why)| format!("{id} ({why})"))
            .collect();
        self.slos.push(Slo {
            name: "manifest_integrity".into(),
            ok: false,
            detail: format!(
                "{} backup(s) with a damaged manifest: {}",
                unreadable.len(),
                list.join("; ")
            ),
        });
    }
}

/// How recent a passing drill must be.
#[derive(Clone, Debug)]
pub enum DrillWindow {
    /// No drill schedule and no `drill_max_age_days`: one passing drill per calendar month.
    CalendarMonth,
    /// `drill_max_age_days`.
    Days(u64),
    /// The drill schedule (`monthly_restore_day`, `[schedule] drill`): the drill is late
    /// only once its last due fire time is more than `grace_seconds` past with no passing
    /// drill started at or after it. So a `first_sunday` drill is not late from the 1st of
    /// the month until its Sunday.
    Scheduled {
        schedule: Schedule,
        tz: TimeZone,
        grace_seconds: i64,
    },
}

/// How long after a scheduled drill's fire time its passing result may still be missing
/// (the drill itself runs, and may be retried) before drill freshness is violated.
pub const DRILL_GRACE_SECONDS: i64 = 86_400;

impl DrillWindow {
    /// The window the settings ask for: `drill_max_age_days` when set, else the drill
    /// schedule (plus its jitter in the grace) when one is on, else the calendar month.
    pub fn new(
        policy: &Policy,
        drill: Option<&Schedule>,
        tz: &TimeZone,
        jitter_seconds: u64,
    ) -> DrillWindow {
        match (policy.drill_max_age_days, drill) {
            (Some(n), _) => DrillWindow::Days(n),
            (None, Some(s)) if !s.is_off() => DrillWindow::Scheduled {
                schedule: s.clone(),
                tz: tz.clone(),
                grace_seconds: DRILL_GRACE_SECONDS + jitter_seconds.min(i64::MAX as u64) as i64,
            },
            (None, _) => DrillWindow::CalendarMonth,
        }
    }

    /// For a schedule: the last fire time whose grace is over, the one a passing drill must
    /// have started at or after (`None`: none is due yet, or the window is not a schedule).
    fn due(&self, now: Timestamp) -> Option<Timestamp> {
        match self {
            DrillWindow::Scheduled {
                schedule,
                tz,
                grace_seconds,
            } => Timestamp::from_second(now.as_second().saturating_sub(*grace_seconds))
                .ok()
                .and_then(|t| schedule.prev_at_or_before(t, tz)),
            _ => None,
        }
    }

    /// From the loaded settings (the policy and `[schedule]`); with `[drill] coverage_days`
    /// (and no `drill_max_age_days`), a drill is due once in that many days.
    pub fn from_settings(settings: &crate::config::Settings) -> DrillWindow {
        if let (None, Some(c)) = (settings.policy.drill_max_age_days, &settings.coverage) {
            return DrillWindow::Days(c.days);
        }
        let s = &settings.schedule;
        DrillWindow::new(
            &settings.policy,
            s.drill.as_ref(),
            &s.tz,
            s.jitter.as_secs(),
        )
    }
}

fn hours(secs: i64) -> String {
    if secs < 3600 {
        format!("{} min", secs / 60)
    } else if secs < 172_800 {
        format!("{:.1} h", secs as f64 / 3600.0)
    } else {
        format!("{:.1} days", secs as f64 / 86_400.0)
    }
}

/// `complete` newest first (as the catalog lists them); `drills` newest first.
pub fn evaluate(
    database: &str,
    complete: &[Manifest],
    drills: &[DrillResult],
    last_failure: Option<FailureRecord>,
    policy: &Policy,
    window: DrillWindow,
    now: Timestamp,
) -> DbStatus {
    let threshold = policy.freshness_minutes() as i64 * 60;
    let newest = complete.first();
    let age = newest
        .and_then(|m| time::parse(&m.snapshot.time))
        .map(|t| time::seconds_between(t, now));
    let passing = drills.iter().find(|d| d.passed());
    let pass_time = passing.and_then(|d| time::parse(&d.started_at));
    let mut slos = vec![
        backup_freshness(age, threshold),
        drill_freshness(pass_time, &window, now),
    ];
    let last = drills.first();
    if let Some(d) = last {
        slos.extend(measured("rto", "RTO", &d.rto));
        slos.extend(measured("rpo", "RPO", &d.rpo));
    }
    if let Some(s) = size_anomaly(complete) {
        slos.push(s);
    }
    // A failure before the newest backup finished is behind us: that backup completed since.
    let newest_time = newest.and_then(|m| time::parse(&m.finished_at));
    let failure = last_failure.filter(|f| newest_time.map(|t| f.at > t).unwrap_or(true));
    slos.extend(failure.as_ref().map(last_run));
    DbStatus {
        database: database.to_string(),
        backups: complete.len(),
        newest_backup: newest.map(|m| m.backup_id.clone()),
        newest_snapshot: newest.map(|m| m.snapshot.time.clone()),
        newest_age_seconds: age,
        freshness_threshold_seconds: threshold,
        newest_raw_bytes: newest.map(|m| m.raw_bytes),
        newest_stored_bytes: newest.map(|m| m.stored_bytes),
        last_drill: last.map(|d| d.drill_id.clone()),
        last_drill_verdict: last.map(|d| d.verdict),
        last_passing_drill_at: passing.map(|d| d.started_at.clone()),
        last_rto_seconds: last.and_then(|d| d.rto.minutes).map(|m| m * 60.0),
        last_rpo_seconds: last.and_then(|d| d.rpo.minutes).map(|m| m * 60.0),
        rto_target_seconds: policy.rto_minutes.map(|m| m.saturating_mul(60)),
        rpo_target_seconds: policy.rpo_minutes.map(|m| m.saturating_mul(60)),
        last_failure: failure,
        slos,
        server: None,
        dropped: false,
        excluded: false,
        stores: Vec::new(),
    }
}

/// The newest backup's age (`None`: there is none) against the freshness threshold.
fn backup_freshness(age: Option<i64>, threshold: i64) -> Slo {
    match age {
        Some(a) => Slo {
            name: "backup_freshness".into(),
            ok: a <= threshold,
            detail: format!(
                "newest backup is {} old (threshold {})",
                hours(a.max(0)),
                hours(threshold)
            ),
        },
        None => Slo {
            name: "backup_freshness".into(),
            ok: false,
            detail: "no complete backup".into(),
        },
    }
}

/// Whether the last passing drill (started at `pass_time`) falls in the drill window.
fn drill_freshness(pass_time: Option<Timestamp>, window: &DrillWindow, now: Timestamp) -> Slo {
    let utc = |t: Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC);
    let due = window.due(now);
    let drill_ok = match (pass_time, window) {
        (None, DrillWindow::Scheduled { .. }) => due.is_none(),
        (None, _) => false,
        (Some(t), DrillWindow::CalendarMonth) => {
            let (t, now) = (utc(t), utc(now));
            t.year() == now.year() && t.month() == now.month()
        }
        (Some(t), DrillWindow::Days(n)) => time::seconds_between(t, now) <= *n as i64 * 86_400,
        (Some(t), DrillWindow::Scheduled { .. }) => due.is_none_or(|d| t >= d),
    };
    let window_text = match (window, due) {
        (DrillWindow::CalendarMonth, _) => "this calendar month".to_string(),
        (DrillWindow::Days(n), _) => format!("in the last {n} days"),
        (DrillWindow::Scheduled { schedule, .. }, Some(d)) => format!(
            "since the scheduled drill of {} ({schedule})",
            time::rfc3339_secs(d)
        ),
        (DrillWindow::Scheduled { schedule, .. }, None) => {
            format!("none due yet by the schedule {schedule}")
        }
    };
    Slo {
        name: "drill_freshness".into(),
        ok: drill_ok,
        detail: match pass_time {
            Some(t) => format!(
                "last passing drill {} ({} required)",
                time::rfc3339_secs(t),
                window_text
            ),
            None => format!("no passing drill recorded (one {window_text} required)"),
        },
    }
}

/// The last drill's RTO or RPO (`label`) against its target, when the drill judged it.
fn measured(name: &str, label: &str, t: &crate::drill::evidence::Target) -> Option<Slo> {
    let ok = t.passed?;
    Some(Slo {
        name: name.into(),
        ok,
        detail: format!(
            "last drill {label} {}, target {}",
            t.minutes
                .map_or("n/a".to_string(), |m| time::human_secs(m * 60.0)),
            time::human_secs(t.target_minutes.unwrap_or(0) as f64 * 60.0)
        ),
    })
}

/// The failed job recorded since the newest backup finished (see [`FailureRecord`]).
fn last_run(f: &FailureRecord) -> Slo {
    Slo {
        name: "last_run".into(),
        ok: false,
        detail: format!(
            "{} failed at {}: {}",
            f.job,
            time::rfc3339_secs(f.at),
            f.message
        ),
    }
}

/// The newest dump under half the median of the previous five is an anomaly.
fn size_anomaly(complete: &[Manifest]) -> Option<Slo> {
    let newest = complete.first()?;
    let mut prev: Vec<u64> = complete
        .iter()
        .skip(1)
        .take(5)
        .map(|m| m.raw_bytes)
        .collect();
    if prev.is_empty() {
        return None;
    }
    prev.sort_unstable();
    let median = if prev.len() % 2 == 1 {
        prev[prev.len() / 2] as f64
    } else {
        (prev[prev.len() / 2 - 1] + prev[prev.len() / 2]) as f64 / 2.0
    };
    let ok = newest.raw_bytes as f64 >= median / 2.0;
    Some(Slo {
        name: "dump_size".into(),
        ok,
        detail: format!(
            "newest dump {}, median of the previous {} is {}",
            crate::summary::human_bytes(newest.raw_bytes),
            prev.len(),
            crate::summary::human_bytes(median as u64)
        ),
    })
}

fn esc_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition (also for node_exporter's textfile collector).
pub fn prometheus(statuses: &[DbStatus]) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
    };
    for (name, help, value) in BACKUP_GAUGES {
        metric(name, help, "gauge", per_database(statuses, value));
    }
    metric(
        "pgdrill_newest_backup_bytes",
        "Size of the newest complete backup: kind=raw (the pg_dump stream) or stored (after zstd and age).",
        "gauge",
        size_rows(statuses),
    );
    for (name, help, value) in DRILL_GAUGES {
        metric(name, help, "gauge", per_database(statuses, value));
    }
    metric(
        "pgdrill_slo_ok",
        "1 when the SLO is met (or has nothing to judge yet), 0 when violated.",
        "gauge",
        slo_rows(statuses),
    );
    metric(
        "pgdrill_build_info",
        "Always 1; the version label is pgdrill's.",
        "gauge",
        vec![(format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1.0)],
    );
    out
}

/// A gauge with one series per database that has a value: name, help, the value.
type PerDatabase = (&'static str, &'static str, fn(&DbStatus) -> Option<f64>);

/// The backup gauges, in the order they are exposed (before the sizes).
const BACKUP_GAUGES: [PerDatabase; 4] = [
    ("pgdrill_backups", "Complete backups in the store.", |s| {
        Some(s.backups as f64)
    }),
    (
        "pgdrill_backup_last_success_timestamp_seconds",
        "Snapshot time of the newest complete backup.",
        |s| seconds(s.newest_snapshot.as_deref()),
    ),
    (
        "pgdrill_backup_age_seconds",
        "Age of the newest complete backup.",
        |s| s.newest_age_seconds.map(|a| a as f64),
    ),
    (
        "pgdrill_backup_freshness_threshold_seconds",
        "Backup freshness SLO threshold.",
        |s| Some(s.freshness_threshold_seconds as f64),
    ),
];

/// The drill gauges and the policy's targets, in the order they are exposed.
const DRILL_GAUGES: [PerDatabase; 5] = [
    (
        "pgdrill_drill_last_pass_timestamp_seconds",
        "Start time of the last passing drill.",
        |s| seconds(s.last_passing_drill_at.as_deref()),
    ),
    (
        "pgdrill_drill_rto_seconds",
        "RTO measured by the last drill.",
        |s| s.last_rto_seconds,
    ),
    (
        "pgdrill_drill_rpo_seconds",
        "RPO measured by the last drill.",
        |s| s.last_rpo_seconds,
    ),
    (
        "pgdrill_rto_target_seconds",
        "The policy's RTO target (rto_minutes).",
        |s| s.rto_target_seconds.map(|v| v as f64),
    ),
    (
        "pgdrill_rpo_target_seconds",
        "The policy's RPO target (rpo_minutes).",
        |s| s.rpo_target_seconds.map(|v| v as f64),
    ),
];

/// The `database` label of a database's series.
fn db_label(s: &DbStatus) -> String {
    format!("database=\"{}\"", esc_label(&s.database))
}

/// An RFC 3339 time as Unix seconds; `None` when absent or unreadable (no series then).
fn seconds(t: Option<&str>) -> Option<f64> {
    t.and_then(time::parse).map(|t| t.as_second() as f64)
}

fn per_database(statuses: &[DbStatus], value: fn(&DbStatus) -> Option<f64>) -> Vec<(String, f64)> {
    statuses
        .iter()
        .filter_map(|s| value(s).map(|v| (db_label(s), v)))
        .collect()
}

/// The newest backup's raw and stored size, a series each (`kind`), when both are known.
fn size_rows(statuses: &[DbStatus]) -> Vec<(String, f64)> {
    let mut sizes = Vec::new();
    for s in statuses {
        if let (Some(r), Some(st)) = (s.newest_raw_bytes, s.newest_stored_bytes) {
            sizes.push((format!("{},kind=\"raw\"", db_label(s)), r as f64));
            sizes.push((format!("{},kind=\"stored\"", db_label(s)), st as f64));
        }
    }
    sizes
}

/// One series per database and SLO: every standard SLO ([`SLO_NAMES`]) and any other the
/// database has.
fn slo_rows(statuses: &[DbStatus]) -> Vec<(String, f64)> {
    let mut slo_rows = Vec::new();
    for s in statuses {
        let extra = s.slos.iter().map(|x| x.name.as_str());
        let mut names: Vec<&str> = SLO_NAMES.to_vec();
        names.extend(extra.filter(|n| !SLO_NAMES.contains(n)));
        for name in names {
            // An SLO not evaluated (no drill yet for rto, fewer than two backups for
            // dump_size, no failure for last_run) is met: the series is always there.
            let ok = s.slos.iter().filter(|x| x.name == name).all(|x| x.ok);
            slo_rows.push((
                format!("{},slo=\"{}\"", db_label(s), esc_label(name)),
                if ok { 1.0 } else { 0.0 },
            ));
        }
    }
    slo_rows
}

/// Every SLO `evaluate` (and [`DbStatus::add_damaged_manifests`]) can report; `pgdrill_slo_ok`
/// has one series per database for each.
pub const SLO_NAMES: &[&str] = &[
    "backup_freshness",
    "drill_freshness",
    "rto",
    "rpo",
    "dump_size",
    "last_run",
    "manifest_integrity",
];

fn failure_key(db: &crate::ids::DbName) -> String {
    format!("{db}/last_failure.json")
}

/// Records a failed job (best effort: a store that is down cannot record anything).
pub async fn record_failure(
    store: &pgdrill_store::Store,
    db: &crate::ids::DbName,
    job: &str,
    message: &str,
) {
    let rec = FailureRecord {
        job: job.into(),
        at: Timestamp::now(),
        message: message.into(),
    };
    if let Ok(body) = serde_json::to_vec_pretty(&rec) {
        let _ = store.put(&failure_key(db), bytes::Bytes::from(body)).await;
    }
}

/// Forgets the recorded failure once a job of that database succeeded again.
pub async fn clear_failure(store: &pgdrill_store::Store, db: &crate::ids::DbName) {
    let _ = store.delete(&failure_key(db)).await;
}

pub async fn read_failure(
    store: &pgdrill_store::Store,
    db: &crate::ids::DbName,
) -> Option<FailureRecord> {
    let b = store.get(&failure_key(db)).await.ok()?;
    serde_json::from_slice(&b).ok()
}

#[cfg(test)]
mod tests;
