#!/usr/bin/env bash
# Quickstart: install what is missing, build, run `cardgate serve` on the
# embedded SQLite store with the built-in workflows. Extra args go to serve.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
exec build/cardgate serve --db "${CARDGATE_DB:-cardgate.db}" "$@"
