//! `--help` of every command, compared with the snapshots in tests/snapshots/help/. After a
//! deliberate change, refresh them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p pgdrill --test help` and review the diff.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help")
}

fn help(args: &[&str]) -> String {
    let dir = std::env::temp_dir();
    let mut full: Vec<&str> = args.to_vec();
    full.push("--help");
    let out = run(&dir, &full, &[]);
    out.ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    out.stdout
}

/// The subcommands a help text lists under "Commands:" (without `help`).
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path: the top level, each command, each command's subcommands.
fn every_command() -> Vec<Vec<String>> {
    let mut out = vec![vec![]];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&help(&args)) {
            let mut p = path.clone();
            p.push(sub);
            out.push(p);
        }
        i += 1;
    }
    out
}

fn snapshot_name(path: &[String]) -> String {
    if path.is_empty() {
        "pgdrill.txt".into()
    } else {
        format!("pgdrill-{}.txt", path.join("-"))
    }
}

#[test]
fn help_of_every_command_matches_its_snapshot() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let dir = snapshots();
    std::fs::create_dir_all(&dir).expect("snapshot dir");
    let commands = every_command();
    assert!(commands.len() > 15, "{commands:?}");
    let mut differ = Vec::new();
    let mut names = Vec::new();
    for path in &commands {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        let name = snapshot_name(path);
        let file = dir.join(&name);
        names.push(name.clone());
        if update {
            std::fs::write(&file, &text).expect("write snapshot");
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(want) if want == text => {}
            Ok(want) => differ.push(format!(
                "{name} differs:\n--- snapshot\n{want}\n--- now\n{text}"
            )),
            Err(_) => differ.push(format!("{name} is missing; now:\n{text}")),
        }
    }
    // A snapshot of a command that no longer exists is stale.
    for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !names.contains(&n) {
            if update {
                std::fs::remove_file(e.path()).expect("remove stale snapshot");
            } else {
                differ.push(format!("{n} belongs to no command"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{}\n\nIf the change is intended: UPDATE_SNAPSHOTS=1 cargo test -p pgdrill --test help",
        differ.join("\n\n")
    );
}

/// What issue 22 asked of the help texts, checked on every command.
#[test]
fn help_shows_global_options_apart_examples_and_only_the_flags_a_command_reads() {
    for path in every_command() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        let what = format!("pgdrill {} --help", path.join(" "));
        assert!(text.contains("\nGlobal options:\n"), "{what}:\n{text}");
        assert!(
            text.contains("\nExamples:\n"),
            "{what} has no examples:\n{text}"
        );
        assert!(
            !text.contains("=]"),
            "{what} shows an empty env value:\n{text}"
        );
        assert!(
            !text.contains("PGDRILL_STORE]") && !text.contains("env PGDRILL_STORE)"),
            "{what}: the store variable is PGDRILL_STORE_URL:\n{text}"
        );
    }
    let list = help(&["list"]);
    for absent in ["--recipient", "--passphrase-env", "--identity", "--source"] {
        assert!(!list.contains(absent), "list shows {absent}:\n{list}");
    }
    let demo = help(&["demo"]);
    assert!(!demo.contains("Connection options"), "{demo}");
    let backup = help(&["backup"]);
    assert!(
        backup.contains("--recipient") && !backup.contains("--identity"),
        "{backup}"
    );
    let restore = help(&["restore"]);
    assert!(
        restore.contains("--identity") && !restore.contains("--recipient"),
        "{restore}"
    );
}

/// Hidden flags are hidden from help only: scripts that pass them keep working.
#[test]
fn flags_hidden_from_a_command_help_are_still_accepted() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let s = store.display().to_string();
    run(
        dir.path(),
        &[
            "list",
            "--store",
            &s,
            "--identity",
            "/nonexistent",
            "--recipient",
            "age1x",
        ],
        &[],
    )
    .ok();
    run(
        dir.path(),
        &["--store", &s, "drills", "--passphrase-env", "X"],
        &[],
    )
    .ok();
}
