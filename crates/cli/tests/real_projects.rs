//! Real projects' layouts (issue 15): a Supabase-shaped project built after the public
//! `supabase/postgres` migrations (fixtures/supabase/README.md), on stock PostgreSQL 15 with
//! a non-superuser `postgres`, and an RDS-like source whose admin roles own objects and
//! hold grants. Each is restored and drilled with default settings, and the restored data,
//! grants and policies are compared with the source. Targets run PostgreSQL 17: the
//! tests' client tools are PostgreSQL 18's, whose pg_restore sets `transaction_timeout`,
//! which servers before 17 do not know.

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use restore_util::*;

const ROLES: &str = include_str!("fixtures/supabase/roles.sql");
const PLATFORM: &str = include_str!("fixtures/supabase/platform.sql");
const APP: &str = include_str!("fixtures/supabase/app.sql");

/// Grants to the API roles and the platform's own, and the policies, as comparable text.
const GRANTS: &str = "select string_agg(x, E'\\n' order by x) from ( \
    select format('%s %s.%s %s', grantee, table_schema, table_name, privilege_type) x \
      from information_schema.role_table_grants \
     where grantee in ('anon', 'authenticated', 'service_role', 'pgbouncer') \
    union all \
    select format('%s %s.%s() %s', grantee, routine_schema, routine_name, privilege_type) \
      from information_schema.role_routine_grants \
     where grantee in ('anon', 'authenticated', 'service_role', 'pgbouncer') \
       and routine_schema not in ('pg_catalog', 'information_schema', 'extensions')) g";
const POLICIES: &str =
    "select string_agg(format('%s.%s %s %s %s', schemaname, tablename, policyname, roles, cmd), \
    E'\\n' order by schemaname, tablename, policyname) from pg_policies";

async fn text(url: &str, sql: &str) -> String {
    scalar(url, sql).await
}

/// The Supabase-shaped project on PostgreSQL 15: (cluster, superuser URL of the project).
async fn supabase_project() -> (tk::Cluster, String) {
    let c = supabase_platform(15).await;
    let url = c.url("proj");
    let as_postgres = format!(
        "postgresql://postgres:fixture-postgres-pw@127.0.0.1:{}/proj",
        c.port()
    );
    tk::connect(&as_postgres)
        .await
        .batch_execute(APP)
        .await
        .expect("app");
    (c, url)
}

