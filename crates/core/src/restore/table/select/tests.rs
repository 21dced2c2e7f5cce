use super::*;
use pgdrill_pg::archive::Section;

fn item(id: i64, desc: &str, ns: &str, tag: &str, deps: &[i64]) -> TocItem {
    TocItem {
        dump_id: id,
        desc: desc.into(),
        namespace: ns.into(),
        tag: tag.into(),
        section: Section::PreData,
        deps: deps.to_vec(),
        orders_rows: false,
        copy_stmt: None,
        defn: String::new(),
        owner: String::new(),
        table_oid: "0".into(),
        oid: "0".into(),
    }
}

/// orders(id serial, customer_id -> customers), customers, events partitioned in two, a
/// function the orders trigger calls.
fn toc() -> Vec<TocItem> {
    vec![
        item(1, "SCHEMA", "", "app", &[]),
        item(2, "FUNCTION", "app", "touch()", &[1]),
        item(3, "TABLE", "app", "customers", &[1]),
        item(4, "TABLE", "app", "orders", &[1]),
        item(5, "SEQUENCE", "app", "orders_id_seq", &[1]),
        item(6, "SEQUENCE OWNED BY", "app", "orders_id_seq", &[5, 4]),
        item(7, "DEFAULT", "app", "orders id", &[4, 5]),
        item(8, "TABLE", "app", "events", &[1]),
        item(9, "TABLE", "app", "events_2025", &[1, 8]),
        item(10, "TABLE ATTACH", "app", "events_2025", &[8, 9]),
        item(11, "TABLE DATA", "app", "orders", &[4]),
        item(12, "TABLE DATA", "app", "customers", &[3]),
        item(13, "TABLE DATA", "app", "events_2025", &[9]),
        item(14, "SEQUENCE SET", "app", "orders_id_seq", &[5]),
        item(15, "CONSTRAINT", "app", "customers customers_pkey", &[3]),
        item(16, "CONSTRAINT", "app", "orders orders_pkey", &[4]),
        item(17, "INDEX", "app", "orders_note", &[4]),
        item(
            18,
            "FK CONSTRAINT",
            "app",
            "orders orders_customer_fk",
            &[4, 15],
        ),
        item(19, "TRIGGER", "app", "orders touch", &[4, 2]),
        item(20, "POLICY", "app", "orders mine", &[4]),
        item(21, "ROW SECURITY", "app", "orders", &[4]),
        item(22, "COMMENT", "app", "TABLE orders", &[4]),
        item(23, "ACL", "app", "TABLE orders", &[4]),
        item(24, "VIEW", "app", "order_view", &[4, 3]),
    ]
}

fn ids(s: &Selection) -> Vec<i64> {
    s.ids.iter().copied().collect()
}

