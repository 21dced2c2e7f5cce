//! The status job: every database's SLOs evaluated, an alert when one is violated (and a
//! `Recovered` when all are met again), the last state kept in `<db>/status_state.json`.
//!
//! Several `serve` replicas on one store each run the status job; only the one holding the
//! status-alert lease ([`ALERT_LEASE_KEY`]) sends alerts, so they are sent once: the others
//! evaluate and report, and find the alerts already sent (the de-duplication state) when
//! they hold the lease at a later run.

use super::JobEnv;
use crate::alert::EventKind;
use crate::fleet::coverage::{self, CoverageReport};
use crate::fleet::{Fleet, Membership};
use crate::ids::DbName;
use crate::status::{self, DbStatus, DrillWindow, Slo};
use crate::{catalog, Error, Result};
use serde_json::json;

/// The lease held while one instance sends the status alerts (docs/FORMAT.md).
pub const ALERT_LEASE_KEY: &str = "alerts/status_lease.json";

/// Evaluates `databases`; `Err` when there are none.
pub async fn run(jx: &JobEnv<'_>, databases: Vec<DbName>) -> Result<Vec<DbStatus>> {
    Ok(run_fleet(jx, &[], databases, &Fleet::default())
        .await?
        .databases)
}

/// Every database's status, and the fleet's drill coverage.
#[derive(Debug)]
pub struct FleetStatus {
    pub databases: Vec<DbStatus>,
    /// `[drill] coverage_days`: databases proven within the window, of all (dropped ones
    /// left out).
    pub coverage: Option<CoverageReport>,
    /// With several stores: each store's reachability and copies over every database.
    pub stores: Vec<StoreSummary>,
}

/// One store over every database (`status --json`'s `stores[]`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoreSummary {
    pub name: String,
    pub reachable: bool,
    /// Complete copies over every database.
    pub backups: usize,
    /// The newest backup (by snapshot) the store holds a copy of.
    pub newest_backup: Option<crate::ids::BackupId>,
    pub newest_snapshot: Option<String>,
    /// Recent backups this store lacks, as `database/backup-id`.
    pub missing: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FleetStatus {
    pub fn ok(&self) -> bool {
        self.databases.iter().all(|s| s.ok()) && self.coverage.as_ref().is_none_or(|c| c.ok)
    }
}

