//! Which archive entries a table restore takes (pure): the named tables and their
//! partitions, then every entry that belongs to them alone (data, indexes, constraints,
//! owned sequences and their values, defaults, triggers, RLS and policies, comments, grants,
//! statistics). An entry that also needs a relation not restored (a foreign key to another
//! table, a default using a shared sequence) is left out and listed. A sequence that a
//! table's own definition needs (a column default `nextval('shared_seq')` that pg_dump writes
//! inside CREATE TABLE) comes along with its value: the table cannot be created without it.

use crate::{Error, Result};
use pgdrill_pg::archive::TocItem;
use std::collections::{BTreeSet, HashMap};

/// Entries that may come along with a restored table.
const DEPENDENT: &[&str] = &[
    "TABLE DATA",
    "INDEX",
    "INDEX ATTACH",
    "CONSTRAINT",
    "FK CONSTRAINT",
    "CHECK CONSTRAINT",
    "TRIGGER",
    "POLICY",
    "ROW SECURITY",
    "RULE",
    "COMMENT",
    "SECURITY LABEL",
    "ACL",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "DEFAULT",
    "TABLE ATTACH",
    "STATISTICS",
    "STATISTICS DATA",
];

/// Entries for relations and their parts: a dependent entry needs all of those it depends
/// on to be restored too.
const RELATIONS: &[&str] = &[
    "TABLE",
    "SEQUENCE",
    "INDEX",
    "CONSTRAINT",
    "FK CONSTRAINT",
    "VIEW",
    "MATERIALIZED VIEW",
    "FOREIGN TABLE",
    "TABLE DATA",
];

/// What a scratch database needs besides the selection for its definitions to run:
/// functions, types, domains, collations, extensions (never their data), table access
/// methods (`CREATE TABLE ... USING heap2`), operator classes and families (an index using
/// one), text search parsers and templates (a dictionary's).
const SUPPORT: &[&str] = &[
    "ACCESS METHOD",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
    "EXTENSION",
    "FUNCTION",
    "PROCEDURE",
    "AGGREGATE",
    "TYPE",
    "SHELL TYPE",
    "DOMAIN",
    "COLLATION",
    "OPERATOR",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
];

/// The entries a table restore takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Every entry to restore (dump ids).
    pub ids: BTreeSet<i64>,
    /// The tables restored, named tables and their partitions: (schema, name).
    pub tables: Vec<(String, String)>,
    /// Dump ids of their `TABLE DATA` entries.
    pub data: Vec<i64>,
    /// Entries left out because they need a relation not restored, each `DESC schema name:
    /// reason`.
    pub skipped: Vec<String>,
    /// Functions, types, extensions, ... the selection depends on (restored only into a
    /// scratch database, which starts empty).
    pub support: BTreeSet<i64>,
    /// Sequences no restored table owns that a restored table's definition needs (its
    /// column default calls `nextval` on them): (schema, name).
    pub sequences: Vec<(String, String)>,
}

fn is_table(i: &TocItem) -> bool {
    i.desc == "TABLE"
}

fn label(i: &TocItem) -> String {
    if i.namespace.is_empty() {
        format!("{} {}", i.desc, i.tag)
    } else {
        format!("{} {}.{}", i.desc, i.namespace, i.tag)
    }
}

