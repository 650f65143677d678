#!/usr/bin/env bash
# Build a flashable SD-card image for 64-bit Raspberry Pis (3B/3B+, Zero 2 W, 4B) with odar
# installed, from Debian Bookworm arm64's own packages (linux-image-arm64, raspi-firmware from
# non-free-firmware). Run as root on a Debian-like machine (debootstrap, qemu-user-static,
# binfmt-support, mtools, dosfstools, fdisk, e2fsprogs). No loop devices, no mounts on the host:
# the partitions are made from directories (mkfs.vfat + mcopy, mkfs.ext4 -d) and put together
# with sfdisk.
#
#   sudo scripts/build-image.sh [--out DIR]     (default DIR: ./build/image)
#   scripts/build-image.sh --keys               print the cache keys of steps 2 and 3 and exit
#
# Output in DIR: odar-pi-arm64.img (write it with Raspberry Pi Imager or dd), its .sha256, and
# odar-pi-arm64.inputs.txt (everything that went in: Debian package versions, odar's commit
# and files, the Python wheels). odar is installed by scripts/install.sh run inside the image's
# root, the same steps as on a running Pi.
#
# Cache: ODAR_CACHE_DIR (default /var/tmp/odar-build) keeps
#   rootfs-bookworm-arm64/            the debootstrapped arm64 root (shared with tests/test_arm64.py)
#   image-system-KEY/                 that root plus kernel, firmware, initramfs, first-boot units
#   image-odar-KEY/{root,bootfs}      the system root with odar installed: the image's contents
# KEY hashes every input of the step (packages, files, the step's own code), so a change rebuilds
# from that step on. Delete the directory to start afresh.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8

checkout=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ODAR_CACHE_DIR:-/var/tmp/odar-build}
out=$checkout/build/image
NAME=odar-pi-arm64
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
# The same root as tests/test_arm64.py's (its ROOT_PACKAGES): built once, used by both.
BASE_PACKAGES=python3,python3-venv,python3-numpy,python3-systemd,systemd
BASE_ROOT=$cache/rootfs-$SUITE-arm64
SYSTEM_PACKAGES=(systemd-sysv udev kmod e2fsprogs fdisk initramfs-tools zstd linux-image-arm64
    raspi-firmware firmware-brcm80211 wpasupplicant openssh-server systemd-resolved
    systemd-timesyncd iproute2 gpiod i2c-tools device-tree-compiler ca-certificates)
# QEMU's raspi machines want a power-of-two card; 2 GiB fits any card sold today.
IMAGE_MIB=2048
BOOT_MIB=256

print_keys=no
while (($#)); do
    case $1 in
    --keys) print_keys=yes ;;
    --out)
        out=${2:?--out needs a directory}
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "build-image: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