/// Writes `dir/pgdrill.toml`: the folder store, database `proj` from `PROJ_URL`, then `extra`.
fn proj_config(dir: &std::path::Path, store: &std::path::Path, extra: &str) {
    std::fs::write(
        dir.join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n\n[[database]]\nname = \"proj\"\nurl_env = \"PROJ_URL\"\n{extra}",
            store.display()
        ),
    )
    .expect("config");
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn supabase_project_restores_and_drills_on_stock_postgres() {
    let (_src_cluster, src) = supabase_project().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src, &[]);
    let want = tk::fingerprint(&src, &pg_dump()).await;
    let want_grants = text(&src, GRANTS).await;
    let want_policies = text(&src, POLICIES).await;

    // 1. The default drill (a throwaway cluster) passes, row counts included: the
    //    inheritance parent and the partitioned tables count ONLY their own rows.
    proj_config(dir.path(), &store, "");
    let out = run(dir.path(), &["--json", "drill"], &[("PROJ_URL", &src)]);
    out.ok();
    let j = out.json();
    assert_eq!(j["verdict"], "pass", "{j}");
    assert_eq!(j["target"]["kind"], "ephemeral", "{j}");
    let created = strings(&j["created_roles"]);
    for r in [
        "pgbouncer",
        "supabase_realtime_admin",
        "supabase_functions_admin",
    ] {
        assert!(created.iter().any(|c| c == r), "{r} in {created:?}");
    }

    let skipped = strings(&j["skipped"]);
    assert!(
        skipped
            .iter()
            .any(|s| s.starts_with("EVENT TRIGGER pgrst_ddl_watch")),
        "{skipped:?}"
    );
    let report = std::fs::read_dir(dir.path().join("pgdrill-reports"))
        .expect("reports")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path().join("report.md")).unwrap_or_default())
        .next()
        .unwrap_or_default();
    assert!(
        report.contains("## Not restored") && report.contains("skipped: EVENT TRIGGER"),
        "{report}"
    );
    // A drill told to fail on anything skipped outside its allowlist fails, naming it.
    proj_config(
        dir.path(),
        &store,
        "\n[database.drill]\nfail_on_skipped = true\nallow_skipped = [\"EVENT TRIGGER\", \"pg_stat_statements\"]\n",
    );
    let out = run(dir.path(), &["--json", "drill"], &[("PROJ_URL", &src)]);
    out.code(1);
    let j = out.json();
    let check = j["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["kind"] == "skipped"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(check["passed"], false, "{j}");
    let actual = check["actual"].as_str().unwrap_or_default();
    assert!(
        actual.contains("DEFAULT ACL") && !actual.contains("EVENT TRIGGER"),
        "{actual}"
    );

    // 2. Plain PostgreSQL as a superuser: the roles the archive names are created, data,
    //    grants and policies are exact.
    let plain = tk::cluster(Some(17));
    let target = plain.url("proj");
    let out = restore(dir.path(), &store, &target, &["--jobs", "2"]);
    out.ok();
    let got = tk::fingerprint(&target, &pg_dump()).await;
    assert_eq!(got.tables, want.tables);
    assert_eq!(got.sequences, want.sequences);
    assert_eq!(text(&target, GRANTS).await, want_grants);
    assert_eq!(text(&target, POLICIES).await, want_policies);
    let skipped = out.json()["skipped"].to_string();
    assert!(
        skipped.contains("EVENT TRIGGER pgrst_ddl_watch"),
        "{skipped}"
    );

    // 3. Plain PostgreSQL as a role with CREATEDB and CREATEROLE only: what only a
    //    superuser may create and nothing needs (pg_stat_statements, event triggers) is
    //    skipped and listed; the rest is exact.
    let padmin = tk::connect(&plain.url("postgres")).await;
    padmin
        .batch_execute("create role deployer login password 'deployer-pw' createdb createrole")
        .await
        .expect("deployer");
    let as_deployer = format!(
        "postgresql://deployer:deployer-pw@127.0.0.1:{}/proj2",
        plain.port()
    );
    let out = restore(dir.path(), &store, &as_deployer, &[]);
    out.ok();
    let skipped = out.json()["skipped"].to_string();
    assert!(skipped.contains("pg_stat_statements"), "{skipped}");
    let target2 = plain.url("proj2");
    let got = tk::fingerprint(&target2, &pg_dump()).await;
    assert_eq!(got.tables, want.tables);
    assert_eq!(text(&target2, POLICIES).await, want_policies);

    // 4. A role that cannot create roles, on a server lacking them: stops before changing
    //    anything, naming every missing role.
    let bare = tk::cluster(Some(17));
    tk::connect(&bare.url("postgres"))
        .await
        .batch_execute("create role app login password 'app-pw' createdb")
        .await
        .expect("app role");
    let as_app = format!("postgresql://app:app-pw@127.0.0.1:{}/proj", bare.port());
    let out = restore(dir.path(), &store, &as_app, &[]);
    out.code(1);
    for r in ["anon", "authenticated", "pgbouncer", "service_role"] {
        assert!(out.stderr.contains(r), "{r}: {}", out.stderr);
    }
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    assert!(!db_exists(&bare, "proj").await, "the target was created");

    // 5. Another Supabase project, restored by its non-superuser `postgres`: the
    //    extension comments ("uuid-ossp", quoted in the TOC) are the target's, the
    //    project's tables arrive exact.
    let (other, other_url) = supabase_project_empty().await;
    let as_other_postgres = other_url.replace("__PW__", "fixture-postgres-pw");
    let out = restore(dir.path(), &store, &as_other_postgres, &[]);
    out.ok();
    let skipped = out.json()["skipped"].to_string();
    assert!(
        skipped.contains("EXTENSION \\\"uuid-ossp\\\"") || skipped.contains("uuid-ossp"),
        "{skipped}"
    );
    let got = tk::fingerprint(&other.url("proj"), &pg_dump()).await;
    for t in [
        "\"public\".\"todos\"",
        "\"public\".\"article\"",
        "\"public\".\"video\"",
        "\"public\".\"page_views_2024\"",
        "\"auth\".\"users\"",
        "\"storage\".\"objects\"",
    ] {
        assert_eq!(got.tables.get(t), want.tables.get(t), "{t}");
    }
    // 6. A project of a newer platform version (its identities require a column the
    //    backup's rows lack): stops before anything is changed, naming table and column.
    tk::connect(&other.url("postgres"))
        .await
        .batch_execute("create database newer owner postgres")
        .await
        .expect("newer db");
    let newer = tk::connect(&other.url("newer")).await;
    newer.batch_execute(PLATFORM).await.expect("platform");
    newer
        .batch_execute("alter table auth.identities add column provider_type text not null")
        .await
        .expect("newer layout");
    let as_newer = as_other_postgres.replace("/proj", "/newer");
    let out = restore(dir.path(), &store, &as_newer, &[]);
    out.code(1);
    assert!(
        out.stderr.contains("auth.identities") && out.stderr.contains("provider_type"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    assert_eq!(
        text(
            &other.url("newer"),
            "select count(*)::text from pg_tables where schemaname = 'public'"
        )
        .await,
        "0",
        "the target was changed"
    );
}

/// A second Supabase-shaped project with the platform but no project content; its URL as
/// `postgres` with the password placeholder `__PW__`.
async fn supabase_project_empty() -> (tk::Cluster, String) {
    let c = supabase_platform(17).await;
    let url = format!("postgresql://postgres:__PW__@127.0.0.1:{}/proj", c.port());
    (c, url)
}

/// A cluster of PostgreSQL `major` as Supabase sets one up: its roles, and database `proj`
/// (owned by `postgres`) holding the platform's schemas.
async fn supabase_platform(major: u32) -> tk::Cluster {
    let c = tk::cluster_as(Some(major), "supabase_admin");
    let admin = tk::connect(&c.url("postgres")).await;
    admin.batch_execute(ROLES).await.expect("roles");
    admin
        .batch_execute("create database proj owner postgres")
        .await
        .expect("project db");
    tk::connect(&c.url("proj"))
        .await
        .batch_execute(PLATFORM)
        .await
        .expect("platform");
    c
}

/// An RDS-like source: `rds_superuser` owns the application schema's objects and grants
/// to application roles, `rdsadmin` appears in default privileges, a policy names an
/// application role; restored into plain PostgreSQL, the roles are created from the
/// archive and the data and policies are exact.
#[tokio::test(flavor = "multi_thread")]
async fn rds_layout_restores_with_the_roles_its_archive_names() {
    let c = tk::cluster(Some(15));
    let admin = tk::connect(&c.url("postgres")).await;
    admin
        .batch_execute(
            "create role rdsadmin; create role rds_superuser; create role app_rw; create role app_ro; \
             create role \"Reporting Team\"; grant rds_superuser to postgres;",
        )
        .await
        .expect("roles");
    admin
        .batch_execute("create database shop owner rds_superuser")
        .await
        .expect("shop db");
    let src = c.url("shop");
    tk::connect(&src)
        .await
        .batch_execute(
            "create schema shop authorization rds_superuser; \
             create table shop.orders (id bigint generated by default as identity primary key, \
               customer text not null, total numeric(10,2), placed_at timestamptz not null); \
             alter table shop.orders owner to rds_superuser; \
             insert into shop.orders (customer, total, placed_at) \
               select 'c' || g, g * 1.5, timestamptz '2024-01-01' + g * interval '1 hour' from generate_series(1, 500) g; \
             alter table shop.orders enable row level security; \
             create policy rw on shop.orders to app_rw using (true); \
             create policy ro on shop.orders for select to app_ro, \"Reporting Team\" using (placed_at > '2024-01-05'); \
             grant select on shop.orders to app_ro, \"Reporting Team\"; \
             grant all on shop.orders to app_rw; \
             alter default privileges for role rds_superuser in schema shop grant select on tables to app_ro; \
             alter default privileges for role rdsadmin revoke execute on functions from public;",
        )
        .await
        .expect("shop");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src, &[]);
    let want = tk::fingerprint(&src, &pg_dump()).await;
    let want_policies = text(&src, POLICIES).await;
    let plain = tk::cluster(Some(17));
    let target = plain.url("shop");
    let out = restore(dir.path(), &store, &target, &[]);
    out.ok();
    let created = strings(&out.json()["created_roles"]);
    for r in ["app_rw", "app_ro", "Reporting Team", "rds_superuser"] {
        assert!(created.iter().any(|c| c == r), "{r} in {created:?}");
    }
    let got = tk::fingerprint(&target, &pg_dump()).await;
    assert_eq!(got.tables, want.tables);
    assert_eq!(got.sequences, want.sequences);
    assert_eq!(text(&target, POLICIES).await, want_policies);

    // A restore that fails after creating roles drops them again (and its database).
    admin
        .batch_execute("create role only_here")
        .await
        .expect("role");
    admin
        .batch_execute("create database broken")
        .await
        .expect("broken db");
    let broken = c.url("broken");
    tk::connect(&broken)
        .await
        .batch_execute(&format!(
            "{FAILS_ON_RESTORE_SQL} alter table a_child enable row level security; \
             create policy mine on a_child to only_here using (true);"
        ))
        .await
        .expect("broken content");
    let bstore = dir.path().join("bstore");
    backup(dir.path(), &bstore, &broken, &[]);
    let out = restore(dir.path(), &bstore, &plain.url("broken"), &[]);
    out.code(1);
    assert_eq!(
        text(
            &plain.url("postgres"),
            "select count(*)::text from pg_roles where rolname = 'only_here'"
        )
        .await,
        "0",
        "the role created for the failed restore is left: {}",
        out.stderr
    );
    assert!(!db_exists(&plain, "broken").await, "{}", out.stderr);

    // A function that sets a superuser-only parameter cannot be created by a role with only
    // CREATEDB and CREATEROLE: the preflight stops before anything is changed, naming it.
    admin
        .batch_execute("create database noisy")
        .await
        .expect("noisy db");
    let noisy = c.url("noisy");
    tk::connect(&noisy)
        .await
        .batch_execute(
            "create table t (id int primary key); insert into t values (1); \
             create function quiet() returns int language sql set log_min_messages to 'fatal' as 'select 1';",
        )
        .await
        .expect("noisy content");
    let nstore = dir.path().join("nstore");
    backup(dir.path(), &nstore, &noisy, &[]);
    tk::connect(&plain.url("postgres"))
        .await
        .batch_execute("create role deployer login password 'deployer-pw' createdb createrole")
        .await
        .expect("deployer");
    let as_deployer = format!(
        "postgresql://deployer:deployer-pw@127.0.0.1:{}/noisy",
        plain.port()
    );
    let out = restore(dir.path(), &nstore, &as_deployer, &["--jobs", "2"]);
    out.code(1);
    assert!(
        out.stderr.contains("FUNCTION public.quiet()")
            && out.stderr.contains("log_min_messages")
            && out.stderr.contains("nothing was changed"),
        "{}",
        out.stderr
    );
    assert!(!db_exists(&plain, "noisy").await, "{}", out.stderr);
}

/// `--source` and `--name` mean one database: `backup --source` in a folder whose
/// pgdrill.toml configures another backs up the given one alone; `drill --name` without a
/// config drills that database alone; a drill of every database in the store reports the
/// one that has no complete backup beside the others' results.
#[tokio::test(flavor = "multi_thread")]
async fn explicit_source_and_name_mean_that_database_alone() {
    let c = tk::cluster(None);
    let a = empty_db(&c, "a").await;
    let b = empty_db(&c, "b").await;
    for url in [&a, &b] {
        tk::connect(url)
            .await
            .batch_execute("create table t (id int primary key); insert into t values (1), (2);")
            .await
            .expect("table");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{store_s}\"\n\n[[database]]\nname = \"a\"\nurl_env = \"A_URL\"\n"
        ),
    )
    .expect("config");
    let out = run(
        dir.path(),
        &["--json", "backup", "--source", &b],
        &[("A_URL", &a)],
    );
    out.ok();
    let backups = out.json()["backups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(backups.len(), 1, "{}", out.stdout);
    assert!(backup_ids(&store, "a").is_empty(), "a was backed up too");
    // b's only backup loses its manifest (a failed backup); a gets a complete one.
    for id in backup_ids(&store, "b") {
        std::fs::remove_file(store.join("b/backups").join(&id).join("manifest.json"))
            .expect("remove manifest");
    }
    run(dir.path(), &["--json", "backup"], &[("A_URL", &a)]).ok();

    let bare = tempfile::tempdir().expect("tmp");
    let out = run(
        bare.path(),
        &["--json", "drill", "--store", &store_s, "--name", "a"],
        &[],
    );
    out.ok();
    assert_eq!(out.json()["database"], "a", "{}", out.stdout);
    let out = run(bare.path(), &["--json", "drill", "--store", &store_s], &[]);
    out.code(1);
    let j = out.json();
    assert_eq!(j["drills"][0]["database"], "a", "{j}");
    assert_eq!(j["drills"][0]["verdict"], "pass", "{j}");
    assert_eq!(j["errors"][0]["database"], "b", "{j}");
}

/// `storage_objects`: the restored `storage.objects` rows against the uploads mirror's
/// snapshot at the backup's time: a row whose file is missing fails the check, naming it;
/// files no row names are counted as orphans.
#[tokio::test(flavor = "multi_thread")]
async fn storage_objects_rows_are_checked_against_the_uploads_snapshot() {
    let (_c, src) = supabase_project().await;
    let dir = tempfile::tempdir().expect("tmp");
    let uploads = dir.path().join("uploads");
    std::fs::create_dir_all(uploads.join("avatars")).expect("mkdir");
    // app.sql records avatars/<g>.png of 1000 + g bytes for g in 1..=30; 7 is missing.
    for g in (1..=30).filter(|g| *g != 7) {
        std::fs::write(
            uploads.join(format!("avatars/{g}.png")),
            vec![b'x'; 1000 + g],
        )
        .expect("file");
    }
    std::fs::write(uploads.join("avatars/orphan.png"), b"nobody's").expect("orphan");
    let store = dir.path().join("store");
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[[mirror]]\nname = \"uploads\"\nfrom = \"{}\"\n\
             [[database]]\nname = \"proj\"\nurl_env = \"PROJ_URL\"\n[database.drill]\nrow_counts = false\n\
             [[database.drill.check]]\nname = \"files\"\nkind = \"storage_objects\"\nmirror = \"uploads\"\n",
            store.display(),
            uploads.display()
        ),
    )
    .expect("config");
    let env = [("PROJ_URL", src.as_str())];
    run(dir.path(), &["mirror", "run"], &env).ok();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run(dir.path(), &["--json", "backup"], &env).ok();
    let out = run(dir.path(), &["--json", "drill"], &env);
    out.code(1);
    let j = out.json();
    let check = &j["checks"][0];
    assert_eq!(check["kind"], "storage_objects", "{j}");
    assert_eq!(check["passed"], false, "{j}");
    let actual = check["actual"].as_str().unwrap_or_default();
    assert!(
        actual.contains("1 rows without a file (avatars/7.png)")
            && actual.contains("1 orphan files"),
        "{actual}"
    );
    // With the file back (and the sizes the rows record), the next backup's drill passes.
    std::fs::write(uploads.join("avatars/7.png"), vec![b'x'; 1007]).expect("file");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run(dir.path(), &["mirror", "run"], &env).ok();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run(dir.path(), &["--json", "backup"], &env).ok();
    let out = run(dir.path(), &["--json", "drill"], &env);
    out.ok();
    let actual = out.json()["checks"][0]["actual"].to_string();
    assert!(
        actual.contains("30 object rows all have their file"),
        "{actual}"
    );
}

