//! The fixture and the fidelity oracle: equal for faithful copies, different for any change.

use std::process::Command;

use pgdrill_testkit::{cluster, connect, fingerprint, load_fixture, pg_bin, pg_bin_exact, Cluster};

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pg_dump -Fc from `src` and pg_restore into a new database `db` of `dst`, both with `bin_major`
/// tools; the password goes through PGPASSWORD.
async fn copy(src: &Cluster, dst: &Cluster, db: &str, bin_major: u32) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("dump.pgc");
    let admin = connect(&dst.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create db");
    run(Command::new(pg_bin_exact("pg_dump", bin_major))
        .args([
            "-Fc",
            "-Z0",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-p")
        .arg(src.port().to_string())
        .arg("-f")
        .arg(&file)
        .env("PGPASSWORD", src.password()));
    run(Command::new(pg_bin_exact("pg_restore", bin_major))
        .args([
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "-h",
            "127.0.0.1",
        ])
        .args(["-U", "postgres", "-d", db, "-p"])
        .arg(dst.port().to_string())
        .arg(&file)
        .env("PGPASSWORD", dst.password()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_fingerprint_is_stable_and_sensitive() {
    let c = cluster(Some(15));
    let url = c.url("postgres");
    let t0 = std::time::Instant::now();
    load_fixture(&url).await;
    let load_time = t0.elapsed();
    eprintln!("fixture loaded in {load_time:?}");
    assert!(load_time.as_secs_f64() < 2.0, "fixture took {load_time:?}");

    let pg_dump = pg_bin("pg_dump", 15);
    let a = fingerprint(&url, &pg_dump).await;
    let b = fingerprint(&url, &pg_dump).await;
    a.assert_same(&b);

    // What the fixture promises.
    assert_eq!(a.tables["\"app\".\"customers\""].rows, 3000);
    assert_eq!(a.tables["\"app\".\"empty_table\""].rows, 0);
    assert_eq!(a.tables["\"app\".\"settings\""].rows, 1);
    assert_eq!(a.tables["\"public\".\"Order Items\""].rows, 1000);
    assert_eq!(a.tables["\"audit\".\"events\""].rows, 500);
    assert_eq!(a.large_objects.len(), 2);
    assert!(a.sequences["\"app\".\"invoice_number_seq\""].is_called);
    assert!(!a.sequences["\"app\".\"unused_seq\""].is_called);
    assert!(
        a.sequences.contains_key("\"app\".\"orders_id_seq\""),
        "{:?}",
        a.sequences
    );
    let schema = a.schema.join("\n");
    for needle in [
        "CREATE VIEW app.customer_totals",
        "CREATE FUNCTION audit.log_change()",
        "CREATE TRIGGER orders_audit",
        "GENERATED ALWAYS AS IDENTITY",
        "CREATE UNIQUE INDEX customers_email_idx",
        "FOREIGN KEY (customer_id) REFERENCES app.customers(id)",
        "CREATE TABLE public.\"Order Items\"",
    ] {
        assert!(schema.contains(needle), "schema lacks {needle}");
    }
    assert!(
        !a.schema
            .iter()
            .any(|l| l.starts_with("SET ") || l.starts_with("--")),
        "noise kept"
    );

    let client = connect(&url).await;
    // A changed row.
    client
        .batch_execute("UPDATE app.customers SET notes = notes || 'x' WHERE id = 42")
        .await
        .expect("update");
    let changed = fingerprint(&url, &pg_dump).await;
    let d = a.diff(&changed);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].contains("app\".\"customers"), "{d:?}");
    assert!(std::panic::catch_unwind(|| a.assert_same(&changed)).is_err());
    client
        .batch_execute("UPDATE app.customers SET notes = left(notes, -1) WHERE id = 42")
        .await
        .expect("revert");
    a.assert_same(&fingerprint(&url, &pg_dump).await);

    // A sequence, a large object, the schema.
    client
        .batch_execute(
            "SELECT nextval('app.unused_seq'); \
             SELECT lo_put(424242, 0, 'X'::bytea); \
             CREATE INDEX extra_idx ON app.settings (value)",
        )
        .await
        .expect("changes");
    let d = a.diff(&fingerprint(&url, &pg_dump).await).join("\n");
    assert!(d.contains("sequence \"app\".\"unused_seq\""), "{d}");
    assert!(d.contains("large object 424242"), "{d}");
    assert!(d.contains("+ CREATE INDEX extra_idx"), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_and_restore_round_trip_is_faithful() {
    let src = cluster(Some(15));
    load_fixture(&src.url("postgres")).await;

    // Same major, with PostgreSQL 15's own tools.
    let dst = cluster(Some(15));
    copy(&src, &dst, "restored", 15).await;
    let pg_dump15 = pg_bin_exact("pg_dump", 15);
    let want = fingerprint(&src.url("postgres"), &pg_dump15).await;
    let got = fingerprint(&dst.url("restored"), &pg_dump15).await;
    want.assert_same(&got);

    // Upgrade path of a drill: 15 -> 18 with PostgreSQL 18's tools (compared with pg_dump 18).
    let dst18 = cluster(Some(18));
    copy(&src, &dst18, "restored", 18).await;
    let pg_dump18 = pg_bin_exact("pg_dump", 18);
    let want = fingerprint(&src.url("postgres"), &pg_dump18).await;
    let got = fingerprint(&dst18.url("restored"), &pg_dump18).await;
    want.assert_same(&got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loads_fingerprint_the_same() {
    let c = cluster(None);
    let admin = connect(&c.url("postgres")).await;
    for db in ["one", "two"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create db");
    }
    load_fixture(&c.url("one")).await;
    load_fixture(&c.url("two")).await;
    let pg_dump = pg_bin("pg_dump", c.version().major);
    fingerprint(&c.url("one"), &pg_dump)
        .await
        .assert_same(&fingerprint(&c.url("two"), &pg_dump).await);
}
