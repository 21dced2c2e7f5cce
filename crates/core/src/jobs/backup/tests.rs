use super::*;
use crate::config::{Env, Settings};
use crate::jobs::{JobEnv, Silent};
use pgdrill_store::Store;
use std::path::Path;

/// A database without a source is a settings error: exit 2, nothing recorded as a
/// failed backup, no lease left behind.
#[tokio::test]
async fn a_database_without_a_source_fails_without_a_failure_record() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_folder(dir.path()).expect("store");
    let env = Env::new();
    let settings = Settings::load(
        Some("[[database]]\nname = \"app\"\n"),
        "t.toml",
        Path::new("/"),
        &env,
    )
    .expect("settings");
    let (_handle, cancel) = Cancel::new();
    let jx = JobEnv {
        store: &store,
        settings: &settings,
        env: &env,
        cancel,
        events: &Silent,
        slot: None,
    };
    let keys = EncryptionKeys::new(&[], None).expect("keys");
    let tools = Tools::found(pgdrill_pg::PgTools::discover());
    let input = BackupInput {
        databases: settings.select(None).expect("databases"),
        keys: &keys,
        tools: &tools,
        configured: true,
        jobs: None,
        stores: Vec::new(),
    };
    let e = run(&jx, input).await.expect_err("no source");
    assert_eq!(e.exit_code(), 2, "{e}");
    let app = DbName::parse("app").expect("name");
    assert!(status::read_failure(&store, &app).await.is_none());
    assert!(store.list("").await.expect("list").is_empty());
}

/// Events kept for assertions.
#[derive(Default)]
struct Kept(std::sync::Mutex<Vec<String>>);

impl crate::jobs::Events for Kept {
    fn info(&self, _: &str) {}
    fn warn(&self, msg: &str) {
        if let Ok(mut k) = self.0.lock() {
            k.push(msg.to_string());
        }
    }
}

/// A folder store whose folder is then replaced by a file: every request fails.
fn dead(dir: &Path) -> Store {
    let path = dir.join("dead");
    let store = Store::open_folder(&path).expect("open");
    std::fs::remove_dir(&path).expect("rmdir");
    std::fs::write(&path, b"not a folder").expect("file");
    store
}

fn target(name: &str, store: Store) -> TargetStore {
    TargetStore {
        name: name.into(),
        store,
        part_size: 5 << 20,
        max_in_flight: 2,
    }
}

/// Issue 19, fleets: a primary found unreachable is passed over without a request until
/// the re-probe interval has passed; then one quick request decides (still down: passed
/// over again; answering: used again).
#[tokio::test]
async fn a_fleet_passes_a_dead_primary_over_until_it_answers_a_probe() {
    let dir = tempfile::tempdir().expect("tmp");
    let down = dead(dir.path());
    let up = Store::open_folder(dir.path().join("up")).expect("store");
    let b2 = Store::open_folder(dir.path().join("b2")).expect("store");
    let env = Env::new();
    let settings = Settings::load(None, "environment", Path::new("/"), &env).expect("settings");
    let kept = Kept::default();
    let jx = |store| {
        let (_handle, cancel) = Cancel::new();
        JobEnv {
            store,
            settings: &settings,
            env: &env,
            cancel,
            events: &kept,
            slot: None,
        }
    };
    let app = DbName::parse("app").expect("name");
    let mut fleet = Fleet::new(std::time::Duration::from_secs(3600));
    assert_eq!(
        fleet.skip_primary(&jx(&down), &app).await,
        None,
        "not known down"
    );
    fleet.primary_down("gone", &b2, true);
    // Within the interval: passed over without asking, even a store that would answer.
    assert_eq!(
        fleet.skip_primary(&jx(&up), &app).await.as_deref(),
        Some("gone")
    );
    // The interval passed: asked once; still down, then back.
    fleet.reprobe = std::time::Duration::ZERO;
    assert_eq!(
        fleet.skip_primary(&jx(&down), &app).await.as_deref(),
        Some("gone")
    );
    assert!(fleet.down.is_some());
    assert_eq!(fleet.skip_primary(&jx(&up), &app).await, None);
    assert!(fleet.down.is_none());
    // A later finding keeps the first store that took the lease for the alerts.
    fleet.primary_down("again", &up, true);
    assert!(fleet.passed.is_some());
    // The lease passed over a primary known down: the next store, no request to it.
    let input = BackupInput {
        databases: Vec::new(),
        keys: &EncryptionKeys::new(&[], None).expect("keys"),
        tools: &Tools::found(pgdrill_pg::PgTools::discover()),
        configured: true,
        jobs: None,
        stores: vec![target("r2", up.clone()), target("b2", b2.clone())],
    };
    let (held, home) = take_lease(&jx(&up), &input, &app, Some("gone"))
        .await
        .expect("lease");
    assert_eq!(home.index, 1);
    assert!(home.passed_over[0]
        .1
        .contains("could not be reached earlier in this run"));
    assert!(!up.exists("app/lease.json").await.expect("exists"));
    assert!(b2.exists("app/lease.json").await.expect("exists"));
    held.release().await;
}

