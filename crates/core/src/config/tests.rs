use super::*;
use std::path::Path;

/// Settings from `text` alone (no environment).
fn load(text: &str) -> Result<Settings> {
    Settings::load(Some(text), "t.toml", Path::new("/"), &Env::new())
}

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_overrides_file_and_interpolates() {
    let text = r#"
        [store]
        url = "s3://${BUCKET}/pgdrill"
        region = "eu-west-1"
        [policy]
        rpo_minutes = 60
        [[database]]
        name = "app"
        url_env = "PROD_DIRECT_URL"
    "#;
    let e = env(&[
        ("BUCKET", "b1"),
        ("PGDRILL_STORE_REGION", "auto"),
        ("PGDRILL_POLICY_RPO_MINUTES", "30"),
        ("PROD_DIRECT_URL", "postgres://u:pw@h/db"),
    ]);
    let s = Settings::load(Some(text), "t.toml", Path::new("/"), &e).expect("load");
    assert_eq!(
        s.store_url.as_ref().map(ToString::to_string).as_deref(),
        Some("s3://b1/pgdrill")
    );
    assert_eq!(s.store_options.region.as_deref(), Some("auto"));
    assert_eq!(s.policy.rpo_minutes, Some(30));
    let spec = s.databases[0].source_spec(&e).expect("spec");
    assert_eq!(spec.dbname, "db");
}

#[test]
fn policy_file_of_seed_000_is_accepted_and_overlaid() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("ops")).expect("mkdir");
    std::fs::write(
        dir.path().join("ops/ops_backup_policy.json"),
        r#"{"rpo_minutes": 60, "rto_minutes": 240, "retention_days": 30,
            "logical_export_frequency_minutes": 360, "monthly_restore_day": "first_sunday"}"#,
    )
    .expect("write");
    let text = "policy_file = \"ops/ops_backup_policy.json\"\n[policy]\nrto_minutes = 120\n";
    let s = Settings::load(Some(text), "t", dir.path(), &Env::new()).expect("load");
    assert_eq!(s.policy.rpo_minutes, Some(60));
    assert_eq!(s.policy.rto_minutes, Some(120));
    assert_eq!(
        s.policy.monthly_restore_day.as_deref(),
        Some("first_sunday")
    );
    assert_eq!(s.policy.freshness_minutes(), 480);
}

#[test]
fn store_url_is_parsed_at_load() {
    let load = |text: &str, vars: &[(&str, &str)]| {
        Settings::load(Some(text), "t.toml", Path::new("/etc/pgdrill"), &env(vars))
    };
    let s = load("[store]\nurl = \"backups\"\n", &[]).expect("relative folder");
    assert_eq!(
        s.store_url.as_ref().and_then(|l| l.folder()),
        Some(Path::new("/etc/pgdrill/backups"))
    );
    let s = load("", &[("PGDRILL_STORE", "s3://b/p/")]).expect("from the environment");
    assert_eq!(s.store_url.as_ref().and_then(|l| l.prefix()), Some("p"));
    assert!(load("", &[("PGDRILL_STORE", "")])
        .expect("empty")
        .store_url
        .is_none());
    for (text, vars, origin) in [
        ("[store]\nurl = \"gs://b/p\"\n", &[][..], "[store] url"),
        (
            "",
            &[("PGDRILL_STORE", "s3://k:CANARY@b/p")][..],
            "PGDRILL_STORE",
        ),
    ] {
        let e = load(text, vars).expect_err("an unusable store URL");
        let m = e.to_string();
        assert_eq!(e.exit_code(), 2, "{m}");
        assert!(m.starts_with(origin) && m.contains("is not usable"), "{m}");
        assert!(!m.contains("CANARY"), "{m}");
    }
}

