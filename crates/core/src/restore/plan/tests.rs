use super::*;

fn opts(jobs: u32) -> Options {
    Options {
        backup_id: "20261121T020000Z-7f3a".into(),
        target: "postgres://u@db:5432/app".into(),
        dbname: "app".into(),
        jobs,
        spool: false,
        clean: false,
        globals: false,
        encoding_recorded: true,
        pg_restore: "17.2 (/usr/bin/pg_restore)".into(),
    }
}

fn new_db() -> Target {
    Target {
        superuser: true,
        ..Target::default()
    }
}

#[test]
fn jobs_are_resolved_and_clamped_once() {
    assert_eq!(resolve_jobs(None, None), 1);
    assert_eq!(resolve_jobs(Some(0), Some(8)), 1);
    assert_eq!(resolve_jobs(None, Some(8)), 8);
    assert_eq!(resolve_jobs(Some(500), None), MAX_JOBS);
    let p = RestorePlan::build(&opts(0), &new_db(), &Index::Missing, &Preflight::default());
    assert_eq!((p.mode, p.jobs), (Mode::Pipe, 1));
}

#[test]
fn one_job_into_a_new_database_pipes() {
    let p = RestorePlan::build(&opts(1), &new_db(), &Index::Usable, &Preflight::default());
    assert_eq!(
        p.render(),
        "restore plan for 20261121T020000Z-7f3a into postgres://u@db:5432/app (nothing was changed)
mode: pipe (1 job(s))
database: created by the restore
pg_restore: 17.2 (/usr/bin/pg_restore)
steps:
  1. create the database `app` (dropped again on failure)
  2. stream the dump into pg_restore, its last 64 KiB held back until the digests match
  3. ANALYZE every table
"
    );
    assert!(!p.single_transaction);
}

#[test]
fn one_job_into_an_existing_database_runs_in_one_transaction() {
    let mut o = opts(1);
    o.clean = true;
    let t = Target {
        exists: true,
        ..Target::default()
    };
    let p = RestorePlan::build(&o, &t, &Index::Usable, &Preflight::default());
    assert_eq!((p.mode, p.database), (Mode::Pipe, Database::Existing));
    assert!(p.single_transaction);
    assert_eq!(
            p.steps,
            ["stream the dump into pg_restore, its last 64 KiB held back until the digests match, replacing what the dump contains (--clean --if-exists) in one transaction (a failure leaves the target unchanged)", "ANALYZE every table"]
        );
}

#[test]
fn n_jobs_into_a_new_database_with_an_index_stream_on_n_lanes() {
    let p = RestorePlan::build(&opts(4), &new_db(), &Index::Usable, &Preflight::default());
    assert_eq!(
            p.render(),
            "restore plan for 20261121T020000Z-7f3a into postgres://u@db:5432/app (nothing was changed)
mode: stream (4 job(s), 4 lanes)
database: created by the restore
pg_restore: 17.2 (/usr/bin/pg_restore)
steps:
  1. create the database `app` as the guards pass, while the table of contents is read (dropped again on failure)
  2. restore the schema (pre-data entries) from the table of contents
  3. load the data on 4 lanes from ranged reads of the stored dump, its size and SHA-256 checked beside
  4. give each large table its own indexes and constraints, then ANALYZE, as soon as its data is in
  5. restore the remaining post-data entries (pg_restore -j 4) and ANALYZE the other tables
  6. ANALYZE materialized views and tables whose statistics need their indexes
"
        );
    // Not a superuser: the database is created after the preflight.
    let p = RestorePlan::build(
        &opts(4),
        &Target::default(),
        &Index::Usable,
        &Preflight::default(),
    );
    assert_eq!((p.mode, p.database), (Mode::Stream, Database::Create));
    // Without an index, or asked to: spooled.
    let p = RestorePlan::build(&opts(4), &new_db(), &Index::Missing, &Preflight::default());
    assert_eq!((p.mode, p.jobs, p.lanes), (Mode::Spool, 4, None));
    assert!(p.notes.is_empty());
    let mut o = opts(4);
    o.spool = true;
    let p = RestorePlan::build(&o, &new_db(), &Index::Usable, &Preflight::default());
    assert_eq!((p.mode, p.database), (Mode::Spool, Database::Create));
}

