//! The deploy examples (examples/deploy/**) work as written: every `pgdrill ...` command line in
//! them parses with the real binary; the systemd units pass `systemd-analyze verify` and rate
//! "OK" in `systemd-analyze security`, and a backup and a drill traced with strace stay within
//! their system call filter and socket families; the Kubernetes manifests and the Helm chart's rendering
//! validate against the Kubernetes schemas (`helm lint --strict` too) and are hardened; the
//! GitHub Actions workflow passes actionlint; and `pgdrill serve` with the Kubernetes config
//! answers the probes, backs up to S3 and drills.
//! Tools: scripts/setup-test-deps.sh installs them; a missing one fails the test.

mod common;
mod deploy_support;
mod serve_support;
use common::*;
use deploy_support::*;
use serde_json::Value;
use serve_support::{free_port, get, wait_until};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `systemd-analyze security` levels up to this are "OK" (and better).
const MAX_EXPOSURE: f64 = 2.5;

#[test]
fn every_pgdrill_command_line_in_the_deploy_examples_parses() {
    let root = deploy_dir();
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut found: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for path in all {
        let rel = path
            .strip_prefix(&root)
            .expect("below")
            .display()
            .to_string();
        // The chart's templates are checked rendered (helm_chart_...), not as Go templates.
        if rel.starts_with("helm/") {
            continue;
        }
        let mut lines = command_lines(&path, &read(&path));
        if rel == "Dockerfile" {
            // ENTRYPOINT ["pgdrill"] with CMD's JSON array as the arguments.
            let body = read(&path);
            let cmd = body
                .lines()
                .find_map(|l| l.strip_prefix("CMD "))
                .expect("a CMD");
            assert!(body.contains("ENTRYPOINT [\"pgdrill\"]"), "{body}");
            lines.push(serde_json::from_str(cmd).expect("CMD as a JSON array"));
        }
        if rel.ends_with(".yaml") {
            // Containers without a command run the image's ENTRYPOINT, pgdrill, with `args`.
            for doc in yaml_docs(&read(&path)) {
                if !matches!(doc["kind"].as_str(), Some("Deployment" | "CronJob")) {
                    continue;
                }
                for c in pod_spec(&doc)["containers"].as_array().expect("containers") {
                    if c.get("command").is_none() {
                        let args = c["args"].as_array().expect("args without a command");
                        lines.push(
                            args.iter()
                                .map(|a| a.as_str().expect("str").into())
                                .collect(),
                        );
                    }
                }
            }
        }
        found.insert(rel, lines);
    }
    // At least these many per file: a scan that stopped finding them would show here.
    let expected = [
        ("crontab", 4),
        ("github-actions.yml", 4),
        ("Dockerfile", 1),
        ("README.md", 6),
        ("systemd/pgdrill-serve.service", 1),
        ("systemd/pgdrill-backup.service", 2),
        ("systemd/pgdrill-drill.service", 1),
        ("kubernetes/serve.yaml", 1),
        ("kubernetes/cronjobs.yaml", 4),
    ];
    for (file, min) in expected {
        let n = found.get(file).map_or(0, Vec::len);
        assert!(
            n >= min,
            "{file}: {n} pgdrill command lines found, expected {min}+: {found:#?}"
        );
    }
    let mut unique: Vec<&Vec<String>> = found.values().flatten().collect();
    unique.sort();
    unique.dedup();
    let failures: Vec<String> = unique
        .iter()
        .filter_map(|args| parses(&bin(), args).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The check can fail: a wrong flag, a wrong value, a wrong command.
    for wrong in ["backup --no-such-flag", "serve --log-format xml", "backups"] {
        let args: Vec<String> = wrong.split(' ').map(String::from).collect();
        assert!(parses(&bin(), &args).is_err(), "`pgdrill {wrong}` parsed");
    }
}

#[test]
fn systemd_units_pass_verify_and_rate_ok_in_systemd_analyze_security() {
    let analyze = tool("systemd-analyze");
    let dir = deploy_dir().join("systemd");
    // verify checks that ExecStart= is executable: the binary under test stands in for
    // /usr/local/bin/pgdrill, in a copy of the units.
    let copy = tempfile::tempdir().expect("tmp");
    let mut units = Vec::new();
    files(&dir, &mut units);
    units.sort();
    assert_eq!(units.len(), 5, "{units:?}");
    for unit in &units {
        let name = unit.file_name().expect("name");
        let body = read(unit).replace("/usr/local/bin/pgdrill", &bin().display().to_string());
        std::fs::write(copy.path().join(name), body).expect("write unit");
    }
    // The timers fire when their comments say: the drill on first Sundays only, the backup
    // every 6 hours.
    for (timer, check) in [
        ("pgdrill-drill.timer", "first Sunday"),
        ("pgdrill-backup.timer", "6-hourly"),
    ] {
        let body = read(&dir.join(timer));
        let spec = body
            .lines()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .expect("OnCalendar");
        let o = output(Command::new(&analyze).args(["calendar", "--iterations=12", spec]));
        let said = text(&o.stdout);
        let fires: Vec<Vec<&str>> = said
            .lines()
            .filter_map(|l| l.split_once("elapse: ").or_else(|| l.split_once("Iter. #")))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .collect();
        assert_eq!(fires.len(), 12, "{spec}: {said}{}", text(&o.stderr));
        for f in fires {
            // [weekday, date, time, zone], after "N:" for the iterations.
            let f: Vec<&str> = f.into_iter().filter(|w| !w.ends_with(':')).collect();
            let day: u32 = f[1][8..10].parse().expect("day");
            let ok = match check {
                "first Sunday" => f[0] == "Sun" && day <= 7 && f[2] == "04:00:00",
                _ => ["00:00:00", "06:00:00", "12:00:00", "18:00:00"].contains(&f[2]),
            };
            assert!(ok, "{timer} fires at {f:?}, not {check}");
        }
    }
    for unit in &units {
        let name = unit
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let o = output(
            Command::new(&analyze)
                .arg("verify")
                .arg(copy.path().join(&name))
                .current_dir(copy.path()),
        );
        let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(
            o.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {name}:\n{said}"
        );
        if !name.ends_with(".service") {
            continue;
        }
        let body = read(unit);
        let o = output(
            Command::new(&analyze)
                .args(["security", "--offline=yes", "--no-pager"])
                .arg(unit),
        );
        let said = text(&o.stdout);
        let level: f64 = said
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for "))
            .and_then(|(_, rest)| rest.split_once(": "))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {name}:\n{said}{}", text(&o.stderr)));
        assert!(
            level <= MAX_EXPOSURE,
            "{name}: exposure {level} > {MAX_EXPOSURE}:\n{said}"
        );
        // Written where pgdrill writes: state (working dir, reports), spool (TMPDIR), a folder
        // store; the network pg_dump, S3 and drill targets need stays open.
        for line in [
            "ProtectSystem=strict",
            "StateDirectory=pgdrill",
            "WorkingDirectory=/var/lib/pgdrill",
            "CacheDirectory=pgdrill",
            "Environment=TMPDIR=/var/cache/pgdrill",
            "ReadWritePaths=-/var/backups/pgdrill",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=",
            "UMask=0077",
        ] {
            assert!(body.lines().any(|l| l == line), "{name} lacks {line}");
        }
    }
}

#[test]
fn kubernetes_manifests_validate_and_are_hardened() {
    let dir = deploy_dir().join("kubernetes");
    let (config, serve, cron) = (
        dir.join("config.yaml"),
        dir.join("serve.yaml"),
        dir.join("cronjobs.yaml"),
    );
    kubernetes_validate(&[&config, &serve, &cron]);
    let mut docs = yaml_docs(&read(&config));
    docs.extend(yaml_docs(&read(&serve)));
    docs.extend(yaml_docs(&read(&cron)));
    let port = assert_serve(&docs);
    for name in ["pgdrill-backup", "pgdrill-drill"] {
        assert_hardened(object(&docs, "CronJob", Some(name)));
    }
    // Every Secret and ConfigMap the pods name is in config.yaml, and every variable the
    // config reads is in the Secret.
    let secret = object(&docs, "Secret", Some("pgdrill-env"));
    object(&docs, "Secret", Some("pgdrill-identity"));
    object(&docs, "ConfigMap", Some("pgdrill-config"));
    let vars = secret["stringData"].as_object().expect("stringData");
    let mut env: Vec<(&str, &str)> = vars.keys().map(|k| (k.as_str(), "x")).collect();
    env.retain(|(k, _)| *k != "AGE_RECIPIENT");
    env.push(("AGE_RECIPIENT", RECIPIENT));
    let toml = load_config(&docs, &env, port);
    for var in [
        "PROD_DIRECT_URL",
        "STAGING_DIRECT_URL",
        "R2_ACCESS_KEY_ID",
        "DASHBOARD_TOKEN",
    ] {
        assert!(toml.contains(var) && vars.contains_key(var), "{var}");
    }
}

/// helm in examples/deploy/helm, with its cache, config and data in a folder of its own.
fn helm(args: &[&str]) -> (bool, String, String) {
    let home = tempfile::tempdir().expect("tmp");
    let mut c = Command::new(tool("helm"));
    for var in ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"] {
        c.env(var, home.path().join(var));
    }
    let o = output(c.args(args).current_dir(deploy_dir().join("helm")));
    (o.status.success(), text(&o.stdout), text(&o.stderr))
}

