//! The test machine has the PostgreSQL versions the suite relies on.

use pgdrill_testkit::{pg_tools, SETUP_HINT};

#[test]
fn pg_tools_lists_15_17_and_18() {
    let tools = pg_tools();
    for i in tools.installs() {
        eprintln!("found PostgreSQL {} in {}", i.version, i.bin_dir.display());
    }
    let majors: Vec<u32> = tools.installs().iter().map(|i| i.version.major).collect();
    for want in [15, 17, 18] {
        assert!(
            majors.contains(&want),
            "PostgreSQL {want} not found (found {majors:?}): {SETUP_HINT}"
        );
    }
    // Newest first.
    let versions: Vec<_> = tools.installs().iter().map(|i| i.version).collect();
    let mut sorted = versions.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(versions, sorted);
    // 18 has full client tools; 17 (npm) is server-only; Debian's 15 has both.
    let pg_dump = tools.pick("pg_dump", 15).expect("pg_dump");
    assert_eq!(pg_dump.version.major, 18);
    assert_eq!(tools.pick_server(17).expect("server 17").version.major, 17);
    assert_eq!(tools.pick_server(16).expect("server 16+").version.major, 17);
    assert_eq!(tools.pick_server(15).expect("server 15").version.major, 15);
    let err = tools.pick("pg_dump", 99).expect_err("too old");
    let msg = err.to_string();
    assert!(
        msg.contains("18.") && msg.contains("PostgreSQL 99"),
        "{msg}"
    );
}

#[test]
fn debian_wrapper_is_not_an_install() {
    // /usr/bin/pg_dump is Debian's pg_wrapper: the real directories are listed instead.
    for i in pg_tools().installs() {
        assert_ne!(i.bin_dir, std::path::Path::new("/usr/bin"), "{i:?}");
    }
}