/// The Supabase-shaped project through the newest paths: a `--jobs 2` backup (directory
/// layout, one object per table), restored streamed with `--jobs 2` (the platform's rows
/// load in foreign-key order) and with `--spool`, and a few of its tables alone with
/// `restore --table` (an inheritance parent, a partitioned table, one under row-level
/// security in the platform's `storage` schema).
#[tokio::test(flavor = "multi_thread")]
async fn supabase_project_round_trips_through_the_directory_layout() {
    let (_src_cluster, src) = supabase_project().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let out = run(
        dir.path(),
        &["--json", "backup", "--jobs", "2", "--store", &store_s],
        &[("PGDRILL_SOURCE_URL", &src)],
    );
    out.ok();
    let id = out.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("backup id")
        .to_string();
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("proj/backups/{id}/manifest.json"))).expect("manifest"),
    )
    .expect("manifest json");
    assert_eq!(m["layout"], "directory");
    let want = tk::fingerprint(&src, &pg_dump()).await;
    let want_grants = text(&src, GRANTS).await;
    let want_policies = text(&src, POLICIES).await;

    let plain = tk::cluster(Some(17));
    for (db, extra) in [
        ("streamed", &["--jobs", "2"][..]),
        ("spooled", &["--jobs", "2", "--spool"][..]),
    ] {
        let target = plain.url(db);
        restore(dir.path(), &store, &target, extra).ok();
        let got = tk::fingerprint(&target, &pg_dump()).await;
        assert_eq!(got.tables, want.tables, "{db}");
        assert_eq!(got.sequences, want.sequences, "{db}");
        assert_eq!(text(&target, GRANTS).await, want_grants, "{db}");
        assert_eq!(text(&target, POLICIES).await, want_policies, "{db}");
    }

    let target = plain.url("tables");
    let tables = [
        "public.content_item",
        "public.page_views",
        "storage.objects",
    ];
    let mut extra = Vec::new();
    for t in tables {
        extra.extend(["--table", t]);
    }
    restore(dir.path(), &store, &target, &extra).ok();
    // The inheritance parent alone: its children (article, video) were not asked for.
    let own_rows = "select count(*)::text || ' ' || md5(coalesce(string_agg(t::text, ',' \
                    order by t::text collate \"C\"), '')) from only public.content_item t";
    assert_eq!(text(&target, own_rows).await, text(&src, own_rows).await);
    let got = tk::fingerprint(&target, &pg_dump()).await;
    for t in [
        "\"public\".\"page_views_2024\"",
        "\"public\".\"page_views_2025\"",
        "\"storage\".\"objects\"",
    ] {
        assert_eq!(got.tables.get(t), want.tables.get(t), "{t}");
    }
    let objects_policies = "select string_agg(policyname, ',' order by policyname) \
                            from pg_policies where schemaname = 'storage' and tablename = 'objects'";
    assert_eq!(
        text(&target, objects_policies).await,
        text(&src, objects_policies).await
    );
}
