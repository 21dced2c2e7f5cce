//! Scheduled runs shared by several daemons (`serve` replicas on one store): the lease keeps
//! two of them from running one database's job at once, and the *slot* (the fire time a
//! scheduled run is for) keeps the second from running it again once the first is done. A
//! backup or drill whose slot the store shows done (one started at or after the fire time)
//! is skipped: before the lease is tried (cheap, through the catalog), and again under the
//! lease (whoever held it before has published its manifest or result by then).

use super::JobEnv;
use crate::ids::DbName;
use crate::time::Timestamp;
use crate::{Error, Result};
use pgdrill_store::Store;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Tests shorten the lease ttl of a whole process (debug builds only, see `main`).
static TTL_OVERRIDE_SECS: AtomicU64 = AtomicU64::new(0);

/// Sets the ttl of every job lease this process takes (tests of lease expiry).
pub fn set_lease_ttl_for_tests(secs: u64) {
    TTL_OVERRIDE_SECS.store(secs, Ordering::Relaxed);
}

/// How long a job's store lease lasts before another host may take it over:
/// [`super::LEASE_TTL`] unless a test shortened it.
pub fn lease_ttl() -> Duration {
    match TTL_OVERRIDE_SECS.load(Ordering::Relaxed) {
        0 => super::LEASE_TTL,
        s => Duration::from_secs(s),
    }
}

/// The job kinds whose runs the store records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Backup,
    Drill,
}

/// The backup or drill of `db` that started at or after `slot`, as one phrase
/// ("backup 20261206T020000Z-ab12"), when the store has one.
pub async fn done(
    store: &Store,
    db: &DbName,
    kind: Recorded,
    slot: Timestamp,
) -> Result<Option<String>> {
    let c = crate::catalog_cache::load(store, db).await?;
    let after = |t: &str| crate::time::parse(t).is_some_and(|t| t >= slot);
    Ok(match kind {
        Recorded::Backup => c
            .listing
            .complete
            .iter()
            .find(|m| after(&m.started_at))
            .map(|m| format!("backup {}", m.backup_id)),
        Recorded::Drill => c
            .drills
            .iter()
            .find(|d| after(&d.started_at))
            .map(|d| format!("drill {}", d.drill_id)),
    })
}

impl JobEnv<'_> {
    /// For a scheduled run ([`JobEnv::slot`]), checked under the lease: the error that ends
    /// it as "locked" (no alert, no failure record) when another instance already did it.
    pub async fn slot_taken(&self, db: &DbName, kind: Recorded) -> Option<Error> {
        let slot = self.slot?;
        let what = done(self.store, db, kind, slot).await.ok()??;
        Some(Error::Locked(format!(
            "the run of {db} due at {slot} was already done by another instance ({what})"
        )))
    }
}
