#!/usr/bin/env bash
# Install odar as a systemd service on Raspberry Pi OS (Bookworm 64/32-bit, Trixie 64-bit).
#
#   sudo scripts/install.sh               install or upgrade, enable and (re)start the service
#   sudo scripts/install.sh --uninstall   remove the service and /opt/odar; keep config and state
#   sudo scripts/install.sh --uninstall --purge   also remove /etc/odar, /var/lib/odar, the user
#
# Safe to run again: every step checks before it changes anything. A config the user edited
# is never overwritten (the shipped one is put next to it as odar.yaml.dist).
#
# Options:
#   --source DIR   the odar checkout to install from (default: this script's checkout)
#   --no-start     enable the unit but do not (re)start it (also implied without a running systemd)
#   --skip-venv    do not build /opt/odar/venv (for tests of the other steps; the service will not run)
#
# Also used by scripts/build-image.sh, which runs it inside the SD image's root (a chroot): without
# a running systemd nothing is started, only enabled.
# Environment: PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, ... are passed to pip as usual.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive

PREFIX=/opt/odar
VENV=$PREFIX/venv
CONFIG_DIR=/etc/odar
CONFIG=$CONFIG_DIR/odar.yaml
STATE_DIR=/var/lib/odar
UNIT_PATH=/etc/systemd/system/odar.service
CATALOG_PATH=/usr/lib/systemd/catalog/odar.catalog
USER_NAME=odar
DEVICE_GROUPS=(i2c gpio)
# At 100 kHz one 6-axis FIFO sample (12 bytes, 9 bit-times each) costs about 108 us of bus
# time; above this rate the FIFO drains faster than a 100 kHz bus can empty it with headroom.
MAX_RATE_HZ_AT_100KHZ=400

source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
action=install
purge=no
start=yes
build_venv=yes
reboot_needed=no
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

say() { printf 'install: %s\n' "$*"; }
die() {
    printf 'install: error: %s\n' "$*" >&2
    exit 1
}

while (($#)); do
    case $1 in
    --source)
        source_dir=$(cd "${2:?--source needs a directory}" && pwd)
        shift
        ;;
    --no-start) start=no ;;
    --skip-venv) build_venv=no ;;
    --uninstall) action=uninstall ;;
    --purge) purge=yes ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
[ "$purge" = no ] || [ "$action" = uninstall ] || die "--purge only goes with --uninstall"

# A running systemd (not a chroot or image build): only then start, stop or reload units.
systemd_running() { [ -d /run/systemd/system ]; }

# ---- system packages -------------------------------------------------------------------

ensure_packages() {
    # python3-numpy and python3-systemd come from the distribution: numpy has no armv7l wheel
    # on PyPI, and systemd-python has no wheels at all (the venv sees both through
    # --system-site-packages).
    local wanted=(python3 python3-venv python3-numpy python3-systemd) missing=()
    local package
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$package")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# ---- user and groups -------------------------------------------------------------------

ensure_user() {
    local group
    for group in "${DEVICE_GROUPS[@]}"; do
        # Raspberry Pi OS has both (udev gives them /dev/i2c-* and /dev/gpiochip*).
        getent group "$group" >/dev/null || {
            say "creating group $group"
            groupadd --system "$group"
        }
    done
    if ! getent passwd "$USER_NAME" >/dev/null; then
        say "creating user $USER_NAME"
        useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "odar activity recognition" "$USER_NAME"
    fi
    usermod --append --groups "$(
        IFS=,
        echo "${DEVICE_GROUPS[*]}"
    )" "$USER_NAME"
    install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 "$STATE_DIR"
}

# ---- I2C -------------------------------------------------------------------------------

config_txt_path() {
    local candidate
    for candidate in /boot/firmware/config.txt /boot/config.txt; do
        [ -f "$candidate" ] && {
            echo "$candidate"
            return
        }
    done
    # None found is an answer (empty), not a failure: under set -e a failing
    # `config_txt=$(config_txt_path)` would end the install silently.
    return 0
}

