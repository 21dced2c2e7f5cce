//! The table of contents: entries as the format stores them, the restore's view of them
//! ([`TocItem`]) and the schema fingerprint.

use std::io::{BufRead, Read};

use sha2::{Digest, Sha256};

use super::header::{
    Compression, OFFSET_NO_DATA, SECTION_DATA, SECTION_POST_DATA, SECTION_PRE_DATA, V_RELKIND,
    V_TABLEAM,
};
use super::wire::Wire;
use super::{read_front, Result};

/// One TOC entry as a restore needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocItem {
    pub dump_id: i64,
    pub desc: String,
    pub namespace: String,
    pub tag: String,
    /// The section pg_restore assigns: entries without one (comments, ACLs) follow the
    /// entry before them, as in `ProcessArchiveRestoreOptions`.
    pub section: Section,
    pub deps: Vec<i64>,
    /// Its definition makes a table's physical row order matter (a BRIN index or
    /// `CLUSTER ON`).
    pub orders_rows: bool,
    /// The `COPY ... FROM stdin;` statement its data block is loaded with (table data).
    pub copy_stmt: Option<String>,
    /// The SQL pg_restore runs for it (`CREATE ...`, `GRANT ...`, `COMMENT ...`).
    pub defn: String,
    /// The role named as its owner (empty for entries without one).
    pub owner: String,
    /// The catalog OIDs of the dumped object, as `pg_restore --list` prints them.
    pub table_oid: String,
    pub oid: String,
}

impl TocItem {
    /// The line `pg_restore --list` prints for this entry (`ID; TABLEOID OID DESC NS TAG
    /// OWNER`); pg_restore's `--use-list` reads only its leading id.
    pub fn list_line(&self) -> String {
        let ns = if self.namespace.is_empty() {
            "-"
        } else {
            &self.namespace
        };
        format!(
            "{}; {} {} {} {} {} {}",
            self.dump_id, self.table_oid, self.oid, self.desc, ns, self.tag, self.owner
        )
    }
}

/// pg_restore's `--section`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    PreData,
    Data,
    PostData,
}

/// The header and TOC of an archive (its first `toc_end` bytes).
#[derive(Debug, Clone)]
pub struct Toc {
    pub int_size: usize,
    /// Data blocks are stored as written (no compression inside the archive).
    pub uncompressed: bool,
    /// The session settings pg_restore applies before restoring anything: the definitions
    /// of the `ENCODING`, `STDSTRINGS` and `SEARCHPATH` entries, in TOC order.
    pub session: Vec<String>,
    pub items: Vec<TocItem>,
}

impl Toc {
    /// The archive's client encoding (`UTF8`, `LATIN1`, ...), from its `ENCODING` entry.
    pub fn encoding(&self) -> Option<String> {
        self.session.iter().find_map(|s| {
            let rest = s.trim().strip_prefix("SET client_encoding = '")?;
            Some(rest.split('\'').next()?.to_owned())
        })
    }
}

/// Reads the header and TOC at the start of `reader` (nothing after them).
pub fn read_toc_items<R: Read>(reader: R) -> Result<Toc> {
    // A directory-format toc.dat reads the same (a parallel backup's table of contents).
    let (ar, header, toc) = read_front(reader, true)?;
    let mut current = Section::PreData;
    let session = toc.iter().filter_map(|e| e.session.clone()).collect();
    let items = toc
        .into_iter()
        .map(|e| {
            current = match e.section {
                SECTION_PRE_DATA => Section::PreData,
                SECTION_DATA => Section::Data,
                SECTION_POST_DATA => Section::PostData,
                _ => current,
            };
            TocItem {
                dump_id: e.dump_id,
                desc: e.desc,
                namespace: e.namespace,
                tag: e.tag,
                section: current,
                deps: e.deps,
                orders_rows: e.orders_rows,
                copy_stmt: e.copy_stmt,
                defn: e.defn,
                owner: e.owner,
                table_oid: e.table_oid,
                oid: e.oid,
            }
        })
        .collect();
    Ok(Toc {
        int_size: ar.int_size,
        uncompressed: header.compression == Compression::None,
        session,
        items,
    })
}

/// The parts of a TOC entry the summary needs.
pub(super) struct TocEntry {
    pub(super) dump_id: i64,
    pub(super) desc: String,
    pub(super) tag: String,
    pub(super) namespace: String,
    /// The entry has a data block in the archive (offset flag is not "no data").
    pub(super) has_data: bool,
    /// Position of the entry's data offset field (its flag byte) in the archive.
    pub(super) offset_pos: u64,
    /// The data file a directory-format `toc.dat` names for it.
    pub(super) file: Option<String>,
    /// `teSection` as stored (1 = none, 2 = pre-data, 3 = data, 4 = post-data).
    pub(super) section: i64,
    pub(super) deps: Vec<i64>,
    pub(super) orders_rows: bool,
    /// Its data is COPY text (it has a COPY statement).
    pub(super) is_copy: bool,
    pub(super) copy_stmt: Option<String>,
    /// The definition of a session-setting entry (`ENCODING`, `STDSTRINGS`, `SEARCHPATH`).
    pub(super) session: Option<String>,
    /// `desc\0namespace\0tag\0defn\0`, if the entry counts for the schema fingerprint.
    pub(super) fingerprint_part: Option<Vec<u8>>,
    pub(super) defn: String,
    pub(super) owner: String,
    pub(super) table_oid: String,
    pub(super) oid: String,
}

