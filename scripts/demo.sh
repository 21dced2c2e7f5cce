#!/usr/bin/env bash
# The demo on embedded defaults: a throwaway source database with sample data, a backup to
# a local folder store, a drill into a throwaway cluster, and the report printed.
# Installs what it needs on a fresh Debian machine (PostgreSQL server and client tools).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required (Rust toolchain via rustup)" >&2; exit 2; }
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v zstd >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql postgresql-contrib zstd >/dev/null
fi
cargo build --locked --release -p pgdrill
exec ./target/release/pgdrill demo "$@"
