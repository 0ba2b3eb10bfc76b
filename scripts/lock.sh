#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml (`make lock`), or move every pin to the newest release
# that pyproject.toml allows (`make upgrade`, which passes --upgrade). Both run the whole suite after.
#
# requirements-dev.txt: runtime + dev + bench extras + install tools; what `make test` installs.
# requirements.txt: runtime + install tools; what `make run` installs. It is compiled with
# dev.txt as its starting point, so every package it shares with dev.txt has the same version.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${VENV:-.venv}/bin
export CUSTOM_COMPILE_COMMAND="make lock"
compile=("$BIN/pip-compile" --quiet --no-config --generate-hashes --allow-unsafe --strip-extras
         --no-emit-index-url --no-emit-find-links "$@")

"${compile[@]}" --extra dev --extra bench -o requirements-dev.txt pyproject.toml requirements-tools.in
cp requirements-dev.txt requirements.txt
# No --upgrade here: the runtime lock keeps dev.txt's versions.
"$BIN/pip-compile" --quiet --no-config --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links -o requirements.txt pyproject.toml requirements-tools.in
"$BIN/python" scripts/check-lock.py --stamp
echo "lock: requirements-dev.txt and requirements.txt written; run 'make test', then commit them"
