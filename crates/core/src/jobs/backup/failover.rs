//! A backup while the primary store is down: where the lease is taken ([`take_lease`]), and
//! what a run of several databases remembers of a primary found unreachable ([`Fleet`]).

use super::*;

/// How long a run goes on passing over a primary found unreachable before it asks it again.
pub(super) const PRIMARY_REPROBE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long that one request may take.
pub(super) const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// What a run (several databases) knows of its primary store: once a backup found it
/// unreachable, the next databases take their lease in the next reachable store at once
/// (their primary copy failed from the outset) instead of each waiting out the primary's
/// timeouts and retries; every `reprobe` the primary is asked again with one quick request,
/// and used again once it answers.
pub(super) struct Fleet {
    pub(super) reprobe: std::time::Duration,
    /// Why the primary is passed over, and when it was last tried.
    pub(super) down: Option<(String, std::time::Instant)>,
    /// The store that took the lease when the primary was first passed over.
    pub(super) passed: Option<Store>,
}

impl Fleet {
    pub(super) fn new(reprobe: std::time::Duration) -> Self {
        Fleet {
            reprobe,
            down: None,
            passed: None,
        }
    }

    /// Why the primary is to be passed over for the backup of `db` (`None`: try it).
    pub(super) async fn skip_primary(&mut self, jx: &JobEnv<'_>, db: &DbName) -> Option<String> {
        let (why, tried) = self.down.as_mut()?;
        if tried.elapsed() < self.reprobe {
            return Some(why.clone());
        }
        let key = crate::layout::lease_key(db);
        match tokio::time::timeout(PROBE_TIMEOUT, jx.store.exists(&key)).await {
            Ok(Ok(_)) => {
                jx.events.info(&format!(
                    "the primary store ({}) answers again: the lease of {db} is taken there",
                    jx.store.display()
                ));
                self.down = None;
                None
            }
            _ => {
                *tried = std::time::Instant::now();
                Some(why.clone())
            }
        }
    }

    /// A backup found the primary unreachable (`tried`: just now, not passed over on an
    /// earlier finding) and holds its lease in `home`.
    pub(super) fn primary_down(&mut self, why: &str, home: &Store, tried: bool) {
        if tried || self.down.is_none() {
            self.down = Some((why.to_string(), std::time::Instant::now()));
        }
        if self.passed.is_none() {
            self.passed = Some(home.clone());
        }
    }
}

/// Where a backup's lease is held: the primary store, or, with several stores when the
/// primary cannot be reached, the first reachable store after it in configured order.
pub(super) struct Home {
    pub(super) store: Store,
    /// Its index in `BackupInput::stores` (0 with one store).
    pub(super) index: usize,
    /// The stores before it, found unreachable (by index in `BackupInput::stores`), and why:
    /// their copies fail at once, without a request.
    pub(super) passed_over: Vec<(usize, String)>,
}

/// Takes the lease of `db` in the primary store. With several stores, when the primary
/// cannot be reached (a store error other than "not found", after the store's own retries),
/// in the first store after it that can, in configured order, saying so: the backup then
/// goes to every reachable store and ends degraded. A lease another job holds (exit 6) is
/// never passed over. Fails with the primary's error when no store can be reached.
///
/// `skip`: the primary was found unreachable earlier in this run (why): it is passed over
/// without a request, unless no other store can be reached either (then it is tried).
///
/// Two instances that disagree about the primary's reachability may hold leases in two
/// stores and both back up: one extra backup at worst, never a lost or corrupt one (ids are
/// unique, each store's manifest is written last). See docs/ARCHITECTURE.md, "Leases".
pub(super) async fn take_lease(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DbName,
    skip: Option<&str>,
) -> Result<(Lease, Home)> {
    if let (Some(why), true) = (skip, input.stores.len() > 1) {
        let passed_over = vec![(
            0,
            format!("the store could not be reached earlier in this run, so it was not tried for this backup: {why}"),
        )];
        let said = vec![format!(
            "store {} unreachable earlier in this run",
            input.stores[0].name
        )];
        if let Some(found) = elsewhere(jx, input, db, passed_over, said).await? {
            return Ok(found);
        }
    }
    let first = match jx.lease(db, "backup").await {
        Ok(held) => {
            let home = Home {
                store: jx.store.clone(),
                index: 0,
                passed_over: Vec::new(),
            };
            return Ok((held, home));
        }
        Err(e) if input.stores.len() > 1 && crate::stores::unreachable(&e) => e,
        Err(e) => return Err(e),
    };
    let passed_over = vec![(0, unreachable_at_start(&first))];
    let said = vec![format!(
        "store {} unreachable ({first})",
        input.stores[0].name
    )];
    match elsewhere(jx, input, db, passed_over, said).await? {
        Some(found) => Ok(found),
        None => Err(first),
    }
}

pub(super) fn unreachable_at_start(e: &Error) -> String {
    format!("the store could not be reached when the backup started: {e}")
}

/// The lease of `db` in the first store after the primary that answers (`None`: none
/// does); `passed_over` and `said` begin with the primary's.
pub(super) async fn elsewhere(
    jx: &JobEnv<'_>,
    input: &BackupInput<'_>,
    db: &DbName,
    mut passed_over: Vec<(usize, String)>,
    mut said: Vec<String>,
) -> Result<Option<(Lease, Home)>> {
    for (i, t) in input.stores.iter().enumerate().skip(1) {
        match lease::acquire(&t.store, db, "backup", crate::jobs::slot::lease_ttl()).await {
            Ok(held) => {
                crate::jobs::warn_lease(jx.events, db, &held);
                jx.events
                    .warn(&format!("{}; lease taken in {}", said.join("; "), t.name));
                let home = Home {
                    store: t.store.clone(),
                    index: i,
                    passed_over,
                };
                return Ok(Some((held, home)));
            }
            Err(e) if crate::stores::unreachable(&e) => {
                said.push(format!("store {} unreachable ({e})", t.name));
                passed_over.push((i, unreachable_at_start(&e)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// For a backup whose primary copy failed (the primary may be down): a notifier keeping the
/// alerts' de-duplication state in the first store holding the backup, rather than waiting
/// on the primary for it (a duplicate alert at worst).
pub(super) fn notifier_beside<'a>(
    jx: &JobEnv<'a>,
    input: &BackupInput<'_>,
    b: &Backup,
) -> Option<crate::jobs::Notifier<'a>> {
    let (t, _) = input.stores.iter().zip(&b.copies).find(|(_, c)| c.ok)?;
    crate::jobs::Notifier::new(&jx.settings.alerts, jx.env, &t.store, jx.events).ok()
}
