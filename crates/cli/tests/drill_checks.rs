//! Drill checks (issue 4): every kind passes on a good fixture and fails, with its reason, on
//! a broken one; the exit code (0 pass / 1 fail), the `--json` result's per-check
//! `passed`/`actual` and the verdict are asserted. A bad check config is refused (exit 2)
//! before anything is restored.
//!
//! One source cluster per test function; the broken cases each run their own drill (one
//! check, `row_counts = false`) on the source server as `--target`, so that each failure is
//! shown to fail the verdict by itself and no throwaway cluster is started for it.

mod common;
mod drill_support;
use drill_support::*;
use serde_json::Value;

const GOOD_CHECKS: &str = r#"
[database.drill]

[[database.drill.check]]
name = "key tables are not empty"
kind = "tables_nonempty"
tables = ["Organization", "public.Event"]

[[database.drill.check]]
name = "prisma migrations applied"
kind = "migrations"
framework = "prisma"

[[database.drill.check]]
name = "migrations table by name"
kind = "migrations"
table = "public._prisma_migrations"

[[database.drill.check]]
name = "rls enabled"
kind = "rls_enabled"
tables = ["Organization", "Event", "Workflow"]

[[database.drill.check]]
name = "policies present"
kind = "policies_present"
tables = ["Organization", "Event"]

[[database.drill.check]]
name = "extensions installed"
kind = "extensions"
extensions = ["citext", "plpgsql"]

[[database.drill.check]]
name = "org-scoped join"
kind = "sql"
query = 'select count(*) from "Event" e join "Organization" o on o.id = e.org_id'
expect = "> 0"

[[database.drill.check]]
name = "no absurd stock"
kind = "sql"
query = "select count(*) from inventory where qty > 100"
expect = 0

[[database.drill.check]]
name = "positive stock rows"
kind = "sql"
query = "select sku, qty from inventory where qty > 0"
expect = [["e", 10], ["a", 5]]

[[database.drill.check]]
name = "health endpoint"
kind = "http"
url = "${API_URL}/health"
expect_body = "ok"
bearer_token_env = "API_TOKEN"

[[database.drill.check]]
name = "psql reads a row"
kind = "command"
run = '''test "$(/usr/lib/postgresql/15/bin/psql "$DATABASE_URL" -XtAc 'select name from "Organization" where id = 2')" = globex'''
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_check_kind_passes_on_the_good_fixture() {
    let b = Bench::new(CHECKS_SQL).await;
    b.config("", GOOD_CHECKS);
    b.backup();
    let token = "tok-9c1e-bearer-canary";
    let http = HttpServer::start(&[(200, "ok")]);
    let out = b.drill(&[], &[("API_URL", &http.base), ("API_TOKEN", token)]);
    out.code(0);
    let r = out.json();
    assert_eq!(r["verdict"], "pass", "{r:#}");
    assert_eq!(r["target"]["kind"], "ephemeral");
    let checks = r["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 12, "row_counts first, then the 11 configured");
    assert_eq!(checks[0]["kind"], "row_counts");
    for c in checks {
        assert_eq!(c["passed"], true, "{c:#}");
    }
    assert_check(&r, "key tables are not empty", true, "all non-empty");
    assert_check(
        &r,
        "prisma migrations applied",
        true,
        "2 migrations applied",
    );
    assert_check(&r, "org-scoped join", true, "200");
    assert_check(&r, "health endpoint", true, "HTTP 200: ok");
    assert_check(&r, "psql reads a row", true, "exit status 0");
    assert_check(
        &r,
        "row counts equal the backup's snapshot",
        true,
        "8 tables, 213 rows, all equal",
    );
    // The server saw the bearer token from the environment variable, and it is nowhere else.
    assert_eq!(
        http.header(0, "authorization").as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token));
}

/// (name, the check's TOML, the expected fragment of `actual`).
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "an empty table",
        r#"kind = "tables_nonempty"
