//! Every `--json` output validated against its schema in `docs/schemas/` (with
//! `additionalProperties: false` where the shape is ours, so drift fails here): the real
//! outputs of init, backup, list, show, verify, export, restore (and its dry run), drill,
//! drills, prune, status, doctor, demo, every mirror subcommand and an error, from one
//! source cluster and a folder store (`serve --json` and the API: `serve_api.rs`). `JSON_SCHEMAS_DUMP=DIR` keeps the documents for a look.

mod common;
use common::*;
use pgdrill_testkit::schema;
use serde_json::Value;
use std::path::Path;

/// (schema file, command, document)
type Doc = (&'static str, String, Value);

fn take(docs: &mut Vec<Doc>, schema: &'static str, what: &str, out: &Out, code: i32) -> Value {
    out.code(code);
    let v = out.json();
    assert_eq!(v["schema_version"], 1, "{what}: no schema_version: {v}");
    docs.push((schema, what.to_string(), v.clone()));
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn every_json_output_matches_its_schema() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let store = d.join("store");
    std::fs::write(
        d.join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[encryption]\npassphrase_env = \"PASS\"\n[policy]\nrpo_minutes = 600\nrto_minutes = 60\n\
             [schedule]\ntimezone = \"Europe/Berlin\"\n\
             [[database]]\nname = \"app\"\nurl_env = \"SRC\"\n",
            store.display()
        ),
    )
    .expect("config");
    let env = [
        ("SRC", src.url.as_str()),
        ("PASS", "json-schemas-passphrase"),
    ];
    let mut docs: Vec<Doc> = Vec::new();
    std::fs::create_dir_all(d.join("fresh")).expect("mkdir");
    let init = run(&d.join("fresh"), &["--json", "init", "--generate-key"], &[]);
    let v = take(&mut docs, "init.schema.json", "init", &init, 0);
    assert!(v["recipient"]
        .as_str()
        .is_some_and(|r| r.starts_with("age1")));

    let mut go = |schema: &'static str, args: &[&str], code: i32| -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = run(d, &all, &env);
        take(&mut docs, schema, &args.join(" "), &out, code)
    };

    go("backup.schema.json", &["backup"], 0);
    let b = go("backup.schema.json", &["backup"], 0);
    assert!(
        b["backups"][0]["duration_seconds"].as_f64().is_some(),
        "{b}"
    );
    // One store: one complete copy, named "default".
    assert_eq!(b["backups"][0]["copies"][0]["store"], "default", "{b}");
    assert_eq!(b["backups"][0]["copies"][0]["ok"], true, "{b}");
    assert_eq!(
        b["backups"][0]["copies"][0]["stored_bytes"], b["backups"][0]["stored_bytes"],
        "{b}"
    );
    let l = go("list.schema.json", &["list"], 0);
    assert_eq!(l["backups"].as_array().map(Vec::len), Some(2), "{l}");
    go("show.schema.json", &["show", "latest"], 0);
    // Text for people: times in the configured zone, the zone shown; sizes in binary units.
    for args in [&["list"][..], &["show", "latest"][..]] {
        let out = run(d, args, &env);
        out.ok();
        assert!(
            out.stdout.contains(" CET") || out.stdout.contains(" CEST"),
            "{args:?}: no Europe/Berlin time in:\n{}",
            out.stdout
        );
        assert!(out.stdout.contains(" KiB"), "{}", out.stdout);
    }
    go("verify.schema.json", &["verify", "latest"], 0);
    go("verify.schema.json", &["verify", "--all"], 0);
    let out = d.join("out.pgc");
    go(
        "export.schema.json",
        &["export", "latest", "-o", out.to_str().expect("p")],
        0,
    );
    let target = empty_db(&src.cluster, "restored").await;
    go(
        "restore.schema.json",
        &["restore", "latest", "--target", &target, "--dry-run"],
        0,
    );
    go(
        "restore.schema.json",
        &["restore", "latest", "--target", &target],
        0,
    );
    let dr = go("drill.schema.json", &["drill"], 0);
    assert_eq!(dr["verdict"], "pass", "{dr}");
    let ds = go("drills.schema.json", &["drills"], 0);
    assert!(ds["drills"][0]["rto_seconds"].as_f64().is_some(), "{ds}");
    go("prune.schema.json", &["prune", "--dry-run"], 0);
    go("prune.schema.json", &["prune"], 0);
    let st = go("status.schema.json", &["status"], 0);
    assert_eq!(st["databases"][0]["rto_target_seconds"], 3600, "{st}");
    go("doctor.schema.json", &["doctor"], 0);
    go("error.schema.json", &["show", "20200101T000000Z-dead"], 2);
    let demo_dir = d.join("demo");
    let demo = go(
        "demo.schema.json",
        &["demo", "--dir", demo_dir.to_str().expect("p")],
        0,
    );
    assert_eq!(demo["drill"]["verdict"], "pass", "{demo}");

    // mirror, from a folder, by flags.
    let up = d.join("up");
    std::fs::create_dir_all(up.join("docs")).expect("mkdir");
    std::fs::write(up.join("a.txt"), b"alpha").expect("write");
    std::fs::write(up.join("docs/b.txt"), b"bravo").expect("write");
    let m = ["mirror"];
    let with = |rest: &[&'static str]| -> Vec<&'static str> {
        let mut v = m.to_vec();
        v.extend_from_slice(rest);
        v
    };
    let up_s: &'static str = Box::leak(up.display().to_string().into_boxed_str());
    let r = go(
        "mirror-run.schema.json",
        &with(&["run", "--name", "up", "--from", up_s]),
        0,
    );
    let snap: &'static str = Box::leak(
        r["mirrors"][0]["snapshot_id"]
            .as_str()
            .expect("snapshot id")
            .to_string()
            .into_boxed_str(),
    );
    go(
        "mirror-list.schema.json",
        &with(&["list", "--name", "up"]),
        0,
    );
    go(
        "mirror-verify.schema.json",
        &with(&["verify", "--name", "up", "latest"]),
        0,
    );
    let to: &'static str = Box::leak(d.join("up-out").display().to_string().into_boxed_str());
    go(
        "mirror-restore.schema.json",
        &with(&["restore", "--name", "up", snap, "--to", to]),
        0,
    );
    std::fs::write(d.join("up-out/a.txt"), b"changed").expect("write");
    go(
        "mirror-parity.schema.json",
        &with(&["parity", "--name", "up", snap, "--with", to]),
        1,
    );
    go(
        "mirror-prune.schema.json",
        &with(&["prune", "--name", "up", "--dry-run"]),
        0,
    );

    if let Ok(keep) = std::env::var("JSON_SCHEMAS_DUMP") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).expect("mkdir dump");
        for (i, (s, what, v)) in docs.iter().enumerate() {
            let name = format!("{i:02}-{}", s.trim_end_matches(".schema.json"));
            let text = format!("// {what}\n{v:#}\n");
            std::fs::write(keep.join(name), text).expect("dump");
        }
    }
    let mut failures = Vec::new();
    for (s, what, v) in &docs {
        let errs = schema::errors(s, v);
        if !errs.is_empty() {
            failures.push(format!("`{what}` against {s}:\n  {}", errs.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every schema in docs/schemas/ is used by this test or by serve_api.rs.
    let used: Vec<&str> = docs.iter().map(|(s, _, _)| *s).collect();
    for e in std::fs::read_dir(schema::schemas_dir()).expect("docs/schemas") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        let covered = used.contains(&name.as_str())
            || name.starts_with("api-")
            || [
                "common.schema.json",
                "serve.schema.json",
                // validated by restore_table.rs and diff.rs on their real output
                "restore-table.schema.json",
                "diff.schema.json",
                // validated by stores.rs (copy needs several stores)
                "copy.schema.json",
            ]
            .contains(&name.as_str());
        assert!(covered, "{name} is not checked against any real output");
    }
}
