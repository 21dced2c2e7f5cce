//! Reading a backup when several stores hold copies of it (DESIGN.md §9): every configured
//! store holds a complete, self-sufficient copy, so a read command (restore, drill, verify,
//! show, export, diff) takes the first store, in config order, that holds the backup and is
//! reachable, and says why it passed over the ones before it.
//!
//! Rules (the contract the commands and their tests rely on):
//! - `latest` is the newest complete copy over the reachable stores (`--at TIME` likewise
//!   the newest at or before it); an id is looked up store by store, in order;
//! - a store that cannot be reached (any store error but "not found") or lacks the copy is
//!   passed over, with one line saying so;
//! - a copy whose manifest is damaged is never silently replaced by another store's: it is
//!   an integrity error (exit 3) that names the stores holding another copy, to be read with
//!   `--from-store`. A damaged *newer* backup that `latest` passes over is a warning, as with
//!   one store;
//! - with one store, everything is exactly [`catalog`]'s (same errors, same warnings).

use crate::catalog::{self, Resolved};
use crate::config::StoreSettings;
use crate::ids::{BackupId, DbName};
use crate::manifest::Manifest;
use crate::{Error, Result};
use pgdrill_store::Store;

/// The configured stores, primary first, opened ([`crate::config::Settings::stores`]).
pub type Stores = [(StoreSettings, Store)];

/// Where a backup is read from.
#[derive(Debug)]
pub struct Source<'a> {
    /// The store's name (`[[store]] name`, "default" for one `[store]`).
    pub name: &'a str,
    pub store: &'a Store,
    pub resolved: Resolved,
    /// One line per store passed over before (or, for `latest`, beside) this one, and why.
    pub passed_over: Vec<String>,
}

/// `--from-store NAME`: that store alone (exit 2 naming the known stores when unknown);
/// without it, every store.
pub fn select<'a>(stores: &'a Stores, from: Option<&str>) -> Result<&'a Stores> {
    let Some(name) = from else {
        return Ok(stores);
    };
    match stores.iter().position(|(s, _)| s.name == name) {
        Some(i) => Ok(&stores[i..=i]),
        None => Err(Error::Invalid(format!(
            "--from-store {name}: no store of that name is configured; the stores are: {}",
            names(stores).join(", ")
        ))),
    }
}

pub fn names(stores: &Stores) -> Vec<&str> {
    stores.iter().map(|(s, _)| s.name.as_str()).collect()
}

/// What one store answered when asked for the backup.
enum Answer {
    Found(Box<Resolved>),
    /// The store holds no such copy (why, for the passed-over line).
    Lacks(String),
    Unreachable(Error),
}

/// A store error that says nothing about the backup (the store is down, denies access,
/// times out): the next store may answer. A backup whose primary store fails so takes its
/// lease in the next store (`jobs::backup`).
pub(crate) fn unreachable(e: &Error) -> bool {
    matches!(e, Error::Store { .. }) && !e.is_not_found()
}

/// Resolves `selector` (`latest` or a backup id) over `stores` by the rules above.
pub async fn resolve<'a>(stores: &'a Stores, db: &DbName, selector: &str) -> Result<Source<'a>> {
    if let [(s, store)] = stores {
        let resolved = catalog::resolve(store, db, selector).await?;
        return Ok(Source {
            name: &s.name,
            store,
            resolved,
            passed_over: Vec::new(),
        });
    }
    if selector == "latest" {
        return newest(stores, db, None).await;
    }
    let id =
        BackupId::parse(selector).map_err(|e| Error::Invalid(format!("{e}; or use latest")))?;
    let mut passed_over = Vec::new();
    for (i, (s, store)) in stores.iter().enumerate() {
        let answer = match catalog::read_manifest(store, db, &id).await {
            Ok(manifest) => Answer::Found(Box::new(Resolved {
                manifest,
                warnings: Vec::new(),
            })),
            Err(e) if unreachable(&e) => Answer::Unreachable(e),
            Err(Error::Integrity(why)) => {
                return Err(damaged_copy(&stores[i + 1..], &s.name, db, &id, &why).await)
            }
            Err(_) => Answer::Lacks(format!("has no copy of backup {id}")),
        };
        match answer {
            Answer::Found(resolved) => {
                return Ok(Source {
                    name: &s.name,
                    store,
                    resolved: *resolved,
                    passed_over,
                })
            }
            Answer::Lacks(why) => passed_over.push(format!("store {} {why}", s.name)),
            Answer::Unreachable(e) => passed_over.push(unreachable_line(&s.name, &e)),
        }
    }
    Err(nowhere(
        stores,
        &format!("backup {id} of {db}"),
        &passed_over,
    ))
}

/// `--at TIME` over `stores`: the newest copy at or before it.
pub async fn resolve_at<'a>(stores: &'a Stores, db: &DbName, at: &str) -> Result<Source<'a>> {
    if let [(s, store)] = stores {
        let resolved = catalog::resolve_at(store, db, at).await?;
        return Ok(Source {
            name: &s.name,
            store,
            resolved,
            passed_over: Vec::new(),
        });
    }
    newest(stores, db, Some(at)).await
}

