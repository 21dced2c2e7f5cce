//! The daemon against a fake job runner: discovery and drill coverage over a real loop.

use super::*;
use crate::config::Auth;
use crate::jobs::{DiscoverFuture, JobFuture, JobKind};
use crate::schedule::Schedule;
use std::cell::{Cell, RefCell};

#[derive(Default)]
struct Fake {
    ran: RefCell<Vec<JobKey>>,
    drills: Cell<usize>,
    most_drills: Cell<usize>,
}

impl JobRunner for Fake {
    fn supports(&self, _: JobKind) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        job: &'a JobKey,
        _slot: Option<jiff::Timestamp>,
        _cancel: Cancel,
    ) -> JobFuture<'a> {
        Box::pin(async move {
            self.ran.borrow_mut().push(job.clone());
            if job.kind == JobKind::Drill {
                self.drills.set(self.drills.get() + 1);
                self.most_drills
                    .set(self.most_drills.get().max(self.drills.get()));
                tokio::time::sleep(Duration::from_millis(300)).await;
                self.drills.set(self.drills.get() - 1);
            }
            JobOutcome {
                ok: true,
                skipped: false,
                summary: String::new(),
                retry: false,
            }
        })
    }

    fn discover(&self) -> DiscoverFuture<'_> {
        Box::pin(async { Some(vec![db("main.a"), db("main.b"), db("main.c")]) })
    }
}

fn db(s: &str) -> DbName {
    DbName::parse(s).expect("name")
}

/// A database a discovery finds while the daemon runs gets its jobs; with drill coverage
/// at most `max_concurrent` drills run at once, however many are due.
#[tokio::test(flavor = "multi_thread")]
async fn discovered_databases_are_scheduled_and_coverage_bounds_drills() {
    let dir = std::env::temp_dir().join(format!(
        "pgdrill-daemon-fleet-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let store = Store::open_folder(&dir).expect("store");
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        auth: Auth::default(),
        shutdown_grace: Duration::from_secs(5),
        tz: jiff::tz::TimeZone::UTC,
        tz_name: "UTC".into(),
        jitter_seconds: 0,
        schedules: vec![
            (JobKind::Backup, Schedule::every_seconds(1)),
            (JobKind::Drill, Schedule::every_seconds(1)),
        ],
        drill_coverage: Some(1),
        discover_every: Duration::from_millis(500),
    };
    let (handle, shutdown) = Cancel::new();
    let fake = Fake::default();
    let daemon = Daemon {
        stores: Vec::new(),
        config,
        store,
        databases: vec![db("main.a"), db("main.c")],
        policy: Policy::default(),
        runner: &fake,
        shutdown,
        clock: Arc::new(SystemClock),
        log: Arc::new(|_| {}),
    };
    let stop = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        handle.cancel();
    };
    let (r, _) = tokio::join!(run(daemon), stop);
    r.expect("daemon");
    let _ = std::fs::remove_dir_all(&dir);
    let ran = fake.ran.borrow();
    let of = |kind: JobKind, name: &str| {
        ran.iter()
            .filter(|k| k.kind == kind && k.database.as_ref() == Some(&db(name)))
            .count()
    };
    assert!(of(JobKind::Backup, "main.b") >= 1, "{ran:?}");
    assert!(of(JobKind::Backup, "main.a") >= 1, "{ran:?}");
    assert!(of(JobKind::Drill, "main.a") >= 1, "{ran:?}");
    assert_eq!(fake.most_drills.get(), 1, "{ran:?}");
}