/// Issue 19: a primary that cannot be reached passes the lease to the first reachable
/// store after it, in order, saying so; a lease held there is still exit 6; with one
/// store (or none reachable) the primary's error stands.
#[tokio::test]
async fn the_lease_goes_to_the_first_reachable_store_when_the_primary_is_down() {
    let dir = tempfile::tempdir().expect("tmp");
    let primary = dead(dir.path());
    let b2 = Store::open_folder(dir.path().join("b2")).expect("store");
    let local = Store::open_folder(dir.path().join("local")).expect("store");
    let env = Env::new();
    let settings = Settings::load(None, "environment", Path::new("/"), &env).expect("settings");
    let (_handle, cancel) = Cancel::new();
    let kept = Kept::default();
    let jx = JobEnv {
        store: &primary,
        settings: &settings,
        env: &env,
        cancel,
        events: &kept,
        slot: None,
    };
    let keys = EncryptionKeys::new(&[], None).expect("keys");
    let tools = Tools::found(pgdrill_pg::PgTools::discover());
    let app = DbName::parse("app").expect("name");
    let input = |stores: Vec<TargetStore>| BackupInput {
        databases: Vec::new(),
        keys: &keys,
        tools: &tools,
        configured: true,
        jobs: None,
        stores,
    };
    let three = input(vec![
        target("r2", primary.clone()),
        target("b2", b2.clone()),
        target("local", local.clone()),
    ]);
    let (held, home) = take_lease(&jx, &three, &app, None).await.expect("lease");
    assert!(b2.exists("app/lease.json").await.expect("exists"));
    assert_eq!(home.passed_over.len(), 1);
    assert_eq!(home.passed_over[0].0, 0);
    let said = kept.0.lock().expect("lock").join("\n");
    assert!(
        said.contains("store r2 unreachable (") && said.contains("lease taken in b2"),
        "{said}"
    );
    // Held there by another job: exit 6, never passed over to the next store.
    let e = take_lease(&jx, &three, &app, None)
        .await
        .err()
        .expect("locked");
    assert_eq!(e.exit_code(), 6, "{e}");
    assert!(!local.exists("app/lease.json").await.expect("exists"));
    held.release().await;
    // One store, or none reachable: the primary's error.
    let one = input(Vec::new());
    let e = take_lease(&jx, &one, &app, None).await.err().expect("down");
    assert!(!matches!(e, Error::Locked(_)), "{e}");
    let none = input(vec![
        target("r2", primary.clone()),
        target("b2", dead(&dir.path().join("b2"))),
    ]);
    let e2 = take_lease(&jx, &none, &app, None)
        .await
        .err()
        .expect("down");
    assert_eq!(e2.to_string(), e.to_string());
}

/// A configured database that does not answer: the failure is recorded, in
/// last_failure.json and in the history the dashboard reads.
#[tokio::test]
async fn a_failed_backup_is_kept_in_the_failure_history() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open_folder(dir.path()).expect("store");
    let env = Env::new();
    let settings = Settings::load(
        Some("[[database]]\nname = \"app\"\nurl = \"postgresql://u@127.0.0.1:1/app?connect_timeout=2\"\n"),
        "t.toml",
        Path::new("/"),
        &env,
    )
    .expect("settings");
    let (_handle, cancel) = Cancel::new();
    let jx = JobEnv {
        store: &store,
        settings: &settings,
        env: &env,
        cancel,
        events: &Silent,
        slot: None,
    };
    let keys = EncryptionKeys::new(&[], None).expect("keys");
    let tools = Tools::found(pgdrill_pg::PgTools::discover());
    let app = DbName::parse("app").expect("name");
    for _ in 0..2 {
        let input = BackupInput {
            databases: settings.select(None).expect("databases"),
            keys: &keys,
            tools: &tools,
            configured: true,
            jobs: None,
            stores: Vec::new(),
        };
        run(&jx, input)
            .await
            .expect_err("nothing listens on port 1");
    }
    let last = status::read_failure(&store, &app)
        .await
        .expect("last failure");
    let history = super::super::failures::read(&store, &app).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1].message, last.message);
    assert_eq!(history[1].job, "backup");
}
