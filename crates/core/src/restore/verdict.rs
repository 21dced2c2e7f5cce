//! pg_restore's verdict: its error lines classified against `[restore] ignore_errors`.

use crate::{Error, Result};
use std::process::ExitStatus;

pub(super) fn tail(lines: &[String], n: usize) -> String {
    lines
        .iter()
        .rev()
        .take(n)
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join(" / ")
}

pub(super) fn is_error_line(l: &str) -> bool {
    l.starts_with("pg_restore: error:")
        || (l.starts_with("pg_restore: [archiver") && l.contains("ERROR"))
}

/// pg_restore's error lines (each with its "Command was:" line): (failing, allowlisted).
pub(super) fn classify(lines: &[String], allow: &[String]) -> (Vec<String>, Vec<String>) {
    let mut failing = Vec::new();
    let mut ignored = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if is_error_line(l) {
            let mut entry = l.trim().to_string();
            if let Some(next) = lines
                .get(i + 1)
                .filter(|n| n.trim_start().starts_with("Command was:"))
            {
                entry.push_str(" | ");
                entry.push_str(next.trim());
                i += 1;
            }
            if allow.iter().any(|a| entry.contains(a.as_str())) {
                ignored.push(entry);
            } else {
                failing.push(entry);
            }
        }
        i += 1;
    }
    (failing, ignored)
}

/// pg_restore's verdict: `Ok(ignored errors)` when it succeeded or every error is
/// allowlisted, else an error listing the failing statements.
pub fn pg_restore_failure(
    status: Option<ExitStatus>,
    lines: &[String],
    allow: &[String],
) -> Result<Vec<String>> {
    verdict(status, lines, allow, false)
}

/// Like [`pg_restore_failure`]; with `single_txn`, any error means pg_restore stopped and
/// rolled everything back, so even allowlisted errors fail the restore.
pub(super) fn verdict(
    status: Option<ExitStatus>,
    lines: &[String],
    allow: &[String],
    single_txn: bool,
) -> Result<Vec<String>> {
    let (failing, ignored) = classify(lines, allow);
    let ok_status = status.is_some_and(|s| s.success());
    let how = status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "no status".into());
    if single_txn && (!ok_status || !failing.is_empty() || !ignored.is_empty()) {
        let all: Vec<String> = failing.iter().chain(&ignored).take(10).cloned().collect();
        let why = if all.is_empty() {
            format!("pg_restore failed ({how}): {}", tail(lines, 3))
        } else {
            format!(
                "pg_restore stopped at the first error: {}",
                all.join(" ;; ")
            )
        };
        let hint = if ignored.is_empty() {
            ""
        } else {
            " ([restore] ignore_errors cannot apply inside that one transaction: restore into a new database, or pass --jobs 2 or more, which restores without the transaction and may leave the target partly restored on failure)"
        };
        return Err(Error::Failed(format!(
            "{why}; the restore into the existing database ran in one transaction, which was rolled back, so the target is unchanged{hint}"
        )));
    }
    // pg_restore counts the errors it skipped; every one of them must be allowlisted.
    let reported = lines
        .iter()
        .find_map(|l| l.split("errors ignored on restore:").nth(1))
        .and_then(|n| n.trim().parse::<usize>().ok());
    if failing.is_empty() && (ok_status || (!ignored.is_empty() && reported == Some(ignored.len())))
    {
        return Ok(ignored);
    }
    if failing.is_empty() {
        return Err(Error::Failed(format!(
            "pg_restore failed ({how}): {}",
            tail(lines, 3)
        )));
    }
    let shown: Vec<&String> = failing.iter().take(10).collect();
    Err(Error::Failed(format!(
        "pg_restore reported {} error(s), so the restore failed (allowlist known ones in [restore] ignore_errors): {}",
        failing.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ;; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_restore_errors_are_listed_unless_allowlisted() {
        let lines: Vec<String> = [
            "pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"",
            "Command was: SET transaction_timeout = 0;",
            "pg_restore: error: could not execute query: ERROR:  relation \"x\" already exists",
            "pg_restore: warning: errors ignored on restore: 2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = pg_restore_failure(None, &lines, &[]).expect_err("fails");
        assert!(e.to_string().contains("2 error(s)"));
        assert!(e.to_string().contains("transaction_timeout"));
        let e = pg_restore_failure(None, &lines, &["transaction_timeout".into()])
            .expect_err("one left");
        assert!(e.to_string().contains("1 error(s)"));
        let ok = pg_restore_failure(
            None,
            &lines,
            &["transaction_timeout".into(), "already exists".into()],
        )
        .expect("all allowed");
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn one_transaction_fails_on_any_error_and_counts_must_agree() {
        let allow = ["transaction_timeout".to_string()];
        let lines: Vec<String> = [
            "pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"",
            "Command was: SET transaction_timeout = 0;",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = verdict(None, &lines, &allow, true).expect_err("rolled back");
        assert!(e.to_string().contains("unchanged"), "{e}");
        assert!(e.to_string().contains("ignore_errors"), "{e}");
        // Without pg_restore's own count of skipped errors, it did not go on: a failure.
        assert!(verdict(None, &lines, &allow, false).is_err());
        let mut done = lines.clone();
        done.push("pg_restore: warning: errors ignored on restore: 1".into());
        assert_eq!(verdict(None, &done, &allow, false).expect("ok").len(), 1);
        done.push("pg_restore: error: could not read from input file: end of file".into());
        assert!(verdict(None, &done, &allow, false).is_err());
    }
}
