//! Output: one JSON document on stdout with --json, human text otherwise; messages and
//! progress on stderr (progress only on a terminal).

use pgdrill_core::progress::{human_count, Progress, RateEstimator, View};
use std::io::IsTerminal;
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
pub struct Ui {
    pub json: bool,
    pub verbose: u8,
    pub quiet: bool,
}

impl Ui {
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }
    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("warning: {}", msg.as_ref());
    }
    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.verbose > 0 {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Draws a progress line on stderr while `progress` is updated, if stderr is a terminal
    /// (stage, done/total, percent, rate and ETA; tables for a restore), and leaves one line
    /// per ended stage above it; not on a terminal, nothing (with `-v`, the ended stages'
    /// lines).
    pub fn progress(&self, progress: Arc<Progress>) -> ProgressGuard {
        let tty = std::io::stderr().is_terminal();
        if (tty || self.verbose > 0) && !self.quiet {
            progress.on_stage_end(move |r| {
                let clear = if tty { "\r\x1b[2K" } else { "" };
                eprintln!("{clear}{}", pgdrill_core::progress::describe(r));
            });
        }
        if self.quiet || !tty {
            return ProgressGuard(None, progress);
        }
        let shown = progress.clone();
        let handle = tokio::spawn(async move {
            let progress = shown;
            let mut rate = RateEstimator::default();
            let mut seq = u64::MAX;
            let mut stage_start = std::time::Instant::now();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let v = progress.view();
                if v.seq != seq {
                    seq = v.seq;
                    rate.reset();
                    stage_start = std::time::Instant::now();
                }
                if v.stage.is_empty() {
                    continue;
                }
                let t = stage_start.elapsed().as_secs_f64();
                let (done, total) = if by_items(&v) {
                    (v.items, v.items_total)
                } else {
                    (v.bytes, v.total)
                };
                rate.sample(t, done);
                let line = progress_line(&v, rate.rate(), rate.eta(total), t);
                eprint!("\r\x1b[2K{line}");
            }
        });
        ProgressGuard(Some(handle), progress)
    }
}

/// Whether a stage's rate and ETA are of its items (it counts no bytes: a pg_restore over a
/// spool, `restore: 12/40 items at 3.0/s, ETA 10s`), else of its bytes.
fn by_items(v: &View) -> bool {
    v.bytes == 0 && v.total == 0 && v.items_total > 0
}

/// The terminal's progress line: `dump: 120.0 MiB of 300.0 MiB (40%) at 20.0 MiB/s, ETA 9s`,
/// then `, 3/10 tables` when the stage counts items, and the stage's time so far. No rate
/// nor ETA until the estimator has a second of samples. `rate` and `eta` are of the bytes,
/// or of the items when the stage counts no bytes ([`by_items`]).
pub fn progress_line(v: &View, rate: Option<f64>, eta: Option<f64>, elapsed: f64) -> String {
    let mut s = v.stage.clone();
    let mut parts = Vec::new();
    if by_items(v) {
        let mut done = format!(
            "{}/{} {} ({:.0}%)",
            v.items,
            v.items_total,
            if v.item_unit.is_empty() {
                "items"
            } else {
                &v.item_unit
            },
            (v.items.min(v.items_total) as f64 * 100.0 / v.items_total as f64).floor()
        );
        if let Some(r) = rate {
            done.push_str(&format!(" at {r:.1}/s"));
        }
        parts.push(done);
        if let Some(e) = eta.filter(|_| v.items < v.items_total) {
            parts.push(format!("ETA {}", short_secs(e.ceil())));
        }
    } else if v.bytes > 0 || v.total > 0 {
        let mut b = human_bytes(v.bytes);
        if v.total > 0 && v.bytes <= v.total {
            let tilde = if v.total_from.is_some() { "~" } else { "" };
            b.push_str(&format!(
                " of {tilde}{} ({:.0}%)",
                human_bytes(v.total),
                (v.bytes as f64 * 100.0 / v.total as f64).floor()
            ));
        }
        if let Some(r) = rate {
            b.push_str(&format!(" at {}/s", human_bytes(r as u64)));
        }
        parts.push(b);
        if let Some(e) = eta.filter(|_| v.bytes < v.total) {
            parts.push(format!("ETA {}", short_secs(e.ceil())));
        }
    }
    if !by_items(v) && (v.items_total > 0 || !v.item_unit.is_empty()) {
        let unit = if v.item_unit.is_empty() {
            "items"
        } else {
            &v.item_unit
        };
        if v.items_total > 0 {
            parts.push(format!("{}/{} {unit}", v.items, v.items_total));
        } else {
            parts.push(format!("{} {unit}", v.items));
        }
    }
    if v.rows_total > 0 {
        parts.push(format!(
            "{}/{} rows",
            human_count(v.rows),
            human_count(v.rows_total)
        ));
    }
    if !parts.is_empty() {
        s.push_str(": ");
        s.push_str(&parts.join(", "));
    }
    s.push_str(&format!(" [{}]", short_secs(elapsed.floor())));
    s
}

