//! The daemon's log: one line per event with its time (RFC 3339, UTC) and level, as text
//! (`2026-12-06T08:20:00.123Z INFO  serve: stopped`) or, for log shippers, one JSON object
//! (`{"ts", "level", "component", "msg", "job", "database", "backup_id", "drill_id"}`, the
//! last four where known). Jobs the daemon runs log through [`JobLog`]: their messages,
//! warnings and one line per ended stage, each carrying the job and database.

use crate::jobs::JobKey;
use pgdrill_core::ids::BackupId;
use pgdrill_core::progress::{self, Progress};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One log event.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub level: Level,
    /// `serve` (the daemon's own lines) or `job` (what a running job reports).
    pub component: &'static str,
    pub msg: String,
    /// `backup`, `drill`, ... when the line is about a job.
    pub job: Option<String>,
    pub database: Option<String>,
}

impl LogRecord {
    pub fn new(level: Level, msg: impl Into<String>) -> Self {
        LogRecord {
            level,
            component: "serve",
            msg: msg.into(),
            job: None,
            database: None,
        }
    }
    pub fn info(msg: impl Into<String>) -> Self {
        LogRecord::new(Level::Info, msg)
    }
    pub fn warn(msg: impl Into<String>) -> Self {
        LogRecord::new(Level::Warn, msg)
    }
    /// About `key`'s job (its `job` and `database` fields).
    pub fn job(mut self, key: &JobKey) -> Self {
        self.job = Some(key.kind.name().to_string());
        self.database = key.database.as_ref().map(|d| d.to_string());
        self
    }
}

/// Where the daemon's log lines go (the CLI renders and writes them to stderr).
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// The line for `r` at `ts` (RFC 3339): text or one JSON object. A job's lines name it in
/// the text (`backup of app: ...`) and carry `job`/`database` in JSON; a backup or drill id
/// the message names (`backup 20261206T0800Z-7f3a`) becomes `backup_id`/`drill_id`.
pub fn render(json: bool, ts: &str, r: &LogRecord) -> String {
    let who = match (r.component, &r.job, &r.database) {
        ("job", Some(j), Some(d)) => format!("{j} of {d}"),
        ("job", Some(j), None) => j.clone(),
        (c, _, _) => c.to_string(),
    };
    if !json {
        let level = r.level.name().to_uppercase();
        return format!("{ts} {level:<5} {who}: {}", r.msg);
    }
    let mut v = serde_json::json!({
        "ts": ts,
        "level": r.level.name(),
        "component": r.component,
        "msg": r.msg,
    });
    if let Some(j) = &r.job {
        v["job"] = j.clone().into();
    }
    if let Some(d) = &r.database {
        v["database"] = d.clone().into();
    }
    for (word, field) in [("backup", "backup_id"), ("drill", "drill_id")] {
        if let Some(id) = id_after(&r.msg, word) {
            v[field] = id.into();
        }
    }
    v.to_string()
}

/// The id right after `word` in `msg` (`backup 20261206T080000Z-7f3a`), if any.
fn id_after(msg: &str, word: &str) -> Option<String> {
    let mut words = msg.split_whitespace();
    while let Some(w) = words.next() {
        if w == word {
            let next = words.clone().next()?;
            let id = next.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if BackupId::parse(id).is_ok() {
                return Some(id.to_string());
            }
        }
    }
    None
}

/// A job's events as daemon log lines: messages (info), warnings (warn), `-v` detail
/// (debug, with `verbose` only), and one line per ended stage of its progress.
pub struct JobLog {
    pub sink: LogSink,
    pub key: JobKey,
    pub verbose: bool,
}

impl JobLog {
    fn record(key: &JobKey, level: Level, msg: &str) -> LogRecord {
        LogRecord {
            component: "job",
            ..LogRecord::new(level, msg).job(key)
        }
    }
}

