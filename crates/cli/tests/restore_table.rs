//! `pgdrill restore --table`: only the named tables (with their partitions, indexes,
//! constraints, owned sequences, policies, comments and grants) come back, read from the
//! store by ranged reads of their frames only; foreign keys to tables not restored are
//! listed; never over an existing table; into the live database only under a new schema.
//! One source cluster for the whole file; a folder store and an encrypted S3 (moto) store.

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use restore_util::*;

/// A shop schema beside four large, dull tables (about 64 MB of raw dump: eight frames).
const SHOP_SQL: &str = "
create role shop_reader;
create schema app;
create table app.customers (id int primary key, name text not null);
insert into app.customers select g, 'customer ' || g from generate_series(1, 1000) g;
create function app.touch() returns trigger language plpgsql as $$ begin new.note := coalesce(new.note, 'touched'); return new; end $$;
create table app.orders (id serial primary key, customer_id int not null references app.customers(id), note text, amount int not null);
create index orders_amount on app.orders (amount);
create trigger orders_touch before insert on app.orders for each row execute function app.touch();
insert into app.orders (customer_id, note, amount) select 1 + g % 1000, 'order ' || g, g % 977 from generate_series(1, 20000) g;
alter table app.orders enable row level security;
create policy orders_small on app.orders for select to shop_reader using (amount < 500);
comment on table app.orders is 'the orders';
grant select on app.orders to shop_reader;
create table app.events (id int not null, what text) partition by range (id);
create table app.events_low partition of app.events for values from (0) to (5000);
create table app.events_high partition of app.events for values from (5000) to (100000);
insert into app.events select g, 'event ' || g from generate_series(1, 9000) g;
create table app.nopk (a int, b text);
insert into app.nopk select g % 100, 'dup ' || (g % 100) from generate_series(1, 3000) g;
create table public.big1 (id int primary key, t text);
create table public.big2 (id int primary key, t text);
create table public.big3 (id int primary key, t text);
create table public.big4 (id int primary key, t text);
insert into public.big1 select g, repeat(md5(g::text), 4) from generate_series(1, 120000) g;
insert into public.big2 select g, repeat(md5((g * 3)::text), 4) from generate_series(1, 120000) g;
insert into public.big3 select g, repeat(md5((g * 5)::text), 4) from generate_series(1, 120000) g;
insert into public.big4 select g, repeat(md5((g * 7)::text), 4) from generate_series(1, 120000) g;
";

async fn hash(url: &str, table: &str, order: &str) -> String {
    scalar(
        url,
        &format!(
            "select md5(coalesce(string_agg(t::text, ',' order by {order}), '')) from {table} t"
        ),
    )
    .await
}

async fn count(url: &str, sql: &str) -> i64 {
    scalar(url, &format!("select ({sql})::text"))
        .await
        .parse()
        .expect("count")
}

