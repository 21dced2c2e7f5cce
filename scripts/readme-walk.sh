#!/usr/bin/env bash
# Walks the README's first steps as a newcomer would: in a fresh copy of the repository (its
# tracked files only, as a clone has them: no target/, no build output), it runs the first bash
# block of "Try it: two commands" and of "Your first backup and drill" line by line, as
# written. When run as root, `sudo` is not on PATH (a root shell on a fresh Debian machine has
# none), so a step that needs it fails here too.
#
#   WALK_PGDRILL_BIN=target/debug/pgdrill DATABASE_URL=postgresql://... bash scripts/readme-walk.sh
#
# crates/cli/tests/readme_walk.rs runs it in CI with a throwaway source database. To keep CI
# time modest, three things differ from a newcomer's machine, all on purpose and listed here:
#   - `cargo build --release` / `cargo install --path crates/cli` of pgdrill: a cargo shim puts
#     the already-built WALK_PGDRILL_BIN where cargo would (compiling again takes 11 minutes); it
#     fails on any other cargo command, so the README cannot grow one unnoticed;
#   - the README's `export DATABASE_URL=...` line (a placeholder) keeps the walker's database;
#   - `bash scripts/test.sh` is not walked: CI is running it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
: "${WALK_PGDRILL_BIN:?set WALK_PGDRILL_BIN to a built pgdrill binary}"
: "${DATABASE_URL:?set DATABASE_URL to a database the walk may back up}"
WALK_PGDRILL_BIN=$(realpath "$WALK_PGDRILL_BIN")

work=$(mktemp -d "${TMPDIR:-/tmp}/pgdrill-readme-walk.XXXXXX")
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT
clone="$work/pgdrill"
home="$work/home"
mkdir -p "$clone" "$home/.cargo/bin"

echo "== a fresh copy of the repository in $clone"
files() { # NUL-separated: the tracked (and new, not ignored) files; all but build output outside git
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo" ls-files -z --cached --others --exclude-standard
  else
    (cd "$repo" && find . \( -path ./target -o -path ./.git \) -prune -o -type f -print0)
  fi
}
files | (cd "$repo" && while IFS= read -r -d '' f; do
  if [ -e "$f" ]; then cp --parents -P -- "$f" "$clone/"; fi
done)
[ ! -e "$clone/target" ] || { echo "the copy holds build output" >&2; exit 1; }

# PATH: every program of the caller's PATH but sudo (when root), and the cargo shim.
farm="$work/bin"
mkdir -p "$farm"
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  for f in "$d"/*; do
    n=${f##*/}
    [ -x "$f" ] && [ ! -d "$f" ] || continue
    if [ "$n" = sudo ] && [ "$(id -u)" -eq 0 ]; then continue; fi
    [ -e "$farm/$n" ] || ln -s "$f" "$farm/$n"
  done
done
rm -f "$farm/cargo"
cat >"$farm/cargo" <<'SHIM'
#!/usr/bin/env bash
# The README walk's cargo: the README's build commands get the already-built binary.
echo "cargo $*" >>"$WALK_LOG"
case " $* " in
  *" install "*"--path crates/cli"*)
    install -D -m 0755 "$WALK_PGDRILL_BIN" "${CARGO_HOME:-$HOME/.cargo}/bin/pgdrill"
    echo "  Installed pgdrill (the walk's prebuilt binary)" >&2 ;;
  *" build "*"--release"*)
    install -D -m 0755 "$WALK_PGDRILL_BIN" target/release/pgdrill
    echo "  Finished release build (the walk's prebuilt binary)" >&2 ;;
  *) echo "readme-walk: cargo $* is not one of the README's build commands" >&2; exit 97 ;;
esac
SHIM
chmod 0755 "$farm/cargo"

# The first bash block of a README section.
blocks() {
  awk -v want="$1" '
    /^## / { insec = ($0 == want) }
    insec && /^```bash$/ { inblk = 1; next }
    inblk && /^```$/ { exit }
    inblk { print }
  ' "$clone/README.md"
}

script="$work/walk.sh"
{
  echo 'set -euo pipefail'
  echo 'set -x'
  echo 'if [ "$(id -u)" -eq 0 ] && command -v sudo; then echo "sudo is on PATH" >&2; exit 1; fi'
  for section in "## Try it: two commands" "## Your first backup and drill"; do
    text=$(blocks "$section")
    [ -n "$text" ] || { echo "README has no bash block under \"$section\"" >&2; exit 1; }
    echo "# --- $section"
    while IFS= read -r line; do
      case "$line" in
        "bash scripts/test.sh"*) echo ": not walked: $line" ;;
        "export DATABASE_URL="*) echo ": the walk keeps its own DATABASE_URL instead of: ${line%%#*}" ;;
        *) echo "$line" ;;
      esac
    done <<<"$text"
  done
} >"$script"

echo "== walking:"
grep -v '^set ' "$script" | sed 's/^/   /'
export WALK_LOG="$work/cargo.log"
(
  cd "$clone"
  env -i \
    PATH="$home/.cargo/bin:$farm" \
    HOME="$home" \
    CARGO_HOME="$home/.cargo" \
    TMPDIR="${TMPDIR:-/tmp}" \
    LANG=C.UTF-8 \
    DATABASE_URL="$DATABASE_URL" \
    WALK_PGDRILL_BIN="$WALK_PGDRILL_BIN" \
    WALK_LOG="$WALK_LOG" \
    ${PGDRILL_PG_PATHS:+PGDRILL_PG_PATHS="$PGDRILL_PG_PATHS"} \
    bash "$script"
)
echo "== cargo commands the README ran:"
sed 's/^/   /' "$WALK_LOG"
test -s "$clone/pgdrill-demo/store/shop/backups" -o -d "$clone/pgdrill-demo/store/shop/backups"
ls "$clone"/pgdrill-reports/*/report.html >/dev/null
echo "== the README walk passed"
