//! Supabase projects (docs/SUPABASE.md): a dump holding the platform's schemas and roles
//! restores into plain PostgreSQL, and into another Supabase-style project as a non-superuser
//! that does not own the platform's schemas, without permission errors.

mod common;
mod restore_util;
use common::*;
use pgdrill_testkit as tk;
use restore_util::*;

/// The platform's roles (cluster-wide), as Supabase creates them.
const ROLES_SQL: &str = r#"
    create role anon nologin noinherit;
    create role authenticated nologin noinherit;
    create role service_role nologin noinherit bypassrls;
    create role supabase_admin nologin superuser;
    create role supabase_auth_admin nologin noinherit createrole;
    create role supabase_storage_admin nologin noinherit createrole;
    create role authenticator nologin noinherit;
    create role dashboard_user nologin createdb createrole;
    grant anon, authenticated, service_role to authenticator;
"#;

/// What the platform installs in each project's database: schemas owned by supabase_admin,
/// auth and storage tables owned by their services' roles, an event trigger, default
/// privileges, the realtime publication, and the platform's own bookkeeping rows.
const PLATFORM_SQL: &str = r#"
    create schema auth authorization supabase_admin;
    create schema storage authorization supabase_admin;
    create schema extensions authorization supabase_admin;
    comment on schema auth is 'Supabase Auth';
    grant usage on schema auth, storage to anon, authenticated, service_role, dashboard_user;
    grant all on schema auth to supabase_auth_admin;
    grant all on schema storage to supabase_storage_admin;
    grant usage on schema extensions to anon, authenticated, service_role;
    grant usage on schema public to anon, authenticated, service_role;
    create table auth.users (
      instance_id uuid, id uuid primary key, aud varchar(255), role varchar(255),
      email varchar(255) unique, encrypted_password varchar(255),
      raw_app_meta_data jsonb, raw_user_meta_data jsonb,
      created_at timestamptz, updated_at timestamptz);
    create table auth.identities (
      id uuid primary key default gen_random_uuid(), provider_id text not null,
      user_id uuid not null references auth.users (id) on delete cascade,
      identity_data jsonb not null, provider text not null, created_at timestamptz,
      unique (provider_id, provider));
    create table auth.refresh_tokens (id bigserial primary key, token varchar(255),
      user_id varchar(255), revoked boolean, created_at timestamptz);
    create table auth.schema_migrations (version varchar(255) primary key);
    insert into auth.schema_migrations values ('20171026211738'), ('20221208132122');
    create function auth.uid() returns uuid language sql stable as
      $$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
    alter table auth.users owner to supabase_auth_admin;
    alter table auth.identities owner to supabase_auth_admin;
    alter table auth.refresh_tokens owner to supabase_auth_admin;
    alter table auth.schema_migrations owner to supabase_auth_admin;
    alter function auth.uid() owner to supabase_auth_admin;
    alter table auth.users enable row level security;
    alter table auth.identities enable row level security;
    comment on table auth.users is 'Auth: Stores user login data within a secure schema.';
    grant all on all tables in schema auth to dashboard_user;
    grant select on auth.users to service_role;
    create table storage.buckets (id text primary key, name text not null unique,
      owner uuid references auth.users (id), public boolean default false,
      created_at timestamptz default now());
    create table storage.objects (id uuid primary key default gen_random_uuid(),
      bucket_id text references storage.buckets (id), name text,
      owner uuid references auth.users (id), metadata jsonb,
      created_at timestamptz default now(),
      path_tokens text[] generated always as (string_to_array(name, '/')) stored);
    create index bucketid_objname on storage.objects (bucket_id, name);
    create table storage.migrations (id integer primary key, name varchar(100) unique not null,
      hash varchar(40) not null, executed_at timestamp default current_timestamp);
    insert into storage.migrations (id, name, hash) values
      (0, 'create-migrations-table', 'e18db593bcde2aca2a408c4d1100f6abba2195df');
    create function storage.foldername(name text) returns text[] language sql immutable as
      $$ select (string_to_array(name, '/'))[1:array_length(string_to_array(name, '/'), 1) - 1] $$;
    alter table storage.buckets owner to supabase_storage_admin;
    alter table storage.objects owner to supabase_storage_admin;
    alter table storage.migrations owner to supabase_storage_admin;
    alter function storage.foldername(text) owner to supabase_storage_admin;
    alter table storage.objects enable row level security;
    alter table storage.buckets enable row level security;
    grant all on storage.buckets, storage.objects to anon, authenticated, service_role;
    create function extensions.pgrst_ddl_watch() returns event_trigger language plpgsql as
      $$ begin notify pgrst, 'reload schema'; end $$;
    alter function extensions.pgrst_ddl_watch() owner to supabase_admin;
    create event trigger pgrst_ddl_watch on ddl_command_end execute procedure extensions.pgrst_ddl_watch();
    alter event trigger pgrst_ddl_watch owner to supabase_admin;
    alter default privileges for role supabase_admin in schema public
      grant all on tables to anon, authenticated, service_role;
    alter default privileges for role postgres in schema public
      grant all on sequences to anon, authenticated, service_role;
    create publication supabase_realtime;
