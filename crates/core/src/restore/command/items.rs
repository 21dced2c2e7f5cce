//! Progress of one pg_restore over a spool (a custom-format file or an archive directory):
//! the archive items it will restore, counted from `pg_restore --list` with the same
//! selection, and the items done, counted from its `--verbose` lines as they come. Only the
//! lines pg_restore prints without `--verbose` (errors, warnings, `Command was:`) reach the
//! kept stderr the verdict reads, so the verdict and its messages are those of a run without
//! `--verbose`.

use super::{wait, PgRestore};
use crate::cancel::Cancel;
use crate::progress::Progress;
use crate::restore::RestoreJob;
use crate::{Error, Result};
use pgdrill_pg::child::{self, Keep, LineFilter};
use pgdrill_pg::PgInstall;
use std::collections::HashSet;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;

/// The archive items a pg_restore run will restore: their dump ids, and the first words of
/// their kinds (`TABLE`, `SEQUENCE`, ...), from its `--list`.
#[derive(Debug, Default)]
pub(in crate::restore) struct TocItems {
    ids: HashSet<i64>,
    kinds: HashSet<String>,
}

impl TocItems {
    /// Parses `pg_restore --list` output: `ID; CATALOG OID KIND SCHEMA NAME OWNER` lines.
    pub(in crate::restore) fn parse(list: &str) -> TocItems {
        let mut items = TocItems::default();
        for l in list.lines().filter(|l| !l.starts_with(';')) {
            let Some((id, rest)) = l.split_once(';') else {
                continue;
            };
            let Ok(id) = id.trim().parse::<i64>() else {
                continue;
            };
            // ENCODING, STDSTRINGS and SEARCHPATH are session settings, not items restored.
            let kind = rest.split_whitespace().nth(2).unwrap_or("");
            if matches!(kind, "ENCODING" | "STDSTRINGS" | "SEARCHPATH") {
                continue;
            }
            items.ids.insert(id);
            items.kinds.insert(kind.to_string());
        }
        items
    }

    pub(in crate::restore) fn len(&self) -> u64 {
        self.ids.len() as u64
    }
}

/// Counts pg_restore's verbose lines into `progress` and drops them; keeps the others.
/// With `--jobs` above 1 the leader names each item it finished (`finished item 3351 TABLE
/// DATA a`), or did itself before and after the parallel part (`processing item`,
/// `processing missed item`): each counted once, by its id. With one job, each item prints
/// one line as it starts (`creating TABLE ...`, `processing data for table ...`,
/// `executing SEQUENCE SET ...`).
pub(in crate::restore) struct ItemCounter {
    items: TocItems,
    parallel: bool,
    seen: HashSet<i64>,
    done: u64,
    progress: Arc<Progress>,
}

impl ItemCounter {
    pub(in crate::restore) fn new(
        items: TocItems,
        parallel: bool,
        progress: Arc<Progress>,
    ) -> Self {
        ItemCounter {
            items,
            parallel,
            seen: HashSet::new(),
            done: 0,
            progress,
        }
        .started()
    }

    fn started(self) -> Self {
        self.progress.set_items(self.items.len(), "items");
        self
    }

    /// One stderr line: `Some(line)` to keep, `None` for a verbose line (counted).
    pub(in crate::restore) fn line(&mut self, line: String) -> Option<String> {
        // Workers and the leader write to one stderr, a message in several writes: a line
        // may carry another's `pg_restore:` prefix, or lack its own.
        let (prefixes, rest) = strip_prefixes(&line);
        if LEVELS.iter().any(|l| rest.starts_with(l)) {
            return Some(if prefixes == 1 {
                line
            } else {
                format!("pg_restore: {rest}")
            });
        }
        if prefixes == 0 && !VERBOSE.iter().any(|v| rest.starts_with(v)) {
            // `Command was:`, a message's continuation, the server's notices.
            return Some(line);
        }
        self.count(rest);
        None
    }

    fn count(&mut self, msg: &str) {
        let counted = if self.parallel {
            [
                "processing item ",
                "processing missed item ",
                "finished item ",
                "skipping item ",
            ]
            .iter()
            .find_map(|p| msg.strip_prefix(p))
            .and_then(|r| r.split_whitespace().next()?.parse::<i64>().ok())
            .is_some_and(|id| {
                (self.items.ids.is_empty() || self.items.ids.contains(&id)) && self.seen.insert(id)
            })
        } else if let Some(r) = msg.strip_prefix("executing ") {
            // Not the session's own statements (`executing SELECT pg_catalog.set_config`).
            r.split_whitespace().next().is_some_and(|k| {
                self.items.kinds.contains(k)
                    || (self.items.kinds.is_empty() && !matches!(k, "SELECT" | "SET"))
            })
        } else if let Some(r) = msg.strip_prefix("processing ") {
            !r.starts_with("item ") && !r.starts_with("missed item ")
        } else {
            msg.starts_with("creating ")
        };
        let total = self.items.len();
        if counted && (total == 0 || self.done < total) {
            self.done += 1;
            self.progress.add_item();
        }
    }