say() { printf 'build-image: %s\n' "$*"; }
die() {
    printf 'build-image: error: %s\n' "$*" >&2
    exit 1
}
[ "$print_keys" = yes ] || [ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
for tool in debootstrap unshare chroot mkfs.vfat mcopy mkfs.ext4 sfdisk update-binfmts; do
    command -v "$tool" >/dev/null || die "$tool is missing: scripts/setup-{test,image}-tools.sh install it"
done

started=$(date +%s)
mkdir -p "$cache" "$out"

# Run a command inside ROOT with /proc (and the checkout, read-only, at /mnt/odar-src) mounted
# in a private mount namespace: nothing stays mounted on the host, whatever happens.
in_root() {
    local root=$1
    shift
    unshare --mount --propagation private sh -c '
        root=$1 checkout=$2; shift 2
        mount -t proc proc "$root/proc"
        if [ -d "$root/mnt/odar-src" ]; then
            mount --bind "$checkout" "$root/mnt/odar-src"
            mount -o remount,bind,ro "$root/mnt/odar-src"
        fi
        exec chroot "$root" "$@"' sh "$root" "$checkout" "$@"
}

# aarch64 binaries in the chroot run under qemu-user (binfmt with the fix-binary flag: no copy of
# qemu in the root is needed).
ensure_binfmt() {
    local binfmt=/proc/sys/fs/binfmt_misc
    [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
    [ -e "$binfmt/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64
    grep -q enabled "$binfmt/qemu-aarch64" || die "$binfmt/qemu-aarch64 is disabled"
}

key_of() { sha256sum | cut -c1-16; }

# A directory built into NAME.partial-* and renamed into place when complete.
finish_dir() { mv "$1" "$2"; }

# ---- 1. the debootstrapped arm64 root ------------------------------------------------------

build_base_root() {
    local partial
    partial=$(mktemp -d "$cache/rootfs-$SUITE-arm64.partial-XXXXXX")
    say "debootstrap $SUITE arm64 into $partial"
    debootstrap --variant=minbase --arch=arm64 --foreign --include="$BASE_PACKAGES" \
        "$SUITE" "$partial" "$MIRROR" >"$partial.log" 2>&1 ||
        die "debootstrap failed: $partial.log"
    in_root "$partial" /debootstrap/debootstrap --second-stage >>"$partial.log" 2>&1 ||
        die "debootstrap --second-stage failed: $partial.log"
    rm -f "$partial"/var/cache/apt/archives/*.deb "$partial.log"
    finish_dir "$partial" "$BASE_ROOT"
}

# ---- 2. the system: kernel, firmware, initramfs, first-boot units --------------------------

write_system_config() {
    local root=$1
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main non-free-firmware
deb $MIRROR $SUITE-updates main non-free-firmware
deb http://deb.debian.org/debian-security $SUITE-security main non-free-firmware
EOF
    mkdir -p "$root/boot/firmware"
    # raspi-firmware's hooks write cmdline.txt and config.txt from these on every kernel or
    # initramfs update. In a chroot the hook cannot see the consoles: name them (the Pi 3's
    # and Zero 2 W's header UART is the mini UART, ttyS1).
    cat >"$root/etc/default/raspi-firmware" <<'EOF'
ROOTPART=LABEL=RASPIROOT
CONSOLES="tty0 ttyS1,115200"
EOF
    cat >"$root/etc/fstab" <<'EOF'
LABEL=RASPIROOT / ext4 defaults,noatime 0 1
LABEL=RASPIFIRM /boot/firmware vfat defaults,umask=0022 0 2
EOF
    echo odar >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\todar\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        >"$root/etc/hosts"
    # Wired network by DHCP; Wi-Fi once odar-setup.txt names a network.
    cat >"$root/etc/systemd/network/50-wired.network" <<'EOF'
[Match]
Name=eth* en*

[Network]
DHCP=yes
EOF
    cat >"$root/etc/systemd/network/50-wireless.network" <<'EOF'
[Match]
Name=wlan*

[Network]
DHCP=yes
EOF
}

# After initramfs-tools is installed, before the one initramfs build.
write_initramfs_config() {
    local root=$1
    # The fsck hook cannot probe the root device in a chroot; without this the initramfs has
    # no fsck and the root would never be checked at boot.
    echo FSTYPE=ext4 >"$root/etc/initramfs-tools/conf.d/fstype"
    # MODULES=most takes 8.5 min under qemu-user and makes a 30 MB initrd; the list (SD on
    # Pi 3 / Zero 2 W, SD on Pi 4, ext4, and virtio for QEMU's virt machine) takes 35 s.
    sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
    printf '%s\n' bcm2835 sdhci-iproc ext4 virtio_blk virtio_pci >>"$root/etc/initramfs-tools/modules"
}

build_system_root() {
    local target=$1 partial kver
    partial=$(mktemp -d "$cache/image-system.partial-XXXXXX")
    rmdir "$partial"
    cp -a "$BASE_ROOT" "$partial"
    write_system_config "$partial"
    cp /etc/resolv.conf "$partial/etc/resolv.conf"
    # The initramfs would be built twice during the install (kernel hook, then trigger), 8-10
    # min each under qemu-user: build it once, at the end.
    in_root "$partial" dpkg-divert --local --rename --add /usr/sbin/update-initramfs >/dev/null
    ln -s /bin/true "$partial/usr/sbin/update-initramfs"
    say "installing the kernel, raspi-firmware and the system packages (qemu-user)"
    in_root "$partial" apt-get update -qq
    # --force-confold: keep the /etc/default/raspi-firmware written above.
    in_root "$partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o Dpkg::Options::=--force-confold --no-install-recommends "${SYSTEM_PACKAGES[@]}" \
        >/dev/null
    rm "$partial/usr/sbin/update-initramfs"
    in_root "$partial" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs >/dev/null
    write_initramfs_config "$partial"
    kver=$(ls "$partial/lib/modules")
    say "building the initramfs for $kver (MODULES=list)"
    in_root "$partial" update-initramfs -c -k "$kver" >/dev/null
    [ -f "$partial/boot/firmware/config.txt" ] || die "raspi-firmware wrote no config.txt"
    # SSH stays off (and without host keys, which would be the same on every card) until
    # odar-setup.txt gives a key; the first boot makes keys then.
    in_root "$partial" systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true
    # Wi-Fi is wpa_supplicant@wlan0 (odar-setup.txt); the D-Bus one would fail without D-Bus.
    in_root "$partial" systemctl disable wpa_supplicant.service >/dev/null 2>&1
    rm -f "$partial"/etc/ssh/ssh_host_*
    in_root "$partial" systemctl enable systemd-networkd.service systemd-resolved.service \
        >/dev/null 2>&1
    # No root password (login only by SSH key), a machine id made at the first boot.
    in_root "$partial" passwd --lock root >/dev/null
    : >"$partial/etc/machine-id"
    rm -f "$partial/var/lib/dbus/machine-id"
    in_root "$partial" apt-get clean
    rm -rf "$partial"/var/lib/apt/lists/* "$partial/etc/resolv.conf"
    ln -sf /run/systemd/resolve/stub-resolv.conf "$partial/etc/resolv.conf"
    finish_dir "$partial" "$target"
}

# ---- 3. odar, by scripts/install.sh inside the root ----------------------------------------

build_odar_root() {
    local system=$1 target=$2 partial
    partial=$(mktemp -d "$cache/image-odar.partial-XXXXXX")
    cp -a "$system" "$partial/root"
    local root=$partial/root
    mkdir -p "$root/mnt/odar-src"
    rm -f "$root/etc/resolv.conf"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # pip inside reaches PyPI with the host's CAs (a proxy's among them); the image's own
    # bundle is put back afterwards (regenerating it under qemu-user takes minutes).
    local bundle=$root/etc/ssl/certs/ca-certificates.crt
    cp -a "$bundle" "$partial/ca-certificates.crt.image"
    [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$bundle"
    # The first boot: grow the root, apply odar-setup.txt (image/).
    install -m 0755 "$checkout/image/odar-firstboot" "$root/usr/local/sbin/odar-firstboot"
    install -m 0644 "$checkout/image/odar-growroot.service" "$checkout/image/odar-setup.service" \
        "$root/etc/systemd/system/"
    in_root "$root" systemctl enable odar-growroot.service odar-setup.service >/dev/null 2>&1
    say "running scripts/install.sh in the image's root (pip under qemu-user)"
    in_root "$root" /bin/bash /mnt/odar-src/scripts/install.sh --source /mnt/odar-src \
        >"$partial/install.log" 2>&1 || {
        cat "$partial/install.log" >&2
        die "install.sh failed in the image's root"
    }
    sed 's/^/  /' "$partial/install.log"
    in_root "$root" /opt/odar/venv/bin/python -m pip freeze --all >"$partial/wheels.txt"
    in_root "$root" dpkg-query -W -f '${Package}=${Version}\n' >"$partial/packages.txt"
    rmdir "$root/mnt/odar-src"
    rm -rf "$root/root/.cache" "$root/etc/resolv.conf"
    mv "$partial/ca-certificates.crt.image" "$bundle"
    ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
    # The FAT partition's contents live apart: mkfs.ext4 -d takes the root as it is.
    mv "$root/boot/firmware" "$partial/bootfs"
    mkdir "$root/boot/firmware"
    install -m 0644 "$checkout/image/odar-setup.txt" "$partial/bootfs/odar-setup.txt"
    finish_dir "$partial" "$target"
}

# What install.sh installs from the checkout (its install_files and build_venv), hashed.
odar_inputs_key() {
    (
        cd "$checkout"
        find pyproject.toml README.md daemon drivers artifacts etc/odar.yaml etc/odar.service \
            scripts/install.sh docs/operations.md image -type f \
            ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
    )
}

# ---- 4. the image --------------------------------------------------------------------------

assemble_image() {
    local tree=$1 image=$2 work root_mib
    work=$(mktemp -d "$cache/image-assemble.XXXXXX")
    root_mib=$((IMAGE_MIB - 1 - BOOT_MIB))
    mkfs.vfat -F 32 -n RASPIFIRM -C "$work/boot.img" $((BOOT_MIB * 1024)) >/dev/null
    mcopy -s -p -m -i "$work/boot.img" "$tree/bootfs"/* ::/
    mkfs.ext4 -q -L RASPIROOT -E root_owner=0:0 -d "$tree/root" "$work/root.img" "${root_mib}M"
    rm -f "$image"
    truncate -s "${IMAGE_MIB}M" "$image"
    printf 'label: dos\nstart=1MiB, size=%sMiB, type=c, bootable\nstart=%sMiB, type=83\n' \
        "$BOOT_MIB" $((1 + BOOT_MIB)) | sfdisk -q "$image"
    dd if="$work/boot.img" of="$image" bs=1M seek=1 conv=notrunc,sparse status=none
    dd if="$work/root.img" of="$image" bs=1M seek=$((1 + BOOT_MIB)) conv=notrunc,sparse status=none
    rm -rf "$work"
}

# ---- main ----------------------------------------------------------------------------------

system_key=$(
    {
        echo "$SUITE $MIRROR $BASE_PACKAGES ${SYSTEM_PACKAGES[*]}"
        declare -f write_system_config write_initramfs_config build_system_root
    } | key_of
)
odar_key=$(
    {
        echo "$system_key"
        declare -f build_odar_root
        odar_inputs_key
    } | key_of
)
if [ "$print_keys" = yes ]; then
    echo "system $system_key"
    echo "odar $odar_key"
    exit 0
fi

# Each step's wall time, for the CI log (which step a fresh machine spends its time in).
step_started=$(date +%s)
step_took() {
    local now
    now=$(date +%s)
    say "step $1 took $((now - step_started)) s"
    step_started=$now
}

ensure_binfmt
if [ -x "$BASE_ROOT/usr/bin/python3" ]; then
    say "debootstrapped root: cached ($BASE_ROOT)"
else
    build_base_root
    step_took "debootstrap"
fi
system_root=$cache/image-system-$system_key
if [ -d "$system_root" ]; then
    say "system root: cached ($system_root)"
else
    build_system_root "$system_root"
    step_took "system (kernel, firmware, packages, initramfs)"
fi
odar_tree=$cache/image-odar-$odar_key
if [ -d "$odar_tree" ]; then
    say "root with odar: cached ($odar_tree)"
else
    build_odar_root "$system_root" "$odar_tree"
    step_took "odar (install.sh)"
fi
# Older trees of either step are not needed any more.
find "$cache" -maxdepth 1 \( -name 'image-system-*' ! -name "image-system-$system_key" -o \
    -name 'image-odar-*' ! -name "image-odar-$odar_key" -o -name 'image-*.partial-*' \) \
    -exec rm -rf --one-file-system {} +

image=$out/$NAME.img
say "assembling $image"
assemble_image "$odar_tree" "$image"
(cd "$out" && sha256sum "$NAME.img" >"$NAME.img.sha256")
step_took "image (mkfs, sfdisk, sha256)"

commit=$(git -C "$checkout" rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$checkout" status --porcelain 2>/dev/null | head -c1)
{
    echo "# $NAME.img: what went in (scripts/build-image.sh)"
    echo "odar commit: $commit${dirty:+ (with uncommitted changes)}"
    echo "debian: $SUITE arm64 from $MIRROR (main non-free-firmware), updates and security"
    echo "kernel: $(ls "$odar_tree/root/lib/modules")"
    echo "layout: MBR, ${BOOT_MIB} MiB FAT32 RASPIFIRM at 1 MiB, ext4 RASPIROOT to ${IMAGE_MIB} MiB"
    echo "cache keys: system $system_key, odar $odar_key"
    echo
    echo "## odar's files (sha256)"
    odar_inputs_key
    echo
    echo "## Python packages in /opt/odar/venv"
    cat "$odar_tree/wheels.txt"
    echo
    echo "## Debian packages"
    cat "$odar_tree/packages.txt"
} >"$out/$NAME.inputs.txt"

size=$(stat -c %s "$image")
allocated=$(($(stat -c %b "$image") * $(stat -c %B "$image")))
say "image: $image"
say "sha256: $(cut -d' ' -f1 "$out/$NAME.img.sha256")"
say "size: $((size / 1048576)) MiB ($((allocated / 1048576)) MiB of data, sparse)"
say "inputs: $out/$NAME.inputs.txt"
say "build time: $(($(date +%s) - started)) s"
