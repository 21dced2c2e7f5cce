-- A fixture that satisfies examples/supabase-r2-prisma/pgdrill.toml: the tables a Prisma schema of a
-- multi-tenant workflow app creates, org-scoped row level security with one policy per
-- table, and a little data. Load it into an empty database:
--   psql "$PROD_DIRECT_URL" -v ON_ERROR_STOP=1 -f schema.sql

create table "_prisma_migrations" (
    "id"                  varchar(36) primary key,
    "checksum"            varchar(64) not null,
    "finished_at"         timestamptz,
    "migration_name"      varchar(255) not null,
    "logs"                text,
    "rolled_back_at"      timestamptz,
    "started_at"          timestamptz not null default now(),
    "applied_steps_count" integer not null default 0
);
insert into "_prisma_migrations" ("id", "checksum", "finished_at", "migration_name", "applied_steps_count") values
    ('5d0c1f2e-0001-4000-8000-000000000001', 'a3f1', '2026-01-10 09:00:00+00', '20260110090000_init', 1),
    ('5d0c1f2e-0002-4000-8000-000000000002', 'b7c2', '2026-02-02 09:00:00+00', '20260202090000_workflows', 1),
    ('5d0c1f2e-0003-4000-8000-000000000003', 'c9d4', '2026-03-15 09:00:00+00', '20260315090000_audit_log', 1);

create table "Organization" (
    "id"        text primary key,
    "name"      text not null,
    "createdAt" timestamp(3) not null default current_timestamp
);
create table "User" (
    "id"             text primary key,
    "email"          text not null unique,
    "organizationId" text not null references "Organization" ("id") on delete cascade,
    "createdAt"      timestamp(3) not null default current_timestamp
);
create table "Event" (
    "id"             text primary key,
    "organizationId" text not null references "Organization" ("id") on delete cascade,
    "type"           text not null,
    "payload"        jsonb,
    "createdAt"      timestamp(3) not null default current_timestamp
);
create index "Event_organizationId_idx" on "Event" ("organizationId");
create table "Workflow" (
    "id"             text primary key,
    "organizationId" text not null references "Organization" ("id") on delete cascade,
    "name"           text not null,
    "enabled"        boolean not null default true
);
create table "WorkflowExecution" (
    "id"             text primary key,
    "workflowId"     text not null references "Workflow" ("id") on delete cascade,
    "organizationId" text not null references "Organization" ("id") on delete cascade,
    "status"         text not null,
    "startedAt"      timestamp(3) not null default current_timestamp
);
create table "WorkflowStep" (
    "id"             text primary key,
    "executionId"    text not null references "WorkflowExecution" ("id") on delete cascade,
    "organizationId" text not null references "Organization" ("id") on delete cascade,
    "position"       integer not null,
    "status"         text not null
);
create table "AuditLog" (
    "id"             text primary key,
    "organizationId" text references "Organization" ("id") on delete set null,
    "entityType"     text not null,
    "entityId"       text,
    "action"         text not null,
    "metadata"       jsonb,
    "createdAt"      timestamp(3) not null default current_timestamp
);

-- Row level security: every org-scoped table sees only the current organization's rows.
alter table "Organization" enable row level security;
create policy organization_isolation on "Organization"
    using ("id" = current_setting('app.current_organization_id', true));
alter table "Event" enable row level security;
create policy event_org_isolation on "Event"
    using ("organizationId" = current_setting('app.current_organization_id', true));
alter table "Workflow" enable row level security;
create policy workflow_org_isolation on "Workflow"
    using ("organizationId" = current_setting('app.current_organization_id', true));
alter table "WorkflowExecution" enable row level security;
create policy workflow_execution_org_isolation on "WorkflowExecution"
    using ("organizationId" = current_setting('app.current_organization_id', true));
alter table "WorkflowStep" enable row level security;
create policy workflow_step_org_isolation on "WorkflowStep"
    using ("organizationId" = current_setting('app.current_organization_id', true));

insert into "Organization" ("id", "name") values ('org_acme', 'Acme'), ('org_globex', 'Globex');
insert into "User" ("id", "email", "organizationId")
select 'usr_' || g, 'user' || g || '@example.com', case when g % 2 = 0 then 'org_acme' else 'org_globex' end
from generate_series(1, 4) g;
insert into "Event" ("id", "organizationId", "type", "payload")
select 'evt_' || g, case when g % 2 = 0 then 'org_acme' else 'org_globex' end,
       (array['signup', 'invoice.paid', 'workflow.run'])[1 + g % 3], jsonb_build_object('n', g)
from generate_series(1, 50) g;
insert into "Workflow" ("id", "organizationId", "name") values
    ('wf_1', 'org_acme', 'Onboarding'), ('wf_2', 'org_acme', 'Dunning'), ('wf_3', 'org_globex', 'Onboarding');
insert into "WorkflowExecution" ("id", "workflowId", "organizationId", "status")
select 'wfx_' || g, 'wf_' || (1 + g % 3), case when g % 3 = 2 then 'org_globex' else 'org_acme' end, 'succeeded'
from generate_series(1, 6) g;
insert into "WorkflowStep" ("id", "executionId", "organizationId", "position", "status")
select 'wfs_' || x.g || '_' || p, 'wfx_' || x.g, x."organizationId", p, 'done'
from (select g, "organizationId" from generate_series(1, 6) g join "WorkflowExecution" on "id" = 'wfx_' || g) x,
     generate_series(1, 3) p;
insert into "AuditLog" ("id", "organizationId", "entityType", "entityId", "action") values
    ('aud_1', 'org_acme', 'DatabaseBackup', null, 'backup.completed'),
    ('aud_2', null, 'DatabaseBackup', null, 'restore_test.completed');
