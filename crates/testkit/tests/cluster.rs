//! Throwaway clusters start, serve, and leave nothing behind.

use std::path::PathBuf;

use pgdrill_testkit::{cluster, connect};

/// Every process whose parent is `pid`, plus `pid`.
fn tree(pid: u32) -> Vec<u32> {
    let mut v = vec![pid];
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if ppid == Some(pid) {
            v.push(p);
        }
    }
    v
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("X");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

fn any_cmdline_contains(needle: &str) -> Vec<u32> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{p}/cmdline")) {
            if String::from_utf8_lossy(&c).contains(needle) {
                hits.push(p);
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg15_starts_serves_and_leaves_nothing_on_drop() {
    let c = cluster(Some(15));
    assert_eq!(c.version().major, 15);
    assert_eq!(c.superuser(), "postgres");
    assert!(c.password().len() >= 16);
    assert!(c.url("postgres").starts_with("postgresql://postgres:"));

    let client = connect(&c.url("postgres")).await;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, current_setting('fsync'), \
                    current_setting('listen_addresses')",
            &[],
        )
        .await
        .expect("query");
    let num: i32 = row.get(0);
    assert_eq!(num / 10000, 15);
    assert_eq!(row.get::<_, String>(1), "off");
    assert_eq!(row.get::<_, String>(2), "127.0.0.1");

    // A wrong password is refused (scram over TCP).
    let bad = c.url("postgres").replace(c.password(), "wrong");
    assert!(tokio_postgres::connect(&bad, tokio_postgres::NoTls)
        .await
        .is_err());

    // The password is in no process's argv; the password file is gone.
    assert_eq!(any_cmdline_contains(c.password()), Vec::<u32>::new());
    let root = c.data_dir().parent().expect("root").to_path_buf();
    assert!(!root.join("pwfile").exists());
    assert!(c
        .socket_dir()
        .join(format!(".s.PGSQL.{}", c.port()))
        .exists());

    let pids = tree(c.pid().expect("postmaster pid"));
    assert!(pids.len() > 1, "postmaster has children: {pids:?}");
    drop(client);
    drop(c);
    let still: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(
        still.is_empty(),
        "postgres processes survived the drop: {still:?}"
    );
    assert!(!root.exists(), "{} was not removed", root.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_removes_everything_even_with_open_connections() {
    let c = cluster(None);
    let client = connect(&c.url("postgres")).await;
    client
        .batch_execute("CREATE DATABASE \"my db\"")
        .await
        .expect("create db");
    let other = connect(&c.url("my db")).await;
    other.batch_execute("SELECT 1").await.expect("select");
    let pids = tree(c.pid().expect("pid"));
    let root: PathBuf = c.data_dir().parent().expect("root").to_path_buf();
    c.stop().expect("stop");
    assert!(pids.iter().all(|p| !alive(*p)));
    assert!(!root.exists());
    drop(client);
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg17_and_pg18_start() {
    for major in [17, 18] {
        let c = cluster(Some(major));
        let client = connect(&c.url("postgres")).await;
        let v: String = client
            .query_one("SHOW server_version", &[])
            .await
            .expect("version")
            .get(0);
        assert!(v.starts_with(&format!("{major}.")), "{v}");
        drop(client);
        c.stop().expect("stop");
    }
}

#[test]
fn keep_leaves_it_running_and_the_stop_command_works() {
    let c = cluster(Some(15));
    let pid = c.pid().expect("pid");
    let kept = c.keep();
    assert!(alive(pid), "kept cluster must keep running");
    assert!(kept.data_dir.exists());
    assert!(kept.url.contains("@127.0.0.1:"));
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(&kept.stop_command)
        .status()
        .expect("sh");
    assert!(st.success(), "{}", kept.stop_command);
    assert!(!alive(pid));
    assert!(!kept.data_dir.exists());
}

#[test]
fn many_clusters_in_parallel_get_distinct_ports() {
    let handles: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| cluster(Some(15))))
        .collect();
    let clusters: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let mut ports: Vec<u16> = clusters.iter().map(|c| c.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
}

#[test]
fn start_errors_carry_the_server_log() {
    let install = pgdrill_testkit::server_install(Some(15));
    let mut opts = pgdrill_testkit::ClusterOptions::new(install);
    opts.settings
        .push(("no_such_setting".to_string(), "1".to_string()));
    let err = pgdrill_testkit::Cluster::start(opts).expect_err("bad setting must fail");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("did not start") && msg.contains("no_such_setting"),
        "{msg}"
    );
}