#[test]
fn a_table_comes_with_what_belongs_to_it_alone() {
    let s = select(&toc(), &[("app".into(), "orders".into())], &[]).expect("select");
    assert_eq!(
        ids(&s),
        vec![4, 5, 6, 7, 11, 14, 16, 17, 19, 20, 21, 22, 23]
    );
    assert_eq!(s.tables, vec![("app".to_string(), "orders".to_string())]);
    assert_eq!(s.data, vec![11]);
    assert_eq!(
        s.skipped,
        vec!["FK CONSTRAINT app.orders orders_customer_fk: needs CONSTRAINT app.customers customers_pkey, which is not restored".to_string()]
    );
    assert_eq!(s.support.iter().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn the_referenced_table_restored_too_keeps_the_foreign_key() {
    let s = select(
        &toc(),
        &[
            ("app".into(), "orders".into()),
            ("app".into(), "customers".into()),
        ],
        &[],
    )
    .expect("select");
    assert!(s.ids.contains(&18) && s.ids.contains(&15), "{s:?}");
    assert!(s.skipped.is_empty(), "{s:?}");
    assert!(!s.ids.contains(&24), "views are not restored");
}

#[test]
fn a_partitioned_table_brings_its_partitions() {
    let s = select(&toc(), &[("app".into(), "events".into())], &[]).expect("select");
    assert_eq!(ids(&s), vec![8, 9, 10, 13]);
    assert_eq!(s.data, vec![13]);
}

#[test]
fn a_schema_selects_its_tables_and_unknown_names_are_refused() {
    let s = select(&toc(), &[], &["app".into()]).expect("select");
    assert_eq!(s.tables.len(), 4);
    let e = select(&toc(), &[("app".into(), "nope".into())], &[]).expect_err("unknown");
    assert!(e.to_string().contains("app.nope"), "{e}");
    assert!(select(&toc(), &[], &["other".into()]).is_err());
    let list = list_text(&toc(), &s.ids);
    assert!(!list.contains("SCHEMA"), "{list}");
    assert!(list.starts_with("3; 0 0 TABLE app customers"), "{list}");
}

#[test]
fn grants_and_policies_to_roles_the_target_lacks_are_left_out() {
    let mut items = toc();
    items[19].defn = "CREATE POLICY mine ON app.orders FOR SELECT TO reader USING (true);".into();
    items[22].defn = "GRANT SELECT ON TABLE app.orders TO auditor;".into();
    let mut s = select(&items, &[("app".into(), "orders".into())], &[]).expect("select");
    let have: BTreeSet<String> = ["reader".to_string()].into();
    without_missing_roles(&items, &mut s, &have);
    assert!(s.ids.contains(&20), "the policy's role exists");
    assert!(!s.ids.contains(&23), "{s:?}");
    assert!(
        s.skipped
            .iter()
            .any(|k| k == "ACL app.TABLE orders: names role auditor, which the target lacks"),
        "{:?}",
        s.skipped
    );
}

/// The regression database's `defaultexpr_tbl (i2 int default nextval('default_seq'))`:
/// pg_dump writes the default inside CREATE TABLE, so the table depends on a sequence it
/// does not own; restored alone, it failed with `relation "public.default_seq" does not
/// exist`. The sequence (and its value) comes along.
#[test]
fn a_sequence_named_in_create_table_comes_along_with_its_value() {
    let items = vec![
        item(1, "SCHEMA", "", "public", &[]),
        item(2, "SEQUENCE", "public", "default_seq", &[1]),
        item(3, "TABLE", "public", "defaultexpr_tbl", &[1, 2]),
        item(4, "TABLE DATA", "public", "defaultexpr_tbl", &[3]),
        item(5, "SEQUENCE SET", "public", "default_seq", &[2]),
        item(6, "SEQUENCE", "public", "unrelated_seq", &[1]),
        item(7, "SEQUENCE SET", "public", "unrelated_seq", &[6]),
    ];
    let s = select(&items, &[("public".into(), "defaultexpr_tbl".into())], &[]).expect("select");
    assert_eq!(ids(&s), vec![2, 3, 4, 5]);
    assert_eq!(
        s.sequences,
        vec![("public".to_string(), "default_seq".to_string())]
    );
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);
}

/// The regression database's `mcv_lists` has `CREATE STATISTICS mcv_lists_stats`, and
/// `tableam_tbl_heap2` is `USING heap2`: the statistics object came along with neither
/// `--table` (a table restored alone lost it silently), and a new database lacked the access
/// method (`invalid value for parameter "default_table_access_method": "heap2"`).
#[test]
fn extended_statistics_and_the_table_access_method_come_along() {
    let items = vec![
        item(1, "SCHEMA", "", "public", &[]),
        item(2, "ACCESS METHOD", "", "heap2", &[]),
        item(3, "TABLE", "public", "tableam_tbl_heap2", &[1, 2]),
        item(4, "TABLE", "public", "mcv_lists", &[1]),
        item(5, "STATISTICS", "public", "mcv_lists_stats", &[1, 4]),
    ];
    let s = select(
        &items,
        &[
            ("public".into(), "tableam_tbl_heap2".into()),
            ("public".into(), "mcv_lists".into()),
        ],
        &[],
    )
    .expect("select");
    assert_eq!(ids(&s), vec![3, 4, 5]);
    assert_eq!(s.support.iter().copied().collect::<Vec<_>>(), vec![2]);
}

/// The regression database's rule `shoelace_ins` on the view `shoelace` depends on it once
/// per reference: the skipped line named `VIEW public.shoelace` seven times.
#[test]
fn a_skipped_entry_names_each_missing_relation_once() {
    let items = vec![
        item(1, "SCHEMA", "", "public", &[]),
        item(2, "TABLE", "public", "shoelace_data", &[1]),
        item(3, "VIEW", "public", "shoelace", &[1, 2]),
        item(4, "RULE", "public", "shoelace shoelace_ins", &[2, 3, 3, 3]),
    ];
    let s = select(&items, &[("public".into(), "shoelace_data".into())], &[]).expect("select");
    assert_eq!(
        s.skipped,
        vec![
            "RULE public.shoelace shoelace_ins: needs VIEW public.shoelace, which is not restored"
        ]
    );
}