#[test]
fn store_timeouts_and_lock_wait_come_from_file_or_environment() {
    use std::time::Duration;
    let s = load("").expect("defaults");
    assert_eq!(s.store_options.timeout, None);
    assert_eq!(s.lock_wait_timeout, Duration::from_secs(300));
    let e = env(&[
        ("PGDRILL_STORE_TIMEOUT_SECONDS", "5"),
        ("PGDRILL_STORE_RETRY_SECONDS", "45"),
        ("PGDRILL_BACKUP_LOCK_WAIT_TIMEOUT_SECONDS", "20"),
    ]);
    let s = Settings::load(None, "environment", Path::new("/"), &e).expect("env");
    assert_eq!(s.store_options.timeout, Some(Duration::from_secs(5)));
    assert_eq!(s.store_options.retry_window, Some(Duration::from_secs(45)));
    assert_eq!(s.lock_wait_timeout, Duration::from_secs(20));
    for bad in [
        "[store]\ntimeout_seconds = 0\n",
        "[backup]\nlock_wait_timeout_seconds = 0\n",
    ] {
        let e = load(bad).expect_err(bad);
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}

#[test]
fn store_checksum_is_typed_at_load() {
    use pgdrill_store::CopyCheck;
    let s = load("").expect("defaults");
    assert_eq!(s.store_options.checksum, None, "the provider's default");
    for (text, want) in [
        ("sha256", CopyCheck::Sha256),
        ("etag", CopyCheck::Etag),
        ("none", CopyCheck::Size),
    ] {
        let s = load(&format!("[store]\nchecksum = \"{text}\"\n")).expect(text);
        assert_eq!(s.store_options.checksum, Some(want), "{text}");
    }
    let e = load("[store]\nchecksum = \"md5\"\n").expect_err("md5");
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(
        e.to_string().contains("\"sha256\", \"etag\" or \"none\""),
        "{e}"
    );
}

#[test]
fn bad_config_is_invalid_with_a_named_key() {
    let e = load("[store]\nurll = 1\n").expect_err("unknown key");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("urll"), "{e}");
    let e = load("[store]\nurl = \"${NOPE}\"\n").expect_err("unset var");
    assert!(e.to_string().contains("NOPE"));
    let e = load("[compression]\nlevel = 40\n").expect_err("level");
    assert!(e.to_string().contains("compression.level"));
    // Caught when the config is read (doctor, serve), not when a restore starts.
    let e = load("[restore]\nmaintenance_work_mem = \"1GB -c fsync=off\"\n")
        .expect_err("maintenance_work_mem");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("maintenance_work_mem"), "{e}");
    load("[restore]\nmaintenance_work_mem = \"512MB\"\n").expect("a memory size");
}

#[test]
fn several_databases_and_name_from_url() {
    let text = "[[database]]\nurl_env = \"A\"\n[[database]]\nname = \"b\"\nurl_env = \"B\"\n";
    let e = env(&[("A", "postgres://u@h/alpha"), ("B", "postgres://u@h/beta")]);
    let s = Settings::load(Some(text), "t", Path::new("/"), &e).expect("load");
    let names: Vec<_> = s
        .select(None)
        .expect("all")
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(names, vec!["alpha", "b"]);
    assert_eq!(s.select(Some("b")).expect("b").len(), 1);
    assert!(s.select(Some("zzz")).is_err());
}

#[test]
fn an_unknown_key_from_the_environment_names_the_variable() {
    let e = Settings::load(
        None,
        "environment",
        Path::new("/"),
        &env(&[("PGDRILL_STORE_URLL", "x")]),
    )
    .expect_err("typo");
    assert!(e.to_string().contains("PGDRILL_STORE_URLL"), "{e}");
    // Variables with their own meaning are not config keys.
    Settings::load(
        None,
        "environment",
        Path::new("/"),
        &env(&[("PGDRILL_IDENTITY", "/k")]),
    )
    .expect("identity");
}

#[test]
fn alerts_are_checked_at_load_but_their_variables_only_when_sent() {
    let e = load(
        "[alerts.smtp]\nhost = \"mail.example.com\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\ntls = true\nstarttls = true\n",
    )
    .expect_err("tls and starttls");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("alerts.smtp"), "{e}");
    // A variable a cron job's environment lacks does not stop `list` or `status`.
    load("[alerts]\nslack_webhook_env = \"UNSET_SLACK_URL\"\n").expect("loads");
}

#[test]
fn literal_dollar_brace_is_kept() {
    assert_eq!(
        interpolate("a$${X}b$c", &Env::new(), "k").expect("ok"),
        "a${X}b$c"
    );
}

