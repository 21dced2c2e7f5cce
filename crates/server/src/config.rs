//! `[schedule]` and `[serve]` validated once into what the daemon uses.

use crate::jobs::JobKind;
use crate::schedule::Schedule;
use pgdrill_core::config::{parse_listen, Env, Schedules, ServeSettings};
use pgdrill_core::{Error, Result};
use pgdrill_pg::Secret;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";
pub use pgdrill_core::config::{DEFAULT_PRUNE, DEFAULT_STATUS};

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub auth: Auth,
    pub shutdown_grace: Duration,
    pub tz: jiff::tz::TimeZone,
    pub tz_name: String,
    pub jitter_seconds: u64,
    /// Per kind, in [`JobKind`] order; `off` ones are left out.
    pub schedules: Vec<(JobKind, Schedule)>,
    /// `[drill] max_concurrent` when `coverage_days` is set: a drill slot drills that many
    /// databases, the least recently proven ones (`pgdrill_core::fleet::coverage::pick`).
    pub drill_coverage: Option<usize>,
    /// `[drill] coverage_days`: every database should pass a drill within that many days
    /// (the coverage series of `/metrics`).
    pub drill_coverage_days: Option<u64>,
    /// How often `[[server]]` databases are discovered again ([`crate::JobRunner::discover`]).
    pub discover_every: Duration,
}

/// Who may read `/metrics`, the dashboard and the reports (`/healthz` is always open).
#[derive(Clone, Debug, Default)]
pub struct Auth {
    pub bearer: Option<Secret>,
    pub basic: Option<(String, Secret)>,
}

impl Auth {
    pub fn is_open(&self) -> bool {
        self.bearer.is_none() && self.basic.is_none()
    }
}

impl ServeConfig {
    /// From the settings validated at load (every schedule already parsed); `listen` (the
    /// `--listen` flag) wins over `[serve] listen`. The secrets the settings name are read
    /// from `env` here, when the daemon starts.
    pub fn from_settings(
        schedule: &Schedules,
        serve: &ServeSettings,
        env: &Env,
        listen: Option<&str>,
    ) -> Result<ServeConfig> {
        let listen = match listen {
            Some(text) => parse_listen(text)?,
            None => match serve.listen {
                Some(a) => a,
                None => parse_listen(DEFAULT_LISTEN)?,
            },
        };
        let wanted: [(JobKind, Option<&Schedule>); 5] = [
            (JobKind::Backup, schedule.backup.as_ref()),
            (JobKind::Drill, schedule.drill.as_ref()),
            (JobKind::Prune, Some(&schedule.prune)),
            (JobKind::Status, Some(&schedule.status)),
            (JobKind::Mirror, schedule.mirror.as_ref()),
        ];
        let schedules = wanted
            .into_iter()
            .filter_map(|(kind, s)| s.filter(|s| !s.is_off()).map(|s| (kind, s.clone())))
            .collect();
        let secret = |var: &str, key: &str| -> Result<Secret> {
            env.get(var)
                .filter(|s| !s.is_empty())
                .map(|s| Secret::new(s.clone()))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "serve.{key} names {var}, which is not set; export it"
                    ))
                })
        };
        let basic = match &serve.basic_auth {
            Some((user, var)) => Some((user.clone(), secret(var, "basic_auth_password_env")?)),
            None => None,
        };
        let bearer = match &serve.bearer_token_env {
            Some(var) => Some(secret(var, "bearer_token_env")?),
            None => None,
        };
        Ok(ServeConfig {
            listen,
            auth: Auth { bearer, basic },
            shutdown_grace: serve.shutdown_grace,
            tz: schedule.tz.clone(),
            tz_name: schedule.tz_name.clone(),
            jitter_seconds: schedule.jitter.as_secs(),
            schedules,
            drill_coverage: None,
            drill_coverage_days: None,
            discover_every: Duration::from_secs(300),
        })
    }

    pub fn schedule(&self, kind: JobKind) -> Option<&Schedule> {
        self.schedules
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdrill_core::config::{Policy, ScheduleSection, ServeSection};

    fn config(s: &ScheduleSection, v: &ServeSection, policy: &Policy) -> Result<ServeConfig> {
        ServeConfig::from_settings(
            &Schedules::from_section(s, policy)?,
            &ServeSettings::from_section(v)?,
            &Env::new(),
            None,
        )
    }

    #[test]
    fn defaults_come_from_the_policy() {
        let policy = Policy {
            logical_export_frequency_minutes: Some(360),
            monthly_restore_day: Some("first_sunday".into()),
            ..Policy::default()
        };
        let c = config(
            &ScheduleSection::default(),
            &ServeSection::default(),
            &policy,
        )
        .expect("config");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        let texts: Vec<String> = c
            .schedules
            .iter()
            .map(|(k, s)| format!("{}={s}", k.name()))
            .collect();
        assert_eq!(
            texts,
            [
                "backup=every 360m",
                "drill=first_sunday",
                "prune=0 3 * * *",
                "status=every 5m"
            ]
        );
        assert!(c.auth.is_open());
        assert_eq!(c.shutdown_grace, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = |s: ScheduleSection, v: ServeSection| {
            config(&s, &v, &Policy::default())
                .expect_err("invalid")
                .to_string()
        };
        let e = bad(
            ScheduleSection {
                drill: Some("0 4 * * SUN#9".into()),
                ..Default::default()
            },
            ServeSection::default(),
        );
        assert!(e.contains("[schedule] drill"), "{e}");
        let e = bad(
            ScheduleSection {
                timezone: Some("Mars/Olympus".into()),
                ..Default::default()
            },
            ServeSection::default(),
        );
        assert!(e.contains("[schedule] timezone"), "{e}");
        let e = bad(
            ScheduleSection::default(),
            ServeSection {
                bearer_token_env: Some("NOPE_TOKEN".into()),
                ..Default::default()
            },
        );
        assert!(e.contains("NOPE_TOKEN"), "{e}");
        let e = bad(
            ScheduleSection::default(),
            ServeSection {
                listen: Some("localhost".into()),
                ..Default::default()
            },
        );
        assert!(e.contains("serve.listen") && e.contains("localhost"), "{e}");
        let e = bad(
            ScheduleSection::default(),
            ServeSection {
                basic_auth_user: Some("u".into()),
                ..Default::default()
            },
        );
        assert!(e.contains("basic_auth_password_env"), "{e}");
    }
}
