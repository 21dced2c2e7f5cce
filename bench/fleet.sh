#!/usr/bin/env bash
# Fleet-scale read benchmark (issue 19, "Scale"): a synthetic folder store of DBS databases ×
# BACKUPS backups (manifests written directly: no PostgreSQL, no pg_dump), then the wall time
# of `pgdrill status` and of the dashboard's first page (`pgdrill serve` started, first 200
# from `/`), each with a cold catalog (every `<db>/catalog.json` removed: rebuilt from the
# manifests) and a warm one. Target: under 2 s each at 500 × 200.
#
#   bash bench/fleet.sh                      # 500 × 200, release build
#   DBS=5 BACKUPS=10 bash bench/fleet.sh     # a smoke run
#
# Each line gives the median wall time and the median CPU time (user + system, from
# /usr/bin/time) of the runs: on a loaded machine the CPU time is the steadier figure.
#
# Environment: DBS (500), BACKUPS (200), DRILLS per database (5), RUNS per measurement (3,
# the median is printed), BIN (the pgdrill binary; default: target/release/pgdrill, built when missing),
# WORK (default: a temporary folder, removed at the end unless KEEP=1).
set -euo pipefail

DBS=${DBS:-500}
BACKUPS=${BACKUPS:-200}
DRILLS=${DRILLS:-5}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/pgdrill}
if [[ ! -x $BIN ]]; then
  (cd "$ROOT" && cargo build --release -p pgdrill)
