use super::Output;
use crate::cli::InitArgs;
use crate::context::Ctx;
use pgdrill_core::crypto::generate_identity;
use pgdrill_core::{Error, Result};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const TEMPLATE: &str = include_str!("../../pgdrill.example.toml");

/// What a newcomer does after `init` (the README's first-backup path).
const NEXT_STEPS: &str = "next: export DATABASE_URL='postgresql://user:password@host:5432/app' (the direct URL, not a pooler's),
      then run pgdrill doctor, pgdrill backup and pgdrill drill; the store is ./pgdrill-store until you set [store] url
";

pub fn run(ctx: &Ctx, args: &InitArgs) -> Result<Output> {
    let path = args
        .path
        .clone()
        .or_else(|| ctx.config_path.clone())
        .unwrap_or_else(|| PathBuf::from("pgdrill.toml"));
    if path.exists() && !args.force {
        return Err(Error::Refused(format!(
            "{} already exists; nothing was changed (use --force to overwrite)",
            path.display()
        )));
    }
    let mut text = TEMPLATE.to_string();
    let mut out = json!({"config": path});
    let mut human = format!("wrote {}\n", path.display());
    if args.generate_key {
        let key_path = path.with_file_name("pgdrill-age.key");
        let created = pgdrill_core::time::rfc3339_secs(pgdrill_core::time::Timestamp::now());
        let (identity, recipient) = generate_identity(&created);
        write_private(&key_path, identity.as_bytes(), args.force)?;
        text = text
            .replace(
                "# recipients = [\"age1...\"]",
                &format!("recipients = [\"{recipient}\"]"),
            )
            .replace(
                "# identity_file = \"pgdrill-age.key\"",
                &format!(
                    "identity_file = \"{}\"",
                    key_path
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ),
            );
        human.push_str(&format!(
            "wrote {} (mode 0600): keep a copy off this machine, backups cannot be restored without it\npublic recipient: {recipient}\n",
            key_path.display()
        ));
        out["identity_file"] = json!(key_path);
        out["recipient"] = json!(recipient);
    }
    std::fs::write(&path, text)
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    human.push_str(NEXT_STEPS);
    Ok(Output::ok(out, human))
}

fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::Refused(format!(
            "{} already exists; nothing was changed (use --force to overwrite)",
            path.display()
        )));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}
