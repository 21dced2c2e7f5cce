//! `[schedule]` and `[serve]` validated once into what the daemon uses.

use crate::jobs::JobKind;
use crate::schedule::Schedule;
use pgdrill_core::config::{Env, Policy, ScheduleSection, ServeSection};
use pgdrill_core::{Error, Result};
use pgdrill_pg::Secret;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";
pub const DEFAULT_PRUNE: &str = "0 3 * * *";
pub const DEFAULT_STATUS: &str = "every 5m";

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
    /// `listen` (the `--listen` flag) wins over `[serve] listen`.
    pub fn from_sections(
        schedule: &ScheduleSection,
        serve: &ServeSection,
        policy: &Policy,
        env: &Env,
        listen: Option<&str>,
    ) -> Result<ServeConfig> {
        let listen_text = listen.or(serve.listen.as_deref()).unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            Error::Invalid(format!(
                "the listen address {listen_text:?} (--listen or serve.listen) is not like 127.0.0.1:9187 or [::1]:9187"
            ))
        })?;
        let tz_name = schedule.timezone.clone().unwrap_or_else(|| "UTC".into());
        let tz = jiff::tz::TimeZone::get(&tz_name).map_err(|_| {
            Error::Invalid(format!(
                "schedule.timezone {tz_name:?} is not a known IANA time zone (like Europe/Berlin)"
            ))
        })?;
        let backup_default = policy
            .logical_export_frequency_minutes
            .map(|m| format!("every {m}m"));
        let wanted: [(JobKind, Option<String>); 5] = [
            (JobKind::Backup, schedule.backup.clone().or(backup_default)),
            (
                JobKind::Drill,
                schedule
                    .drill
                    .clone()
                    .or_else(|| policy.monthly_restore_day.clone()),
            ),
            (
                JobKind::Prune,
                Some(schedule.prune.clone().unwrap_or(DEFAULT_PRUNE.into())),
            ),
            (
                JobKind::Status,
                Some(schedule.status.clone().unwrap_or(DEFAULT_STATUS.into())),
            ),
            (JobKind::Mirror, schedule.mirror.clone()),
        ];
        let mut schedules = Vec::new();
        for (kind, text) in wanted {
            let Some(text) = text else { continue };
            let s = Schedule::parse(&text)
                .map_err(|e| Error::Invalid(format!("schedule.{}: {e}", kind.name())))?;
            if !s.is_off() {
                schedules.push((kind, s));
            }
        }
        let secret = |var: &Option<String>, key: &str| -> Result<Option<Secret>> {
            match var {
                None => Ok(None),
                Some(v) => env
                    .get(v)
                    .filter(|s| !s.is_empty())
                    .map(|s| Some(Secret::new(s.clone())))
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "serve.{key} names {v}, which is not set; export it"
                        ))
                    }),
            }
        };
        let basic = match (
            &serve.basic_auth_user,
            secret(&serve.basic_auth_password_env, "basic_auth_password_env")?,
        ) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (None, None) => None,
            _ => {
                return Err(Error::Invalid(
                    "serve: set both basic_auth_user and basic_auth_password_env, or neither"
                        .into(),
                ))
            }
        };
        Ok(ServeConfig {
            listen,
            auth: Auth {
                bearer: secret(&serve.bearer_token_env, "bearer_token_env")?,
                basic,
            },
            shutdown_grace: Duration::from_secs(serve.shutdown_grace_seconds.unwrap_or(60)),
            tz,
            tz_name,
            jitter_seconds: schedule.jitter_seconds.unwrap_or(0),
            schedules,
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

    #[test]
    fn defaults_come_from_the_policy() {
        let policy = Policy {
            logical_export_frequency_minutes: Some(360),
            monthly_restore_day: Some("first_sunday".into()),
            ..Policy::default()
        };
        let c = ServeConfig::from_sections(
            &ScheduleSection::default(),
            &ServeSection::default(),
            &policy,
            &Env::new(),
            None,
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
            ServeConfig::from_sections(&s, &v, &Policy::default(), &Env::new(), None)
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
        assert!(e.contains("schedule.drill"), "{e}");
        let e = bad(
            ScheduleSection {
                timezone: Some("Mars/Olympus".into()),
                ..Default::default()
            },
            ServeSection::default(),
        );
        assert!(e.contains("schedule.timezone"), "{e}");
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
    }
}