/// [`run`] with what `[[server]]` discovery found: databases dropped from their server get
/// one `dropped` line instead of their SLOs (nothing is expected of them any more) and one
/// alert; with `[drill] coverage_days`, the coverage SLO over the others.
/// With several `stores` (primary first, the job's store), each database also gets the
/// `backup_copies` SLO: every store holds its recent backups ([`status::copies`]).
pub async fn run_fleet(
    jx: &JobEnv<'_>,
    stores: &crate::stores::Stores,
    databases: Vec<DbName>,
    fleet: &Fleet,
) -> Result<FleetStatus> {
    let judging = Judging {
        policy: &jx.settings.policy,
        window: DrillWindow::from_settings(jx.settings),
        now: crate::clock::Clock::process().now(),
    };
    let mut statuses = Vec::new();
    // Databases still backed up, each with its last passing drill: the coverage SLO's input.
    let mut proven = Vec::new();
    let loaded = load_catalogs(jx.store, &databases).await;
    for (db, loaded) in databases.into_iter().zip(loaded) {
        let cached = match loaded {
            Ok(c) => c,
            // With several stores, a primary that cannot be read leaves this database's SLOs
            // unjudged (its drills and records live there), but its copies are still shown.
            Err(e @ Error::Store { .. }) if stores.len() > 1 => {
                statuses.push(primary_down(stores, &db, &e, &judging).await);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut s = judge(jx, stores, &db, &cached, &judging).await;
        if !apply_membership(&mut s, fleet, &db) {
            proven.push((db.clone(), last_passed(&cached.drills)));
            physical_freshness(jx, &mut s, &db, &cached.drills, judging.now);
        }
        statuses.push(s);
    }
    send_alerts(jx, &statuses).await?;
    if statuses.is_empty() {
        return Err(Error::Invalid(format!(
            "no database is configured or has backups in {}",
            jx.store.display()
        )));
    }
    let coverage = jx
        .settings
        .coverage
        .as_ref()
        .map(|c| coverage::report(&proven, c.days, judging.now));
    let stores = summarize(stores, &statuses);
    Ok(FleetStatus {
        databases: statuses,
        coverage,
        stores,
    })
}

/// What every database of one run is judged against: one policy and one clock reading, so
/// that all of them (and the coverage) are judged at the same instant.
struct Judging<'a> {
    policy: &'a crate::config::Policy,
    window: DrillWindow,
    now: crate::time::Timestamp,
}

/// The catalogs of a fleet, a few at once (the store's round trips overlap), in the order
/// of `databases`.
async fn load_catalogs(
    store: &pgdrill_store::Store,
    databases: &[DbName],
) -> Vec<Result<crate::catalog_cache::Cached>> {
    use futures::StreamExt;
    futures::stream::iter(databases)
        .map(|db| crate::catalog_cache::load(store, db))
        .buffered(8)
        .collect()
        .await
}

/// One database's SLOs from its catalog and last failure record; with several stores, the
/// `backup_copies` SLO too (the primary's listing is `cached`, already read).
async fn judge(
    jx: &JobEnv<'_>,
    stores: &crate::stores::Stores,
    db: &DbName,
    cached: &crate::catalog_cache::Cached,
    judging: &Judging<'_>,
) -> DbStatus {
    let failure = status::read_failure(jx.store, db).await;
    let mut s = status::evaluate(
        db.as_str(),
        &cached.listing.complete,
        &cached.drills,
        failure,
        judging.policy,
        judging.window.clone(),
        judging.now,
    );
    s.add_damaged_manifests(&cached.listing.unreadable);
    if stores.len() > 1 {
        let (copies, slo) = store_copies(
            stores,
            db,
            Ok(&cached.listing),
            s.freshness_threshold_seconds,
            judging.now,
        )
        .await;
        s.stores = copies;
        s.slos.push(slo);
    }
    s
}

/// Marks `s` with what `[[server]]` discovery says of `db`; one dropped from its server or
/// excluded by its patterns is no longer backed up, so its SLOs give way to one line saying
/// so (nothing is expected of it any more). Returns whether it was.
fn apply_membership(s: &mut DbStatus, fleet: &Fleet, db: &DbName) -> bool {
    let membership = fleet.server_of(db).map(|(server, m)| {
        s.server = Some(server.to_string());
        m
    });
    s.dropped = membership == Some(Membership::Dropped);
    s.excluded = membership == Some(Membership::Excluded);
    if !(s.dropped || s.excluded) {
        return false;
    }
    let (name, why) = if s.dropped {
        ("dropped", "no longer on server")
    } else {
        (
            "excluded",
            "excluded by the include/exclude patterns of server",
        )
    };
    s.slos = vec![Slo {
        name: name.into(),
        ok: true,
        detail: format!(
            "{why} {}: not backed up any more; its {} backup(s) are kept by the retention policy",
            s.server.as_deref().unwrap_or_default(),
            s.backups
        ),
    }];
    true
}

/// When `db` was last proven restorable: the start of its newest passing drill.
fn last_passed(drills: &[crate::drill::evidence::DrillResult]) -> Option<crate::time::Timestamp> {
    drills
        .iter()
        .find(|d| d.passed())
        .and_then(|d| crate::time::parse(&d.started_at))
}

/// With a physical drill configured for `db`, the freshness of its physical backups too.
fn physical_freshness(
    jx: &JobEnv<'_>,
    s: &mut DbStatus,
    db: &DbName,
    drills: &[crate::drill::evidence::DrillResult],
    now: crate::time::Timestamp,
) {
    let physical = jx
        .settings
        .databases
        .iter()
        .find(|d| &d.name == db)
        .and_then(|d| d.drill_settings.physical.as_ref());
    if let Some(p) = physical {
        s.physical_freshness(p.source.kind(), drills, now);
    }
}

/// Alerts on every database, when this instance holds the status-alert lease (see the
/// module's comment); the others only evaluate.
async fn send_alerts(jx: &JobEnv<'_>, statuses: &[DbStatus]) -> Result<()> {
    let notifier = jx.notifier()?;
    match alert_lease(jx).await {
        Ok(lease) => {
            for s in statuses {
                if s.dropped {
                    alert_dropped(jx, &notifier, s).await;
                } else if !s.excluded {
                    alert(jx, &notifier, s).await;
                }
            }
            if let Some(l) = lease {
                l.release().await;
            }
        }
        Err(holder) => jx.events.info(&format!(
            "the status alerts are being sent by another instance ({holder}): this run only evaluates"
        )),
    }
    Ok(())
}

/// What every store holds of `db` (the first store's listing is `primary`, already read).
/// A database whose primary store cannot be read: one `primary_store` line (violated) and
/// the copies the other stores hold.
async fn primary_down(
    stores: &crate::stores::Stores,
    db: &DbName,
    e: &Error,
    judging: &Judging<'_>,
) -> DbStatus {
    let (policy, window, now) = (judging.policy, judging.window.clone(), judging.now);
    let mut s = status::evaluate(db.as_str(), &[], &[], None, policy, window, now);
    let (copies, slo) = store_copies(
        stores,
        db,
        Err(e.to_string()),
        s.freshness_threshold_seconds,
        now,
    )
    .await;
    s.backups = copies.iter().map(|c| c.backups).max().unwrap_or(0);
    s.stores = copies;
    s.slos = vec![
        Slo {
            name: "primary_store".into(),
            ok: false,
            detail: format!(
                "the primary store {} cannot be read ({e}): the SLOs are judged from its drills and records; check its endpoint and credentials",
                stores.first().map(|(x, _)| x.name.as_str()).unwrap_or_default()
            ),
        },
        slo,
    ];
    s
}

async fn store_copies(
    stores: &crate::stores::Stores,
    db: &DbName,
    primary: std::result::Result<&catalog::Listing, String>,
    threshold: i64,
    now: crate::time::Timestamp,
) -> (Vec<status::copies::StoreCopies>, Slo) {
    let ids = |l: &catalog::Listing| {
        l.complete
            .iter()
            .map(|m| (m.backup_id.clone(), m.snapshot.time.clone()))
            .collect::<Vec<_>>()
    };
    let mut listed = Vec::new();
    for (i, (s, store)) in stores.iter().enumerate() {
        let complete = if i == 0 {
            primary.clone().map(ids)
        } else {
            crate::catalog_cache::list(store, db)
                .await
                .map(|l| ids(&l))
                .map_err(|e| e.to_string())
        };
        listed.push(status::copies::Listed {
            store: s.name.clone(),
            complete,
        });
    }
    status::copies::evaluate(&listed, threshold, now)
}

/// Each store over every database.
fn summarize(stores: &crate::stores::Stores, statuses: &[DbStatus]) -> Vec<StoreSummary> {
    if stores.len() < 2 {
        return Vec::new();
    }
    stores
        .iter()
        .map(|(s, _)| {
            let mine: Vec<(&DbStatus, &status::copies::StoreCopies)> = statuses
                .iter()
                .flat_map(|d| {
                    d.stores
                        .iter()
                        .filter(|c| c.store == s.name)
                        .map(move |c| (d, c))
                })
                .collect();
            let newest = mine
                .iter()
                .filter(|(_, c)| c.newest_snapshot.is_some())
                .max_by(|a, b| a.1.newest_snapshot.cmp(&b.1.newest_snapshot));
            StoreSummary {
                name: s.name.clone(),
                reachable: mine.iter().all(|(_, c)| c.reachable),
                backups: mine.iter().map(|(_, c)| c.backups).sum(),
                newest_backup: newest.and_then(|(_, c)| c.newest_backup.clone()),
                newest_snapshot: newest.and_then(|(_, c)| c.newest_snapshot.clone()),
                missing: mine
                    .iter()
                    .flat_map(|(d, c)| {
                        c.missing
                            .iter()
                            .map(move |id| format!("{}/{id}", d.database))
                    })
                    .collect(),
                error: mine.iter().find_map(|(_, c)| c.error.clone()),
            }
        })
        .collect()
}

/// The status-alert lease of a scheduled run (`serve`; a `status` command alerts as it
/// always did): `Ok(Some)` held, `Err` with the holder when another instance holds it. A
/// store that cannot be asked is `Ok(None)`: alerting without the lease (a duplicate at
/// worst) beats not alerting while the store is down.
async fn alert_lease(jx: &JobEnv<'_>) -> std::result::Result<Option<crate::lease::Lease>, String> {
    if jx.slot.is_none() {
        return Ok(None);
    }
    let ttl = super::slot::lease_ttl();
    match crate::lease::acquire_key(
        jx.store,
        ALERT_LEASE_KEY,
        "the status alerts",
        "status",
        ttl,
    )
    .await
    {
        Ok(l) => Ok(Some(l)),
        Err(Error::Locked(holder)) => Err(holder),
        Err(_) => Ok(None),
    }
}

/// Alerts once that a database left its server (`<db>/dropped.json` remembers it).
async fn alert_dropped(jx: &JobEnv<'_>, notifier: &super::Notifier<'_>, s: &DbStatus) {
    let key = format!("{}/dropped.json", s.database);
    if jx.store.get(&key).await.is_ok() {
        return;
    }
    let detail = s.slos.first().map(|x| x.detail.clone()).unwrap_or_default();
    notifier
        .send(
            EventKind::DatabaseDropped,
            &s.database,
            format!("database {} {detail}", s.database),
            json!({"server": s.server, "backups": s.backups}),
        )
        .await;
    let at = crate::time::rfc3339_secs(crate::clock::Clock::process().now());
    let body = json!({"server": s.server, "noticed_at": at}).to_string();
    let _ = jx.store.put(&key, bytes::Bytes::from(body)).await;
}

/// Alerts on a violated SLO, or on recovery after one, and records the state for next time.
async fn alert(jx: &JobEnv<'_>, notifier: &super::Notifier<'_>, s: &DbStatus) {
    let key = format!("{}/status_state.json", s.database);
    let was_violated = jx
        .store
        .get(&key)
        .await
        .map(|b| b.as_ref() == b"violated")
        .unwrap_or(false);
    let violated: Vec<String> = s
        .slos
        .iter()
        .filter(|x| !x.ok)
        .map(|x| format!("{}: {}", x.name, x.detail))
        .collect();
    if !violated.is_empty() {
        let summary = format!("SLO violated for {}: {}", s.database, violated.join("; "));
        notifier
            .send(
                EventKind::SloViolated,
                &s.database,
                summary,
                json!({"slos": s.slos}),
            )
            .await;
    } else if was_violated {
        notifier
            .send(
                EventKind::Recovered,
                &s.database,
                format!("all SLOs of {} are met again", s.database),
                json!({}),
            )
            .await;
    }
    let state: &'static [u8] = if violated.is_empty() {
        b"ok"
    } else {
        b"violated"
    };
    let _ = jx.store.put(&key, bytes::Bytes::from_static(state)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::Cancel;
    use crate::config::{Env, Settings};
    use crate::jobs::Silent;
    use pgdrill_store::Store;
    use std::path::Path;

    /// A folder store with the default settings, for the status job to run over.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        env: Env,
        settings: Settings,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tmp");
            let store = Store::open_folder(dir.path()).expect("store");
            let env = Env::new();
            let settings =
                Settings::load(None, "environment", Path::new("/"), &env).expect("settings");
            Fixture {
                _dir: dir,
                store,
                env,
                settings,
            }
        }

        /// A command's run (`slot` `None`) or a scheduled one; never cancelled.
        fn jx(&self, slot: Option<crate::time::Timestamp>) -> JobEnv<'_> {
            let (_handle, cancel) = Cancel::new();
            JobEnv {
                store: &self.store,
                settings: &self.settings,
                env: &self.env,
                cancel,
                events: &Silent,
                slot,
            }
        }
    }

    #[tokio::test]
    async fn status_job_records_the_slo_state_and_needs_a_database() {
        let f = Fixture::new();
        let (store, jx) = (&f.store, f.jx(None));
        let e = run(&jx, Vec::new()).await.expect_err("no database");
        assert_eq!(e.exit_code(), 2);
        let app = DbName::parse("app").expect("name");
        let statuses = run(&jx, vec![app]).await.expect("status");
        assert!(!statuses[0].ok(), "no backup is not fresh");
        let state = store.get("app/status_state.json").await.expect("state");
        assert_eq!(state.as_ref(), b"violated");
        assert!(
            !store.exists(ALERT_LEASE_KEY).await.expect("exists"),
            "the alert lease is released"
        );
    }

    /// Issue 19 (replicas): while another instance holds the status-alert lease, a
    /// scheduled status run evaluates but neither alerts nor records the alert state; once
    /// the lease is free it does both.
    #[tokio::test]
    async fn only_the_holder_of_the_alert_lease_alerts() {
        let f = Fixture::new();
        let (store, jx) = (&f.store, f.jx(Some(crate::clock::Clock::process().now())));
        let other = crate::lease::acquire_key(
            store,
            ALERT_LEASE_KEY,
            "the status alerts",
            "status",
            std::time::Duration::from_secs(600),
        )
        .await
        .expect("the other replica's lease");
        let app = DbName::parse("app").expect("name");
        let statuses = run(&jx, vec![app.clone()]).await.expect("status");
        assert!(!statuses[0].ok(), "evaluated all the same");
        assert!(
            !store.exists("app/status_state.json").await.expect("exists"),
            "alerted without the lease"
        );
        other.release().await;
        run(&jx, vec![app]).await.expect("status");
        let state = store.get("app/status_state.json").await.expect("state");
        assert_eq!(state.as_ref(), b"violated");
    }
}
