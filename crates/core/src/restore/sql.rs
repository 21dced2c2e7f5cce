//! Just enough SQL reading for a restore's preflight: identifiers as pg_dump writes them,
//! and the roles and settings an archive entry's definition names.
//!
//! pg_dump writes one statement kind per entry type, so a tokenizer (quoted identifiers,
//! strings, dollar quotes, comments, parentheses) and a few patterns at parenthesis depth 0
//! are enough; no grammar is needed.

/// An identifier as SQL spells it (`"uuid-ossp"`, `auth`) as the name it denotes.
/// Every comparison of a name from a TOC tag or a definition goes through this.
pub fn unquote_ident(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if s.len() >= 2 => inner.replace("\"\"", "\""),
        _ => s.to_string(),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An unquoted word, lowercased (keywords and plain identifiers).
    Word(String),
    /// A quoted identifier, unescaped.
    Ident(String),
    /// A string literal (standard, escape or dollar-quoted), unescaped as far as needed.
    Str(String),
    Punct(char),
    /// Numbers, operators, parameters.
    Other,
}

/// Tokens with their parenthesis depth.
fn tokens(sql: &str) -> Vec<(Tok, u32)> {
    let c: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut depth) = (0usize, 0u32);
    let word_char = |ch: char| ch.is_alphanumeric() || ch == '_' || ch == '$';
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '-' && c.get(i + 1) == Some(&'-') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut nest = 0u32;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    nest += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    nest = nest.saturating_sub(1);
                    i += 2;
                    if nest == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            let (s, next) = quoted(&c, i, '"', false);
            out.push((Tok::Ident(s), depth));
            i = next;
        } else if ch == '\'' {
            let (s, next) = quoted(&c, i, '\'', false);
            out.push((Tok::Str(s), depth));
            i = next;
        } else if ch == '$' && dollar_tag(&c, i).is_some() {
            let tag = dollar_tag(&c, i).unwrap_or_default();
            let start = i + tag.len();
            let mut j = start;
            let end = loop {
                if j >= c.len() {
                    break c.len();
                }
                if c[j] == '$' && c[j..].starts_with(&tag.chars().collect::<Vec<_>>()[..]) {
                    break j;
                }
                j += 1;
            };
            out.push((Tok::Str(c[start..end].iter().collect()), depth));
            i = (end + tag.len()).min(c.len());
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && word_char(c[i]) {
                i += 1;
            }
            let w: String = c[start..i].iter().collect::<String>().to_lowercase();
            if (w == "e" || w == "u&") && c.get(i) == Some(&'\'') {
                let (s, next) = quoted(&c, i, '\'', w == "e");
                out.push((Tok::Str(s), depth));
                i = next;
            } else {
                out.push((Tok::Word(w), depth));
            }
        } else if ch == '(' {
            out.push((Tok::Punct('('), depth));
            depth += 1;
            i += 1;
        } else if ch == ')' {
            depth = depth.saturating_sub(1);
            out.push((Tok::Punct(')'), depth));
            i += 1;
        } else if matches!(ch, ',' | ';' | '.' | '=') {
            out.push((Tok::Punct(ch), depth));
            i += 1;
        } else {
            out.push((Tok::Other, depth));
            i += 1;
        }
    }
    out
}

/// `$tag$` starting at `i`, if one does (a positional `$1` is not).
fn dollar_tag(c: &[char], i: usize) -> Option<String> {
    let mut j = i + 1;
    while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
        if j == i + 1 && c[j].is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    (c.get(j) == Some(&'$')).then(|| c[i..=j].iter().collect())
}

/// A `q`-quoted token starting at `i` (doubled `q` escapes it; with `backslash`, `\x` too).
fn quoted(c: &[char], i: usize, q: char, backslash: bool) -> (String, usize) {
    let mut s = String::new();
    let mut j = i + 1;
    while j < c.len() {
        if backslash && c[j] == '\\' && j + 1 < c.len() {
            s.push(c[j + 1]);
            j += 2;
        } else if c[j] == q {
            if c.get(j + 1) == Some(&q) {
                s.push(q);
                j += 2;
            } else {
                return (s, j + 1);
            }
        } else {
            s.push(c[j]);
            j += 1;
        }
    }
    (s, j)
}

