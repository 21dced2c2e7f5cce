//! Progress counters shared between a running job and whoever renders them (the CLI draws a
//! line on a terminal; the daemon logs one line per stage end). Cheap to update from hot
//! loops: the counters are atomics, only a stage change takes the lock.
//!
//! A job names its stages in order (`stage`); each stage has bytes done of a total (when
//! known) and optionally items done of a total (`tables` for a restore). Every ended stage is
//! kept as a [`StageRecord`] (name, start, duration, bytes, items), which `--json` output and
//! the logs report.

mod rate;

pub use rate::RateEstimator;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One stage of a job, as it ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StageRecord {
    pub name: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub seconds: f64,
    pub bytes: u64,
    /// What the stage expected, when it knew up front.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// Where `total_bytes` came from when it was an estimate (`previous backup`,
    /// `pg_database_size`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items_total: Option<u64>,
    /// What the items are (`tables`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_unit: Option<String>,
    /// Rows of the items done (a restore's tables), of `rows_total`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_total: Option<u64>,
}

/// What a renderer sees at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub stage: String,
    /// Changes with every `stage` call (stage names may repeat).
    pub seq: u64,
    pub bytes: u64,
    /// 0 when unknown.
    pub total: u64,
    pub total_from: Option<String>,
    pub items: u64,
    /// 0 when the stage counts no items.
    pub items_total: u64,
    pub item_unit: String,
    pub rows: u64,
    /// 0 when the stage counts no rows.
    pub rows_total: u64,
}

type StageSink = Arc<dyn Fn(&StageRecord) + Send + Sync>;

#[derive(Default)]
struct Current {
    name: String,
    seq: u64,
    started: Option<(Instant, String)>,
    total_from: Option<String>,
    item_unit: String,
    ended: Vec<StageRecord>,
    sink: Option<StageSink>,
}

