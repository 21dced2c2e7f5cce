//! Alerts (DESIGN.md §6, issue 5 point 3): a Slack incoming webhook, a generic JSON webhook,
//! healthchecks-style ping URLs and email over SMTP.
//!
//! Contracts:
//! - `notify` never fails as a whole: every channel runs concurrently with its own time budget
//!   (10 s by default, including its one retry), and returns its own [`ChannelOutcome`].
//! - Pings are heartbeats: every event goes to `<base>/start`, `<base>` or `<base>/fail` and
//!   is never de-duplicated. Slack, webhook and email carry only failures, SLO violations and
//!   `Recovered`; an identical (channel, kind, database, summary) alert already sent within
//!   `dedup_minutes` is skipped. `Recovered` forgets the failures of its database (so the next
//!   failure alerts again) and a failure forgets an earlier `Recovered`.
//! - Nothing secret leaves: webhook and ping URLs and the SMTP password are secrets; they, their
//!   long path segments and any URL userinfo or `password=` value are scrubbed from every
//!   payload and error, and errors name the channel, never its URL.
//! - SMTP goes over TLS (`tls` or `starttls`, certificates checked) or plain to a relay: AUTH
//!   is only sent over TLS or to a loopback relay.
//!
//! (One file of about 460 lines: the fan-out, each channel's send with its retry and the de-dup
//! rule share the event and outcome types and read best in order; the transports are in
//! `alert/`.)

mod dedup;
mod http;
mod message;
mod redact;
mod smtp;

use crate::time::{self, SignedDuration, Timestamp};
use crate::{Error, Result};
pub use dedup::DedupState;
use futures::future::join_all;
use http::Body;
use pgdrill_pg::Secret;
use redact::Redactor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// How long an identical alert is not re-sent when `dedup_minutes` is unset (6 hours).
pub const DEFAULT_DEDUP_MINUTES: u64 = 360;
/// Each channel's whole budget, its one retry included.
pub const CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(300);
/// De-dup entries kept at most; the oldest go first.
const MAX_DEDUP_ENTRIES: usize = 1000;
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `[alerts]` table of `pgdrill.toml`. URLs and passwords are never written here, only the
/// names of the environment variables holding them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// Variable holding the Slack incoming-webhook URL.
    pub slack_webhook_env: Option<String>,
    /// Variable holding a URL that receives each alert as a JSON document (POST).
    pub webhook_url_env: Option<String>,
    /// Variable holding a healthchecks.io-style base URL (`<base>/start`, `<base>`, `<base>/fail`).
    pub ping_url_env: Option<String>,
    pub smtp: Option<SmtpSection>,
    /// An identical alert is not re-sent within this many minutes (default 360; 0 = always send).
    pub dedup_minutes: Option<u64>,
}

impl AlertsSection {
    /// What can be checked without the environment (the variables are read when a job
    /// builds its [`Alerter`]): run at config load.
    pub fn check(&self) -> Result<()> {
        if let Some(s) = &self.smtp {
            smtp::check(s)?;
        }
        if let Some(m) = self.dedup_minutes {
            dedup_window(m)
                .ok_or_else(|| Error::Invalid("alerts.dedup_minutes is too large".into()))?;
        }
        Ok(())
    }
}

/// `minutes` as the de-dup window; `None` when it is too long to add to a time.
fn dedup_window(minutes: u64) -> Option<SignedDuration> {
    i64::try_from(minutes)
        .ok()
        .and_then(|m| m.checked_mul(60))
        .filter(|s| *s <= i64::MAX / 1000)
        .map(SignedDuration::from_secs)
}

