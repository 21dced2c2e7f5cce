//! The guards (exit 5, nothing touched): protected targets, the source itself, a non-empty
//! target without `--clean`, `--create` dumps; and what they learn about the target.

use super::{supabase, RestoreJob};
use crate::{Error, Result};
use pgdrill_pg::client;
use pgdrill_pg::ConnSpec;

/// What the guards learned about the target.
pub(super) struct TargetInfo {
    pub(super) exists: bool,
    /// The dump creates its database itself (`pg_dump --create`, restored with `--allow-create`).
    pub(super) create_mode: bool,
    /// The backup is a Supabase project's (docs/SUPABASE.md).
    pub(super) supabase: bool,
    /// Supabase platform schemas the target database already has (it is another project).
    pub(super) platform_schemas: Vec<String>,
    /// The target server's `server_version_num`.
    pub(super) version_num: u32,
    /// The restoring role is a superuser (it can create any role or extension the dump names).
    pub(super) superuser: bool,
    /// The connection to the maintenance database the guards used (it creates the target).
    pub(super) admin: std::sync::Mutex<Option<tokio_postgres::Client>>,
    /// What creating the target database had to change (a locale the server lacks).
    pub(super) create_notes: std::sync::Mutex<Vec<String>>,
}

impl TargetInfo {
    /// What the plan needs of it.
    pub(super) fn facts(&self) -> super::plan::Target {
        super::plan::Target {
            exists: self.exists,
            create_mode: self.create_mode,
            supabase: self.supabase,
            superuser: self.superuser,
        }
    }
}

/// Checks every guard without changing anything, and learns what the target holds.
pub(super) async fn inspect(job: &RestoreJob<'_>) -> Result<TargetInfo> {
    let t = &job.target;
    // By spelling first, before connecting anywhere; by server identity below.
    crate::protect::check(job.protected_targets, t, None, "").await?;
    let m = job.manifest;
    let recorded = ConnSpec {
        host: m.source.host.clone(),
        port: m.source.port,
        dbname: m.source.dbname.clone(),
        ..t.clone()
    };
    if t.identity_key() == recorded.identity_key()
        || job
            .source
            .as_ref()
            .is_some_and(|s| s.identity_key() == t.identity_key())
    {
        return Err(Error::Refused(format!(
            "{} is the backup's source database; nothing was changed (restore into another database)",
            t.redacted()
        )));
    }
    let create_mode = m.pg_dump.creates_database;
    if create_mode && !job.allow_create {
        return Err(Error::Refused(
            "this dump re-creates its database (pg_dump --create); nothing was changed (pass --allow-create if that is intended)".into(),
        ));
    }
    if create_mode && t.dbname != m.source.dbname {
        // pg_restore --create restores into the database named in the dump, whatever the
        // target URL says: the guards must look at that database, so the names must agree.
        return Err(Error::Refused(format!(
            "this dump re-creates its database under its own name `{}`, but the target names `{}`; nothing was changed (use a target URL ending in /{} on another server)",
            m.source.dbname, t.dbname, m.source.dbname
        )));
    }
    let admin = t.with_dbname(&maintenance_db(t));
    let client = client::connect(&admin).await?;
    let facts = client::server_facts(&client, &admin).await?;
    crate::protect::check(
        job.protected_targets,
        t,
        facts.system_identifier.as_deref(),
        &admin.dbname,
    )
    .await?;
    if let (Some(a), Some(b)) = (&facts.system_identifier, &m.server.system_identifier) {
        if a == b && t.dbname == m.source.dbname {
            return Err(Error::Refused(format!(
                "{} is on the backup's source server (same system identifier) and has the same database name; nothing was changed",
                t.redacted()
            )));
        }
    }
    let exists = client::database_exists(&client, &admin, &t.dbname).await?;
    let supabase = supabase::is_supabase_backup(m);
    let mut platform_schemas = Vec::new();
    if exists {
        let target_client = client::connect(t).await?;
        if supabase {
            platform_schemas = supabase::target_platform_schemas(t).await?;
        }
        let objects =
            client::user_object_count_excluding(&target_client, t, &platform_schemas).await?;
        if objects > 0 && !job.clean {
            return Err(Error::Refused(format!(
                "{} is not empty ({objects} objects); nothing was changed (pass --clean to replace what the dump contains, or restore into a new database)",
                t.redacted()
            )));
        }
        if create_mode && !job.clean {
            return Err(Error::Refused(format!(
                "{} exists and this dump re-creates it; nothing was changed (pass --clean to drop and re-create it, or drop it first)",
                t.redacted()
            )));
        }
    }
    let available = client::available_extensions(&client, &admin).await?;
    let missing: Vec<&str> = m
        .content
        .extensions
        .iter()
        .map(String::as_str)
        .filter(|e| *e != "plpgsql" && !available.iter().any(|a| a == e))
        .filter(|e| !(supabase && supabase::PLATFORM_EXTENSIONS.contains(e)))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Failed(format!(
            "the target server lacks extensions the backup uses: {}; install them there first (nothing was restored)",
            missing.join(", ")
        )));
    }
    Ok(TargetInfo {
        exists,
        create_mode,
        supabase,
        platform_schemas,
        version_num: facts.version_num,
        superuser: is_superuser(&client).await,
        admin: std::sync::Mutex::new(Some(client)),
        create_notes: std::sync::Mutex::new(Vec::new()),
    })
}

pub(super) async fn is_superuser(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "select rolsuper from pg_roles where rolname = current_user",
        &[],
    )
    .await
    .ok()
    .and_then(|r| r.try_get::<_, bool>(0).ok())
    .unwrap_or(false)
}

pub(super) fn maintenance_db(t: &ConnSpec) -> String {
    if t.dbname == "postgres" {
        "template1".into()
    } else {
        "postgres".into()
    }
}
