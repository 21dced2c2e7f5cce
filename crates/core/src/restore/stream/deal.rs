//! Dealing the data section to the lanes: work units by estimated load cost, largest
//! first, to the least loaded lane; a large table water-filled over the lanes, cut at
//! recorded row boundaries (pure).

use super::deps::large_object;
use crate::frames::DumpIndex;
use crate::restore::RestoreJob;
use pgdrill_pg::archive::{self, Section, Toc};
use std::collections::{HashMap, HashSet};

/// Smallest part a large table is cut into.
pub(super) const MIN_PART: u64 = 4 << 20;
/// Most small blocks restored by one pg_restore.
pub(super) const MAX_GROUP: usize = 200;

/// A piece of a task's input after the header and TOC.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Piece {
    /// Write a table-data block start for this dump id first (a part after the first).
    pub(super) open: Option<i64>,
    pub(super) from: u64,
    pub(super) to: u64,
    /// End the block after the bytes (a part before the last).
    pub(super) close: bool,
}

/// One pg_restore run of the data section.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Task {
    /// Entries for `--use-list`, in archive order.
    pub(super) entries: Vec<i64>,
    pub(super) pieces: Vec<Piece>,
    pub(super) bytes: u64,
}

/// Blocks smaller than this are restored in runs of neighbours, several per pg_restore.
pub(super) const SMALL: u64 = 1 << 20;

/// COPY spends about as long on a row as on this many bytes of its text (pgbench_accounts'
/// 100-byte rows load at about half the byte rate of 500-byte rows), so a table's load cost
/// is estimated as `bytes + ROW_COST * rows`.
pub(super) const ROW_COST: u64 = 120;

/// What one lane will load, in order, and how many parts each table's data has.
///
/// Work units (a block, or a run of small neighbouring blocks) are dealt by estimated load
/// cost (bytes and rows), largest first, each to the least loaded lane. A splittable unit
/// that would take that lane past its fair share (`total / jobs`) is instead spread over the
/// lanes, cut at recorded row boundaries so that every lane it reaches ends at the same
/// level ("water-filling"): the largest table is loaded by all lanes at once and is complete
/// early, so its indexes and ANALYZE run while the lanes load the rest, and the lanes finish
/// together. Tables whose physical row order matters are never cut.
pub(super) fn deal(
    toc: &Toc,
    index: &DumpIndex,
    jobs: u32,
    rows: &HashMap<i64, u64>,
) -> (Vec<Vec<Task>>, HashMap<i64, usize>) {
    let jobs = jobs.max(1) as usize;
    let data: Vec<&archive::TocItem> = toc
        .items
        .iter()
        .filter(|i| i.section == Section::Data && !large_object(i))
        .collect();
    let ordered: HashSet<i64> = toc
        .items
        .iter()
        .filter(|i| i.orders_rows)
        .flat_map(|i| i.deps.iter().copied())
        .collect();
    let items: HashMap<i64, &archive::TocItem> = data.iter().map(|i| (i.dump_id, *i)).collect();
    let splittable = |b: &archive::DataBlock| {
        items
            .get(&b.id)
            .is_some_and(|i| i.desc == "TABLE DATA" && !i.deps.iter().any(|d| ordered.contains(d)))
            && !b.splits.is_empty()
    };
    let cost_of = |b: &archive::DataBlock| {
        (b.end - b.start).saturating_add(rows.get(&b.id).copied().unwrap_or(0) * ROW_COST)
    };

    // Work units: big blocks alone, small neighbours together.
    let mut units: Vec<(Task, u64)> = Vec::new();
    let mut cuttable: Vec<Option<&archive::DataBlock>> = Vec::new();
    let mut group: Option<(Task, u64)> = None;
    for b in index.blocks.iter().filter(|b| items.contains_key(&b.id)) {
        let size = b.end - b.start;
        if size >= SMALL {
            if let Some(g) = group.take() {
                units.push(g);
                cuttable.push(None);
            }
            units.push((Task::whole(b), cost_of(b)));
            cuttable.push(splittable(b).then_some(b));
            continue;
        }
        let (g, cost) = group.get_or_insert_with(|| {
            (
                Task {
                    entries: Vec::new(),
                    pieces: vec![Piece {
                        open: None,
                        from: b.start,
                        to: b.start,
                        close: false,
                    }],
                    bytes: 0,
                },
                0,
            )
        });
        if let Some(p) = g.pieces.last_mut() {
            p.to = b.end;
        }
        g.entries.push(b.id);
        g.bytes += size;
        *cost += cost_of(b);
        if g.bytes >= 16 * SMALL || g.entries.len() >= MAX_GROUP {
            units.push(group.take().unwrap_or_else(|| unreachable!()));
            cuttable.push(None);
        }
    }
    if let Some(g) = group.take() {
        units.push(g);
        cuttable.push(None);
    }
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&a, &b| units[b].1.cmp(&units[a].1));

    let total: u64 = units.iter().map(|u| u.1).sum();
    let fair = total.div_ceil(jobs as u64).max(1);
    let mut lanes: Vec<Vec<Task>> = vec![Vec::new(); jobs];
    let mut loads: Vec<u64> = vec![0; jobs];
    let mut parts: HashMap<i64, usize> = HashMap::new();
    for i in order {
        let (unit, cost) = &units[i];
        for id in &unit.entries {
            parts.insert(*id, 1);
        }
        let least = (0..jobs).min_by_key(|&l| loads[l]).unwrap_or(0);
        match cuttable[i] {
            Some(block) if jobs > 1 && loads[least] + cost > fair => {
                let n = water_fill(block, *cost, &mut lanes, &mut loads);
                parts.insert(block.id, n);
            }
            _ => {
                lanes[least].push(unit.clone());
                loads[least] += cost;
            }
        }
    }
    // Data entries without a block (sequence values, ...): one run, on the lightest lane.
    let rest: Vec<i64> = data
        .iter()
        .filter(|i| !parts.contains_key(&i.dump_id))
        .map(|i| i.dump_id)
        .collect();
    let light = |loads: &[u64]| (0..jobs).min_by_key(|&l| loads[l]).unwrap_or(0);
    if !rest.is_empty() {
        let l = light(&loads);
        lanes[l].push(Task {
            entries: rest,
            pieces: Vec::new(),
            bytes: 0,
        });
    }
    // Large objects: created, filled and commented in one run, in TOC order.
    let los: Vec<i64> = toc
        .items
        .iter()
        .filter(|i| large_object(i))
        .map(|i| i.dump_id)
        .collect();
    if !los.is_empty() {
        let ids: HashSet<i64> = los.iter().copied().collect();
        let pieces: Vec<Piece> = index
            .blocks
            .iter()
            .filter(|b| ids.contains(&b.id))
            .map(|b| Piece {
                open: None,
                from: b.start,
                to: b.end,
                close: false,
            })
            .collect();
        let bytes = pieces.iter().map(|p| p.to - p.from).sum();
        let l = light(&loads);
        lanes[l].insert(
            0,
            Task {
                entries: los,
                pieces,
                bytes,
            },
        );
    }
    (lanes, parts)
}

