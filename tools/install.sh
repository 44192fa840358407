#!/usr/bin/env bash
# Installs the pinned tools of tools/package.json (solc, anvil) into
# tools/node_modules with `npm ci`, when they are missing or older than
# tools/package-lock.json. Idempotent; safe to run concurrently (flock).
set -euo pipefail
cd "$(dirname "$0")"

stale() {
  [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
    || [ package.json -nt node_modules/.package-lock.json ]
}

stale || exit 0
command -v npm >/dev/null 2>&1 || { echo "tools/install.sh: npm is needed (node 18 or later)" >&2; exit 1; }
# Serialize concurrent installs (test binaries, scripts) on the committed lockfile.
exec 9<package-lock.json
flock 9
stale || exit 0
echo "tools/install.sh: npm ci --prefix tools" >&2
# --ignore-scripts: nothing here needs an install script, and the anvil binary
# comes in its platform package (no download at install time).
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
touch node_modules/.package-lock.json