tables = ["Organization", "audit_log"]"#,
        "empty: audit_log",
    ),
    (
        "a failed prisma migration",
        r#"kind = "migrations"
framework = "prisma"
table = "broken._prisma_migrations""#,
        "2 migrations, 1 failed or rolled back",
    ),
    (
        "no prisma migration recorded",
        r#"kind = "migrations"
framework = "prisma"
table = "fresh._prisma_migrations""#,
        "no migrations recorded",
    ),
    (
        "no alembic table",
        r#"kind = "migrations"
framework = "alembic""#,
        "table missing",
    ),
    (
        "rls off",
        r#"kind = "rls_enabled"
tables = ["Organization", "audit_log"]"#,
        "not enabled: audit_log",
    ),
    (
        "a missing policy",
        r#"kind = "policies_present"
tables = ["Organization", "Workflow"]"#,
        "no policy: Workflow",
    ),
    (
        "a missing extension",
        r#"kind = "extensions"
extensions = ["citext", "hstore"]"#,
        "missing: hstore",
    ),
    (
        "a false sql assertion",
        r#"kind = "sql"
query = "select count(*) as invalid from inventory where qty < 0"
expect = 0"#,
        "3",
    ),
    (
        "a different set of rows",
        r#"kind = "sql"
query = "select sku, qty from inventory where qty > 0"
expect = [["a", 5], ["e", 11]]"#,
        r#"[["a", "5"], ["e", "10"]]"#,
    ),
    (
        "a failing command",
        r#"kind = "command"
run = "echo 'integration suite: 1 failed' >&2; exit 1""#,
        "exit status 1: integration suite: 1 failed",
    ),
    // The restored database lost a row after the restore: the explicit row_counts check runs
    // after the command that deletes it (configured checks run in order).
    (
        "a row count below the snapshot's",
        r#"kind = "command"
run = '''/usr/lib/postgresql/15/bin/psql "$DATABASE_URL" -Xqc "delete from inventory where sku = 'a'"'''
[[database.drill.check]]
name = "row counts after the delete"
kind = "row_counts""#,
        "public.inventory: 4 restored vs 5 in the backup",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_check_fails_the_drill_with_its_reason() {
    let b = Bench::new(CHECKS_SQL).await;
    b.config("", "");
    b.backup();
    let server = b.server_url();
    for (name, toml, actual) in BROKEN {
        b.config(
            "",
            &format!(
                "[database.drill]\nrow_counts = false\n[[database.drill.check]]\nname = {name:?}\n{toml}\n"
            ),
        );
        let out = b.drill(&["--target", &server], &[]);
        out.code(1);
        let r = out.json();
        assert_eq!(r["verdict"], "fail", "{name}: {r:#}");
        assert!(r["error"].is_null(), "{name}: {r:#}");
        let last = r["checks"]
            .as_array()
            .and_then(|c| c.last())
            .expect("a check");
        assert_eq!(last["passed"], false, "{name}: {last:#}");
        let got = last["actual"].as_str().expect("actual");
        if *name == "a false sql assertion" {
            assert_eq!(got, "3");
        }
        assert!(
            got.contains(actual),
            "{name}: actual {got:?} lacks {actual:?}"
        );
        assert!(
            r["checks"].as_array().expect("checks")[..r["checks"].as_array().expect("c").len() - 1]
                .iter()
                .all(|c| c["passed"] == true),
            "{name}: only the broken check fails: {r:#}"
        );
    }
    assert!(
        b.drill_databases().await.is_empty(),
        "every drill database was dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_checks_fail_on_500_and_retry_until_success() {
    let b = Bench::new(CHECKS_SQL).await;
    let drill = |retries: u32| {
        format!(
            "[database.drill]\nrow_counts = false\n[[database.drill.check]]\nname = \"health\"\nkind = \"http\"\nurl = \"${{API_URL}}/health\"\nexpect_body = \"ok\"\nretries = {retries}\ntimeout_seconds = 5\n"
        )
    };
    b.config("", &drill(0));
    b.backup();
    let server = b.server_url();

    let down = HttpServer::start(&[(500, "upstream exploded")]);
    let out = b.drill(&["--target", &server], &[("API_URL", &down.base)]);
    out.code(1);
    let r = out.json();
    assert_eq!(r["verdict"], "fail");
    assert_check(&r, "health", false, "HTTP 500: upstream exploded");
    assert_eq!(down.requests().len(), 1);
    assert!(down.requests()[0].starts_with("GET /health HTTP/1.1"));

    b.config("", &drill(2));
    let flaky = HttpServer::start(&[(500, "warming up"), (200, "ok")]);
    let out = b.drill(&["--target", &server], &[("API_URL", &flaky.base)]);
    out.code(0);
    let r = out.json();
    assert_eq!(r["verdict"], "pass");
    assert_check(&r, "health", true, "HTTP 200: ok");
    assert_eq!(
        flaky.requests().len(),
        2,
        "one retry after the 500, then stop"
    );
    let log = std::fs::read_to_string(b.store.join(format!(
        "app/drills/{}/drill.log",
        r["drill_id"].as_str().expect("id")
    )))
    .expect("drill.log in the store");
    assert!(
        log.contains("attempt 1: fail (HTTP 500: warming up)"),
        "{log}"
    );
    assert!(log.contains("attempt 2: pass"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn row_counts_fail_when_the_manifest_counts_differ_from_the_restore() {
    let b = Bench::new(CHECKS_SQL).await;
    b.config("", "");
    let id = b.backup();
    // The manifest's counts are the expected side; SHA256SUMS covers the stored objects only,
    // so the dump still restores and only the comparison can notice.
    b.edit_manifest(&id, |m| {
        for t in m["content"]["tables"].as_array_mut().expect("tables") {
            if t["name"] == "Event" {
                t["rows"] = Value::from(201);
            }
        }
    });
    let out = b.drill(&["--target", &b.server_url()], &[]);
    out.code(1);
    let r = out.json();
    assert_eq!(r["verdict"], "fail");
    assert_check(
        &r,
        "row counts equal the backup's snapshot",
        false,
        "public.Event: 200 restored vs 201 in the backup",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_check_config_is_refused_before_anything_is_restored() {
    let b = Bench::new(CHECKS_SQL).await;
    b.config("", "");
    b.backup();
    let shims = Shims::new();
    let bad: &[(&str, &str)] = &[
        ("[[database.drill.check]]\nkind = \"tables_nonempty\"\ntables = []\n", "tables"),
        ("[[database.drill.check]]\nname = \"typo\"\nkind = \"sqll\"\nquery = \"select 1\"\n", "typo"),
        ("[[database.drill.check]]\nname = \"mig\"\nkind = \"migrations\"\nframework = \"liquibase\"\n", "framework"),
        ("[[database.drill.check]]\nname = \"q\"\nkind = \"sql\"\nquery = \"select 1\"\nexpect = { a = 1 }\n", "expect"),
        ("[[database.drill.check]]\nname = \"h\"\nkind = \"http\"\nurl = \"${NOT_SET_ANYWHERE}/health\"\n", "NOT_SET_ANYWHERE"),
        ("[[database.drill.check]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://x/\"\nbearer_token_env = \"NO_TOKEN_VAR\"\n", "NO_TOKEN_VAR"),
        ("[[database.drill.check]]\nname = \"c\"\nkind = \"command\"\nrun = \" \"\n", "run"),
        ("[[database.drill.checks]]\nkind = \"command\"\nrun = \"true\"\n", "checks"),
        ("row_count = false\n", "row_count"),
    ];
    let report = b.path().join("reports");
    let report_s = report.display().to_string();
    for (drill, says) in bad {
        b.config("", &format!("[database.drill]\n{drill}"));
        for target in [None, Some(b.server_url())] {
            let mut args = vec!["--report-dir", &report_s];
            if let Some(t) = &target {
                args.extend(["--target", t.as_str()]);
            }
            let out = b.drill(&args, &[("PGDRILL_PG_BIN", &shims.bin_s())]);
            out.code(2);
            let err = out.json()["error"]["message"]
                .as_str()
                .expect("message")
                .to_string();
            assert!(err.contains(says), "{drill}: {err:?} should name {says:?}");
        }
    }
    assert_eq!(
        shims.calls(),
        Vec::<String>::new(),
        "no initdb, pg_ctl or pg_restore ran"
    );
    assert!(!report.exists(), "no local evidence");
    assert!(
        !b.store.join("app/drills").exists(),
        "no evidence in the store"
    );
    assert!(
        b.drill_databases().await.is_empty(),
        "no database was created on the target"
    );
}