/// The column names of a `COPY table (a, "B c") FROM stdin;` statement, unquoted.
pub fn copy_columns(copy: &str) -> Vec<String> {
    tokens(copy)
        .into_iter()
        .filter(|(_, d)| *d == 1)
        .filter_map(|(t, _)| match t {
            Tok::Word(w) => Some(w),
            Tok::Ident(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// How an entry names a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoleUse {
    /// A policy's `TO`: the policy cannot be created without the role.
    Policy,
    /// A GRANT/REVOKE, a default privilege (`FOR ROLE` or grantee), `SET SESSION
    /// AUTHORIZATION` before one: needed when privileges are restored.
    Privilege,
    /// A function's `SET ROLE`, a user mapping.
    Setting,
}

/// What one entry's definition names.
#[derive(Debug, Default, PartialEq)]
pub struct Refs {
    pub roles: Vec<(String, RoleUse)>,
    /// `SET name TO value` clauses of a function or procedure (lowercased names).
    pub settings: Vec<String>,
}

const NOT_ROLES: &[&str] = &[
    "public",
    "current_user",
    "session_user",
    "current_role",
    "group",
];

/// Roles and settings that the statements of `defn` name.
pub fn refs(defn: &str) -> Refs {
    let toks = tokens(defn);
    let mut refs = Refs::default();
    for stmt in toks.split(|(t, d)| *d == 0 && *t == Tok::Punct(';')) {
        statement_refs(stmt, &mut refs);
    }
    refs
}

fn word(t: &(Tok, u32)) -> Option<&str> {
    match t {
        (Tok::Word(w), _) => Some(w.as_str()),
        _ => None,
    }
}

fn starts_with(stmt: &[(Tok, u32)], words: &[&str]) -> bool {
    stmt.len() >= words.len() && words.iter().zip(stmt).all(|(w, t)| word(t) == Some(*w))
}

/// Index of the first depth-0 word `w` at or after `from`.
fn find_word(stmt: &[(Tok, u32)], from: usize, w: &str) -> Option<usize> {
    (from..stmt.len()).find(|&i| stmt[i].1 == 0 && word(&stmt[i]) == Some(w))
}

/// Role names in a comma-separated list starting at `from` (`GROUP`, `PUBLIC` and
/// `CURRENT_USER` are no roles to create), up to the first token that continues no list.
fn role_list(stmt: &[(Tok, u32)], from: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = from;
    loop {
        if stmt.get(i).and_then(word) == Some("group") {
            i += 1;
        }
        match stmt.get(i).map(|t| &t.0) {
            Some(Tok::Word(w)) if NOT_ROLES.contains(&w.as_str()) => {}
            Some(Tok::Word(w)) | Some(Tok::Ident(w)) => out.push(w.clone()),
            _ => break,
        }
        i += 1;
        if stmt.get(i).map(|t| &t.0) != Some(&Tok::Punct(',')) {
            break;
        }
        i += 1;
    }
    out
}

fn statement_refs(stmt: &[(Tok, u32)], refs: &mut Refs) {
    let mut add = |names: Vec<String>, why: RoleUse| {
        refs.roles.extend(names.into_iter().map(|n| (n, why)));
    };
    if starts_with(stmt, &["grant"]) {
        if let Some(to) = find_word(stmt, 0, "on").and_then(|on| find_word(stmt, on, "to")) {
            add(role_list(stmt, to + 1), RoleUse::Privilege);
        }
        if let Some(by) = find_word(stmt, 0, "granted") {
            add(role_list(stmt, by + 2), RoleUse::Privilege);
        }
    } else if starts_with(stmt, &["revoke"]) {
        if let Some(from) = find_word(stmt, 0, "on").and_then(|on| find_word(stmt, on, "from")) {
            add(role_list(stmt, from + 1), RoleUse::Privilege);
        }
    } else if starts_with(stmt, &["alter", "default", "privileges"]) {
        if let Some(f) = find_word(stmt, 0, "for") {
            add(role_list(stmt, f + 2), RoleUse::Privilege);
        }
        if let Some(g) = find_word(stmt, 0, "grant") {
            if let Some(to) = find_word(stmt, g, "to") {
                add(role_list(stmt, to + 1), RoleUse::Privilege);
            }
        } else if let Some(r) = find_word(stmt, 0, "revoke") {
            if let Some(from) = find_word(stmt, r, "from") {
                add(role_list(stmt, from + 1), RoleUse::Privilege);
            }
        }
    } else if starts_with(stmt, &["set", "session", "authorization"]) {
        add(role_list(stmt, 3), RoleUse::Privilege);
    } else if starts_with(stmt, &["create", "policy"]) {
        // CREATE POLICY name ON table [AS ...] [FOR cmd] [TO roles] [USING (...)] [WITH CHECK (...)]
        if let Some(to) = find_word(stmt, 0, "on").and_then(|on| find_word(stmt, on, "to")) {
            add(role_list(stmt, to + 1), RoleUse::Policy);
        }
    } else if starts_with(stmt, &["create", "user", "mapping", "for"]) {
        add(role_list(stmt, 4), RoleUse::Setting);
    } else if starts_with(stmt, &["create", "function"])
        || starts_with(stmt, &["create", "procedure"])
        || starts_with(stmt, &["create", "or", "replace", "function"])
        || starts_with(stmt, &["create", "or", "replace", "procedure"])
    {
        function_settings(stmt, refs);
    }
}

/// The `SET name TO value` / `SET name = value` clauses of a CREATE FUNCTION, which pg_dump
/// writes before the body (`AS ...`, `BEGIN ATOMIC`, `RETURN`).
fn function_settings(stmt: &[(Tok, u32)], refs: &mut Refs) {
    let mut i = 0;
    while i + 2 < stmt.len() {
        if stmt[i].1 == 0 {
            match word(&stmt[i]) {
                Some("as" | "begin" | "return") => break,
                Some("set") => {
                    let name = match &stmt[i + 1].0 {
                        Tok::Word(w) => Some(w.clone()),
                        Tok::Ident(s) => Some(s.to_lowercase()),
                        _ => None,
                    };
                    if let Some(mut name) = name {
                        let mut j = i + 2;
                        // Dotted custom settings (`pgrst.db_schemas`).
                        while j + 1 < stmt.len() && stmt[j].0 == Tok::Punct('.') {
                            if let Tok::Word(w) | Tok::Ident(w) = &stmt[j + 1].0 {
                                name = format!("{name}.{}", w.to_lowercase());
                            }
                            j += 2;
                        }
                        let assigns = stmt
                            .get(j)
                            .is_some_and(|t| word(t) == Some("to") || t.0 == Tok::Punct('='));
                        if assigns {
                            if name == "role" || name == "session_authorization" {
                                if let Some((Tok::Str(v) | Tok::Ident(v) | Tok::Word(v), _)) =
                                    stmt.get(j + 1)
                                {
                                    if !NOT_ROLES.contains(&v.as_str()) && v != "none" {
                                        refs.roles.push((v.clone(), RoleUse::Setting));
                                    }
                                }
                            }
                            refs.settings.push(name);
                            i = j + 1;
                            continue;
                        }
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(defn: &str) -> Vec<(String, RoleUse)> {
        refs(defn).roles
    }

    #[test]
    fn copy_columns_are_read_unquoted() {
        assert_eq!(
            copy_columns("COPY auth.identities (provider_id, \"User Id\", email) FROM stdin;\n"),
            ["provider_id", "User Id", "email"]
        );
    }

    #[test]
    fn unquotes_as_sql_does() {
        assert_eq!(unquote_ident("\"uuid-ossp\""), "uuid-ossp");
        assert_eq!(unquote_ident("auth"), "auth");
        assert_eq!(unquote_ident("\"a\"\"b\""), "a\"b");
        assert_eq!(unquote_ident("\"My Schema\""), "My Schema");
    }

    #[test]
    fn grants_and_revokes_name_their_grantees() {
        let d = "REVOKE ALL ON FUNCTION pgbouncer.get_auth(p_usename text) FROM PUBLIC;\n\
                 GRANT ALL ON FUNCTION pgbouncer.get_auth(p_usename text) TO pgbouncer;\n\
                 GRANT SELECT(\"to\") ON TABLE public.\"to from\" TO anon, \"Odd Role\" WITH GRANT OPTION;\n\
                 SET SESSION AUTHORIZATION rds_superuser;\n\
                 GRANT USAGE ON SCHEMA s TO app GRANTED BY rdsadmin;\n\
                 RESET SESSION AUTHORIZATION;";
        let got: Vec<String> = roles(d).into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            got,
            [
                "pgbouncer",
                "anon",
                "Odd Role",
                "rds_superuser",
                "app",
                "rdsadmin"
            ]
        );
    }

    #[test]
    fn default_privileges_name_the_role_and_grantees() {
        let d = "ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public GRANT ALL ON TABLES TO postgres, anon;";
        let got: Vec<String> = roles(d).into_iter().map(|(r, _)| r).collect();
        assert_eq!(got, ["supabase_admin", "postgres", "anon"]);
        let d = "ALTER DEFAULT PRIVILEGES FOR ROLE cloudsqlsuperuser REVOKE ALL ON FUNCTIONS FROM PUBLIC;";
        assert_eq!(roles(d), [("cloudsqlsuperuser".into(), RoleUse::Privilege)]);
    }

    #[test]
    fn policies_name_their_to_roles_not_words_in_expressions() {
        let d = "CREATE POLICY \"Users to see\" ON public.todos FOR SELECT TO authenticated, \"Admins\" USING ((auth.uid() = user_id) AND (note <> 'TO x'::text));";
        assert_eq!(
            roles(d),
            [
                ("authenticated".into(), RoleUse::Policy),
                ("Admins".into(), RoleUse::Policy)
            ]
        );
        let d = "CREATE POLICY p ON public.t USING (true);";
        assert!(roles(d).is_empty());
    }

    #[test]
    fn functions_name_their_settings_and_set_role() {
        let d = "CREATE FUNCTION public.f() RETURNS SETOF public.t\n    LANGUAGE plpgsql SECURITY DEFINER\n    SET search_path TO ''\n    SET log_min_messages TO 'fatal'\n    SET role TO 'supabase_functions_admin'\n    SET pgrst.db_schemas TO 'api'\n    AS $_$ begin update t set x = 1; return; end $_$;";
        let r = refs(d);
        assert_eq!(
            r.settings,
            [
                "search_path",
                "log_min_messages",
                "role",
                "pgrst.db_schemas"
            ]
        );
        assert_eq!(
            r.roles,
            [("supabase_functions_admin".into(), RoleUse::Setting)]
        );
        // A SQL-standard body's UPDATE ... SET is not a setting.
        let d = "CREATE FUNCTION f() RETURNS void\n    LANGUAGE sql\n    BEGIN ATOMIC\n UPDATE t SET x = 1;\nEND;";
        assert!(refs(d).settings.is_empty());
    }
}