#[derive(Default)]
pub struct Progress {
    current: Mutex<Current>,
    bytes: AtomicU64,
    total: AtomicU64,
    items: AtomicU64,
    items_total: AtomicU64,
    rows: AtomicU64,
    rows_total: AtomicU64,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("view", &self.view())
            .finish()
    }
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// Calls `sink` with every stage as it ends (the logs' one line per stage).
    pub fn on_stage_end(&self, sink: impl Fn(&StageRecord) + Send + Sync + 'static) {
        if let Ok(mut c) = self.current.lock() {
            c.sink = Some(Arc::new(sink));
        }
    }

    /// Ends the current stage (if any) and starts `s` with its counters at zero.
    pub fn stage(&self, s: &str) {
        let ended = match self.current.lock() {
            Ok(mut c) => {
                let ended = self.end_locked(&mut c);
                c.name = s.to_string();
                c.seq += 1;
                c.started = Some((Instant::now(), now_rfc3339()));
                c.total_from = None;
                c.item_unit.clear();
                self.bytes.store(0, Ordering::Relaxed);
                self.total.store(0, Ordering::Relaxed);
                self.items.store(0, Ordering::Relaxed);
                self.items_total.store(0, Ordering::Relaxed);
                self.rows.store(0, Ordering::Relaxed);
                self.rows_total.store(0, Ordering::Relaxed);
                ended.map(|r| (r, c.sink.clone()))
            }
            Err(_) => None,
        };
        report(ended);
    }

    /// Ends the current stage; call when the job's work is over (or failed).
    pub fn finish(&self) {
        let ended = match self.current.lock() {
            Ok(mut c) => self.end_locked(&mut c).map(|r| (r, c.sink.clone())),
            Err(_) => None,
        };
        report(ended);
    }

    fn end_locked(&self, c: &mut Current) -> Option<StageRecord> {
        let (t0, started_at) = c.started.take()?;
        let total = self.total.load(Ordering::Relaxed);
        let items_total = self.items_total.load(Ordering::Relaxed);
        let counts_items = items_total > 0 || !c.item_unit.is_empty();
        let rows_total = self.rows_total.load(Ordering::Relaxed);
        let r = StageRecord {
            name: c.name.clone(),
            started_at,
            seconds: t0.elapsed().as_secs_f64(),
            bytes: self.bytes.load(Ordering::Relaxed),
            total_bytes: (total > 0).then_some(total),
            total_from: c.total_from.clone(),
            items: counts_items.then(|| self.items.load(Ordering::Relaxed)),
            items_total: (items_total > 0).then_some(items_total),
            item_unit: (!c.item_unit.is_empty()).then(|| c.item_unit.clone()),
            rows: (rows_total > 0).then(|| self.rows.load(Ordering::Relaxed)),
            rows_total: (rows_total > 0).then_some(rows_total),
        };
        c.ended.push(r.clone());
        Some(r)
    }

    pub fn set_total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }

    /// A total that is an estimate, saying where it came from.
    pub fn set_estimate(&self, n: u64, from: &str) {
        self.total.store(n, Ordering::Relaxed);
        if let Ok(mut c) = self.current.lock() {
            c.total_from = Some(from.to_string());
        }
    }

    /// Sets the bytes done (a counter kept elsewhere, e.g. across a stage change).
    pub fn set_bytes(&self, n: u64) {
        self.bytes.store(n, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// This stage also counts `unit` (e.g. `tables`), `n` of them in all.
    pub fn set_items(&self, n: u64, unit: &str) {
        self.items_total.store(n, Ordering::Relaxed);
        if let Ok(mut c) = self.current.lock() {
            c.item_unit = unit.to_string();
        }
    }

    pub fn add_item(&self) {
        self.items.fetch_add(1, Ordering::Relaxed);
    }

    /// The rows this stage's items hold in all (0: not counted).
    pub fn set_rows_total(&self, n: u64) {
        self.rows_total.store(n, Ordering::Relaxed);
    }

    /// One item done, holding `rows` rows.
    pub fn add_item_rows(&self, rows: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.add_item();
    }

    /// (stage, bytes done, total or 0 when unknown)
    pub fn snapshot(&self) -> (String, u64, u64) {
        let v = self.view();
        (v.stage, v.bytes, v.total)
    }

    pub fn view(&self) -> View {
        let (stage, seq, total_from, item_unit) = self
            .current
            .lock()
            .map(|c| {
                (
                    c.name.clone(),
                    c.seq,
                    c.total_from.clone(),
                    c.item_unit.clone(),
                )
            })
            .unwrap_or_default();
        View {
            stage,
            seq,
            bytes: self.bytes.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            total_from,
            items: self.items.load(Ordering::Relaxed),
            items_total: self.items_total.load(Ordering::Relaxed),
            item_unit,
            rows: self.rows.load(Ordering::Relaxed),
            rows_total: self.rows_total.load(Ordering::Relaxed),
        }
    }

    /// The stages that ended, in order.
    pub fn stages(&self) -> Vec<StageRecord> {
        self.current
            .lock()
            .map(|c| c.ended.clone())
            .unwrap_or_default()
    }
}

fn report(ended: Option<(StageRecord, Option<StageSink>)>) {
    if let Some((r, Some(sink))) = ended {
        sink(&r);
    }
}

fn now_rfc3339() -> String {
    crate::time::rfc3339_millis(crate::time::Timestamp::now())
}

/// One line about an ended stage: `stage dump ended after 12.0s: 1.2 GiB of 1.3 GiB (92%,
/// estimated from the previous backup)`, `..., 10/10 tables`.
pub fn describe(r: &StageRecord) -> String {
    let mut s = format!(
        "stage {} ended after {}",
        r.name,
        crate::time::human_secs(r.seconds)
    );
    if r.bytes > 0 {
        s.push_str(&format!(": {}", human_bytes(r.bytes)));
        if let Some(t) = r.total_bytes {
            let pct = (r.bytes as f64 * 100.0 / t as f64).floor();
            s.push_str(&format!(" of {} ({pct:.0}%", human_bytes(t)));
            match r.total_from.as_deref() {
                Some(from) if from.contains(' ') => {
                    s.push_str(&format!(", estimated from the {from}"))
                }
                Some(from) => s.push_str(&format!(", estimated from {from}")),
                None => {}
            }
            s.push(')');
        }
    }
    if let (Some(n), Some(unit)) = (r.items, &r.item_unit) {
        match r.items_total {
            Some(t) => s.push_str(&format!(", {n}/{t} {unit}")),
            None => s.push_str(&format!(", {n} {unit}")),
        }
    }
    if let (Some(n), Some(t)) = (r.rows, r.rows_total) {
        s.push_str(&format!(", {}/{} rows", human_count(n), human_count(t)));
    }
    s
}

/// `950`, `12.5k`, `3.2M`, `1.1G`: a count for people.
pub fn human_count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// `1.5 MiB`: binary units, one decimal (one function for progress lines and listings;
/// `summary` re-exports it).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_recorded_in_order_with_their_counts() {
        let p = Progress::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        p.on_stage_end(move |r| s.lock().expect("lock").push(r.name.clone()));
        p.stage("dump");
        p.set_estimate(100, "previous backup");
        p.add(60);
        p.add(40);
        p.stage("data");
        p.set_items(3, "tables");
        p.set_rows_total(25_000);
        p.add_item_rows(12_000);
        let v = p.view();
        assert_eq!((v.stage.as_str(), v.items, v.items_total), ("data", 1, 3));
        assert_eq!(v.bytes, 0, "a new stage starts at zero");
        p.finish();
        p.finish();
        let st = p.stages();
        assert_eq!(st.len(), 2, "{st:?}");
        assert_eq!(st[0].bytes, 100);
        assert_eq!(st[0].total_bytes, Some(100));
        assert_eq!(st[0].total_from.as_deref(), Some("previous backup"));
        assert_eq!(st[0].items, None);
        assert_eq!((st[1].items, st[1].items_total), (Some(1), Some(3)));
        assert_eq!((st[1].rows, st[1].rows_total), (Some(12_000), Some(25_000)));
        assert_eq!(st[0].rows, None);
        assert_eq!(*seen.lock().expect("lock"), vec!["dump", "data"]);
        assert!(
            describe(&st[1]).contains("1/3 tables, 12.0k/25.0k rows"),
            "{}",
            describe(&st[1])
        );
        let mut by_size = st[0].clone();
        by_size.total_from = Some("pg_database_size".into());
        assert!(
            describe(&by_size).ends_with("(100%, estimated from pg_database_size)"),
            "{}",
            describe(&by_size)
        );
        assert!(
            describe(&st[0]).contains("100 B of 100 B (100%, estimated from the previous backup)"),
            "{}",
            describe(&st[0])
        );
    }
}
