use super::*;
use std::time::Duration as StdDuration;

/// The lease object's exact text (times as chrono's serde wrote them).
#[test]
fn lease_records_keep_their_text() {
    let text = r#"{
  "owner": "h:1:2",
  "host": "h",
  "pid": 1,
  "job": "backup",
  "acquired_at": "2026-12-06T06:40:53.123456789Z",
  "expires_at": "2026-12-06T06:50:53Z",
  "ttl_seconds": 600
}"#;
    let r: LeaseRecord = serde_json::from_str(text).expect("record");
    assert_eq!(String::from_utf8(body(&r).to_vec()).expect("utf8"), text);
    let old = r#"{"owner":"x","host":"h","pid":2,"job":"prune","acquired_at":"2020-01-01T00:00:00+00:00","expires_at":"2020-01-01T00:10:00.5Z"}"#;
    let r: LeaseRecord = serde_json::from_str(old).expect("old record");
    assert_eq!(
        serde_json::to_string(&r).expect("json"),
        r#"{"owner":"x","host":"h","pid":2,"job":"prune","acquired_at":"2020-01-01T00:00:00Z","expires_at":"2020-01-01T00:10:00.500Z"}"#
    );
}

fn folder() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_folder(dir.path()).expect("store");
    (dir, store)
}

const TTL: StdDuration = StdDuration::from_secs(600);

