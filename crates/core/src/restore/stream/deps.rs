//! Which TOC entries depend on what: large objects, the post-data entries of one table
//! alone, and those that can run as soon as all data is in (pure).

use pgdrill_pg::archive::{self, Section, Toc};
use std::collections::{HashMap, HashSet};

/// Large-object entries (metadata, data, comments, ACLs): pg_restore treats them all as
/// data whatever their section, so they are restored together, in TOC order, in one run.
pub(super) fn large_object(i: &archive::TocItem) -> bool {
    matches!(
        i.desc.as_str(),
        "BLOB" | "BLOB METADATA" | "BLOBS" | "LARGE OBJECT" | "LARGE OBJECTS"
    ) || (matches!(i.desc.as_str(), "ACL" | "COMMENT" | "SECURITY LABEL")
        && i.tag.starts_with("LARGE OBJECT"))
}

/// `--use-list` text of the entries of `section` (large objects excluded).
pub(super) fn section_list(toc: &Toc, section: Section) -> String {
    toc.items
        .iter()
        .filter(|i| i.section == section && !large_object(i))
        .map(|i| format!("{};\n", i.dump_id))
        .collect()
}

/// The post-data entries that belong to one table's data alone: all their dependencies are
/// that table or pre-data objects (its indexes, primary key, checks, triggers, ...; not
/// foreign keys, which also need the referenced table). Keyed by TABLE DATA dump id.
pub(super) fn table_post_data(toc: &Toc) -> HashMap<i64, Vec<i64>> {
    let by_id: HashMap<i64, &archive::TocItem> = toc.items.iter().map(|i| (i.dump_id, i)).collect();
    // TABLE entry → its TABLE DATA entry.
    let data_of: HashMap<i64, i64> = toc
        .items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .flat_map(|d| {
            d.deps
                .iter()
                .filter(|t| by_id.get(t).is_some_and(|t| t.desc == "TABLE"))
                .map(move |t| (*t, d.dump_id))
        })
        .collect();
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    for p in toc
        .items
        .iter()
        .filter(|i| i.section == Section::PostData && !large_object(i))
    {
        let tables: HashSet<i64> = p
            .deps
            .iter()
            .filter(|d| data_of.contains_key(d))
            .copied()
            .collect();
        let others_pre = p.deps.iter().all(|d| {
            tables.contains(d)
                || by_id
                    .get(d)
                    .is_some_and(|i| i.section == Section::PreData && !large_object(i))
        });
        if tables.len() == 1 && others_pre {
            if let Some(data) = tables.iter().next().and_then(|t| data_of.get(t)) {
                out.entry(*data).or_default().push(p.dump_id);
            }
        }
    }
    out
}

/// The post-data entries that can run as soon as all data is in, beside the large tables'
/// own entries: none of their dependencies, direct or through another post-data entry, is
/// a large table (`big`: TABLE DATA ids), its data or its own entries; not event triggers.
/// In TOC order.
pub(super) fn early_post_data(
    toc: &Toc,
    own_post: &HashMap<i64, Vec<i64>>,
    big: &HashSet<i64>,
) -> Vec<i64> {
    let tables: HashSet<i64> = toc
        .items
        .iter()
        .filter(|i| i.desc == "TABLE")
        .map(|i| i.dump_id)
        .collect();
    let mut blocked: HashSet<i64> = big.clone();
    for i in toc.items.iter().filter(|i| big.contains(&i.dump_id)) {
        // The TABLE entry the large table's data belongs to.
        blocked.extend(i.deps.iter().filter(|d| tables.contains(d)).copied());
    }
    for id in big {
        blocked.extend(own_post.get(id).into_iter().flatten().copied());
    }
    // Event triggers would fire on the large tables' index builds: pg_restore makes them last.
    blocked.extend(
        toc.items
            .iter()
            .filter(|i| i.desc == "EVENT TRIGGER")
            .map(|i| i.dump_id),
    );
    let post: Vec<&archive::TocItem> = toc
        .items
        .iter()
        .filter(|i| i.section == Section::PostData && !large_object(i))
        .filter(|i| !blocked.contains(&i.dump_id))
        .collect();
    // Dependencies may come later in the TOC: repeat until nothing more is blocked.
    loop {
        let before = blocked.len();
        for i in &post {
            if i.deps.iter().any(|d| blocked.contains(d)) {
                blocked.insert(i.dump_id);
            }
        }
        if blocked.len() == before {
            break;
        }
    }
    post.iter()
        .map(|i| i.dump_id)
        .filter(|id| !blocked.contains(id))
        .collect()
}

pub(super) fn id_list(ids: &[i64]) -> String {
    ids.iter().map(|id| format!("{id};\n")).collect()
}
