//! `pgdrill restore` safety: every guard refuses with exit 5 and touches nothing; integrity and
//! key failures (exit 3, 4) stop before anything becomes visible in the target.

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use restore_util::*;
use std::path::Path;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// A copy of folder store `from` at `to`, whose dump object `damage` then alters.
fn damaged_copy(from: &Path, to: &Path, id: &str, damage: impl FnOnce(&mut Vec<u8>)) {
    let st = std::process::Command::new("cp")
        .args(["-a"])
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success());
    let obj = dump_object(to, "app", id);
    let mut bytes = std::fs::read(&obj).expect("read");
    damage(&mut bytes);
    std::fs::write(&obj, bytes).expect("write");
}

/// A config in `dir` whose database `app` (from env `SRC`) is dumped with `pg_dump --create`
/// into the folder store `dir/store`, which it returns.
fn create_mode_config(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    write(
        &dir.join("pgdrill.toml"),
        &format!(
            "[store]\nurl = \"{}\"\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\npg_dump_args = [\"--create\"]\n",
            store.display()
        ),
    );
    store
}

async fn user_tables(url: &str) -> String {
    scalar(
        url,
        "select count(*)::text from pg_tables where schemaname not in ('pg_catalog','information_schema')",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn guards_refuse_with_exit_5_and_change_nothing() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src.url, &[]);
    let want = tk::fingerprint(&src.url, &pg_dump()).await;

    // The source itself, by the same URL and spelled differently (localhost vs 127.0.0.1).
    restore(dir.path(), &store, &src.url, &["--clean"]).code(5);
    let spelled = src.url.replace("127.0.0.1", "localhost");
    assert_ne!(spelled, src.url);
    let out = restore(dir.path(), &store, &spelled, &["--clean"]);
    out.code(5);
    assert!(out.stderr.contains("source"), "{}", out.stderr);

    // protected_targets from the config file: refused, the database is not even created.
    let cfg_dir = dir.path().join("cfg");
    std::fs::create_dir(&cfg_dir).expect("mkdir");
    write(
        &cfg_dir.join("pgdrill.toml"),
        &format!(
            "protected_targets = [\"postgres://someone@127.0.0.1:{}/prot\"]\n",
            src.cluster.port()
        ),
    );
    let out = restore(&cfg_dir, &store, &src.cluster.url("prot"), &[]);
    out.code(5);
    assert!(out.stderr.contains("protected"), "{}", out.stderr);
    assert!(!db_exists(&src.cluster, "prot").await);

    // A non-empty target without --clean: refused and unchanged; with --clean: identical.
    let busy = src.cluster.url("busy");
    restore(dir.path(), &store, &busy, &[]).ok();
    let c = tk::connect(&busy).await;
    c.batch_execute("delete from public.\"Order Items\" where order_id < 50; update app.customers set name = 'changed' where id < 100; select setval('app.invoice_number_seq', 5000)")
        .await
        .expect("modify");
    let modified = tk::fingerprint(&busy, &pg_dump()).await;
    let out = restore(dir.path(), &store, &busy, &[]);
    out.code(5);
    assert!(out.stderr.contains("--clean"), "{}", out.stderr);
    tk::fingerprint(&busy, &pg_dump())
        .await
        .assert_same(&modified);
    restore(dir.path(), &store, &busy, &["--clean"]).ok();
    tk::fingerprint(&busy, &pg_dump()).await.assert_same(&want);

    // A dump made with pg_dump --create: refused without --allow-create, and with it unless
    // the target names the dump's own database (pg_restore --create restores into that one).
    let cdir = dir.path().join("create");
    std::fs::create_dir(&cdir).expect("mkdir");
    let cstore = create_mode_config(&cdir);
    // Database-level settings and comment travel with --create (pg_dump output without
    // --create, hence the fingerprints, do not show them).
    tk::connect(&src.url)
        .await
        .batch_execute(
            "alter database app set work_mem = '8MB'; comment on database app is 'the app'",
        )
        .await
        .expect("database properties");
    run(&cdir, &["backup"], &[("SRC", &src.url)]).ok();
    let fresh = src.cluster.url("fresh");
    restore(&cdir, &cstore, &fresh, &[]).code(5);
    let out = restore(&cdir, &cstore, &fresh, &["--allow-create"]);
    out.code(5);
    assert!(out.stderr.contains("`app`"), "{}", out.stderr);
    assert!(!db_exists(&src.cluster, "fresh").await);
    // With --allow-create into a database of the dump's name elsewhere: created, identical.
    let tmp = shared_tmp();
    let tmp_s = tmp.path().display().to_string();
    let out = restore_env(
        &cdir,
        &cstore,
        "",
        &["--ephemeral", "--keep", "--allow-create"],
        &[("TMPDIR", &tmp_s)],
    );
    out.ok();
    let j = out.json();
    let url = j["ephemeral"]["url"].as_str().expect("url");
    tk::fingerprint(url, &pg_dump()).await.assert_same(&want);
    let props = scalar(
        url,
        "select shobj_description(d.oid, 'pg_database') || ' ' || array_to_string(s.setconfig, ',') \
         from pg_database d join pg_db_role_setting s on s.setdatabase = d.oid and s.setrole = 0 \
         where d.datname = 'app'",
    )
    .await;
    assert_eq!(props, "the app work_mem=8MB");
    let stop = j["ephemeral"]["stop_command"].as_str().expect("stop");
    let st = std::process::Command::new("sh")
        .args(["-c", &format!("( {stop} ) >/dev/null 2>&1")])
        .status()
        .expect("sh");
    assert!(st.success());

    tk::fingerprint(&src.url, &pg_dump())
        .await
        .assert_same(&want);
}

