//! A backup blocked by a table lock: pg_dump runs with `--lock-wait-timeout`, and when it
//! gives up, the error names the table and the session holding the lock.

use pgdrill_pg::client;
use pgdrill_pg::ConnSpec;
use std::time::Duration;

/// The `--lock-wait-timeout` argument for pg_dump (milliseconds, as `SET statement_timeout`).
pub(super) fn pg_dump_arg(timeout: Duration) -> String {
    format!("--lock-wait-timeout={}", timeout.as_millis().max(1))
}

/// The tables of the `LOCK TABLE ... IN ACCESS SHARE MODE` statement pg_dump reports when its
/// lock wait timed out (pg_dump 18 locks several tables per statement); `None` when pg_dump
/// failed for another reason.
pub(super) fn timed_out_tables(stderr: &[String]) -> Option<Vec<String>> {
    let timed_out = stderr.iter().any(|l| {
        l.contains("canceling statement due to statement timeout")
            || l.contains("canceling statement due to lock timeout")
    });
    let query = stderr.iter().find_map(|l| {
        let i = l.to_ascii_lowercase().find("query was: lock table ")?;
        Some(&l[i + "query was: lock table ".len()..])
    })?;
    if !timed_out {
        return None;
    }
    let list = query.trim();
    let list = list.strip_suffix(" IN ACCESS SHARE MODE").unwrap_or(list);
    Some(split_names(list))
}

/// Splits `a.b, "x, y"."z"` on the commas outside double quotes.
fn split_names(list: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    for c in list.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => names.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    names.push(cur);
    names
        .into_iter()
        .map(|n| {
            let n = n.trim();
            n.strip_prefix("ONLY ").unwrap_or(n).to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Sessions holding an `ACCESS EXCLUSIVE` lock on any of `tables` (as pg_dump spells them):
/// table, pid, application name, user, query start, state.
const HOLDERS_SQL: &str = "
select format('%I.%I', n.nspname, c.relname), a.pid::text, a.application_name::text,
       a.usename::text,
       to_char(a.query_start at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
       a.state::text
from pg_locks l
join pg_class c on c.oid = l.relation
join pg_namespace n on n.oid = c.relnamespace
left join pg_stat_activity a on a.pid = l.pid
where l.locktype = 'relation' and l.granted and l.mode = 'AccessExclusiveLock'
  and l.database = (select oid from pg_database where datname = current_database())
  and l.pid is distinct from pg_backend_pid()
  and format('%I.%I', n.nspname, c.relname) = any($1)
order by 1, 2";

/// The error of a backup whose pg_dump gave up waiting for a lock on one of `tables`.
pub(super) async fn describe(source: &ConnSpec, tables: &[String], timeout: Duration) -> String {
    let waited = format!(
        "within {} s ([backup] lock_wait_timeout_seconds)",
        timeout.as_secs()
    );
    let tail = "; the partial upload was aborted and no manifest was written";
    let rows = match client::connect(source).await {
        Ok(c) => client::text_rows(&c, source, "find lock holders", HOLDERS_SQL, tables)
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let Some(first) = rows.first() else {
        return format!(
            "pg_dump could not lock {} {waited}: another session held a conflicting lock and has released it since; run the backup again, or raise lock_wait_timeout_seconds{tail}",
            match tables {
                [one] => format!("table {one}"),
                _ => "its tables".to_string(),
            }
        );
    };
    let col = |i: usize| first.get(i).cloned().flatten().unwrap_or_default();
    let table = col(0);
    let Some(pid) = first.get(1).cloned().flatten() else {
        return format!(
            "pg_dump could not lock table {table} {waited}: a prepared transaction holds an ACCESS EXCLUSIVE lock on it; commit or roll it back (see pg_prepared_xacts), then run the backup again{tail}"
        );
    };
    let mut who = vec![format!("application_name {:?}", col(2))];
    for (label, i) in [("user", 3), ("query started", 4), ("state", 5)] {
        let v = col(i);
        if !v.is_empty() {
            who.push(format!("{label} {v}"));
        }
    }
    let others = rows.len() - 1;
    let more = if others > 0 {
        format!(" (and {others} more lock(s) on its tables)")
    } else {
        String::new()
    };
    format!(
        "pg_dump could not lock table {table} {waited}: session pid {pid} ({}) holds an ACCESS EXCLUSIVE lock on it{more}; let that session finish or end it with SELECT pg_terminate_backend({pid}), then run the backup again{tail}",
        who.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lock_timeouts_are_told_apart_and_their_tables_read() {
        let pg18 = lines(&[
            "pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout",
            "pg_dump: detail: Query was: LOCK TABLE \"My S\".\"T, 1\", public.a, ONLY app.b IN ACCESS SHARE MODE",
        ]);
        assert_eq!(
            timed_out_tables(&pg18),
            Some(vec![
                "\"My S\".\"T, 1\"".to_string(),
                "public.a".to_string(),
                "app.b".to_string()
            ])
        );
        let other = lines(&["pg_dump: error: connection to server failed"]);
        assert_eq!(timed_out_tables(&other), None);
        assert_eq!(
            pg_dump_arg(Duration::from_secs(300)),
            "--lock-wait-timeout=300000"
        );
    }
}
