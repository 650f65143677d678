#!/usr/bin/env bash
# Set up a development venv on a fresh Debian-like machine: system packages, then the venv.
# Usage: scripts/setup-dev.sh [PYTHON] [VENV]
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
cd "$(dirname "$0")/.."

need_apt=()
# systemd-python builds from source (no wheels): it needs libsystemd's headers and pkg-config.
pkg-config --exists libsystemd 2>/dev/null || need_apt+=(libsystemd-dev pkg-config)
command -v gcc >/dev/null || need_apt+=(gcc)
# The tests boot a throwaway systemd in a namespace and install into a scratch Debian root.
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# ... and run the installer and the artifacts in an arm64 root under qemu (the Pi's CPU).
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
command -v update-binfmts >/dev/null || need_apt+=(binfmt-support)
command -v unshare >/dev/null && command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v useradd >/dev/null || need_apt+=(passwd)
[ -x /lib/systemd/systemd ] || need_apt+=(systemd)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if ((${#need_apt[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing ${need_apt[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup: please install ${need_apt[*]} (to build systemd-python and run the tests)" >&2
        exit 1
    fi
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e ".[test,systemd]"
