use super::*;

#[test]
fn stderr_keeps_the_first_and_last_lines_and_reads_the_rest() {
    let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let got = collect(text.as_bytes(), Keep { head: 3, tail: 2 }, None);
    assert_eq!(got, ["line 0", "line 1", "line 2", "line 98", "line 99"]);
    let got = collect(&b"a\r\nb"[..], Keep::LAST, None);
    assert_eq!(got, ["a", "b"]);
    let long = "x".repeat(MAX_LINE * 2) + "\nend\n";
    let got = collect(long.as_bytes(), Keep::MANY, None);
    assert_eq!(got[0].len(), MAX_LINE);
    assert_eq!(got[1], "end");
}

fn conn() -> ConnSpec {
    ConnSpec::parse("postgres://u:secret@db.example:5432/app").expect("spec")
}

#[test]
fn commands_get_the_allowlisted_environment_only() {
    let cmd = command(Path::new("/bin/true"), &conn(), None);
    let envs: Vec<(String, Option<String>)> = cmd
        .get_envs()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.map(|v| v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    assert!(envs
        .iter()
        .any(|(k, v)| k == "PGHOST" && v.as_deref() == Some("db.example")));
    assert!(!envs.iter().any(|(k, _)| k == "PGPASSWORD"));
    assert!(!envs
        .iter()
        .any(|(_, v)| v.as_deref().is_some_and(|v| v.contains("secret"))));
    assert!(!cmd
        .get_args()
        .any(|a| a.to_string_lossy().contains("secret")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_is_stopped_by_signal_and_killed_when_dropped() {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo started >&2; exec sleep 30"]);
    let mut c = Child::spawn(cmd, Keep::MANY).expect("spawn");
    assert!(c.exited_within(Duration::from_millis(200)).await.is_none());
    let t = Instant::now();
    let status = c.stop(Duration::from_secs(5)).await.expect("status");
    assert!(t.elapsed() < Duration::from_secs(5), "SIGTERM ended it");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15));
    assert_eq!(c.stderr_lines(), ["started"]);

    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "sleep 30"]);
    let c = Child::spawn(cmd, Keep::LAST).expect("spawn");
    let pid = c.pid();
    drop(c);
    // Reaped: no such process any more.
    let alive = rustix::process::test_kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
    );
    assert!(alive.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_is_noticed_and_stdin_piped() {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "cat >/dev/null; exit 3"])
        .stdin(Stdio::piped());
    let mut c = Child::spawn(cmd, Keep::MANY).expect("spawn");
    drop(c.take_stdin());
    let t = Instant::now();
    let s = c.wait().await.expect("wait");
    assert_eq!(s.code(), Some(3));
    assert!(t.elapsed() < Duration::from_secs(2));
    // A terminator that fires after the exit sends nothing (finished first).
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let term = c.terminate_on(async move {
        let _ = rx.await;
    });
    term.finish().await;
    drop(tx);
}

#[test]
fn run_keeps_both_outputs_and_plain_commands_get_the_allowlist_only() {
    let mut cmd = plain("/bin/sh");
    cmd.args([
        "-c",
        "echo out1; echo err1 >&2; echo out2; env | grep -c PGDRILL_CHILD_TEST_SECRET; exit 4",
    ]);
    std::env::set_var("PGDRILL_CHILD_TEST_SECRET", "x");
    let r = run(cmd, Keep::LAST).expect("run");
    assert_eq!(r.status.code(), Some(4));
    assert_eq!(r.stdout, ["out1", "out2", "0"]);
    assert_eq!(r.stderr, ["err1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_inherit_all_but_the_hidden_and_libpq_variables() {
    std::env::set_var("PGDRILL_CHILD_TEST_KEPT", "kept");
    std::env::set_var("PGDRILL_CHILD_TEST_HIDDEN", "hidden");
    std::env::set_var("PGSERVICE", "svc");
    let mut cmd = user_command("sh", ["PGDRILL_CHILD_TEST_HIDDEN"]);
    cmd.args([
        "-c",
        "echo \"$PGDRILL_CHILD_TEST_KEPT/$PGDRILL_CHILD_TEST_HIDDEN/$PGSERVICE\"",
    ]);
    let mut c = Child::spawn(cmd, Keep::MANY).expect("spawn");
    c.capture_stdout(Keep::MANY);
    c.output_closed().await;
    assert!(c.wait().await.expect("wait").success());
    assert_eq!(c.stdout_lines(), ["kept//"]);
}