#[tokio::test(flavor = "multi_thread")]
async fn integrity_and_key_failures_leave_the_target_untouched() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good");
    let id = backup(dir.path(), &good, &src.url, &[]);

    let corrupt = dir.path().join("corrupt");
    damaged_copy(&good, &corrupt, &id, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x5a;
    });
    let truncated = dir.path().join("truncated");
    damaged_copy(&good, &truncated, &id, |b| b.truncate(b.len() / 2));

    for (db, jobs) in [("c1", "1"), ("c2", "2")] {
        let out = restore(
            dir.path(),
            &corrupt,
            &src.cluster.url(db),
            &["--jobs", jobs],
        );
        out.code(3);
        assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
        assert!(!db_exists(&src.cluster, db).await, "{db} must be dropped");
    }
    for (db, jobs) in [("t1", "1"), ("t2", "2")] {
        restore(
            dir.path(),
            &truncated,
            &src.cluster.url(db),
            &["--jobs", jobs],
        )
        .code(3);
        assert!(!db_exists(&src.cluster, db).await, "{db} must be dropped");
    }

    // --clean over an existing database with a corrupt dump (one transaction): unchanged.
    let keep = src.cluster.url("keep");
    restore(dir.path(), &good, &keep, &[]).ok();
    let c = tk::connect(&keep).await;
    c.batch_execute("update app.customers set name = 'local change' where id = 7")
        .await
        .expect("modify");
    let before = tk::fingerprint(&keep, &pg_dump()).await;
    restore(dir.path(), &corrupt, &keep, &["--clean"]).code(3);
    tk::fingerprint(&keep, &pg_dump())
        .await
        .assert_same(&before);

    // pg_restore stopping mid-stream (first error inside the one transaction of a restore into
    // an existing database) is reported with its statement, and the target is unchanged.
    let chk = empty_db(&src.cluster, "chk").await;
    tk::connect(&chk)
        .await
        .batch_execute(
            "create function okf(int) returns boolean language sql as \
               $$ select coalesce(current_setting('app.ok', true), '') = 'on' or $1 < 100 $$; \
             create table a (id int check (okf(id))); set app.ok = 'on'; \
             insert into a select generate_series(1, 1000); \
             create table z as select g id, repeat(md5(g::text), 20) w \
               from generate_series(1, 20000) g;",
        )
        .await
        .expect("chk db");
    let cstore = dir.path().join("chk");
    backup(dir.path(), &cstore, &chk, &[]);
    let chk2 = empty_db(&src.cluster, "chk2").await;
    let out = restore(dir.path(), &cstore, &chk2, &[]);
    out.code(1);
    assert!(
        out.stderr.contains("a_id_check") && out.stderr.contains("unchanged"),
        "{}",
        out.stderr
    );
    assert_eq!(user_tables(&chk2).await, "0");

    // Wrong identity (new target: not created) and wrong passphrase (existing empty target:
    // still empty) are exit 4.
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("mkdir");
    let keygen = |name: &str| -> String {
        let path = keys.join(name);
        let out = std::process::Command::new("age-keygen")
            .arg("-o")
            .arg(&path)
            .output()
            .expect("age-keygen");
        assert!(out.status.success());
        let text = std::fs::read_to_string(&path).expect("key");
        text.lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .expect("public key")
            .to_string()
    };
    let recipient = keygen("right.key");
    keygen("wrong.key");
    let enc = dir.path().join("enc");
    let enc_s = enc.display().to_string();
    run(
        dir.path(),
        &["backup", "--store", &enc_s, "--recipient", &recipient],
        &[("PGDRILL_SOURCE_URL", &src.url)],
    )
    .ok();
    let wrong = keys.join("wrong.key").display().to_string();
    for (db, jobs) in [("k1", "1"), ("k1b", "2")] {
        restore(
            dir.path(),
            &enc,
            &src.cluster.url(db),
            &["--identity", &wrong, "--jobs", jobs],
        )
        .code(4);
        assert!(!db_exists(&src.cluster, db).await, "{db} must be dropped");
    }
    // The right key: a streamed restore of the encrypted backup is identical.
    let right = keys.join("right.key").display().to_string();
    let enc_target = src.cluster.url("k1c");
    let out = restore(
        dir.path(),
        &enc,
        &enc_target,
        &["--identity", &right, "--jobs", "2"],
    );
    out.ok();
    assert_eq!(out.json()["mode"], "stream", "{}", out.json());
    tk::fingerprint(&enc_target, &pg_dump())
        .await
        .assert_same(&tk::fingerprint(&src.url, &pg_dump()).await);

    let pass = dir.path().join("pass");
    let pass_s = pass.display().to_string();
    run(
        dir.path(),
        &["backup", "--store", &pass_s, "--passphrase-env", "PASS"],
        &[("PGDRILL_SOURCE_URL", &src.url), ("PASS", "right horse")],
    )
    .ok();
    let empty = empty_db(&src.cluster, "k2").await;
    let out = restore_env(
        dir.path(),
        &pass,
        &empty,
        &["--passphrase-env", "PASS"],
        &[("PASS", "wrong horse")],
    );
    out.code(4);
    assert!(db_exists(&src.cluster, "k2").await);
    assert_eq!(user_tables(&empty).await, "0");
}