# Set `dtparam=NAME=VALUE` in config.txt, replacing an existing (even commented-out) line.
set_dtparam() {
    local file=$1 name=$2 value=$3
    if grep -qE "^dtparam=$name=$value\$" "$file"; then
        return
    fi
    if grep -qE "^#?[[:space:]]*dtparam=$name=" "$file"; then
        sed -i -E "0,/^#?[[:space:]]*dtparam=$name=.*/s//dtparam=$name=$value/" "$file"
    else
        printf 'dtparam=%s=%s\n' "$name" "$value" >>"$file"
    fi
    say "set dtparam=$name=$value in $file"
    reboot_needed=yes
}

# The value of a `key:` line of the (flat enough) sensor section of the installed config.
config_value() {
    sed -n -E "s/^[[:space:]]+$1:[[:space:]]*([0-9.]+).*/\1/p" "$CONFIG" | head -n 1
}

bus_needs_fast_mode() {
    local rate bus_hz
    rate=$(config_value rate_hz)
    bus_hz=$(config_value bus_hz)
    awk -v rate="${rate:-100}" -v bus="${bus_hz:-400000}" -v max="$MAX_RATE_HZ_AT_100KHZ" \
        'BEGIN { exit !(rate > max || bus >= 400000) }'
}

# Debian's raspi-firmware package (not Raspberry Pi OS) regenerates config.txt on every kernel
# or initramfs update; lines that must survive go into its -custom file as well.
RASPI_FIRMWARE_DEFAULTS=/etc/default/raspi-firmware
RASPI_FIRMWARE_CUSTOM=/etc/default/raspi-firmware-custom
# Debian's device trees are the kernel's, without the __overrides__ the Pi firmware needs to
# apply dtparam=i2c_arm_baudrate: this hook writes the rate into i2c1's node of each DTB after
# raspi-firmware has copied them (initramfs and kernel updates both recopy them).
I2C_CLOCK_HOOK_NAME=z60-odar-i2c-clock
I2C_CLOCK_HOOK_DIRS=(/etc/initramfs/post-update.d /etc/kernel/postinst.d)

set_boot_dtparam() {
    local config_txt=$1 name=$2 value=$3
    set_dtparam "$config_txt" "$name" "$value"
    if [ -f "$RASPI_FIRMWARE_DEFAULTS" ]; then
        touch "$RASPI_FIRMWARE_CUSTOM"
        set_dtparam "$RASPI_FIRMWARE_CUSTOM" "$name" "$value"
    fi
}

install_i2c_clock_hook() {
    local bus_hz=$1 dir hook
    command -v fdtput >/dev/null || {
        say "installing device-tree-compiler (fdtput, for the I2C clock in Debian's DTBs)"
        apt-get install -y -qq device-tree-compiler >/dev/null
    }
    for dir in "${I2C_CLOCK_HOOK_DIRS[@]}"; do
        install -d "$dir"
        hook=$dir/$I2C_CLOCK_HOOK_NAME
        cat >"$hook.new" <<HOOK
#!/bin/sh
# Installed by odar's install.sh: I2C bus 1 at $bus_hz Hz in the Pi DTBs raspi-firmware copied.
for dtb in /boot/firmware/bcm27*.dtb /boot/firmware/bcm28*.dtb; do
    [ -f "\$dtb" ] || continue
    # The header's bus 1 (BSC1) sits at bus address 0x7e804000 on every Pi; Debian's DTBs
    # have no i2c1 alias to find it by.
    fdtget "\$dtb" /soc/i2c@7e804000 compatible >/dev/null 2>&1 || continue
    fdtput -t u "\$dtb" /soc/i2c@7e804000 clock-frequency $bus_hz
done
exit 0
HOOK
        chmod 0755 "$hook.new"
        if cmp -s "$hook.new" "$hook"; then
            rm -f "$hook.new"
        else
            mv "$hook.new" "$hook"
            say "installed $hook (I2C bus 1 at $bus_hz Hz)"
            reboot_needed=yes
        fi
    done
    "${I2C_CLOCK_HOOK_DIRS[0]}/$I2C_CLOCK_HOOK_NAME"
}