#[test]
fn helm_chart_lints_and_renders_the_same_objects() {
    for values in [None, Some("example-values.yaml")] {
        let mut args = vec!["lint", "--strict", "pgdrill"];
        args.extend(values.iter().flat_map(|v| ["-f", v]));
        let (ok, out, err) = helm(&args);
        assert!(
            ok && out.contains("0 chart(s) failed"),
            "helm lint:\n{out}{err}"
        );
    }
    let rendered = tempfile::tempdir().expect("tmp");
    let render = |name: &str, extra: &[&str]| -> (PathBuf, Vec<Value>) {
        let mut args = vec![
            "template",
            "pgdrill",
            "pgdrill",
            "-f",
            "example-values.yaml",
        ];
        args.extend(extra);
        let (ok, out, err) = helm(&args);
        assert!(ok, "helm template {extra:?}:\n{err}");
        let file = rendered.path().join(name);
        std::fs::write(&file, &out).expect("write");
        let docs = yaml_docs(&out);
        (file, docs)
    };
    let (file, docs) = render("default.yaml", &[]);
    let (emptydir_file, emptydir) = render(
        "emptydir.yaml",
        &["--set", "spool.persistence.enabled=false"],
    );
    let (existing_file, existing) = render(
        "existing.yaml",
        &[
            "--set",
            "existingConfigMap=my-config,existingSecret=my-env,identity.existingSecret=my-id",
        ],
    );
    kubernetes_validate(&[&file, &emptydir_file, &existing_file]);
    // Objects of one's own instead of the chart's: named in the pod, not rendered.
    let pod = pod_spec(object(&existing, "Deployment", None));
    let volumes = pod["volumes"].to_string();
    assert!(
        volumes.contains("\"my-config\"") && volumes.contains("\"my-id\""),
        "{volumes}"
    );
    assert!(pod["containers"][0]["envFrom"]
        .to_string()
        .contains("\"my-env\""));
    assert!(existing.iter().all(|d| d["kind"] != "ConfigMap"));
    assert_eq!(
        existing.iter().filter(|d| d["kind"] == "Secret").count(),
        1,
        "only env's"
    );

    let mut kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "Secret",
            "Secret",
            "Service"
        ]
    );
    let port = assert_serve(&docs);
    assert_hardened(object(&emptydir, "Deployment", None));
    assert!(emptydir
        .iter()
        .all(|d| d["kind"] != "PersistentVolumeClaim"));
    let env = [
        ("S3_BUCKET", "b"),
        ("S3_ACCESS_KEY_ID", "k"),
        ("S3_SECRET_ACCESS_KEY", "s"),
        ("AGE_RECIPIENT", RECIPIENT),
    ];
    load_config(&docs, &env, port);
    // The container's arguments parse, and the identity reaches pgdrill as a 0600 copy.
    let d = object(&docs, "Deployment", None);
    let c = &pod_spec(d)["containers"][0];
    let args: Vec<String> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("str").into())
        .collect();
    assert_eq!(args[0], "serve");
    parses(&bin(), &args).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pod_spec(d)["initContainers"][0]["command"][2], "0600");

    // replicas: serve replicas share the fleet through the store's leases. One by default
    // (recreated on rollout); several with a spool of each pod's own.
    assert!(read(&deploy_dir().join("helm/pgdrill/values.yaml")).contains("\nreplicas: 1\n"));
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let (replicas_file, replicas) = render(
        "replicas.yaml",
        &["--set", "replicas=3,spool.persistence.enabled=false"],
    );
    kubernetes_validate(&[&replicas_file]);
    let d = object(&replicas, "Deployment", None);
    assert_eq!(d["spec"]["replicas"], 3);
    assert!(d["spec"]["strategy"].is_null(), "{}", d["spec"]);
    assert_eq!(
        serde_json::to_string(&pod_spec(d)["volumes"]).expect("json"),
        serde_json::to_string(&pod_spec(object(&emptydir, "Deployment", None))["volumes"])
            .expect("json"),
        "the same pod as with one replica and an emptyDir spool"
    );
    assert!(replicas
        .iter()
        .all(|d| d["kind"] != "PersistentVolumeClaim"));
    let (ok, _, err) = helm(&[
        "lint",
        "--strict",
        "pgdrill",
        "--set",
        "replicas=3,spool.persistence.enabled=false",
    ]);
    assert!(ok, "helm lint with replicas=3:\n{err}");
    // A persistent spool volume cannot be shared by the replicas: refused, said why.
    let (ok, _, err) = helm(&["template", "pgdrill", "pgdrill", "--set", "replicas=2"]);
    assert!(
        !ok && err.contains("spool.persistence.enabled=false"),
        "replicas=2 with the persistent spool rendered:\n{err}"
    );
    let (ok, _, err) = helm(&["template", "pgdrill", "pgdrill", "--set", "replicas=0"]);
    assert!(
        !ok && err.contains("1 or more"),
        "replicas=0 rendered:\n{err}"
    );
}