fn skipped(j: &serde_json::Value) -> Vec<String> {
    j["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The read figure: the frames holding the TOC and the tables' data (plus the index and at
/// most a little read-ahead past them), at most `max_frames` of them, and at most `percent`
/// of the stored dump.
fn assert_read_little(j: &serde_json::Value, max_frames: u64, percent: u64) {
    let read = j["bytes_read"].as_u64().expect("bytes_read");
    let dump = j["dump_bytes"].as_u64().expect("dump_bytes");
    let needed = j["frames_bytes"].as_u64().expect("frames_bytes");
    let (frames, total) = (
        j["frames_read"].as_u64().expect("frames"),
        j["frames_total"].as_u64().expect("frames_total"),
    );
    assert!(total >= 6, "the test dump should span several frames: {j}");
    assert!(frames >= 1 && frames <= max_frames, "{j}");
    assert!(
        read >= needed && read <= needed + (3 << 19),
        "read {read}, frames {needed}: {j}"
    );
    assert!(read * 100 < dump * percent, "read {read} of {dump}: {j}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_come_back_alone_from_a_folder_and_from_encrypted_s3() {
    let cluster = tk::cluster(None);
    let src = empty_db(&cluster, "shop").await;
    tk::connect(&src)
        .await
        .batch_execute(SHOP_SQL)
        .await
        .expect("shop");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    backup(dir.path(), &store, &src, &[]);

    // The plan: nothing changed.
    let t1 = cluster.url("t1");
    let out = restore(
        dir.path(),
        &store,
        &t1,
        &["--table", "app.orders", "--dry-run"],
    );
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("restore-table.schema.json", &j);
    assert_eq!(j["dry_run"], true, "{j}");
    assert_eq!(j["database"], "create", "{j}");
    let entries = j["entries"].to_string();
    for e in [
        "TABLE app orders",
        "TABLE DATA app orders",
        "POLICY app orders orders_small",
        "INDEX app orders_amount",
        "SEQUENCE SET app orders_id_seq",
    ] {
        assert!(entries.contains(e), "{e}: {j}");
    }
    assert!(!entries.contains("customers"), "{j}");
    assert!(!db_exists(&cluster, "t1").await);

    // Orders and the partitioned events into a new database.
    let out = restore(
        dir.path(),
        &store,
        &t1,
        &["--table", "app.orders", "--table", "app.events"],
    );
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("restore-table.schema.json", &j);
    assert_read_little(&j, 2, 25);
    assert_eq!(j["created_database"], true, "{j}");
    let sk = skipped(&j);
    assert!(
        sk.iter().any(|s| s.contains("FK CONSTRAINT")
            && s.contains("orders_customer_id_fkey")
            && s.contains("customers")),
        "{sk:?}"
    );
    for (table, order) in [
        ("app.orders", "id"),
        ("app.events", "id"),
        ("app.events_low", "id"),
    ] {
        assert_eq!(
            hash(&t1, table, order).await,
            hash(&src, table, order).await,
            "{table}"
        );
    }
    assert_eq!(
        count(&t1, "select count(*) from app.events_high").await,
        4001
    );
    let probe = "select count(*) from pg_tables where schemaname = 'app' and tablename in ('customers', 'nopk')";
    assert_eq!(count(&t1, probe).await, 0, "only the named tables");
    assert_eq!(
        count(
            &t1,
            "select count(*) from pg_tables where tablename like 'big%'"
        )
        .await,
        0
    );
    let meta = "select (select count(*) from pg_policies where tablename = 'orders') * 1000 \
        + (select count(*) from pg_indexes where tablename = 'orders') * 100 \
        + (select count(*) from pg_trigger where tgname = 'orders_touch') * 10 \
        + (select count(*) from pg_class where relname = 'orders' and relrowsecurity and obj_description(oid) = 'the orders')";
    assert_eq!(count(&t1, meta).await, count(&src, meta).await);
    assert_eq!(count(&t1, meta).await, 1211);
    assert_eq!(
        count(&t1, "select count(*) from information_schema.role_table_grants where grantee = 'shop_reader'").await,
        1
    );
    let seq = "select last_value from app.orders_id_seq";
    assert_eq!(count(&t1, seq).await, count(&src, seq).await);

    // Never over an existing table; never into the source without a new schema.
    restore(dir.path(), &store, &t1, &["--table", "app.orders"]).code(5);
    let out = restore(dir.path(), &store, &src, &["--table", "app.nopk"]);
    out.code(5);
    assert!(out.stderr.contains("--into-schema"), "{}", out.stderr);

    // A protected target: refused without --into-schema (not even created), else beside.
    let prot = empty_db(&cluster, "prot").await;
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).expect("mkdir");
    std::fs::write(
        cfg.join("pgdrill.toml"),
        format!(
            "protected_targets = [\"postgres://x@127.0.0.1:{}/prot\"]\n",
            cluster.port()
        ),
    )
    .expect("config");
    let out = restore(&cfg, &store, &prot, &["--table", "app.nopk"]);
    out.code(5);
    assert!(out.stderr.contains("protected"), "{}", out.stderr);
    assert_eq!(
        count(
            &prot,
            "select count(*) from pg_tables where schemaname = 'app'"
        )
        .await,
        0
    );
    restore(
        &cfg,
        &store,
        &prot,
        &["--table", "app.nopk", "--into-schema", "side"],
    )
    .ok();
    assert_eq!(count(&prot, "select count(*) from side.nopk").await, 3000);

    // Another server without the grantee role: the grant is left out and listed.
    let other = tk::cluster(None);
    let t3 = other.url("t3");
    let out = restore(dir.path(), &store, &t3, &["--table", "app.orders"]);
    out.ok();
    let sk = skipped(&out.json());
    assert!(
        sk.iter()
            .any(|s| s.starts_with("ACL") && s.contains("shop_reader")),
        "{sk:?}"
    );
    assert!(
        sk.iter()
            .any(|s| s.starts_with("POLICY") && s.contains("shop_reader")),
        "{sk:?}"
    );
    assert_eq!(
        hash(&t3, "app.orders", "id").await,
        hash(&src, "app.orders", "id").await
    );

    // Beside the live tables, in a new schema; the schema must be new. The plan first.
    let out = restore(
        dir.path(),
        &store,
        &src,
        &[
            "--table",
            "app.orders",
            "--into-schema",
            "restored",
            "--dry-run",
        ],
    );
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("restore-table.schema.json", &j);
    assert_eq!(
        j["restored_as"],
        serde_json::json!(["restored.orders"]),
        "{j}"
    );
    assert!(j["steps"].to_string().contains("scratch database"), "{j}");
    assert!(
        skipped(&j)
            .iter()
            .any(|s| s.contains("orders_customer_id_fkey")),
        "{j}"
    );
    assert_eq!(
        count(
            &src,
            "select count(*) from pg_namespace where nspname = 'restored'"
        )
        .await,
        0,
        "the plan changes nothing"
    );
    let out = restore(
        dir.path(),
        &store,
        &src,
        &[
            "--table",
            "app.orders",
            "--table",
            "app.nopk",
            "--into-schema",
            "restored",
        ],
    );
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("restore-table.schema.json", &j);
    assert_eq!(j["into_schema"], "restored", "{j}");
    assert_eq!(
        hash(&src, "restored.orders", "id").await,
        hash(&src, "app.orders", "id").await
    );
    assert_eq!(
        hash(&src, "restored.nopk", "a, b").await,
        hash(&src, "app.nopk", "a, b").await
    );
    assert_eq!(
        count(
            &src,
            "select count(*) from pg_policies where schemaname = 'restored'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &src,
            "select count(*) from pg_indexes where schemaname = 'restored'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &src,
            "select count(*) from pg_database where datname like 'pgdrill_table_%'"
        )
        .await,
        0,
        "the scratch database is dropped"
    );
    let out = restore(
        dir.path(),
        &store,
        &src,
        &["--table", "app.nopk", "--into-schema", "restored"],
    );
    out.code(5);

    // Encrypted, from S3, chosen by time: the table without a primary key into a new database.
    let s3 = tk::S3Server::start();
    s3.create_bucket("backups");
    let env_owned = s3.env();
    let mut env = env_refs(&env_owned);
    env.push(("PASS", "correct horse battery staple"));
    env.push(("PGDRILL_STORE", "s3://backups/pg"));
    let mut benv = env.clone();
    benv.push(("PGDRILL_SOURCE_URL", &src));
    run(
        dir.path(),
        &["--json", "backup", "--passphrase-env", "PASS"],
        &benv,
    )
    .ok();
    let t2 = cluster.url("t2");
    let out = run(
        dir.path(),
        &[
            "--json",
            "restore",
            "--at",
            "2999-01-01T00:00:00Z",
            "--passphrase-env",
            "PASS",
            "--table",
            "app.nopk",
            "--table",
            "public.big3",
            "--target",
            &t2,
        ],
        &env,
    );
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("restore-table.schema.json", &j);
    // The head's frame, and the two or three frames of big3 (a quarter of the data).
    assert_read_little(&j, 5, 65);
    assert_eq!(
        hash(&t2, "app.nopk", "a, b").await,
        hash(&src, "app.nopk", "a, b").await
    );
    assert_eq!(
        hash(&t2, "public.big3", "id").await,
        hash(&src, "public.big3", "id").await
    );
    let early = run(
        dir.path(),
        &[
            "--json",
            "restore",
            "--at",
            "2001-01-01T00:00:00Z",
            "--passphrase-env",
            "PASS",
            "--table",
            "app.nopk",
            "--target",
            &t2,
        ],
        &env,
    );
    early.code(2);
    assert!(early.stderr.contains("at or before"), "{}", early.stderr);
    let _ = store_s;
}

/// `app.orders`' columns as the catalog has them, for comparing a restored table's schema.
async fn columns(url: &str, schema: &str) -> String {
    scalar(
        url,
        &format!(
            "select string_agg(column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, ''), ', ' order by ordinal_position) \
             from information_schema.columns where table_schema = '{schema}' and table_name = 'orders'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_come_back_alone_from_a_parallel_backup() {
    let cluster = tk::cluster(None);
    let src = empty_db(&cluster, "shop").await;
    // The shop without the four large tables, and one large table beside it.
    let shop = SHOP_SQL
        .split("create table public.big1")
        .next()
        .expect("shop sql");
    tk::connect(&src)
        .await
        .batch_execute(&format!(
            "{shop} create table public.big1 (id int primary key, t text); \
             insert into public.big1 select g, repeat(md5(g::text), 4) from generate_series(1, 60000) g;"
        ))
        .await
        .expect("shop");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store_s = store.display().to_string();
    let out = run(
        dir.path(),
        &["--json", "backup", "--store", &store_s, "--jobs", "2"],
        &[("PGDRILL_SOURCE_URL", &src)],
    );
    out.ok();
    let stored = out.json()["backups"][0]["stored_bytes"]
        .as_u64()
        .expect("stored_bytes");

    // The plan: toc.dat and the orders' data object; nothing changed.
    let t1 = cluster.url("t1");
    let out = restore(
        dir.path(),
        &store,
        &t1,
        &["--table", "app.orders", "--dry-run"],
    );
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("restore-table.schema.json", &j);
    assert_eq!(
        (j["frames"].as_u64(), j["database"].as_str()),
        (Some(2), Some("create")),
        "{j}"
    );
    assert!(j["steps"].to_string().contains("toc.dat"), "{j}");
    let entries = j["entries"].to_string();
    for e in [
        "TABLE DATA app orders",
        "POLICY app orders orders_small",
        "INDEX app orders_amount",
    ] {
        assert!(entries.contains(e), "{e}: {j}");
    }
    assert!(!db_exists(&cluster, "t1").await);

    // Orders and the partitioned events into a new database: only their objects are read.
    let out = restore(
        dir.path(),
        &store,
        &t1,
        &["--table", "app.orders", "--table", "app.events"],
    );
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("restore-table.schema.json", &j);
    let read = j["bytes_read"].as_u64().expect("bytes_read");
    assert_eq!(j["dump_bytes"].as_u64(), Some(stored), "{j}");
    assert!(
        read > 0 && read * 5 < stored,
        "read {read} of {stored}: {j}"
    );
    assert_eq!(j["frames_bytes"].as_u64(), Some(read), "{j}");
    // toc.dat, orders, and the two partitions' data (the parent has none).
    assert_eq!(j["frames_read"].as_u64(), Some(4), "{j}");
    assert!(j["frames_total"].as_u64().unwrap_or(0) > 6, "{j}");
    for (table, order) in [
        ("app.orders", "id"),
        ("app.events", "id"),
        ("app.events_low", "id"),
        ("app.events_high", "id"),
    ] {
        assert_eq!(
            hash(&t1, table, order).await,
            hash(&src, table, order).await,
            "{table}"
        );
    }
    assert_eq!(columns(&t1, "app").await, columns(&src, "app").await);
    let meta = "select (select count(*) from pg_policies where tablename = 'orders') * 1000 \
        + (select count(*) from pg_indexes where tablename = 'orders') * 100 \
        + (select count(*) from pg_trigger where tgname = 'orders_touch') * 10 \
        + (select count(*) from pg_class where relname = 'orders' and relrowsecurity and obj_description(oid) = 'the orders')";
    assert_eq!(count(&t1, meta).await, 1211);
    let seq = "select last_value from app.orders_id_seq";
    assert_eq!(count(&t1, seq).await, count(&src, seq).await);
    assert!(
        skipped(&j)
            .iter()
            .any(|s| s.contains("orders_customer_id_fkey")),
        "{j}"
    );
    assert_eq!(
        count(
            &t1,
            "select count(*) from pg_tables where tablename in ('customers', 'nopk', 'big1')"
        )
        .await,
        0,
        "only the named tables"
    );

    // Beside the live tables, in a new schema, chosen by time.
    let out = run(
        dir.path(),
        &[
            "--json",
            "restore",
            "--store",
            &store_s,
            "--at",
            "2999-01-01T00:00:00Z",
            "--table",
            "app.orders",
            "--into-schema",
            "restored",
            "--target",
            &src,
        ],
        &[],
    );
    out.ok();
    let j = out.json();
    tk::schema::assert_valid("restore-table.schema.json", &j);
    assert_eq!(j["into_schema"], "restored", "{j}");
    assert!(
        j["bytes_read"].as_u64().unwrap_or(u64::MAX) * 5 < stored,
        "{j}"
    );
    assert_eq!(
        hash(&src, "restored.orders", "id").await,
        hash(&src, "app.orders", "id").await
    );
    let restored_meta =
        "select (select count(*) from pg_policies where schemaname = 'restored') * 10 \
        + (select count(*) from pg_indexes where schemaname = 'restored')";
    assert_eq!(count(&src, restored_meta).await, 12);
    assert_eq!(
        columns(&src, "restored").await,
        columns(&src, "app")
            .await
            .replace("app.orders_id_seq", "restored.orders_id_seq")
    );
    assert_eq!(
        count(
            &src,
            "select count(*) from pg_database where datname like 'pgdrill_table_%'"
        )
        .await,
        0,
        "the scratch database is dropped"
    );
}