impl Task {
    pub(super) fn whole(b: &archive::DataBlock) -> Task {
        Task {
            entries: vec![b.id],
            pieces: vec![Piece {
                open: None,
                from: b.start,
                to: b.end,
                close: false,
            }],
            bytes: b.end - b.start,
        }
    }
}

/// The recorded split point of `b` nearest to `want`, if it leaves at least [`MIN_PART`]
/// on both sides (between `from` and the block's end).
pub(super) fn cut_near(b: &archive::DataBlock, from: u64, want: u64) -> Option<u64> {
    b.splits
        .iter()
        .copied()
        .filter(|&s| s >= from + MIN_PART && s + MIN_PART <= b.end)
        .min_by_key(|&s| s.abs_diff(want))
}

/// Spreads a splittable block of estimated `cost` over the lanes so that every lane it
/// reaches ends at the same level; cuts at the recorded split points nearest to each share.
/// Returns the number of parts.
pub(super) fn water_fill(
    block: &archive::DataBlock,
    cost: u64,
    lanes: &mut [Vec<Task>],
    loads: &mut [u64],
) -> usize {
    // The level h where the lanes below it have room for exactly `cost`.
    let mut sorted = loads.to_vec();
    sorted.sort_unstable();
    let mut level = u64::MAX;
    let mut below = 0u64;
    for k in 0..sorted.len() {
        below += sorted[k];
        let h = (below + cost) / (k as u64 + 1);
        if sorted.get(k + 1).is_none_or(|&next| h <= next) {
            level = h;
            break;
        }
    }
    let bytes = (block.end - block.start).max(1);
    let mut takers: Vec<usize> = (0..loads.len()).filter(|&l| loads[l] < level).collect();
    takers.sort_by_key(|&l| loads[l]);
    let mut from = block.start;
    let mut n = 0;
    for (k, &lane) in takers.iter().enumerate() {
        if from >= block.end {
            break;
        }
        let share = level.saturating_sub(loads[lane]);
        let want = from.saturating_add(
            u64::try_from(u128::from(share) * u128::from(bytes) / u128::from(cost.max(1)))
                .unwrap_or(u64::MAX),
        );
        let to = if k + 1 == takers.len() {
            block.end
        } else {
            cut_near(block, from, want).unwrap_or(block.end)
        };
        lanes[lane].push(Task {
            entries: vec![block.id],
            pieces: vec![Piece {
                open: (from > block.start).then_some(block.id),
                from,
                to,
                close: to < block.end,
            }],
            bytes: to - from,
        });
        loads[lane] += u64::try_from(u128::from(to - from) * u128::from(cost) / u128::from(bytes))
            .unwrap_or(u64::MAX);
        n += 1;
        from = to;
    }
    n
}

/// Rows of each TABLE DATA entry, from the manifest's counts.
pub(super) fn table_rows(job: &RestoreJob<'_>, toc: &Toc) -> HashMap<i64, u64> {
    let counts: HashMap<(&str, &str), u64> = job
        .manifest
        .content
        .tables
        .iter()
        .map(|t| ((t.schema.as_str(), t.name.as_str()), t.rows))
        .collect();
    toc.items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .filter_map(|i| {
            Some((
                i.dump_id,
                *counts.get(&(i.namespace.as_str(), i.tag.as_str()))?,
            ))
        })
        .collect()
}
