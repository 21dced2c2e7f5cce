//! Text in and out of a throwaway cluster: initdb's and pg_ctl's output, the server log,
//! `postgresql.conf` and shell quoting, the URL's database name.

use crate::child::Finished;
use std::fmt::Write as _;
use std::path::Path;

/// stdout, then stderr, as kept.
pub(super) fn output_text(out: &Finished) -> String {
    let mut s = String::new();
    for line in out.stdout.iter().chain(&out.stderr) {
        s.push_str(line);
        s.push('\n');
    }
    s
}

pub(super) fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub(super) fn read_from(path: &Path, offset: u64) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// A `postgresql.conf` string literal.
pub(super) fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// The command that stops a kept cluster and removes its folder, as short as the paths
/// allow: paths of plain characters go unquoted, so the `su -c` line nests no quotes.
pub(super) fn stop_command(
    pg_ctl: &str,
    data_dir: &str,
    root: &str,
    run_as: Option<&str>,
) -> String {
    let stop = format!(
        "{} -D {} -w stop -m fast",
        shell_quote(pg_ctl),
        shell_quote(data_dir)
    );
    let stop = match run_as {
        Some(user) => format!(
            "su -s /bin/sh {} -c {}",
            shell_quote(user),
            shell_quote(&stop)
        ),
        None => stop,
    };
    format!("{stop} && rm -rf {}", shell_quote(root))
}

pub(super) fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b':' | b'=' | b',')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
