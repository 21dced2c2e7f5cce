//! Drills of physical backups made by other tools (`[database.drill] source`): real backups
//! taken in the test from one PostgreSQL 15 source that archives its WAL to both a pgBackRest
//! posix repository and barman-cloud on the loopback S3 server (moto); then pgBackRest, barman
//! and `command` (pg_basebackup) drills, a recovery-target-time drill that must land between
//! two rows, and a backup whose WAL segment is gone, which must fail naming the segment.
//! pgBackRest also archives to an S3 repository (repo 2: the same S3 server behind a TLS proxy
//! with a test CA, as pgBackRest speaks only HTTPS to S3), which one drill recovers from.
//!
//! Needs pgbackrest and barman-cli-cloud (scripts/setup-test-deps.sh); fails without them.

mod common;
mod drill_support;

use common::*;
use drill_support::assert_valid_result;
use pgdrill_testkit as tk;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BUCKET: &str = "barman";

/// The uid and gid of the `postgres` OS user (the servers and the tools run as it).
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let f: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("a postgres OS user (scripts/setup-test-deps.sh)")
        .split(':')
        .collect();
    (f[2].parse().expect("uid"), f[3].parse().expect("gid"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A directory the server's OS user owns.
fn pg_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).expect("mkdir");
    if is_root() {
        let (u, g) = postgres_ids();
        std::os::unix::fs::chown(path, Some(u), Some(g)).expect("chown");
    }
    path.to_path_buf()
}

/// `program args` as the server's OS user (runuser when root), with `env`; panics with its
/// output when it fails.
fn as_pg(program: &str, args: &[&str], env: &[(String, String)]) -> String {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    };
    c.args(args).current_dir("/tmp");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {}", tk::SETUP_HINT));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

