#!/usr/bin/env bash
# The venv's odar is a tree of links into daemon/ and drivers/, made when pip installed it
# (editable_mode=strict, see setup-dev.sh, so that mypy and editors can follow `odar.x`). A
# module added since has no link and cannot be imported: reinstall (seconds, nothing
# downloaded) when one is missing.
# Usage: scripts/link-modules.sh [VENV]
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."

tree=$(ls -d build/__editable__.odar-*/odar 2>/dev/null | head -n 1 || true)

a_link_is_missing() {
    [ -n "$tree" ] || return 0
    local file
    while IFS= read -r file; do
        case $file in
            drivers/*) [ -e "$tree/$file" ] || return 0 ;;           # odar.drivers = drivers/
            daemon/*) [ -e "$tree/${file#daemon/}" ] || return 0 ;;  # odar = daemon/
        esac
    done < <(find daemon drivers -path '*/__pycache__' -prune -o \( -name '*.py' -o -name py.typed \) -print)
    return 1
}

if a_link_is_missing; then
    echo "scripts/link-modules.sh: linking new modules into $venv's odar"
    if ! output=$("$venv/bin/pip" install -q --no-deps -e . --config-settings editable_mode=strict 2>&1)
    then
        echo "$output" >&2
        exit 1
    fi
fi
