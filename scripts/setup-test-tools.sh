#!/usr/bin/env bash
# System tools some tests need: they boot a throwaway systemd in a namespace, install into a
# scratch Debian root, run the installer and the artifacts in an arm64 root under qemu, and
# build the SD image (scripts/build-image.sh) and boot it on QEMU's Raspberry Pi 3.
# Without root these tests skip with a printed reason (they fail under ODAR_REQUIRE_SYSTEMD=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt-need.sh

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
{ command -v unshare >/dev/null && command -v nsenter >/dev/null; } || need+=(util-linux)
command -v useradd >/dev/null || need+=(passwd)
{ [ -x /lib/systemd/systemd ] && command -v systemd-analyze >/dev/null; } || need+=(systemd)
# The SD image: its partitions without loop devices, and QEMU's raspi3b to boot it.
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v fdtput >/dev/null || need+=(device-tree-compiler)
if ! apt_need "${need[@]}" && [ "${ODAR_REQUIRE_SYSTEMD:-}" = 1 ]; then
    exit 1
fi
exit 0