enable_i2c() {
    local config_txt
    config_txt=$(config_txt_path)
    if command -v raspi-config >/dev/null; then
        raspi-config nonint do_i2c 0
        say "I2C enabled with raspi-config"
    elif [ -n "$config_txt" ]; then
        set_boot_dtparam "$config_txt" i2c_arm on
        touch /etc/modules
        grep -qxF i2c-dev /etc/modules || {
            echo i2c-dev >>/etc/modules
            say "added i2c-dev to /etc/modules"
        }
    else
        say "no /boot/firmware/config.txt: not a Raspberry Pi? leaving I2C alone"
        return
    fi
    [ -n "$config_txt" ] || return
    if bus_needs_fast_mode; then
        set_boot_dtparam "$config_txt" i2c_arm_baudrate 400000
        [ -f "$RASPI_FIRMWARE_DEFAULTS" ] && install_i2c_clock_hook 400000
    fi
    systemd_running && modprobe i2c-dev 2>/dev/null || true
}

# Raspberry Pi OS gives /dev/gpiochip* to group gpio; Debian leaves them root:root 0600.
GPIO_UDEV_RULE=/etc/udev/rules.d/60-odar-gpiochip.rules

ensure_gpio_access() {
    if grep -rqsE 'SUBSYSTEM=="gpio".*GROUP="gpio"' /lib/udev/rules.d /usr/lib/udev/rules.d \
        /etc/udev/rules.d; then
        return
    fi
    install -d "$(dirname "$GPIO_UDEV_RULE")"
    echo 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' >"$GPIO_UDEV_RULE"
    say "installed $GPIO_UDEV_RULE (/dev/gpiochip* for group gpio)"
    systemd_running && udevadm trigger --subsystem-match=gpio 2>/dev/null || true
}

# ---- the venv --------------------------------------------------------------------------

check_runtime_available() {
    local arch python_minor
    arch=$(dpkg --print-architecture)
    python_minor=$(python3 -c 'import sys; print(sys.version_info[1])')
    [ "$(python3 -c 'import sys; print(sys.version_info[0])')" = 3 ] && ((python_minor >= 11)) ||
        die "Python 3.11 or newer is needed, /usr/bin/python3 is $(python3 -V 2>&1)"
    # tflite-runtime (cp311 and older, armv7l too) or ai-edge-litert (cp312+, 64-bit only);
    # pyproject's markers pick between them, this only explains the one case with neither.
    if ((python_minor >= 12)) && [ "$arch" = armhf ]; then
        die "no TFLite runtime for 32-bit ($arch) Python 3.$python_minor: tflite-runtime stops" \
            "at 3.11 and ai-edge-litert has no armv7l wheels. Use 64-bit Raspberry Pi OS."
    fi
    if ((python_minor >= 12)); then
        say "Python 3.$python_minor on $arch: runtime ai-edge-litert"
    else
        say "Python 3.$python_minor on $arch: runtime tflite-runtime 2.14 with numpy<2"
    fi
}

build_venv() {
    check_runtime_available
    [ -x "$VENV/bin/python" ] || {
        say "creating $VENV"
        python3 -m venv --system-site-packages "$VENV"
    }
    # Build from a copy: pip builds in the source tree, which may be read-only or shared.
    local build
    build=$(mktemp -d)
    cleanup+=("$build")
    cp -r "$source_dir"/pyproject.toml "$source_dir"/README.md "$source_dir"/daemon \
        "$source_dir"/drivers "$build"/
    say "installing odar and its runtime into $VENV (pip)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$build"
    # gpiozero's pin library: Raspberry Pi OS ships python3-lgpio (seen through
    # --system-site-packages); plain Debian has none, PyPI has wheels.
    "$VENV/bin/python" -c 'import lgpio' 2>/dev/null || {
        say "installing lgpio (gpiozero's /dev/gpiochip pin library) into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check lgpio
    }
    "$VENV/bin/odar" --version >/dev/null || die "$VENV/bin/odar does not run"
}

# ---- files -----------------------------------------------------------------------------

