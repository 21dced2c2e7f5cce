#!/usr/bin/env bash
# The fixed costs of a backup to S3 (issue 23; BENCHMARKS.md "Fixed costs of a backup to S3"):
# a small database (pgbench scale $SCALE, default 2) backed up $RUNS times (default 3) to the
# bench's s3s-fs through a logging proxy, under a light strace (execve and exit only). Prints,
# per run, each process start and exit and each S3 request (start, latency, status) from
# pgdrill's execve, then a summary: start to pg_dump's start, pg_dump, pg_dump's exit to
# pgdrill's exit, and the number of requests. Critical-path latencies and request counts, not
# wall times, are what a loaded machine leaves comparable.
# Usage: sudo bash bench/fixedcost.sh [SCALE]   (PGDRILL=/path/to/pgdrill to time another build;
#        VERBOSE=0 prints the summaries only)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-2}
RUNS=${RUNS:-3}
ROOT=$(pwd)
command -v strace >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; }
S3SFS=/opt/pgdrill-bench/bin/s3s-fs
[ -x "$S3SFS" ] || cargo install s3s-fs --version 0.14.1 --locked --features binary --root /opt/pgdrill-bench
if [ -z "${PGDRILL:-}" ]; then
  cargo build --release --locked -p pgdrill >/dev/null
  PGDRILL=$ROOT/target/release/pgdrill
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/pgdrill-fixedcost-XXXXXX)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); S3PORT=$(free_port); PXPORT=$(free_port)
cleanup() {
  runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1 || true
  [ -n "${S3PID:-}" ] && kill "$S3PID" 2>/dev/null || true
  [ -n "${PXPID:-}" ] && kill "$PXPID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/sock" "$WORK/data" "$WORK/s3data/bench"
chown postgres "$WORK/sock" "$WORK/data"
runuser -u postgres -- "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/sock/pg.log" -w start \
  -o "-p $PORT -k $WORK/sock -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
"$BIN/psql" -qc "create database bench"
"$BIN/pgbench" -q -i -s "$SCALE" bench >/dev/null 2>&1
"$S3SFS" --host 127.0.0.1 --port "$S3PORT" --access-key bench --secret-key benchsecret "$WORK/s3data" >"$WORK/s3.log" 2>&1 &
S3PID=$!
python3 "$ROOT/bench/request_log_proxy.py" "$PXPORT" "$S3PORT" "$WORK/req.log" >"$WORK/proxy.log" 2>&1 &
PXPID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PXPORT") 2>/dev/null && break; sleep 0.1; done
"$PGDRILL" init --generate-key --path "$WORK/gen.toml" >/dev/null
RECIPIENT=$(grep -o 'age1[0-9a-z]*' "$WORK/pgdrill-age.key" | head -1)
export AWS_ENDPOINT_URL=http://127.0.0.1:$PXPORT AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
for i in $(seq "$RUNS"); do
  : > "$WORK/req.log"
  strace -f --seccomp-bpf -e trace=execve,exit_group -e signal=none -ttt -o "$WORK/ev.log" \
    "$PGDRILL" -q backup --source "postgresql://postgres@127.0.0.1:$PORT/bench" --store s3://bench/pg --recipient "$RECIPIENT" >/dev/null
  sleep 0.2
  python3 - "$WORK/ev.log" "$WORK/req.log" "run $i/$RUNS" "${VERBOSE:-1}" <<'PY'
import re, sys
evlog, reqlog, label, verbose = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
ev = []
for line in open(evlog):
    p = line.split(None, 2)
    if len(p) < 3 or "resumed" in p[2] or "+++" in p[2]:
        continue
    m = re.match(r'execve\("([^"]+)", \[(.*?)\]', p[2])
    if m and ("= 0" in p[2] or "unfinished" in p[2]):
        args = re.findall(r'"([^"]*)"', m.group(2))
        ev.append((float(p[1]), "exec " + m.group(1).split("/")[-1] + " " + " ".join(args[1:3])))
    elif p[2].startswith("exit_group"):
        ev.append((float(p[1]), "exit pid " + p[0]))
rows = [l.split(None, 5) for l in open(reqlog) if not l.startswith("ERR")]
for t, d, c, st, m, rest in rows:
    ev.append((float(t), f"{m} {rest.split(' ')[0][:90]} -> {st} {float(d) * 1000:.1f} ms {c}"))
ev.sort()
start = ev[0][0]
dump = [t for t, s in ev if s.startswith("exec pg_dump --format")][0]
dump_exit = [t for t, s in ev if s.startswith("exit") and t > dump][0]
end = [t for t, s in ev if s.startswith("exit")][-1]
if verbose:
    for t, s in ev:
        print(f"{t - start:7.3f} {s}")
print(f"== {label}: {len(rows)} requests; start -> pg_dump {dump - start:.3f} s, pg_dump {dump_exit - dump:.3f} s, "
      f"pg_dump's exit -> exit {end - dump_exit:.3f} s, wall {end - start:.3f} s")
PY
done