fi
WORK=${WORK:-$(mktemp -d)}
STORE=$WORK/store
cleanup() {
  if [[ -n ${SERVE_PID:-} ]]; then pkill -TERM -P "$SERVE_PID" 2>/dev/null || true; kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
  if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "generating $DBS databases × $BACKUPS backups ($DRILLS drills each) in $STORE"
t0=$(date +%s.%N)
python3 - "$STORE" "$DBS" "$BACKUPS" "$DRILLS" <<'PY'
import json, os, sys, datetime
store, dbs, backups, drills = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
end = datetime.datetime(2026, 12, 1, 2, 0, tzinfo=datetime.timezone.utc)
def ts(t): return t.strftime("%Y-%m-%dT%H:%M:%SZ")
def bid(t, i): return t.strftime("%Y%m%dT%H%M%SZ") + "-%04x" % i
tables = [{"schema": "public", "name": "t%02d" % i, "rows": 1000 * i} for i in range(12)]
for d in range(dbs):
    db = "db%04d" % d
    for b in range(backups):
        t = end - datetime.timedelta(days=backups - 1 - b)
        i = bid(t, d % 65536)
        folder = os.path.join(store, db, "backups", i)
        os.makedirs(folder, exist_ok=True)
        m = {
            "format_version": 1, "tool": {"name": "pgdrill", "version": "0.1.0"},
            "backup_id": i, "database": db,
            "source": {"url": "postgresql://app@db.internal:5432/" + db, "host": "db.internal", "port": 5432, "dbname": db, "user": "app"},
            "server": {"version": "17.2", "version_num": 170002, "version_string": "PostgreSQL 17.2", "system_identifier": "7412345678901234567", "database_size_bytes": 52428800, "in_recovery": False},
            "pg_dump": {"path": "/usr/bin/pg_dump", "version": "17.2", "args": ["-Fc", "-Z0"]},
            "snapshot": {"exported": True, "id": "00000003-0000001B-1", "time": ts(t + datetime.timedelta(seconds=1)), "note": None},
            "started_at": ts(t), "finished_at": ts(t + datetime.timedelta(seconds=42)),
            "stage_seconds": {"total": 42.0, "dump": 40.0, "upload": 41.0},
            "raw_bytes": 41943040, "stored_bytes": 8388608,
            "compression": {"algorithm": "zstd", "level": 2},
            "encryption": {"scheme": "none", "recipient_fingerprints": [], "passphrase": False},
            "objects": [{"name": "dump.pgc.zst", "kind": "dump", "size": 8388608, "sha256": "0" * 64, "raw_size": 41943040, "raw_sha256": "1" * 64}],
            "content": {"archive_version": "1.16", "tables": tables, "schemas": ["public"], "extensions": ["plpgsql"], "schema_fingerprint": "2" * 64, "large_objects": 0, "toc_entries": 120},
            "policy": {}, "host": "backup-host",
        }
        with open(os.path.join(folder, "manifest.json"), "w") as f:
            json.dump(m, f)
        open(os.path.join(folder, "dump.pgc.zst"), "w").close()
        open(os.path.join(folder, "SHA256SUMS"), "w").close()
    for r in range(drills):
        t = end - datetime.timedelta(days=7 * r, hours=-2)
        i = bid(t, d % 65536)
        folder = os.path.join(store, db, "drills", i)
        os.makedirs(folder, exist_ok=True)
        res = {
            "schema_version": 1, "drill_id": i, "database": db, "verdict": "pass",
            "started_at": ts(t), "finished_at": ts(t + datetime.timedelta(minutes=3)),
            "tool": {"name": "pgdrill", "version": "0.1.0"}, "host": "drill-host",
            "backup": {"id": "x", "snapshot_time": ts(t), "finished_at": ts(t), "server_version": "17.2", "pg_dump_version": "17.2", "objects": []},
            "target": {"kind": "ephemeral", "url": "local", "server_version": "17.2", "kept": False},
            "stages": [], "rpo": {"minutes": 60.0, "target_minutes": 1440, "passed": True},
            "rto": {"minutes": 3.0, "target_minutes": 60, "passed": True}, "checks": [], "error": None, "policy": {},
        }
        with open(os.path.join(folder, "result.json"), "w") as f:
            json.dump(res, f)
PY
echo "generated in $(awk "BEGIN {print $(date +%s.%N) - $t0}") s"

cat > "$WORK/pgdrill.toml" <<TOML
[store]
url = "$STORE"
[schedule]
backup = "off"
drill = "off"
prune = "off"
status = "off"
TOML

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cold() { find "$STORE" -maxdepth 2 -name catalog.json -delete; }

# CPU seconds (user + system) of the last /usr/bin/time record in $1.
cpu() { tail -n 1 "$1" | awk '{print $1 + $2}'; }

time_status() {
  local s e
  s=$(date +%s.%N)
  # Exit 1 is expected: the synthetic backups are old, so freshness SLOs are violated.
  (cd "$WORK" && /usr/bin/time -f '%U %S' -o "$WORK/status.time" "$BIN" --json status >"$WORK/status.json" 2>"$WORK/status.err") || true
  e=$(date +%s.%N)
  grep -q '"db0000"' "$WORK/status.json" || { cat "$WORK/status.err"; exit 1; }
  echo "$(awk "BEGIN {print $e - $s}") $(cpu "$WORK/status.time")"
}

PORT=${PORT:-$((20000 + RANDOM % 20000))}
time_dashboard() {
  local s e
  s=$(date +%s.%N)
  (cd "$WORK" && exec /usr/bin/time -f '%U %S' -o "$WORK/serve.time" "$BIN" serve --listen "127.0.0.1:$PORT" 2>"$WORK/serve.err") &
  SERVE_PID=$!
  until curl -fs -o "$WORK/page.html" "http://127.0.0.1:$PORT/"; do
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve.err"; exit 1; }
    sleep 0.05
  done
  e=$(date +%s.%N)
  # SIGTERM to pgdrill (time's child): it stops, and time writes what it used up to then.
  pkill -TERM -P "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=
  grep -q "db0000" "$WORK/page.html" || { echo "the dashboard does not show db0000"; exit 1; }
  echo "$(awk "BEGIN {print $e - $s}") $(cpu "$WORK/serve.time")"
}

report() { # name, then "wall cpu" per line on stdin
  local all; all=$(cat)
  printf '%-34s wall median %6.2f s   CPU median %6.2f s   runs (wall/CPU): %s\n' "$1" \
    "$(cut -d' ' -f1 <<<"$all" | median)" "$(cut -d' ' -f2 <<<"$all" | median)" "$(tr ' \n' '/ ' <<<"$all")"
}

echo "pgdrill: $BIN; $DBS × $BACKUPS; $RUNS runs each"
for _ in $(seq "$RUNS"); do cold; time_status; done | report "status, cold catalog"
for _ in $(seq "$RUNS"); do time_status; done | report "status, warm catalog"
for _ in $(seq "$RUNS"); do cold; time_dashboard; done | report "dashboard first page, cold catalog"
for _ in $(seq "$RUNS"); do time_dashboard; done | report "dashboard first page, warm catalog"
