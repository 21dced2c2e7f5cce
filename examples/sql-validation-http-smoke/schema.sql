-- A fixture that satisfies examples/sql-validation-http-smoke/pgdrill.toml: the application-critical tables
-- of an LMS/task app and the progress table the validation constrains (no CHECK constraint
-- there: that is why the runbook validates it). Load it into an empty database:
--   psql "$SOURCE_DB_URL" -v ON_ERROR_STOP=1 -f schema.sql

create table public.profiles (
    id         uuid primary key,
    full_name  text not null,
    created_at timestamptz not null default now()
);
create table public.tasks (
    id         bigint generated always as identity primary key,
    profile_id uuid not null references public.profiles (id) on delete cascade,
    title      text not null,
    done       boolean not null default false
);
create table public.documents (
    id         bigint generated always as identity primary key,
    profile_id uuid not null references public.profiles (id) on delete cascade,
    title      text not null,
    storage_path text not null
);
create table public.notifications (
    id         bigint generated always as identity primary key,
    profile_id uuid not null references public.profiles (id) on delete cascade,
    body       text not null,
    read_at    timestamptz
);
create table public.lms_courses (
    id    bigint generated always as identity primary key,
    title text not null
);
create table public.lms_subsections (
    id        bigint generated always as identity primary key,
    course_id bigint not null references public.lms_courses (id) on delete cascade,
    title     text not null,
    position  integer not null
);
create table public.lms_subsection_progress (
    id               bigint generated always as identity primary key,
    profile_id       uuid not null references public.profiles (id) on delete cascade,
    subsection_id    bigint not null references public.lms_subsections (id) on delete cascade,
    progress_percent integer not null
);

insert into public.profiles (id, full_name)
select md5('profile' || g)::uuid, 'Learner ' || g from generate_series(1, 3) g;
insert into public.tasks (profile_id, title)
select md5('profile' || (1 + g % 3))::uuid, 'Task ' || g from generate_series(1, 5) g;
insert into public.documents (profile_id, title, storage_path)
select md5('profile' || (1 + g % 3))::uuid, 'Document ' || g, 'documents/' || g || '.pdf' from generate_series(1, 4) g;
insert into public.notifications (profile_id, body)
select md5('profile' || (1 + g % 3))::uuid, 'Notification ' || g from generate_series(1, 6) g;
insert into public.lms_courses (title) values ('Onboarding'), ('Safety');
insert into public.lms_subsections (course_id, title, position)
select 1 + g % 2, 'Section ' || g, g from generate_series(1, 5) g;
insert into public.lms_subsection_progress (profile_id, subsection_id, progress_percent)
select md5('profile' || (1 + g % 3))::uuid, 1 + g % 5, (g * 17) % 101 from generate_series(1, 6) g;