#[tokio::test]
async fn skewed_clock_cannot_take_over_live_lease() {
    let (_d, store) = folder();
    let held = acquire_with(
        &store,
        "db/lease.json",
        "db",
        "backup",
        TTL,
        Clock::process(),
    )
    .await
    .expect("first");
    assert!(held.skew_warning().is_none());
    for hours in [2, -2, 48] {
        let r = acquire_with(
            &store,
            "db/lease.json",
            "db",
            "prune",
            TTL,
            Clock::shifted(hours * 3600),
        )
        .await;
        match r {
            Err(Error::Locked(m)) => assert!(m.contains("store's clock"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a clock {hours} h off took over a live lease"),
        }
    }
    held.confirm().await.expect("still ours");
}

#[tokio::test]
async fn skew_is_measured_against_the_store() {
    let (_d, store) = folder();
    let held = acquire_with(
        &store,
        "db/lease.json",
        "db",
        "backup",
        TTL,
        Clock::shifted(7200),
    )
    .await
    .expect("acquire");
    let w = held.skew_warning().expect("warned");
    assert!(w.contains("2 h 0 min ahead"), "{w}");
    let off = time::seconds_between(Timestamp::now(), held.store_now()).abs();
    assert!(off <= 2, "store time corrected: {off}");
}

#[tokio::test]
async fn a_lease_older_than_its_ttl_by_the_store_clock_is_taken_over() {
    let (_d, store) = folder();
    let old = acquire_with(
        &store,
        "db/lease.json",
        "db",
        "backup",
        StdDuration::from_secs(1),
        Clock::process(),
    )
    .await
    .expect("acquire");
    old.renewer.abort();
    tokio::time::sleep(StdDuration::from_millis(2100)).await;
    // Even a clock far behind takes over a lease the store says lapsed.
    let new = acquire_with(
        &store,
        "db/lease.json",
        "db",
        "prune",
        TTL,
        Clock::shifted(-7200),
    )
    .await
    .expect("take over");
    assert_eq!(
        new.took_over_from.as_ref().map(|r| r.job.as_str()),
        Some("backup")
    );
    let e = old.confirm().await.expect_err("fenced");
    assert!(e.to_string().contains("no longer holds the lease"), "{e}");
}

#[tokio::test]
async fn renewal_that_finds_the_lease_replaced_marks_it_lost() {
    let (_d, store) = folder();
    let held = acquire_with(
        &store,
        "db/lease.json",
        "db",
        "backup",
        StdDuration::from_secs(3),
        Clock::process(),
    )
    .await
    .expect("acquire");
    let mut signal = held.lost_signal();
    store
        .put("db/lease.json", Bytes::from_static(b"{}"))
        .await
        .expect("replace");
    tokio::time::timeout(StdDuration::from_secs(5), signal.cancelled())
        .await
        .expect("the lost signal fired");
    assert!(held.lost().await.is_some());
    assert!(held.confirm().await.is_err());
}

/// Issue 19: a backup to several stores whose lease store goes down before the manifests:
/// `confirm` stops (it cannot check), `confirm_or_recent` vouches for a lease renewed moments
/// ago and says so; a lease found replaced is refused by both.
#[tokio::test]
async fn a_recent_lease_whose_store_is_down_still_vouches_for_itself() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("store");
    let store = Store::open_folder(&path).expect("store");
    let held = acquire(&store, &DbName::parse("db").expect("db"), "backup", TTL)
        .await
        .expect("lease");
    assert_eq!(held.confirm_or_recent().await.expect("reachable"), None);
    // The store goes away: its folder becomes a file.
    let aside = dir.path().join("aside");
    std::fs::rename(&path, &aside).expect("move");
    std::fs::write(&path, b"not a folder").expect("file");
    assert!(held.confirm().await.is_err());
    let note = held
        .confirm_or_recent()
        .await
        .expect("recent")
        .expect("a note");
    assert!(note.contains("cannot be confirmed"), "{note}");
    // Back, with the lease replaced by someone else's: refused.
    std::fs::remove_file(&path).expect("rm");
    std::fs::rename(&aside, &path).expect("back");
    std::fs::write(path.join("db/lease.json"), b"{}").expect("replace");
    let e = held.confirm_or_recent().await.expect_err("replaced");
    assert!(e.to_string().contains("taken over"), "{e}");
}

/// A folder store at `dir/name`, and a way to take it down (its folder becomes a file) and
/// bring it back.
struct Switchable {
    path: std::path::PathBuf,
    aside: std::path::PathBuf,
    store: Store,
}

impl Switchable {
    fn new(dir: &std::path::Path, name: &str) -> Self {
        let path = dir.join(name);
        let store = Store::open_folder(&path).expect("store");
        let aside = dir.join(format!("{name}.aside"));
        Switchable { path, aside, store }
    }

    fn down(&self) {
        std::fs::rename(&self.path, &self.aside).expect("move");
        std::fs::write(&self.path, b"not a folder").expect("file");
    }

    fn up(&self) {
        std::fs::remove_file(&self.path).expect("rm");
        std::fs::rename(&self.aside, &self.path).expect("back");
    }
}

/// Issue 19: a lease store down for longer than two thirds of the ttl: the renewal moves the
/// lease to the next store that answers (passing a dead one by) (once, said once by the confirm) and the lease stays
/// held there; release deletes both. Without a store to move to, the same outage loses it.
#[tokio::test]
async fn a_lease_whose_store_stays_down_moves_to_the_next_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let (r2, b2, local) = (
        Switchable::new(dir.path(), "r2"),
        Switchable::new(dir.path(), "b2"),
        Switchable::new(dir.path(), "local"),
    );
    let db = DbName::parse("db").expect("db");
    let ttl = StdDuration::from_secs(3);
    let held = acquire(&r2.store, &db, "backup", ttl).await.expect("lease");
    held.move_on_to(
        "r2",
        vec![
            ("local".into(), local.store.clone()),
            ("b2".into(), b2.store.clone()),
        ],
    )
    .await;
    let stays = acquire(
        &local.store,
        &DbName::parse("other").expect("db"),
        "backup",
        ttl,
    )
    .await
    .expect("lease");
    // r2 stays down past two thirds of the ttl; local, next in line, is down too.
    r2.down();
    local.down();
    tokio::time::sleep(StdDuration::from_millis(3300)).await;
    assert!(held.lost().await.is_none(), "{:?}", held.lost().await);
    assert!(stays.lost().await.is_some(), "no store to move to: lost");
    assert!(b2.store.exists("db/lease.json").await.expect("exists"));
    let note = held
        .confirm_or_recent()
        .await
        .expect("held in b2")
        .expect("a note");
    assert!(
        note.starts_with("store r2 unreachable (") && note.ends_with("; lease moved to b2"),
        "{note}"
    );
    assert_eq!(
        held.confirm_or_recent().await.expect("held"),
        None,
        "said once"
    );
    held.confirm().await.expect("confirmed where it is now");
    // Still renewed there: another job cannot take it.
    let e = acquire(&b2.store, &db, "backup", ttl)
        .await
        .err()
        .expect("held");
    assert_eq!(e.exit_code(), 6, "{e}");
    r2.up();
    assert!(r2.store.exists("db/lease.json").await.expect("exists"));
    held.release().await;
    assert!(!b2.store.exists("db/lease.json").await.expect("exists"));
    assert!(
        !r2.store.exists("db/lease.json").await.expect("exists"),
        "the lease left behind is released too"
    );
}

/// A lease by another holder in the store it would move to: lost (someone else runs there).
#[tokio::test]
async fn a_lease_does_not_move_onto_another_holders_lease() {
    let dir = tempfile::tempdir().expect("tmp");
    let (r2, b2) = (
        Switchable::new(dir.path(), "r2"),
        Switchable::new(dir.path(), "b2"),
    );
    let db = DbName::parse("db").expect("db");
    let ttl = StdDuration::from_secs(3);
    let other = acquire(&b2.store, &db, "backup", TTL).await.expect("other");
    let held = acquire(&r2.store, &db, "backup", ttl).await.expect("lease");
    held.move_on_to("r2", vec![("b2".into(), b2.store.clone())])
        .await;
    let mut signal = held.lost_signal();
    r2.down();
    tokio::time::timeout(StdDuration::from_secs(5), signal.cancelled())
        .await
        .expect("the lost signal fired");
    let e = held.confirm_or_recent().await.expect_err("lost");
    assert!(
        e.to_string().contains("store b2 already holds a lease"),
        "{e}"
    );
    other
        .confirm()
        .await
        .expect("the other holder's lease is untouched");
    r2.up();
}