/// Whole seconds under a minute (`9s`), else like [`human_secs`].
fn short_secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0}s")
    } else {
        human_secs(s)
    }
}

/// Stops drawing when dropped, and ends the last stage (its line is printed).
pub struct ProgressGuard(Option<tokio::task::JoinHandle<()>>, Arc<Progress>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
            eprint!("\r\x1b[2K");
        }
        self.1.finish();
    }
}

pub use pgdrill_core::progress::human_bytes;

pub use pgdrill_core::time::human_secs;

/// Like [`table`], but `empty` instead of a header with no rows under it.
pub fn table_or(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        empty.to_string()
    } else {
        table(headers, rows)
    }
}

/// Renders rows as an aligned text table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_durations_share_one_unit_style() {
        assert_eq!(pgdrill_core::jobs::drill::fmt_min(Some(29.7)), "29m42s");
        assert_eq!(pgdrill_core::jobs::drill::fmt_min(Some(0.0)), "0.0s");
        assert_eq!(pgdrill_core::jobs::drill::fmt_min(Some(0.5)), "30.0s");
        assert_eq!(pgdrill_core::jobs::drill::fmt_min(Some(125.0)), "2h05m");
        assert_eq!(pgdrill_core::jobs::drill::fmt_min(None), "n/a");
    }

    #[test]
    fn the_progress_line_shows_percent_rate_eta_and_tables() {
        let mib = 1u64 << 20;
        let v = View {
            stage: "dump".into(),
            bytes: 120 * mib,
            total: 300 * mib,
            total_from: Some("previous backup".into()),
            ..View::default()
        };
        assert_eq!(
            progress_line(&v, Some(20.0 * mib as f64), Some(9.0), 6.2),
            "dump: 120.0 MiB of ~300.0 MiB (40%) at 20.0 MiB/s, ETA 9s [6s]"
        );
        // No rate yet: neither rate nor ETA.
        assert_eq!(
            progress_line(&v, None, None, 0.4),
            "dump: 120.0 MiB of ~300.0 MiB (40%) [0s]"
        );
        let v = View {
            stage: "restore: data".into(),
            bytes: 5 * mib,
            total: 10 * mib,
            items: 1,
            items_total: 3,
            item_unit: "tables".into(),
            rows: 1200,
            rows_total: 2_500_000,
            ..View::default()
        };
        assert_eq!(
            progress_line(&v, None, None, 2.0),
            "restore: data: 5.0 MiB of 10.0 MiB (50%), 1/3 tables, 1200/2.5M rows [2s]"
        );
        let v = View {
            stage: "restore: indexes and constraints".into(),
            ..View::default()
        };
        assert_eq!(
            progress_line(&v, None, None, 4.0),
            "restore: indexes and constraints [4s]"
        );
        // A pg_restore over a spool counts archive items, not bytes: their rate and ETA.
        let v = View {
            stage: "restore".into(),
            items: 12,
            items_total: 40,
            item_unit: "items".into(),
            ..View::default()
        };
        assert_eq!(
            progress_line(&v, Some(3.0), Some(9.4), 4.0),
            "restore: 12/40 items (30%) at 3.0/s, ETA 10s [4s]"
        );
        assert_eq!(
            progress_line(&v, None, None, 0.5),
            "restore: 12/40 items (30%) [0s]"
        );
    }

    #[test]
    fn an_empty_table_prints_no_header() {
        assert_eq!(table_or(&["A", "B"], &[], ""), "");
        assert_eq!(table_or(&["A"], &[vec!["x".into()]], ""), "A\nx\n");
    }
}
