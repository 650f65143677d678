"""A throwaway systemd, booted in its own PID + mount namespace, for tests of the real unit.

Recipe: /work/shared/notes/systemd-in-a-namespace.md. What keeps the host safe:

- fresh tmpfs on /tmp and /run before systemd starts (systemd-tmpfiles would otherwise
  empty the host's real /tmp);
- /etc, /var and /opt are overlays whose upper layers live on that /run tmpfs, so users,
  units and state vanish with the namespace;
- /sys and /proc/sys are read-only binds; units that touch host-global state (udev,
  binfmt_misc, sysctl, modules, the clock, fstab remounts) are masked;
- its own network namespace (only loopback), so nothing in it can bind a host port;
- the whole thing runs under ``timeout`` and ``unshare --kill-child``, and ``__exit__``
  powers it off, then signals PID 1, then kills it.

Typical use::

    with SystemdNamespace() as ns:
        ns.add_user("odar", groups=("i2c", "gpio"))
        ns.install_unit(Path("etc/odar.service"), dropins={"test.conf": "..."})
        ns.systemctl("start", "odar.service")
        ns.wait_for(lambda: ns.show("odar.service", "SubState")["SubState"] == "running", 10)
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

SYSTEMD = Path("/lib/systemd/systemd")
REQUIRE_ENV = "ODAR_REQUIRE_SYSTEMD"
TEST_TARGET = "odar-test.target"

#: Units that must not run in the namespace: they act on host-global state (devices,
#: kernel modules and tunables, binfmt_misc, the clock, the root file system) or are
#: just noise (timers, gettys, databases).
MASKED_UNITS = (
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-hwdb-update.service",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.timer",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "binfmt-support.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-timesyncd.service",
    "systemd-remount-fs.service",
    "systemd-pstore.service",
    "systemd-firstboot.service",
    "systemd-repart.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-random-seed.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "swap.target",
    "timers.target",
    "getty.target",
    "console-getty.service",
    "postgresql.service",
    "e2scrub_reap.service",
    "cron.service",
)

_TARGET_UNIT = """\
[Unit]
Description=odar test namespace: basic.target plus whatever the test starts
Requires=basic.target
After=basic.target
AllowIsolate=yes
"""

_BOOT_SCRIPT = """\
#!/bin/sh
# Runs as PID 1 of the new namespaces, then becomes systemd. Any failure here must stop
# before systemd starts: `set -e`.
set -eu
# First, before anything else: systemd-tmpfiles must never see the host's /tmp.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
for dir in etc var opt; do
    [ -d "/$dir" ] || { echo "boot: /$dir missing on the host" >&2; exit 1; }
    mkdir -p "/run/odar-ns/$dir.upper" "/run/odar-ns/$dir.work"
    mount -t overlay overlay \\
        -o "lowerdir=/$dir,upperdir=/run/odar-ns/$dir.upper,workdir=/run/odar-ns/$dir.work" "/$dir"
done
# Bind-remounts change only this namespace's view, never the host's superblock.
mount -o remount,bind,ro /sys
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
# systemd sets the (namespaced, --uts) hostname from this at boot.
echo odar-test > /etc/hostname
mkdir -p /etc/systemd/system
for unit in @MASKED@; do
    ln -sf /dev/null "/etc/systemd/system/$unit"
done
cat > /etc/systemd/system/@TARGET@ <<'UNIT'
@TARGET_TEXT@UNIT
exec env -i container=odar-test @SYSTEMD@ --system --unit=@TARGET@ --log-target=journal
"""


def prerequisites_missing() -> str | None:
    """Why a namespace cannot be booted here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (unshare of PID and mount namespaces, overlays, useradd)"
    for tool in ("unshare", "nsenter", "timeout", "mount", "useradd", "groupadd"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH"
    if not SYSTEMD.exists():
        return f"needs systemd at {SYSTEMD} (apt-get install systemd)"
    return None


def require_systemd_namespace() -> None:
    """Skip (with the reason) when the namespace cannot be booted; fail instead under CI.

    CI sets ODAR_REQUIRE_SYSTEMD=1 so that a machine without the prerequisites cannot
    pass the suite by skipping the only tests of the unit under a real systemd.
    """
    reason = prerequisites_missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"systemd namespace test: {reason} ({REQUIRE_ENV}=1)")
    pytest.skip(f"systemd namespace test: {reason} (set {REQUIRE_ENV}=1 to make this fail)")


