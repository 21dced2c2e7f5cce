//! Unit tests of the streamed restore's pure parts.

use super::copy::*;
use super::deal::*;
use super::deps::*;
use super::source::*;
use super::*;
use crate::frames::DumpIndex;
use pgdrill_pg::archive::{self, DataBlock, Section, Toc, TocItem};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

fn item(id: i64, desc: &str, section: Section, deps: Vec<i64>, orders: bool) -> TocItem {
    TocItem {
        dump_id: id,
        desc: desc.into(),
        namespace: "public".into(),
        tag: format!("t{id}"),
        section,
        deps,
        orders_rows: orders,
        copy_stmt: (desc == "TABLE DATA").then(|| format!("COPY public.t{id} FROM stdin;\n")),
        defn: String::new(),
        owner: String::new(),
        table_oid: "0".into(),
        oid: "0".into(),
    }
}

/// A TOC of `items`: 4-byte ints, uncompressed blocks, no session settings.
fn toc(items: Vec<TocItem>) -> Toc {
    Toc {
        int_size: 4,
        uncompressed: true,
        session: Vec::new(),
        items,
    }
}

fn index(blocks: Vec<DataBlock>) -> DumpIndex {
    let end = blocks.last().map(|b| b.end).unwrap_or(100);
    DumpIndex {
        version: 1,
        raw_size: end,
        compressed_size: 0,
        frames: vec![[0, 0]],
        toc_end: 100,
        blocks,
    }
}

fn feeds(rx: &mut tokio::sync::mpsc::Receiver<Feed>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(f) = rx.try_recv() {
        out.push(match f {
            Feed::Start(id) => format!("start {id}"),
            Feed::Data(b) => format!("data {}", String::from_utf8_lossy(&b)),
            Feed::End => "end".into(),
        });
    }
    out
}

fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut v = archive::encode_int(bytes.len() as i64, 4);
    v.extend_from_slice(bytes);
    v
}

#[test]
fn post_data_that_does_not_involve_a_large_table_runs_early() {
    let post = |id, desc, deps| item(id, desc, Section::PostData, deps, false);
    let toc = toc(vec![
        item(1, "SCHEMA", Section::PreData, vec![], false),
        item(2, "TABLE", Section::PreData, vec![1], false),
        item(3, "TABLE", Section::PreData, vec![1], false),
        item(10, "TABLE DATA", Section::Data, vec![2], false),
        item(11, "TABLE DATA", Section::Data, vec![3], false),
        // A comment on the foreign key below, listed before it.
        post(25, "COMMENT", vec![24]),
        post(20, "CONSTRAINT", vec![2]),
        post(21, "CONSTRAINT", vec![3]),
        post(22, "INDEX", vec![3]),
        // The small table's foreign key to the large one's primary key.
        post(24, "FK CONSTRAINT", vec![3, 20]),
        // The large table's foreign key to the small one.
        post(26, "FK CONSTRAINT", vec![2, 21]),
        // Depends on the schema only.
        post(27, "PUBLICATION", vec![1]),
        // Would fire on the other entries' DDL: always last.
        post(28, "EVENT TRIGGER", vec![]),
    ]);
    let own = table_post_data(&toc);
    assert_eq!(own.get(&10), Some(&vec![20]));
    let big: HashSet<i64> = [10].into();
    assert_eq!(early_post_data(&toc, &own, &big), vec![21, 22, 27]);
    // Without a large table everything but the event trigger is early.
    assert_eq!(
        early_post_data(&toc, &own, &HashSet::new()),
        vec![25, 20, 21, 22, 24, 26, 27]
    );
}

#[test]
fn index_builds_beside_lanes_skip_a_setting_the_server_lacks() {
    assert_eq!(
        beside_lanes(150_018),
        &[("max_parallel_maintenance_workers", "0")]
    );
    assert_eq!(beside_lanes(110_000).len(), 1);
    // PostgreSQL 10 refuses a connection that sets an unknown parameter.
    assert!(beside_lanes(100_023).is_empty());
}

