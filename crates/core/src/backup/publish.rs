//! The completion rule: every object confirmed stored, SHA256SUMS, the lease, then the
//! manifest (put-if-absent), confirmed stored and listed.

use super::fanout::Targets;
use super::BackupJob;
use crate::layout;
use crate::manifest::Manifest;
use crate::{Error, Result};
use bytes::Bytes;
use pgdrill_store::Store;

/// The completion rule, in every store, trusting no acknowledgement: every object is
/// confirmed stored with its size, SHA256SUMS is written and confirmed, the lease is
/// confirmed still ours, then the manifest is written with put-if-absent and confirmed
/// stored and listed. A store failing a step is left (its copy deleted at the end); when no
/// store is left, what the backup stored is deleted everywhere and nothing is published.
pub(super) async fn publish(job: &BackupJob<'_>, targets: &Targets, m: &Manifest) -> Result<()> {
    let sums: String = m
        .objects
        .iter()
        .map(|o| format!("{}  {}\n", o.sha256, o.name))
        .collect();
    let sums_len = sums.len() as u64;
    let sums_key = layout::backup_object(&m.database, &m.backup_id, layout::SHA256SUMS);
    // Independent requests go together: the objects' HEADs (all at once) beside the
    // SHA256SUMS upload (not a completion marker: a failed check deletes it with the rest),
    // then SHA256SUMS' HEAD beside the lease's fencing check, as the last step before the
    // manifest.
    let before_manifest = async {
        let (confirmed, put) = tokio::join!(
            each_store(targets, |store| async move {
                futures::future::try_join_all(
                    m.objects
                        .iter()
                        .map(|o| confirm_stored(&store, m, &o.name, o.size)),
                )
                .await
                .map(|_| ())
            }),
            targets.put(&sums_key, Bytes::from(sums))
        );
        confirmed?;
        put?;
        let (sums_confirmed, lease) = tokio::join!(
            each_store(targets, |store| async move {
                confirm_stored(&store, m, layout::SHA256SUMS, sums_len).await
            }),
            async {
                match job.lease {
                    // With several stores, a lease store that went down during the backup
                    // does not stop the others' copies while the lease is recent enough to
                    // vouch for itself (`Lease::confirm_or_recent`).
                    Some(lease) if targets.len() > 1 => {
                        lease.confirm_or_recent().await.map(|note| {
                            if let Some(note) = note {
                                targets.note(note);
                            }
                        })
                    }
                    Some(lease) => lease.confirm().await,
                    None => Ok(()),
                }
            }
        );
        sums_confirmed?;
        lease?;
        Ok::<_, Error>(())
    };
    if let Err(e) = before_manifest.await {
        targets.delete_everywhere(&m.database, &m.backup_id).await;
        return Err(e);
    }
    let json = Bytes::from(m.to_json());
    let key = layout::backup_object(&m.database, &m.backup_id, layout::MANIFEST);
    let live = targets.live();
    let written = futures::future::join_all(live.iter().map(|&i| {
        let (store, json, key) = (targets.get(i).store.clone(), json.clone(), key.clone());
        async move {
            let json_len = json.len() as u64;
            // An existing manifest is another backup's (ids are unique): never clean up
            // after this.
            store.put_if_absent(&key, json).await.map_err(|e| (false, Error::from(e)))?;
            let after = async {
                let dir = layout::backup_dir(&m.database, &m.backup_id);
                let (confirmed, listed) = tokio::join!(
                    confirm_stored(&store, m, layout::MANIFEST, json_len),
                    store.list(&dir)
                );
                confirmed?;
                let listed = listed?;
                // Listed: its stamp is what the catalog's LIST will show.
                let Some(stamp) = listed
                    .iter()
                    .find(|o| o.key == key)
                    .map(pgdrill_store::ObjectInfo::stamp)
                else {
                    return Err(Error::Failed(format!(
                        "the store acknowledged {} of backup {} and reads it back but does not list it, so the backup would never be found: nothing was published",
                        layout::MANIFEST,
                        m.backup_id
                    )));
                };
                Ok(stamp)
            };
            after.await.map(Some).map_err(|e| (true, e))
        }
    }))
    .await;
    let mut last = None;
    for (i, r) in live.into_iter().zip(written) {
        match r {
            Ok(stamp) => targets.done(i, stamp),
            Err((cleanup, e)) => {
                targets.fail(i, &e);
                if cleanup {
                    targets.delete_backup(i, &m.database, &m.backup_id).await;
                }
                last = Some(e);
            }
        }
    }
    targets.any_left(last)
}

/// Runs `check` on every live store in parallel; a store it fails is left. Fails when no
/// store is left.
async fn each_store<'a, F, Fut>(targets: &Targets, check: F) -> Result<()>
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + 'a,
{
    let live = targets.live();
    let results =
        futures::future::join_all(live.iter().map(|&i| check(targets.get(i).store.clone()))).await;
    let mut last = None;
    for (i, r) in live.into_iter().zip(results) {
        if let Err(e) = r {
            targets.fail(i, &e);
            last = Some(e);
        }
    }
    targets.any_left(last)
}

/// Fails unless the store holds `name` of backup `m` with `size` bytes (one HEAD).
async fn confirm_stored(store: &Store, m: &Manifest, name: &str, size: u64) -> Result<()> {
    let key = layout::backup_object(&m.database, &m.backup_id, name);
    let lost = |what: String| {
        Error::Failed(format!(
            "the store acknowledged {name} of backup {} but {what}: nothing was published; check the store's health",
            m.backup_id
        ))
    };
    match store.head(&key).await {
        Ok(info) if info.size == size => Ok(()),
        Ok(info) => Err(lost(format!(
            "holds {} bytes of the {size} written",
            info.size
        ))),
        Err(pgdrill_store::StoreError::NotFound { .. }) => Err(lost("does not have it".into())),
        Err(e) => Err(e.into()),
    }
}
