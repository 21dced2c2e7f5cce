#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need
# (PostgreSQL 15/17/18, zstd, age, the moto S3 server), then format, lint and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required (Rust toolchain via rustup)" >&2; exit 2; }
bash scripts/setup-test-deps.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
