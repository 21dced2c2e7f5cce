use super::*;

fn v(major: u32, minor: u32) -> PgVersion {
    PgVersion { major, minor }
}

#[test]
fn server_num() {
    assert_eq!(PgVersion::from_server_num(150018), v(15, 18));
    assert_eq!(PgVersion::from_server_num(180001), v(18, 1));
    assert_eq!(PgVersion::from_server_num(100000), v(10, 0));
    assert_eq!(PgVersion::from_server_num(90624), v(9, 6));
}

#[test]
fn parse_versions() {
    assert_eq!(PgVersion::parse("15.18"), Some(v(15, 18)));
    assert_eq!(PgVersion::parse("18.1"), Some(v(18, 1)));
    assert_eq!(PgVersion::parse("18beta1"), Some(v(18, 0)));
    assert_eq!(PgVersion::parse("19devel"), Some(v(19, 0)));
    assert_eq!(PgVersion::parse("9.6.24"), Some(v(9, 6)));
    assert_eq!(
        PgVersion::parse("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
        Some(v(15, 18))
    );
    assert_eq!(
        PgVersion::parse("initdb (PostgreSQL) 18beta1\n"),
        Some(v(18, 0))
    );
    assert_eq!(PgVersion::parse("PostgreSQL 17.10"), Some(v(17, 10)));
    assert_eq!(
        PgVersion::parse("PostgreSQL 16.4 on x86_64-pc-linux-gnu, compiled by gcc"),
        Some(v(16, 4))
    );
    assert_eq!(PgVersion::parse("garbage"), None);
    assert_eq!(PgVersion::parse(""), None);
}

#[test]
fn display_and_order() {
    assert_eq!(v(15, 18).to_string(), "15.18");
    assert!(v(15, 18) < v(17, 2));
    assert!(v(9, 6) < v(10, 0));
    assert!(v(17, 10) > v(17, 9));
}

#[test]
fn error_messages_name_versions_and_fix() {
    let e = ToolError::TooOld {
        tool: "pg_dump".into(),
        found: v(15, 18),
        need_major: 17,
    };
    assert_eq!(
        e.to_string(),
        "pg_dump 15.18 is older than the server (PostgreSQL 17): install PostgreSQL 17 \
             client tools or point PGDRILL_PG_BIN at them"
    );
    let e = ToolError::NotFound {
        tool: "postgres".into(),
    };
    assert!(e.to_string().contains("server binaries"), "{e}");
}

/// Fake bin dirs with shell-script tools printing a version.
fn fake_dir(root: &Path, name: &str, version: &str, tools: &[&str]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for t in tools {
        let p = dir.join(t);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho '{t} (PostgreSQL) {version}'\n"),
        )
        .expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

#[test]
fn picks_newest_and_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let all = [
        "pg_dump",
        "pg_restore",
        "psql",
        "initdb",
        "pg_ctl",
        "postgres",
    ];
    let d15 = fake_dir(tmp.path(), "15", "15.18", &all);
    let d17 = fake_dir(tmp.path(), "17", "17.6", &["initdb", "pg_ctl", "postgres"]);
    let d18 = fake_dir(tmp.path(), "18", "18.1", &all);
    let tools = PgTools::from_dirs(vec![d15.clone(), d17.clone(), d18.clone(), d15.clone()]);
    let versions: Vec<_> = tools.installs().iter().map(|i| i.version).collect();
    assert_eq!(versions, vec![v(18, 1), v(17, 6), v(15, 18)]);

    assert_eq!(tools.pick("pg_dump", 15).expect("pick").bin_dir, d18);
    assert_eq!(tools.pick("pg_dump", 18).expect("pick").bin_dir, d18);
    assert!(matches!(
        tools.pick("pg_dump", 19),
        Err(ToolError::TooOld { need_major: 19, .. })
    ));
    assert!(matches!(
        tools.pick("pg_nothing", 1),
        Err(ToolError::NotFound { .. })
    ));

    assert_eq!(tools.pick_server(15).expect("srv").bin_dir, d15);
    assert_eq!(tools.pick_server(16).expect("srv").bin_dir, d17);
    assert_eq!(tools.pick_server(17).expect("srv").bin_dir, d17);
    assert_eq!(tools.pick_server(18).expect("srv").bin_dir, d18);
    assert!(matches!(
        tools.pick_server(19),
        Err(ToolError::TooOld { found, .. }) if found == v(18, 1)
    ));
    assert!(matches!(
        PgTools::from_dirs(Vec::new()).pick_server(15),
        Err(ToolError::NotFound { .. })
    ));
}

#[test]
fn skips_wrapper_scripts_on_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let w = tmp.path().join("pg_wrapper");
    std::fs::write(&w, "#!/usr/bin/perl\n").expect("write");
    std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let p = tmp.path().join("pg_dump");
    std::os::unix::fs::symlink(&w, &p).expect("symlink");
    assert_eq!(real_tool_dir(&p), None);
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    let tool = real.join("initdb");
    std::fs::write(&tool, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let link = tmp.path().join("initdb");
    std::os::unix::fs::symlink(&tool, &link).expect("symlink");
    assert_eq!(
        real_tool_dir(&link),
        Some(std::fs::canonicalize(&real).expect("canon"))
    );
}
