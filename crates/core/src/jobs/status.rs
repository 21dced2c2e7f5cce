//! The status job: every database's SLOs evaluated, an alert when one is violated (and a
//! `Recovered` when all are met again), the last state kept in `<db>/status_state.json`.

use super::JobEnv;
use crate::alert::EventKind;
use crate::fleet::coverage::{self, CoverageReport};
use crate::fleet::{Fleet, Membership};
use crate::ids::DbName;
use crate::status::{self, DbStatus, DrillWindow, Slo};
use crate::{catalog, Error, Result};
use serde_json::json;

/// Evaluates `databases`; `Err` when there are none.
pub async fn run(jx: &JobEnv<'_>, databases: Vec<DbName>) -> Result<Vec<DbStatus>> {
    Ok(run_fleet(jx, databases, &Fleet::default()).await?.databases)
}

/// Every database's status, and the fleet's drill coverage.
#[derive(Debug)]
pub struct FleetStatus {
    pub databases: Vec<DbStatus>,
    /// `[drill] coverage_days`: databases proven within the window, of all (dropped ones
    /// left out).
    pub coverage: Option<CoverageReport>,
}

impl FleetStatus {
    pub fn ok(&self) -> bool {
        self.databases.iter().all(|s| s.ok()) && self.coverage.as_ref().is_none_or(|c| c.ok)
    }
}

/// [`run`] with what `[[server]]` discovery found: databases dropped from their server get
/// one `dropped` line instead of their SLOs (nothing is expected of them any more) and one
/// alert; with `[drill] coverage_days`, the coverage SLO over the others.
pub async fn run_fleet(
    jx: &JobEnv<'_>,
    databases: Vec<DbName>,
    fleet: &Fleet,
) -> Result<FleetStatus> {
    let policy = &jx.settings.policy;
    let window = DrillWindow::from_settings(jx.settings);
    let now = crate::clock::Clock::process().now();
    let mut statuses = Vec::new();
    let mut proven = Vec::new();
    // The catalogs of a fleet, a few at once (the store's round trips overlap).
    let loaded: Vec<Result<catalog::cache::Cached>> = {
        use futures::StreamExt;
        futures::stream::iter(&databases)
            .map(|db| catalog::cache::load(jx.store, db))
            .buffered(8)
            .collect()
            .await
    };
    for (db, loaded) in databases.into_iter().zip(loaded) {
        let catalog::cache::Cached { listing, drills } = loaded?;
        let failure = status::read_failure(jx.store, &db).await;
        let mut s = status::evaluate(
            db.as_str(),
            &listing.complete,
            &drills,
            failure,
            policy,
            window.clone(),
            now,
        );
        s.add_damaged_manifests(&listing.unreadable);
        let membership = fleet.server_of(&db).map(|(server, m)| {
            s.server = Some(server.to_string());
            m
        });
        s.dropped = membership == Some(Membership::Dropped);
        s.excluded = membership == Some(Membership::Excluded);
        if s.dropped || s.excluded {
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
        } else {
            let last = drills
                .iter()
                .find(|d| d.passed())
                .and_then(|d| crate::time::parse(&d.started_at));
            proven.push((db.clone(), last));
            let physical = jx
                .settings
                .databases
                .iter()
                .find(|d| d.name == db)
                .and_then(|d| d.drill_settings.physical.as_ref());
            if let Some(p) = physical {
                s.physical_freshness(p.source.kind(), &drills, now);
            }
        }
        statuses.push(s);
    }
    let notifier = jx.notifier()?;
    for s in &statuses {
        if s.dropped {
            alert_dropped(jx, &notifier, s).await;
        } else if !s.excluded {
            alert(jx, &notifier, s).await;
        }
    }
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
        .map(|c| coverage::report(&proven, c.days, now));
    Ok(FleetStatus {
        databases: statuses,
        coverage,
    })
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

    #[tokio::test]
    async fn status_job_records_the_slo_state_and_needs_a_database() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open_folder(dir.path()).expect("store");
        let env = Env::new();
        let settings = Settings::load(None, "environment", Path::new("/"), &env).expect("settings");
        let (_handle, cancel) = Cancel::new();
        let jx = JobEnv {
            store: &store,
            settings: &settings,
            env: &env,
            cancel,
            events: &Silent,
            slot: None,
        };
        let e = run(&jx, Vec::new()).await.expect_err("no database");
        assert_eq!(e.exit_code(), 2);
        let app = DbName::parse("app").expect("name");
        let statuses = run(&jx, vec![app]).await.expect("status");
        assert!(!statuses[0].ok(), "no backup is not fresh");
        let state = store.get("app/status_state.json").await.expect("state");
        assert_eq!(state.as_ref(), b"violated");
    }
}