#[test]
fn github_actions_workflow_passes_actionlint_with_a_moving_cache_key_and_an_s3_store() {
    let workflow = deploy_dir().join("github-actions.yml");
    let body = read(&workflow);
    let said = actionlint(&body);
    assert!(said.is_empty(), "actionlint:\n{said}");
    // The linter finds mistakes: a step output that does not exist.
    let broken = body.replace("steps.what.outputs.task", "steps.wat.outputs.task");
    assert!(
        actionlint(&broken).contains("wat"),
        "actionlint missed an undefined step"
    );

    let docs = yaml_docs(&body);
    let steps = docs[0]["jobs"]["pgdrill"]["steps"]
        .as_array()
        .expect("steps");
    let cache = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/cache@"))
        })
        .expect("a cache step");
    let key = cache["with"]["key"].as_str().expect("key");
    // The key moves with pgdrill's commit and lockfile, not with a branch name.
    for part in [
        "steps.src.outputs.commit",
        "hashFiles(",
        "Cargo.lock",
        "runner.os",
    ] {
        assert!(key.contains(part), "cache key {key} lacks {part}");
    }
    let src = steps
        .iter()
        .find(|s| s["id"] == "src")
        .expect("the pgdrill source checkout");
    assert_eq!(src["with"]["ref"], "${{ env.PGDRILL_REF }}");
    // The build runs only on a cache miss, from the checked-out lockfile.
    let build = steps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("cargo install"))
        })
        .expect("a build step");
    assert!(build["if"]
        .as_str()
        .expect("if")
        .contains("cache-hit != 'true'"));
    assert!(build["run"].as_str().expect("run").contains("--locked"));
    // The store survives the run: the config the workflow names stores to S3 (R2), with its
    // variables filled from secrets.
    let env = docs[0]["env"].as_object().expect("env");
    let config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/supabase-r2-prisma/pgdrill.toml");
    let table: toml::Table = read(&config).parse().expect("toml");
    let url = table["store"]["url"].as_str().expect("store url");
    assert!(url.starts_with("s3://"), "{url}");
    for var in [
        "R2_BUCKET",
        "R2_ACCOUNT_ID",
        "R2_ACCESS_KEY_ID",
        "R2_SECRET_ACCESS_KEY",
    ] {
        assert_eq!(env[var], format!("${{{{ secrets.{var} }}}}"), "{var}");
    }
    assert!(
        !env.contains_key("BACKUP_DIR"),
        "a folder store would not survive the run"
    );
}

