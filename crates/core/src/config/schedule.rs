//! `[schedule]` and `[serve]`, the sections `pgdrill serve` reads, typed and validated once
//! at load: every command refuses a config whose schedule or listen address is wrong, not
//! only the one that would use them.

use super::Policy;
use crate::schedule::Schedule;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// `[schedule]`: when `pgdrill serve` runs each job. Values are `every <N>s|m|h|d`, a 5-field
/// cron expression (with `DOW#n`), `first_sunday` or `off` ([`crate::schedule`]); they are
/// checked at config load, so every command refuses an invalid one. `backup` defaults to the policy's `logical_export_frequency_minutes`, `drill` to its
/// `monthly_restore_day`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    pub backup: Option<String>,
    pub drill: Option<String>,
    pub prune: Option<String>,
    pub status: Option<String>,
    /// Hook for `mirror` (DESIGN.md §7); a build without it refuses a mirror schedule.
    pub mirror: Option<String>,
    /// IANA time zone the cron expressions are read in (default UTC).
    pub timezone: Option<String>,
    /// Each run starts up to this many seconds late, at random (spreads hosts apart).
    pub jitter_seconds: Option<u64>,
}

/// `[serve]`: the daemon's HTTP endpoint and shutdown.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// Address to listen on (default 127.0.0.1:9187).
    pub listen: Option<String>,
    /// Environment variable holding a bearer token every request but /healthz must carry.
    pub bearer_token_env: Option<String>,
    pub basic_auth_user: Option<String>,
    pub basic_auth_password_env: Option<String>,
    /// How long SIGTERM waits for a running job before aborting it (default 60).
    pub shutdown_grace_seconds: Option<u64>,
}

/// `prune`'s schedule when `[schedule] prune` is unset.
pub const DEFAULT_PRUNE: &str = "0 3 * * *";
/// `status`'s schedule when `[schedule] status` is unset.
pub const DEFAULT_STATUS: &str = "every 5m";

/// `[schedule]` with its defaults applied: `backup` from the policy's
/// `logical_export_frequency_minutes`, `drill` from its `monthly_restore_day`. `None` is a
/// job without a schedule; an `off` schedule is kept (the daemon leaves it out).
#[derive(Clone, Debug)]
pub struct Schedules {
    pub backup: Option<Schedule>,
    pub drill: Option<Schedule>,
    pub prune: Schedule,
    pub status: Schedule,
    /// Hook for `mirror` (DESIGN.md §7).
    pub mirror: Option<Schedule>,
    /// The IANA time zone the cron expressions are read in.
    pub tz: jiff::tz::TimeZone,
    pub tz_name: String,
    /// Each run starts up to this much late, at random (spreads hosts apart).
    pub jitter: Duration,
}

impl Schedules {
    pub fn from_section(s: &ScheduleSection, policy: &Policy) -> Result<Schedules> {
        let parse = |key: &str, text: &str| {
            Schedule::parse(text).map_err(|e| {
                Error::Invalid(format!(
                    "[schedule] {key} = {text:?} is not a schedule ({e}): write it like \"every 6h\", \"0 3 * * *\" (minute hour day month weekday) or \"off\""
                ))
            })
        };
        let opt =
            |key: &str, text: &Option<String>| text.as_deref().map(|t| parse(key, t)).transpose();
        let backup = match (&s.backup, policy.logical_export_frequency_minutes) {
            (Some(t), _) => Some(parse("backup", t)?),
            (None, Some(m)) => Some(Schedule::parse(&format!("every {m}m")).map_err(|e| {
                Error::Invalid(format!(
                    "policy logical_export_frequency_minutes = {m} cannot be the backup schedule ({e}): lower it, or set [schedule] backup"
                ))
            })?),
            (None, None) => None,
        };
        let drill = match (&s.drill, &policy.monthly_restore_day) {
            (Some(t), _) => Some(parse("drill", t)?),
            (None, Some(day)) => Some(Schedule::parse(day).map_err(|e| {
                Error::Invalid(format!(
                    "policy monthly_restore_day = {day:?} is not a schedule ({e}): write it like \"first_sunday\" or \"0 4 1 * *\""
                ))
            })?),
            (None, None) => None,
        };
        let tz_name = s.timezone.clone().unwrap_or_else(|| "UTC".into());
        let tz = jiff::tz::TimeZone::get(&tz_name).map_err(|_| {
            Error::Invalid(format!(
                "[schedule] timezone = {tz_name:?} is not a known IANA time zone: write it like \"Europe/Berlin\" or \"UTC\""
            ))
        })?;
        Ok(Schedules {
            backup,
            drill,
            prune: parse("prune", s.prune.as_deref().unwrap_or(DEFAULT_PRUNE))?,
            status: parse("status", s.status.as_deref().unwrap_or(DEFAULT_STATUS))?,
            mirror: opt("mirror", &s.mirror)?,
            tz,
            tz_name,
            jitter: Duration::from_secs(s.jitter_seconds.unwrap_or(0)),
        })
    }
}

