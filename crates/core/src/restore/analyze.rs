//! ANALYZE after the restore, over `jobs` sessions, biggest tables first.

use crate::{Error, Result};
use pgdrill_pg::client;
use pgdrill_pg::ConnSpec;

/// ANALYZE every table, over `jobs` connections at once (as `vacuumdb -j` does), biggest
/// tables first so one large table does not finish last.
pub(super) async fn analyze(target: &ConnSpec, jobs: u32) -> Result<()> {
    analyze_pass(target, jobs, AnalyzePass::All).await
}

/// Which tables an ANALYZE pass covers.
pub(super) enum AnalyzePass<'a> {
    All,
    /// Tables and partitioned tables, except those in the set (`"schema"."name"`, quoted),
    /// once their data is in (materialized views are filled later).
    Loaded(&'a std::collections::HashSet<String>),
    /// Materialized views, and tables whose statistics need objects made after the data
    /// (expression indexes, extended statistics), except those in the set (analyzed after
    /// their own indexes already).
    Dependent(&'a std::collections::HashSet<String>),
}

pub(super) async fn analyze_pass(
    target: &ConnSpec,
    jobs: u32,
    pass: AnalyzePass<'_>,
) -> Result<()> {
    let fail = |e: tokio_postgres::Error| {
        Error::Failed(format!(
            "ANALYZE failed after the restore: {}",
            client::describe(&e)
        ))
    };
    let c = client::connect(target).await?;
    // The size of a table left out is not read: another session may be building its index
    // (pg_relation_size would wait for that session's lock).
    let left_out: Vec<&str> = match &pass {
        AnalyzePass::Loaded(done) => done.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    let rows = c
        .query(
            "select q, dependent, view from (select '\"' || replace(n.nspname, '\"', '\"\"') \
             || '\".\"' || replace(c.relname, '\"', '\"\"') || '\"' as q, \
             exists (select 1 from pg_index i where i.indrelid = c.oid \
             and i.indexprs is not null) or exists (select 1 from pg_statistic_ext x \
             where x.stxrelid = c.oid) as dependent, c.relkind = 'm' as view, c.oid from pg_class c \
             join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'm', 'p') \
             and n.nspname not in ('pg_catalog', 'information_schema') \
             and n.nspname not like 'pg\\_toast%' \
             and has_schema_privilege(n.oid, 'USAGE') and pg_has_role(c.relowner, 'USAGE')) t \
             order by case when q = any($1) then 0 else pg_relation_size(oid) end desc",
            &[&left_out],
        )
        .await
        .map_err(fail)?;
    let tables: Vec<String> = rows
        .iter()
        .filter(|r| {
            let (name, dependent, view) = (
                r.get::<_, String>(0),
                r.get::<_, bool>(1),
                r.get::<_, bool>(2),
            );
            match pass {
                AnalyzePass::All => true,
                AnalyzePass::Loaded(done) => !view && !done.contains(&name),
                AnalyzePass::Dependent(done) => view || (dependent && !done.contains(&name)),
            }
        })
        .map(|r| r.get(0))
        .collect();
    // No more sessions than tables; the first one is the connection that listed them.
    let n = (jobs.max(1) as usize).min(tables.len());
    let queue = std::sync::Arc::new(std::sync::Mutex::new(tables.into_iter()));
    let mut listing = Some(c);
    let workers = (0..n).map(|_| {
        let (queue, conn) = (queue.clone(), listing.take());
        async move {
            let c = match conn {
                Some(c) => c,
                None => client::connect(target).await?,
            };
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(table) = next else {
                    return Ok::<(), Error>(());
                };
                c.batch_execute(&format!("analyze {table}"))
                    .await
                    .map_err(fail)?;
            }
        }
    });
    for r in futures::future::join_all(workers).await {
        r?;
    }
    Ok(())
}
