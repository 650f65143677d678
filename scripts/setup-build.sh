#!/usr/bin/env bash
# The build venv: TensorFlow and the artifact builder's other needs, plus odar itself
# (without its device dependencies) so the builder's tests can load what it wrote.
# Usage: scripts/setup-build.sh [PYTHON] [VENV]
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv-build}
cd "$(dirname "$0")/.."

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r scripts/requirements-build.txt
"$venv/bin/pip" install -q --no-deps -e .