/// `[serve]`, checked: the listen address parsed, basic auth set whole or not at all. The
/// secrets stay named by variables, read when `serve` starts.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub listen: Option<SocketAddr>,
    pub bearer_token_env: Option<String>,
    /// `(user, variable holding the password)`.
    pub basic_auth: Option<(String, String)>,
    /// How long SIGTERM waits for a running job before aborting it.
    pub shutdown_grace: Duration,
}

impl ServeSettings {
    pub fn from_section(s: &ServeSection) -> Result<ServeSettings> {
        let listen = s.listen.as_deref().map(parse_listen).transpose()?;
        let basic_auth = match (&s.basic_auth_user, &s.basic_auth_password_env) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(Error::Invalid(
                    "serve: set both basic_auth_user and basic_auth_password_env, or neither"
                        .into(),
                ))
            }
        };
        Ok(ServeSettings {
            listen,
            bearer_token_env: s.bearer_token_env.clone(),
            basic_auth,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_seconds.unwrap_or(60)),
        })
    }
}

/// A listen address (`--listen` or `[serve] listen`).
pub fn parse_listen(text: &str) -> Result<SocketAddr> {
    text.parse().map_err(|_| {
        Error::Invalid(format!(
            "the listen address {text:?} (--listen or serve.listen) is not like 127.0.0.1:9187 or [::1]:9187"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_take_their_defaults_from_the_policy_and_keep_off() {
        let policy = Policy {
            logical_export_frequency_minutes: Some(360),
            monthly_restore_day: Some("first_sunday".into()),
            ..Policy::default()
        };
        let s = Schedules::from_section(
            &ScheduleSection {
                status: Some("off".into()),
                timezone: Some("Europe/Berlin".into()),
                jitter_seconds: Some(30),
                ..Default::default()
            },
            &policy,
        )
        .expect("schedules");
        assert_eq!(s.backup.expect("backup").to_string(), "every 360m");
        assert_eq!(s.drill.expect("drill").to_string(), "first_sunday");
        assert_eq!(s.prune.to_string(), DEFAULT_PRUNE);
        assert!(s.status.is_off());
        assert!(s.mirror.is_none());
        assert_eq!(s.tz_name, "Europe/Berlin");
        assert_eq!(s.jitter, Duration::from_secs(30));
        let none = Schedules::from_section(&ScheduleSection::default(), &Policy::default())
            .expect("no policy");
        assert!(none.backup.is_none() && none.drill.is_none());
        assert_eq!(none.status.to_string(), DEFAULT_STATUS);
    }

    #[test]
    fn serve_settings_parse_the_address_and_pair_basic_auth() {
        let s = ServeSettings::from_section(&ServeSection {
            listen: Some("[::1]:9000".into()),
            basic_auth_user: Some("ops".into()),
            basic_auth_password_env: Some("OPS_PW".into()),
            shutdown_grace_seconds: Some(5),
            ..Default::default()
        })
        .expect("serve");
        assert_eq!(s.listen.expect("listen").port(), 9000);
        assert_eq!(s.basic_auth, Some(("ops".into(), "OPS_PW".into())));
        assert_eq!(s.shutdown_grace, Duration::from_secs(5));
    }
}
