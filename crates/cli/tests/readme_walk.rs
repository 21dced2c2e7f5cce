//! The README walked from a fresh copy of the repository, as written (scripts/readme-walk.sh):
//! the demo and the first backup and drill, as root without `sudo` on PATH when the tests run
//! as root. The binary under test stands in for the README's cargo build.

mod common;
use common::*;
use std::path::Path;

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_first_steps_work_as_written() {
    let src = source(None).await;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("bash")
        .arg(repo.join("scripts/readme-walk.sh"))
        .env("WALK_PGDRILL_BIN", bin())
        .env("DATABASE_URL", &src.url)
        .env("PGDRILL_PG_PATHS", pg_paths())
        .output()
        .expect("run scripts/readme-walk.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README walk failed:\n{stdout}\n{stderr}"
    );
    // The demo passed, and the first backup and drill ran, with the README's build commands.
    for want in ["— PASS", "the README walk passed"] {
        assert!(
            stdout.contains(want),
            "{want:?} missing:\n{stdout}\n{stderr}"
        );
    }
    for want in [
        "cargo build --locked --release -p pgdrill",
        "cargo install --locked --path crates/cli",
    ] {
        assert!(stdout.contains(want), "{want:?} was not run:\n{stdout}");
    }
    assert!(stderr.contains("+ pgdrill drill"), "{stderr}");
}
