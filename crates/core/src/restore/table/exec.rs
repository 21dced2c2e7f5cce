//! Executing a table restore: into the target by `--use-list`, or through a scratch
//! database for `--into-schema`; pg_restore and pg_dump runs.

use super::{list_text, target, Selection};
use crate::restore::command::{self, PgRestore};
use crate::restore::{check_cancel, RestoreJob};
use crate::{Error, Result};
use pgdrill_pg::archive::TocItem;
use pgdrill_pg::{child, ConnSpec, PgInstall};
use std::collections::BTreeSet;
use std::path::Path;

/// The schemas of `ids`' entries.
pub(super) fn schemas_of(items: &[TocItem], ids: &BTreeSet<i64>) -> Vec<String> {
    let s: BTreeSet<String> = items
        .iter()
        .filter(|i| ids.contains(&i.dump_id) && !i.namespace.is_empty())
        .map(|i| i.namespace.clone())
        .collect();
    s.into_iter().collect()
}

/// Into another database: the selection by `--use-list`, in one transaction. A database
/// this restore created also gets the functions, types and extensions the tables use (an
/// existing one is expected to have them: a failure names what is missing).
pub(super) async fn direct(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    (items, sel): (&[TocItem], &Selection),
    part: &Path,
    new_database: bool,
) -> Result<()> {
    let ids: BTreeSet<i64> = if new_database {
        sel.ids.union(&sel.support).copied().collect()
    } else {
        sel.ids.clone()
    };
    let created = target::create_schemas(&job.target, &schemas_of(items, &ids)).await?;
    let list = command::list_file(&list_text(items, &ids))?;
    let r = pg_restore(job, install, &job.target, Some(list.path()), part).await;
    if r.is_err() && !created.is_empty() {
        let drop: Vec<String> = created
            .iter()
            .map(|s| {
                format!(
                    "drop schema if exists {}",
                    pgdrill_pg::client::quote_ident(s)
                )
            })
            .collect();
        let _ = target::execute(&job.target, "drop the schemas created", &drop.join(";")).await;
    }
    r
}

/// `--into-schema`: through a scratch database on the target's server (see the module doc).
#[allow(clippy::too_many_arguments)]
pub(super) async fn via_scratch(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    (items, sel): (&[TocItem], &Selection),
    part: &Path,
    into: &str,
    dir: &Path,
    version_num: u32,
) -> Result<()> {
    let scratch = format!("pgdrill_table_{:08x}", rand::random::<u32>());
    target::create_scratch(job, &scratch).await?;
    let spec = job.target.with_dbname(&scratch);
    let r = async {
        let ids: BTreeSet<i64> = sel.ids.union(&sel.support).copied().collect();
        target::create_schemas(&spec, &schemas_of(items, &ids)).await?;
        let list = command::list_file(&list_text(items, &ids))?;
        pg_restore(job, install, &spec, Some(list.path()), part).await?;
        target::move_tables(&spec, into, &sel.tables, &sel.sequences).await?;
        check_cancel(job)?;
        let moved = dir.join("moved.pgc");
        let dumper = job.tools.pick("pg_dump", version_num / 10_000)?;
        pg_dump(job, &dumper, &spec, into, &moved).await?;
        let restorer = job.tools.pick("pg_restore", dumper.version.major)?;
        pg_restore(job, &restorer, &job.target, None, &moved).await
    }
    .await;
    let dropped = target::drop_database(job, &scratch).await;
    r?;
    dropped
}

/// A `RestoreJob` for another database of the same server.
pub(super) fn retarget<'a>(job: &RestoreJob<'a>, target: ConnSpec) -> RestoreJob<'a> {
    RestoreJob {
        store: job.store,
        manifest: job.manifest,
        target,
        source: job.source.clone(),
        protected_targets: job.protected_targets,
        tools: job.tools,
        read: job.read.clone(),
        jobs: 1,
        clean: false,
        allow_create: false,
        ignore_errors: job.ignore_errors,
        maintenance_work_mem: job.maintenance_work_mem.clone(),
        spool_dir: job.spool_dir.clone(),
        globals: false,
        spool: false,
        skip_extensions: job.skip_extensions,
    }
}

/// One `pg_restore --single-transaction --exit-on-error` of `file` into `spec`.
pub(super) async fn pg_restore(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    spec: &ConnSpec,
    list: Option<&Path>,
    file: &Path,
) -> Result<()> {
    let sub = retarget(job, spec.clone());
    let passfile = spec
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let cmd = PgRestore {
        single_txn: true,
        exit_on_error: true,
        privileges: true,
        list,
        file: Some(file),
        ..PgRestore::default()
    }
    .command(&sub, install, passfile.as_ref().map(|f| f.path()));
    let mut cancel = job.read.cancel.clone();
    let (status, lines) = command::run(cmd, &mut cancel).await?;
    crate::restore::verdict::verdict(Some(status), &lines, job.ignore_errors, true).map(|_| ())
}

/// `pg_dump --format=custom --schema=SCHEMA` of `spec` into `out`.
pub(super) async fn pg_dump(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    spec: &ConnSpec,
    schema: &str,
    out: &Path,
) -> Result<()> {
    let passfile = spec
        .write_passfile()
        .map_err(|e| Error::Failed(format!("cannot write the temporary password file: {e}")))?;
    let mut cmd = child::command(
        &install.bin("pg_dump"),
        spec,
        passfile.as_ref().map(|f| f.path()),
    );
    cmd.args([
        "--format=custom".to_string(),
        "--no-password".into(),
        format!("--schema={schema}"),
        format!("--file={}", out.display()),
    ]);
    let mut cancel = job.read.cancel.clone();
    let (status, lines) = command::run(cmd, &mut cancel).await?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "pg_dump of the scratch database failed ({status}): {}",
            lines
                .iter()
                .rev()
                .take(3)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    Ok(())
}