/// `kubernetes/config.yaml`'s pgdrill.toml run by `pgdrill serve` as the Deployment runs it:
/// the variables its Secret names, the identity from PGDRILL_IDENTITY, TMPDIR as the spool.
/// Only the store's endpoint (`PGDRILL_STORE_ENDPOINT`, a loopback S3 server in place of R2)
/// and the listen address (`--listen 127.0.0.1:<free port>`) differ.
#[tokio::test(flavor = "multi_thread")]
async fn serve_with_the_kubernetes_config_answers_its_probes_backs_up_to_s3_and_drills() {
    let src = source(None).await;
    let s3 = pgdrill_testkit::S3Server::start();
    s3.create_bucket("pgdrill-deploy");
    let dir = tempfile::tempdir().expect("tmp");
    let docs = yaml_docs(&read(&deploy_dir().join("kubernetes/config.yaml")));
    let toml = object(&docs, "ConfigMap", Some("pgdrill-config"))["data"]["pgdrill.toml"]
        .as_str()
        .expect("pgdrill.toml")
        .to_string();
    let config = dir.path().join("pgdrill.toml");
    std::fs::write(&config, toml).expect("write config");
    let key = dir.path().join("age.key");
    let o = output(Command::new(tool("age-keygen")).arg("-o").arg(&key));
    assert!(o.status.success(), "age-keygen: {}", text(&o.stderr));
    let said = text(&o.stderr);
    let recipient = said
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .unwrap_or_else(|| panic!("no public key in {said}"))
        .to_string();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).expect("mkdir spool");
    let token = "deploy-test-dashboard-token";
    let port = free_port();
    let mut child = cmd(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PGDRILL_CONFIG", &config)
        .env("PGDRILL_IDENTITY", &key)
        .env("TMPDIR", &spool)
        .env("PGDRILL_STORE_ENDPOINT", s3.endpoint())
        .env("PROD_DIRECT_URL", &src.url)
        .env("STAGING_DIRECT_URL", src.cluster.url("postgres"))
        .env("R2_ACCOUNT_ID", "unused-with-the-endpoint-set")
        .env("R2_BUCKET", "pgdrill-deploy")
        .env("R2_ACCESS_KEY_ID", s3.access_key())
        .env("R2_SECRET_ACCESS_KEY", s3.secret_key())
        .env("AGE_RECIPIENT", &recipient)
        .env("DASHBOARD_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    // The backup and drill schedules have fired before and nothing exists: serve catches up.
    let done = |keys: &[String], kind: &str, file: &str| {
        keys.iter()
            .any(|k| k.starts_with(&format!("pgdrill/app/{kind}/")) && k.ends_with(file))
    };
    wait_until(&mut child, 90, "a backup and a drill in S3", || {
        let keys = s3.list_keys("pgdrill-deploy");
        done(&keys, "backups", "/manifest.json") && done(&keys, "drills", "/result.json")
    });
    // What the probes ask: /healthz without a token; the rest needs DASHBOARD_TOKEN.
    assert_eq!(get(port, "/healthz", None), (200, "ok\n".into()));
    assert_eq!(get(port, "/metrics", None).0, 401);
    let (code, metrics) = get(port, "/metrics", Some(&format!("Bearer {token}")));
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.contains("pgdrill_"), "{metrics}");
    // The drill passed: restored from S3 with the identity, on the target server.
    let result = s3
        .list_keys("pgdrill-deploy")
        .into_iter()
        .find(|k| k.starts_with("pgdrill/app/drills/") && k.ends_with("/result.json"))
        .expect("result.json");
    let (code, body) = s3
        .request("GET", &format!("/pgdrill-deploy/{result}"), b"")
        .expect("GET");
    assert_eq!(code, 200, "{body}");
    let r: Value = serde_json::from_str(&body).expect("result.json");
    assert_eq!(r["verdict"], "pass", "{r:#}");

    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = child.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "serve exited {status}:\n{err}");
    assert!(
        !err.contains("accessible by group or others"),
        "the identity file warning:\n{err}"
    );
}

