//! The pure part of the Supabase plan: each `pg_restore --list` line kept, skipped or moved,
//! from the platform facts.

use super::sql::unquote_ident;
use super::{
    DataState, Facts, Plan, DATA_DESCS, DESCS, PLATFORM_DATA, PLATFORM_EXTENSIONS, PLATFORM_ROLES,
};
use std::collections::{BTreeMap, HashSet};

/// One line of `pg_restore --list`.
#[derive(Debug)]
pub(super) enum Line<'a> {
    /// Comments, blank lines and entry types this module does not know: kept as they are.
    Other(&'a str),
    Entry(Entry<'a>),
}

#[derive(Debug)]
pub(super) struct Entry<'a> {
    pub(super) line: &'a str,
    pub(super) desc: &'a str,
    /// Schema, or `-`.
    pub(super) ns: &'a str,
    pub(super) tag: &'a str,
    pub(super) owner: &'a str,
}

/// Parses `ID; TABLEOID OID DESC SCHEMA TAG OWNER`; schema names with spaces are found
/// among `schemas`.
pub(super) fn parse_line<'a>(line: &'a str, schemas: &[String]) -> Line<'a> {
    let parsed = (|| {
        if line.starts_with(';') {
            return None;
        }
        let (id, rest) = line.split_once("; ")?;
        id.trim().parse::<u64>().ok()?;
        let mut parts = rest.splitn(3, ' ');
        let (_tableoid, _oid, tail) = (parts.next()?, parts.next()?, parts.next()?);
        let desc = DESCS
            .iter()
            .copied()
            .filter(|d| tail.strip_prefix(d).is_some_and(|r| r.starts_with(' ')))
            .max_by_key(|d| d.len())?;
        let rest = &tail[desc.len() + 1..];
        let (before, owner) = rest.rsplit_once(' ').unwrap_or((rest, ""));
        let ns_len = if before == "-" || before.starts_with("- ") {
            1
        } else {
            schemas
                .iter()
                .filter(|s| before == s.as_str() || before.starts_with(&format!("{s} ")))
                .map(String::len)
                .max()
                .unwrap_or_else(|| before.find(' ').unwrap_or(before.len()))
        };
        Some(Entry {
            line,
            desc: &tail[..desc.len()],
            ns: &before[..ns_len],
            tag: before.get(ns_len + 1..).unwrap_or(""),
            owner,
        })
    })();
    match parsed {
        Some(e) => Line::Entry(e),
        None => Line::Other(line),
    }
}

/// What happens to one entry.
pub(super) enum Decision {
    Keep,
    /// Skipped, listed by name with the reason.
    Skip(String),
    /// Skipped as part of a platform schema (summarised per schema).
    Platform,
    /// A platform table's rows: restored after all other data.
    LateData,
}