/// Selects `tables` (schema, name) and every table of `schemas`, with what belongs to them.
/// A table named that the backup lacks is an error naming it.
pub fn select(
    items: &[TocItem],
    tables: &[(String, String)],
    schemas: &[String],
) -> Result<Selection> {
    let by_id: HashMap<i64, &TocItem> = items.iter().map(|i| (i.dump_id, i)).collect();
    let mut ids = BTreeSet::new();
    let mut missing = Vec::new();
    for (s, n) in tables {
        match items
            .iter()
            .find(|i| is_table(i) && &i.namespace == s && &i.tag == n)
        {
            Some(i) => {
                ids.insert(i.dump_id);
            }
            None => missing.push(format!("{s}.{n}")),
        }
    }
    for s in schemas {
        let before = ids.len();
        ids.extend(
            items
                .iter()
                .filter(|i| is_table(i) && &i.namespace == s)
                .map(|i| i.dump_id),
        );
        if ids.len() == before {
            missing.push(format!("schema {s}"));
        }
    }
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "the backup has no table {}: run `pgdrill show <ID>` to see its tables",
            missing.join(", ")
        )));
    }
    if ids.is_empty() {
        return Err(Error::Invalid(
            "name the tables to restore with --table SCHEMA.TABLE or --schema NAME".into(),
        ));
    }
    let selected_table =
        |ids: &BTreeSet<i64>, d: &i64| ids.contains(d) && by_id.get(d).is_some_and(|t| is_table(t));
    // What the selected tables' own definitions depend on.
    let table_deps = |ids: &BTreeSet<i64>| -> BTreeSet<i64> {
        ids.iter()
            .filter_map(|d| by_id.get(d))
            .filter(|t| is_table(t))
            .flat_map(|t| t.deps.iter().copied())
            .collect()
    };
    loop {
        let mut add = Vec::new();
        let needed = table_deps(&ids);
        for i in items.iter().filter(|i| !ids.contains(&i.dump_id)) {
            // A sequence a restored table's CREATE TABLE names (an inline column default).
            if i.desc == "SEQUENCE" && needed.contains(&i.dump_id) {
                add.push(i.dump_id);
                continue;
            }
            // Partitions (and inheritance children) depend on their parent table.
            if is_table(i) && i.deps.iter().any(|d| selected_table(&ids, d)) {
                add.push(i.dump_id);
                continue;
            }
            // A partition attached to a restored parent comes along.
            if i.desc == "TABLE ATTACH" && i.deps.iter().any(|d| selected_table(&ids, d)) {
                add.extend(
                    i.deps
                        .iter()
                        .filter(|d| by_id.get(d).is_some_and(|t| is_table(t)) && !ids.contains(d)),
                );
            }
            // A sequence owned by a restored table comes along.
            if i.desc == "SEQUENCE OWNED BY" && i.deps.iter().any(|d| selected_table(&ids, d)) {
                add.extend(i.deps.iter().filter(|d| {
                    by_id.get(d).is_some_and(|t| t.desc == "SEQUENCE") && !ids.contains(d)
                }));
            }
            if !DEPENDENT.contains(&i.desc.as_str()) || !i.deps.iter().any(|d| ids.contains(d)) {
                continue;
            }
            let complete = i.deps.iter().all(|d| {
                ids.contains(d)
                    || by_id
                        .get(d)
                        .is_none_or(|t| !RELATIONS.contains(&t.desc.as_str()))
            });
            if complete {
                add.push(i.dump_id);
            }
        }
        if add.is_empty() {
            break;
        }
        ids.extend(add);
    }
    let mut skipped = Vec::new();
    for i in items.iter().filter(|i| !ids.contains(&i.dump_id)) {
        if !DEPENDENT.contains(&i.desc.as_str()) || !i.deps.iter().any(|d| ids.contains(d)) {
            continue;
        }
        // A set: a rule on a view depends on it once per reference (`shoelace_ins` on
        // the regression database's `shoelace` named it seven times).
        let absent: BTreeSet<String> = i
            .deps
            .iter()
            .filter(|d| !ids.contains(d))
            .filter_map(|d| by_id.get(d))
            .filter(|t| RELATIONS.contains(&t.desc.as_str()))
            .map(|t| label(t))
            .collect();
        skipped.push(format!(
            "{}: needs {}, which is not restored",
            label(i),
            absent.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut support = BTreeSet::new();
    let mut todo: Vec<i64> = ids.iter().copied().collect();
    while let Some(id) = todo.pop() {
        for d in by_id
            .get(&id)
            .map(|i| i.deps.as_slice())
            .unwrap_or_default()
        {
            if ids.contains(d) || support.contains(d) {
                continue;
            }
            if by_id
                .get(d)
                .is_some_and(|t| SUPPORT.contains(&t.desc.as_str()))
            {
                support.insert(*d);
                todo.push(*d);
            }
        }
    }
    let tables = items
        .iter()
        .filter(|i| is_table(i) && ids.contains(&i.dump_id))
        .map(|i| (i.namespace.clone(), i.tag.clone()))
        .collect();
    let data = items
        .iter()
        .filter(|i| i.desc == "TABLE DATA" && ids.contains(&i.dump_id))
        .map(|i| i.dump_id)
        .collect();
    let needed = table_deps(&ids);
    let sequences = items
        .iter()
        .filter(|i| i.desc == "SEQUENCE" && needed.contains(&i.dump_id))
        .map(|i| (i.namespace.clone(), i.tag.clone()))
        .collect();
    Ok(Selection {
        ids,
        tables,
        data,
        skipped,
        support,
        sequences,
    })
}

/// Leaves out the grants and policies of the selection that name a role the target lacks
/// (pg_restore would fail on them), listing each in `skipped`. A table without its policy
/// keeps RLS enabled: it shows no rows to other roles, the safe side.
pub fn without_missing_roles(items: &[TocItem], sel: &mut Selection, have: &BTreeSet<String>) {
    let kept: Vec<&TocItem> = items
        .iter()
        .filter(|i| sel.ids.contains(&i.dump_id))
        .collect();
    for i in kept {
        if i.desc != "ACL" && i.desc != "POLICY" && i.desc != "DEFAULT ACL" {
            continue;
        }
        let missing: BTreeSet<String> = crate::restore::sql::refs(&i.defn)
            .roles
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| !have.contains(r))
            .collect();
        if !missing.is_empty() {
            sel.ids.remove(&i.dump_id);
            sel.skipped.push(format!(
                "{}: names role {}, which the target lacks",
                label(i),
                missing.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
}

/// The `--use-list` text for `ids`, in TOC order (schemas are created before, not listed).
pub fn list_text(items: &[TocItem], ids: &BTreeSet<i64>) -> String {
    items
        .iter()
        .filter(|i| ids.contains(&i.dump_id) && i.desc != "SCHEMA")
        .map(|i| i.list_line() + "\n")
        .collect()
}

#[cfg(test)]
mod tests;
