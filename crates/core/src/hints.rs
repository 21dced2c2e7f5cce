//! What to tell a user whose database did not answer, and whether such a failure is worth
//! recording in the store. Small pure helpers the commands and jobs call from one line.

use crate::ids::DbName;
use crate::Error;
use pgdrill_store::Store;

/// The phrase every connection failure's message carries (`PgError::Connect`).
const CONNECT_FAILED: &str = "cannot connect to ";

/// What to check when a connection to a server failed, by the reason the socket gave; `None`
/// when the server answered (an authentication or database error says what is wrong itself).
pub fn connect_hint(detail: &str) -> Option<&'static str> {
    let d = detail.to_ascii_lowercase();
    let unreachable = [
        "connection refused",
        "timed out",
        "timeout",
        "no route to host",
        "network is unreachable",
        "failed to lookup address",
        "name or service not known",
        "temporary failure in name resolution",
        "connection reset",
    ];
    unreachable.iter().any(|p| d.contains(p)).then_some(
        "check the host and port in the URL, that the server is running and accepts connections from this machine (firewall, security group, allowed IPs, pg_hba.conf), and that it is the database's direct URL, not a pooler's",
    )
}

/// The message of a failed connection with the hint appended when there is one.
pub fn with_connect_hint(message: String) -> String {
    match connect_hint(&message) {
        Some(h) => format!("{message}; {h}"),
        None => message,
    }
}

/// True when `e` is a failure to reach the database at all (it never answered).
pub fn is_connect_failure(e: &Error) -> bool {
    let m = e.to_string();
    m.contains(CONNECT_FAILED) && connect_hint(&m).is_some()
}

/// Whether a failed job of `db` belongs in `<db>/last_failure.json`. Not when the database
/// is named only by a URL on the command line (`configured` false: no config file names it),
/// never answered, and the store holds nothing of it yet: a typo in a first URL must not leave
/// a database in the store that `list`, `status` and `drills` would show from then on. A
/// configured database's failures are always recorded (`status` and the recovery alert need
/// them), and so is every failure after a connection. When the store cannot be listed, the
/// failure is recorded (the write reports its own error).
pub async fn worth_recording(store: &Store, db: &DbName, e: &Error, configured: bool) -> bool {
    if configured || !is_connect_failure(e) {
        return true;
    }
    match store.list(&format!("{db}/")).await {
        Ok(objects) => !objects.is_empty(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connection_gets_a_hint_naming_what_to_check() {
        let m = with_connect_hint(
            "cannot connect to postgresql://u@127.0.0.1:1/app: error connecting to server: Connection refused (os error 111)".into(),
        );
        for word in ["host and port", "firewall", "pooler", "direct URL"] {
            assert!(m.contains(word), "{word} missing in {m}");
        }
        assert!(is_connect_failure(&Error::Failed(m)));
    }

    #[test]
    fn an_answering_server_gets_no_connect_hint() {
        let m = "cannot connect to postgresql://u@h/app: password authentication failed for user \"u\" (28P01)";
        assert_eq!(connect_hint(m), None);
        assert!(!is_connect_failure(&Error::Failed(m.into())));
        assert!(!is_connect_failure(&Error::Failed(
            "pg_dump failed: connection refused by the archive".into()
        )));
    }

    #[tokio::test]
    async fn an_unconfigured_database_that_never_answered_is_recorded_only_once_it_is_in_the_store()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_folder(dir.path()).expect("store");
        let db = DbName::parse("app").expect("name");
        let refused = Error::Failed(with_connect_hint(
            "cannot connect to postgresql://u@127.0.0.1:1/app: Connection refused".into(),
        ));
        assert!(!worth_recording(&store, &db, &refused, false).await);
        assert!(worth_recording(&store, &db, &refused, true).await);
        assert!(
            worth_recording(
                &store,
                &db,
                &Error::Failed("pg_dump exited 1".into()),
                false
            )
            .await
        );
        store
            .put(
                "app/backups/20260101T000000Z-aaaa/manifest.json",
                bytes::Bytes::from_static(b"{}"),
            )
            .await
            .expect("put");
        assert!(worth_recording(&store, &db, &refused, false).await);
    }
}