async fn wait_archived(url: &str) {
    let c = tk::connect(url).await;
    let seg: String = c
        .query_one("select pg_walfile_name(pg_switch_wal())", &[])
        .await
        .expect("switch wal")
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = c
            .query_one(
                "select coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') from pg_stat_archiver",
                &[],
            )
            .await
            .expect("archiver");
        let done: String = row.get(0);
        if done.as_str() >= seg.as_str() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "WAL {seg} was not archived (last archived {done}, last failed {})",
            row.get::<_, String>(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The TLS proxy in front of the loopback S3 server (pgBackRest's S3 repositories speak
/// HTTPS only), stopped when dropped. One asyncio loop (an SSL socket is not shared between
/// threads), a clean close_notify at the end of each answer.
struct TlsProxy {
    child: std::process::Child,
    port: u16,
    ca: PathBuf,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TLS_PROXY: &str = r#"
import asyncio, ssl, sys
cert, key, upstream = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
async def pipe(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        try:
            if w.can_write_eof():
                w.write_eof()
            else:
                w.close()
        except (OSError, RuntimeError):
            pass
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
    uw.close()
    cw.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"#;

/// A test CA (a self-signed certificate for 127.0.0.1 that may sign) and a TLS proxy on
/// 127.0.0.1 that forwards to `upstream` (the S3 server's port).
fn tls_proxy(dir: &Path, upstream: u16) -> TlsProxy {
    std::fs::create_dir_all(dir).expect("mkdir tls");
    let (ca, key) = (dir.join("ca.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=DNS:127.0.0.1,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&ca)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl req failed");
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).expect("chmod ca");
    let script = dir.join("proxy.py");
    std::fs::write(&script, TLS_PROXY).expect("proxy script");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(&ca)
        .arg(&key)
        .arg(upstream.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 for the TLS proxy");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("proxy port");
    let port = line.trim().parse().expect("the proxy prints its port");
    TlsProxy { child, port, ca }
}

fn result(dir: &Path) -> Value {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(dir.join("result.json")).expect("result.json written"),
    )
    .expect("result.json");
    assert_valid_result(&doc);
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_backups_are_drilled_like_pgdrills_own() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let root = tmp.path();
    let t0 = Instant::now();
    let s3 = tk::S3Server::start();
    s3.create_bucket(BUCKET);
    s3.create_bucket("pgbackrest");
    let proxy = tls_proxy(&root.join("tls"), s3.port());
    let s3_env = s3.env();
    let aws = |k: &str| {
        s3_env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };

    // pgBackRest: a posix repository, lock and log folders owned by the server's user.
    let repo = pg_dir(&root.join("repo"));
    pg_dir(&root.join("lock"));
    pg_dir(&root.join("log"));
    let conf = root.join("pgbackrest.conf");
    // The source's data and socket folders are only known once it runs; archive.sh reads
    // them from the config written below before any WAL is archived.
    let archive = root.join("pgbackrest-and-barman-archive.sh");
    let barman_url = format!("s3://{BUCKET}/pg");
    write_exec(
        &archive,
        &format!(
            "#!/bin/sh\nset -e\nexport AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={} AWS_EC2_METADATA_DISABLED=true\n\
             barman-cloud-wal-archive --cloud-provider=aws-s3 --endpoint-url={} {barman_url} src \"$1\"\n\
             exec pgbackrest --config={} --stanza=main archive-push \"$1\"\n",
            aws("AWS_ACCESS_KEY_ID"),
            aws("AWS_SECRET_ACCESS_KEY"),
            aws("AWS_REGION"),
            s3.endpoint(),
            conf.display()
        ),
    );
    let install = tk::server_install(Some(15));
    let mut opts = tk::ClusterOptions::new(install.clone());
    opts.settings = tk::fast_settings();
    opts.settings.extend([
        ("archive_mode".to_string(), "on".to_string()),
        (
            "archive_command".to_string(),
            format!("{} %p", archive.display()),
        ),
    ]);
    let src = tk::Cluster::start(opts).expect("start the PostgreSQL 15 source");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={}\nlock-path={}\nlog-path={}\nlog-level-file=off\nlog-level-console=warn\nstart-fast=y\ncompress-type=none\nrepo1-retention-full=9\n\
             repo2-type=s3\nrepo2-path=/repo\nrepo2-s3-bucket=pgbackrest\nrepo2-s3-endpoint=127.0.0.1\nrepo2-storage-port={}\n\
             repo2-s3-region={}\nrepo2-s3-key={}\nrepo2-s3-key-secret={}\nrepo2-s3-uri-style=path\nrepo2-storage-ca-file={}\nrepo2-retention-full=9\n\n\
             [main]\npg1-path={}\npg1-socket-path={}\npg1-port={}\npg1-user=postgres\n",
            repo.display(),
            root.join("lock").display(),
            root.join("log").display(),
            proxy.port,
            aws("AWS_REGION"),
            aws("AWS_ACCESS_KEY_ID"),
            aws("AWS_SECRET_ACCESS_KEY"),
            proxy.ca.display(),
            src.data_dir().display(),
            src.socket_dir().display(),
            src.port()
        ),
    )
    .expect("write pgbackrest.conf");
    empty_db(&src, "app").await;
    let app = tk::connect(&src.url("app")).await;
    app.batch_execute(
        "create table marks (id int primary key, note text not null, at timestamptz not null default clock_timestamp());
         insert into marks (id, note) values (1, 'base');",
    )
    .await
    .expect("fixture");

    eprintln!("cluster + fixture: {:.1}s", t0.elapsed().as_secs_f64());
    // The backups, each by its own tool.
    let conf_arg = format!("--config={}", conf.display());
    as_pg(
        "pgbackrest",
        &[&conf_arg, "--stanza=main", "stanza-create"],
        &[],
    );
    as_pg(
        "pgbackrest",
        &[&conf_arg, "--stanza=main", "--type=full", "backup"],
        &[],
    );
    // The same into the S3 repository, through the TLS proxy and the test CA.
    as_pg(
        "pgbackrest",
        &[
            &conf_arg,
            "--stanza=main",
            "--repo=2",
            "--type=full",
            "backup",
        ],
        &[],
    );
    assert!(
        s3.list_keys("pgbackrest")
            .iter()
            .any(|k| k.contains("backup.manifest")),
        "pgBackRest wrote its backup to the S3 repository"
    );
    eprintln!("pgbackrest backup: {:.1}s", t0.elapsed().as_secs_f64());
    let mut barman_env = s3_env.clone();
    barman_env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    let sock = src.socket_dir().display().to_string();
    let port = src.port().to_string();
    as_pg(
        "barman-cloud-backup",
        &[
            "--cloud-provider=aws-s3",
            &format!("--endpoint-url={}", s3.endpoint()),
            "-h",
            &sock,
            "-p",
            &port,
            "-U",
            "postgres",
            &barman_url,
            "src",
        ],
        &barman_env,
    );
    eprintln!("backups: {:.1}s", t0.elapsed().as_secs_f64());
    // A row before the target time, the target, a row after it; all WAL archived.
    app.batch_execute("insert into marks (id, note) values (2, 'before')")
        .await
        .expect("insert before");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let target: String = app
        .query_one(
            "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            &[],
        )
        .await
        .expect("target")
        .get(0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    app.batch_execute("insert into marks (id, note) values (3, 'after')")
        .await
        .expect("insert after");
    wait_archived(&src.url("postgres")).await;

    eprintln!("rows + archived: {:.1}s", t0.elapsed().as_secs_f64());
    // A broken copy of the repository: the WAL segment the backup starts in is gone.
    let info: Value = serde_json::from_str(&as_pg(
        "pgbackrest",
        &[&conf_arg, "--stanza=main", "--output=json", "info"],
        &[],
    ))
    .expect("info json");
    let first_wal = info[0]["backup"][0]["archive"]["start"]
        .as_str()
        .expect("the backup's first WAL segment")
        .to_string();
    let broken_repo = root.join("repo-broken");
    let cp = Command::new("cp")
        .args([
            "-a",
            &repo.display().to_string(),
            &broken_repo.display().to_string(),
        ])
        .status()
        .expect("cp");
    assert!(cp.success());
    let mut removed = 0;
    for e in walkdir(&broken_repo.join("archive")) {
        if e.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{first_wal}-")))
        {
            std::fs::remove_file(&e).expect("remove the segment");
            removed += 1;
        }
    }
    assert_eq!(removed, 1, "segment {first_wal} in the copied repository");

    let fetch = root.join("fetch.sh");
    write_exec(
        &fetch,
        &format!(
            "#!/bin/sh\nset -e\ntest -d \"$PGDRILL_DATA_DIR\"\nexec {} -D \"$PGDRILL_DATA_DIR\" -X stream -c fast -h \"$1\" -p \"$2\" -U postgres\n",
            install.bin("pg_basebackup").display()
        ),
    );
    let count = |n: i64| {
        format!("[[database.drill.check]]\nname = \"rows\"\nkind = \"sql\"\nquery = \"select count(*) from marks\"\nexpect = {n}\n")
    };
    let notes = "[[database.drill.check]]\nname = \"notes\"\nkind = \"sql\"\nquery = \"select string_agg(note, ',' order by id) from marks\"\nexpect = \"base,before\"\n";
    // Repository 1 is the folder (or its broken copy: `repo = "1"` so that archive-get does
    // not fall back to the S3 repository, which holds every segment); 2 is S3.
    let pgbr_repo = |name: &str, options: &str, extra: &str| {
        format!(
            "[[database]]\nname = \"{name}\"\n[database.drill]\nsource = \"pgbackrest\"\ndbname = \"app\"\nrecovery_timeout_seconds = 120\n{extra}\n\
             [database.drill.pgbackrest]\nstanza = \"main\"\nconfig = \"{}\"\noptions = {{ {options} }}\n",
            conf.display()
        )
    };
    let pgbr = |name: &str, repo: &Path, extra: &str| {
        pgbr_repo(
            name,
            &format!("repo1-path = \"{}\", repo = \"1\"", repo.display()),
            extra,
        )
    };
    let mut config = format!(
        "[store]\nurl = \"{}\"\n\n[policy]\nrpo_minutes = 600\nrto_minutes = 30\n\n{}{}\n{}{}\n{}{}\n\
         [[database]]\nname = \"barman\"\n[database.drill]\nsource = \"barman-cloud\"\ndbname = \"app\"\n\
         [database.drill.barman_cloud]\nurl = \"{barman_url}\"\nserver_name = \"src\"\nendpoint_url = \"{}\"\naccess_key_id_env = \"BARMAN_KEY\"\nsecret_access_key_env = \"BARMAN_SECRET\"\nregion = \"{}\"\n{}\n\
         [[database]]\nname = \"cmd\"\n[database.drill]\nsource = \"command\"\ndbname = \"app\"\n[database.drill.command]\nrun = [\"{}\", \"{sock}\", \"{port}\"]\n{}",
        root.join("store").display(),
        pgbr("pgbr", &repo, ""),
        count(3),
        pgbr("pgbr_pitr", &repo, &format!("target_time = \"{target}\"")),
        notes,
        pgbr("broken", &broken_repo, ""),
        count(3),
        s3.endpoint(),
        aws("AWS_REGION"),
        count(3),
        fetch.display(),
        count(3),
    );
    config.push_str(&format!(
        "\n{}{}",
        pgbr_repo("pgbr_s3", "repo = \"2\"", ""),
        count(3)
    ));
    std::fs::write(root.join("pgdrill.toml"), &config).expect("config");
    let env = [
        ("BARMAN_KEY", aws("AWS_ACCESS_KEY_ID")),
        ("BARMAN_SECRET", aws("AWS_SECRET_ACCESS_KEY")),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let drill = |name: &str| {
        let t = Instant::now();
        let dir = root.join(format!("evidence-{name}"));
        let out = run(
            root,
            &[
                "--json",
                "drill",
                "--name",
                name,
                "--report-dir",
                &dir.display().to_string(),
            ],
            &env,
        );
        eprintln!("drill {name}: {:.1}s", t.elapsed().as_secs_f64());
        (out, dir)
    };

    eprintln!("broken copy: {:.1}s", t0.elapsed().as_secs_f64());
    // Every row, from each tool's backup plus its archived WAL.
    for (name, kind) in [
        ("pgbr", "pgbackrest"),
        ("pgbr_s3", "pgbackrest"),
        ("barman", "barman-cloud"),
        ("cmd", "command"),
    ] {
        let (out, dir) = drill(name);
        out.ok();
        let r = result(&dir);
        assert_eq!(r["source"], kind, "{r:#}");
        assert_eq!(r["verdict"], "pass", "{r:#}");
        assert_eq!(r["checks"][0]["actual"], "3", "{name}: {r:#}");
        assert!(
            r["checks"].as_array().is_some_and(|c| c.len() == 1),
            "row counts against a snapshot are left out: {r:#}"
        );
        let rec = &r["recovery"];
        assert!(rec["fetch_seconds"].as_f64().is_some(), "{r:#}");
        assert!(r["rto"]["minutes"].as_f64().is_some(), "{r:#}");
        assert_eq!(r["rpo"]["passed"], true, "{r:#}");
        // The backup's and the drill's evidence are in the store like any drill's.
        let drills = root.join("store").join(name).join("drills");
        assert!(drills.is_dir(), "evidence in the store for {name}");
        let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
        assert!(md.contains(&format!("Source: a {kind} backup")), "{md}");
        let log = std::fs::read_to_string(dir.join("drill.log")).expect("drill.log");
        assert!(
            !log.contains(&aws("AWS_SECRET_ACCESS_KEY")),
            "no secret in drill.log"
        );
        if name != "cmd" {
            // Recovery replayed up to the last insert, which the RPO is taken from.
            assert_eq!(rec["reached_from"], "replay", "{r:#}");
            assert!(log.contains("recovery ended"), "{log}");
        }
    }

    // --keep leaves the recovered cluster running on its socket, with a command to stop it.
    let out = run(
        root,
        &[
            "--json",
            "drill",
            "--name",
            "cmd",
            "--keep",
            "--report-dir",
            &root.join("kept").display().to_string(),
        ],
        &env,
    );
    out.ok();
    let kept = &out.json()["kept"][0];
    let url = kept["url"].as_str().expect("kept url").to_string();
    assert!(url.contains("host=") && !url.contains(":@"), "{kept:#}");
    let rows: i64 = tk::connect(&url)
        .await
        .query_one("select count(*) from marks", &[])
        .await
        .expect("query the kept cluster")
        .get(0);
    assert_eq!(rows, 3);
    let stop = kept["stop_command"].as_str().expect("stop command");
    let st = Command::new("sh")
        .args(["-c", stop])
        .status()
        .expect("stop");
    assert!(st.success(), "{stop}");

    // The recovery target lands between the rows: 'after' is absent, 'before' present.
    let (out, dir) = drill("pgbr_pitr");
    out.ok();
    let r = result(&dir);
    assert_eq!(r["checks"][0]["actual"], "base,before", "{r:#}");
    assert!(
        r["recovery"]["target_time"]
            .as_str()
            .is_some_and(|t| t.starts_with(&target[..19])),
        "{r:#}"
    );
    let reached = r["recovery"]["reached"]
        .as_str()
        .expect("reached")
        .to_string();
    assert!(
        reached.as_str() <= target.as_str(),
        "{reached} after {target}"
    );

    // A missing WAL segment: the drill fails (exit 1) and the evidence names the segment.
    let (out, dir) = drill("broken");
    out.code(1);
    let r = result(&dir);
    assert_eq!(r["verdict"], "fail");
    let err = r["error"].as_str().expect("error").to_string();
    assert!(err.contains("recovery of pgbackrest"), "{err}");
    assert!(
        err.contains(&format!(
            "the last WAL file restore_command could not fetch: {first_wal}"
        )),
        "the error names {first_wal}: {err}"
    );

    eprintln!("drills: {:.1}s", t0.elapsed().as_secs_f64());
    // status: freshness from the newest backup a drill recovered, not "no complete backup".
    let out = run(root, &["--json", "status", "--name", "pgbr"], &env);
    let doc = out.json();
    let slo = |name: &str| {
        doc["databases"][0]["slos"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or_else(|| panic!("slo {name}: {doc:#}"))
    };
    assert_eq!(slo("backup_freshness")["ok"], true, "{doc:#}");
    assert!(
        slo("backup_freshness")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("pgbackrest backup a drill recovered")),
        "{doc:#}"
    );
    assert_eq!(slo("drill_freshness")["ok"], true, "{doc:#}");
    // drills --json (and so /api/v1/drills and the dashboard) name the source kind.
    let out = run(root, &["--json", "drills", "--name", "pgbr"], &env);
    let doc = out.json();
    pgdrill_testkit::schema::assert_valid("drills.schema.json", &doc);
    assert!(
        doc["drills"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|d| d["source"] == "pgbackrest")),
        "{doc:#}"
    );

    // doctor: each tool installed, its version, and that it lists backups.
    let out = run(root, &["--json", "doctor"], &env);
    let doc = out.json();
    for name in ["pgbr", "barman", "cmd"] {
        let c = doc["checks"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|c| c["name"].as_str() == Some(&format!("{name}: drill source")))
            })
            .unwrap_or_else(|| panic!("doctor checks {name}'s source: {doc:#}"));
        assert_eq!(c["ok"], true, "{c:#}");
    }
    let pgbr = doc["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "pgbr: drill source"))
        .expect("pgbr check");
    assert!(
        pgbr["detail"]
            .as_str()
            .is_some_and(|d| d.contains("pgBackRest 2.") && d.contains("1 backup")),
        "{pgbr:#}"
    );
    drop(src);
}

/// Every file below `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A physical source's settings are checked at load: exit 2 naming the key.
#[test]
fn a_bad_physical_source_is_refused_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(
        tmp.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[[database]]\nname = \"app\"\n[database.drill]\nsource = \"pgbackrest\"\n[database.drill.pgbackrest]\nstanza = \"main\"\nrepo = 2\n",
            tmp.path().join("store").display()
        ),
    )
    .expect("config");
    let out = run(tmp.path(), &["drill"], &[]);
    out.code(2);
    assert!(
        out.stderr.contains("[database.drill.pgbackrest]") && out.stderr.contains("repo"),
        "{}",
        out.stderr
    );
}
