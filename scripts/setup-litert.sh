#!/usr/bin/env bash
# A second device venv with ai-edge-litert instead of tflite-runtime, so the artifacts are
# tested on both runtimes. The package goes in with --no-deps (its own dependency list names
# tflite-runtime on Python < 3.12); its other runtime deps are listed here.
# Usage: scripts/setup-litert.sh [PYTHON] [VENV]
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv-litert}
cd "$(dirname "$0")/.."

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "ai-edge-litert>=2.0" "numpy>=1.26" "smbus2>=0.4" "gpiozero>=2.0" \
    "pyyaml>=6.0" "pytest>=8" "hypothesis>=6.100"
"$venv/bin/pip" install -q --no-deps -e .
