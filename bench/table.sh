#!/usr/bin/env bash
# pgdrill table benchmark (issue 20), in one run on one generated database:
#   restore: one table of about 2% of the database (`restore --table`) vs the whole backup
#            (`restore --jobs 2`), from a local folder store: seconds, bytes read from the store
#   diff:    `pgdrill diff` of a table of $DIFF_ROWS rows with 1% of them changed, and of one
#            ten times larger with 1% changed too: seconds and peak RSS (flat if memory is
#            bounded by the batch size, not the table)
# Peak RSS from /usr/bin/time -v. Run it on a quiet machine.
# Usage: sudo bash bench/table.sh [SCALE]   (SCALE: pgbench scale, default 75, about 1 GB;
#        DIFF_ROWS default 1000000; PGDRILL=/path/to/pgdrill skips the release build;
#        a smoke run: SCALE=1 DIFF_ROWS=2000 PGDRILL=target/debug/pgdrill bash bench/table.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-${SCALE:-75}}
DIFF_ROWS=${DIFF_ROWS:-1000000}
ROOT=$(pwd)

need_apt=()
command -v /usr/bin/time >/dev/null 2>&1 || need_apt+=(time)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ -z "${PGDRILL:-}" ]; then
  cargo build --release --locked -p pgdrill >/dev/null
  PGDRILL=$ROOT/target/release/pgdrill
fi
PGDRILL=$(realpath "$PGDRILL")

BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/pgdrill-table-bench-XXXXXX)
chmod 755 "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/sock" "$WORK/data"
chown postgres "$WORK/sock" "$WORK/data"
runuser -u postgres -- "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/sock/pg.log" -w start \
  -o "-p $PORT -k $WORK/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB -c shared_buffers=256MB" >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
URL="postgresql://postgres@127.0.0.1:$PORT"
"$BIN/psql" -qc "create database bench"

# pgbench_accounts is about 13 MB per scale unit: `orders` gets about 2% of the total.
ORDERS=$((SCALE * 2600))
BIG=$((DIFF_ROWS * 10))
echo "generating: pgbench scale $SCALE, orders ($ORDERS rows), diff tables ($DIFF_ROWS and $BIG rows)"
"$BIN/pgbench" -q -i -s "$SCALE" bench >/dev/null 2>&1
"$BIN/psql" -q -d bench \
  -c "create table orders (id bigint primary key, customer int not null, note text, amount numeric(12,2))" \
  -c "insert into orders select g, g % 5000, 'order ' || md5(g::text), (g % 997) * 1.5 from generate_series(1, $ORDERS) g" \
  -c "create index on orders (customer)" \
  -c "create table diff_1x (id bigint primary key, qty int, label text)" \
  -c "insert into diff_1x select g, g % 100, md5(g::text) from generate_series(1, $DIFF_ROWS) g" \
  -c "create table diff_10x (id bigint primary key, qty int, label text)" \
  -c "insert into diff_10x select g, g % 100, md5(g::text) from generate_series(1, $BIG) g" \
  -c "vacuum analyze"
DBSIZE=$("$BIN/psql" -Atc "select pg_size_pretty(pg_database_size('bench'))" -d bench)
SHARE=$("$BIN/psql" -Atc "select round(100.0 * pg_total_relation_size('orders') / pg_database_size('bench'), 1)" -d bench)

STORE=$WORK/store
export PGDRILL_SOURCE_URL="$URL/bench"
"$PGDRILL" --json backup --store "$STORE" >"$WORK/backup.json"

# measure NAME CMD...: seconds and peak RSS (KiB) of one run; its stdout in $WORK/NAME.json
measure() {
  local name=$1; shift
  /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.json"
  SECS=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$WORK/$name.time")
  RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$name.time")
}
jget() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

measure full "$PGDRILL" --json restore latest --store "$STORE" --target "$URL/full" --jobs 2
FULL_S=$SECS; FULL_RSS=$RSS
DUMP_BYTES=$(du -b "$STORE"/bench/backups/*/dump.pgc.zst* | awk '{print $1}')
measure table "$PGDRILL" --json restore latest --store "$STORE" --target "$URL/one" --table public.orders
TABLE_S=$SECS; TABLE_RSS=$RSS
TABLE_BYTES=$(jget "$WORK/table.json" "['bytes_read']")
ROWS_OK=$("$BIN/psql" -Atc "select (select count(*) from orders) = $ORDERS" -d one)

# 1% of the rows changed in each diff table (updates, deletes and inserts).
for t in diff_1x:$DIFF_ROWS diff_10x:$BIG; do
  name=${t%%:*}; n=${t##*:}
  "$BIN/psql" -q -d bench \
    -c "update $name set qty = qty + 1 where id % 200 = 0" \
    -c "delete from $name where id % 400 = 1" \
    -c "insert into $name select $n + g, 0, 'new' from generate_series(1, $((n / 400))) g"
done
measure diff1 "$PGDRILL" --json diff latest --store "$STORE" --table public.diff_1x --target "$URL/bench"
D1_S=$SECS; D1_RSS=$RSS
measure diff10 "$PGDRILL" --json diff latest --store "$STORE" --table public.diff_10x --target "$URL/bench"
D10_S=$SECS; D10_RSS=$RSS
D1=$(jget "$WORK/diff1.json" "['added'], 'added', json.load(open(sys.argv[1]))['removed'], 'removed', json.load(open(sys.argv[1]))['changed'], 'changed'")

cat <<EOF

database: $DBSIZE (pgbench scale $SCALE); orders: ${SHARE}% of it; stored dump: $DUMP_BYTES bytes

| run | seconds | read from the store (bytes) | peak RSS (KiB) |
|---|---|---|---|
| restore (whole backup, --jobs 2) | $FULL_S | $DUMP_BYTES | $FULL_RSS |
| restore --table public.orders | $TABLE_S | $TABLE_BYTES | $TABLE_RSS |
| diff, $DIFF_ROWS rows, 1% changed | $D1_S | | $D1_RSS |
| diff, $BIG rows, 1% changed | $D10_S | | $D10_RSS |

table restore: $(python3 -c "print(f'{100*$TABLE_S/max($FULL_S,0.001):.1f}% of the time, {100*$TABLE_BYTES/$DUMP_BYTES:.1f}% of the bytes')") of the whole restore; rows complete: $ROWS_OK
diff at 1x: $D1
EOF