/// A dump made with `pg_dump --create`, restored with `--allow-create` into a server where the
/// database did not exist when the guards looked, but was created by someone else just before
/// pg_restore ran: their database is neither restored into nor dropped (exit 5).
#[tokio::test(flavor = "multi_thread")]
async fn a_database_created_meanwhile_by_someone_else_is_left_alone() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = create_mode_config(dir.path());
    run(dir.path(), &["backup"], &[("SRC", &src.url)]).ok();
    let other = tk::cluster(None);

    // pg_restore, wrapped: the first run that creates the database first lets "someone else"
    // create it (with a table of theirs), as if they had raced the restore.
    let real = tk::pg_bin("pg_restore", 0);
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    for e in std::fs::read_dir(real.parent().expect("bin dir"))
        .expect("ls")
        .flatten()
    {
        if e.file_name() != "pg_restore" {
            std::os::unix::fs::symlink(e.path(), bin.join(e.file_name())).expect("symlink");
        }
    }
    let psql = tk::pg_bin("psql", 0);
    let mark = dir.path().join("raced");
    let wrapper = bin.join("pg_restore");
    write(
        &wrapper,
        &format!(
            "#!/bin/sh\ncase \" $* \" in *\" --create \"*) case \" $* \" in *\" --list \"*) ;; *)\n  if [ ! -e {mark} ]; then touch {mark}; {psql} -X -q -d postgres -c 'create database app' && {psql} -X -q -d app -c 'create table theirs (x int)' || exit 99; fi;;\nesac;; esac\nexec {real} \"$@\"\n",
            mark = mark.display(),
            psql = psql.display(),
            real = real.display()
        ),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let bin_s = bin.display().to_string();
    let out = restore_env(
        dir.path(),
        &store,
        &other.url("app"),
        &["--allow-create"],
        &[("PGDRILL_PG_BIN", &bin_s)],
    );
    out.code(5);
    assert!(mark.exists(), "the wrapper never ran");
    assert!(out.stderr.contains("someone else"), "{}", out.stderr);
    assert!(db_exists(&other, "app").await, "their database was dropped");
    let tables = scalar(
        &other.url("app"),
        "select string_agg(tablename, ',') from pg_tables where schemaname not in ('pg_catalog','information_schema')",
    )
    .await;
    assert_eq!(
        tables, "theirs",
        "the dump was restored into their database"
    );
}

