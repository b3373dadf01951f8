#!/usr/bin/env bash
# Checks that rust-toolchain.toml, the Dockerfile and Cargo.toml name one toolchain, then
# scripts/release.sh on a throwaway clone of the committed tree (with the working copy's
# release.sh): --dry-run prints every step and changes nothing; a dirty tree, an empty
# [Unreleased] section, a lower version and an existing tag are refused before any change; a real
# run with --no-image bumps the version (Cargo.toml and Cargo.lock), writes the changelog section,
# commits and tags. No Docker needed. scripts/check-deploy.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# One toolchain: rust-toolchain.toml's channel, the Dockerfile's RUST_VERSION, and Cargo.toml's
# rust-version (its major.minor).
channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
docker_rust=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
[[ -n $channel && $channel == "$docker_rust" && ${channel%.*} == "$msrv" ]] || {
  echo "[release-check] FAIL: rust-toolchain.toml ($channel), the Dockerfile's RUST_VERSION" \
    "($docker_rust) and Cargo.toml's rust-version ($msrv) name different toolchains" >&2
  exit 1
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
REPO=$WORK/repo
git clone -q --no-hardlinks "$ROOT" "$REPO"
cp scripts/release.sh "$REPO/scripts/release.sh"
git -C "$REPO" -c user.name=check -c user.email=check@localhost commit -q --allow-empty -am "release.sh under test"
export GIT_AUTHOR_NAME=check GIT_AUTHOR_EMAIL=check@localhost
export GIT_COMMITTER_NAME=check GIT_COMMITTER_EMAIL=check@localhost

fails=0
bad() { echo "[release-check] FAIL: $*" >&2; fails=$((fails + 1)); }
release() { (cd "$REPO" && scripts/release.sh "$@") >"$WORK/out" 2>&1; }
out_has() { grep -qF -- "$1" "$WORK/out" || bad "$2: output lacks '$1':"$'\n'"$(cat "$WORK/out")"; }

CURRENT=$(cd "$REPO" && awk '/^\[/{s=$0} s=="[workspace.package]" && /^version *=/{gsub(/[" ]/,""); sub(/^version=/,""); print; exit}' Cargo.toml)
IFS=. read -r major minor _ <<<"$CURRENT"
NEXT=$major.$((minor + 1)).0
TODAY=$(date -u +%F)
HEAD=$(git -C "$REPO" rev-parse HEAD)

# A dry run: every step named with what it would do, nothing changed.
release --dry-run "$NEXT" || bad "--dry-run $NEXT exited non-zero:"$'\n'"$(cat "$WORK/out")"
out_has "would set version = \"$NEXT\" (was $CURRENT)" "dry run"
out_has "## [$NEXT] - $TODAY" "dry run"
out_has "would commit: git commit -q -m Release\\ $NEXT" "dry run"
out_has "would tag: git tag -a v$NEXT" "dry run"
out_has "would build the image: docker build" "dry run"
for arg in "INGEST_VERSION=$NEXT" "INGEST_GIT_SHA=" "IMAGE_SOURCE=" "-t ingest-webhooks:$NEXT ."; do
  out_has "$arg" "dry run's docker build"
done
out_has "nothing was changed" "dry run"
[[ -z $(git -C "$REPO" status --porcelain) ]] || bad "the dry run changed the tree"
[[ $(git -C "$REPO" rev-parse HEAD) == "$HEAD" ]] || bad "the dry run committed"
git -C "$REPO" rev-parse -q --verify "refs/tags/v$NEXT" >/dev/null && bad "the dry run tagged"

# Refusals, each before any change.
refused() { # what, expected message, args...
  local what=$1 message=$2 before
  shift 2
  before=$(git -C "$REPO" rev-parse HEAD)
  if release "$@"; then bad "$what was not refused"; else out_has "$message" "$what"; fi
  [[ $(git -C "$REPO" rev-parse HEAD) == "$before" ]] || bad "$what: a commit was made"
}
refused "a malformed version" "is not a version" --dry-run "1.2"
refused "a lower version" "is below the current version" --dry-run "0.0.1"
touch "$REPO/stray"
refused "a dirty tree" "the tree is not clean" --dry-run "$NEXT"
rm "$REPO/stray"
cp "$REPO/CHANGELOG.md" "$WORK/changelog"
awk '/^## \[/{inside=($0 ~ /^## \[Unreleased\]/); print; next} !inside' "$WORK/changelog" >"$REPO/CHANGELOG.md"
git -C "$REPO" commit -q -am "empty Unreleased"
refused "an empty [Unreleased]" "section is empty" --dry-run "$NEXT"
git -C "$REPO" reset -q --hard "$HEAD"

# A real run without the image.
UNRELEASED=$(awk '/^## \[/{inside=($0 ~ /^## \[Unreleased\]/); next} inside' "$REPO/CHANGELOG.md" | grep -m1 '^- ')
release --no-image "$NEXT" || bad "--no-image $NEXT exited non-zero:"$'\n'"$(cat "$WORK/out")"
grep -q "^version = \"$NEXT\"" "$REPO/Cargo.toml" || bad "Cargo.toml's version is not $NEXT"
grep -A1 '^name = "ingest-gateway"' "$REPO/Cargo.lock" | grep -q "^version = \"$NEXT\"" ||
  bad "Cargo.lock's ingest-gateway is not at $NEXT"
[[ $(git -C "$REPO" diff "$HEAD" -- Cargo.lock | grep -c '^+version') -eq \
  $(git -C "$REPO" diff "$HEAD" -- Cargo.lock | grep -c "^+version = \"$NEXT\"") ]] ||
  bad "Cargo.lock changed more than the workspace crates' versions"
# [Unreleased] first and empty, then the new section with what it held.
awk -v h="## [$NEXT] - $TODAY" '/^## \[/{n++; if (n==1 && $0!="## [Unreleased]") exit 1; if (n==2) exit ($0==h ? 0 : 1); next}
  n==1 && /[^[:space:]]/{exit 1} END{if (n<2) exit 1}' "$REPO/CHANGELOG.md" ||
  bad "CHANGELOG.md does not start with an empty [Unreleased] and then ## [$NEXT] - $TODAY"
awk -v h="## [$NEXT] - $TODAY" '$0==h{inside=1; next} /^## \[/{inside=0} inside' "$REPO/CHANGELOG.md" |
  grep -qF -- "$UNRELEASED" || bad "the $NEXT section lacks the [Unreleased] entry '$UNRELEASED'"
[[ $(git -C "$REPO" log -1 --format=%s) == "Release $NEXT" ]] || bad "no 'Release $NEXT' commit"
[[ $(git -C "$REPO" rev-parse "v$NEXT^{commit}") == $(git -C "$REPO" rev-parse HEAD) ]] ||
  bad "v$NEXT does not tag the release commit"
[[ -z $(git -C "$REPO" status --porcelain) ]] || bad "the release left the tree dirty"
refused "the version released already" "already at $NEXT" --dry-run "$NEXT"
LATER=$major.$((minor + 2)).0
git -C "$REPO" tag "v$LATER"
refused "a version tagged already" "tag v$LATER exists already" --dry-run "$LATER"

((fails == 0)) || { echo "[release-check] $fails failure(s)" >&2; exit 1; }
echo "[release-check] release.sh: dry run, refusals and a real run (no image) as expected" >&2