#[test]
fn age_chunks_are_located_from_the_sizes_alone() {
    let (identity, recipient) = crate::crypto::generate_identity("2026-01-01T00:00:00Z");
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("key.txt");
    std::fs::write(&key, identity).expect("key");
    let enc = crate::crypto::EncryptionKeys::new(&[recipient], None).expect("keys");
    for len in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut sink = enc.wrap(Vec::new()).expect("wrap");
        sink.write_all(&plain).expect("write");
        let stored = sink.finish().expect("finish");
        let start = age_payload_start(stored.len() as u64, len as u64).expect("start");
        // Every chunk ends where the mapping says: cutting the object there still
        // decrypts everything before the cut.
        let chunks = (len as u64).div_ceil(AGE_CHUNK).max(1);
        assert_eq!(
            start + (len as u64) + chunks * AGE_TAG,
            stored.len() as u64,
            "{len}"
        );
        if len > 65_536 {
            let cut = (start + AGE_CHUNK + AGE_TAG) as usize;
            let keys =
                crate::crypto::DecryptionKeys::new(std::slice::from_ref(&key), None).expect("dk");
            let mut r = keys.decrypt(&stored[..cut], "t").expect("decrypt");
            let mut got = vec![0u8; AGE_CHUNK as usize];
            r.read_exact(&mut got).expect("first chunk");
            assert_eq!(got, plain[..AGE_CHUNK as usize]);
        }
    }
    // Sizes that do not add up give no bound.
    assert_eq!(age_payload_start(100, 200), None);
}

#[test]
fn data_blocks_become_copy_feeds_whatever_the_write_sizes() {
    // Two blocks, a row per chunk, as pg_dump writes them.
    let mut raw = archive::copy_block_start(7, 4);
    raw.extend(chunk(b"1\ta\n"));
    raw.extend(chunk(b"2\tb\n"));
    raw.extend(archive::encode_int(0, 4));
    raw.extend(archive::copy_block_start(8, 4));
    raw.extend(chunk(b"3\tc\n"));
    raw.extend(archive::encode_int(0, 4));
    for step in [1, 3, 7, raw.len()] {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let mut c = Chunks::new(&tx, 4);
        for piece in raw.chunks(step) {
            c.write_all(piece).expect("write");
        }
        c.finish_piece(false).expect("ends after a block");
        assert_eq!(
            feeds(&mut rx),
            [
                "start 7",
                "data 1\ta\n2\tb\n",
                "end",
                "start 8",
                "data 3\tc\n",
                "end"
            ],
            "write size {step}"
        );
    }

    // A part cut at row boundaries: no block header, no end marker of its own.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut c = Chunks::new(&tx, 4);
    c.open(7).expect("open");
    c.write_all(&[chunk(b"4\td\n"), chunk(b"5\te\n")].concat())
        .expect("write");
    c.finish_piece(true).expect("part ends at a row");
    assert_eq!(feeds(&mut rx), ["start 7", "data 4\td\n5\te\n", "end"]);

    // A range ending inside a row, or a block of another kind, is refused.
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let mut c = Chunks::new(&tx, 4);
    c.open(7).expect("open");
    c.write_all(&chunk(b"6\tf\n")[..6]).expect("write");
    assert!(c.finish_piece(true).is_err());
    let mut c = Chunks::new(&tx, 4);
    assert!(c.write_all(&[3u8, 0, 7, 0, 0, 0]).is_err());
}

#[test]
fn rows_beyond_one_batch_go_in_full_batches_split_anywhere() {
    // 3.5 batches of rows of an odd length: rows straddle the batch boundaries.
    let row = b"12345\tsome text of a row\t{\"k\": 1}\n";
    let rows = COPY_BATCH * 7 / 2 / row.len();
    let mut raw = archive::copy_block_start(9, 4);
    for _ in 0..rows {
        raw.extend(chunk(row));
    }
    raw.extend(archive::encode_int(0, 4));
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut c = Chunks::new(&tx, 4);
    for piece in raw.chunks(100_000) {
        c.write_all(piece).expect("write");
    }
    c.finish_piece(false).expect("ends after a block");
    drop(c);
    let mut sizes = Vec::new();
    let mut data = Vec::new();
    let mut marks = Vec::new();
    while let Ok(f) = rx.try_recv() {
        match f {
            Feed::Data(b) => {
                sizes.push(b.len());
                data.extend_from_slice(&b);
            }
            Feed::Start(id) => marks.push(format!("start {id}")),
            Feed::End => marks.push("end".into()),
        }
    }
    assert_eq!(marks, ["start 9", "end"]);
    assert_eq!(data, row.repeat(rows), "the COPY text, byte for byte");
    assert_eq!(sizes.len(), 4, "{sizes:?}");
    assert!(sizes[..3].iter().all(|&s| s == COPY_BATCH), "{sizes:?}");
}