impl pgdrill_core::jobs::Events for JobLog {
    fn info(&self, msg: &str) {
        (self.sink)(&JobLog::record(&self.key, Level::Info, msg));
    }
    fn warn(&self, msg: &str) {
        (self.sink)(&JobLog::record(&self.key, Level::Warn, msg));
    }
    fn debug(&self, msg: &str) {
        if self.verbose {
            (self.sink)(&JobLog::record(&self.key, Level::Debug, msg));
        }
    }
    fn progress(&self, progress: Arc<Progress>) -> Box<dyn std::any::Any + Send> {
        let (sink, key) = (self.sink.clone(), self.key.clone());
        progress.on_stage_end(move |r| {
            sink(&JobLog::record(&key, Level::Info, &progress::describe(r)));
        });
        Box::new(EndsLastStage(progress))
    }
}

/// Ends the job's last stage when the job is over (its line is logged).
struct EndsLastStage(Arc<Progress>);

impl Drop for EndsLastStage {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobKind;
    use pgdrill_core::ids::DbName;
    use pgdrill_core::jobs::Events;
    use std::sync::Mutex;

    fn key() -> JobKey {
        JobKey {
            kind: JobKind::Backup,
            database: Some(DbName::parse("app").expect("name")),
        }
    }

    #[test]
    fn text_lines_carry_time_level_and_who() {
        let ts = "2026-12-06T08:20:00.500Z";
        assert_eq!(
            render(false, ts, &LogRecord::info("stopped")),
            "2026-12-06T08:20:00.500Z INFO  serve: stopped"
        );
        assert_eq!(
            render(false, ts, &JobLog::record(&key(), Level::Warn, "disk low")),
            "2026-12-06T08:20:00.500Z WARN  backup of app: disk low"
        );
        // The daemon's own line about a job names it in the message.
        assert_eq!(
            render(
                false,
                ts,
                &LogRecord::info("backup of app started").job(&key())
            ),
            "2026-12-06T08:20:00.500Z INFO  serve: backup of app started"
        );
    }

    #[test]
    fn json_lines_carry_level_job_database_and_ids() {
        let ts = "2026-12-06T08:20:00.500Z";
        let r = LogRecord::info(
            "backup of app succeeded in 1.0s: backup 20261206T082000Z-7f3a (12 bytes)",
        )
        .job(&key());
        let line = render(true, ts, &r);
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["ts"], ts);
        assert_eq!(v["level"], "info");
        assert_eq!(v["component"], "serve");
        assert_eq!(v["job"], "backup");
        assert_eq!(v["database"], "app");
        assert_eq!(v["backup_id"], "20261206T082000Z-7f3a");
        assert!(v.get("drill_id").is_none(), "{v}");
        let v: serde_json::Value =
            serde_json::from_str(&render(true, ts, &LogRecord::warn("a \"quoted\"\nline")))
                .expect("json");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["component"], "serve");
        assert_eq!(v["msg"], "a \"quoted\"\nline");
        assert!(
            v.get("job").is_none() && v.get("backup_id").is_none(),
            "{v}"
        );
    }

    #[test]
    fn a_jobs_stages_end_as_log_lines_of_that_job() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let log = JobLog {
            sink: Arc::new(move |r: &LogRecord| s.lock().expect("lock").push(r.clone())),
            key: key(),
            verbose: false,
        };
        let p = Progress::new();
        let g = log.progress(p.clone());
        p.stage("dump");
        p.add(2048);
        drop(g);
        log.debug("hidden without -v");
        log.warn("careful");
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            seen[0].msg.starts_with("stage dump ended after "),
            "{seen:?}"
        );
        assert!(seen[0].msg.contains("2.0 KiB"), "{seen:?}");
        assert_eq!(seen[0].job.as_deref(), Some("backup"));
        assert_eq!(seen[0].database.as_deref(), Some("app"));
        assert_eq!(seen[1].level, Level::Warn);
    }
}