/// The newest complete copy over the reachable stores (at or before `at`, when given); the
/// first store in order among those holding it.
async fn newest<'a>(stores: &'a Stores, db: &DbName, at: Option<&str>) -> Result<Source<'a>> {
    let mut answers = Vec::new();
    let mut damaged_newer: Vec<(String, BackupId, String)> = Vec::new();
    for (s, store) in stores {
        let answer = match at {
            None => match catalog::latest(store, db).await {
                Ok(l) => {
                    for (id, why) in l.damaged {
                        damaged_newer.push((s.name.clone(), id, why));
                    }
                    match l.manifest {
                        Some(manifest) => Answer::Found(Box::new(Resolved {
                            manifest,
                            warnings: Vec::new(),
                        })),
                        None => Answer::Lacks(format!("has no complete backup of {db}")),
                    }
                }
                Err(e) if unreachable(&e) => Answer::Unreachable(e),
                Err(e) => return Err(e),
            },
            Some(at) => match catalog::resolve_at(store, db, at).await {
                Ok(r) => Answer::Found(Box::new(r)),
                Err(e) if unreachable(&e) => Answer::Unreachable(e),
                Err(Error::Invalid(_)) => {
                    Answer::Lacks(format!("has no backup of {db} at or before {at}"))
                }
                Err(e) => return Err(e),
            },
        };
        answers.push(answer);
    }
    let best: Option<Manifest> = answers
        .iter()
        .filter_map(|a| match a {
            Answer::Found(r) => Some(&r.manifest),
            _ => None,
        })
        .max_by(|a, b| {
            (a.snapshot.time.as_str(), &a.backup_id).cmp(&(b.snapshot.time.as_str(), &b.backup_id))
        })
        .cloned();
    let mut passed_over = Vec::new();
    let mut picked = None;
    for ((s, store), answer) in stores.iter().zip(answers) {
        match answer {
            Answer::Found(r) if picked.is_none() => {
                if best
                    .as_ref()
                    .is_some_and(|b| b.backup_id == r.manifest.backup_id)
                {
                    picked = Some((s, store, r));
                } else {
                    passed_over.push(format!(
                        "store {} has no copy of the newest backup (its newest is {})",
                        s.name, r.manifest.backup_id
                    ));
                }
            }
            Answer::Found(_) => {}
            Answer::Lacks(why) => passed_over.push(format!("store {} {why}", s.name)),
            Answer::Unreachable(e) => passed_over.push(unreachable_line(&s.name, &e)),
        }
    }
    let Some((s, store, resolved)) = picked else {
        if let Some((name, id, why)) = damaged_newer.first() {
            return Err(Error::Integrity(format!(
                "the newest backup {id} of {db} has a damaged manifest in store {name} ({why}) and no store holds another complete backup: run `pgdrill verify --all --from-store {name}`, then a new backup"
            )));
        }
        return Err(nowhere(
            stores,
            &format!("complete backup of {db}"),
            &passed_over,
        ));
    };
    let mut resolved = *resolved;
    let chosen = resolved.manifest.backup_id.clone();
    for (name, id, why) in damaged_newer {
        if id >= chosen {
            resolved.warnings.push(format!(
                "the copy of backup {id} of {db} in store {name} has a damaged manifest ({why}); using {chosen} instead: run `pgdrill verify --all --from-store {name}`"
            ));
        }
    }
    Ok(Source {
        name: &s.name,
        store,
        resolved,
        passed_over,
    })
}

fn unreachable_line(name: &str, e: &Error) -> String {
    format!("store {name} cannot be read ({e})")
}

/// No store could give the backup: why, store by store.
fn nowhere(stores: &Stores, what: &str, passed_over: &[String]) -> Error {
    let all_down = passed_over.iter().all(|l| l.contains("cannot be read"));
    let msg = format!(
        "no configured store ({}) holds a readable {what}: {}; {}",
        names(stores).join(", "),
        passed_over.join("; "),
        if all_down {
            "check the stores' endpoints and credentials, then try again"
        } else {
            "run `pgdrill list` to see the complete backups of each store"
        }
    );
    if all_down && !passed_over.is_empty() {
        Error::Failed(msg)
    } else {
        Error::Invalid(msg)
    }
}

/// The error for a damaged copy of `id` in store `name`: the stores after it that hold a
/// readable copy are named, to be read with `--from-store` (never switched to silently).
async fn damaged_copy(later: &Stores, name: &str, db: &DbName, id: &BackupId, why: &str) -> Error {
    let others = holding(later, db, id).await;
    Error::Integrity(format!(
        "the copy of backup {id} of {db} in store {name} is damaged ({why}){}",
        read_other_hint(&others)
    ))
}

/// The stores of `stores` whose copy of `id` has a readable manifest.
pub async fn holding<'a>(stores: &'a Stores, db: &DbName, id: &BackupId) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (s, store) in stores {
        if catalog::read_manifest(store, db, id).await.is_ok() {
            out.push(s.name.as_str());
        }
    }
    out
}

/// "; store X holds another copy: read it with --from-store X" (empty without others).
pub fn read_other_hint(others: &[&str]) -> String {
    match others {
        [] => String::new(),
        [one] => format!(
            "; store {one} holds another copy: check it with `pgdrill verify --from-store {one}` and read it with --from-store {one}"
        ),
        many => format!(
            "; stores {} hold other copies: read one with --from-store NAME",
            many.join(", ")
        ),
    }
}

/// An integrity error met while reading the copy in store `source` (a digest mismatch, a
/// truncated object), with the other stores holding the backup named: the read is not
/// retried from them on its own, since a corrupt copy must be seen, not papered over.
pub async fn integrity_hint(e: Error, stores: &Stores, source: &str, m: &Manifest) -> Error {
    if !matches!(e, Error::Integrity(_)) || stores.len() < 2 {
        return e;
    }
    let others: Vec<(StoreSettings, Store)> = stores
        .iter()
        .filter(|(s, _)| s.name != source)
        .cloned()
        .collect();
    let holders = holding(&others, &m.database, &m.backup_id).await;
    let hint = read_other_hint(&holders);
    e.map_message(|msg| format!("{msg} (the copy in store {source}){hint}"))
}

#[cfg(test)]
pub(crate) mod tests;