#[test]
fn the_costliest_table_is_loaded_by_every_lane_first() {
    let mb = 1u64 << 20;
    // Many short rows cost more than few long ones of the same bytes.
    let rowy = DataBlock {
        id: 10,
        start: 100,
        end: 100 + 40 * mb,
        splits: (1..10).map(|k| 100 + k * 4 * mb).collect(),
    };
    let wide = DataBlock {
        id: 11,
        start: rowy.end,
        end: rowy.end + 60 * mb,
        splits: (1..15).map(|k| rowy.end + k * 4 * mb).collect(),
    };
    let toc = toc(vec![
        item(1, "TABLE", Section::PreData, vec![], false),
        item(2, "TABLE", Section::PreData, vec![], false),
        item(10, "TABLE DATA", Section::Data, vec![1], false),
        item(11, "TABLE DATA", Section::Data, vec![2], false),
    ]);
    let ix = index(vec![rowy.clone(), wide.clone()]);
    let rows = HashMap::from([(10, 1_000_000), (11, 10_000)]);
    let (lanes, parts) = deal(&toc, &ix, 2, &rows);
    // Both lanes start on the row-heavy table, each with half of it.
    for lane in &lanes {
        assert_eq!(lane[0].entries, vec![10], "{lanes:?}");
        assert!(lane[0].bytes.abs_diff(20 * mb) <= 4 * mb, "{lanes:?}");
    }
    assert_eq!(parts[&10], 2);
    // Every byte of both tables is dealt exactly once.
    for b in [&rowy, &wide] {
        let mut got: Vec<(u64, u64)> = lanes
            .iter()
            .flatten()
            .filter(|t| t.entries == vec![b.id])
            .map(|t| (t.pieces[0].from, t.pieces[0].to))
            .collect();
        got.sort_unstable();
        assert_eq!(got.first().map(|r| r.0), Some(b.start));
        assert_eq!(got.last().map(|r| r.1), Some(b.end));
        assert!(got.windows(2).all(|w| w[0].1 == w[1].0), "{got:?}");
    }
    // Without the TOC's COPY statements (or with another encoding) pg_restore loads
    // the data: nothing is loaded directly.
    let names = HashMap::from([(10, "a".to_string()), (11, "b".to_string())]);
    assert_eq!(direct_copies(&toc, &names).len(), 0, "no encoding known");
    let mut utf8 = toc.clone();
    utf8.session = vec!["SET client_encoding = 'UTF8';\n".into()];
    assert_eq!(direct_copies(&utf8, &names).len(), 2);
    let mut latin1 = utf8.clone();
    latin1.session = vec!["SET client_encoding = 'LATIN1';\n".into()];
    assert_eq!(direct_copies(&latin1, &names).len(), 0);
}

