#!/usr/bin/env bash
# pgdrill benchmark: one generated database (pgbench scale $SCALE plus a table of text, jsonb
# and bytea), timed in one run:
#   backup:  pg_dump -Fc -Z0 > /dev/null (the floor), pg_dump -Fc > file (the usual baseline),
#            pgdrill backup (encrypted) to a local folder and to an S3 server (s3s-fs on loopback);
#            parallel: pg_dump -Fd -j 2 -Z0 to a local directory vs pgdrill backup --jobs 2 to S3,
#            with the peak local disk the parallel backup's spool took (manifest's spool_peak_bytes)
#   restore: pg_restore -j 2 from a local unencrypted file (the floor; also timed with the
#            database's creation, createdb + pg_restore, which pgdrill's time includes) vs
#            pgdrill restore --jobs 2 from S3, encrypted; and the streamed restore --jobs 2 of the
#            parallel backup (one object per table, no spool)
# Each measurement is the median of $RUNS runs; peak RSS comes from /usr/bin/time -v.
# Usage: sudo bash bench/run.sh [SCALE]   (SCALE default 20; RUNS=3 by default;
#        ONLY=restore skips the backup timings: one backup is taken to restore from;
#        BASELINE_PGDRILL=/path/to/an/older/pgdrill also times that binary's backup to S3 and
#        restore from S3 in the same run, interleaved, so a change is compared on the same machine)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-${SCALE:-20}}
RUNS=${RUNS:-3}
ROOT=$(pwd)

need_apt=()
command -v /usr/bin/time >/dev/null 2>&1 || need_apt+=(time)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
command -v zstd >/dev/null || need_apt+=(zstd)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
S3SFS=/opt/pgdrill-bench/bin/s3s-fs
[ -x "$S3SFS" ] || cargo install s3s-fs --version 0.14.1 --locked --features binary --root /opt/pgdrill-bench
cargo build --release --locked -p pgdrill >/dev/null
PGDRILL=$ROOT/target/release/pgdrill

BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/pgdrill-bench-XXXXXX)
chmod 755 "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1 || true
  [ -n "${S3PID:-}" ] && kill "$S3PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/sock" "$WORK/data" "$WORK/s3data/bench"
chown postgres "$WORK/sock" "$WORK/data"
runuser -u postgres -- "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/sock/pg.log" -w start \
  -o "-p $PORT -k $WORK/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB -c shared_buffers=256MB" >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
"$BIN/psql" -qc "create database bench"
echo "generating: pgbench scale $SCALE + a text/jsonb/bytea table"
"$BIN/pgbench" -q -i -s "$SCALE" bench >/dev/null 2>&1
ROWS=$((SCALE * 10000))
"$BIN/psql" -q -d bench -c "create table docs (id bigint primary key, title text, body text, attrs jsonb, blob bytea)" \
  -c "insert into docs select g, 'doc ' || g, repeat(md5(g::text), 8) || ' ' || md5((g*7)::text), jsonb_build_object('n', g, 'tags', jsonb_build_array(md5(g::text), g % 97), 'ok', g % 2 = 0), decode(md5((g*13)::text) || md5((g*17)::text) || md5((g*19)::text) || md5((g*23)::text), 'hex') from generate_series(1, $ROWS) g" \
  -c "vacuum analyze"
DBSIZE=$("$BIN/psql" -Atc "select pg_size_pretty(pg_database_size('bench'))" -d bench)

"$S3SFS" --host 127.0.0.1 --port "$S3PORT" --access-key bench --secret-key benchsecret "$WORK/s3data" >"$WORK/s3.log" 2>&1 &
S3PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$S3PORT") 2>/dev/null && break; sleep 0.1; done

"$PGDRILL" init --generate-key --path "$WORK/gen.toml" >/dev/null
RECIPIENT=$(grep -o 'age1[0-9a-z]*' "$WORK/pgdrill-age.key" | head -1)
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3PORT AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
SRC="postgresql://postgres@127.0.0.1:$PORT/bench"