pub(super) fn filter(entries: &[Line<'_>], f: &Facts) -> Plan {
    let platform = |s: &str| f.platform_schemas.iter().any(|p| p == s);
    let skipped_ext = |name: &str| {
        f.installed_extensions.contains(name)
            || (PLATFORM_EXTENSIONS.contains(&name) && !f.available_extensions.contains(name))
    };
    let unavailable_ext = entries.iter().any(|l| match l {
        Line::Entry(e) => {
            e.desc == "EXTENSION"
                && PLATFORM_EXTENSIONS.contains(&e.tag)
                && !f.available_extensions.contains(e.tag)
        }
        Line::Other(_) => false,
    });
    let pgsodium_gone = !f.available_extensions.contains("pgsodium")
        && !f.installed_extensions.contains("pgsodium");
    let defined: HashSet<(&str, &str)> = entries
        .iter()
        .filter_map(|l| match l {
            Line::Entry(e) if e.desc == "TABLE" => Some((e.ns, e.tag)),
            _ => None,
        })
        .collect();
    let skipped_pubs: HashSet<&str> = entries
        .iter()
        .filter_map(|l| match l {
            Line::Entry(e) if e.desc == "PUBLICATION" && f.publications.contains(e.tag) => {
                Some(e.tag)
            }
            _ => None,
        })
        .collect();

    let decide = |e: &Entry<'_>| -> Decision {
        let on_object = |prefix: &str| e.tag.strip_prefix(prefix).map(unquote_ident);
        match e.desc {
            "EVENT TRIGGER" => {
                return Decision::Skip(
                    "platform machinery: event triggers need a superuser and the platform installs its own".into(),
                )
            }
            "EXTENSION" if f.installed_extensions.contains(e.tag) => {
                return Decision::Skip("already installed in the target database".into())
            }
            "EXTENSION" if skipped_ext(e.tag) => {
                return Decision::Skip(
                    "a Supabase platform extension the target server does not have".into(),
                )
            }
            "DEFAULT ACL" if PLATFORM_ROLES.contains(&e.owner) => {
                return Decision::Skip(format!(
                    "default privileges of the platform role {}",
                    e.owner
                ))
            }
            "DEFAULT ACL" if !f.actable_roles.contains(e.owner) => {
                return Decision::Skip(format!(
                    "default privileges of role {}, which the restoring role is not a member of",
                    e.owner
                ))
            }
            "PUBLICATION" if skipped_pubs.contains(e.tag) => {
                return Decision::Skip("already on the target".into())
            }
            "SECURITY LABEL" if pgsodium_gone => {
                return Decision::Skip("pgsodium is not restored, so its labels cannot be".into())
            }
            "SCHEMA" if e.ns == "-" && platform(e.tag) => return Decision::Platform,
            "COMMENT" | "ACL" | "SECURITY LABEL" if e.ns == "-" => {
                if on_object("EVENT TRIGGER ").is_some() {
                    return Decision::Skip("belongs to a skipped event trigger".into());
                }
                if on_object("EXTENSION ").is_some_and(|x| skipped_ext(&x)) {
                    return Decision::Skip("belongs to a skipped extension".into());
                }
                if on_object("PUBLICATION ").is_some_and(|p| skipped_pubs.contains(p.as_str())) {
                    return Decision::Skip("belongs to a publication already on the target".into());
                }
                if on_object("SCHEMA ").is_some_and(|x| platform(&x)) {
                    return Decision::Platform;
                }
            }
            _ => {}
        }
        if platform(e.ns) {
            let key = format!("{}\t{}", e.ns, e.tag);
            return match e.desc {
                "TABLE DATA" => {
                    let k = (e.ns.to_string(), e.tag.to_string());
                    if !PLATFORM_DATA.iter().any(|(s, t)| *s == e.ns && *t == e.tag) {
                        return Decision::Skip(
                            "platform state (sessions, tokens, logs, migration history) that the target project keeps its own of".into(),
                        );
                    }
                    match f.data.get(&k) {
                        Some(DataState::Empty) => Decision::LateData,
                        Some(DataState::HasRows) => {
                            Decision::Skip("the target already has rows in it".into())
                        }
                        Some(DataState::Unreadable(why)) => {
                            Decision::Skip(format!("cannot read it on the target: {why}"))
                        }
                        Some(DataState::Missing) | None => {
                            Decision::Skip("the target has no such table".into())
                        }
                    }
                }
                "POLICY" if f.policies.contains(&key) => {
                    Decision::Skip("the target already has it".into())
                }
                "TRIGGER" if f.triggers.contains(&key) => {
                    Decision::Skip("the target already has it".into())
                }
                "POLICY" | "TRIGGER" => Decision::Keep,
                _ => Decision::Platform,
            };
        }
        if e.desc == "TABLE DATA" && unavailable_ext && !defined.contains(&(e.ns, e.tag)) {
            return Decision::Skip(
                "configuration data of an extension that is not restored".into(),
            );
        }
        Decision::Keep
    };

    let mut out: Vec<String> = Vec::new();
    let mut late: Vec<(usize, &str, String)> = Vec::new();
    let mut skipped = Vec::new();
    let mut per_schema: BTreeMap<&str, usize> = BTreeMap::new();
    let mut last_data = None;
    for l in entries {
        let e = match l {
            Line::Other(s) => {
                out.push(s.to_string());
                continue;
            }
            Line::Entry(e) => e,
        };
        let name = if e.ns == "-" {
            format!("{} {}", e.desc, e.tag)
        } else {
            format!("{} {}.{}", e.desc, e.ns, e.tag)
        };
        match decide(e) {
            Decision::Keep => {
                if DATA_DESCS.contains(&e.desc) {
                    last_data = Some(out.len());
                }
                out.push(e.line.to_string());
            }
            Decision::Skip(why) => {
                skipped.push(format!("{name}: {why}"));
                out.push(format!(";{}", e.line));
            }
            Decision::Platform => {
                *per_schema
                    .entry(if e.ns == "-" {
                        e.tag.trim_start_matches("SCHEMA ")
                    } else {
                        e.ns
                    })
                    .or_default() += 1;
                out.push(format!(";{}", e.line));
            }
            Decision::LateData => {
                let rank = PLATFORM_DATA
                    .iter()
                    .position(|(s, t)| *s == e.ns && *t == e.tag)
                    .unwrap_or(usize::MAX);
                late.push((rank, e.line, format!("{}.{}", e.ns, e.tag)));
            }
        }
    }
    let reorder = !late.is_empty();
    late.sort();
    let at = last_data.map(|i| i + 1).unwrap_or(out.len());
    let mut notes = Vec::new();
    if reorder {
        let names: Vec<&str> = late.iter().map(|(_, _, n)| n.as_str()).collect();
        notes.push(format!(
            "rows of {} were restored into the target project's own (empty) tables",
            names.join(", ")
        ));
    }
    for (i, (_, l, _)) in late.into_iter().enumerate() {
        out.insert(at + i, l.to_string());
    }
    for (schema, n) in per_schema {
        skipped.push(format!(
            "{n} entries of schema {schema}: the target project's platform owns this schema and keeps its own version"
        ));
    }
    let mut list = out.join("\n");
    list.push('\n');
    Plan {
        list,
        skipped,
        reorder,
        notes,
    }
}