#[test]
fn a_damaged_index_spools_with_a_note() {
    let p = RestorePlan::build(
        &opts(2),
        &new_db(),
        &Index::Unusable("index.json.zst is missing".into()),
        &Preflight::default(),
    );
    assert_eq!(p.mode, Mode::Spool);
    assert_eq!(
            p.notes,
            ["the dump index could not be used (index.json.zst is missing); restored from a spool file instead"]
        );
}

#[test]
fn skipped_entries_and_created_roles_spool_with_a_list() {
    let pre = Preflight {
        use_list: true,
        reorder: false,
        create_roles: vec!["authenticated".into(), "anon".into()],
        skipped: vec!["EXTENSION pg_stat_statements: the target lacks it".into()],
        notes: vec!["roles named only as owners were not created".into()],
        deferred: 2,
    };
    let p = RestorePlan::build(&opts(3), &new_db(), &Index::Usable, &pre);
    assert_eq!(
            p.render(),
            "restore plan for 20261121T020000Z-7f3a into postgres://u@db:5432/app (nothing was changed)
mode: spool (3 job(s))
database: created by the restore
pg_restore: 17.2 (/usr/bin/pg_restore)
steps:
  1. create the database `app` as the guards pass, while the table of contents is read (dropped again on failure)
  2. create the roles the backup names, NOLOGIN: authenticated, anon (dropped again on failure)
  3. download the dump into a spool file (free space checked) and verify its digests
  4. pg_restore -j 3 from the spool file, leaving out what is listed as not restored
  5. ANALYZE every table (3 session(s))
  6. run 2 grant(s) on extension members one by one
not restored: EXTENSION pg_stat_statements: the target lacks it
note: roles named only as owners were not created
"
        );
    let json = serde_json::to_value(&p).expect("json");
    assert_eq!(json["mode"], "spool");
    assert_eq!(json["database"], "create_early");
    assert_eq!(
        json["skipped"][0],
        "EXTENSION pg_stat_statements: the target lacks it"
    );
    assert!(json.get("lanes").is_none());
}

#[test]
fn supabase_platform_rows_force_a_serial_spooled_restore() {
    let t = Target {
        supabase: true,
        superuser: true,
        ..Target::default()
    };
    let pre = Preflight {
        use_list: true,
        reorder: true,
        ..Preflight::default()
    };
    let p = RestorePlan::build(&opts(4), &t, &Index::Usable, &pre);
    assert_eq!(
        (p.mode, p.jobs, p.database),
        (Mode::Spool, 1, Database::Create)
    );
    assert!(p.privileges);
    assert_eq!(p.profile.as_deref(), Some("supabase"));
    assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    let p = RestorePlan::build(&opts(1), &t, &Index::Usable, &pre);
    assert_eq!((p.mode, p.jobs), (Mode::Spool, 1));
    assert!(p.notes.is_empty());
}

#[test]
fn a_create_dump_is_spooled_and_creates_its_own_database() {
    let mut o = opts(1);
    o.globals = true;
    let t = Target {
        create_mode: true,
        superuser: true,
        ..Target::default()
    };
    let p = RestorePlan::build(&o, &t, &Index::Usable, &Preflight::default());
    assert_eq!((p.mode, p.database), (Mode::Spool, Database::FromDump));
    assert!(!p.single_transaction);
    assert_eq!(
            p.steps,
            [
                "restore roles and tablespaces from the backup's globals (psql; existing ones are kept)",
                "download the dump into a spool file (free space checked) and verify its digests",
                "create the database `app` from the dump (pg_restore --create: the database, its settings and comment)",
                "pg_restore -j 1 from the spool file",
                "ANALYZE every table (1 session(s))"
            ]
        );
}