/// The units' `SystemCallFilter=@system-service` and `RestrictAddressFamilies=` leave what
/// pgdrill and the PostgreSQL programs it starts need: a backup and a drill on a throwaway
/// cluster (`pgdrill demo`: pg_dump, initdb, postgres, pg_restore) traced with strace use
/// only system calls of @system-service and sockets of AF_UNIX, AF_INET and AF_INET6. (Run
/// as root, it also makes the calls that start the cluster as the postgres user: a superset.)
#[test]
fn a_backup_and_a_drill_make_only_the_calls_the_hardened_units_allow() {
    let dir = tempfile::tempdir().expect("tmp");
    let trace = dir.path().join("trace");
    let demo = dir.path().join("demo");
    let o = output(
        Command::new(tool("strace"))
            .args(["-f", "-qq", "-s", "8", "-e", "signal=none", "-o"])
            .arg(&trace)
            .arg(bin())
            .arg("demo")
            .arg("--dir")
            .arg(&demo)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            )
            .env("PGDRILL_PG_PATHS", pg_paths())
            .current_dir(dir.path()),
    );
    let stdout = text(&o.stdout);
    assert!(
        o.status.success() && stdout.contains("— PASS"),
        "pgdrill demo under strace:\n{stdout}{}",
        text(&o.stderr)
    );
    let allowed = syscall_group(&tool("systemd-analyze"), "@system-service");
    let (used, families) = traced_calls(&read(&trace));
    assert!(used.len() > 40 && used.contains("execve"), "{used:?}");
    let denied: Vec<&String> = used.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(denied.is_empty(), "outside @system-service: {denied:?}");
    assert!(
        families.contains("AF_INET") || families.contains("AF_UNIX"),
        "{families:?}"
    );
    for f in &families {
        assert!(
            ["AF_UNIX", "AF_LOCAL", "AF_INET", "AF_INET6"].contains(&f.as_str()),
            "socket family {f} is not in RestrictAddressFamilies ({families:?})"
        );
    }
}