#[test]
fn lanes_get_equal_shares_cutting_large_tables_at_split_points() {
    let mb = 1u64 << 20;
    let big = DataBlock {
        id: 10,
        start: 100,
        end: 100 + 64 * mb,
        splits: (1..16).map(|k| 100 + k * 4 * mb).collect(),
    };
    let mid = DataBlock {
        id: 11,
        start: big.end,
        end: big.end + 16 * mb,
        splits: vec![big.end + 4 * mb, big.end + 8 * mb, big.end + 12 * mb],
    };
    let small1 = DataBlock {
        id: 12,
        start: mid.end,
        end: mid.end + 1000,
        splits: vec![],
    };
    let small2 = DataBlock {
        id: 13,
        start: small1.end,
        end: small1.end + 2000,
        splits: vec![],
    };
    let toc = Toc {
        int_size: 4,
        uncompressed: true,
        session: vec!["SET client_encoding = 'UTF8';\n".into()],
        items: vec![
            item(1, "TABLE", Section::PreData, vec![], false),
            item(2, "TABLE", Section::PreData, vec![], false),
            item(10, "TABLE DATA", Section::Data, vec![1], false),
            item(11, "TABLE DATA", Section::Data, vec![2], false),
            item(12, "TABLE DATA", Section::Data, vec![], false),
            item(13, "TABLE DATA", Section::Data, vec![], false),
            item(14, "SEQUENCE SET", Section::Data, vec![], false),
        ],
    };
    let ix = index(vec![
        big.clone(),
        mid.clone(),
        small1.clone(),
        small2.clone(),
    ]);
    let (lanes, parts) = deal(&toc, &ix, 2, &HashMap::new());
    assert_eq!(lanes.len(), 2);
    let load = |l: &Vec<Task>| l.iter().map(|t| t.bytes).sum::<u64>();
    let (a, b) = (load(&lanes[0]), load(&lanes[1]));
    assert!(a.abs_diff(b) <= 4 * mb, "balanced: {a} vs {b}");
    // The big table is cut once, at a split point; each part covers its own range.
    assert_eq!(parts[&10], 2, "{lanes:?}");
    let big_parts: Vec<&Task> = lanes
        .iter()
        .flatten()
        .filter(|t| t.entries == vec![10])
        .collect();
    let covered: u64 = big_parts.iter().map(|t| t.bytes).sum();
    assert_eq!(covered, big.end - big.start);
    let first = big_parts
        .iter()
        .find(|t| t.pieces[0].from == big.start)
        .expect("first");
    assert_eq!(first.pieces[0].open, None);
    assert!(first.pieces[0].close);
    assert!(big.splits.contains(&first.pieces[0].to));
    let last = big_parts
        .iter()
        .find(|t| t.pieces[0].to == big.end)
        .expect("last");
    assert_eq!(last.pieces[0].open, Some(10));
    assert!(!last.pieces[0].close);
    // Small neighbours: one task reading one range; entries without data on their own.
    let group = lanes
        .iter()
        .flatten()
        .find(|t| t.entries == vec![12, 13])
        .expect("group");
    assert_eq!(
        (group.pieces[0].from, group.pieces[0].to),
        (small1.start, small2.end)
    );
    assert!(lanes
        .iter()
        .flatten()
        .any(|t| t.entries == vec![14] && t.pieces.is_empty()));

    // A BRIN index or CLUSTER ON on the table keeps its data in one piece.
    let mut toc2 = toc.clone();
    toc2.items
        .push(item(20, "INDEX", Section::PostData, vec![1], true));
    let (lanes, parts) = deal(&toc2, &ix, 2, &HashMap::new());
    assert_eq!(parts[&10], 1);
    assert_eq!(
        lanes
            .iter()
            .flatten()
            .filter(|t| t.entries == vec![10])
            .count(),
        1
    );
    // One lane: nothing is cut.
    let (_, parts) = deal(&toc, &ix, 1, &HashMap::new());
    assert!(parts.values().all(|&n| n == 1));
}

#[test]
fn a_damaged_object_is_the_cause_not_what_it_broke() {
    let failures = vec![
        crate::restore::interrupted(),
        Error::Failed("pg_restore: error: COPY failed".into()),
        Error::Integrity("app/backups/x/3366.dat.zst is corrupt".into()),
    ];
    let cause = super::stages::first_cause(failures);
    assert!(matches!(cause, Error::Integrity(_)), "{cause}");
    let cause = super::stages::first_cause(vec![
        crate::restore::interrupted(),
        Error::Failed("pg_restore: error: COPY failed".into()),
    ]);
    assert!(cause.to_string().contains("COPY failed"), "{cause}");
}

#[test]
fn a_named_pipe_is_fed_once_its_reader_opens_it_and_never_waits_for_an_exited_one() {
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("3366.dat");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &path,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .expect("mkfifo");
    // No reader, and the reader's process has exited: the writer gives up at once.
    let exited = AtomicBool::new(true);
    let e = super::pipes::open_pipe(&path, &exited).expect_err("no reader");
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    // A reader that opens the pipe later gets every byte, then the end.
    let reader = {
        let path = path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            let mut got = Vec::new();
            std::fs::File::open(&path)
                .expect("open to read")
                .read_to_end(&mut got)
                .expect("read");
            got
        })
    };
    let waiting = AtomicBool::new(false);
    let mut w = super::pipes::open_pipe(&path, &waiting).expect("open to write");
    w.write_all(b"1\tone\n\\.\n\n\n").expect("write");
    drop(w);
    assert_eq!(reader.join().expect("reader"), b"1\tone\n\\.\n\n\n");
}
