//! What was sent when, so an identical alert is not repeated within the window.

use super::{AlertEvent, EventKind, MAX_DEDUP_ENTRIES};
use crate::time::{self, SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Alerts already sent, kept by the caller (e.g. in the store) between runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DedupState {
    #[serde(default)]
    entries: Vec<DedupEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct DedupEntry {
    channel: String,
    kind: EventKind,
    database: String,
    summary_sha256: String,
    #[serde(with = "time::chrono_compat")]
    sent_at: Timestamp,
}

impl DedupState {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn matches(e: &DedupEntry, channel: &str, ev: &AlertEvent) -> bool {
        e.channel == channel
            && e.kind == ev.kind
            && e.database == ev.database
            && e.summary_sha256 == summary_hash(&ev.summary)
    }

    /// Drops expired entries and the ones the event's state change makes stale.
    pub(super) fn advance(&mut self, ev: &AlertEvent, window: SignedDuration) {
        self.entries.retain(|e| {
            let expired = ev.at.duration_since(e.sent_at) >= window;
            let stale = e.database == ev.database
                && match ev.kind {
                    EventKind::Recovered => e.kind != EventKind::Recovered,
                    k if k.is_failure() => e.kind == EventKind::Recovered,
                    _ => false,
                };
            !expired && !stale
        });
    }

    pub(super) fn is_duplicate(&self, channel: &str, ev: &AlertEvent) -> bool {
        self.entries.iter().any(|e| Self::matches(e, channel, ev))
    }

    pub(super) fn record(&mut self, channel: &str, ev: &AlertEvent) {
        self.entries.retain(|e| !Self::matches(e, channel, ev));
        self.entries.push(DedupEntry {
            channel: channel.to_string(),
            kind: ev.kind,
            database: ev.database.clone(),
            summary_sha256: summary_hash(&ev.summary),
            sent_at: ev.at,
        });
        if self.entries.len() > MAX_DEDUP_ENTRIES {
            self.entries.sort_by_key(|e| e.sent_at);
            let extra = self.entries.len() - MAX_DEDUP_ENTRIES;
            self.entries.drain(..extra);
        }
    }
}

fn summary_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The de-dup state's exact text (times as chrono's serde wrote them).
    #[test]
    fn dedup_state_keeps_its_text() {
        let text = r#"{"entries":[{"channel":"slack","kind":"backup_failed","database":"app","summary_sha256":"ab","sent_at":"2026-12-06T06:40:53.123Z"},{"channel":"email","kind":"recovered","database":"app","summary_sha256":"cd","sent_at":"2026-12-06T06:40:53Z"}]}"#;
        let s: DedupState = serde_json::from_str(text).expect("state");
        assert_eq!(serde_json::to_string(&s).expect("json"), text);
    }
}
