//! The status job: every database's SLOs evaluated, an alert when one is violated (and a
//! `Recovered` when all are met again), the last state kept in `<db>/status_state.json`.

use super::JobEnv;
use crate::alert::EventKind;
use crate::ids::DbName;
use crate::status::{self, DbStatus, DrillWindow};
use crate::{catalog, drill, Error, Result};
use serde_json::json;

/// Evaluates `databases`; `Err` when there are none.
pub async fn run(jx: &JobEnv<'_>, databases: Vec<DbName>) -> Result<Vec<DbStatus>> {
    let policy = &jx.settings.policy;
    let window = DrillWindow::from_settings(jx.settings);
    let mut statuses = Vec::new();
    for db in databases {
        let listing = catalog::list(jx.store, &db).await?;
        let drills = drill::list(jx.store, &db).await?;
        let failure = status::read_failure(jx.store, &db).await;
        let mut s = status::evaluate(
            db.as_str(),
            &listing.complete,
            &drills,
            failure,
            policy,
            window.clone(),
            crate::clock::Clock::process().now(),
        );
        s.add_damaged_manifests(&listing.unreadable);
        let physical = jx
            .settings
            .databases
            .iter()
            .find(|d| d.name == db)
            .and_then(|d| d.drill_settings.physical.as_ref());
        if let Some(p) = physical {
            s.physical_freshness(
                p.source.kind(),
                &drills,
                crate::clock::Clock::process().now(),
            );
        }
        statuses.push(s);
    }
    let notifier = jx.notifier()?;
    for s in &statuses {
        alert(jx, &notifier, s).await;
    }
    if statuses.is_empty() {
        return Err(Error::Invalid(format!(
            "no database is configured or has backups in {}",
            jx.store.display()
        )));
    }
    Ok(statuses)
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