install_files() {
    install -d -m 0755 "$PREFIX" "$PREFIX/artifacts" "$PREFIX/share/doc" "$CONFIG_DIR"
    local artifacts=("$source_dir"/artifacts/*.tflite "$source_dir"/artifacts/manifest.json)
    local found=no file
    for file in "${artifacts[@]}"; do
        [ -f "$file" ] || continue
        install -m 0644 "$file" "$PREFIX/artifacts/"
        found=yes
    done
    [ $found = yes ] || say "warning: no artifacts in $source_dir/artifacts" \
        "(build them with scripts/build_artifacts.py); the service needs them to start"
    [ -f "$source_dir/docs/operations.md" ] &&
        install -m 0644 "$source_dir/docs/operations.md" "$PREFIX/share/doc/"

    # The shipped config with the installed artifacts' absolute path.
    local shipped
    shipped=$(mktemp)
    cleanup+=("$shipped")
    sed -E "s|^([[:space:]]+artifacts_dir:).*|\1 $PREFIX/artifacts|" \
        "$source_dir/etc/odar.yaml" >"$shipped"
    if [ ! -f "$CONFIG" ]; then
        install -m 0644 "$shipped" "$CONFIG"
        say "installed $CONFIG"
    elif ! cmp -s "$shipped" "$CONFIG"; then
        install -m 0644 "$shipped" "$CONFIG.dist"
        say "kept your $CONFIG; the shipped one is $CONFIG.dist"
    fi

    install -m 0644 "$source_dir/etc/odar.service" "$UNIT_PATH"
    # `journalctl -x` explains odar's main events (MESSAGE_IDs in daemon/message_ids.py).
    install -D -m 0644 "$source_dir/etc/odar.catalog" "$CATALOG_PATH"
    if command -v journalctl >/dev/null; then
        journalctl --update-catalog 2>/dev/null || say "warning: journalctl --update-catalog failed"
    fi
}

enable_service() {
    if command -v systemctl >/dev/null; then
        systemd_running && systemctl daemon-reload
        # Works offline too (chroot, image build): it only makes the symlink.
        systemctl enable --quiet odar.service
    else
        install -d /etc/systemd/system/multi-user.target.wants
        ln -sfn "$UNIT_PATH" /etc/systemd/system/multi-user.target.wants/odar.service
    fi
    if ! systemd_running; then
        say "no running systemd: odar is enabled and starts at the next boot"
    elif [ "$start" = no ]; then
        say "not starting (--no-start): systemctl start odar"
    elif [ "$reboot_needed" = yes ]; then
        say "not starting: the I2C settings take effect after a reboot"
    else
        systemctl restart odar.service
        say "odar started: journalctl -u odar -f"
    fi
}

install_all() {
    [ -f "$source_dir/pyproject.toml" ] && [ -f "$source_dir/etc/odar.service" ] ||
        die "$source_dir is not an odar checkout (use --source DIR)"
    ensure_packages
    ensure_user
    install_files
    enable_i2c
    ensure_gpio_access
    if [ "$build_venv" = yes ]; then
        build_venv
    else
        say "skipping the venv (--skip-venv)"
    fi
    enable_service
    [ "$reboot_needed" = no ] || say "REBOOT NEEDED: the I2C settings in config.txt changed"
}

# ---- uninstall -------------------------------------------------------------------------

uninstall_all() {
    if systemd_running; then
        systemctl disable --now --quiet odar.service 2>/dev/null || true
    elif command -v systemctl >/dev/null; then
        systemctl disable --quiet odar.service 2>/dev/null || true
    fi
    rm -f /etc/systemd/system/multi-user.target.wants/odar.service "$UNIT_PATH" "$CATALOG_PATH"
    systemd_running && systemctl daemon-reload
    rm -rf "$PREFIX"
    say "removed the service and $PREFIX"
    if [ "$purge" = yes ]; then
        rm -rf "$CONFIG_DIR" "$STATE_DIR"
        getent passwd "$USER_NAME" >/dev/null && userdel "$USER_NAME"
        say "purged $CONFIG_DIR, $STATE_DIR and the user $USER_NAME"
    else
        say "kept $CONFIG_DIR and the learnt state in $STATE_DIR (--purge removes them)"
    fi
}

if [ "$action" = install ]; then
    install_all
else
    uninstall_all
fi