#[test]
fn restore_maintenance_work_mem_is_typed_at_load() {
    let s = load("[restore]\nmaintenance_work_mem = \"512MB\"\njobs = 4\n").expect("load");
    assert_eq!(
        s.restore
            .maintenance_work_mem
            .as_ref()
            .map(MemorySize::as_str),
        Some("512MB")
    );
    assert_eq!(s.restore.jobs, Some(4));
    let e = load("[restore]\nmaintenance_work_mem = \"lots\"\n").expect_err("lots");
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "[restore] maintenance_work_mem = \"lots\" is not a PostgreSQL memory size: write it like \"512MB\" or \"2GB\""
    );
    let from_env = Settings::load(
        None,
        "t.toml",
        Path::new("/"),
        &env(&[("PGDRILL_RESTORE_MAINTENANCE_WORK_MEM", "1 GB")]),
    )
    .expect_err("env");
    assert!(from_env
        .to_string()
        .contains("[restore] maintenance_work_mem"));
}

#[test]
fn backup_jobs_and_spool_come_from_file_or_environment() {
    let s = load("").expect("defaults");
    assert_eq!(s.backup_jobs, 1);
    assert_eq!(s.backup_spool_window, 64 << 20);
    assert_eq!(s.backup_spool_dir, None);
    let s =
        load("[backup]\njobs = 4\nspool_dir = \"spool\"\nspool_window_mib = 8\n").expect("file");
    assert_eq!(s.backup_jobs, 4);
    assert_eq!(s.backup_spool_window, 8 << 20);
    assert!(s.backup_spool_dir.expect("dir").ends_with("spool"));
    let e = env(&[("PGDRILL_BACKUP_JOBS", "3")]);
    let s = Settings::load(None, "environment", Path::new("/"), &e).expect("env");
    assert_eq!(s.backup_jobs, 3);
    for bad in ["[backup]\njobs = 0\n", "[backup]\njobs = 65\n"] {
        let e = load(bad).expect_err(bad);
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}

#[test]
fn several_stores_are_named_and_ordered_with_their_own_retention() {
    let text = r#"
        [retention]
        keep_last = 3

        [[store]]
        name = "primary"
        url = "s3://bucket-a/pg"
        endpoint = "http://127.0.0.1:9000"

        [[store]]
        name = "offsite"
        url = "s3://bucket-b/pg"
        part_size_mib = 8

        [store.retention]
        keep_monthly = 12

        [[store]]
        name = "local"
        url = "backups"
    "#;
    let s = Settings::load(Some(text), "t.toml", Path::new("/etc/pgdrill"), &Env::new())
        .expect("several stores");
    let names: Vec<_> = s.stores.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["primary", "offsite", "local"]);
    assert_eq!(
        s.store_url.as_ref().map(ToString::to_string),
        Some(s.stores[0].location.to_string())
    );
    assert_eq!(
        s.stores[0].options.endpoint.as_deref(),
        Some("http://127.0.0.1:9000")
    );
    assert_eq!(s.stores[1].part_size, 8 << 20);
    assert!(s.stores[0].retention.is_none());
    assert_eq!(
        s.stores[1].retention.as_ref().and_then(|r| r.keep_monthly),
        Some(12)
    );
    assert_eq!(
        s.stores[2].location.folder(),
        Some(Path::new("/etc/pgdrill/backups"))
    );
    assert_eq!(s.retention.keep_last, Some(3));
}

#[test]
fn one_store_table_is_named_default() {
    let s = Settings::load(
        Some("[store]\nurl = \"/b\"\n"),
        "t.toml",
        Path::new("/"),
        &Env::new(),
    )
    .expect("one store");
    assert_eq!(s.stores.len(), 1);
    assert_eq!(s.stores[0].name, "default");
    let none = Settings::load(None, "env", Path::new("/"), &Env::new()).expect("no store");
    assert!(none.stores.is_empty() && none.store_url.is_none());
}

#[test]
fn bad_store_lists_say_what_to_fix() {
    for (text, want) in [
        ("[[store]]\nurl = \"/a\"\n", "has no name"),
        ("[[store]]\nname = \"a\"\n", "has no url"),
        (
            "[[store]]\nname = \"a\"\nurl = \"/a\"\n[[store]]\nname = \"a\"\nurl = \"/b\"\n",
            "two [[store]] entries are named a",
        ),
        (
            "[[store]]\nname = \"a\"\nurl = \"/a\"\n[[store]]\nname = \"b\"\nurl = \"/a\"\n",
            "same url",
        ),
        (
            "[[store]]\nname = \"Bad Name\"\nurl = \"/a\"\n",
            "not valid",
        ),
        (
            "[[store]]\nname = \"a\"\nurl = \"/a\"\nurll = 1\n",
            "[[store]] entry 1",
        ),
    ] {
        let e = Settings::load(Some(text), "t.toml", Path::new("/"), &Env::new()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}
