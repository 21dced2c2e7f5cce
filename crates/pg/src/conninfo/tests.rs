use super::*;

fn p(s: &str) -> ConnSpec {
    ConnSpec::parse_with_env(s, &[]).expect("parse")
}

#[test]
fn a_database_name_that_is_not_utf8_is_refused_not_mangled() {
    let e = ConnSpec::parse_with_env("postgresql://u@h/caf%E9", &[]).expect_err("latin1 name");
    assert!(e.to_string().contains("database name is not UTF-8"), "{e}");
    let e = ConnSpec::parse_with_env("postgresql://h/db?user=%FF", &[]).expect_err("name");
    assert!(e.to_string().contains("user name is not UTF-8"), "{e}");
    let ok = ConnSpec::parse_with_env("postgresql://u@h/caf%C3%A9", &[]).expect("utf-8");
    assert_eq!(ok.dbname, "café");
}

#[test]
fn parses_full_url_and_redacts_password() {
    let c = p("postgresql://app:s3cr%3At@db.example.com:6432/prod?sslmode=require&password=x2");
    assert_eq!(c.host, "db.example.com");
    assert_eq!(c.port, 6432);
    assert_eq!(c.user, "app");
    assert_eq!(c.password.as_ref().map(|s| s.expose()), Some("x2"));
    assert_eq!(c.dbname, "prod");
    let r = c.redacted();
    assert_eq!(
        r,
        "postgresql://app@db.example.com:6432/prod?sslmode=require"
    );
    assert!(!format!("{c:?}").contains("x2"));
}

#[test]
fn socket_dirs_and_env_defaults() {
    let env = vec![
        ("PGUSER".to_string(), "envuser".to_string()),
        ("PGPASSWORD".to_string(), "envpw".to_string()),
    ];
    let c =
        ConnSpec::parse_with_env("postgres:///mydb?host=/tmp/sock&port=5555", &env).expect("parse");
    assert_eq!(c.host, "/tmp/sock");
    assert_eq!(c.port, 5555);
    assert_eq!(c.user, "envuser");
    assert_eq!(c.password.as_ref().map(|s| s.expose()), Some("envpw"));
    assert_eq!(
        c.redacted(),
        "postgresql://envuser@:5555/mydb?host=/tmp/sock"
    );
}

#[test]
fn identity_folds_loopback() {
    assert_eq!(
        p("postgres://a@127.0.0.1:5432/x").identity_key(),
        p("postgres://b@LOCALHOST/x").identity_key()
    );
    assert_ne!(
        p("postgres://a@127.0.0.1:5432/x").identity_key(),
        p("postgres://a@127.0.0.1:5433/x").identity_key()
    );
}

#[test]
fn rejects_bad_urls_without_leaking() {
    let e = ConnSpec::parse_with_env("mysql://u:CANARY@h/x", &[]).expect_err("must fail");
    assert!(!e.to_string().contains("CANARY"));
    let e = ConnSpec::parse_with_env("postgres://u:CANARY@h:port/x", &[]).expect_err("fail");
    assert!(!e.to_string().contains("CANARY"));
    // Unencoded '/', '?' or '@' in a password.
    for raw in [
        "postgresql://u:CANARY/x@h:5432/db",
        "postgresql://u:12/CANARY@h/db",
        "postgresql://u:CANARY?x@h/db",
        "postgresql://u:12?CANARY@h/db",
        "postgresql://u:ab/CANARY?x=1@h/db",
    ] {
        let e = ConnSpec::parse_with_env(raw, &[]).expect_err(raw);
        assert!(!e.to_string().contains("CANARY"), "{raw}: {e}");
    }
    assert_eq!(
        redact_url("postgresql://u:pw/CANARY@h:1/db?password=CANARY"),
        "postgresql://u@h:1/db"
    );
    let c = p("postgresql://u:p%2FCANARY@h/db?application_name=me@corp");
    assert_eq!(c.password.as_ref().map(|s| s.expose()), Some("p/CANARY"));
    assert!(!c.redacted().contains("CANARY"));
}

#[test]
fn passfile_escapes_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let c = p("postgres://u:a%3Ab%5Cc@h/x");
    let f = c.write_passfile().expect("write").expect("some");
    let text = std::fs::read_to_string(f.path()).expect("read");
    assert_eq!(text, "*:*:*:*:a\\:b\\\\c\n");
    let mode = std::fs::metadata(f.path())
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