/// `[alerts.smtp]`: SMTP to a relay or a mail provider. `tls = true` connects with TLS
/// (SMTPS, port 465), `starttls = true` upgrades a plain connection (port 587) and never falls
/// back to plain text; the server's certificate is checked against the system's roots and
/// `ca_file`. AUTH PLAIN needs TLS, or a loopback host.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub host: String,
    /// Default 465 with `tls`, 587 with `starttls`, else 25.
    pub port: Option<u16>,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    /// Variable holding the SMTP password (required with `username`).
    pub password_env: Option<String>,
    /// Upgrade the connection with STARTTLS (required: no plain-text fallback).
    #[serde(default)]
    pub starttls: bool,
    /// TLS from the first byte (SMTPS).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of CA certificates trusted besides the system's (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    BackupFailed,
    BackupSucceeded,
    /// A backup complete in some stores and missing from others (DESIGN.md §9).
    BackupDegraded,
    DrillFailed,
    DrillPassed,
    SloViolated,
    Recovered,
    JobStarted,
    /// A `[[server]]` database with backups is no longer on its server.
    DatabaseDropped,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BackupFailed => "backup_failed",
            EventKind::BackupSucceeded => "backup_succeeded",
            EventKind::BackupDegraded => "backup_degraded",
            EventKind::DrillFailed => "drill_failed",
            EventKind::DrillPassed => "drill_passed",
            EventKind::SloViolated => "slo_violated",
            EventKind::Recovered => "recovered",
            EventKind::JobStarted => "job_started",
            EventKind::DatabaseDropped => "database_dropped",
        }
    }

    /// Words for people ("backup failed").
    pub fn title(self) -> &'static str {
        match self {
            EventKind::BackupFailed => "backup failed",
            EventKind::BackupSucceeded => "backup succeeded",
            EventKind::BackupDegraded => "backup degraded (a store lacks its copy)",
            EventKind::DrillFailed => "restore drill failed",
            EventKind::DrillPassed => "restore drill passed",
            EventKind::SloViolated => "SLO violated",
            EventKind::Recovered => "recovered",
            EventKind::JobStarted => "job started",
            EventKind::DatabaseDropped => "database dropped from its server",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(
            self,
            EventKind::BackupFailed
                | EventKind::BackupDegraded
                | EventKind::DrillFailed
                | EventKind::SloViolated
        )
    }

    /// Whether Slack, webhook and email carry this event (pings carry all).
    pub fn is_alert(self) -> bool {
        self.is_failure() || matches!(self, EventKind::Recovered | EventKind::DatabaseDropped)
    }

    fn ping_suffix(self) -> &'static str {
        match self {
            EventKind::JobStarted => "/start",
            k if k.is_failure() => "/fail",
            _ => "",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AlertEvent {
    pub kind: EventKind,
    pub database: String,
    /// One sentence.
    pub summary: String,
    /// Free-form context (error text, RTO, drill id); shown in the webhook and the email.
    pub details: serde_json::Value,
    #[serde(with = "time::chrono_compat")]
    pub at: Timestamp,
}

/// What one channel did with one event. Neither sent, nor skipped, nor failed means the
/// channel does not carry this kind of event (a plain success on Slack).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelOutcome {
    /// "slack", "webhook", "ping" or "email"; never the URL.
    pub channel: String,
    pub sent: bool,
    pub skipped_duplicate: bool,
    /// Redacted; may be set with `sent` (an email some recipients refused).
    pub error: Option<String>,
}

#[derive(Debug)]
enum Channel {
    Slack(Secret),
    Webhook(Secret),
    /// Base URL without a trailing `/`.
    Ping(Secret),
    Email(smtp::SmtpTarget),
}

impl Channel {
    fn name(&self) -> &'static str {
        match self {
            Channel::Slack(_) => "slack",
            Channel::Webhook(_) => "webhook",
            Channel::Ping(_) => "ping",
            Channel::Email(_) => "email",
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Channel::Slack(_) => "slack webhook",
            other => other.name(),
        }
    }
}

/// One failed attempt; `retryable` for timeouts, connection errors, 5xx, 429 and SMTP 4xx.
#[derive(Debug)]
struct Failure {
    message: String,
    retryable: bool,
}

