use super::host::effective_uid;
use super::text::shell_quote;
use super::*;

#[test]
fn quoting() {
    assert_eq!(conf_quote("it's"), "'it''s'");
    assert_eq!(conf_quote(r"a\b"), r"'a\\b'");
    assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    assert_eq!(percent_encode("my db/x"), "my%20db%2Fx");
    assert_eq!(percent_encode("app_1"), "app_1");
}

#[test]
fn stop_command_of_a_kept_cluster_nests_no_quotes() {
    let as_postgres = stop_command(
        "/usr/lib/postgresql/17/bin/pg_ctl",
        "/tmp/.tmpAb12/data",
        "/tmp/.tmpAb12",
        Some("postgres"),
    );
    assert_eq!(
            as_postgres,
            "su -s /bin/sh postgres -c '/usr/lib/postgresql/17/bin/pg_ctl -D /tmp/.tmpAb12/data -w stop -m fast' && rm -rf /tmp/.tmpAb12"
        );
    let plain = stop_command(
        "/opt/pg/bin/pg_ctl",
        "/tmp/my dir/data",
        "/tmp/my dir",
        None,
    );
    assert_eq!(
        plain,
        "/opt/pg/bin/pg_ctl -D '/tmp/my dir/data' -w stop -m fast && rm -rf '/tmp/my dir'"
    );
}

#[test]
fn uid_and_users() {
    assert!(effective_uid().is_some());
    let p = random_password().expect("pw");
    assert_eq!(p.len(), 32);
    assert_ne!(p, random_password().expect("pw"));
}

#[test]
fn tails() {
    assert_eq!(tail("a\nb\nc", 2), "b\nc");
    assert_eq!(tail("a", 5), "a");
}

#[test]
fn cluster_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Cluster>();
}
