//! Sends a job's alert events; the de-dup state lives in the store (`alerts/state.json`) so
//! cron runs on different hosts share it. Never fails a job.

use super::Events;
use crate::alert::{AlertEvent, Alerter, AlertsSection, DedupState, EventKind};
use crate::config::Env;
use pgdrill_store::Store;

const STATE_KEY: &str = "alerts/state.json";

pub struct Notifier<'a> {
    alerter: Option<Alerter>,
    store: Store,
    events: &'a dyn Events,
}

impl<'a> Notifier<'a> {
    pub fn new(
        alerts: &AlertsSection,
        env: &Env,
        store: &Store,
        events: &'a dyn Events,
    ) -> crate::Result<Notifier<'a>> {
        let alerter = Alerter::from_config(alerts, env)?;
        Ok(Notifier {
            alerter: (!alerter.is_empty()).then_some(alerter),
            store: store.clone(),
            events,
        })
    }

    pub async fn send(
        &self,
        kind: EventKind,
        database: &str,
        summary: String,
        details: serde_json::Value,
    ) {
        let Some(alerter) = &self.alerter else { return };
        let mut state: DedupState = match self.store.get(STATE_KEY).await {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(_) => DedupState::default(),
        };
        let event = AlertEvent {
            kind,
            database: database.to_string(),
            summary,
            details,
            at: crate::time::Timestamp::now(),
        };
        for o in alerter.notify(&event, &mut state).await {
            if let Some(e) = o.error {
                self.events
                    .warn(&format!("alert via {} failed: {e}", o.channel));
            }
        }
        if let Ok(body) = serde_json::to_vec(&state) {
            let _ = self.store.put(STATE_KEY, bytes::Bytes::from(body)).await;
        }
    }
}
