//! The mirror job: every selected uploads bucket copied into the store as a snapshot; a
//! source that suddenly shrank, or a failed run, alerts. Also which mirrors a command acts
//! on, and their retention (run by `pgdrill prune` and `pgdrill mirror prune`).

use super::JobEnv;
use crate::alert::EventKind;
use crate::config::{Env, Settings};
use crate::mirror::{self, config::default_options, Location, MirrorName, MirrorSection};
use crate::mirror::{MirrorPrunePlan, Place, RunJob, RunReport};
use crate::progress::Progress;
use crate::{Error, Result};
use pgdrill_store::{Store, StoreOptions};
use serde_json::json;

/// A mirror a command acts on, with its config entry when there is one.
pub struct MirrorTarget {
    pub name: MirrorName,
    pub section: Option<MirrorSection>,
}

impl MirrorTarget {
    /// How to open the mirror's source (its entry's credentials, else the standard ones).
    pub fn options(&self, env: &Env) -> Result<StoreOptions> {
        match &self.section {
            Some(s) => s.source_options(env),
            None => Ok(default_options(env)),
        }
    }
}

/// The mirror named `n`, with its `[[mirror]]` entry if it has one.
pub fn named(settings: &Settings, n: &str) -> Result<MirrorTarget> {
    let name = MirrorName::parse(n).map_err(Error::Invalid)?;
    let section = settings
        .mirrors
        .iter()
        .find(|m| m.name == name.as_str())
        .cloned();
    Ok(MirrorTarget { name, section })
}

fn configured(settings: &Settings) -> Result<Vec<MirrorTarget>> {
    settings
        .mirrors
        .iter()
        .map(|s| {
            Ok(MirrorTarget {
                name: s.mirror_name()?,
                section: Some(s.clone()),
            })
        })
        .collect()
}

/// `name`, else every configured mirror, else (when `store` is given) every one in the store.
pub async fn select(
    settings: &Settings,
    name: Option<&str>,
    store: Option<&Store>,
) -> Result<Vec<MirrorTarget>> {
    if let Some(n) = name {
        return Ok(vec![named(settings, n)?]);
    }
    let mut found = configured(settings)?;
    if found.is_empty() {
        if let Some(store) = store {
            for name in mirror::mirrors_in_store(store).await? {
                found.push(named(settings, name.as_str())?);
            }
        }
    }
    if found.is_empty() {
        return Err(Error::Invalid(
            "no mirror is configured: add a [[mirror]] entry to pgdrill.toml or pass --name N (and --from URL for `mirror run`)".into(),
        ));
    }
    Ok(found)
}

/// The one mirror a read command is about.
pub async fn select_one(
    settings: &Settings,
    name: Option<&str>,
    store: &Store,
) -> Result<MirrorTarget> {
    let mut all = select(settings, name, Some(store)).await?;
    if all.len() > 1 {
        let names: Vec<_> = all.iter().map(|t| t.name.to_string()).collect();
        return Err(Error::Invalid(format!(
            "several mirrors are known ({}): pick one with --name",
            names.join(", ")
        )));
    }
    Ok(all.remove(0))
}

/// Where the store is, to refuse a mirror whose source is the store itself.
pub fn store_place(settings: &Settings) -> Result<Option<Place>> {
    match &settings.store_url {
        Some(url) => Ok(Some(Place::describe(url, &settings.store_options)?)),
        None => Ok(None),
    }
}

/// What `mirror run` (or the daemon's mirror schedule) asks for.
#[derive(Default)]
pub struct RunInput<'a> {
    /// `--name`: that mirror alone.
    pub name: Option<&'a str>,
    /// `--from`: the source, instead of the entry's `from` (needs `name`).
    pub from: Option<String>,
    pub allow_drop: bool,
    pub concurrency: Option<usize>,
}

/// One mirror's run, in the order they ran.
pub enum MirrorEntry {
    /// The run ended; a source that shrank past the limit recorded no snapshot
    /// (`source_drop`), which is a failure the caller reports.
    Ran(Box<RunReport>),
    /// With several mirrors, one that failed is reported beside the others.
    Failed(MirrorName, Error),
}

