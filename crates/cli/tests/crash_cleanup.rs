//! pgdrill killed outright (SIGKILL: the OOM killer, `kill -9`, an evicted pod) leaves nothing
//! running behind it: a parallel pg_dump paused for its spool window does not keep its
//! snapshot and locks on the source, a drill's throwaway cluster stops, and their temporary
//! directories go, as does a spooled restore's spool (the watchdogs of `pgdrill_pg::reaper`).

mod common;
use common::*;
use pgdrill_testkit as tk;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Processes whose command name is `name`: (pid, state letter).
fn processes(name: &str) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] == name {
            let state = stat[close + 1..].trim_start().chars().next().unwrap_or('?');
            out.push((pid, state));
        }
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(child: &mut Child) {
    child.kill().expect("SIGKILL pgdrill");
    child.wait().expect("reap pgdrill");
}

fn spawn(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut c = cmd(cwd);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("start pgdrill")
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_backup_and_drill_leave_no_process_snapshot_or_directory() {
    let src = source(None).await;
    let c = tk::connect(&src.url).await;
    c.batch_execute(
        "create table big (id bigint primary key, pad text);
         insert into big select g, repeat(md5(g::text), 8) from generate_series(1, 200000) g;",
    )
    .await
    .expect("big table");
    drop(c);
    let dir = tempfile::tempdir().expect("tmp");
    // TMPDIR for the drill's throwaway cluster: reachable by the server's OS user.
    let tmp = dir.path().join("t");
    std::fs::create_dir(&tmp).expect("tmp dir");
    for p in [dir.path(), tmp.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).expect("spool");
    std::fs::write(
        dir.path().join("pgdrill.toml"),
        format!(
            "[store]\nurl = \"{}\"\n[backup]\nspool_dir = \"{}\"\nspool_window_mib = 1\n[[database]]\nname = \"app\"\nurl_env = \"SRC\"\n[[database]]\nname = \"drilled\"\nurl_env = \"SRC\"\n",
            dir.path().join("store").display(),
            spool.display()
        ),
    )
    .expect("config");
    let env = [
        ("SRC", src.url.as_str()),
        ("PASS", "crash-cleanup-passphrase"),
        ("TMPDIR", tmp.to_str().expect("utf-8")),
    ];

    // 1. A parallel backup killed while its pg_dump is paused (SIGSTOP) for the spool window.
    let mut backup = spawn(
        dir.path(),
        &["backup", "--jobs", "2", "--passphrase-env", "PASS"],
        &env,
    );
    wait_for("a paused pg_dump", Duration::from_secs(60), || {
        processes("pg_dump").iter().any(|(_, s)| *s == 'T')
    });
    assert!(!entries(&spool).is_empty(), "no spool while pg_dump runs");
    kill9(&mut backup);
    wait_for("every pg_dump to end", Duration::from_secs(15), || {
        processes("pg_dump").iter().all(|(_, s)| *s == 'Z')
    });
    wait_for("the spool to be removed", Duration::from_secs(15), || {
        entries(&spool).is_empty()
    });
    // No session of the dump (its snapshot, its locks) is left on the source.
    let admin = tk::connect(&src.cluster.url("postgres")).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n: i64 = admin
            .query_one(
                "select count(*) from pg_stat_activity where datname = 'app' and pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} sessions of the killed backup remain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !Path::new(&dir.path().join("store/app/backups"))
            .read_dir()
            .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().join("manifest.json").exists())))
            .unwrap_or(false),
        "a killed backup published a manifest"
    );

    // 2. A drill killed while its throwaway cluster runs (another database name: the killed
    // backup's lease on `app` lapses only after its ttl).
    run(
        dir.path(),
        &["backup", "--name", "drilled", "--passphrase-env", "PASS"],
        &env,
    )
    .ok();
    let mut drill = spawn(
        dir.path(),
        &["drill", "--name", "drilled", "--passphrase-env", "PASS"],
        &env,
    );
    // The postmaster's pid, once its pid file (written as it starts) names it.
    let mut postmaster = 0u32;
    wait_for("the drill's cluster", Duration::from_secs(60), || {
        postmaster = entries(&tmp)
            .into_iter()
            .filter_map(|d| std::fs::read_to_string(tmp.join(d).join("data/postmaster.pid")).ok())
            .find_map(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0);
        postmaster != 0
    });
    kill9(&mut drill);
    wait_for(
        "the drill's server to stop",
        Duration::from_secs(20),
        || {
            let stat =
                std::fs::read_to_string(format!("/proc/{postmaster}/stat")).unwrap_or_default();
            stat.is_empty() || stat.contains(") Z ")
        },
    );
    wait_for(
        "the drill's directory to be removed",
        Duration::from_secs(20),
        || entries(&tmp).is_empty(),
    );

    // 3. A spooled restore killed while its spool file exists (downloading, or read by
    // pg_restore).
    let target = src.cluster.url("restored");
    let mut restore = spawn(
        dir.path(),
        &[
            "restore",
            "latest",
            "--name",
            "drilled",
            "--spool",
            "--jobs",
            "2",
            "--target",
            &target,
            "--passphrase-env",
            "PASS",
        ],
        &env,
    );
    let spooled = |tmp: &Path| entries(tmp).iter().any(|e| e.starts_with("pgdrill-spool-"));
    wait_for("the restore's spool", Duration::from_secs(60), || {
        spooled(&tmp)
    });
    kill9(&mut restore);
    wait_for(
        "the restore's spool to be removed",
        Duration::from_secs(15),
        || !spooled(&tmp),
    );
}