"#;

/// The project's own content: public tables with RLS policies `TO authenticated`, grants to
/// anon/authenticated, a trigger and policies on platform tables, users, buckets and objects.
const APP_SQL: &str = r#"
    create table public.profiles (id uuid primary key references auth.users (id) on delete cascade,
      username text unique, avatar_url text);
    create table public.todos (id bigint generated by default as identity primary key,
      user_id uuid not null references auth.users (id), task text not null check (char_length(task) > 0),
      is_done boolean not null default false, inserted_at timestamptz not null);
    alter table public.profiles enable row level security;
    alter table public.todos enable row level security;
    create policy "Public profiles are viewable by everyone." on public.profiles for select using (true);
    create policy "Users can insert their own profile." on public.profiles
      for insert to authenticated with check (auth.uid() = id);
    create policy "Individuals can view their own todos." on public.todos
      for select to authenticated using (auth.uid() = user_id);
    create policy "Individuals can create todos." on public.todos
      for insert to authenticated with check (auth.uid() = user_id);
    grant select on public.profiles to anon;
    grant all on public.profiles, public.todos to authenticated, service_role;
    revoke all on public.todos from anon;
    create function public.handle_new_user() returns trigger language plpgsql security definer
      set search_path = '' as
      $$ begin insert into public.profiles (id, username) values (new.id, new.raw_user_meta_data->>'username'); return new; end $$;
    create trigger on_auth_user_created after insert on auth.users
      for each row execute procedure public.handle_new_user();
    create policy "Avatar images are publicly accessible." on storage.objects
      for select using (bucket_id = 'avatars');
    create policy "Users upload their own avatar." on storage.objects
      for insert to authenticated with check (bucket_id = 'avatars' and owner = auth.uid());
    alter publication supabase_realtime add table public.todos;
    insert into auth.users (instance_id, id, aud, role, email, encrypted_password,
        raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
      select '00000000-0000-0000-0000-000000000000', md5('u' || g)::uuid, 'authenticated',
        'authenticated', 'user' || g || '@example.com', md5('pw' || g),
        '{"provider": "email"}', jsonb_build_object('username', 'user' || g),
        timestamptz '2024-01-01' + g * interval '1 day', timestamptz '2024-01-01' + g * interval '1 day'
      from generate_series(1, 50) g;
    insert into auth.identities (id, provider_id, user_id, identity_data, provider, created_at)
      select md5('i' || g)::uuid, md5('u' || g)::uuid::text, md5('u' || g)::uuid,
        jsonb_build_object('sub', md5('u' || g)::uuid), 'email', '2024-01-01'
      from generate_series(1, 50) g;
    insert into auth.refresh_tokens (token, user_id, revoked, created_at)
      select md5('t' || g), md5('u' || g)::uuid::text, false, '2024-01-01' from generate_series(1, 10) g;
    insert into storage.buckets (id, name, public, created_at) values ('avatars', 'avatars', true, '2024-01-01');
    insert into storage.objects (id, bucket_id, name, owner, metadata, created_at)
      select md5('o' || g)::uuid, 'avatars', 'user' || g || '/avatar.png', md5('u' || g)::uuid,
        '{"size": 1024}', '2024-01-01' from generate_series(1, 20) g;
    insert into public.todos (user_id, task, inserted_at)
      select md5('u' || (1 + g % 50))::uuid, 'task ' || g, timestamptz '2024-01-01' + g * interval '1 hour'
      from generate_series(1, 200) g;
"#;

/// The project's tables whose content must arrive unchanged in another project.
const PROJECT_TABLES: &[&str] = &[
    "\"public\".\"profiles\"",
    "\"public\".\"todos\"",
    "\"auth\".\"users\"",
    "\"auth\".\"identities\"",
    "\"storage\".\"buckets\"",
    "\"storage\".\"objects\"",
];

async fn count(url: &str, sql: &str) -> i64 {
    scalar(url, &format!("select ({sql})::text"))
        .await
        .parse()
        .expect("count")
}

#[tokio::test(flavor = "multi_thread")]
async fn supabase_project_restores_into_plain_postgres_and_another_project() {
    let sc = tk::cluster(None);
    let admin = tk::connect(&sc.url("postgres")).await;
    admin.batch_execute(ROLES_SQL).await.expect("roles");
    admin.batch_execute("create database sb").await.expect("db");
    let src = sc.url("sb");
    let c = tk::connect(&src).await;
    c.batch_execute(PLATFORM_SQL).await.expect("platform");
    c.batch_execute(APP_SQL).await.expect("app");
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    backup(dir.path(), &store, &src, &[]);
    let want = tk::fingerprint(&src, &pg_dump()).await;

    // 1. Plain PostgreSQL without the platform: roles created, everything restored but the
    //    platform machinery, grants and policies included.
    let plain = tk::cluster(None);
    let target = plain.url("sb");
    let out = restore(dir.path(), &store, &target, &[]);
    out.ok();
    let j = out.json();
    assert_eq!(j["profile"], "supabase", "{j}");
    // The roles come from the archive: those its grants, policies and owners name
    // (`authenticator` is named nowhere in this database).
    let mut roles: Vec<String> = j["created_roles"]
        .as_array()
        .expect("created_roles")
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            "anon",
            "authenticated",
            "dashboard_user",
            "service_role",
            "supabase_admin",
            "supabase_auth_admin",
            "supabase_storage_admin"
        ],
        "{j}"
    );
    let skipped = j["skipped"].to_string();
    assert!(
        skipped.contains("EVENT TRIGGER pgrst_ddl_watch"),
        "{skipped}"
    );
    assert!(skipped.contains("DEFAULT ACL"), "{skipped}");
    let got = tk::fingerprint(&target, &pg_dump()).await;
    assert_eq!(got.tables, want.tables);
    assert_eq!(got.sequences, want.sequences);
    assert_eq!(count(&target, "select count(*) from pg_policies").await, 6);
    assert_eq!(
        count(&target, "select count(*) from pg_event_trigger").await,
        0
    );
    let grants = "select (has_table_privilege('anon', 'public.profiles', 'SELECT') \
                  and not has_table_privilege('anon', 'public.todos', 'SELECT') \
                  and has_table_privilege('authenticated', 'public.todos', 'INSERT'))::int";
    assert_eq!(count(&target, grants).await, 1, "grants to the API roles");

    // 2. Another Supabase-style project, restored by a role that is not a superuser and does
    //    not own the platform's schemas (as `postgres` on Supabase).
    let pc = tk::cluster(None);
    let padmin = tk::connect(&pc.url("postgres")).await;
    padmin.batch_execute(ROLES_SQL).await.expect("roles");
    padmin
        .batch_execute(
            "create role supa login password 'supa-pw' createdb createrole bypassrls; \
             grant anon, authenticated, service_role, supabase_storage_admin to supa;",
        )
        .await
        .expect("project role");
    padmin
        .batch_execute("create database proj owner supa")
        .await
        .expect("project db");
    let proj_admin = pc.url("proj");
    let pcon = tk::connect(&proj_admin).await;
    pcon.batch_execute(PLATFORM_SQL).await.expect("platform");
    pcon.batch_execute(
        "grant usage on schema auth, storage, extensions to supa; \
         grant all on all tables in schema auth, storage to supa; \
         alter publication supabase_realtime owner to supa;",
    )
    .await
    .expect("grants");
    let migrations = "select string_agg(version, ',' order by version) from auth.schema_migrations";
    let before = scalar(&proj_admin, migrations).await;
    let as_supa = format!("postgresql://supa:supa-pw@127.0.0.1:{}/proj", pc.port());
    let out = restore(dir.path(), &store, &as_supa, &["--jobs", "2"]);
    out.ok();
    let j = out.json();
    assert!(j["created_roles"].is_null(), "{j}");
    assert_eq!(j["jobs"], 1, "platform rows load serially: {j}");
    let skipped = j["skipped"].to_string();
    assert!(skipped.contains("schema auth"), "{skipped}");
    assert!(skipped.contains("auth.refresh_tokens"), "{skipped}");
    let got = tk::fingerprint(&proj_admin, &pg_dump()).await;
    for t in PROJECT_TABLES {
        assert_eq!(got.tables.get(*t), want.tables.get(*t), "{t}");
    }
    assert_eq!(
        scalar(&proj_admin, migrations).await,
        before,
        "the platform's own rows"
    );
    assert_eq!(
        count(&proj_admin, "select count(*) from auth.refresh_tokens").await,
        0
    );
    assert_eq!(
        count(&proj_admin, "select count(*) from pg_policies").await,
        6
    );
    assert_eq!(
        count(&proj_admin, "select count(*) from pg_event_trigger").await,
        1
    );
    assert_eq!(
        count(
            &proj_admin,
            "select count(*) from pg_trigger where tgname = 'on_auth_user_created'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&proj_admin, grants).await,
        1,
        "grants to the API roles"
    );
    assert_eq!(
        scalar(
            &proj_admin,
            "select tableowner::text from pg_tables where tablename = 'todos'"
        )
        .await,
        "supa"
    );
    assert_eq!(
        count(
            &proj_admin,
            "select count(*) from pg_publication_tables where pubname = 'supabase_realtime'"
        )
        .await,
        1
    );
}