def venv_dropin(venv: Path) -> str:
    """A drop-in that lets the hardened unit run *venv* bound at /opt/odar/venv.

    On the Pi the venv's interpreter is /usr/bin/python3. A development venv often points at
    an interpreter under /root or /home (pyenv), which ProtectHome=yes hides: only then does
    this swap ProtectHome=yes for an empty tmpfs with just those trees bound read-only. Every
    other directive of the real unit stays in force.
    """
    config = (venv / "pyvenv.cfg").read_text()
    home = next(
        line.split("=", 1)[1].strip()
        for line in config.splitlines()
        if line.split("=", 1)[0].strip() == "home"
    )
    needed = [Path(home).resolve().parent, venv.resolve().parent]
    hidden = [path for path in needed if path.parts[1:2] in (("root",), ("home",))]
    if not hidden:
        return "[Service]\n"
    binds = " ".join(str(path) for path in hidden)
    return f"[Service]\nProtectHome=tmpfs\nBindReadOnlyPaths={binds}\n"


def _children(pid: int) -> list[int]:
    """Direct children of *pid*, by scanning /proc (no CONFIG_PROC_CHILDREN needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class SystemdNamespace:
    """Boot a throwaway systemd; drive it with systemctl/journalctl through nsenter."""

    def __init__(
        self,
        *,
        lifetime_s: float = 900.0,
        boot_timeout_s: float = 60.0,
        extra_masks: Iterable[str] = (),
    ) -> None:
        self.lifetime_s = lifetime_s
        self.boot_timeout_s = boot_timeout_s
        self.masked_units = (*MASKED_UNITS, *extra_masks)
        self.pid: int | None = None  # systemd, as seen from the host
        self._process: subprocess.Popen[bytes] | None = None
        self._stage: Path | None = None

    # ---- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> SystemdNamespace:
        reason = prerequisites_missing()
        if reason is not None:
            raise RuntimeError(f"cannot boot a systemd namespace: {reason}")
        try:
            self._boot()
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._shutdown()

    @property
    def console_log(self) -> str:
        """What the boot script and systemd printed before the journal was up."""
        if self._stage is None or not (self._stage / "console.log").exists():
            return ""
        return (self._stage / "console.log").read_text(errors="replace")

    def _boot(self) -> None:
        # Outside /tmp on purpose: the boot script mounts a fresh tmpfs there.
        self._stage = Path(tempfile.mkdtemp(prefix="odar-systemd-", dir="/var/tmp"))
        script = self._stage / "boot.sh"
        substitutions = {
            "@MASKED@": " ".join(shlex.quote(unit) for unit in self.masked_units),
            "@TARGET_TEXT@": _TARGET_UNIT,
            "@TARGET@": TEST_TARGET,
            "@SYSTEMD@": str(SYSTEMD),
        }
        text = _BOOT_SCRIPT
        for placeholder, value in substitutions.items():
            text = text.replace(placeholder, value)
        script.write_text(text)
        script.chmod(0o755)
        console = (self._stage / "console.log").open("wb")
        # timeout -> unshare -> PID 1 of the namespace (boot.sh, then systemd).
        # --kill-child: if unshare dies (timeout's TERM), the namespace's PID 1 is killed,
        # and the kernel kills everything else in the PID namespace with it.
        self._process = subprocess.Popen(
            [
                "timeout",
                "--kill-after=10",
                str(int(self.lifetime_s)),
                "unshare",
                "--pid",
                "--fork",
                "--kill-child=SIGKILL",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--mount-proc",
                "--propagation",
                "private",
                str(script),
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        console.close()
        self.pid = self._wait_for_systemd_pid()
        state = self.run(
            "timeout",
            str(int(self.boot_timeout_s)),
            "systemctl",
            "is-system-running",
            "--wait",
            check=False,
            timeout=self.boot_timeout_s + 5,
        )
        if state.stdout.strip() not in ("running", "degraded"):
            raise RuntimeError(
                f"systemd in the namespace did not finish booting: "
                f"is-system-running said {state.stdout.strip()!r} {state.stderr.strip()!r}\n"
                f"{self.console_log[-3000:]}"
            )

    def _wait_for_systemd_pid(self) -> int:
        assert self._process is not None
        deadline = time.monotonic() + self.boot_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the namespace exited with {self._process.returncode} while booting:\n"
                    f"{self.console_log[-3000:]}"
                )
            for unshare_pid in _children(self._process.pid):
                for init_pid in _children(unshare_pid):
                    # systemctl needs the manager's private socket, made just after exec.
                    private = Path(f"/proc/{init_pid}/root/run/systemd/private")
                    if _comm(init_pid) == "systemd" and private.exists():
                        return init_pid
            time.sleep(0.05)
        raise TimeoutError(f"systemd did not start within {self.boot_timeout_s} s")

    def _shutdown(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            if self.pid is not None:
                # systemctl may itself hang on a wedged manager: bound it.
                self.run("systemctl", "--no-block", "poweroff", check=False, timeout=10)
                if not self._wait_exit(10.0):
                    self._signal_init(signal.SIGRTMIN + 4)  # systemd's "poweroff now"
            if not self._wait_exit(5.0):
                self._signal_init(signal.SIGKILL)  # kills the whole PID namespace
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self._process = None
        self.pid = None
        if self._stage is not None:
            # Everything written inside lived on the namespace's tmpfs; only the boot
            # script and the console log are on the host.
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None

    def _wait_exit(self, seconds: float) -> bool:
        assert self._process is not None
        try:
            self._process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _signal_init(self, signum: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    # ---- commands inside ---------------------------------------------------------------

    def run(
        self,
        *cmd: str,
        check: bool = True,
        timeout: float = 60.0,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run *cmd* inside the namespace (as root, in systemd's mount namespace)."""
        if self.pid is None:
            raise RuntimeError("the namespace is not running")
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
            "LANG": "C.UTF-8",
        }
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "-n", "--", *cmd],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"in the namespace, `{shlex.join(cmd)}` exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def systemctl(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, check=check, timeout=timeout)

    def journalctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Without --no-pager and with no tty, journalctl never waits on a pager anyway;
        # --no-hostname keeps lines stable.
        return self.run("journalctl", "--no-pager", *args, check=check)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show -p A,B unit`` as a dict."""
        out = self.systemctl("show", "-p", ",".join(properties), unit).stdout
        pairs = (line.split("=", 1) for line in out.splitlines() if "=" in line)
        return dict(pairs)

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])

    def write_file(self, path: str, text: str, mode: int = 0o644, owner: str = "root") -> None:
        """Write *text* to *path* inside the namespace (its overlays, not the host)."""
        self.run("install", "-D", "-m", f"{mode:o}", "-o", owner, "/dev/stdin", path,
                 input_text=text)  # fmt: skip

    def read_file(self, path: str) -> str:
        return self.run("cat", path).stdout

    def bind(self, source: str | os.PathLike[str], target: str, *, read_only: bool = True) -> None:
        """Make host path *source* visible at *target* (which lives on an overlay or tmpfs)."""
        source = str(source)
        kind = "-d" if Path(source).is_dir() else "-f"
        if kind == "-d":
            self.run("mkdir", "-p", target)
        else:
            self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && touch "$1"', "sh", target)
        self.run("mount", "--bind", source, target)
        if read_only:
            self.run("mount", "-o", "remount,bind,ro", target)

    def add_user(
        self,
        name: str,
        *,
        groups: Iterable[str] = (),
        system: bool = True,
        home: str = "/nonexistent",
    ) -> None:
        """Create *name* (and any of *groups* that do not exist) inside the namespace."""
        groups = tuple(groups)
        for group in groups:
            self.run("sh", "-c", f"getent group {shlex.quote(group)} >/dev/null || "
                     f"groupadd {'--system ' if system else ''}{shlex.quote(group)}")  # fmt: skip
        cmd = ["useradd", "--home-dir", home, "--no-create-home", "--shell", "/usr/sbin/nologin"]
        if system:
            cmd.append("--system")
        if groups:
            cmd += ["--groups", ",".join(groups)]
        self.run(*cmd, name)

    def install_unit(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        dropins: Mapping[str, str] | None = None,
    ) -> str:
        """Copy a unit file into /etc/systemd/system, add drop-ins, daemon-reload.

        Returns the unit's name. Drop-ins are ``{"10-test.conf": "[Service]\\n..."}``.
        """
        path = Path(path)
        unit = name or path.name
        self.write_file(f"/etc/systemd/system/{unit}", path.read_text())
        for dropin_name, text in (dropins or {}).items():
            self.write_file(f"/etc/systemd/system/{unit}.d/{dropin_name}", text)
        self.systemctl("daemon-reload")
        return unit

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float,
        *,
        interval: float = 0.2,
        what: str = "the condition",
    ) -> T:
        """Poll *predicate* until it returns something truthy; return that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what} did not hold within {timeout} s")
            time.sleep(interval)
