//! After a failed restore: drop the database it created, even when the target is restarting,
//! and say plainly when the failure was the target going away.

use super::guards::TargetInfo;
use super::{RestoreJob, Traces};
use crate::{Error, Result};
use pgdrill_pg::client;
use pgdrill_pg::ConnSpec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the drop of a created database is retried while the target does not answer
/// (a restart, crash recovery).
const DROP_RETRY: Duration = Duration::from_secs(30);

/// Drops `db`, which this restore created, retrying for up to [`DROP_RETRY`] while the server
/// cannot be reached. Returns what to tell the user when the database is still there.
pub(super) async fn drop_created(admin: &ConnSpec, db: &str) -> Option<String> {
    drop_created_within(admin, db, DROP_RETRY).await
}

async fn drop_created_within(admin: &ConnSpec, db: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(250);
    let last = loop {
        let err = match client::connect(admin).await {
            Ok(c) => match client::drop_database(&c, admin, db).await {
                Ok(()) => return None,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() + pause > deadline {
            break err;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    };
    let sql = format!("DROP DATABASE {}", client::quote_ident(db));
    Some(format!(
        "the database {} that this restore created is still on the target ({last}); drop it with: psql {} -c {}",
        client::quote_ident(db),
        shell_quote(&admin.redacted()),
        shell_quote(&sql)
    ))
}

/// Appends `note` to the error's message, keeping its kind (exit code).
pub(super) fn with_note(e: Error, note: Option<String>) -> Error {
    match note {
        Some(note) => e.map_message(|m| format!("{m}; {note}")),
        None => e,
    }
}

/// What libpq, tokio-postgres and the server say when a session ends under a client, or a
/// new one cannot start because the server is going or coming back: a restart, a crash,
/// `pg_terminate_backend`, a network cut. (Not "connection to server ... failed" alone: a
/// server refusing a setting or a login says that too.)
const LOST: &[&str] = &[
    "server closed the connection unexpectedly",
    "terminating connection because of crash of another server process",
    "terminating connection due to administrator command",
    "terminating connection due to unexpected postmaster exit",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "no connection to the server",
    "SSL SYSCALL error: EOF detected",
    "connection closed",
    "Connection reset by peer",
    "Connection refused",
];

/// A restore that failed because the target went away says so, instead of blaming the
/// dump's statements (and pointing at `[restore] ignore_errors`).
pub(super) fn explain_lost_connection(e: Error) -> Error {
    let Error::Failed(m) = &e else { return e };
    let Some(at) = LOST.iter().find_map(|l| m.find(*l)) else {
        return e;
    };
    // The message that says so: from its "error: " (or the start) to the end of its line.
    let start = m[..at].rfind("error: ").unwrap_or(0);
    let end = m[at..].find(" ;; ").map_or(m.len(), |i| at + i);
    let evidence: String = m[start..end].chars().take(300).collect();
    Error::Failed(format!(
        "the connection to the target was lost during the restore ({evidence}): the server restarted, crashed or closed the session; check that it is up, then run the restore again"
    ))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Creates the target database, on the guards' connection when it is still open.
pub(super) async fn create_target(
    job: &RestoreJob<'_>,
    info: &TargetInfo,
    admin: &ConnSpec,
    created: &AtomicBool,
    archive_encoding: Option<String>,
) -> Result<()> {
    // The source database's encoding and locale (SQL_ASCII or LATIN1 data cannot be
    // restored into a UTF8 database); an old manifest without them: the archive's encoding
    // and the server's default locale.
    let src = &job.manifest.source;
    let like = client::DbLocale {
        encoding: src.encoding.clone().or(archive_encoding),
        lc_collate: src.lc_collate.clone(),
        lc_ctype: src.lc_ctype.clone(),
    };
    let noted = |note: Option<String>| {
        if let (Some(n), Ok(mut notes)) = (note, info.create_notes.lock()) {
            notes.push(n);
        }
    };
    let kept = info.admin.lock().ok().and_then(|mut c| c.take());
    if let Some(c) = kept.filter(|c| !c.is_closed()) {
        match client::create_database_like(&c, admin, &job.target.dbname, &like).await {
            Ok(note) => {
                created.store(true, Ordering::SeqCst);
                noted(note);
                return Ok(());
            }
            // The guards' connection died while idle: connect anew below.
            Err(_) if c.is_closed() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let c = client::connect(admin).await?;
    let note = client::create_database_like(&c, admin, &job.target.dbname, &like).await?;
    created.store(true, Ordering::SeqCst);
    noted(note);
    Ok(())
}

/// Drops the target database after a failed restore, waiting a bounded time for a target
/// that restarts; returns what to add to the error when it is still there.
/// After a failure: says so plainly when the target went away, and drops the database this
/// restore created (if it did), noting in `traces` whether it is gone or still there.
pub(super) async fn undo_create(
    job: &RestoreJob<'_>,
    admin: &ConnSpec,
    created: &AtomicBool,
    traces: &Traces,
    e: Error,
) -> Error {
    let e = explain_lost_connection(e);
    if !created.load(Ordering::SeqCst) {
        return e;
    }
    let note = drop_target(job, admin).await;
    let flag = if note.is_none() {
        &traces.dropped
    } else {
        &traces.changed
    };
    flag.store(true, Ordering::SeqCst);
    with_note(e, note)
}

pub(super) async fn drop_target(job: &RestoreJob<'_>, admin: &ConnSpec) -> Option<String> {
    drop_created(admin, &job.target.dbname).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_named_and_other_errors_kept() {
        let lost = explain_lost_connection(Error::Failed(
            "pg_restore reported 1 error(s), so the restore failed (allowlist known ones in [restore] ignore_errors): pg_restore: error: could not execute query: server closed the connection unexpectedly".into(),
        ))
        .to_string();
        assert!(lost.contains("connection to the target was lost"), "{lost}");
        assert!(!lost.contains("ignore_errors"), "{lost}");
        assert!(
            lost.contains("(error: could not execute query: server closed"),
            "{lost}"
        );
        // A server refusing a setting is not a lost connection: its reason stays.
        let refused = "pg_restore failed: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  1 is outside the valid range for parameter \"maintenance_work_mem\"";
        assert_eq!(
            explain_lost_connection(Error::Failed(refused.into())).to_string(),
            refused
        );
        let other = Error::Failed("relation \"x\" does not exist".into());
        assert_eq!(
            explain_lost_connection(other).to_string(),
            "relation \"x\" does not exist"
        );
        let noted = with_note(Error::Integrity("bad".into()), Some("left".into()));
        assert_eq!(
            (noted.exit_code(), noted.to_string()),
            (3, "bad; left".into())
        );
    }

    #[tokio::test]
    async fn an_unreachable_target_gets_the_command_to_drop_the_database() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let admin = ConnSpec::parse_with_env(
            &format!("postgresql://u:pw-canary@127.0.0.1:{port}/postgres"),
            &[],
        )
        .expect("spec");
        let note = drop_created_within(&admin, "it's", Duration::from_millis(300))
            .await
            .expect("not dropped");
        assert!(
            note.contains(r#"-c 'DROP DATABASE "it'\''s"'"#) && !note.contains("pw-canary"),
            "{note}"
        );
    }
}
