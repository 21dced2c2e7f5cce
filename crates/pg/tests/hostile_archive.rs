//! Hostile custom-format archives: the header/TOC parser and the data-phase parser never
//! panic or abort, and allocate by the bytes they were given, never by a count or length they
//! read. `fixtures/hostile/` is the seed corpus (crafted counts, lengths and widths); the
//! property tests flip, overwrite and cut real archives from `fixtures/`.

use pgdrill_pg::archive::{parse_archive, read_toc_items, set_data_offsets};
use proptest::prelude::*;
use std::io::Write;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every entry point that parses an archive's header and TOC, on `bytes`: results ignored,
/// only a panic or an abort fails.
fn parse_everything(bytes: &[u8]) -> (bool, bool) {
    let summary = parse_archive(bytes).is_ok();
    let toc = read_toc_items(bytes).is_ok();
    let mut f = tempfile::tempfile().expect("tmp");
    f.write_all(bytes).expect("write");
    let _ = set_data_offsets(&mut f);
    (summary, toc)
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[test]
fn hostile_archive_seeds_are_rejected_without_allocating_what_they_claim() {
    let mut n = 0;
    for e in std::fs::read_dir(fixtures().join("hostile"))
        .expect("seed corpus")
        .flatten()
    {
        let bytes = read(e.path());
        let (summary, toc) = parse_everything(&bytes);
        assert!(!summary && !toc, "{} parsed", e.path().display());
        n += 1;
    }
    assert!(n >= 10, "the seed corpus is missing files");
    assert!(peak_rss_mib() < 1024, "peak RSS {} MiB", peak_rss_mib());
}

/// One change to an archive.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    /// Overwrite a run with one byte value (0xff: huge lengths and counts; 0x00: zeros).
    Fill(usize, usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, x)| Edit::Flip(p, x)),
        (
            any::<usize>(),
            1..16usize,
            prop_oneof![Just(0xffu8), Just(0x7f), Just(0), Just(1)]
        )
            .prop_map(|(p, n, v)| Edit::Fill(p, n, v)),
        any::<usize>().prop_map(Edit::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..32)
        )
            .prop_map(|(p, b)| Edit::Insert(p, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit], head_bias: bool) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        // Half the edits land in the header and TOC (the first 8 KiB), where every field is
        // a count, a length or a width.
        let at = |p: usize| {
            if head_bias {
                p % len.min(8192)
            } else {
                p % len
            }
        };
        match e {
            Edit::Flip(p, x) => {
                let i = at(*p);
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= x;
                }
            }
            Edit::Fill(p, n, v) => {
                let i = at(*p);
                let end = (i + n).min(bytes.len());
                bytes[i.min(end)..end].fill(*v);
            }
            Edit::Truncate(p) => bytes.truncate(p % (bytes.len() + 1)),
            Edit::Insert(p, b) => {
                let i = at(*p).min(bytes.len());
                bytes.splice(i..i, b.iter().copied());
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_archives_never_panic_or_allocate_by_a_claimed_size(
        which in 0..4usize,
        edits in proptest::collection::vec(edit(), 1..6),
        head_bias in any::<bool>(),
    ) {
        let name = ["pg15_v1.pgc", "pg16_v1.pgc", "pg18_v1.pgc", "pg15_gzip.pgc"][which];
        let bytes = apply(read(fixtures().join(name)), &edits, head_bias);
        parse_everything(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_magic_never_panic(
        fixed in proptest::array::uniform6(any::<u8>()),
        rest in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes = b"PGDMP".to_vec();
        bytes.extend_from_slice(&[1, 14 + fixed[0] % 3, 0, 1 + fixed[1] % 8, 1 + fixed[2] % 16, 1]);
        bytes.extend_from_slice(&rest);
        parse_everything(&bytes);
    }
}
