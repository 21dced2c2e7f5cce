//! `[policy]` (and the seed-000 JSON policy file, same key names): RPO, RTO, retention and
//! freshness targets, checked at load.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Policy keys, the same names as the JSON policy file of seed 000.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Policy {
    pub rpo_minutes: Option<u64>,
    pub rto_minutes: Option<u64>,
    pub retention_days: Option<u64>,
    pub logical_export_frequency_minutes: Option<u64>,
    pub monthly_restore_day: Option<String>,
    pub freshness_alert_minutes: Option<u64>,
    /// Drill SLO: a passing drill within this many days (default: this calendar month).
    pub drill_max_age_days: Option<u64>,
    /// Keys pgdrill does not use yet are kept and recorded in manifests.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Policy {
    /// `other`'s set keys win.
    pub(super) fn overlay(mut self, other: &Policy) -> Policy {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            rpo_minutes,
            rto_minutes,
            retention_days,
            logical_export_frequency_minutes,
            monthly_restore_day,
            freshness_alert_minutes,
            drill_max_age_days
        );
        for (k, v) in &other.extra {
            self.extra.insert(k.clone(), v.clone());
        }
        self
    }

    /// Backup freshness threshold: explicit, else the export frequency plus 2 h, else 8 h.
    pub fn freshness_minutes(&self) -> u64 {
        self.freshness_alert_minutes.unwrap_or_else(|| {
            self.logical_export_frequency_minutes
                .map(|f| f + 120)
                .unwrap_or(480)
        })
    }
}

/// Policy durations are positive: `rpo_minutes = 0` (or a negative number) would make every
/// check fail, or mean nothing. `monthly_restore_day` is a schedule (the drill's default).
/// The policy in force: `policy_file` (relative to the config's folder), then `[policy]`'s
/// set keys over it. Each is checked on its own first, so an error names where the bad
/// value was written.
pub(super) fn effective_policy(
    policy_file: Option<&str>,
    section: &Policy,
    base_dir: &Path,
) -> Result<Policy> {
    let mut policy = Policy::default();
    if let Some(pf) = policy_file {
        let path = base_dir.join(pf);
        policy = read_policy_file(&path)?;
        check_policy(&policy, &format!("policy_file {}:", path.display()))?;
    }
    check_policy(section, "[policy]")?;
    Ok(policy.overlay(section))
}

pub(super) fn check_policy(p: &Policy, origin: &str) -> Result<()> {
    let keys = [
        ("rpo_minutes", p.rpo_minutes),
        ("rto_minutes", p.rto_minutes),
        ("retention_days", p.retention_days),
        (
            "logical_export_frequency_minutes",
            p.logical_export_frequency_minutes,
        ),
        ("freshness_alert_minutes", p.freshness_alert_minutes),
        ("drill_max_age_days", p.drill_max_age_days),
    ];
    for (key, v) in keys {
        if v == Some(0) {
            return Err(Error::Invalid(format!(
                "{origin} {key} = 0 is not a usable value: set it to 1 or more, or remove it"
            )));
        }
    }
    if let Some(day) = &p.monthly_restore_day {
        crate::schedule::Schedule::parse(day).map_err(|e| {
            Error::Invalid(format!(
                "{origin} monthly_restore_day = {day:?} is not a schedule ({e}): write it like \"first_sunday\" or \"0 4 1 * *\""
            ))
        })?;
    }
    Ok(())
}

/// Reads the seed-000 style JSON policy file (same key names).
pub fn read_policy_file(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("cannot read policy_file {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "policy_file {} is not a valid policy ({e})",
            path.display()
        ))
    })
}
