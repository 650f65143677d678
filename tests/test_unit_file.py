"""etc/odar.service: its hardening score, `verify`, the directives issue 5 asks for, and (under a
real systemd) what the hardened unit lets a process do, with a stand-in for `odar run`."""

from __future__ import annotations

import configparser
import re
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd_namespace import SystemdNamespace, require_systemd_namespace, venv_dropin

from odar.config import SensorConfig

CHECKOUT = Path(__file__).resolve().parent.parent
UNIT = CHECKOUT / "etc" / "odar.service"
VENV = CHECKOUT / ".venv"
MAX_EXPOSURE = 1.0


def _directives(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, by key (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture(scope="module")
def directives() -> dict[str, list[str]]:
    return _directives(UNIT.read_text())


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    return tool


def test_security_exposure_is_at_most_one() -> None:
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security --offline=true etc/odar.service: {exposure}")
    assert exposure <= MAX_EXPOSURE


def _verify(
    unit_text: str, root: Path, with_executable: bool = True
) -> subprocess.CompletedProcess:
    # verify checks that ExecStart= is executable: give it a scratch root with a stand-in at
    # the installed path instead of requiring an installed odar on the test machine.
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    unit_path = root / "etc/systemd/system/odar.service"
    unit_path.write_text(unit_text)
    for key, values in _directives(unit_text).items():
        if not key.startswith("Exec"):
            continue
        for command in values:
            program = root / command.split()[0].lstrip("-@:+!").lstrip("/")
            if program.name == "odar" and not with_executable:
                continue
            program.parent.mkdir(parents=True, exist_ok=True)
            program.write_text("#!/bin/sh\n")
            program.chmod(0o755)
    return subprocess.run(
        [_systemd_analyze(), "verify", "--recursive-errors=no", f"--root={root}", str(unit_path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_verify_is_clean(tmp_path: Path) -> None:
    result = _verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_catches_a_misspelt_directive(tmp_path: Path) -> None:
    # The check above is worth something only if verify reports mistakes at all.
    text = UNIT.read_text().replace("WatchdogSec=", "WatchDogSec=", 1)
    result = _verify(text, tmp_path)
    assert result.returncode != 0
    assert "WatchDogSec" in result.stderr


def test_verify_catches_a_missing_executable(tmp_path: Path) -> None:
    result = _verify(UNIT.read_text(), tmp_path, with_executable=False)
    assert result.returncode != 0
    assert "/opt/odar/venv/bin/odar" in result.stderr


def test_unit_parses_as_three_sections() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_watchdog_and_start_limit_are_set(directives: dict[str, list[str]]) -> None:
    assert 1 <= int(directives["WatchdogSec"][0]) <= 60
    assert int(directives["StartLimitBurst"][0]) >= 1
    assert int(directives["StartLimitIntervalSec"][0]) > 0


def test_real_time_is_bounded_to_the_sensor_threads_priority(
    directives: dict[str, list[str]],
) -> None:
    # The sensor thread's SCHED_FIFO (odar.realtime) at the config's default priority, and no
    # more: below the kernel's interrupt threads (50), and no service-wide real-time policy.
    limit = int(directives["LimitRTPRIO"][0])
    assert limit == SensorConfig().realtime_priority
    assert limit < 50
    assert directives["RestrictRealtime"] == ["no"]
    assert "sched_setscheduler" in directives["SystemCallFilter"]
    assert "CPUSchedulingPolicy" not in directives
    # Either would put odar in a cpu cgroup without real-time runtime (CONFIG_RT_GROUP_SCHED).
    assert "CPUWeight" not in directives
    assert "CPUAccounting" not in directives


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("ProcSubset", "hides /proc/cpuinfo and /proc/device-tree (gpiozero, XNNPACK)"),
        ("PrivateDevices", "hides /dev/i2c-* and /dev/gpiochip*"),
        ("DynamicUser", "the odar user must own /var/lib/odar across reinstalls"),
    ],
)
def test_directive_that_breaks_the_platform_is_absent(
    directives: dict[str, list[str]], key: str, why: str
) -> None:
    assert key not in directives, f"{key}= must not be set: {why}"


def test_device_allow_names_no_fixed_node(directives: dict[str, list[str]]) -> None:
    # A fixed node such as /dev/i2c-1 must exist when the unit starts; driver names do not.
    assert all(not value.startswith("/dev/") for value in directives["DeviceAllow"])


# ---- the real unit under a real systemd, with a stand-in for `odar run` ----------------

# Prints what the hardened sandbox allows, then does what /etc/odar/odar.yaml says:
# `serve` (READY=1, then wait), or `exit N` right away.
STAND_IN = r"""#!/usr/bin/python3
import os, resource, socket, sys, time

def probe(name, action):
    try:
        action()
        print(f"PROBE {name}=ok", flush=True)
    except OSError as error:
        print(f"PROBE {name}=errno{error.errno}", flush=True)

def write(path):
    with open(path, "w") as f:
        f.write("x")

assert sys.argv[1:] == ["run", "--config", "/etc/odar/odar.yaml"], sys.argv
command = open(sys.argv[3]).read().split()
names = sorted(__import__("grp").getgrgid(g).gr_name for g in os.getgroups())
print(f"PROBE groups={','.join(names)}")
print(f"PROBE cwd={os.getcwd()} lg_wd={os.environ.get('LG_WD')}")
print(f"PROBE state={os.environ.get('STATE_DIRECTORY')}")
probe("state_write", lambda: write(os.path.join(os.environ["STATE_DIRECTORY"], "probe")))
probe("fifo_in_lg_wd", lambda: os.mkfifo(os.path.join(os.environ["LG_WD"], "probe.fifo")))
probe("tmp_write", lambda: write("/tmp/probe"))
probe("system_write", lambda: write("/opt/odar/world-writable/probe"))
probe("cpuinfo_read", lambda: open("/proc/cpuinfo").read())
probe("inet_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
print(f"PROBE rtprio={resource.getrlimit(resource.RLIMIT_RTPRIO)[0]}")
probe("sched_fifo_11", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(11)))
probe("sched_fifo_10", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10)))
if command[0] == "exit":
    print(f"odar stand-in: exiting {command[1]}", flush=True)
    sys.exit(int(command[1]))
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.connect(os.environ["NOTIFY_SOCKET"])
sock.send(b"READY=1")
while True:
    sock.send(b"WATCHDOG=1")
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def hardened() -> Iterator[SystemdNamespace]:
    require_systemd_namespace()
    with SystemdNamespace() as ns:
        ns.add_user("odar", groups=("i2c", "gpio"))
        ns.write_file("/opt/odar/venv/bin/odar", STAND_IN, mode=0o755)
        ns.run("install", "-d", "-m", "0777", "/opt/odar/world-writable")
        ns.install_unit(UNIT)
        yield ns


def _can_raise_limits() -> bool:
    """Whether this process has CAP_SYS_RESOURCE (bit 24), as the systemd it boots will."""
    status = Path("/proc/self/status").read_text()
    effective = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return bool(effective >> 24 & 1)


def _probes(ns: SystemdNamespace) -> dict[str, str]:
    lines = ns.journalctl("-u", "odar.service", "-o", "cat", "--grep", "^PROBE").stdout
    pairs = (item.split("=", 1) for line in lines.splitlines() for item in line.split()[1:])
    return dict(pairs)


@pytest.mark.systemd
def test_hardened_unit_runs_as_odar_with_its_directories(hardened: SystemdNamespace) -> None:
    hardened.write_file("/etc/odar/odar.yaml", "serve\n")
    hardened.systemctl("start", "odar.service")
    assert hardened.show("odar.service", "SubState")["SubState"] == "running"
    probes = _probes(hardened)
    hardened.systemctl("stop", "odar.service")
    assert probes["groups"] == "gpio,i2c,odar"
    assert probes["cwd"] == "/run/odar"
    assert probes["lg_wd"] == "/run/odar"
    assert probes["state"] == "/var/lib/odar"
    assert probes["state_write"] == "ok"
    assert probes["fifo_in_lg_wd"] == "ok"  # what lgpio needs
    assert probes["tmp_write"] == "ok"  # PrivateTmp keeps /tmp writable under strict
    # EROFS, not EACCES: the directory is mode 0777, only ProtectSystem=strict stops it.
    assert probes["system_write"] == "errno30"
    assert probes["cpuinfo_read"] == "ok"  # no ProcSubset=pid
    assert probes["inet_socket"] == "errno97"  # EAFNOSUPPORT
    # LimitRTPRIO=10: the sensor thread's SCHED_FIFO at the default priority, EPERM above it.
    # systemd can raise the limit only as far as its own hard limit: where this sandbox lacks
    # CAP_SYS_RESOURCE that is 0, and then 10 is refused too.
    hard = resource.getrlimit(resource.RLIMIT_RTPRIO)[1]
    granted = 10 if _can_raise_limits() else min(10, hard)
    assert hardened.show("odar.service", "LimitRTPRIO")["LimitRTPRIO"] == "10"
    assert probes["rtprio"] == str(granted)
    assert probes["sched_fifo_10"] == ("ok" if granted >= 10 else "errno1")
    assert probes["sched_fifo_11"] == "errno1"
    owner = hardened.run("stat", "-c", "%U %a", "/var/lib/odar").stdout.split()
    assert owner == ["odar", "750"]


@pytest.mark.systemd
def test_exit_78_is_not_restarted(hardened: SystemdNamespace) -> None:
    hardened.write_file("/etc/odar/odar.yaml", "exit 78\n")
    hardened.systemctl("reset-failed", "odar.service", check=False)
    result = hardened.systemctl("start", "odar.service", check=False)
    assert result.returncode != 0
    hardened.wait_for(
        lambda: hardened.show("odar.service", "ActiveState")["ActiveState"] == "failed",
        10,
        what="odar.service failed",
    )
    state = hardened.show("odar.service", "ExecMainStatus", "NRestarts")
    assert state == {"ExecMainStatus": "78", "NRestarts": "0"}


@pytest.mark.systemd
def test_exit_1_is_restarted(hardened: SystemdNamespace) -> None:
    # The counterpart of the test above: other failures do restart.
    hardened.write_file("/etc/odar/odar.yaml", "exit 1\n")
    hardened.systemctl("reset-failed", "odar.service", check=False)
    hardened.systemctl("start", "odar.service", check=False)
    hardened.wait_for(
        lambda: int(hardened.show("odar.service", "NRestarts")["NRestarts"]) >= 1,
        15,
        what="a restart after exit 1",
    )
    hardened.systemctl("stop", "odar.service")


# The checkout's venv under the real unit's sandbox (seccomp filter, MemoryDenyWriteExecute,
# no network, read-only system): imports and runs what `odar run` will.
VENV_PROBE = """\
[Service]
Type=oneshot
ExecStart=
ExecStart=/opt/odar/venv/bin/python -c "import numpy, odar.cli, odar.config; \\
from tflite_runtime.interpreter import Interpreter; \\
print('VENV numpy', numpy.__version__, 'sum', int(numpy.arange(10).sum()))"
"""


@pytest.mark.systemd
def test_checkout_venv_runs_under_the_hardened_unit() -> None:
    require_systemd_namespace()
    with SystemdNamespace() as ns:
        ns.add_user("odar", groups=("i2c", "gpio"))
        ns.bind(VENV, "/opt/odar/venv")
        ns.install_unit(
            UNIT,
            name="odar-venv-probe.service",
            dropins={"venv.conf": venv_dropin(VENV), "probe.conf": VENV_PROBE},
        )
        result = ns.systemctl("start", "odar-venv-probe.service", check=False)
        log = ns.journalctl("-u", "odar-venv-probe.service", "-o", "cat").stdout
        assert result.returncode == 0, log
        assert "VENV numpy 1." in log
        assert "sum 45" in log
