"""scripts/install.sh in a scratch Debian Bookworm root (chroot), never on the test machine.

The root is debootstrapped once into $ODAR_CACHE_DIR (tests/build_cache.py; kept between
runs; delete it to rebuild) and copied for each run. The Pi's /boot/firmware/config.txt is
faked, raspi-config is absent, so install.sh edits config.txt and /etc/modules itself. The
venv is built for real with pip (about 10 s from PyPI on this machine; the test prints the
time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from build_cache import build_cache
from systemd_namespace import REQUIRE_ENV

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parent.parent
#: The debootstrapped root's folder in the build cache (tests/build_cache.py).
CACHED_ROOT_NAME = "rootfs-bookworm"
# What Raspberry Pi OS Bookworm ships that install.sh relies on (python3-venv, numpy and
# systemd bindings from the distribution, systemctl for the enable symlink).
ROOT_PACKAGES = "python3,python3-venv,python3-numpy,python3-systemd,systemd"
SOURCE_IN_ROOT = "/mnt/odar-src"
FAKE_CONFIG_TXT = """\
# Raspberry Pi OS Bookworm's default, abridged
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on
dtparam=audio=on
camera_auto_detect=1
"""


def _require_tools() -> None:
    missing = [tool for tool in ("debootstrap", "unshare", "chroot") if not shutil.which(tool)]
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (debootstrap, chroot, bind mounts)"
    elif missing:
        reason = f"needs {', '.join(missing)} (apt-get install debootstrap util-linux coreutils)"
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"install.sh test: {reason} ({REQUIRE_ENV}=1)")
    pytest.skip(f"install.sh test: {reason} (set {REQUIRE_ENV}=1 to make this fail)")


def _ensure_cached_root() -> Path:
    cache = build_cache()
    cached_root = cache / CACHED_ROOT_NAME
    if (cached_root / "usr/bin/python3").exists():
        return cached_root
    partial = Path(tempfile.mkdtemp(prefix="rootfs-bookworm.partial-", dir=cache))
    started = time.monotonic()
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={ROOT_PACKAGES}", "bookworm", partial,
         "http://deb.debian.org/debian"],
        check=True, capture_output=True, timeout=1200,
    )  # fmt: skip
    # apt's downloaded .debs are not needed to run, only to grow the cache.
    for deb in (partial / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    partial.rename(cached_root)  # atomic: a half-built root never looks cached
    print(f"debootstrap of the scratch root took {time.monotonic() - started:.0f} s")
    return cached_root


class ScratchRoot:
    """A copy of the cached root, with install.sh run inside it through chroot."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def file(self, inside: str) -> Path:
        return self.path / inside.lstrip("/")

    def text(self, inside: str) -> str:
        return self.file(inside).read_text()

    def chroot(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        root = str(self.path)
        # A private mount namespace: the binds and /proc vanish with the command.
        script = (
            f'mount -t proc proc "{root}/proc" && '
            f'mount --bind "{CHECKOUT}" "{root}{SOURCE_IN_ROOT}" && '
            f'mount -o remount,bind,ro "{root}{SOURCE_IN_ROOT}" && '
            f'exec chroot "{root}" "$@"'
        )
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{cmd} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def install(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.chroot(
            "/bin/bash", f"{SOURCE_IN_ROOT}/scripts/install.sh", "--source", SOURCE_IN_ROOT,
            *args, check=check,
        )  # fmt: skip

    def snapshot(self) -> dict[str, str]:
        """The files install.sh edits, to compare runs."""
        names = ("/boot/firmware/config.txt", "/etc/modules", "/etc/passwd", "/etc/group",
                 "/etc/odar/odar.yaml", "/etc/systemd/system/odar.service")  # fmt: skip
        return {name: self.text(name) for name in names}


def _shipped_config_with(**values: object) -> str:
    text = (CHECKOUT / "etc/odar.yaml").read_text()
    for key, value in values.items():
        lines = text.splitlines(keepends=True)
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
        lines[index] = f"{indent}{key}: {value}\n"
        text = "".join(lines)
    return text


@pytest.fixture(scope="module")
def story() -> Iterator[dict[str, object]]:
    """Runs the whole life cycle once; the tests below each check one part of it."""
    _require_tools()
    cached = _ensure_cached_root()
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=build_cache()))
    try:
        # cp -a keeps device nodes as nodes; shutil.copytree would read /dev/zero and
        # /dev/full as endless files and fill the disk.
        subprocess.run(["cp", "-a", str(cached), str(scratch / "root")], check=True)
        root = ScratchRoot(scratch / "root")
        root.file("/boot/firmware").mkdir(parents=True, exist_ok=True)
        root.file("/boot/firmware/config.txt").write_text(FAKE_CONFIG_TXT)
        root.file(SOURCE_IN_ROOT).mkdir(parents=True, exist_ok=True)
        for host_file in ("/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt"):
            # Network settings and a proxy's CA, for pip inside.
            if Path(host_file).exists():
                root.file(host_file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(host_file, root.file(host_file))
        # The user wrote a config before installing: 100 Hz on a 100 kHz bus.
        user_config = _shipped_config_with(rate_hz=100, bus_hz=100000)
        root.file("/etc/odar").mkdir()
        root.file("/etc/odar/odar.yaml").write_text(user_config)
        record: dict[str, object] = {"root": root, "user_config": user_config}

        started = time.monotonic()
        record["first"] = root.install()
        print(f"install.sh with the venv from PyPI: {time.monotonic() - started:.1f} s")
        record["after_first"] = root.snapshot()
        record["odar_version"] = root.chroot("/opt/odar/venv/bin/odar", "--version").stdout
        record["runtime"] = root.chroot(
            "/opt/odar/venv/bin/python", "-c",
            "import numpy, tflite_runtime; print(numpy.__version__)",
        ).stdout.strip()  # fmt: skip

        record["second"] = root.install()
        record["after_second"] = root.snapshot()

        edited = _shipped_config_with(rate_hz=1000, bus_hz=100000)
        root.file("/etc/odar/odar.yaml").write_text(edited)
        record["edited_config"] = edited
        record["third"] = root.install("--skip-venv")
        record["after_third"] = root.snapshot()
        record["dist_after_third"] = root.text("/etc/odar/odar.yaml.dist")

        root.file("/var/lib/odar/head_params.npz").write_bytes(b"learnt")
        record["uninstall"] = root.install("--uninstall")
        record["after_uninstall"] = {
            "unit": root.file("/etc/systemd/system/odar.service").exists(),
            "wants": root.file(
                "/etc/systemd/system/multi-user.target.wants/odar.service"
            ).is_symlink(),
            "prefix": root.file("/opt/odar").exists(),
            "state": root.file("/var/lib/odar/head_params.npz").read_bytes(),
            "config": root.text("/etc/odar/odar.yaml"),
            "user": "\nodar:" in "\n" + root.text("/etc/passwd"),
        }
        record["purge"] = root.install("--uninstall", "--purge")
        record["after_purge"] = {
            "state": root.file("/var/lib/odar").exists(),
            "config": root.file("/etc/odar").exists(),
            "user": "\nodar:" in "\n" + root.text("/etc/passwd"),
        }
        record["fresh"] = root.install("--skip-venv")
        record["fresh_config"] = root.text("/etc/odar/odar.yaml")
        yield record
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _group_members(group_file: str, group: str) -> list[str]:
    for line in group_file.splitlines():
        name, _, _, members = line.split(":")
        if name == group:
            return members.split(",") if members else []
    raise AssertionError(f"no group {group}")


def test_user_odar_is_in_i2c_and_gpio(story: dict) -> None:
    files = story["after_first"]
    passwd = {line.split(":")[0]: line.split(":") for line in files["/etc/passwd"].splitlines()}
    assert passwd["odar"][5] == "/var/lib/odar"
    assert passwd["odar"][6] == "/usr/sbin/nologin"
    assert "odar" in _group_members(files["/etc/group"], "i2c")
    assert "odar" in _group_members(files["/etc/group"], "gpio")


def test_unit_is_installed_and_enabled(story: dict) -> None:
    root: ScratchRoot = story["root"]
    assert (
        story["after_first"]["/etc/systemd/system/odar.service"]
        == (CHECKOUT / "etc/odar.service").read_text()
    )
    assert "no running systemd" in story["first"].stdout
    # Enabled even without a running systemd (a chroot): the uninstall below removed it, the
    # fresh install at the end put it back.
    link = root.file("/etc/systemd/system/multi-user.target.wants/odar.service")
    assert os.readlink(link) == "/etc/systemd/system/odar.service"


def test_venv_runs_odar_with_the_runtime_for_python_3_11(story: dict) -> None:
    assert story["odar_version"].startswith("odar ")
    major, minor = (int(part) for part in story["runtime"].split(".")[:2])
    assert (major, minor) < (2, 0)  # tflite-runtime 2.14 needs numpy 1.x
    assert "tflite-runtime" in story["first"].stdout


def test_i2c_is_enabled_in_config_txt_and_modules(story: dict) -> None:
    files = story["after_first"]
    assert "dtparam=i2c_arm=on" in files["/boot/firmware/config.txt"].splitlines()
    assert "#dtparam=i2c_arm=on" not in files["/boot/firmware/config.txt"]
    assert "i2c-dev" in files["/etc/modules"].splitlines()
    assert "dtparam=audio=on" in files["/boot/firmware/config.txt"]  # the rest untouched


def test_slow_config_keeps_the_default_bus_clock(story: dict) -> None:
    assert "i2c_arm_baudrate" not in story["after_first"]["/boot/firmware/config.txt"]


def test_fast_rate_sets_400_khz_and_asks_for_a_reboot(story: dict) -> None:
    config_txt = story["after_third"]["/boot/firmware/config.txt"].splitlines()
    assert config_txt.count("dtparam=i2c_arm_baudrate=400000") == 1
    assert "REBOOT NEEDED" in story["third"].stdout


def test_user_config_is_never_overwritten(story: dict) -> None:
    assert story["after_first"]["/etc/odar/odar.yaml"] == story["user_config"]
    assert story["after_third"]["/etc/odar/odar.yaml"] == story["edited_config"]
    assert "kept your /etc/odar/odar.yaml" in story["third"].stdout
    # The shipped config, for comparison, next to the user's.
    assert "  artifacts_dir: /opt/odar/artifacts\n" in story["dist_after_third"]


def test_second_run_changes_nothing(story: dict) -> None:
    assert story["after_second"] == story["after_first"]
    assert "creating user" in story["first"].stdout
    assert "creating user" not in story["second"].stdout
    assert "REBOOT NEEDED" not in story["second"].stdout


def test_uninstall_keeps_the_learnt_state_and_config(story: dict) -> None:
    after = story["after_uninstall"]
    assert after["unit"] is False
    assert after["wants"] is False
    assert after["prefix"] is False
    assert after["state"] == b"learnt"
    assert after["config"] == story["edited_config"]
    assert after["user"] is True


def test_purge_removes_state_config_and_user(story: dict) -> None:
    assert story["after_purge"] == {"state": False, "config": False, "user": False}


def test_fresh_config_points_at_the_installed_artifacts(story: dict) -> None:
    config = story["fresh_config"]
    assert "  artifacts_dir: /opt/odar/artifacts\n" in config
    shipped = (CHECKOUT / "etc/odar.yaml").read_text()
    assert config.replace("/opt/odar/artifacts", "../artifacts") == shipped
