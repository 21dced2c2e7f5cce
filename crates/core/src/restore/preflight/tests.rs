use super::*;
use pgdrill_pg::archive::Section;

fn item(id: i64, desc: &str, ns: &str, tag: &str, owner: &str, defn: &str) -> TocItem {
    TocItem {
        dump_id: id,
        desc: desc.into(),
        namespace: ns.into(),
        tag: tag.into(),
        section: Section::PreData,
        deps: Vec::new(),
        orders_rows: false,
        copy_stmt: None,
        defn: defn.into(),
        owner: owner.into(),
        table_oid: "0".into(),
        oid: "0".into(),
    }
}

fn toc() -> Vec<TocItem> {
    let mut comment = item(
        3,
        "COMMENT",
        "",
        "EXTENSION \"uuid-ossp\"",
        "",
        "COMMENT ON EXTENSION \"uuid-ossp\" IS 'x';",
    );
    comment.deps = vec![2];
    let mut stat_acl = item(5, "ACL", "extensions", "FUNCTION pg_stat_statements_reset()", "supabase_admin", "GRANT ALL ON FUNCTION extensions.pg_stat_statements_reset() TO postgres WITH GRANT OPTION;");
    stat_acl.deps = vec![4];
    let mut table = item(
        7,
        "TABLE",
        "public",
        "docs",
        "postgres",
        "CREATE TABLE public.docs (id extensions.citext);",
    );
    table.deps = vec![6];
    vec![
            item(1, "SCHEMA", "", "extensions", "supabase_admin", "CREATE SCHEMA extensions;"),
            item(2, "EXTENSION", "", "uuid-ossp", "", "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" WITH SCHEMA extensions;"),
            comment,
            item(4, "EXTENSION", "", "pg_stat_statements", "", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA extensions;"),
            stat_acl,
            item(6, "EXTENSION", "", "citext", "", "CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA extensions;"),
            table,
            item(8, "EVENT TRIGGER", "", "pgrst_ddl_watch", "supabase_admin", "CREATE EVENT TRIGGER pgrst_ddl_watch ON ddl_command_end EXECUTE FUNCTION extensions.pgrst_ddl_watch();"),
            item(9, "POLICY", "public", "docs readers", "postgres", "CREATE POLICY readers ON public.docs FOR SELECT TO authenticated USING (true);"),
            item(10, "FUNCTION", "public", "noisy()", "postgres", "CREATE FUNCTION public.noisy() RETURNS void\n    LANGUAGE sql\n    SET log_min_messages TO 'fatal'\n    AS $$ select $$;"),
            item(11, "ACL", "pgbouncer", "FUNCTION get_auth(p_usename text)", "supabase_admin", "REVOKE ALL ON FUNCTION pgbouncer.get_auth(p_usename text) FROM PUBLIC;\nGRANT ALL ON FUNCTION pgbouncer.get_auth(p_usename text) TO pgbouncer;"),
        ]
}

fn facts(superuser: bool) -> Facts {
    Facts {
        user: "postgres".into(),
        superuser,
        createrole: true,
        roles: ["postgres".to_string()].into_iter().collect(),
        trusted_extensions: ["citext".to_string()].into_iter().collect(),
        installed_extensions: ["uuid-ossp".to_string()].into_iter().collect(),
        forbidden_settings: HashSet::new(),
    }
}

#[test]
fn installed_extension_and_its_quoted_comment_are_skipped() {
    let s = skips(&toc(), &facts(true), &[]).expect("skips");
    assert!(s[&2].contains("already installed"), "{s:?}");
    assert!(s[&3].contains("uuid-ossp"), "{s:?}");
    assert_eq!(s.len(), 2, "a superuser creates the rest: {s:?}");
}

#[test]
fn non_superuser_skips_what_only_a_superuser_creates_when_nothing_needs_it() {
    let s = skips(&toc(), &facts(false), &[]).expect("skips");
    assert!(s[&4].contains("pg_stat_statements"), "{s:?}");
    assert!(
        s[&5].contains("pg_stat_statements"),
        "its grant goes too: {s:?}"
    );
    assert!(s[&8].contains("event trigger"), "{s:?}");
    assert!(!s.contains_key(&6), "citext is trusted: {s:?}");
    assert!(!s.contains_key(&7));
}

#[test]
fn non_superuser_stops_naming_every_blocker() {
    let mut items = toc();
    items[5] = item(6, "EXTENSION", "", "citext", "", "CREATE EXTENSION citext;");
    let mut f = facts(false);
    f.trusted_extensions.clear();
    f.forbidden_settings.insert("log_min_messages".into());
    let e = skips(&items, &f, &[]).expect_err("blocked").to_string();
    assert!(
        e.contains("citext") && e.contains("TABLE public.docs"),
        "{e}"
    );
    assert!(
        e.contains("FUNCTION public.noisy()") && e.contains("log_min_messages"),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
}

#[test]
fn roles_come_from_the_archive() {
    let items = toc();
    let kept: HashSet<i64> = items.iter().map(|i| i.dump_id).collect();
    let (needed, wanted) = roles(&items, &kept, true);
    assert_eq!(
        needed.into_iter().collect::<Vec<_>>(),
        ["authenticated", "pgbouncer", "postgres"]
    );
    assert_eq!(wanted.into_iter().collect::<Vec<_>>(), ["supabase_admin"]);
    // Without privileges, grants run no statement: only the policy's role is needed.
    let (needed, _) = roles(&items, &kept, false);
    assert_eq!(needed.into_iter().collect::<Vec<_>>(), ["authenticated"]);
}

#[test]
fn a_role_that_cannot_create_roles_stops_naming_all_missing() {
    let items = toc();
    let kept: HashSet<i64> = items.iter().map(|i| i.dump_id).collect();
    let (needed, wanted) = roles(&items, &kept, true);
    let mut f = facts(false);
    f.createrole = false;
    let e = roles_to_create(&needed, &wanted, &f, &mut Vec::new())
        .expect_err("refused")
        .to_string();
    assert!(e.contains("authenticated, pgbouncer"), "{e}");
    f.createrole = true;
    let made = roles_to_create(&needed, &wanted, &f, &mut Vec::new()).expect("ok");
    assert_eq!(made, ["authenticated", "pgbouncer", "supabase_admin"]);
}

#[test]
fn list_text_comments_out_skips_and_kept_ids_reads_it_back() {
    let items = toc();
    let skip: Skips = [(2, "x".to_string())].into_iter().collect();
    let text = list_text(&items, &skip);
    assert!(
        text.contains("\n;2; 0 0 EXTENSION - uuid-ossp \n"),
        "{text}"
    );
    let kept = kept_ids(&text);
    assert!(!kept.contains(&2) && kept.contains(&3) && kept.len() == items.len() - 1);
}
