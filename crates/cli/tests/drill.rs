//! Drills end to end (issue 4): RPO/RTO against the policy, the evidence (four files, locally
//! and in the store, result.json valid against docs/result.schema.json, no secret anywhere),
//! drills on a given server (fresh database, dropped unless kept), a config naming only the
//! store, the drill history and the demo. The check kinds are in drill_checks.rs, the seed
//! examples under examples/ in drill_examples.rs.

mod common;
mod drill_support;
use common::*;
use drill_support::*;
use pgdrill_testkit as tk;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `minutes` before the server's clock, as the RFC 3339 text manifests hold.
async fn minutes_ago(url: &str, minutes: i32) -> String {
    tk::connect(url)
        .await
        .query_one(
            "select to_char((now() - make_interval(mins => $1)) at time zone 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            &[&minutes],
        )
        .await
        .expect("time")
        .get(0)
}

fn r_gap_id(o: &Out) -> String {
    o.json()["drill_id"].as_str().expect("id").to_string()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn rpo_and_rto_are_judged_against_the_policy_and_listed_in_the_history() {
    let b = Bench::new(CHECKS_SQL).await;
    b.config("rpo_minutes = 300\nrto_minutes = 30", "");
    let ids = [b.backup(), b.backup(), b.backup()];
    // Snapshots 300, 60 and 5 minutes old: RPO now is 5 min, the worst gap 240 min. Real
    // backups cannot be hours apart in a test, so the manifests' snapshot times are set.
    for (id, ago) in ids.iter().zip([300, 60, 5]) {
        let t = minutes_ago(&b.url, ago).await;
        b.edit_manifest(id, |m| m["snapshot"]["time"] = Value::from(t));
    }
    let server = b.server_url();

    let met = b.drill(&["--target", &server], &[]);
    met.code(0);
    let r = met.json();
    assert_valid_result(&r);
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["backup"]["id"], ids[2].as_str(), "latest");
    let rpo = &r["rpo"];
    assert!((4.9..6.0).contains(&num(&rpo["minutes"])), "{rpo}");
    assert!(
        (239.9..240.1).contains(&num(&rpo["worst_gap_minutes"])),
        "{rpo}"
    );
    assert_eq!(rpo["target_minutes"], 300);
    assert_eq!(rpo["passed"], true);
    let rto = &r["rto"];
    assert!(
        num(&rto["minutes"]) > 0.0 && num(&rto["minutes"]) < 30.0,
        "{rto}"
    );
    assert_eq!(rto["passed"], true);

    // RPO 60: the current RPO (5 min) is met, the 240-minute gap is not.
    b.config("rpo_minutes = 60\nrto_minutes = 30", "");
    let gap = b.drill(&["--target", &server], &[]);
    gap.code(1);
    let r = gap.json();
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["rpo"]["passed"], false);
    assert_eq!(r["rto"]["passed"], true);
    assert!(r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .all(|c| c["passed"] == true));

    // The report names a missed objective.
    let md = std::fs::read_to_string(
        b.store
            .join(format!("app/drills/{}/report.md", r_gap_id(&gap))),
    )
    .expect("report.md");
    assert!(md.contains("— FAIL") && md.contains("MISSED"), "{md}");

    // RTO 0 is not an objective anyone can meet: refused at config load (exit 2, naming
    // the key), before anything runs. A missed RTO is judged by `Target::evaluate`
    // (`evidence::tests::missed_rto_fails_and_is_reported_missed`).
    b.config("rpo_minutes = 300\nrto_minutes = 0", "");
    let zero = b.drill(&["--target", &server], &[]);
    zero.code(2);
    assert!(zero.stderr.contains("rto_minutes"), "{}", zero.stderr);
    b.config("rpo_minutes = 300\nrto_minutes = 30", "");

    // The history: newest first, with verdict, RTO and RPO.
    let list = b.run(&["--json", "drills"], &[]);
    list.ok();
    let all = list.json();
    assert_eq!(all["schema_version"], 1, "{all}");
    let all = all["drills"].as_array().expect("array");
    let ids_listed: Vec<String> = all
        .iter()
        .map(|d| d["drill_id"].as_str().expect("id").to_string())
        .collect();
    let want: Vec<String> = [&gap, &met]
        .iter()
        .map(|o| o.json()["drill_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids_listed, want, "newest first");
    let verdicts: Vec<&str> = all
        .iter()
        .map(|d| d["verdict"].as_str().expect("v"))
        .collect();
    assert_eq!(verdicts, ["fail", "pass"]);
    for d in all {
        assert!(
            num(&d["rto_seconds"]) > 0.0 && num(&d["rpo_seconds"]) > 4.9 * 60.0,
            "{d}"
        );
        assert_eq!(d["database"], "app");
        assert_eq!(d["backup_id"], ids[2].as_str());
    }
    assert_eq!(all[0]["rpo_passed"], false);
    assert_eq!(all[0]["rto_passed"], true);
    let human = b.run(&["drills"], &[]);
    human.ok();
    assert!(
        human.stdout.contains("VERDICT") && human.stdout.contains("pass"),
        "{}",
        human.stdout
    );
    // RTO and RPO in one unit style: RPO 5 min is "5m00s"-like, RTO seconds "1.2s"-like,
    // never "5.0min" next to "1s".
    assert!(!human.stdout.contains("min"), "{}", human.stdout);
    assert!(
        human.stdout.contains("m0") || human.stdout.contains("m1"),
        "{}",
        human.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_is_complete_valid_in_both_places_and_holds_no_secret() {
    let b = Bench::new(CHECKS_SQL).await;
    let s3 = tk::S3Server::start();
    s3.create_bucket("drills");
    let (src_pw, tgt_pw) = ("src-canary-pw-4d1f0a", "tgt-canary-pw-8b2e5c");
    let (token, s3_secret) = ("bearer-canary-tok-77aa31", "s3-canary-secret-0c3d9e");
    let admin = tk::connect(&b.server_url()).await;
    admin
        .batch_execute(&format!(
            "create role src_user login superuser password '{src_pw}';
             create role drill_user login createdb password '{tgt_pw}';"
        ))
        .await
        .expect("roles");
    let port = b.cluster.port();
    let source = format!("postgresql://src_user:{src_pw}@127.0.0.1:{port}/app");
    let target = format!("postgresql://drill_user:{tgt_pw}@127.0.0.1:{port}/postgres");
    let config = r#"[store]
url = "s3://drills/team"
[policy]
rpo_minutes = 60
rto_minutes = 30
[[database]]
name = "app"
url_env = "APP_DB_URL"
[database.drill]
target_url_env = "STAGING_URL"
[[database.drill.check]]
name = "health"
kind = "http"
url = "${API_URL}/health"
expect_body = "ok"
bearer_token_env = "API_TOKEN"
[[database.drill.check]]
name = "suite dumps its environment"
kind = "command"
run = 'env; echo "DATABASE_URL=$DATABASE_URL PGPASSWORD=$PGPASSWORD"; exit 3'
"#;
    std::fs::write(b.path().join("pgdrill.toml"), config).expect("config");
    let http = HttpServer::start(&[(200, "ok")]);
    let mut env: Vec<(String, String)> = s3.env();
    env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    for (k, v) in [
        ("AWS_SECRET_ACCESS_KEY", s3_secret),
        ("APP_DB_URL", source.as_str()),
        ("STAGING_URL", target.as_str()),
        ("API_URL", http.base.as_str()),
        ("API_TOKEN", token),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    let env = env_refs(&env);

    let backup = run(b.path(), &["--json", "backup"], &env);
    backup.ok();
    let report = b.path().join("evidence");
    let out = run(
        b.path(),
        &[
            "--json",
            "drill",
            "--report-dir",
            &report.display().to_string(),
        ],
        &env,
    );
    out.code(1);
    let r = out.json();
    assert_valid_result(&r);
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["target"]["kind"], "server");
    assert_check(&r, "health", true, "HTTP 200: ok");
    assert_check(
        &r,
        "suite dumps its environment",
        false,
        "exit status 3: DATABASE_URL=postgresql://drill_user:***@",
    );
    assert_eq!(
        http.header(0, "authorization").as_deref(),
        Some(format!("Bearer {token}").as_str())
    );

    // Four files locally, the same four bytes-for-bytes in the store.
    let id = r["drill_id"].as_str().expect("id");
    let local = evidence_in(&report);
    let mut keys: Vec<String> = s3
        .list_keys("drills")
        .into_iter()
        .filter(|k| k.contains("/drills/"))
        .collect();
    keys.sort();
    let want: Vec<String> = EVIDENCE
        .iter()
        .map(|f| format!("team/app/drills/{id}/{f}"))
        .collect();
    assert_eq!(keys, want);
    for (name, text) in &local {
        let (status, stored) = s3
            .request("GET", &format!("/drills/team/app/drills/{id}/{name}"), &[])
            .expect("get");
        assert_eq!(status, 200);
        assert_eq!(
            &stored, text,
            "{name} differs between the report dir and the store"
        );
    }
    let file = |n: &str| &local.iter().find(|(f, _)| f == n).expect("file").1;
    let stored: Value = serde_json::from_str(file("result.json")).expect("result.json");
    assert_valid_result(&stored);
    assert_eq!(stored, r, "result.json is what --json printed");
    let md = file("report.md");
    assert!(
        md.starts_with(&format!("# Restore drill {id} — FAIL")),
        "{md}"
    );
    assert!(
        md.contains("suite dumps its environment") && md.contains("RTO"),
        "{md}"
    );
    let html = file("report.html");
    assert!(html.starts_with("<!doctype html>") && html.contains("FAIL: restore drill of app"));
    assert!(
        !html.contains("src=") && !html.contains("<link"),
        "self-contained"
    );
    let log = file("drill.log");
    for want in [
        "restored in",
        "check \"health\" (http): pass",
        "exited with exit status: 3",
        "attempt 1: pass",
    ] {
        assert!(log.contains(want), "drill.log lacks {want:?}:\n{log}");
    }
    assert!(
        log.contains("DATABASE_URL=postgresql://drill_user:***@"),
        "the env dump is in the log, scrubbed:\n{log}"
    );
    assert!(
        !log.contains("APP_DB_URL="),
        "a user command must not even see the source URL variable:\n{log}"
    );

    // No canary anywhere: evidence, stdout, stderr.
    let canaries = [src_pw, tgt_pw, token, s3_secret];
    for (name, text) in local
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .chain([
            ("stdout", out.stdout.as_str()),
            ("stderr", out.stderr.as_str()),
        ])
        .chain([
            ("backup stdout", backup.stdout.as_str()),
            ("backup stderr", backup.stderr.as_str()),
        ])
    {
        for c in canaries {
            assert!(
                !text.contains(c),
                "{name} contains the secret {c:?}:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_on_a_server_uses_a_fresh_database_dropped_unless_kept() {
    let b = Bench::new(CHECKS_SQL).await;
    let tgt_pw = "tgt-keep-canary-3e9f71";
    tk::connect(&b.server_url())
        .await
        .batch_execute(&format!(
            "create role drill_user login createdb password '{tgt_pw}'"
        ))
        .await
        .expect("role");
    let target = format!(
        "postgresql://drill_user:{tgt_pw}@127.0.0.1:{}/postgres",
        b.cluster.port()
    );
    let checks = |expect: i32| {
        format!(
            "[database.drill]\n[[database.drill.check]]\nname = \"orgs\"\nkind = \"sql\"\nquery = 'select count(*) from \"Organization\"'\nexpect = {expect}\n"
        )
    };
    b.config("", &checks(3));
    b.backup();

    // Plain: created, checked, dropped.
    let out = b.drill(&["--target", &target], &[]);
    out.code(0);
    let r = out.json();
    assert_eq!(r["target"]["kind"], "server");
    assert_eq!(r["target"]["kept"], false);
    let url = r["target"]["url"].as_str().expect("url");
    assert!(
        url.contains("/pgdrill_drill_") && !url.contains(tgt_pw),
        "{url}"
    );
    assert!(
        b.drill_databases().await.is_empty(),
        "dropped after the drill"
    );

    // --keep: kept, its URL printed (without the server's password), data there.
    let kept = b.run(&["drill", "--target", &target, "--keep"], &[]);
    kept.code(0);
    let dbs = b.drill_databases().await;
    assert_eq!(dbs.len(), 1, "{dbs:?}");
    let line = kept
        .stdout
        .lines()
        .find(|l| l.starts_with("kept: "))
        .unwrap_or_else(|| panic!("no kept: line in {}", kept.stdout));
    assert!(line.contains(&format!("/{}", dbs[0])), "{line}");
    assert!(
        !kept.stdout.contains(tgt_pw) && !kept.stderr.contains(tgt_pw),
        "{}",
        kept.stdout
    );
    let c = tk::connect(&b.cluster.url(&dbs[0])).await;
    let n: i64 = c
        .query_one("select count(*) from \"Event\"", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 200);
    drop(c);
    let drop_db = |name: String| {
        let admin = b.server_url();
        async move {
            tk::connect(&admin)
                .await
                .batch_execute(&format!("drop database \"{name}\" with (force)"))
                .await
                .expect("drop");
        }
    };
    drop_db(dbs[0].clone()).await;

    // --keep-on-failure: a passing drill still drops, a failing one keeps.
    b.drill(&["--target", &target, "--keep-on-failure"], &[])
        .code(0);
    assert!(b.drill_databases().await.is_empty());
    b.config("", &checks(4));
    let failed = b.drill(&["--target", &target, "--keep-on-failure"], &[]);
    failed.code(1);
    let j = failed.json();
    assert_eq!(j["kept"].as_array().map(Vec::len), Some(1), "{j:#}");
    assert_eq!(j["drills"][0]["target"]["kept"], true);
    assert_check(&j["drills"][0], "orgs", false, "3");
    let dbs = b.drill_databases().await;
    assert_eq!(dbs.len(), 1);
    drop_db(dbs[0].clone()).await;

    // [database.drill] target_url_env names the server instead of --target.
    b.config(
        "",
        &format!(
            "[database.drill]\ntarget_url_env = \"STAGING_URL\"\n{}",
            &checks(3)["[database.drill]\n".len()..]
        ),
    );
    let out = b.drill(&[], &[("STAGING_URL", &target)]);
    out.code(0);
    assert_eq!(out.json()["target"]["kind"], "server");
    assert!(b.drill_databases().await.is_empty());
    // ...and when that variable is not set, nothing runs (exit 2).
    b.drill(&[], &[]).code(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_naming_only_the_store_drills_on_a_throwaway_cluster_it_removes() {
    let b = Bench::new(CHECKS_SQL).await;
    run(
        b.path(),
        &["backup", "--source", &b.url, "--store", &b.store_s()],
        &[],
    )
    .ok();
    std::fs::write(
        b.path().join("pgdrill.toml"),
        format!("[store]\nurl = \"{}\"\n", b.store_s()),
    )
    .expect("config");
    let shims = Shims::new();
    let report = b.path().join("r");
    let out = run(
        b.path(),
        &[
            "--json",
            "drill",
            "--report-dir",
            &report.display().to_string(),
        ],
        &[("PGDRILL_PG_BIN", &shims.bin_s())],
    );
    out.code(0);
    let r = out.json();
    assert_valid_result(&r);
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["database"], "app");
    assert_eq!(r["target"]["kind"], "ephemeral");
    assert_eq!(r["checks"].as_array().map(Vec::len), Some(1));
    assert_check(
        &r,
        "row counts equal the backup's snapshot",
        true,
        "all equal",
    );
    let ev = evidence_in(&report);
    timeline_accounts_for_the_whole_drill(&r);
    // One backup has no gap between backups: none is claimed (it was "0 s").
    assert!(r["rpo"].get("worst_gap_minutes").is_none(), "{}", r["rpo"]);
    let file = |n: &str| &ev.iter().find(|(f, _)| f == n).expect("file").1;
    assert!(
        file("report.md").contains("| worst gap between backups | n/a (fewer than two backups) |"),
        "{}",
        file("report.md")
    );
    report_html_is_readable(file("report.html"));

    // The throwaway cluster: created by initdb under /tmp/pgdrill-cluster-*, restored into
    // with pg_restore, then stopped and removed.
    let calls = shims.calls();
    let initdb = calls
        .iter()
        .find(|c| c.starts_with("initdb "))
        .unwrap_or_else(|| panic!("no initdb call: {calls:?}"));
    let data = initdb
        .split_whitespace()
        .skip_while(|a| *a != "-D")
        .nth(1)
        .expect("initdb -D");
    let root = Path::new(data)
        .parent()
        .expect("cluster root")
        .to_path_buf();
    assert!(
        root.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pgdrill-cluster-")),
        "{root:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("pg_restore ")),
        "{calls:?}"
    );
    assert!(!root.exists(), "{} was not removed", root.display());
    let left = processes_with(&root.display().to_string());
    assert!(
        left.is_empty(),
        "processes of the throwaway cluster remain: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drill_of_corrupt_backup_exits_3_with_evidence() {
    let b = Bench::new(CHECKS_SQL).await;
    b.config("rto_minutes = 30", "");
    let id = b.backup();
    let dump = b.store.join(format!("app/backups/{id}/dump.pgc.zst"));
    let mut bytes = std::fs::read(&dump).expect("dump");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).expect("corrupt");
    let out = b.drill(&["--target", &b.server_url(), "--keep-on-failure"], &[]);
    out.code(3);
    let r = out.json();
    assert_valid_result(&r);
    assert_eq!(r["verdict"], "fail");
    let err = r["error"].as_str().expect("error");
    assert!(err.contains("corrupt") || err.contains("checksum"), "{err}");
    assert!(
        r["rto"]["minutes"].is_null() && r["rto"]["passed"] == false,
        "{r:#}"
    );
    assert_eq!(r["checks"].as_array().map(Vec::len), Some(0));
    evidence_in(&b.store.join(format!(
        "app/drills/{}",
        r["drill_id"].as_str().expect("id")
    )));
    assert!(
        b.drill_databases().await.is_empty(),
        "the half-restored database was dropped"
    );
}

/// A wrong key fails the drill as it fails a restore (exit 4), with its evidence written.
#[tokio::test(flavor = "multi_thread")]
async fn drill_with_wrong_key_exits_4_with_evidence() {
    let b = Bench::new(CHECKS_SQL).await;
    b.config("rto_minutes = 30", "");
    let text = std::fs::read_to_string(b.path().join("pgdrill.toml")).expect("config");
    std::fs::write(
        b.path().join("pgdrill.toml"),
        format!("[encryption]\npassphrase_env = \"PASS\"\n\n{text}"),
    )
    .expect("config");
    let out = b.run(&["--json", "backup"], &[("PASS", "right horse battery")]);
    out.ok();
    let out = b.drill(
        &["--target", &b.server_url()],
        &[("PASS", "wrong horse battery")],
    );
    out.code(4);
    let r = out.json();
    assert_valid_result(&r);
    assert_eq!(r["verdict"], "fail");
    evidence_in(&b.store.join(format!(
        "app/drills/{}",
        r["drill_id"].as_str().expect("id")
    )));
    assert!(b.drill_databases().await.is_empty());
}

/// The timeline names starting the throwaway cluster, and its stages (total aside) add up to
/// nearly the whole drill instead of the restore alone.
fn timeline_accounts_for_the_whole_drill(r: &Value) {
    let stages = r["stages"].as_array().expect("stages");
    let names: Vec<&str> = stages.iter().filter_map(|s| s["name"].as_str()).collect();
    for want in [
        "select backup",
        "start throwaway cluster",
        "prepare restore",
        "checks",
        "clean up",
        "total",
    ] {
        assert!(names.contains(&want), "no stage {want}: {names:?}");
    }
    let total = stages
        .iter()
        .find(|s| s["name"] == "total")
        .map(|s| num(&s["seconds"]))
        .expect("total");
    let sum: f64 = stages
        .iter()
        .filter(|s| s["name"] != "total")
        .map(|s| num(&s["seconds"]))
        .sum();
    assert!(
        sum >= 0.9 * total && sum <= total + 0.05,
        "stages {sum} s of {total} s: {stages:?}"
    );
    // Each stage starts after the previous one ended (offsets from the drill's start).
    let mut end = 0.0f64;
    for s in stages.iter().filter(|s| s["name"] != "total") {
        assert!(num(&s["start_seconds"]) + 0.01 >= end, "{stages:?}");
        end = num(&s["start_seconds"]) + num(&s["seconds"]);
    }
}

/// The HTML report: coloured results, a time column that does not wrap, SQL that breaks
/// between words, provenance as a list, links to the other evidence, and a layout that fits
/// a phone (viewport, wrapping KPIs, a scrolling table).
fn report_html_is_readable(html: &str) {
    for want in [
        r#"<meta name=viewport content="width=device-width,initial-scale=1">"#,
        "<span class=pass>pass</span>",
        ".pass{color:#1a7f37",
        "td.t,th.t,.num{white-space:nowrap}",
        "overflow-wrap:break-word",
        "<div class=scroll><table>",
        "flex-wrap:wrap",
        r#"<a href="drill.log">drill.log</a>"#,
        r#"<a href="result.json">result.json</a>"#,
        "<dl class=prov><dt>target</dt>",
        "@media (max-width:600px)",
    ] {
        assert!(html.contains(want), "report.html lacks {want:?}:\n{html}");
    }
    assert!(
        !html.contains("word-break:break-all"),
        "SQL must not break mid-word"
    );
}

/// The page width headless Chromium lays `html` out at in a frame `width` px wide (a
/// headless window is at least 500 px wide, a frame can be narrower).
fn rendered_width(html: &Path, width: u32) -> u32 {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(html, dir.path().join("report.html")).expect("copy");
    let frame = dir.path().join("frame.html");
    std::fs::write(
        &frame,
        format!(
            "<!doctype html><html><body style=margin:0><iframe id=f src=report.html \
             style=\"width:{width}px;height:900px;border:0\"></iframe><script>f.onload=()=>\
             {{document.body.dataset.w=f.contentDocument.documentElement.scrollWidth}}</script>\
             </body></html>"
        ),
    )
    .expect("frame");
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("headless Chromium is needed: run scripts/setup-test-deps.sh (or apt-get install chromium)");
    let out = std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
            "--window-size=800,900",
            &format!("--user-data-dir={}", dir.path().join("profile").display()),
            "--dump-dom",
            &format!("file://{}", frame.display()),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let w = dom
        .split("data-w=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| {
            panic!(
                "no width in the DOM:\n{dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    w.parse().expect("width")
}

#[test]
fn the_demo_prints_a_passing_report_and_writes_the_evidence() {
    let dir = tempfile::tempdir().expect("tmp");
    let demo = dir.path().join("demo");
    let out = run(
        dir.path(),
        &["demo", "--dir", &demo.display().to_string()],
        &[],
    );
    out.ok();
    assert!(out.stdout.contains("— PASS"), "{}", out.stdout);
    assert!(
        out.stdout.contains("| Prisma migrations applied |"),
        "{}",
        out.stdout
    );
    let reports: Vec<PathBuf> = std::fs::read_dir(demo.join("reports"))
        .expect("reports")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(reports.len(), 1);
    let ev = evidence_in(&reports[0]);
    let result: Value = serde_json::from_str(&ev[3].1).expect("json");
    assert_valid_result(&result);
    assert_eq!(result["verdict"], "pass");
    // The local evidence folder is named by the drill id, as in the store.
    assert_eq!(
        reports[0].file_name().and_then(|n| n.to_str()),
        result["drill_id"].as_str(),
        "{reports:?}"
    );
    assert!(demo
        .join(format!(
            "store/shop/drills/{}/result.json",
            result["drill_id"].as_str().expect("id")
        ))
        .exists());
    assert!(!out.stderr.contains("4/4 report:"), "{}", out.stderr);
    // The HTML report fits a 420 px wide screen (it overflowed: wide time column, SQL, and
    // provenance on one line).
    let width = rendered_width(&reports[0].join("report.html"), 420);
    assert!(width <= 420, "report.html is {width} px wide at 420 px");

    // --json: one document on stdout, and no step on stderr announcing a report that is
    // not printed.
    let again = run(
        dir.path(),
        &["--json", "demo", "--dir", &demo.display().to_string()],
        &[],
    );
    again.ok();
    let j = again.json();
    assert_eq!(j["drill"]["verdict"], "pass");
    let last = again.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("4/4 evidence written to ")
            && last.ends_with(j["drill"]["drill_id"].as_str().expect("id")),
        "{}",
        again.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn command_checks_cannot_see_the_source_url() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let config = format!(
        "[store]\nurl = \"{}\"\n[[database]]\nname = \"app\"\nurl_env = \"PROD_DIRECT_URL\"\n\
         [database.drill]\nrow_counts = false\n[[database.drill.check]]\nname = \"isolated\"\nkind = \"command\"\n\
         run = 'test -z \"$PROD_DIRECT_URL\" && test -z \"$PGDRILL_SOURCE_URL\" && test -n \"$DATABASE_URL\" && case \"$DATABASE_URL\" in *pgdrill_drill_*|*/app*) exit 0;; esac; exit 1'\n",
        store.display()
    );
    std::fs::write(dir.path().join("pgdrill.toml"), config).expect("config");
    let env = [
        ("PROD_DIRECT_URL", src.url.as_str()),
        ("PGDRILL_SOURCE_URL", src.url.as_str()),
    ];
    run(dir.path(), &["backup"], &env).ok();
    let out = run(dir.path(), &["--json", "drill", "--report-dir", "r"], &env);
    out.ok();
    assert_eq!(out.json()["checks"][0]["passed"], true, "{}", out.stdout);
}
