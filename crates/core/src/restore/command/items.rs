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
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, OnceLock};

/// Where [`ItemCounter`] appends what it read and what it counted (tests only): see
/// [`trace_item_counts_for_tests`].
static TRACE: OnceLock<PathBuf> = OnceLock::new();

/// Every counted pg_restore of this process appends to `file` its raw stderr lines, then
/// the items it counted of the total and the listed items it did not count, so that a test
/// whose count is off can show why (set by debug builds from `PGDRILL_TEST_RESTORE_TRACE`).
pub fn trace_item_counts_for_tests(file: PathBuf) {
    let _ = TRACE.set(file);
}

/// The archive items a pg_restore run will restore: their dump ids (with the rest of their
/// list line, to name them), and the first words of their kinds (`TABLE`, `SEQUENCE`, ...),
/// from its `--list`.
#[derive(Debug, Default)]
pub(in crate::restore) struct TocItems {
    ids: HashMap<i64, String>,
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
            items.ids.insert(id, rest.trim().to_string());
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
    /// Levels whose messages are still to come (see [`Parsed`]).
    orphans: VecDeque<&'static str>,
    /// The trace file of a test ([`trace_item_counts_for_tests`]).
    trace: Option<std::fs::File>,
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
            orphans: VecDeque::new(),
            trace: TRACE.get().and_then(|f| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(f)
                    .ok()
            }),
        }
        .started()
    }

    fn started(self) -> Self {
        self.progress.set_items(self.items.len(), "items");
        self
    }

    /// One stderr line: `Some(line)` to keep, `None` for a verbose line (counted).
    pub(in crate::restore) fn line(&mut self, line: String) -> Option<String> {
        if let Some(f) = self.trace.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        let Parsed {
            prefixes,
            mut levels,
            msg,
        } = parse(&line);
        if is_verbose(msg) || (prefixes > 0 && levels.is_empty() && !msg.starts_with('[')) {
            // Levels before a verbose message are those of messages still to come.
            self.orphans.extend(levels);
            self.count(msg);
            return None;
        }
        if let Some(level) = levels.pop() {
            // Any other level belongs to a message still to come.
            self.orphans.extend(levels);
            return Some(format!("pg_restore: {level} {msg}"));
        }
        if prefixes > 0 {
            // `pg_restore: [archiver (db)] ...` (before PostgreSQL 12).
            return Some(format!("pg_restore: {msg}"));
        }
        // A message whose level went to an earlier line (not the `Command was:` that continues
        // the message before it); else `Command was:`, a continuation, the server's notices.
        if !msg.starts_with("Command was:") {
            if let Some(level) = self.orphans.pop_front() {
                return Some(format!("pg_restore: {level} {msg}"));
            }
        }
        Some(line)
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
                (self.items.ids.is_empty() || self.items.ids.contains_key(&id))
                    && self.seen.insert(id)
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

impl Drop for ItemCounter {
    /// Ends a test's trace: the count, and the listed items no line named (by id, with
    /// `--jobs` above 1).
    fn drop(&mut self) {
        let Some(f) = self.trace.as_mut() else {
            return;
        };
        let mut missed: Vec<_> = self
            .items
            .ids
            .iter()
            .filter(|(id, _)| self.parallel && !self.seen.contains(id))
            .collect();
        missed.sort();
        let _ = writeln!(
            f,
            "== pgdrill counted {} of {} items; listed but not counted: {missed:?}",
            self.done,
            self.items.len()
        );
    }
}

/// The levels of the messages pg_restore prints without `--verbose` (after `pg_restore: `;
/// `fatal:` before PostgreSQL 15).
const LEVELS: &[&str] = &["error:", "warning:", "detail:", "hint:", "fatal:"];

/// Beginnings of `--verbose` messages, to recognise one whose prefix went to another line,
/// or that follows another's level.
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

/// One stderr line taken apart. pg_restore's leader and its workers write to one stderr,
/// each message in three or four writes (`pg_restore:`, ` `, a level such as `error: `, then
/// the message and its newline in one): the writes of several processes interleave, so a line
/// is any mix of others' prefixes, spaces and levels, then one whole message, and a message
/// may come without its own prefix and level (they went to an earlier line).
#[derive(Debug, PartialEq)]
struct Parsed<'a> {
    /// How many `pg_restore:`.
    prefixes: usize,
    /// The levels (`error:`, ...), in order.
    levels: Vec<&'static str>,
    /// The message after them.
    msg: &'a str,
}