/// A config in `dir` listing `entries` as protected_targets.
fn protected_config(dir: &Path, entries: &[String]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let list: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
    write(
        &dir.join("pgdrill.toml"),
        &format!("protected_targets = [{}]\n", list.join(", ")),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_target_matches_unix_socket_spelling() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src.url, &[]);
    let port = src.cluster.port();
    let (user, pw) = (src.cluster.superuser(), src.cluster.password());
    let sock = src.cluster.socket_dir().display().to_string();
    let enc = sock.replace('/', "%2F");

    // An entry by TCP address protects the same server reached through its unix socket.
    let by_tcp = dir.path().join("tcp");
    protected_config(&by_tcp, &[format!("postgresql://127.0.0.1:{port}/prot")]);
    for target in [
        format!("postgresql://{user}@{enc}:{port}/prot"),
        format!("postgresql://{user}@:{port}/prot?host={sock}"),
        format!("postgresql://{user}:{pw}@localhost:{port}/prot"),
    ] {
        let out = restore(&by_tcp, &store, &target, &[]);
        out.code(5);
        assert!(out.stderr.contains("protected"), "{target}: {}", out.stderr);
    }
    // `localhost` protects 127.0.0.1 (and the socket).
    let by_name = dir.path().join("name");
    protected_config(&by_name, &["localhost".to_string()]);
    restore(&by_name, &store, &src.cluster.url("prot"), &[]).code(5);
    // ... but not a throwaway cluster pgdrill starts itself (it is on localhost too).
    let tmp = shared_tmp();
    let tmp_s = tmp.path().display().to_string();
    restore_env(
        &by_name,
        &store,
        "",
        &["--ephemeral"],
        &[("TMPDIR", &tmp_s)],
    )
    .ok();
    // A spelling no rule folds (127.1 is 127.0.0.1): the server's identity decides, asked
    // with the entry's own credentials (the target's password never goes to another host).
    let by_alias = dir.path().join("alias");
    protected_config(
        &by_alias,
        &[format!("postgresql://{user}:{pw}@127.1:{port}/prot")],
    );
    let out = restore(&by_alias, &store, &src.cluster.url("prot"), &[]);
    out.code(5);
    assert!(out.stderr.contains("system identifier"), "{}", out.stderr);
    // ... and only for the database it names.
    restore(&by_alias, &store, &src.cluster.url("other"), &[]).ok();
    assert!(!db_exists(&src.cluster, "prot").await);

    // An entry that protects nothing is a config error, before anything is read.
    let bad = dir.path().join("bad");
    protected_config(&bad, &[format!("127.0.0.1:{port}")]);
    let out = restore(&bad, &store, &src.cluster.url("prot2"), &[]);
    out.code(2);
    assert!(
        out.stderr
            .contains(&format!("postgresql://127.0.0.1:{port}/")),
        "{}",
        out.stderr
    );
    assert!(!db_exists(&src.cluster, "prot2").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_object_only_target_is_refused() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src.url, &[]);
    // A database holding nothing but one large object is not empty.
    let lo = empty_db(&src.cluster, "lo").await;
    tk::connect(&lo)
        .await
        .batch_execute("select lo_from_bytea(424242, 'precious')")
        .await
        .expect("large object");
    for jobs in ["1", "4"] {
        let out = restore(dir.path(), &store, &lo, &["--jobs", jobs]);
        out.code(5);
        assert!(out.stderr.contains("not empty"), "{}", out.stderr);
    }
    assert_eq!(
        scalar(&lo, "select convert_from(lo_get(424242), 'UTF8')").await,
        "precious"
    );
    assert_eq!(user_tables(&lo).await, "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_after_touching_the_target_says_it_was_changed() {
    let src = source(None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let id = backup(dir.path(), &store, &src.url, &[]);
    let busy = src.cluster.url("busy");
    restore(dir.path(), &store, &busy, &[]).ok();
    // Before the target is touched (the dump is verified first): nothing was changed.
    let bad = dir.path().join("bad");
    damaged_copy(&store, &bad, &id, |b| {
        let at = b.len() / 2;
        b[at] ^= 0x55;
    });
    let out = restore(dir.path(), &bad, &busy, &["--clean", "--jobs", "2"]);
    out.code(3);
    assert!(
        out.stderr.contains("`busy` was not changed"),
        "{}",
        out.stderr
    );
    // A view of its own on a table the dump replaces: --clean cannot drop that table, so
    // pg_restore fails after it changed the database, and the message says so.
    tk::connect(&busy)
        .await
        .batch_execute("create view public.mine as select * from app.customers")
        .await
        .expect("view");
    let out = restore(dir.path(), &store, &busy, &["--clean", "--jobs", "2"]);
    out.code(1);
    assert!(out.stderr.contains("`busy` WAS CHANGED"), "{}", out.stderr);
}