    pub(in crate::restore) fn into_filter(mut self) -> LineFilter {
        Box::new(move |line| self.line(line))
    }
}

/// Prefixes of the messages pg_restore prints without `--verbose` (after `pg_restore: `).
const LEVELS: &[&str] = &["error:", "warning:", "detail:", "hint:", "fatal:", "["];

/// Beginnings of `--verbose` messages, to recognise one whose prefix went to another line.
const VERBOSE: &[&str] = &[
    "connecting to database",
    "creating ",
    "processing ",
    "executing ",
    "launching item ",
    "finished item ",
    "skipping item ",
    "entering ",
    "finished main parallel loop",
    "restoring large object",
    "restored ",
    "dropping ",
    "implied data-only restore",
    "while INITIALIZING",
    "while PROCESSING TOC",
    "while FINALIZING",
    "from TOC entry ",
    "setting owner",
    "disabling triggers",
    "enabling triggers",
];

/// (how many `pg_restore:` prefixes, the message after them)
fn strip_prefixes(line: &str) -> (usize, &str) {
    let mut rest = line;
    let mut n = 0;
    while let Some(r) = rest.trim_start().strip_prefix("pg_restore:") {
        rest = r;
        n += 1;
    }
    (n, if n == 0 { rest } else { rest.trim_start() })
}

/// `pg_restore --list` with the selection of `run` (privileges, `--use-list`): the items it
/// will restore. `None` when the list cannot be read (then items are counted without a
/// total; the restore itself will say what is wrong).
async fn toc_items(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    run: &PgRestore<'_>,
) -> Option<TocItems> {
    let file = run.file?;
    let mut cmd = child::command(&install.bin("pg_restore"), &job.target, None);
    cmd.arg("--list");
    if !run.privileges {
        cmd.arg("--no-privileges");
    }
    if run.create {
        cmd.arg("--create");
    }
    if let Some(l) = run.list {
        cmd.arg(format!("--use-list={}", l.display()));
    }
    cmd.arg(file);
    let keep = Keep {
        head: usize::MAX,
        tail: 0,
    };
    let out = tokio::task::spawn_blocking(move || child::run(cmd, keep))
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| TocItems::parse(&out.stdout.join("\n")))
}