/// Runs every selected mirror. `Err` when the input is invalid, or when the only mirror failed.
pub async fn run(jx: &JobEnv<'_>, input: &RunInput<'_>) -> Result<Vec<MirrorEntry>> {
    let notifier = jx.notifier()?;
    if input.from.is_some() && input.name.is_none() {
        return Err(Error::Invalid(
            "--from needs --name (the mirror's name in the store)".into(),
        ));
    }
    let targets = select(jx.settings, input.name, None).await?;
    let several = targets.len() > 1;
    let mut entries = Vec::new();
    for t in targets {
        match run_one(jx, &t, input).await {
            Ok(r) => {
                if let Some(d) = &r.source_drop {
                    let summary = format!(
                        "mirror {}: no snapshot recorded, nothing deleted: {}",
                        r.name, d.message
                    );
                    notifier
                        .send(
                            EventKind::BackupFailed,
                            &r.name.to_string(),
                            summary,
                            json!({"mirror": r.name}),
                        )
                        .await;
                } else {
                    for s in &r.skipped {
                        jx.events.debug(&format!("mirror {}: skipped {s}", r.name));
                    }
                }
                entries.push(MirrorEntry::Ran(Box::new(r)));
            }
            Err(e) => {
                let e = e.context(format!("mirror {}", t.name));
                notifier
                    .send(
                        EventKind::BackupFailed,
                        t.name.as_str(),
                        e.to_string(),
                        json!({"mirror": t.name}),
                    )
                    .await;
                if !several {
                    return Err(e);
                }
                jx.events.warn(&e.to_string());
                entries.push(MirrorEntry::Failed(t.name, e));
            }
        }
        if jx.cancel.is_cancelled() {
            break;
        }
    }
    Ok(entries)
}

async fn run_one(jx: &JobEnv<'_>, t: &MirrorTarget, input: &RunInput<'_>) -> Result<RunReport> {
    let from = input
        .from
        .clone()
        .or_else(|| t.section.as_ref().map(|s| s.from.clone()))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "mirror {} has no source: pass --from URL or add a [[mirror]] entry with from = \"...\"",
                t.name
            ))
        })?;
    let source = Location::open(&from, &t.options(jx.env)?)?;
    let progress = Progress::new();
    let _guard = jx.events.progress(progress.clone());
    let section = t.section.clone().unwrap_or_default();
    mirror::run(RunJob {
        store: jx.store,
        name: t.name.clone(),
        source: &source,
        store_place: store_place(jx.settings)?,
        max_drop_percent: section.max_drop_percent(),
        allow_drop: input.allow_drop,
        concurrency: input.concurrency.unwrap_or_else(|| section.concurrency()),
        progress,
        cancel: jx.cancel.clone(),
    })
    .await
}

/// Flags that override a mirror entry's retention.
#[derive(Default)]
pub struct PruneOverrides {
    pub dry_run: bool,
    pub keep_last: Option<usize>,
    pub keep_within_days: Option<u64>,
}

/// Snapshot and object retention of every selected mirror: keep the last 7 (or the entry's
/// `keep_last`), and those within the entry's `keep_within_days` or the policy's retention.
pub async fn prune(
    jx: &JobEnv<'_>,
    name: Option<&str>,
    o: &PruneOverrides,
) -> Result<Vec<MirrorPrunePlan>> {
    let mut plans = Vec::new();
    for t in select(jx.settings, name, Some(jx.store)).await? {
        let s = t.section.clone().unwrap_or_default();
        let keep_last = o.keep_last.or(s.keep_last.map(|k| k as usize)).unwrap_or(7);
        let within = o
            .keep_within_days
            .or(s.keep_within_days)
            .or(jx.settings.policy.retention_days);
        plans.push(mirror::prune_mirror(jx.store, &t.name, keep_last, within, o.dry_run).await?);
    }
    Ok(plans)
}
