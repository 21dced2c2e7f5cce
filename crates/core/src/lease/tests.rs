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
