//! Tests of the Supabase plan.

use super::filter::*;
use super::*;

/// `pg_restore --list` of a Supabase-style dump (abridged), plus platform extensions.
const TOC: &str = "\
;
; Archive created at 2026-11-21 08:45:20 UTC
;
5; 2615 16396 SCHEMA - auth supabase_admin
2684; 0 0 COMMENT - SCHEMA auth supabase_admin
2685; 0 0 ACL - SCHEMA auth supabase_admin
8; 2615 16399 SCHEMA - my app postgres
2; 3079 16400 EXTENSION - pg_graphql 
2700; 0 0 COMMENT - EXTENSION pg_graphql 
3; 3079 16401 EXTENSION - pgcrypto 
2701; 0 0 COMMENT - EXTENSION pgcrypto 
233; 1255 16445 FUNCTION auth uid() supabase_auth_admin
222; 1259 16399 TABLE auth users supabase_auth_admin
2694; 0 0 ACL auth TABLE users supabase_auth_admin
223; 1259 16409 TABLE auth identities supabase_auth_admin
225; 1259 16430 TABLE auth refresh_tokens supabase_auth_admin
230; 1259 16503 TABLE my app Order Items postgres
2668; 0 16409 TABLE DATA auth identities supabase_auth_admin
2670; 0 16430 TABLE DATA auth refresh_tokens supabase_auth_admin
2667; 0 16399 TABLE DATA auth users supabase_auth_admin
2675; 0 16503 TABLE DATA my app Order Items postgres
2680; 0 16600 TABLE DATA graphql schema_version supabase_admin
2700; 0 0 SEQUENCE SET auth refresh_tokens_id_seq supabase_auth_admin
2473; 2606 16406 CONSTRAINT auth users users_pkey supabase_auth_admin
2505; 2620 16543 TRIGGER auth users on_auth_user_created supabase_auth_admin
2506; 2620 16544 TRIGGER auth users platform_trigger supabase_auth_admin
2663; 3256 16544 POLICY storage objects Avatar images are public. supabase_storage_admin
2653; 0 16399 ROW SECURITY auth users supabase_auth_admin
2665; 6104 16502 PUBLICATION - supabase_realtime postgres
2093; 826 16501 DEFAULT ACL public DEFAULT PRIVILEGES FOR SEQUENCES postgres
2092; 826 16500 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES supabase_admin
2459; 3466 16499 EVENT TRIGGER - pgrst_ddl_watch supabase_admin";

fn lines(schemas: &[&str]) -> Vec<Line<'static>> {
    let s: Vec<String> = schemas.iter().map(|s| s.to_string()).collect();
    TOC.lines().map(|l| parse_line(l, &s)).collect()
}

fn kept(p: &Plan) -> Vec<&str> {
    p.list
        .lines()
        .filter(|l| !l.starts_with(';') && !l.is_empty())
        .collect()
}

#[test]
fn parses_names_with_spaces_and_empty_owners() {
    let l = parse_line(
        "2675; 0 16503 TABLE DATA my app Order Items postgres",
        &["my app".to_string()],
    );
    let Line::Entry(e) = l else {
        panic!("not parsed")
    };
    assert_eq!(
        (e.desc, e.ns, e.tag, e.owner),
        ("TABLE DATA", "my app", "Order Items", "postgres")
    );
    let Line::Entry(e) = parse_line("2; 3079 16400 EXTENSION - pg_graphql ", &[]) else {
        panic!("not parsed")
    };
    assert_eq!(
        (e.desc, e.ns, e.tag, e.owner),
        ("EXTENSION", "-", "pg_graphql", "")
    );
    let Line::Entry(e) = parse_line(
        "2093; 826 1 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES x",
        &[],
    ) else {
        panic!("not parsed")
    };
    assert_eq!(
        (e.desc, e.ns, e.tag),
        ("DEFAULT ACL", "public", "DEFAULT PRIVILEGES FOR TABLES")
    );
    assert!(matches!(parse_line("; comment", &[]), Line::Other(_)));
    assert!(matches!(
        parse_line("9; 1 2 NEW KIND x y z", &[]),
        Line::Other(_)
    ));
}

#[test]
fn plain_target_keeps_the_project_and_skips_platform_machinery() {
    let facts = Facts {
        available_extensions: ["pgcrypto".to_string()].into_iter().collect(),
        actable_roles: ["postgres".to_string()].into_iter().collect(),
        ..Facts::default()
    };
    let p = filter(&lines(&["auth", "my app", "public"]), &facts);
    let k = kept(&p);
    assert!(k.iter().any(|l| l.contains("SCHEMA - auth")));
    assert!(k.iter().any(|l| l.contains("TABLE DATA auth users")));
    assert!(k.iter().any(|l| l.contains("EXTENSION - pgcrypto")));
    assert!(k.iter().any(|l| l.contains("FOR SEQUENCES postgres")));
    for gone in [
        "pg_graphql",
        "pgrst_ddl_watch",
        "FOR TABLES supabase_admin",
        "graphql schema_version",
    ] {
        assert!(
            !k.iter().any(|l| l.contains(gone)),
            "{gone} must be skipped"
        );
    }
    assert!(!p.reorder);
    assert!(k
        .iter()
        .any(|l| l.contains("TABLE DATA auth refresh_tokens")));
    assert_eq!(p.skipped.len(), 5, "{:?}", p.skipped);
    assert_eq!(k.len() + p.skipped.len(), 29, "{:?}", p.skipped);
}

#[test]
fn supabase_target_keeps_project_content_and_moves_platform_rows() {
    let mut facts = Facts {
        platform_schemas: vec!["auth".into(), "storage".into()],
        installed_extensions: ["pg_graphql".to_string(), "pgcrypto".to_string()]
            .into_iter()
            .collect(),
        available_extensions: ["pg_graphql".to_string(), "pgcrypto".to_string()]
            .into_iter()
            .collect(),
        publications: ["supabase_realtime".to_string()].into_iter().collect(),
        triggers: ["auth\tusers platform_trigger".to_string()]
            .into_iter()
            .collect(),
        ..Facts::default()
    };
    facts
        .data
        .insert(("auth".into(), "users".into()), DataState::Empty);
    facts
        .data
        .insert(("auth".into(), "identities".into()), DataState::Empty);
    let p = filter(&lines(&["auth", "my app", "public", "storage"]), &facts);
    let k = kept(&p);
    let pos = |needle: &str| k.iter().position(|l| l.contains(needle));
    assert_eq!(pos("SCHEMA - auth"), None);
    assert_eq!(pos("TABLE auth users"), None);
    assert_eq!(pos("CONSTRAINT auth users"), None);
    assert_eq!(pos("EXTENSION - pg_graphql"), None);
    assert_eq!(pos("PUBLICATION - supabase_realtime"), None);
    assert_eq!(pos("platform_trigger"), None);
    assert_eq!(pos("refresh_tokens"), None);
    assert!(pos("on_auth_user_created").is_some());
    assert!(pos("Avatar images").is_some());
    assert!(pos("SCHEMA - my app").is_some());
    // users before identities, both after the project's own data.
    let (u, i, own) = (
        pos("TABLE DATA auth users").expect("users"),
        pos("TABLE DATA auth identities").expect("identities"),
        pos("TABLE DATA my app").expect("own"),
    );
    assert!(own < u && u < i, "{k:#?}");
    assert!(p.reorder);
    assert!(
        p.skipped
            .iter()
            .any(|s| s.contains("entries of schema auth")),
        "{:?}",
        p.skipped
    );
}
