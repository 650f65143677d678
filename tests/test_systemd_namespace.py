"""The namespace harness itself: boots, runs a Type=notify service as its user, powers off."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd_namespace import SystemdNamespace, require_systemd_namespace

pytestmark = pytest.mark.systemd

# Sends READY=1 (and a status) only after a second, so a `systemctl start` that returned
# before the status arrived would be caught below.
NOTIFY_SERVICE = """\
[Unit]
Description=harness self-test: a Type=notify python one-liner

[Service]
Type=notify
NotifyAccess=main
User=notifytest
SupplementaryGroups=i2c
ExecStart=/usr/bin/python3 -c "import os, socket, time; time.sleep(1); \
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
s.connect(os.environ['NOTIFY_SOCKET'].replace('@', chr(0), 1) \
if os.environ['NOTIFY_SOCKET'].startswith('@') else os.environ['NOTIFY_SOCKET']); \
s.send(b'STATUS=serving'); s.send(b'READY=1'); \
print('notify one-liner is up', flush=True); time.sleep(600)"
"""

NEVER_READY_SERVICE = """\
[Service]
Type=notify
TimeoutStartSec=2
ExecStart=/bin/sleep 600
"""

SILENT_WATCHDOG_SERVICE = """\
[Service]
Type=notify
NotifyAccess=main
WatchdogSec=2
Restart=on-failure
RestartSec=1
ExecStart=/usr/bin/python3 -c "import os, socket; \
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(os.environ['NOTIFY_SOCKET']); \
s.send(b'READY=1'); import time; time.sleep(600)"
"""


@pytest.fixture(scope="module")
def namespace() -> Iterator[SystemdNamespace]:
    require_systemd_namespace()
    with SystemdNamespace() as ns:
        yield ns


def _write_unit(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_namespace_has_its_own_tmp_run_and_etc(namespace: SystemdNamespace) -> None:
    mounts = namespace.run("findmnt", "-n", "-o", "TARGET,FSTYPE", "--list").stdout
    fstype = dict(line.split() for line in mounts.splitlines() if len(line.split()) == 2)
    assert fstype["/tmp"] == "tmpfs"
    assert fstype["/run"] == "tmpfs"
    assert fstype["/etc"] == "overlay"
    assert fstype["/var"] == "overlay"
    assert namespace.run("cat", "/proc/1/comm").stdout.strip() == "systemd"


def test_user_created_inside_is_not_on_the_host(namespace: SystemdNamespace) -> None:
    namespace.add_user("harnessuser", groups=("harnessgroup",))
    inside = namespace.run("id", "-nG", "harnessuser").stdout.split()
    assert "harnessgroup" in inside
    assert "harnessuser:" not in Path("/etc/passwd").read_text()


def test_start_returns_after_ready_and_runs_as_the_user(
    namespace: SystemdNamespace, tmp_path: Path
) -> None:
    namespace.add_user("notifytest", groups=("i2c",))
    unit = namespace.install_unit(_write_unit(tmp_path, "notifytest.service", NOTIFY_SERVICE))
    namespace.systemctl("start", unit)
    # The status only exists once READY=1 arrived: start waited for it.
    state = namespace.show(unit, "ActiveState", "SubState", "StatusText", "MainPID")
    assert state["ActiveState"] == "active"
    assert state["SubState"] == "running"
    assert state["StatusText"] == "serving"
    status = namespace.read_file(f"/proc/{state['MainPID']}/status")
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid == namespace.run("id", "-u", "notifytest").stdout.strip()
    assert uid != "0"
    namespace.wait_for(
        lambda: "notify one-liner is up" in namespace.journalctl("-u", unit, "-o", "cat").stdout,
        10,
        what="the service's line in the journal",
    )
    namespace.systemctl("stop", unit)
    assert namespace.show(unit, "ActiveState")["ActiveState"] == "inactive"


def test_start_fails_when_ready_never_comes(namespace: SystemdNamespace, tmp_path: Path) -> None:
    unit = namespace.install_unit(_write_unit(tmp_path, "neverready.service", NEVER_READY_SERVICE))
    result = namespace.systemctl("start", unit, check=False)
    assert result.returncode != 0
    assert namespace.show(unit, "Result")["Result"] == "timeout"


def test_watchdog_expiry_restarts_the_service(namespace: SystemdNamespace, tmp_path: Path) -> None:
    unit = namespace.install_unit(_write_unit(tmp_path, "silent.service", SILENT_WATCHDOG_SERVICE))
    namespace.systemctl("start", unit)
    namespace.wait_for(
        lambda: int(namespace.show(unit, "NRestarts")["NRestarts"]) >= 1,
        15,
        what="a watchdog restart",
    )
    assert "Watchdog timeout" in namespace.journalctl("-u", unit).stdout
    namespace.systemctl("stop", unit)


def test_exit_powers_off_and_leaves_the_host_tmp_alone() -> None:
    require_systemd_namespace()
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="odar-host-marker-") as marker:
        with SystemdNamespace() as ns:
            init_pid = ns.pid
            assert init_pid is not None
            assert ns.run("ls", "/tmp").stdout.strip() == ""  # a fresh tmpfs
        assert Path(marker.name).exists()
    with pytest.raises(ProcessLookupError):
        os.kill(init_pid, 0)
