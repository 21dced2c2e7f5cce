#!/usr/bin/env bash
# The demo on embedded defaults: a throwaway source database with sample data, a backup to
# a local folder store, a drill into a throwaway cluster, and the report printed.
#
#   bash scripts/demo.sh [--dir DIR]      as root, or: sudo bash scripts/demo.sh
#
# Installs what it needs on a fresh Debian or Ubuntu machine with apt-get (PostgreSQL server
# and client tools, zstd); only that step needs root. Needs the Rust toolchain (rustup.rs).
# The first run compiles pgdrill (5 to 15 minutes); later runs reuse the build.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 2; }

command -v cargo >/dev/null ||
  die "cargo is required: install Rust from https://rustup.rs (curl https://sh.rustup.rs -sSf | sh), then open a new shell"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v zstd >/dev/null; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "PostgreSQL or zstd is missing and installing them needs root: run this script as root"
    as_root=(sudo)
  fi
  command -v apt-get >/dev/null ||
    die "PostgreSQL (server and client tools) and zstd are missing; install them with your package manager"
  step "installing PostgreSQL and zstd with apt-get (about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq postgresql postgresql-contrib zstd >/dev/null
fi

if [ ! -x target/release/pgdrill ]; then
  step "building pgdrill (release): the first build takes 5 to 15 minutes, cargo lists each crate as it compiles"
else
  step "building pgdrill (release; already built, so this takes seconds)"
fi
cargo build --locked --release -p pgdrill

step "running pgdrill demo: source database, backup, drill, report"
exec ./target/release/pgdrill demo "$@"