# cpu_of PID [WITH_CHILDREN]: CPU seconds a process used so far (utime + stime, plus its
# reaped children's: the PostgreSQL postmaster collects its backends' time when they exit).
cpu_of() {
  awk -v kids="${2:-0}" -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); t = $12 + $13; if (kids) t += $14 + $15; printf "%.2f", t / hz}' "/proc/$1/stat"
}
children() { wc -w < "/proc/$1/task/$1/children"; }
PGPID=$(head -1 "$WORK/data/postmaster.pid")
# time_cmd NAME CMD...: one run's wall seconds, peak RSS (KiB), CPU seconds of the command
# with its children (pg_dump under pgdrill), of the PostgreSQL server and of the S3 server,
# appended to $WORK/NAME. CPU time is what a loaded machine distorts least.
time_cmd() {
  local name=$1; shift
  local pg0 s30 kids0
  kids0=$(children "$PGPID"); pg0=$(cpu_of "$PGPID" 1); s30=$(cpu_of "$S3PID")
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/t" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }
  # The server adds a backend's CPU time to its own when it reaps it: wait for that.
  for _ in $(seq 100); do [ "$(children "$PGPID")" -le "$kids0" ] && break; sleep 0.02; done
  read -r w m u s < "$WORK/t"
  echo "$w $m $(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}') $(awk -v a="$pg0" -v b="$(cpu_of "$PGPID" 1)" 'BEGIN {printf "%.2f", b - a}') $(awk -v a="$s30" -v b="$(cpu_of "$S3PID")" 'BEGIN {printf "%.2f", b - a}')" >> "$WORK/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
wall() { awk '{print $1}' "$WORK/$1" | median; }
rss() { awk '{print $2}' "$WORK/$1" | sort -n | tail -1; }
# col NAME N: the median of column N of NAME's runs
col() { awk -v n="$2" '{print $n}' "$WORK/$1" | median; }

ONLY=${ONLY:-all}
BACKUP_RUNS=$RUNS
[ "$ONLY" = restore ] && BACKUP_RUNS=1
for i in $(seq "$BACKUP_RUNS"); do
  echo "backup run $i/$BACKUP_RUNS"
  time_cmd floor bash -c "'$BIN/pg_dump' -Fc -Z0 -d bench > /dev/null"
  time_cmd baseline bash -c "'$BIN/pg_dump' -Fc -d bench > '$WORK/baseline.pgc'"
  time_cmd local "$PGDRILL" -q backup --source "$SRC" --store "$WORK/store" --recipient "$RECIPIENT"
  time_cmd s3 "$PGDRILL" -q backup --source "$SRC" --store s3://bench/pg --recipient "$RECIPIENT"
  rm -rf "$WORK/pardump"
  time_cmd par_floor "$BIN/pg_dump" -Fd -j 2 -Z0 -d bench -f "$WORK/pardump"
  rm -rf "$WORK/pardump"
  time_cmd s3_par "$PGDRILL" -q backup --jobs 2 --source "$SRC" --store s3://bench/par --recipient "$RECIPIENT"
  [ -n "${BASELINE_PGDRILL:-}" ] && time_cmd s3_old "$BASELINE_PGDRILL" -q backup --source "$SRC" --store s3://bench/old --recipient "$RECIPIENT"
done
"$BIN/pg_dump" -Fc -Z0 -d bench -f "$WORK/plain.pgc"
STORED=$(du -b "$(ls -d "$WORK"/store/bench/backups/*/ | tail -1)"dump.pgc.zst.age | cut -f1)
BASELINE=$(stat -c %s "$WORK/baseline.pgc")
# The most local disk any parallel backup's spool took (sampled by pgdrill, in its manifests).
PEAK_DISK=$(python3 -c 'import glob, json, sys; print(max([json.load(open(f)).get("spool_peak_bytes", 0) for f in glob.glob(sys.argv[1] + "/bench/par/bench/backups/*/manifest.json")] or [0]))' "$WORK/s3data")
RAW=$(stat -c %s "$WORK/plain.pgc")
# Each restore starts on a quiet server: the other restored copy dropped (no autovacuum on it)
# and a checkpoint taken (no flush of the previous run's pages during this one).
quiet() { "$BIN/psql" -qc "set client_min_messages = warning" -c "drop database if exists r1" -c "drop database if exists r2" -c "checkpoint"; sync; }
for i in $(seq "$RUNS"); do
  echo "restore run $i/$RUNS"
  quiet; "$BIN/psql" -qc "create database r1"
  time_cmd restore_floor "$BIN/pg_restore" -j 2 --no-owner -d r1 "$WORK/plain.pgc"
  quiet
  time_cmd restore_floor_db bash -c "'$BIN/createdb' r1 && '$BIN/pg_restore' -j 2 --no-owner -d r1 '$WORK/plain.pgc'"
  quiet
  time_cmd restore_s3 "$PGDRILL" -q restore latest --name bench --store s3://bench/pg --identity "$WORK/pgdrill-age.key" --jobs 2 --target "postgresql://postgres@127.0.0.1:$PORT/r2"
  quiet
  time_cmd restore_s3_par "$PGDRILL" -q restore latest --name bench --store s3://bench/par --identity "$WORK/pgdrill-age.key" --jobs 2 --target "postgresql://postgres@127.0.0.1:$PORT/r2"
  if [ -n "${BASELINE_PGDRILL:-}" ]; then
    quiet
    time_cmd restore_s3_old "$BASELINE_PGDRILL" -q restore latest --name bench --store s3://bench/pg --identity "$WORK/pgdrill-age.key" --jobs 2 --target "postgresql://postgres@127.0.0.1:$PORT/r2"
  fi
done

F=$(wall floor); B=$(wall baseline); L=$(wall local); S=$(wall s3); RF=$(wall restore_floor); RS=$(wall restore_s3); RM=$(wall restore_floor_db); PF=$(wall par_floor); SP=$(wall s3_par); RP=$(wall restore_s3_par)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
cat <<REPORT
## scale $SCALE ($DBSIZE database, raw dump $((RAW / 1048576)) MiB), median of $RUNS runs, $(nproc) cores
| measurement | wall s | × floor | peak RSS MiB | bytes |
|---|---|---|---|---|
| pg_dump -Fc -Z0 > /dev/null (floor) | $F | 1.00 | $(( $(rss floor) / 1024 )) | $RAW |
| pg_dump -Fc > file (baseline) | $B | $(ratio "$B" "$F") | $(( $(rss baseline) / 1024 )) | $BASELINE |
| pgdrill backup → folder, zstd + age | $L | $(ratio "$L" "$F") | $(( $(rss local) / 1024 )) | $STORED |
| pgdrill backup → S3 (s3s-fs), zstd + age | $S | $(ratio "$S" "$F") | $(( $(rss s3) / 1024 )) | $STORED |
| pg_dump -Fd -j 2 -Z0 → local directory | $PF | $(ratio "$PF" "$F") | $(( $(rss par_floor) / 1024 )) | |
| pgdrill backup --jobs 2 → S3, zstd + age | $SP | $(ratio "$SP" "$F") | $(( $(rss s3_par) / 1024 )) | peak local disk $PEAK_DISK |
| pg_restore -j 2 from a local file (restore floor) | $RF | 1.00 | $(( $(rss restore_floor) / 1024 )) | |
| createdb + pg_restore -j 2 from a local file | $RM | $(ratio "$RM" "$RF") | $(( $(rss restore_floor_db) / 1024 )) | |
| pgdrill restore --jobs 2 from S3, encrypted | $RS | $(ratio "$RS" "$RF") ($(ratio "$RS" "$RM") of createdb + pg_restore) | $(( $(rss restore_s3) / 1024 )) | |
| pgdrill restore --jobs 2 of the parallel backup from S3 (streamed objects) | $RP | $(ratio "$RP" "$RF") ($(ratio "$RP" "$RM") of createdb + pg_restore) | $(( $(rss restore_s3_par) / 1024 )) | |
REPORT
# CPU per stage (medians): the command itself (with pg_dump under pgdrill), the PostgreSQL
# server, the S3 server; per MiB of raw dump, comparable across scales.
echo
echo "CPU seconds per backup (median of $BACKUP_RUNS; command incl. pg_dump | PostgreSQL server | S3 server | total | total ms per MiB of raw dump):"
for n in floor local s3 s3_old; do
  [ -s "$WORK/$n" ] || continue
  awk -v n="$n" -v c="$(col "$n" 3)" -v p="$(col "$n" 4)" -v s="$(col "$n" 5)" -v raw="$RAW" \
    'BEGIN {t = c + p + s; printf "  %-6s %6.2f | %6.2f | %6.2f | %6.2f | %5.2f\n", n, c, p, s, t, t * 1000 / (raw / 1048576)}'
done
# Paired ratios: each pgdrill restore against the floor run just before it (the VM's speed
# drifts over minutes; a pair shares the same phase).
paired() { paste -d' ' <(awk '{print $1}' "$WORK/$1") <(awk '{print $1}' "$WORK/$2") | awk '{printf "%.3f\n", $1 / $2}'; }
echo
echo "restore runs (s): floor $(awk '{printf "%s ", $1}' "$WORK/restore_floor")| createdb + floor $(awk '{printf "%s ", $1}' "$WORK/restore_floor_db")| pgdrill $(awk '{printf "%s ", $1}' "$WORK/restore_s3")"
echo "paired pgdrill/floor: $(paired restore_s3 restore_floor | tr '\n' ' ')median $(paired restore_s3 restore_floor | median)"
echo "paired pgdrill/(createdb + floor): $(paired restore_s3 restore_floor_db | tr '\n' ' ')median $(paired restore_s3 restore_floor_db | median)"
if [ -n "${BASELINE_PGDRILL:-}" ]; then
  echo
  echo "this build vs BASELINE_PGDRILL ($BASELINE_PGDRILL), same run:"
  if [ "$ONLY" != restore ]; then
    echo "  backup → S3:   this $(wall s3) s, baseline $(wall s3_old) s, ratio $(ratio "$(wall s3)" "$(wall s3_old)")"
  fi
  echo "  restore S3 -j2: this $(wall restore_s3) s, baseline $(wall restore_s3_old) s, ratio $(ratio "$(wall restore_s3)" "$(wall restore_s3_old)")"
  echo "  paired this/baseline restore: $(paired restore_s3 restore_s3_old | tr '\n' ' ')median $(paired restore_s3 restore_s3_old | median)"
fi

# --- Several stores (issue 19): one backup written to three stores (this S3 server, a second
# S3 server, a local folder), streamed once from pg_dump, vs the same backup to one store.
# Target: at most 1.15× (the blocks are shared, each store has its own parts in flight).
if [ "$ONLY" != restore ]; then
  S3BPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/s3b/offsite"
  "$S3SFS" --host 127.0.0.1 --port "$S3BPORT" --access-key bench --secret-key benchsecret "$WORK/s3b" >"$WORK/s3b.log" 2>&1 &
  S3BPID=$!
  trap 'kill "$S3BPID" 2>/dev/null || true; cleanup' EXIT
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$S3BPORT") 2>/dev/null && break; sleep 0.1; done
  cat > "$WORK/three.toml" <<TOML
[encryption]
recipients = ["$RECIPIENT"]
[[store]]
name = "primary"
url = "s3://bench/three"
[[store]]
name = "offsite"
url = "s3://offsite/three"
endpoint = "http://127.0.0.1:$S3BPORT"
[[store]]
name = "local"
url = "$WORK/three-local"
[[database]]
name = "bench"
url = "$SRC"
TOML
  for i in $(seq "$RUNS"); do
    echo "several stores run $i/$RUNS"
    time_cmd one_store "$PGDRILL" -q backup --source "$SRC" --store s3://bench/one --recipient "$RECIPIENT"
    time_cmd three_stores "$PGDRILL" -q --config "$WORK/three.toml" backup
  done
  O=$(wall one_store); T=$(wall three_stores)
  echo
  echo "| measurement | wall s | × one store | peak RSS MiB |"
  echo "|---|---|---|---|"
  echo "| pgdrill backup → 1 store (S3) | $O | 1.00 | $(( $(rss one_store) / 1024 )) |"
  echo "| pgdrill backup → 3 stores (S3, second S3, folder) | $T | $(ratio "$T" "$O") (target ≤ 1.15) | $(( $(rss three_stores) / 1024 )) |"
  echo "paired three/one: $(paired three_stores one_store | tr '\n' ' ')median $(paired three_stores one_store | median)"
fi