impl Failure {
    fn transient(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: true,
        }
    }
    fn permanent(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: false,
        }
    }
}

/// `Ok(Some(warning))`: delivered, with something to report.
type Delivery = std::result::Result<Option<String>, Failure>;

/// The configured channels; `Debug` shows no secret.
#[derive(Debug)]
pub struct Alerter {
    channels: Vec<Channel>,
    dedup_window: SignedDuration,
    redactor: Redactor,
    http: reqwest::Client,
    timeout: Duration,
}

impl Alerter {
    /// Validates `[alerts]` against `env`; an unset variable named by a `*_env` key is
    /// `Error::Invalid` naming it.
    pub fn from_config(cfg: &AlertsSection, env: &BTreeMap<String, String>) -> Result<Alerter> {
        let mut redactor = Redactor::default();
        let mut channels = Vec::new();
        if let Some(var) = &cfg.slack_webhook_env {
            let url = http_url(env, "alerts.slack_webhook_env", var, &mut redactor)?;
            channels.push(Channel::Slack(Secret::new(url)));
        }
        if let Some(var) = &cfg.webhook_url_env {
            let url = http_url(env, "alerts.webhook_url_env", var, &mut redactor)?;
            channels.push(Channel::Webhook(Secret::new(url)));
        }
        if let Some(var) = &cfg.ping_url_env {
            let url = http_url(env, "alerts.ping_url_env", var, &mut redactor)?;
            channels.push(Channel::Ping(Secret::new(url.trim_end_matches('/'))));
        }
        if let Some(s) = &cfg.smtp {
            channels.push(Channel::Email(smtp::SmtpTarget::from_config(
                s,
                env,
                &mut redactor,
            )?));
        }
        let minutes = cfg.dedup_minutes.unwrap_or(DEFAULT_DEDUP_MINUTES);
        let minutes = dedup_window(minutes)
            .ok_or_else(|| Error::Invalid("alerts.dedup_minutes is too large".into()))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pgdrill/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Failed(format!("build the HTTP client for alerts: {e}")))?;
        Ok(Alerter {
            channels,
            dedup_window: minutes,
            redactor,
            http,
            timeout: CHANNEL_TIMEOUT,
        })
    }

    /// Replaces each channel's time budget (tests, impatient callers).
    pub fn with_timeout(mut self, timeout: Duration) -> Alerter {
        self.timeout = timeout;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// "slack", "webhook", "ping", "email", in that order, for those configured.
    pub fn channel_names(&self) -> Vec<&'static str> {
        self.channels.iter().map(Channel::name).collect()
    }

    /// Sends to every channel concurrently; never fails as a whole; returns one outcome per
    /// channel, in `channel_names` order. `state` is updated with what was sent.
    pub async fn notify(&self, event: &AlertEvent, state: &mut DedupState) -> Vec<ChannelOutcome> {
        let event = self.redactor.event(event);
        let dedup = self.dedup_window > SignedDuration::ZERO;
        if dedup {
            state.advance(&event, self.dedup_window);
        }
        let mut outcomes: Vec<Option<ChannelOutcome>> = vec![None; self.channels.len()];
        let mut to_send = Vec::new();
        for (i, ch) in self.channels.iter().enumerate() {
            let heartbeat = matches!(ch, Channel::Ping(_));
            if !heartbeat && !event.kind.is_alert() {
                outcomes[i] = Some(outcome(ch, false, false, None));
            } else if !heartbeat && dedup && state.is_duplicate(ch.name(), &event) {
                outcomes[i] = Some(outcome(ch, false, true, None));
            } else {
                to_send.push(i);
            }
        }
        let sends = to_send
            .iter()
            .map(|&i| self.deliver(&self.channels[i], &event));
        let results = join_all(sends).await;
        for (i, result) in to_send.into_iter().zip(results) {
            let ch = &self.channels[i];
            let scrub =
                |m: String| Some(self.redactor.scrub(&format!("{} failed: {m}", ch.label())));
            let o = match result {
                Ok(warning) => outcome(ch, true, false, warning.and_then(scrub)),
                Err(message) => outcome(ch, false, false, scrub(message)),
            };
            if o.sent && dedup && !matches!(ch, Channel::Ping(_)) {
                state.record(ch.name(), &event);
            }
            outcomes[i] = Some(o);
        }
        outcomes.into_iter().flatten().collect()
    }

    async fn deliver(
        &self,
        ch: &Channel,
        ev: &AlertEvent,
    ) -> std::result::Result<Option<String>, String> {
        match ch {
            Channel::Slack(url) => {
                let body = serde_json::json!({ "text": message::slack_text(ev) });
                self.retry(|| http::post(&self.http, url.expose().to_string(), Body::Json(&body)))
                    .await
            }
            Channel::Webhook(url) => {
                let body = message::webhook_json(ev);
                self.retry(|| http::post(&self.http, url.expose().to_string(), Body::Json(&body)))
                    .await
            }
            Channel::Ping(base) => {
                let url = format!("{}{}", base.expose(), ev.kind.ping_suffix());
                let text = message::ping_text(ev);
                self.retry(|| http::post(&self.http, url.clone(), Body::Text(text.clone())))
                    .await
            }
            Channel::Email(target) => {
                let data = smtp::render(
                    target,
                    &message::email_subject(ev),
                    &message::email_body(ev),
                    Timestamp::now(),
                );
                self.retry(|| smtp::send(target, &data)).await
            }
        }
    }

    /// Runs `attempt` at most twice within the channel's budget; retries only what may pass.
    async fn retry<F, Fut>(&self, mut attempt: F) -> std::result::Result<Option<String>, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Delivery>,
    {
        let tries = async {
            let mut last = Failure::permanent("not attempted");
            for n in 0..2 {
                if n > 0 {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                match attempt().await {
                    Ok(warning) => return Ok(warning),
                    Err(f) if f.retryable => last = f,
                    Err(f) => return Err(f.message),
                }
            }
            Err(last.message)
        };
        match tokio::time::timeout(self.timeout, tries).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
        }
    }
}

