//! Output: one JSON document on stdout with --json, human text otherwise; messages and
//! progress on stderr (progress only on a terminal).

use pgdrill_core::progress::Progress;
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

    /// Draws a progress line on stderr while `progress` is updated, if stderr is a terminal.
    pub fn progress(&self, progress: Arc<Progress>) -> ProgressGuard {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressGuard(None);
        }
        let handle = tokio::spawn(async move {
            let start = std::time::Instant::now();
            let mut last_stage = String::new();
            let mut stage_start = start;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let (stage, bytes, total) = progress.snapshot();
                if stage != last_stage {
                    last_stage = stage.clone();
                    stage_start = std::time::Instant::now();
                }
                let secs = stage_start.elapsed().as_secs_f64().max(0.001);
                let pct = if total > 0 {
                    format!(
                        " of {} ({:.0}%)",
                        human_bytes(total),
                        bytes as f64 * 100.0 / total as f64
                    )
                } else {
                    String::new()
                };
                eprint!(
                    "\r\x1b[2K{stage}: {}{pct} at {}/s",
                    human_bytes(bytes),
                    human_bytes((bytes as f64 / secs) as u64)
                );
            }
        });
        ProgressGuard(Some(handle))
    }
}

pub struct ProgressGuard(Option<tokio::task::JoinHandle<()>>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

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
    fn an_empty_table_prints_no_header() {
        assert_eq!(table_or(&["A", "B"], &[], ""), "");
        assert_eq!(table_or(&["A"], &[vec!["x".into()]], ""), "A\nx\n");
    }
}
