//! The examples under examples/ (issue 4, point 7): each example's schema.sql is loaded
//! into a source, backed up, and drilled with the example's own pgdrill.toml → PASS; a broken
//! copy of the data → FAIL with the check that catches it.

mod common;
mod drill_support;
use common::*;
use drill_support::*;
use std::path::{Path, PathBuf};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// Copies an example dir (config, schema, policy file) into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read example").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// Drills the example `name` (schema.sql + `breakage` SQL applied to the source before the
/// backup) with its pgdrill.toml; `env` names the source as the config expects.
async fn drill_example(
    name: &str,
    breakage: &str,
    env: &dyn Fn(&Bench) -> Vec<(String, String)>,
) -> Out {
    let schema = std::fs::read_to_string(example(name).join("schema.sql")).expect("schema.sql");
    let b = Bench::new(&format!("{schema}\n{breakage}")).await;
    copy_dir(&example(name), b.path());
    let env_owned = env(&b);
    let env = env_refs(&env_owned);
    let store = b.store_s();
    run(b.path(), &["backup", "--store", &store], &env).ok();
    let out = run(b.path(), &["--json", "drill", "--store", &store], &env);
    assert_valid_result(&out.json());
    out
}

fn supabase_r2_prisma_env(b: &Bench) -> Vec<(String, String)> {
    [
        ("PROD_DIRECT_URL", b.url.clone()),
        ("STAGING_DIRECT_URL", b.server_url()),
        ("R2_ACCOUNT_ID", "0123456789abcdef".into()),
        ("R2_BUCKET", "backups".into()),
        ("R2_ACCESS_KEY_ID", "unused".into()),
        ("R2_SECRET_ACCESS_KEY", "unused".into()),
        ("BACKUP_ENCRYPTION_PASSPHRASE", "example passphrase".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn supabase_r2_prisma_example_passes_and_fails_without_rls_on_workflow_steps() {
    let out = drill_example("supabase-r2-prisma", "", &supabase_r2_prisma_env).await;
    out.code(0);
    let r = out.json();
    assert_eq!(r["verdict"], "pass", "{r:#}");
    assert_eq!(
        r["policy"]["rto_minutes"], 240,
        "from ops/ops_backup_policy.json"
    );
    assert_eq!(r["policy"]["monthly_restore_day"], "first_sunday");
    assert_eq!(r["checks"].as_array().map(Vec::len), Some(6));

    let broken = drill_example(
        "supabase-r2-prisma",
        r#"alter table "WorkflowStep" disable row level security;
           drop policy workflow_step_org_isolation on "WorkflowStep";"#,
        &supabase_r2_prisma_env,
    )
    .await;
    broken.code(1);
    let r = broken.json();
    assert_eq!(r["verdict"], "fail");
    assert_check(
        &r,
        "RLS enabled on org-scoped tables",
        false,
        "not enabled: WorkflowStep",
    );
    assert_check(
        &r,
        "pg_policies present on org-scoped tables",
        false,
        "no policy: WorkflowStep",
    );
    assert_check(&r, "Prisma migrations applied", true, "migrations applied");
}

fn sql_validation_http_smoke_env(http: &str) -> impl Fn(&Bench) -> Vec<(String, String)> + '_ {
    move |b: &Bench| {
        [
            ("SOURCE_DB_URL", b.url.clone()),
            ("TARGET_DB_URL", b.server_url()),
            ("BACKUP_DIR", b.store_s()),
            ("TARGET_API_URL", http.to_string()),
            ("API_BEARER_TOKEN", "example-token".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_validation_http_smoke_example_passes_and_fails_on_invalid_progress() {
    let api = HttpServer::start(&[(200, "ok")]);
    let out = drill_example(
        "sql-validation-http-smoke",
        "",
        &sql_validation_http_smoke_env(&api.base),
    )
    .await;
    out.code(0);
    let r = out.json();
    assert_eq!(r["verdict"], "pass", "{r:#}");
    assert_check(&r, "invalid_progress = 0", true, "0");
    assert_check(&r, "app health endpoint returns ok", true, "HTTP 200: ok");
    assert_eq!(
        api.header(0, "authorization").as_deref(),
        Some("Bearer example-token")
    );
    assert_eq!(r["rpo"]["target_minutes"], 1440);
    assert_eq!(r["rto"]["target_minutes"], 120);

    let api = HttpServer::start(&[(200, "ok")]);
    let broken = drill_example(
        "sql-validation-http-smoke",
        "update lms_subsection_progress set progress_percent = 140 where id = 1;",
        &sql_validation_http_smoke_env(&api.base),
    )
    .await;
    broken.code(1);
    let r = broken.json();
    assert_eq!(r["verdict"], "fail");
    assert_check(&r, "invalid_progress = 0", false, "1");
    assert_check(
        &r,
        "critical tables have their expected counts",
        true,
        "profiles",
    );
}