fn outcome(
    ch: &Channel,
    sent: bool,
    skipped_duplicate: bool,
    error: Option<String>,
) -> ChannelOutcome {
    ChannelOutcome {
        channel: ch.name().to_string(),
        sent,
        skipped_duplicate,
        error,
    }
}

fn env_value(
    env: &BTreeMap<String, String>,
    key: &str,
    var: &str,
    red: &mut Redactor,
) -> Result<String> {
    match env.get(var) {
        Some(v) if !v.trim().is_empty() => {
            red.add(v);
            Ok(v.trim().to_string())
        }
        _ => Err(Error::Invalid(format!(
            "{key} names the environment variable {var}, which is not set"
        ))),
    }
}

fn http_url(
    env: &BTreeMap<String, String>,
    key: &str,
    var: &str,
    red: &mut Redactor,
) -> Result<String> {
    let value = env_value(env, key, var, red)?;
    red.add_url(&value);
    match url::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(value),
        _ => Err(Error::Invalid(format!(
            "{key}: the value of {var} is not an http(s) URL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound chrono's `TimeDelta::try_minutes` set: seconds up to `i64::MAX / 1000`.
    #[test]
    fn dedup_windows_are_bounded_as_before() {
        assert_eq!(dedup_window(0), Some(SignedDuration::ZERO));
        assert_eq!(dedup_window(360), Some(SignedDuration::from_hours(6)));
        let max = (i64::MAX / 1000 / 60) as u64;
        assert!(dedup_window(max).is_some());
        assert!(dedup_window(max + 1).is_none());
        assert!(dedup_window(u64::MAX).is_none());
    }
}
