"""`odar run` under a real systemd with the real unit (issue 5): emulated sensor, mock pins, a
scripted wearer, the repository's artifacts and the checkout's venv.

One throwaway systemd (tests/systemd_namespace.py) serves the whole file. The service goes
through one life, each stage a module-scoped fixture that the next builds on, so any test can
also run alone (``-k``) and still set up what it needs:

    started    `systemctl start` with tests/scenarios/systemd-learn.yaml
    trained    the scenario collected both classes and trained until the loss settled
    restarted  `kill -9` of the main process, systemd's restart resumes training
    stopped    `systemctl stop` in the middle of that training

The watchdog, failure and bad-config tests start the service afresh with their own scenario or
config; a hung or failing daemon thread comes from the scenario through the daemon's probe.
Virtual time runs at SPEED times real time, so minutes of wearing and training take seconds.
Real-time limits below only turn a hang into a failure; nothing asserts how long anything took.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from systemd_namespace import (
    TEST_TARGET,
    SystemdNamespace,
    require_systemd_namespace,
    venv_dropin,
)

from odar.engine import head_binding
from odar.manifest import load_manifest
from odar.param_store import HeadState, decode_head_state

pytestmark = pytest.mark.systemd

CHECKOUT = Path(__file__).resolve().parent.parent
UNIT = CHECKOUT / "etc" / "odar.service"
VENV = CHECKOUT / ".venv"
ARTIFACTS = CHECKOUT / "artifacts"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"

SERVICE = "odar.service"
#: Where the unit (ExecStart=, ConfigurationDirectory=, StateDirectory=) puts things.
CONFIG = "/etc/odar/odar.yaml"
STATE_DIR = "/var/lib/odar"
ARTIFACTS_INSIDE = "/opt/odar/artifacts"
#: Virtual seconds per real second in the emulated world.
SPEED = 20.0
#: Real seconds before a wait turns into a failure (a hang, not a slow machine).
LEARN_LIMIT = 180.0
RESTART_LIMIT = 60.0
#: The shipped WatchdogSec=10 made short so the stall test is quick; the daemon pings at half.
WATCHDOG_SEC = 5
#: The unit's RestartSec=: a restart loop would have started within this.
RESTART_SEC = 2

TEST_DROPIN = f"""\
[Service]
WatchdogSec={WATCHDOG_SEC}
"""

JOURNAL_FIELDS = (
    "MESSAGE",
    "_PID",
    "ODAR_EVENT",
    "ODAR_MODE",
    "ODAR_EPOCH",
    "ODAR_LOSS",
    "ODAR_SAMPLES",
    "ODAR_COUNTS",
    "ODAR_RUNTIME",
)


def _config(scenario: str, **replacements: str) -> str:
    """etc/odar.yaml as shipped, switched to the emulated wearable running *scenario*.

    Periodic saves are pushed out of reach (a day of virtual time), so the only saves are the
    ones the tests look for: on stopping training and on `systemctl stop`.
    """
    text = (CHECKOUT / "etc" / "odar.yaml").read_text()
    changes = {
        "  backend: real": "  backend: emulated",
        "    scenario: demo": f"    scenario: {scenario}",
        "    speed: 1.0": f"    speed: {SPEED}",
        "  artifacts_dir: ../artifacts": f"  artifacts_dir: {ARTIFACTS_INSIDE}",
        "  save_every_seconds: 60": "  save_every_seconds: 86400",
        **replacements,
    }
    for old, new in changes.items():
        assert old in text, f"etc/odar.yaml no longer has {old!r}: update this test"
        text = text.replace(old, new, 1)
    return text


@pytest.fixture(scope="module")
def ns() -> Iterator[SystemdNamespace]:
    require_systemd_namespace()
    if not (ARTIFACTS / "manifest.json").is_file():
        pytest.fail(
            f"{ARTIFACTS}/manifest.json is missing: build the artifacts first "
            "(scripts/build_artifacts.py, see artifacts/README.md)"
        )
    with SystemdNamespace() as namespace:
        namespace.add_user("odar", groups=("i2c", "gpio"))
        namespace.bind(VENV, "/opt/odar/venv")
        namespace.bind(ARTIFACTS, ARTIFACTS_INSIDE)
        # By name: `scenario: systemd-learn` is looked up in scenarios/ beside the config.
        for scenario in sorted(SCENARIOS.glob("systemd-*.yaml")):
            namespace.write_file(f"/etc/odar/scenarios/{scenario.name}", scenario.read_text())
        namespace.install_unit(
            UNIT, dropins={"venv.conf": venv_dropin(VENV), "test.conf": TEST_DROPIN}
        )
        # What `systemctl enable` does on the Pi (WantedBy=): a unit something wants is not
        # garbage-collected once inactive, so its Result and exit status stay readable.
        namespace.systemctl("add-wants", TEST_TARGET, SERVICE)
        yield namespace


# ---- reading the unit, the journal and the saved head ------------------------------------


def _state(ns: SystemdNamespace) -> dict[str, str]:
    return ns.show(
        SERVICE,
        "ActiveState",
        "SubState",
        "Result",
        "NRestarts",
        "MainPID",
        "ExecMainCode",
        "ExecMainStatus",
        "ExecMainStartTimestampMonotonic",
        "ActiveEnterTimestampMonotonic",
    )


def _entries(ns: SystemdNamespace, *matches: str) -> list[dict[str, str]]:
    """The unit's journal entries (oldest first) matching every ``FIELD=value`` given."""
    out = ns.journalctl(
        "-u", SERVICE, "-o", "json", f"--output-fields={','.join(JOURNAL_FIELDS)}", *matches
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _messages(ns: SystemdNamespace, *matches: str) -> str:
    return ns.journalctl("-u", SERVICE, "-o", "cat", *matches).stdout


def _systemd_says(ns: SystemdNamespace) -> str:
    """What the service manager itself logged about the unit (PID 1 of the namespace)."""
    return _messages(ns, "_PID=1")


def _first(entries: list[dict[str, str]], prefix: str) -> dict[str, str] | None:
    return next((e for e in entries if str(e.get("MESSAGE", "")).startswith(prefix)), None)


def _wait_for_entry(ns: SystemdNamespace, pid: int, prefix: str, limit: float) -> dict[str, str]:
    return ns.wait_for(
        lambda: _first(_entries(ns, f"_PID={pid}"), prefix),
        limit,
        interval=0.5,
        what=f"a journal line {prefix!r} from pid {pid}",
    )


def _losses(entries: list[dict[str, str]]) -> list[tuple[int, float]]:
    """(epoch, loss) of each epoch's loss line, in the order logged. Not the "training
    finished" event: it repeats the last epoch's loss (and that epoch, if it was shown)."""
    return [
        (int(e["ODAR_EPOCH"]), float(e["ODAR_LOSS"]))
        for e in entries
        if "ODAR_LOSS" in e and e.get("ODAR_MODE") == "train" and "ODAR_EVENT" not in e
    ]


def test_the_loss_lines_are_the_epochs_not_the_finished_event() -> None:
    # Training that finishes by itself says so with the last epoch's loss: when that epoch's
    # own line was shown too, counting both read as an epoch logged twice (a CI run did).
    entries = [
        {"ODAR_EPOCH": "398", "ODAR_LOSS": "0.011", "ODAR_MODE": "train"},
        {"ODAR_EPOCH": "399", "ODAR_LOSS": "0.010", "ODAR_MODE": "train"},
        {"ODAR_EPOCH": "399", "ODAR_LOSS": "0.010", "ODAR_MODE": "train", "ODAR_EVENT": "finished"},
        {"ODAR_EPOCH": "399", "ODAR_MODE": "train", "ODAR_EVENT": "stopped"},
    ]
    assert _losses(entries) == [(398, 0.011), (399, 0.010)]


def _params_sha256(ns: SystemdNamespace) -> str:
    return ns.run("sha256sum", f"{STATE_DIR}/head.params").stdout.split()[0]


def _saved_head(ns: SystemdNamespace) -> HeadState:
    data = base64.b64decode(ns.run("base64", "-w0", f"{STATE_DIR}/head.params").stdout)
    return decode_head_state(data, head_binding(load_manifest(ARTIFACTS)), "head.params")


def _stop_and_reset(ns: SystemdNamespace) -> None:
    ns.systemctl("stop", SERVICE)
    # Also resets the start rate limit (StartLimitBurst=5), which this file comes close to.
    ns.systemctl("reset-failed", SERVICE, check=False)


def _diagnosis(ns: SystemdNamespace) -> str:
    return f"{_state(ns)}\n{ns.journalctl('-u', SERVICE, '-n', '40', check=False).stdout}"


# ---- the service's life: start, learn, kill -9, stop ---------------------------------------


@dataclass(frozen=True)
class Started:
    returncode: int
    #: `systemctl show` right after `systemctl start` returned.
    state: dict[str, str]
    pid: int
    #: /proc/PID/status of the main process while it runs.
    proc_status: str
    odar_uid: str
    odar_groups: dict[str, str]


@pytest.fixture(scope="module")
def started(ns: SystemdNamespace) -> Started:
    ns.write_file(CONFIG, _config("systemd-learn"))
    result = ns.systemctl("start", SERVICE, check=False)
    state = _state(ns)
    pid = int(state["MainPID"])
    assert result.returncode == 0 and pid, f"{result.stderr}\n{_diagnosis(ns)}"
    groups = {
        name: ns.run("getent", "group", name).stdout.split(":")[2] for name in ("i2c", "gpio")
    }
    return Started(
        returncode=result.returncode,
        state=state,
        pid=pid,
        proc_status=ns.read_file(f"/proc/{pid}/status"),
        odar_uid=ns.run("id", "-u", "odar").stdout.strip(),
        odar_groups=groups,
    )


@dataclass(frozen=True)
class Trained:
    pid: int
    losses: list[tuple[int, float]]
    #: ODAR_LOSS values as `journalctl -F` lists them.
    loss_field_values: set[str]
    final_epoch: int
    collect_counts: tuple[int, ...]
    training_samples: int
    ready_entry: dict[str, str]
    params_sha256: str


@pytest.fixture(scope="module")
def trained(ns: SystemdNamespace, started: Started) -> Trained:
    pid = started.pid
    stopped = _wait_for_entry(ns, pid, "training stopped at epoch", LEARN_LIMIT)
    entries = _entries(ns, f"_PID={pid}")
    counts = [
        e["ODAR_COUNTS"] for e in entries if e.get("ODAR_MODE") == "collect" and "ODAR_COUNTS" in e
    ]
    assert counts, f"no collect lines from pid {pid}\n{_diagnosis(ns)}"
    training = _first(entries, "training on ")
    ready = _first(entries, "ready: ")
    assert training is not None and ready is not None, _diagnosis(ns)
    return Trained(
        pid=pid,
        losses=_losses(entries),
        loss_field_values=set(ns.journalctl("-u", SERVICE, "-F", "ODAR_LOSS").stdout.split()),
        final_epoch=int(stopped["ODAR_EPOCH"]),
        collect_counts=tuple(int(n) for n in counts[-1].split(",")),
        training_samples=int(training["ODAR_SAMPLES"]),
        ready_entry=ready,
        params_sha256=_params_sha256(ns),
    )


@dataclass(frozen=True)
class Restarted:
    killed_pid: int
    pid: int
    restarts_before: int
    restarts_after: int
    sub_state: str
    loaded_epoch: int
    resumed_from_epoch: int
    losses: list[tuple[int, float]]
    params_sha256_before: str
    params_sha256_after: str
    systemd_log: str


@pytest.fixture(scope="module")
def restarted(ns: SystemdNamespace, trained: Trained) -> Restarted:
    restarts = int(_state(ns)["NRestarts"])
    sha_before = _params_sha256(ns)
    # Read only when the restarted process starts: it resumes training instead of relearning.
    # Training that ends by itself would save before `systemctl stop` does: the resumed run
    # trains until it is stopped, so the saves the tests look for stay the only ones.
    ns.write_file(
        CONFIG, _config("systemd-resume", **{"  stop_when: settled": "  stop_when: never"})
    )
    ns.run("kill", "-9", str(trained.pid))

    def restarted_pid() -> int | None:
        state = _state(ns)
        pid = int(state["MainPID"])
        fresh = pid not in (0, trained.pid) and int(state["NRestarts"]) > restarts
        return pid if fresh and state["SubState"] == "running" else None

    pid = ns.wait_for(restarted_pid, RESTART_LIMIT, what="systemd's restart after kill -9")
    loaded = _wait_for_entry(ns, pid, "loaded the head trained for", RESTART_LIMIT)
    resumed = _wait_for_entry(ns, pid, "training on ", RESTART_LIMIT)
    losses = ns.wait_for(
        lambda: (lambda found: found if len(found) >= 3 else None)(
            _losses(_entries(ns, f"_PID={pid}"))
        ),
        RESTART_LIMIT,
        interval=0.5,
        what="three loss lines after the restart",
    )
    state = _state(ns)
    return Restarted(
        killed_pid=trained.pid,
        pid=pid,
        restarts_before=restarts,
        restarts_after=int(state["NRestarts"]),
        sub_state=state["SubState"],
        loaded_epoch=int(loaded["ODAR_EPOCH"]),
        resumed_from_epoch=int(resumed["ODAR_EPOCH"]),
        losses=losses,
        params_sha256_before=sha_before,
        params_sha256_after=_params_sha256(ns),
        systemd_log=_systemd_says(ns),
    )


@dataclass(frozen=True)
class Stopped:
    pid: int
    returncode: int
    state: dict[str, str]
    stopped_event: bool
    stopped_at_epoch: int
    saved: HeadState
    params_sha256_before: str
    params_sha256_after: str


@pytest.fixture(scope="module")
def stopped(ns: SystemdNamespace, restarted: Restarted) -> Stopped:
    sha_before = _params_sha256(ns)
    # `systemctl stop` returns once the main process has exited (or TimeoutStopSec killed it).
    result = ns.systemctl("stop", SERVICE, check=False)
    state = _state(ns)
    pid = restarted.pid
    training_end = _wait_for_entry(ns, pid, "training stopped at epoch", RESTART_LIMIT)
    entries = _entries(ns, f"_PID={pid}", "ODAR_EVENT=stopped")
    return Stopped(
        pid=pid,
        returncode=result.returncode,
        state=state,
        stopped_event=any(e.get("MESSAGE") == "stopped" for e in entries),
        stopped_at_epoch=int(training_end["ODAR_EPOCH"]),
        saved=_saved_head(ns),
        params_sha256_before=sha_before,
        params_sha256_after=_params_sha256(ns),
    )


def _status_field(proc_status: str, name: str) -> list[str]:
    line = next(line for line in proc_status.splitlines() if line.startswith(f"{name}:"))
    return line.split()[1:]


def test_start_returns_once_ready_was_sent(ns: SystemdNamespace, started: Started) -> None:
    # Type=notify: until READY=1 arrives the unit is "activating" and `systemctl start` waits.
    assert started.returncode == 0
    assert (started.state["ActiveState"], started.state["SubState"]) == ("active", "running")
    assert int(started.state["ActiveEnterTimestampMonotonic"]) > int(
        started.state["ExecMainStartTimestampMonotonic"]
    )
    # The daemon sends READY=1 only once the sensor streams, and says so in the journal.
    ready = _wait_for_entry(ns, started.pid, "ready: ", 10)
    assert ready["ODAR_EVENT"] == "ready"
    assert "Started odar" in _systemd_says(ns)


def test_service_runs_as_odar_not_root(ns: SystemdNamespace, started: Started) -> None:
    # Real, effective, saved and file-system uid: all odar's.
    uids = _status_field(started.proc_status, "Uid")
    assert uids == [started.odar_uid] * 4
    assert started.odar_uid != "0"
    groups = set(_status_field(started.proc_status, "Groups"))
    assert set(started.odar_groups.values()) <= groups  # SupplementaryGroups=i2c gpio
    owner = ns.run("stat", "-c", "%U %a", STATE_DIR).stdout.split()
    assert owner == ["odar", "750"]


def test_collect_and_train_log_falling_losses(trained: Trained) -> None:
    # Collect: both classes have at least the 12 windows the scenario waited for.
    assert len(trained.collect_counts) == 2
    assert min(trained.collect_counts) >= 12
    assert trained.training_samples == sum(trained.collect_counts)
    # Train: ODAR_EPOCH rises, ODAR_LOSS falls.
    epochs = [epoch for epoch, _ in trained.losses]
    losses = [loss for _, loss in trained.losses]
    assert len(losses) >= 5, trained.losses
    assert epochs == sorted(set(epochs)), "epochs out of order or repeated"
    assert trained.final_epoch >= epochs[-1]
    assert losses[-1] < 0.5 * losses[0], trained.losses
    assert sum(losses[-5:]) < sum(losses[:5]), trained.losses
    # What a user sees with `journalctl -u odar -F ODAR_LOSS`: the same values.
    assert f"{losses[-1]:.6g}" in trained.loss_field_values
    assert len(trained.loss_field_values) >= len(set(losses))


def test_tflite_runs_under_the_units_hardening(
    ns: SystemdNamespace, started: Started, trained: Trained
) -> None:
    # The process that loaded five interpreters, ran the bottleneck on every collected window
    # and trained for hundreds of epochs did so under the unit's sandbox, not a relaxed one:
    # the drop-ins of this test only shorten WatchdogSec and expose the dev venv.
    unit = ns.show(SERVICE, "MemoryDenyWriteExecute", "SystemCallFilter", "NoNewPrivileges", "User")
    assert unit["MemoryDenyWriteExecute"] == "yes"
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["User"] == "odar"
    allowed = set(unit["SystemCallFilter"].split())
    assert "read" in allowed and "mount" not in allowed and "setrlimit" not in allowed
    # Seccomp 2 (filter mode) is how both SystemCallFilter= and MemoryDenyWriteExecute= apply.
    assert _status_field(started.proc_status, "Seccomp") == ["2"]
    assert _status_field(started.proc_status, "NoNewPrivs") == ["1"]
    assert trained.ready_entry["ODAR_RUNTIME"] in ("tflite-runtime", "ai-edge-litert")
    assert trained.final_epoch > 0


def test_kill_9_restarts_with_the_learnt_parameters(trained: Trained, restarted: Restarted) -> None:
    assert restarted.pid != restarted.killed_pid
    assert restarted.restarts_after == restarted.restarts_before + 1
    assert restarted.sub_state == "running"
    assert "status=9/KILL" in restarted.systemd_log
    # The new process loaded what the old one saved when training stopped...
    assert restarted.loaded_epoch == trained.final_epoch
    assert restarted.params_sha256_before == trained.params_sha256
    # ...left the file alone on start-up (no fresh `initialize` written over it)...
    assert restarted.params_sha256_after == restarted.params_sha256_before
    # ...and carries on from it: the loss starts where the first run ended, not from scratch.
    assert restarted.resumed_from_epoch == trained.final_epoch
    assert restarted.losses[0][0] > trained.final_epoch
    first_run_start = trained.losses[0][1]
    assert restarted.losses[0][1] < 0.5 * first_run_start, (restarted.losses, trained.losses)


def test_stop_saves_and_exits_0(restarted: Restarted, stopped: Stopped) -> None:
    assert stopped.returncode == 0
    assert stopped.state["ActiveState"] == "inactive"
    assert stopped.state["Result"] == "success"
    assert stopped.state["ExecMainCode"] == "1", stopped.state  # CLD_EXITED, not killed
    assert stopped.state["ExecMainStatus"] == "0"
    assert stopped.stopped_event
    # Periodic saves are off (a day of virtual time): the file can hold the epoch training
    # reached after the restart only because SIGTERM saved it.
    assert stopped.stopped_at_epoch > restarted.loaded_epoch
    assert stopped.saved.epoch == stopped.stopped_at_epoch
    assert stopped.params_sha256_after != stopped.params_sha256_before


# ---- systemctl reload: SIGHUP -----------------------------------------------------------


def test_reload_applies_a_good_config_and_keeps_running_on_a_bad_one(
    ns: SystemdNamespace,
) -> None:
    _stop_and_reset(ns)
    ns.write_file(CONFIG, _config("systemd-idle"))
    ns.systemctl("start", SERVICE)
    pid = int(_state(ns)["MainPID"])

    ns.write_file(CONFIG, _config("systemd-idle", **{"  threshold: 0.75": "  threshold: 0.9"}))
    ns.systemctl("reload", SERVICE)
    reloaded = _wait_for_entry(ns, pid, "configuration reloaded", RESTART_LIMIT)

    ns.write_file(CONFIG, _config("systemd-idle", **{"  rate_hz: 100": "  rate_hz: 5000"}))
    ns.systemctl("reload", SERVICE)
    refused = _wait_for_entry(ns, pid, "reload refused", RESTART_LIMIT)
    state = _state(ns)
    ns.systemctl("stop", SERVICE)
    assert reloaded["ODAR_EVENT"] == "reload"
    # The bad file names its key, and the service carries on with what it had.
    assert "sensor.rate_hz" in refused["MESSAGE"]
    assert state["ActiveState"] == "active" and state["SubState"] == "running"
    assert int(state["MainPID"]) == pid
    assert state["NRestarts"] == "0"


# ---- failures: a stalled sensor loop, a bad config ------------------------------------------


def test_stalled_sensor_loop_ends_in_a_watchdog_restart(ns: SystemdNamespace) -> None:
    _stop_and_reset(ns)
    ns.write_file(CONFIG, _config("systemd-stall"))
    ns.systemctl("start", SERVICE)
    stalled = _state(ns)
    stalled_pid, restarts = int(stalled["MainPID"]), int(stalled["NRestarts"])
    # The restart reads the config again: give it a wearer who does not stall the bus.
    ns.write_file(CONFIG, _config("systemd-idle"))

    def restarted_pid() -> int | None:
        state = _state(ns)
        pid = int(state["MainPID"])
        fresh = pid not in (0, stalled_pid) and int(state["NRestarts"]) == restarts + 1
        return pid if fresh and state["SubState"] == "running" else None

    new_pid = ns.wait_for(restarted_pid, RESTART_LIMIT, what="the watchdog's restart")
    manager = _systemd_says(ns)
    stalled_log = _messages(ns, f"_PID={stalled_pid}")
    ns.systemctl("stop", SERVICE)
    assert new_pid != stalled_pid
    assert "Watchdog timeout" in manager
    assert "status=6/ABRT" in manager
    assert "scenario: the I2C bus stalls" in stalled_log
    # PYTHONFAULTHANDLER=1 (set by the unit): the hung stack lands in the journal.
    assert "Fatal Python error: Aborted" in stalled_log
    assert "drivers/emulated/bus.py" in stalled_log  # the transaction that hangs
    assert "in _sensor_loop" in stalled_log


def _restart_after(ns: SystemdNamespace, scenario: str, what: str) -> tuple[int, int, str, str]:
    """Start with *scenario*, wait for systemd's restart of it (on the idle wearer); return
    (the first pid, the restarted pid, what the manager logged, what the first pid logged)."""
    _stop_and_reset(ns)
    ns.write_file(CONFIG, _config(scenario))
    ns.systemctl("start", SERVICE)
    first = _state(ns)
    first_pid, restarts = int(first["MainPID"]), int(first["NRestarts"])
    ns.write_file(CONFIG, _config("systemd-idle"))

    def restarted_pid() -> int | None:
        state = _state(ns)
        pid = int(state["MainPID"])
        fresh = pid not in (0, first_pid) and int(state["NRestarts"]) == restarts + 1
        return pid if fresh and state["SubState"] == "running" else None

    new_pid = ns.wait_for(restarted_pid, RESTART_LIMIT, what=what)
    manager = _systemd_says(ns)
    first_log = _messages(ns, f"_PID={first_pid}")
    ns.systemctl("stop", SERVICE)
    return first_pid, new_pid, manager, first_log


def test_a_hung_window_thread_ends_in_a_watchdog_restart(ns: SystemdNamespace) -> None:
    hung_pid, new_pid, manager, hung_log = _restart_after(
        ns, "systemd-hang", "the watchdog's restart of a hung window thread"
    )
    assert new_pid != hung_pid
    assert "Watchdog timeout" in manager
    assert "status=6/ABRT" in manager
    assert "scenario: the daemon's odar-windows thread hangs" in hung_log
    # The sensor kept streaming: the main thread stopped pinging because of the window thread.
    assert "no progress from odar-windows" in hung_log
    assert "Fatal Python error: Aborted" in hung_log
    assert "in _window_loop" in hung_log


def test_a_failed_window_thread_exits_70_and_is_restarted(ns: SystemdNamespace) -> None:
    failed_pid, new_pid, manager, _ = _restart_after(
        ns, "systemd-fail", "the restart after exit 70"
    )
    assert new_pid != failed_pid
    assert "status=70/SOFTWARE" in manager
    errors = _messages(ns, f"_PID={failed_pid}", "-p", "err")
    assert "the odar-windows thread failed, stopping for a restart" in errors
    assert "Traceback" in errors and "InjectedFault" in errors  # through logging, at -p err


def test_bad_config_exits_78_without_a_restart_loop(ns: SystemdNamespace) -> None:
    _stop_and_reset(ns)
    ns.write_file(CONFIG, _config("systemd-idle", **{"  rate_hz: 100": "  rate_hz: 5000"}))
    restarts_scheduled = _systemd_says(ns).count("Scheduled restart job")
    result = ns.systemctl("start", SERVICE, check=False)
    ns.wait_for(lambda: _state(ns)["ActiveState"] == "failed", 30, what="odar.service failed")
    # RestartSec=2: a restart, if one were coming, would have been scheduled by now.
    time.sleep(RESTART_SEC + 1)
    state = _state(ns)
    pid = ns.show(SERVICE, "ExecMainPID")["ExecMainPID"]
    odar_said = _messages(ns, f"_PID={pid}")
    assert result.returncode != 0
    assert state["ActiveState"] == "failed"
    assert state["Result"] == "exit-code"
    assert state["ExecMainStatus"] == "78"
    assert state["NRestarts"] == "0"
    assert _systemd_says(ns).count("Scheduled restart job") == restarts_scheduled
    # cli.py prints the ConfigError on stderr, which the unit sends to the journal.
    assert "odar: /etc/odar/odar.yaml: sensor.rate_hz: 5000.0 is outside" in odar_said