pub(super) fn read_toc<R: BufRead>(
    ar: &mut Wire<R>,
    minor: u8,
    directory: bool,
) -> Result<Vec<TocEntry>> {
    let count = ar.count("TOC entry count")?;
    let mut entries = Vec::new();
    for _ in 0..count {
        entries.push(read_toc_entry(ar, minor, directory)?);
    }
    Ok(entries)
}

/// One entry, field by field as `ReadToc` and `_ReadExtraToc` read it.
pub(super) fn read_toc_entry<R: BufRead>(
    ar: &mut Wire<R>,
    minor: u8,
    directory: bool,
) -> Result<TocEntry> {
    let dump_id = ar.int("TOC entry id")?;
    if dump_id <= 0 {
        return Err(ar.corrupt(format!("TOC entry id {dump_id} out of range")));
    }
    ar.int("had-dumper flag")?;
    let table_oid = ar.str("table oid")?.map(lossy).unwrap_or_default();
    let oid = ar.str("oid")?.map(lossy).unwrap_or_default();
    let tag = ar.str("tag")?.unwrap_or_default();
    let desc = ar.str("desc")?.unwrap_or_default();
    let section = ar.int("section")?;
    let defn = ar.str("defn")?.unwrap_or_default();
    ar.skip_str("drop statement")?;
    let copy_stmt = ar
        .str("copy statement")?
        .filter(|s| !s.is_empty())
        .map(lossy);
    let is_copy = copy_stmt.is_some();
    let namespace = ar.str("namespace")?.unwrap_or_default();
    ar.skip_str("tablespace")?;
    if minor >= V_TABLEAM {
        ar.skip_str("table access method")?;
    }
    if minor >= V_RELKIND {
        ar.int("relkind")?;
    }
    let owner = ar.str("owner")?.map(lossy).unwrap_or_default();
    ar.skip_str("with-oids flag")?;
    let mut deps = Vec::new();
    while let Some(dep) = ar.str("dependency")? {
        if let Ok(id) = String::from_utf8_lossy(&dep).trim().parse() {
            deps.push(id);
        }
    }
    let offset_pos = ar.src.pos;
    let (has_data, file) = if directory {
        // `_WriteExtraToc` of pg_backup_directory.c: the data file's name, or "".
        let file = ar
            .str("data file name")?
            .map(lossy)
            .filter(|f| !f.is_empty());
        (file.is_some(), file)
    } else {
        (ar.offset_flag("data offset")? != OFFSET_NO_DATA, None)
    };
    let fingerprint_part = fingerprint_part(&desc, &namespace, &tag, &defn);
    let orders_rows = {
        let d = String::from_utf8_lossy(&defn).to_ascii_lowercase();
        d.contains(" using brin") || d.contains(" cluster on ")
    };
    let session = matches!(&desc[..], b"ENCODING" | b"STDSTRINGS" | b"SEARCHPATH")
        .then(|| String::from_utf8_lossy(&defn).into_owned());
    Ok(TocEntry {
        defn: lossy(defn),
        owner,
        table_oid,
        oid,
        section,
        deps,
        orders_rows,
        dump_id,
        desc: lossy(desc),
        tag: lossy(tag),
        namespace: lossy(namespace),
        has_data,
        file,
        offset_pos,
        is_copy,
        copy_stmt,
        session,
        fingerprint_part,
    })
}

pub(super) fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Entry types that carry data or per-dump state rather than schema.
pub(super) const NON_SCHEMA_DESCS: &[&[u8]] = &[
    b"TABLE DATA",
    b"SEQUENCE SET",
    b"BLOB",
    b"BLOBS",
    b"BLOB METADATA",
    b"LARGE OBJECT",
    b"LARGE OBJECTS",
    b"DATABASE",
    b"DATABASE PROPERTIES",
    b"ENCODING",
    b"STDSTRINGS",
    b"SEARCHPATH",
    b"STATISTICS DATA",
    b"MATERIALIZED VIEW DATA",
];

/// The fingerprint contribution of an entry, or `None` if it does not describe schema.
///
/// Excluded: data entries, per-database and per-dump settings, large objects (whose TOC
/// entries list oids), and COMMENT/ACL/SECURITY LABEL entries on the database itself or on
/// large objects (tags "DATABASE name", "LARGE OBJECT oid"), so the fingerprint follows the
/// schema only, not the data or the database's name. Defns need no cleaning: the random
/// `\restrict` key of pg_dump 17.6+/18 goes only into plain-format output, never into the
/// custom-format TOC (a test checks the fixtures).
pub(super) fn fingerprint_part(
    desc: &[u8],
    namespace: &[u8],
    tag: &[u8],
    defn: &[u8],
) -> Option<Vec<u8>> {
    let attached = [&b"COMMENT"[..], b"ACL", b"SECURITY LABEL"].contains(&desc);
    let about_db_or_lo =
        attached && (tag.starts_with(b"DATABASE ") || tag.starts_with(b"LARGE OBJECT"));
    if NON_SCHEMA_DESCS.contains(&desc) || about_db_or_lo {
        return None;
    }
    let mut part = Vec::with_capacity(desc.len() + namespace.len() + tag.len() + defn.len() + 4);
    for field in [desc, namespace, tag, defn] {
        part.extend_from_slice(field);
        part.push(0);
    }
    Some(part)
}

/// SHA-256 over the entries' contributions in sorted byte order, so the TOC's order (which
/// follows oids and dump ids) does not matter. Lowercase hex.
pub fn schema_fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut parts: Vec<&[u8]> = parts.into_iter().collect();
    parts.sort_unstable();
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}
