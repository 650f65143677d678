#!/usr/bin/env bash
# System tools only the SD image test needs (scripts/test.sh stage 5): the
# image's partitions without loop devices (scripts/build-image.sh) and QEMU's Raspberry Pi 3 to
# boot it, on top of what scripts/setup-test-tools.sh installs (debootstrap, qemu-user, ...).
# Without root the image test skips with a printed reason (it fails under ODAR_REQUIRE_SYSTEMD=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt-need.sh

need=()
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
