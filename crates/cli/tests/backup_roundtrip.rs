//! Backup → store → export / standard tools → pg_restore: the restored database must be
//! identical to the source (schema, every table's content, sequences, large objects).

mod common;
use common::*;
use pgdrill_testkit as tk;
use std::path::Path;
use std::process::{Command, Stdio};

/// Restores a plain archive file (or stdin pipeline) into `url` with pg_restore.
fn pg_restore_file(url: &str, file: &Path) {
    let (args, pw) = tk::conn_args(url);
    let st = Command::new(tk::pg_bin("pg_restore", 0))
        .args(&args)
        .args(["--no-owner", "--no-privileges", "--exit-on-error"])
        .arg(file)
        .env("PGPASSWORD", pw.unwrap_or_default())
        .status()
        .expect("pg_restore");
    assert!(st.success(), "pg_restore of the exported file failed");
}

async fn row_counts(url: &str) -> std::collections::BTreeMap<String, i64> {
    let c = tk::connect(url).await;
    let rows = c
        .query(
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where c.relkind = 'r' and n.nspname not in ('pg_catalog','information_schema')",
            &[],
        )
        .await
        .expect("tables");
    let mut out = std::collections::BTreeMap::new();
    for r in rows {
        let (s, t): (String, String) = (r.get(0), r.get(1));
        let n: i64 = c
            .query_one(
                &format!(
                    "select count(*) from \"{s}\".\"{}\"",
                    t.replace('"', "\"\"")
                ),
                &[],
            )
            .await
            .expect("count")
            .get(0);
        out.insert(format!("{s}.{t}"), n);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_backup_to_folder_round_trips_through_export_and_standard_tools() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let recipient = generate_key(dir.path());
    let store_s = store.display().to_string();

    let out = run(
        dir.path(),
        &[
            "--json",
            "backup",
            "--store",
            &store_s,
            "--recipient",
            &recipient,
        ],
        &[("PGDRILL_SOURCE_URL", &src.url)],
    );
    out.ok();
    let id = out.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let files = files_below(&store);
    assert_eq!(
        files,
        vec![
            format!("app/backups/{id}/SHA256SUMS"),
            format!("app/backups/{id}/dump.index.json.zst.age"),
            format!("app/backups/{id}/dump.pgc.zst.age"),
            format!("app/backups/{id}/manifest.json"),
            // What `list` and `status` read instead of every manifest (derived data).
            "app/catalog.json".to_string(),
        ]
    );

    // The manifest's row counts are exactly the source's.
    let show = run(
        dir.path(),
        &["--json", "show", "latest", "--store", &store_s],
        &[],
    );
    show.ok();
    let m = show.json();
    assert_eq!(m["backup_id"], id.as_str());
    assert_eq!(m["snapshot"]["exported"], true);
    let counts = row_counts(&src.url).await;
    let tables = m["content"]["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), counts.len());
    for t in tables {
        let key = format!(
            "{}.{}",
            t["schema"].as_str().expect("s"),
            t["name"].as_str().expect("n")
        );
        assert_eq!(
            t["rows"].as_i64(),
            counts.get(&key).copied(),
            "row count of {key}"
        );
    }
    assert_eq!(m["encryption"]["scheme"], "age");
    assert!(!m.to_string().contains(&src.cluster.password().to_string()));

    // verify passes with the key, exits 4 without it.
    let key = dir.path().join("pgdrill-age.key").display().to_string();
    run(
        dir.path(),
        &["verify", "latest", "--store", &store_s, "--identity", &key],
        &[],
    )
    .ok();
    run(dir.path(), &["verify", "latest", "--store", &store_s], &[]).code(4);

    // export → plain archive + .sha256 that sha256sum accepts → pg_restore → identical.
    let exported = dir.path().join("app.pgc");
    run(
        dir.path(),
        &[
            "export",
            &id,
            "-o",
            "app.pgc",
            "--store",
            &store_s,
            "--identity",
            &key,
        ],
        &[],
    )
    .ok();
    let st = Command::new("sha256sum")
        .args(["-c", "app.pgc.sha256"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .status()
        .expect("sha256sum");
    assert!(st.success(), "FILE.sha256 must verify with sha256sum -c");
    let target = empty_db(&src.cluster, "restored").await;
    pg_restore_file(&target, &exported);
    let want = tk::fingerprint(&src.url, &pg_dump()).await;
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);

    // The README's recipe: age -d -i key | zstd -d | pg_restore -d target.
    let target2 = empty_db(&src.cluster, "restored_std").await;
    let (args, pw) = tk::conn_args(&target2);
    let obj = store.join(format!("app/backups/{id}/dump.pgc.zst.age"));
    let script = format!(
        "set -o pipefail; age -d -i '{key}' '{}' | zstd -d | '{}' {} --no-owner --no-privileges --exit-on-error",
        obj.display(),
        tk::pg_bin("pg_restore", 0).display(),
        args.join(" ")
    );
    let st = Command::new("bash")
        .args(["-c", &script])
        .env("PGPASSWORD", pw.unwrap_or_default())
        .status()
        .expect("bash");
    assert!(st.success(), "standard-tools restore failed");
    tk::fingerprint(&target2, &pg_dump())
        .await
        .assert_same(&want);
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_to_s3_server_round_trips_and_lists_newest_first() {
    let src = source(None).await;
    let s3 = tk::S3Server::start();
    s3.create_bucket("backups");
    let dir = tempfile::tempdir().expect("tmp");
    let env_owned: Vec<(String, String)> = s3.env();
    let mut env = env_refs(&env_owned);
    env.push(("PGDRILL_SOURCE_URL", &src.url));
    env.push(("PGDRILL_STORE", "s3://backups/team/pg"));
    env.push(("PASS", "correct horse battery staple"));

    let first = run(
        dir.path(),
        &["--json", "backup", "--passphrase-env", "PASS"],
        &env,
    );
    first.ok();
    let second = run(
        dir.path(),
        &["--json", "backup", "--passphrase-env", "PASS"],
        &env,
    );
    second.ok();
    let id2 = second.json()["backups"][0]["backup_id"]
        .as_str()
        .expect("id")
        .to_string();
    let keys = s3.list_keys("backups");
    assert!(
        keys.iter()
            .any(|k| k == &format!("team/pg/app/backups/{id2}/manifest.json")),
        "{keys:?}"
    );

    let list = run(dir.path(), &["--json", "list"], &env);
    list.ok();
    let ids: Vec<String> = list.json()["backups"]
        .as_array()
        .expect("array")
        .iter()
        .map(|b| b["backup_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], id2, "newest first");

    run(
        dir.path(),
        &["verify", "--all", "--passphrase-env", "PASS"],
        &env,
    )
    .ok();
    run(
        dir.path(),
        &[
            "export",
            "latest",
            "-o",
            "x.pgc",
            "--passphrase-env",
            "PASS",
        ],
        &env,
    )
    .ok();
    let target = empty_db(&src.cluster, "from_s3").await;
    pg_restore_file(&target, &dir.path().join("x.pgc"));
    let want = tk::fingerprint(&src.url, &pg_dump()).await;
    tk::fingerprint(&target, &pg_dump())
        .await
        .assert_same(&want);

    // A wrong passphrase is exit 4, and writes nothing.
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "PASS");
    bad.push(("PASS", "wrong"));
    run(
        dir.path(),
        &[
            "export",
            "latest",
            "-o",
            "y.pgc",
            "--passphrase-env",
            "PASS",
        ],
        &bad,
    )
    .code(4);
    assert!(!dir.path().join("y.pgc").exists());
}
