#!/usr/bin/env bash
# The test suite, as CI runs it. `make test` calls this after setting up .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
"$bin/ruff" check .
"$bin/python" -m pytest "$@"
