#!/usr/bin/env bash
# Set up a development venv on a fresh Debian-like machine: system packages, then the venv.
# Usage: scripts/setup-dev.sh [PYTHON] [VENV]
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
cd "$(dirname "$0")/.."
source scripts/apt-need.sh

need=()
# systemd-python builds from source (no wheels): it needs libsystemd's headers and pkg-config.
pkg-config --exists libsystemd 2>/dev/null || need+=(libsystemd-dev pkg-config)
command -v gcc >/dev/null || need+=(gcc)
apt_need "${need[@]}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# editable_mode=strict: odar/ becomes a tree of links to daemon/ and drivers/ (build/__editable__.*)
# that mypy and editors follow; scripts/link-modules.sh adds the links of modules added later.
"$venv/bin/pip" install -q -e ".[test,systemd]" --config-settings editable_mode=strict
