//! A small database that exercises what a backup must carry faithfully.

/// The fixture, as one SQL script. Deterministic: two loads give equal fingerprints.
/// No roles, grants or ownership: it restores the same with `--no-owner --no-privileges`.
pub const FIXTURE_SQL: &str = r#"
CREATE SCHEMA app;
CREATE SCHEMA audit;
COMMENT ON SCHEMA app IS 'application data';

CREATE TYPE app.order_status AS ENUM ('new', 'paid', 'shipped');

-- thousands of rows with every awkward text and a spread of types
CREATE TABLE app.customers (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL,
    name        text,
    notes       text,
    balance     numeric(14,2) NOT NULL DEFAULT 0,
    ratio       double precision,
    profile     jsonb,
    avatar      bytea,
    tags        text[],
    external_id uuid,
    born        date,
    created_at  timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
);
COMMENT ON TABLE app.customers IS E'customers: text with\nnewlines, tabs and \\backslashes';
INSERT INTO app.customers (email, name, notes, balance, ratio, profile, avatar, tags, external_id, born, created_at)
SELECT 'user' || g || '@example.com',
       'Name ' || g,
       CASE g % 6
            WHEN 0 THEN E'line one\nline two\r\nline three'
            WHEN 1 THEN E'tab\tseparated\tvalues'
            WHEN 2 THEN E'back\\slash and \\N is not null'
            WHEN 3 THEN NULL
            WHEN 4 THEN 'ünïcødé ✓ ''quoted'' "double" ' || repeat('x', g % 50)
            ELSE ''
       END,
       (g * 12.34)::numeric(14,2),
       g / 7.0,
       jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b'), 'nested', jsonb_build_object('x', g % 7, 's', E'q"uo\\te\n')),
       CASE WHEN g % 3 = 0 THEN decode(md5(g::text), 'hex') || '\x00ff5c0a'::bytea END,
       ARRAY['t' || (g % 4), E'with space', E'comma,brace}']::text[],
       md5('uuid' || g)::uuid,
       date '1970-01-01' + (g * 13),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes 11.123456 seconds'
FROM generate_series(1, 3000) AS g;
CREATE UNIQUE INDEX customers_email_idx ON app.customers (email);
CREATE INDEX customers_created_idx ON app.customers (created_at DESC) WHERE notes IS NOT NULL;

CREATE TABLE app.orders (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES app.customers (id),
    total       numeric(12,2) NOT NULL CHECK (total >= 0),
    status      app.order_status NOT NULL DEFAULT 'new',
    placed_at   timestamptz NOT NULL
);
CREATE INDEX orders_customer_idx ON app.orders (customer_id);

-- 0 rows and 1 row
CREATE TABLE app.empty_table (id integer PRIMARY KEY, payload text);
CREATE TABLE app.settings (key text PRIMARY KEY, value jsonb NOT NULL);
INSERT INTO app.settings VALUES ('singleton', '{"feature": true, "limit": 10.5, "text": "a\nb"}');

-- standalone sequences: one used, one never called
CREATE SEQUENCE app.invoice_number_seq START 1000 INCREMENT 5;
SELECT setval('app.invoice_number_seq', 1235, true);
CREATE SEQUENCE app.unused_seq;

-- trigger function in another schema
CREATE TABLE audit.events (
    id         bigserial PRIMARY KEY,
    table_name text NOT NULL,
    op         text NOT NULL,
    row_id     bigint,
    at         timestamptz NOT NULL
);
CREATE FUNCTION audit.log_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO audit.events (table_name, op, row_id, at)
    VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.placed_at);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE ON app.orders
    FOR EACH ROW EXECUTE FUNCTION audit.log_change();

INSERT INTO app.orders (customer_id, total, status, placed_at)
SELECT 1 + (g * 7) % 3000,
       (g % 100) + 0.99,
       (ARRAY['new', 'paid', 'shipped']::app.order_status[])[1 + g % 3],
       timestamptz '2024-02-01 00:00:00+00' + g * interval '1 hour'
FROM generate_series(1, 500) AS g;

-- a table whose name needs quoting, with a composite key and a foreign key
CREATE TABLE public."Order Items" (
    order_id integer NOT NULL REFERENCES app.orders (id) ON DELETE CASCADE,
    line_no  smallint NOT NULL,
    sku      text NOT NULL,
    qty      integer NOT NULL,
    price    numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO public."Order Items"
SELECT o, l, 'SKU-' || o || '-' || l, l, 9.99 * l
FROM generate_series(1, 500) AS o, generate_series(1, 2) AS l;

CREATE VIEW app.customer_totals AS
SELECT c.id, c.email, count(o.id) AS orders, coalesce(sum(o.total), 0) AS total
FROM app.customers c LEFT JOIN app.orders o ON o.customer_id = c.id
GROUP BY c.id, c.email;

-- large objects with fixed OIDs (text and binary)
SELECT lo_from_bytea(424242, convert_to(repeat('large object payload ', 200), 'UTF8'));
SELECT lo_from_bytea(424243, decode(repeat('00ff105c0a', 2000), 'hex'));
"#;

/// Creates the fixture schema and data in the (empty) database at `url`. Panics on error.
pub async fn load_fixture(url: &str) {
    let client = crate::connect(url).await;
    client
        .batch_execute(FIXTURE_SQL)
        .await
        .unwrap_or_else(|e| panic!("loading the fixture failed: {e}"));
    let _ = client.batch_execute("ANALYZE").await;
}
