//! Roles and tablespaces travel as globals.sql.zst[.age] when `globals = true`, and come
//! back only with `restore --globals` (off by default, as seed 000 asks); without it, the roles
//! the dump names are created as NOLOGIN stand-ins.

mod common;
use common::*;
use pgdrill_testkit as tk;

#[tokio::test(flavor = "multi_thread")]
async fn globals_are_backed_up_and_restored_only_on_request() {
    let src = source(None).await;
    let c = tk::connect(&src.url).await;
    c.batch_execute(
        "create role app_reader nologin; create role app_writer login password 'CANARY_ROLE_PW' in role app_reader; \
         alter table app.customers enable row level security; \
         create policy readers on app.customers for select to app_reader using (true);",
    )
    .await
    .expect("roles");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[encryption]\npassphrase_env = \"PASS\"\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\nglobals = true\n",
            store.display()
        ),
    )
    .expect("config");
    let env = [("SRC", src.url.as_str()), ("PASS", "a passphrase")];
    let out = run(dir.path(), &["--json", "backup"], &env);
    out.ok();
    let show = run(dir.path(), &["--json", "show"], &env);
    let objects: Vec<String> = show.json()["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            format!(
                "{}:{}",
                o["kind"].as_str().unwrap_or(""),
                o["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        objects,
        vec![
            "dump:dump.pgc.zst.age",
            "index:dump.index.json.zst.age",
            "globals:globals.sql.zst.age"
        ]
    );
    let sums = std::fs::read_to_string(
        std::fs::read_dir(store.join("app/backups"))
            .expect("dir")
            .flatten()
            .next()
            .expect("backup")
            .path()
            .join("SHA256SUMS"),
    )
    .expect("sums");
    assert_eq!(sums.lines().count(), 3);
    run(dir.path(), &["verify"], &env).ok();

    // A fresh server without those roles: without --globals the policy's role is created as a
    // NOLOGIN stand-in (named by the dump itself); --globals brings the real definitions.
    let other = tk::cluster(None);
    let plain = other.url("plain");
    let out = run(
        dir.path(),
        &["--json", "restore", "latest", "--target", &plain],
        &env,
    );
    out.ok();
    assert_eq!(
        out.json()["created_roles"],
        serde_json::json!(["app_reader"])
    );
    let login: bool = tk::connect(&plain)
        .await
        .query_one(
            "select rolcanlogin from pg_roles where rolname = 'app_reader'",
            &[],
        )
        .await
        .expect("stand-in role")
        .get(0);
    assert!(!login, "a stand-in role cannot log in");
    let with = other.url("with_globals");
    run(
        dir.path(),
        &["restore", "latest", "--target", &with, "--globals"],
        &env,
    )
    .ok();
    let t = tk::connect(&with).await;
    let member: bool = t
        .query_one(
            "select pg_has_role('app_writer', 'app_reader', 'member')",
            &[],
        )
        .await
        .expect("roles restored")
        .get(0);
    assert!(member, "role membership restored");
    let policies: i64 = t
        .query_one(
            "select count(*) from pg_policies where policyname = 'readers'",
            &[],
        )
        .await
        .expect("policy")
        .get(0);
    assert_eq!(policies, 1);
    // No password hash travels with globals (pg_dumpall --no-role-passwords).
    let pw: Option<String> = t
        .query_one(
            "select rolpassword from pg_authid where rolname = 'app_writer'",
            &[],
        )
        .await
        .expect("authid")
        .get(0);
    assert_eq!(pw, None);
}