fn parse(line: &str) -> Parsed<'_> {
    let mut p = Parsed {
        prefixes: 0,
        levels: Vec::new(),
        msg: line.trim_start(),
    };
    loop {
        if let Some(r) = p.msg.strip_prefix("pg_restore:") {
            p.prefixes += 1;
            p.msg = r.trim_start();
        } else if let Some(l) = LEVELS.iter().find(|l| p.msg.starts_with(**l)) {
            p.levels.push(l);
            p.msg = p.msg[l.len()..].trim_start();
        } else {
            return p;
        }
    }
}

/// A `--verbose` message (of level info).
fn is_verbose(msg: &str) -> bool {
    VERBOSE.iter().any(|v| msg.starts_with(v))
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

    /// The flaky `progress` test (55 of 56 items): a message whose prefix came before
    /// another process's whole message, so that only its ` ` is left at the start of its own
    /// line. Lines as pg_restore 18 `--jobs 2` printed them on a loaded machine.
    #[test]
    fn a_message_that_lost_its_prefix_to_the_line_before_is_counted() {
        let stderr = "pg_restore: processing item 214 TABLE a\n\
pg_restore: creating TABLE \"public.a\"\npg_restore: processing item 3362 COMMENT TABLE a\n\
pg_restore: processing item 215 TABLE b\npg_restore: processing item 216 SEQUENCE s\n\
pg_restore: entering main parallel loop\npg_restore: launching item 3351 TABLE DATA a\n\
pg_restore: launching item 3352 TABLE DATA b\n\
pg_restore: pg_restore:processing data for table \"public.a\"\n\
 finished item 3352 TABLE DATA b\npg_restore: launching item 3354 BLOB METADATA 16406\n\
 pg_restore: processing data for table \"public.b\"\n\
pg_restore: pg_restore:executing BLOB METADATA 16406\n finished item 3351 TABLE DATA a\n\
pg_restore:pg_restore: finished item 3354 BLOB METADATA 16406\n\
 finished item 3355 BLOBS 16406\n \tfinished item 3364 SEQUENCE SET s\n\
pg_restore: finished item 3202 CONSTRAINT a a_pkey\npg_restore: finished item 3203 INDEX a_t_idx\n\
pg_restore: finished main parallel loop\n";
        let (kept, done, total) = feed(true, stderr);
        assert_eq!(kept, Vec::<String>::new());
        assert_eq!((done, total), (11, 11));
        assert_eq!(
            parse(" finished item 3352 TABLE DATA b"),
            Parsed {
                prefixes: 0,
                levels: vec![],
                msg: "finished item 3352 TABLE DATA b"
            }
        );
    }

    /// A worker's level (`error: `) written between the leader's prefix and its message: the
    /// leader's message is counted, and the level goes to the worker's message on a later line.
    #[test]
    fn a_level_before_anothers_message_is_given_back_to_its_own() {
        let stderr = "pg_restore: processing item 214 TABLE a\n\
pg_restore: processing item 3362 COMMENT TABLE a\npg_restore: processing item 215 TABLE b\n\
pg_restore: processing item 216 SEQUENCE s\npg_restore: finished item 3351 TABLE DATA a\n\
pg_restore: finished item 3352 TABLE DATA b\npg_restore: finished item 3354 BLOB METADATA 16406\n\
pg_restore: finished item 3355 BLOBS 16406\npg_restore: finished item 3364 SEQUENCE SET s\n\
pg_restore: pg_restore: error: finished item 3202 CONSTRAINT a a_pkey\n\
could not execute query: ERROR:  x\nCommand was: CREATE INDEX i ON a (t);\n\
pg_restore: error: pg_restore: finished item 3203 INDEX a_t_idx\n\
could not execute query: ERROR:  y\npg_restore: warning: errors ignored on restore: 2\n";
        let (kept, done, total) = feed(true, stderr);
        assert_eq!((done, total), (11, 11));
        assert_eq!(
            kept,
            vec![
                "pg_restore: error: could not execute query: ERROR:  x".to_string(),
                "Command was: CREATE INDEX i ON a (t);".into(),
                "pg_restore: error: could not execute query: ERROR:  y".into(),
                "pg_restore: warning: errors ignored on restore: 2".into(),
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
