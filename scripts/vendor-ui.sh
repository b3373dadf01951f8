#!/usr/bin/env bash
# The third-party files the gateway's pages embed (ingest-gateway/assets/vendor/), fetched from the
# npm registry at pinned versions: the built files the pages load and their licences, nothing
# else, plus SHA256SUMS over them. The binary embeds them (include_bytes!), so no page reaches a
# CDN.
#
#   scripts/vendor-ui.sh            # (re)vendor: fetch the pinned packages, copy, write SHA256SUMS
#   scripts/vendor-ui.sh --check    # the vendored files are the pinned packages' files: fetch
#                                   # again into a temporary directory and compare (test.sh runs it)
#
# To upgrade: change the version and its integrity (`npm view swagger-ui-dist@<v> dist.integrity`)
# below, run this script, commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

# package@version, its registry integrity (checked before anything is copied), the files to take.
PACKAGE=swagger-ui-dist@5.35.0
INTEGRITY=sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
FILES=(swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE)
DEST=ingest-gateway/assets/vendor
SUBDIR=swagger-ui

log() { printf '[vendor-ui] %s\n' "$*" >&2; }
command -v npm >/dev/null || { log "npm is missing (apt-get install npm)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Fetches the pinned tarball into $tmp/package after checking its integrity.
fetch() {
  local meta integrity tarball
  meta=$(cd "$tmp" && npm pack --json --silent "$PACKAGE")
  integrity=$(printf '%s' "$meta" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["integrity"])')
  tarball=$(printf '%s' "$meta" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["filename"])')
  if [[ $integrity != "$INTEGRITY" ]]; then
    log "$PACKAGE: integrity $integrity, expected $INTEGRITY"
    exit 1
  fi
  tar -xzf "$tmp/$tarball" -C "$tmp"
}

# SHA256SUMS of the chosen files under directory $1, paths relative to $DEST.
sums() {
  local f
  for f in "${FILES[@]}"; do
    printf '%s  %s\n' "$(sha256sum "$1/$f" | cut -d' ' -f1)" "$SUBDIR/$f"
  done
}

if [[ ${1:-} == --check ]]; then
  # The files on disk are the ones listed (also catches a file edited by hand or a stray one)...
  (cd "$DEST" && sha256sum --quiet --strict -c SHA256SUMS) || { log "$DEST differs from its SHA256SUMS"; exit 1; }
  listed=$(cut -d' ' -f3 "$DEST/SHA256SUMS" | sort)
  present=$(cd "$DEST" && find "$SUBDIR" -type f | sort)
  [[ $listed == "$present" ]] || { log "$DEST/$SUBDIR holds files SHA256SUMS does not list"; exit 1; }
  # ...and the list is what the pinned package holds today.
  fetch
  if ! diff <(sums "$tmp/package") "$DEST/SHA256SUMS" >&2; then
    log "the vendored files are not $PACKAGE's: run scripts/vendor-ui.sh"
    exit 1
  fi
  log "$DEST is $PACKAGE"
  exit 0
fi

fetch
rm -rf "${DEST:?}/$SUBDIR"
mkdir -p "$DEST/$SUBDIR"
for f in "${FILES[@]}"; do
  cp "$tmp/package/$f" "$DEST/$SUBDIR/$f"
done
sums "$DEST/$SUBDIR" >"$DEST/SHA256SUMS"
log "vendored $PACKAGE into $DEST/$SUBDIR"
