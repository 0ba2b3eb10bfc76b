#!/usr/bin/env bash
# Installs the Node load generator's exact dependencies (ws, bufferutil) from package-lock.json (npm ci).
# Idempotent: does nothing when node_modules was already installed from this very lock file. `roost bench
# --generator node` runs it before its first target. bufferutil loads its bundled prebuild (linux-x64) even when
# npm skips its install script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
stamp=node_modules/.roost-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "gen_node: node_modules is current"
  exit 0
fi
npm ci --no-audit --no-fund
echo "$want" > "$stamp"