/// Runs `run` (over a file or directory, stdin not piped) to its end with `--verbose`, its
/// items counted into `progress` (see [`ItemCounter`]): its exit status and the stderr lines
/// it prints without `--verbose`.
pub(in crate::restore) async fn run_counted(
    job: &RestoreJob<'_>,
    install: &PgInstall,
    run: &PgRestore<'_>,
    passfile: Option<&Path>,
    progress: &Arc<Progress>,
    cancel: &mut Cancel,
) -> Result<(ExitStatus, Vec<String>)> {
    let items = toc_items(job, install, run).await.unwrap_or_default();
    let parallel = run.jobs.is_some_and(|j| j > 1);
    let counter = ItemCounter::new(items, parallel, progress.clone());
    let verbose = PgRestore {
        verbose: true,
        ..run.clone()
    };
    let cmd = verbose.command(job, install, passfile);
    let mut proc = child::Child::spawn_filtered(cmd, Keep::MANY, Some(counter.into_filter()))
        .map_err(|e| Error::Failed(e.to_string()))?;
    let status = wait(&mut proc, cancel).await;
    let lines = proc.stderr_lines();
    Ok((status?, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = ";\n; Selected TOC Entries:\n;\n\
214; 1259 16385 TABLE public a postgres\n3362; 0 0 COMMENT public TABLE a postgres\n\
215; 1259 16392 TABLE public b postgres\n216; 1259 16405 SEQUENCE public s postgres\n\
3351; 0 16385 TABLE DATA public a postgres\n3352; 0 16392 TABLE DATA public b postgres\n\
3364; 0 0 SEQUENCE SET public s postgres\n3354; 2613 16406 BLOB METADATA - 16406 postgres\n\
3355; 0 0 BLOBS - 16406 postgres\n3202; 2606 16391 CONSTRAINT public a a_pkey postgres\n\
3203; 1259 16404 INDEX public a_t_idx postgres\n";

    fn feed(parallel: bool, stderr: &str) -> (Vec<String>, u64, u64) {
        let p = Progress::new();
        p.stage("restore");
        let mut c = ItemCounter::new(TocItems::parse(LIST), parallel, p.clone());
        let kept = stderr
            .lines()
            .filter_map(|l| c.line(l.to_string()))
            .collect();
        let v = p.view();
        (kept, v.items, v.items_total)
    }

    const ERR: &str = "pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"";

    #[test]
    fn one_job_counts_each_item_once_and_keeps_only_what_it_prints_without_verbose() {
        let stderr = format!(
            "pg_restore: connecting to database for restore\n\
pg_restore: executing SELECT pg_catalog.set_config('search_path', '', false);\n\
pg_restore: while INITIALIZING:\n{ERR}\nCommand was: SET transaction_timeout = 0;\n\
pg_restore: creating TABLE \"public.a\"\npg_restore: creating COMMENT \"public.TABLE a\"\n\
pg_restore: creating TABLE \"public.b\"\npg_restore: creating SEQUENCE \"public.s\"\n\
pg_restore: processing data for table \"public.a\"\npg_restore: processing data for table \"public.b\"\n\
pg_restore: executing SEQUENCE SET s\npg_restore: executing BLOB METADATA 16406\n\
pg_restore: processing BLOBS\npg_restore: restoring large object with OID 16406\n\
pg_restore: restored 1 large object\npg_restore: creating CONSTRAINT \"public.a a_pkey\"\n\
pg_restore: creating INDEX \"public.a_t_idx\"\npg_restore: warning: errors ignored on restore: 1\n"
        );
        let (kept, done, total) = feed(false, &stderr);
        assert_eq!((done, total), (11, 11));
        assert_eq!(
            kept,
            vec![
                ERR.to_string(),
                "Command was: SET transaction_timeout = 0;".into(),
                "pg_restore: warning: errors ignored on restore: 1".into()
            ]
        );
    }

    #[test]
    fn parallel_jobs_count_the_leaders_items_by_id_even_when_lines_interleave() {
        let stderr = format!(
            "pg_restore: connecting to database for restore\n\
pg_restore: processing item 3358 ENCODING ENCODING\npg_restore: processing item 3361 DATABASE src\n\
pg_restore: processing item 214 TABLE a\npg_restore: creating TABLE \"public.a\"\n\
pg_restore: processing item 3362 COMMENT TABLE a\npg_restore: processing item 215 TABLE b\n\
pg_restore: processing item 216 SEQUENCE s\npg_restore: entering main parallel loop\n\
pg_restore: launching item 3351 TABLE DATA a\npg_restore: launching item 3352 TABLE DATA b\n\
pg_restore: while PROCESSING TOC:\npg_restore: from TOC entry 3354; 2613 16406 BLOB 16406 postgres\n\
{ERR}\nCommand was: SET transaction_timeout = 0;\n\
pg_restore: processing data for table \"public.b\"\npg_restore: finished item 3352 TABLE DATA b\n\
pg_restore: launching item 3354 BLOB METADATA 16406\n\
pg_restore:pg_restore:  finished item 3351 TABLE DATA a\nexecuting BLOB METADATA 16406\n\
pg_restore: finished item 3354 BLOB METADATA 16406\npg_restore: finished item 3364 SEQUENCE SET s\n\
pg_restore: pg_restore: error: could not execute query: x\nfinished item 3355 BLOBS 16406\n\
pg_restore: finished item 3202 CONSTRAINT a a_pkey\npg_restore: finished item 3202 CONSTRAINT a a_pkey\n\
pg_restore: finished item 3203 INDEX a_t_idx\npg_restore: finished main parallel loop\n\
pg_restore: warning: errors ignored on restore: 2\n"
        );
        let (kept, done, total) = feed(true, &stderr);
        assert_eq!((done, total), (11, 11));
        assert_eq!(
            kept,
            vec![
                ERR.to_string(),
                "Command was: SET transaction_timeout = 0;".into(),
                "pg_restore: error: could not execute query: x".into(),
                "pg_restore: warning: errors ignored on restore: 2".into()
            ]
        );
    }

    #[test]
    fn without_a_list_items_are_counted_without_a_total() {
        let p = Progress::new();
        p.stage("restore");
        let mut c = ItemCounter::new(TocItems::default(), false, p.clone());
        assert_eq!(
            c.line("pg_restore: creating TABLE \"public.a\"".into()),
            None
        );
        let v = p.view();
        assert_eq!(
            (v.items, v.items_total, v.item_unit.as_str()),
            (1, 0, "items")
        );
    }
}
