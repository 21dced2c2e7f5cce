//! pgdrill's own connections and its pg_dump children honour sslmode against a server that
//! only accepts TLS (hostssl), as managed databases (RDS force_ssl, Supabase) do.

mod common;
use common::*;
use pgdrill_testkit as tk;
use std::process::Command;

fn sh(cmd: &str) {
    let st = Command::new("bash")
        .args(["-c", cmd])
        .status()
        .expect("bash");
    assert!(st.success(), "{cmd}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_work_over_tls_and_fail_without_it_when_the_server_requires_it() {
    // Debian's PostgreSQL 15 is built with OpenSSL (the PyPI/npm builds are not).
    let src = source(Some(15)).await;
    let data = src.cluster.data_dir().display().to_string();
    // A test CA and a server certificate it signed for "localhost".
    sh(&format!(
        "cd '{data}' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pgdrill-test-ca \
         -keyout ca.key -out ca.crt 2>/dev/null \
         && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null \
         && printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext.cnf \
         && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out server.crt 2>/dev/null \
         && chmod 600 server.key && chown postgres server.key server.crt \
         && sed -i 's/^host /hostssl /' pg_hba.conf"
    ));
    let admin = tk::connect(&src.cluster.url("postgres")).await;
    admin
        .batch_execute("alter system set ssl = on")
        .await
        .expect("enable ssl");
    admin
        .batch_execute("select pg_reload_conf()")
        .await
        .expect("reload");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store").display().to_string();
    let with = |mode: &str| format!("{}?sslmode={mode}", src.url);
    // pg_dump must be built with SSL too: Debian's is, the PyPI PostgreSQL 18 build is not.
    let run = |dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push(("PGDRILL_PG_BIN", "/usr/lib/postgresql/15/bin"));
        common::run(dir, args, &env)
    };

    let plain = run(
        dir.path(),
        &["backup", "--store", &store],
        &[("PGDRILL_SOURCE_URL", with("disable").as_str())],
    );
    plain.code(1);
    assert!(
        plain.stderr.contains("pg_hba.conf") || plain.stderr.contains("SSL"),
        "{}",
        plain.stderr
    );

    run(
        dir.path(),
        &["backup", "--store", &store],
        &[("PGDRILL_SOURCE_URL", with("require").as_str())],
    )
    .ok();
    // verify-full: the test CA as the root, the host name the certificate was issued for.
    let full = format!(
        "{}?sslmode=verify-full&sslrootcert={data}/ca.crt",
        src.url.replace("127.0.0.1", "localhost")
    );
    run(
        dir.path(),
        &["backup", "--store", &store],
        &[("PGDRILL_SOURCE_URL", full.as_str())],
    )
    .ok();
    // verify-full against Mozilla's roots only: the test CA is not trusted.
    let untrusted = format!(
        "{}?sslmode=verify-full",
        src.url.replace("127.0.0.1", "localhost")
    );
    let out = run(
        dir.path(),
        &["backup", "--store", &store],
        &[("PGDRILL_SOURCE_URL", untrusted.as_str())],
    );
    out.code(1);
    assert!(!out.stderr.contains(src.cluster.password()));
    let list = run(dir.path(), &["--json", "list", "--store", &store], &[]);
    assert_eq!(list.json()["backups"].as_array().expect("list").len(), 2);
}
