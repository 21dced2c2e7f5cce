use super::data::*;
use super::header::*;
use super::wire::*;
use super::*;
use std::path::PathBuf;

#[test]
fn data_offsets_are_set_in_a_piped_archive_and_point_at_their_blocks() {
    use std::io::{Read as _, Seek, SeekFrom, Write as _};
    for name in ["pg15_v1.pgc", "pg18_v1.pgc"] {
        let bytes = fixture(name);
        let before = parse(&bytes);
        let mut f = tempfile::tempfile().expect("tmp");
        f.write_all(&bytes).expect("write");
        let set = set_data_offsets(&mut f).expect("set offsets");
        assert!(set >= before.tables.len(), "{name}: {set} offsets set");
        let mut patched = Vec::new();
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.read_to_end(&mut patched).expect("read");
        assert_eq!(
            patched.len(),
            bytes.len(),
            "patching never changes the size"
        );
        assert_eq!(
            parse(&patched),
            before,
            "{name}: same content after patching"
        );
        // Every entry with data now points at a block carrying its own id.
        let (ar, _, toc) = read_front(&patched[..], false).expect("header and TOC");
        for e in toc.iter().filter(|e| e.has_data) {
            let at = e.offset_pos as usize;
            assert_eq!(
                patched[at], OFFSET_POS_SET,
                "{name}: entry {} offset set",
                e.dump_id
            );
            let mut pos = [0u8; 8];
            pos[..ar.off_size].copy_from_slice(&patched[at + 1..at + 1 + ar.off_size]);
            let block = u64::from_le_bytes(pos) as usize;
            assert!(
                matches!(patched[block], BLK_DATA | BLK_BLOBS),
                "{name}: block type at {block}"
            );
            let id_bytes = &patched[block + 2..block + 2 + ar.int_size];
            let mut id = [0u8; 8];
            id[..ar.int_size].copy_from_slice(id_bytes);
            assert_eq!(
                u64::from_le_bytes(id) as i64,
                e.dump_id,
                "{name}: block of entry {}",
                e.dump_id
            );
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn parse(bytes: &[u8]) -> ArchiveSummary {
    parse_archive(bytes).unwrap_or_else(|e| panic!("parse failed: {e}"))
}

fn rows(summary: &ArchiveSummary) -> Vec<(String, u64)> {
    summary
        .tables
        .iter()
        .map(|t| (format!("{}.{}", t.schema, t.name), t.rows))
        .collect()
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

fn expect_rows(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    sorted(list.iter().map(|(n, r)| (n.to_string(), *r)).collect())
}

/// `select count(*)` of each table when make_fixtures.sh dumped v1.
const V1_ROWS: &[(&str, u64)] = &[
    ("audit.tricky", 9),
    ("public.empty_table", 0),
    ("public.single_row", 1),
    ("sales.Order Items", 3),
    ("sales.big", 5000),
];

/// The same after the v2 data changes (and after ADD COLUMN, which moves no rows).
const V2_ROWS: &[(&str, u64)] = &[
    ("audit.tricky", 10),
    ("public.empty_table", 0),
    ("public.single_row", 1),
    ("sales.Order Items", 2),
    ("sales.big", 4000),
];

fn check_v1(file: &str, version: &str, dump_prefix: &str, extension: &str) {
    let s = parse(&fixture(file));
    assert_eq!(s.archive_version, version);
    assert_eq!(s.database, "drill_fixture");
    assert!(
        s.dump_version.starts_with(dump_prefix),
        "{}",
        s.dump_version
    );
    assert!(
        s.server_version.starts_with(dump_prefix),
        "{}",
        s.server_version
    );
    assert_eq!(s.compression, "none");
    assert_eq!(sorted(rows(&s)), expect_rows(V1_ROWS));
    // What a restore that runs the COPYs itself needs from the TOC.
    let toc = read_toc_items(&fixture(file)[..]).expect("toc");
    assert!(toc.uncompressed);
    assert_eq!(toc.encoding().as_deref(), Some("UTF8"), "{:?}", toc.session);
    assert!(
        toc.session.iter().any(|s| s.contains("search_path")),
        "{:?}",
        toc.session
    );
    let data: Vec<&TocItem> = toc
        .items
        .iter()
        .filter(|i| i.desc == "TABLE DATA")
        .collect();
    assert_eq!(data.len(), V1_ROWS.len());
    for i in data {
        let stmt = i.copy_stmt.as_deref().unwrap_or_default();
        assert!(
            stmt.starts_with(&format!("COPY {}.", i.namespace))
                && stmt.trim_end().ends_with("FROM stdin;"),
            "{stmt}"
        );
    }
    assert_eq!(s.schemas, ["audit", "public", "sales"]);
    assert_eq!(s.extensions, [extension]);
    assert_eq!(s.large_objects, 1);
    assert!(s.has_database_entry);
    assert_eq!(s.total_rows(), 5013);
    let empty = s.table("public", "empty_table").expect("empty_table");
    assert_eq!(empty.data_bytes, 0);
    let tricky = s.table("audit", "tricky").expect("tricky");
    assert!(tricky.data_bytes > 0);
    assert_eq!(s.schema_fingerprint.len(), 64);
}

#[test]
fn pg15_archive_1_14_exact_rows() {
    check_v1("pg15_v1.pgc", "1.14", "15.", "citext");
}

#[test]
fn pg16_archive_1_15_exact_rows() {
    check_v1("pg16_v1.pgc", "1.15", "16.", "vector");
}

#[test]
fn pg18_archive_1_16_exact_rows() {
    check_v1("pg18_v1.pgc", "1.16", "18.", "citext");
}

#[test]
fn changed_data_exact_rows_with_toc_offsets_set() {
    // v2 was written with -f, so its TOC carries data offsets; v1 came through a pipe.
    for file in [
        "pg15_v2.pgc",
        "pg18_v2.pgc",
        "pg15_addcol.pgc",
        "pg18_addcol.pgc",
    ] {
        let s = parse(&fixture(file));
        assert_eq!(sorted(rows(&s)), expect_rows(V2_ROWS), "{file}");
        assert_eq!(s.large_objects, 2, "{file}");
    }
}

#[test]
fn tables_are_in_toc_order() {
    let s = parse(&fixture("pg18_v1.pgc"));
    let names: Vec<String> = rows(&s).into_iter().map(|(n, _)| n).collect();
    // pg_dump sorts TABLE DATA entries by schema, then name.
    let expected = [
        "audit.tricky",
        "public.empty_table",
        "public.single_row",
        "sales.Order Items",
        "sales.big",
    ];
    assert_eq!(names, expected);
}

#[test]
fn fingerprint_ignores_data_but_sees_added_column() {
    for nn in ["15", "18"] {
        let v1 = parse(&fixture(&format!("pg{nn}_v1.pgc")));
        let v2 = parse(&fixture(&format!("pg{nn}_v2.pgc")));
        let addcol = parse(&fixture(&format!("pg{nn}_addcol.pgc")));
        assert_eq!(v1.schema_fingerprint, v2.schema_fingerprint, "pg{nn}");
        assert_ne!(v2.schema_fingerprint, addcol.schema_fingerprint, "pg{nn}");
    }
}

#[test]
fn fingerprint_is_order_independent() {
    let a: &[u8] = b"TABLE\0s\0a\0CREATE a\0";
    let b: &[u8] = b"TABLE\0s\0b\0CREATE b\0";
    assert_eq!(schema_fingerprint([a, b]), schema_fingerprint([b, a]));
    assert_ne!(schema_fingerprint([a]), schema_fingerprint([a, b]));
}

#[test]
fn custom_format_defns_carry_no_restrict_key() {
    // PG 17.6+/18 put `\restrict <random key>` only into plain-format output.
    for file in ["pg15_v1.pgc", "pg16_v1.pgc", "pg18_v1.pgc"] {
        let bytes = fixture(file);
        assert!(!bytes.windows(9).any(|w| w == b"\\restrict"), "{file}");
    }
}

/// A reader that hands out one byte per call and is interrupted in between.
struct Trickle<'a> {
    bytes: &'a [u8],
    interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let Some((&first, rest)) = self.bytes.split_first() else {
            return Ok(0);
        };
        match buf.first_mut() {
            Some(slot) => *slot = first,
            None => return Ok(0),
        }
        self.bytes = rest;
        Ok(1)
    }
}

#[test]
fn one_byte_reads_give_the_same_summary() {
    for file in ["pg15_v1.pgc", "pg18_v2.pgc"] {
        let bytes = fixture(file);
        let trickled = parse_archive(Trickle {
            bytes: &bytes,
            interrupt: false,
        })
        .expect("trickled parse");
        assert_eq!(trickled, parse(&bytes), "{file}");
    }
}

fn assert_truncation_fails(bytes: &[u8], cut: usize) {
    match parse_archive(&bytes[..cut]) {
        Err(ArchiveError::Corrupt(_)) => {}
        // Fewer than 5 bytes cannot be told apart from any other short input.
        Err(ArchiveError::NotCustomFormat) if cut < MAGIC.len() => {}
        other => panic!("cut at {cut} of {}: {other:?}", bytes.len()),
    }
}

#[test]
fn truncated_archives_fail_at_every_sampled_cut() {
    for file in ["pg15_v1.pgc", "pg18_v1.pgc"] {
        let bytes = fixture(file);
        // Every cut through the header and first TOC entries, then a sample.
        let header = 0..2_000;
        let toc = (2_000..12_000).step_by(5);
        let body = (12_000..bytes.len()).step_by(331);
        let tail = bytes.len().saturating_sub(64)..bytes.len();
        for cut in header.chain(toc).chain(body).chain(tail) {
            assert_truncation_fails(&bytes, cut);
        }
    }
}

#[test]
fn truncation_between_data_blocks_is_caught() {
    // A data block ends with the COPY trailer chunk and a zero-length chunk; cutting
    // right after it leaves a well-formed prefix that lacks the later tables' data.
    let bytes = fixture("pg18_v1.pgc");
    let block_end = [&b"\\.\n\n\n"[..], &[0, 0, 0, 0, 0]].concat();
    let cuts: Vec<usize> = bytes
        .windows(block_end.len())
        .enumerate()
        .filter(|(_, w)| *w == block_end.as_slice())
        .map(|(i, w)| i + w.len())
        .collect();
    assert_eq!(cuts.len(), 5, "one per table");
    for cut in cuts {
        match parse_archive(&bytes[..cut]) {
            Err(ArchiveError::Corrupt(msg)) => assert!(msg.contains("ends before"), "{msg}"),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn garbage_is_not_custom_format() {
    let inputs: [&[u8]; 4] = [
        b"",
        b"PGD",
        b"--\n-- PostgreSQL database dump\n--\n",
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0],
    ];
    for input in inputs {
        assert!(
            matches!(parse_archive(input), Err(ArchiveError::NotCustomFormat)),
            "{input:?}"
        );
    }
}

#[test]
fn directory_format_toc_is_not_custom_format() {
    let mut bytes = fixture("pg18_v1.pgc");
    bytes[10] = 5; // archDirectory
    assert!(matches!(
        parse_archive(bytes.as_slice()),
        Err(ArchiveError::NotCustomFormat)
    ));
}

#[test]
fn compressed_archive_is_unsupported() {
    match parse_archive(fixture("pg15_gzip.pgc").as_slice()) {
        Err(ArchiveError::Unsupported(msg)) => {
            assert!(msg.contains("gzip") && msg.contains("-Z0"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn versions_outside_1_12_to_1_16_are_unsupported() {
    for minor in [11, 17] {
        let mut bytes = fixture("pg18_v1.pgc");
        bytes[6] = minor;
        match parse_archive(bytes.as_slice()) {
            Err(ArchiveError::Unsupported(msg)) => assert!(msg.contains("version"), "{msg}"),
            other => panic!("1.{minor}: {other:?}"),
        }
    }
}

#[test]
fn missing_copy_trailer_is_corrupt() {
    let mut bytes = fixture("pg15_v1.pgc");
    let at = bytes
        .windows(COPY_TRAILER.len())
        .position(|w| w == COPY_TRAILER)
        .expect("a trailer");
    bytes[at] = b'x';
    match parse_archive(bytes.as_slice()) {
        Err(ArchiveError::Corrupt(msg)) => assert!(msg.contains("trailer"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn copy_counter_handles_split_trailer() {
    let mut counter = CopyCounter::default();
    for piece in [&b"a\tb\n"[..], b"c\n\\", b".\n", b"\n", b"\n"] {
        counter.feed(piece);
    }
    assert_eq!(counter.finish(), Some((2, 6)));

    let mut empty = CopyCounter::default();
    empty.feed(COPY_TRAILER);
    assert_eq!(empty.finish(), Some((0, 0)));

    let mut glued = CopyCounter::default();
    glued.feed(b"a\\.\n\n\n");
    assert_eq!(glued.finish(), None);
}

/// A table's data block of about 10 MiB, some rows cut over two chunks: (bytes, rows).
fn big_copy_block(int_size: usize) -> (Vec<u8>, u64) {
    let mut block = Vec::new();
    let mut rows = 0;
    while block.len() < 10 << 20 {
        let row = format!("{rows}\t{}\n", "x".repeat((rows % 300) as usize));
        let row = row.as_bytes();
        let pieces: Vec<&[u8]> = if rows % 7 == 3 {
            vec![&row[..row.len() / 2], &row[row.len() / 2..]]
        } else {
            vec![row]
        };
        for piece in pieces {
            block.extend(encode_int(piece.len() as i64, int_size));
            block.extend_from_slice(piece);
        }
        rows += 1;
    }
    block.extend(copy_block_end(int_size));
    (block, rows)
}

#[test]
fn rows_and_splits_are_the_same_however_the_buffer_cuts_the_chunks() {
    let int_size = 4;
    let (block, rows) = big_copy_block(int_size);
    let count = |reader: &mut dyn BufRead| {
        let mut ar = Wire {
            src: Source::new(reader),
            int_size,
            off_size: 8,
        };
        let mut table = TableCount {
            schema: "public".into(),
            name: "t".into(),
            rows: 0,
            data_bytes: 0,
        };
        let splits = count_copy_rows(&mut ar, &mut table).expect("count");
        assert_eq!(ar.src.pos, block.len() as u64, "read to the block's end");
        (table.rows, table.data_bytes, splits)
    };
    // All in one buffer (the fast path throughout), buffers of an odd size (both paths), one
    // byte at a time (the careful path throughout).
    let whole = count(&mut &block[..]);
    let odd = count(&mut io::BufReader::with_capacity(1001, &block[..]));
    let trickled = count(&mut io::BufReader::with_capacity(
        1,
        Trickle {
            bytes: &block,
            interrupt: false,
        },
    ));
    assert_eq!(whole.0, rows);
    assert_eq!(whole, odd);
    assert_eq!(whole, trickled);
    let splits = whole.2;
    assert_eq!(splits.len(), 2, "about every 4 MiB of 10: {splits:?}");
    for &s in &splits {
        let s = s as usize;
        assert_eq!(block[s], 0, "a chunk header's sign byte at {s}");
        assert_eq!(block[s - 1], b'\n', "the data before {s} ends a row");
    }
}
