#!/usr/bin/env bash
# Cuts a release (docs/releasing.md):
#
#   scripts/release.sh [--dry-run] [--no-image] X.Y.Z
#
# Checks first, changes nothing until every check passed: VERSION is X.Y.Z (optionally -pre), above
# the workspace's current version, not yet tagged; the tree is clean; CHANGELOG.md's [Unreleased]
# section says something. Then: sets [workspace.package] version in Cargo.toml (and Cargo.lock),
# moves [Unreleased] into "## [X.Y.Z] - today" (UTC), commits, tags vX.Y.Z (annotated), and builds
# the image with `docker build`, passing the version, the commit and the source as OCI labels.
# Pushing the commit, the tag and the image is left to the releaser.
#
#   --dry-run   run the checks, then print every step with its command instead of running it
#   --no-image  stop after the tag (no Docker needed)
#
# IMAGE (default ingest-webhooks) names the image; IMAGE_SOURCE (default: the `origin` remote's
# URL) is the org.opencontainers.image.source label.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0 BUILD_IMAGE=1 VERSION=""
for arg in "$@"; do
  case $arg in
    --dry-run) DRY_RUN=1 ;;
    --no-image) BUILD_IMAGE=0 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "release: unknown option $arg" >&2; exit 2 ;;
    *) [[ -z $VERSION ]] || { echo "release: one version, not $VERSION and $arg" >&2; exit 2; }
       VERSION=$arg ;;
  esac
done

fail() { echo "release: $*" >&2; exit 1; }
say() { echo "[release] $*" >&2; }
# A step that changes something: shown (a command with its arguments; a function of this script
# by its description alone), and run unless --dry-run.
step() {
  local what=$1 shown
  shift
  if declare -F "$1" >/dev/null; then shown=$what; else shown="$what:$(printf ' %q' "$@")"; fi
  if ((DRY_RUN)); then say "would $shown"; else say "$shown"; "$@"; fi
}

[[ -n $VERSION ]] || { echo "usage: scripts/release.sh [--dry-run] [--no-image] X.Y.Z" >&2; exit 2; }
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  fail "$VERSION is not a version (X.Y.Z or X.Y.Z-pre)"
TAG=v$VERSION
IMAGE=${IMAGE:-ingest-webhooks}
TODAY=$(date -u +%F)

# --- checks (read only) ----------------------------------------------------------------------

# The version line of [workspace.package], the one every crate inherits.
current_version() {
  awk '/^\[/{section=$0} section=="[workspace.package]" && /^version *=/{gsub(/[" ]/,""); sub(/^version=/,""); print; exit}' Cargo.toml
}
CURRENT=$(current_version)
[[ -n $CURRENT ]] || fail "no version in Cargo.toml's [workspace.package]"
[[ $CURRENT != "$VERSION" ]] || fail "the workspace is already at $VERSION"
[[ $(printf '%s\n%s\n' "$CURRENT" "$VERSION" | sort -V | tail -1) == "$VERSION" ]] ||
  fail "$VERSION is below the current version $CURRENT"
git rev-parse -q --verify "refs/tags/$TAG" >/dev/null && fail "tag $TAG exists already"
[[ -z $(git status --porcelain) ]] ||
  fail "the tree is not clean (git status): commit or stash first"$'\n'"$(git status --short)"

# The lines between "## [Unreleased]" and the next "## [" heading.
unreleased() { awk '/^## \[/{inside=($0 ~ /^## \[Unreleased\]/); next} inside' CHANGELOG.md; }
grep -q '^## \[Unreleased\]' CHANGELOG.md || fail "CHANGELOG.md has no ## [Unreleased] section"
grep -q "^## \[$VERSION\]" CHANGELOG.md && fail "CHANGELOG.md already has a $VERSION section"
grep -q '[^[:space:]]' <<<"$(unreleased)" ||
  fail "CHANGELOG.md's [Unreleased] section is empty: say what $VERSION changes first"
if ((BUILD_IMAGE)) && ((!DRY_RUN)); then
  command -v docker >/dev/null || fail "docker is not installed (--no-image stops after the tag)"
fi
say "releasing $VERSION (from $CURRENT), dated $TODAY$( ((DRY_RUN)) && echo ', dry run')"

# --- changes ---------------------------------------------------------------------------------

bump_cargo() {
  awk -v v="$VERSION" '/^\[/{section=$0}
    section=="[workspace.package]" && /^version *=/{$0="version = \"" v "\""} {print}' \
    Cargo.toml >Cargo.toml.new
  mv Cargo.toml.new Cargo.toml
  # The workspace crates' own entries in Cargo.lock; nothing else is re-resolved.
  cargo update --workspace --offline -q
}

# "## [Unreleased]" stays, empty, above the new "## [X.Y.Z] - date" that takes its content.
write_changelog() {
  awk -v heading="## [$VERSION] - $TODAY" '
    !done && /^## \[Unreleased\]/ {print; print ""; print heading; done=1; next} {print}' \
    CHANGELOG.md >CHANGELOG.md.new
  mv CHANGELOG.md.new CHANGELOG.md
}

step "set version = \"$VERSION\" (was $CURRENT) in Cargo.toml's [workspace.package], and in Cargo.lock (cargo update --workspace --offline)" bump_cargo
step "move CHANGELOG.md's [Unreleased] content under a new \"## [$VERSION] - $TODAY\", leaving [Unreleased] empty" write_changelog
step "commit" git commit -q -m "Release $VERSION" -- Cargo.toml Cargo.lock CHANGELOG.md
step "tag" git tag -a "$TAG" -m "ingest-webhooks $VERSION"

if ((BUILD_IMAGE)); then
  # In a dry run HEAD is not the release commit yet; the label will name the commit made above.
  if ((DRY_RUN)); then SHA=RELEASE-COMMIT-SHA; else SHA=$(git rev-parse --short HEAD); fi
  SOURCE=${IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || true)}
  [[ -n $SOURCE ]] || say "no IMAGE_SOURCE and no origin remote: the source label is empty"
  # The Dockerfile turns these into the OCI labels (version, revision, source); the commit also
  # reaches the binaries' --version and build_info.
  step "build the image" docker build \
    --build-arg "INGEST_VERSION=$VERSION" \
    --build-arg "INGEST_GIT_SHA=$SHA" \
    --build-arg "IMAGE_SOURCE=$SOURCE" \
    -t "$IMAGE:$VERSION" .
fi

((DRY_RUN)) && { say "dry run: nothing was changed"; exit 0; }
say "done; to publish: git push origin HEAD $TAG$( ((BUILD_IMAGE)) && echo " && docker push $IMAGE:$VERSION")"
