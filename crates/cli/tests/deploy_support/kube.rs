//! Checks shared by the Kubernetes manifests and the rendered Helm chart.

use super::*;
use serde_json::Value;

/// The Kubernetes version the manifests are validated against (kubernetes-validate's schemas).
pub const KUBERNETES: &str = "1.33.0";

/// What every pod of the examples must have: non-root, read-only root, no capabilities, a
/// memory limit, no service account token.
pub fn assert_hardened(o: &Value) {
    let name = &o["metadata"]["name"];
    let pod = pod_spec(o);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    // The user the Dockerfile creates and runs as.
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    assert!(dockerfile.contains("--uid 10001") && dockerfile.contains("\nUSER 10001:10001\n"));
    assert_eq!(pod["securityContext"]["runAsUser"], 10001, "{name}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
    let containers = pod["containers"].as_array().expect("containers").iter();
    let init = pod["initContainers"].as_array().into_iter().flatten();
    for c in containers.chain(init) {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}/{}", c["name"]);
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{name}/{}",
            c["name"]
        );
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(
            c["resources"]["limits"]["memory"].is_string(),
            "{name}: {c}"
        );
        // Every path pgdrill writes to is a volume: TMPDIR, and /tmp.
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["mountPath"].as_str()).collect())
            .unwrap_or_default();
        if c["name"] == "pgdrill" {
            assert!(mounts.contains(&"/tmp"), "{name}: {mounts:?}");
        }
        for e in c["env"].as_array().into_iter().flatten() {
            if matches!(e["name"].as_str(), Some("TMPDIR" | "PGDRILL_IDENTITY")) {
                let v = e["value"].as_str().expect("value");
                assert!(
                    mounts.iter().any(|m| v.starts_with(m)),
                    "{name}: {v} not in {mounts:?}"
                );
            }
        }
    }
}

/// The serve Deployment: probes on /healthz at the named port, one replica, and a Service
/// that selects it. Returns the container port.
pub fn assert_serve(docs: &[Value]) -> u64 {
    let d = object(docs, "Deployment", None);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let pod = pod_spec(d);
    let c = &pod["containers"][0];
    assert_eq!(c["ports"][0]["name"], "http");
    let port = c["ports"][0]["containerPort"].as_u64().expect("port");
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    assert!(
        dockerfile.contains(&format!("\nEXPOSE {port}\n")),
        "EXPOSE vs {port}"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe}");
    }
    // SIGTERM: shutdown_grace_seconds (60) for the running job, then the abort.
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace")
            > 60
    );
    let svc = object(docs, "Service", None);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&labels[k], v, "the Service's selector {k} misses the pods");
    }
    assert_hardened(d);
    port
}

/// Loads the ConfigMap's pgdrill.toml as pgdrill does (with its variables set); returns it.
pub fn load_config(docs: &[Value], env: &[(&str, &str)], listen_port: u64) -> String {
    let toml = object(docs, "ConfigMap", None)["data"]["pgdrill.toml"]
        .as_str()
        .expect("pgdrill.toml in the ConfigMap")
        .to_string();
    let env: pgdrill_core::env::Env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let s = pgdrill_core::config::Settings::load(Some(&toml), "pgdrill.toml", Path::new("/"), &env)
        .unwrap_or_else(|e| panic!("the ConfigMap's pgdrill.toml does not load: {e}\n{toml}"));
    let listen = s.serve.listen.expect("[serve] listen");
    assert!(
        listen.ip().is_unspecified(),
        "serve must listen on all addresses in a pod: {listen}"
    );
    assert_eq!(
        u64::from(listen.port()),
        listen_port,
        "[serve] listen vs containerPort"
    );
    assert_eq!(s.databases.len(), 1);
    toml
}

pub fn kubernetes_validate(files: &[&Path]) {
    let o = output(
        Command::new(tool("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", KUBERNETES])
            .args(files),
    );
    assert!(
        o.status.success(),
        "kubernetes-validate --strict -k {KUBERNETES}:\n{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// A valid age recipient for loading configs (its identity is nobody's).
pub const RECIPIENT: &str = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";
