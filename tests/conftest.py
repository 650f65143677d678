"""Shared fixtures for the daemon's tests: repo paths, the artifacts, configs, mock pins, and a
daemon running on the emulated wearable in a thread.

Everything is the real thing except the hardware: the real MPU6050 driver talks to the
register-level emulator, gpiozero runs on its MockFactory, the real TFLite runtime runs the
repository's artifacts. Waiting is on conditions with generous real-time limits (a limit only
turns a hang into a failure; no test asserts how long anything took).
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from odar.config import load_config
from odar.haptics import Pattern
from odar.service import Inferred, Observer

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO / "artifacts"
#: Virtual seconds per real second in daemon tests: a 400-sample window (4 s) in 0.2 s.
TEST_SPEED = 20.0
#: Real seconds a test waits for a condition before it fails (a hang, never a slow machine).
WAIT_LIMIT = 60.0
#: Samples between windows in daemon tests: a new window every 0.5 virtual seconds.
TEST_HOP = 50

IDLE_SCENARIO: dict[str, Any] = {
    "wearer": {"placement": "wrist", "seed": 3},
    "steps": [{"activity": "sitting"}, {"end": "idle"}],
}


def may_take_sched_fifo(priority: int = 10) -> bool:
    """Whether this process may put a thread on SCHED_FIFO at *priority* (root, or
    RLIMIT_RTPRIO, and a cpu cgroup with real-time runtime): the kernel's to say."""
    result: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return result[0]


def scheduling_of(tid: int) -> tuple[int, int]:
    """(policy without SCHED_RESET_ON_FORK, priority) of thread or process *tid*."""
    policy = os.sched_getscheduler(tid) & ~os.SCHED_RESET_ON_FORK
    return policy, os.sched_getparam(tid).sched_priority


def wait_until(predicate: Callable[[], object], what: str, limit: float = WAIT_LIMIT) -> None:
    """Poll *predicate* until true; fail naming *what* after *limit* real seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {limit:.0f} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """The repository's artifacts; a missing build is a failure that says what to do."""
    manifest = ARTIFACTS_DIR / "manifest.json"
    if not manifest.is_file():
        pytest.fail(
            f"{manifest} is missing: build the artifacts first "
            "(python scripts/build_artifacts.py, see README.md)"
        )
    return ARTIFACTS_DIR


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_bench_config(directory: Path, artifacts_dir: Path) -> Path:
    """The config the bench tests run `odar bench ...` on: the emulated wearable (seed 7), a
    0.5 s hop, the checkout's artifacts."""
    config = directory / "odar.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sensor": {"backend": "emulated", "emulated": {"seed": 7}},
                "inference": {"hop_samples": 50},
                "paths": {"artifacts_dir": str(artifacts_dir)},
            }
        ),
        encoding="utf-8",
    )
    return config


@dataclass
class ConfigWriter:
    """Writes test configs (and their scenarios) into one directory."""

    directory: Path
    artifacts_dir: Path

    def base(self, state_dir: Path) -> dict[str, Any]:
        return {
            "sensor": {
                "backend": "emulated",
                "rate_hz": 100,
                "emulated": {"scenario": "scenario.yaml", "speed": TEST_SPEED, "seed": 11},
            },
            "inference": {"hop_samples": TEST_HOP},
            # Tests stop training with the button; test_service's settled test overrides this.
            "training": {"save_every_seconds": 30, "stop_when": "never"},
            "paths": {
                "artifacts_dir": str(self.artifacts_dir),
                "state_dir": str(state_dir),
                "runtime_dir": str(state_dir.parent / "run"),
            },
            "logging": {"loss_lines_per_second": 1000, "probability_lines_per_second": 1000},
            "runtime": {"num_threads": 1},
        }

    def write(
        self,
        overrides: dict[str, Any] | None = None,
        *,
        scenario: dict[str, Any] | None = None,
        name: str = "odar.yaml",
        state_dir: Path | None = None,
    ) -> Path:
        """A config file; its scenario (default: sit idle forever) is written beside it."""
        state_dir = state_dir if state_dir is not None else self.directory / "state"
        document = deep_merge(self.base(state_dir), overrides or {})
        scenario_name = document["sensor"]["emulated"]["scenario"]
        scenario_path = self.directory / scenario_name
        if scenario is not None or not scenario_path.exists():
            scenario_path.write_text(yaml.safe_dump(scenario or IDLE_SCENARIO), encoding="utf-8")
        path = self.directory / name
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path


@pytest.fixture
def config_writer(tmp_path: Path, artifacts_dir: Path) -> ConfigWriter:
    return ConfigWriter(tmp_path, artifacts_dir)


@pytest.fixture
def mock_factory() -> Iterator[Any]:
    """A fresh MockFactory whose pins can drive PWM too; reset (pins and claims) afterwards."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()


def pulses_on(pin: Any) -> int:
    """How many times a mock output pin went high since its history was last cleared."""
    return sum(1 for state in itertools.islice(pin.states, 1, None) if state.state)


class Watcher(Observer):
    """What a running daemon reports through its public hook, recorded for the tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Patterns the motor was given to confirm presses, and the ones no press asked for
        #: (finished, sample removed); not the detection pulses.
        self.patterns: list[Pattern] = []
        self.inferences: list[Inferred] = []
        #: (first timestamp, last timestamp, samples, gap) of every block with samples.
        self.blocks: list[tuple[float, float, int, bool]] = []
        #: (t_start, t_end, timestamps) of every window cut.
        self.windows: list[tuple[float, float, Any]] = []

    def block_read(self, block: Any) -> None:
        if len(block):
            first, last = float(block.timestamps[0]), float(block.timestamps[-1])
            with self.lock:
                self.blocks.append((first, last, len(block), block.gap))

    def window_cut(self, window: Any) -> None:
        with self.lock:
            self.windows.append((window.t_start, window.t_end, window.timestamps.copy()))

    def confirmed(self, event: Any, pattern: Pattern) -> None:
        with self.lock:
            self.patterns.append(pattern)

    def inferred(self, inferred: Inferred) -> None:
        with self.lock:
            self.inferences.append(inferred)

    def played(self, pattern: Pattern) -> None:
        with self.lock:
            self.patterns.append(pattern)


@dataclass
class RunningDaemon:
    """A :class:`odar.service.Daemon` on an emulated wearable whose ``run()`` goes on in a
    thread (its scenario playing)."""

    daemon: Any
    world: Any
    config_path: Path
    thread: threading.Thread
    watch: Watcher
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def patterns(self) -> list[Pattern]:
        with self.watch.lock:
            return list(self.watch.patterns)

    def pin(self, button: str) -> Any:
        return self.world.press_pins()[button]

    @property
    def motor_pin(self) -> Any:
        return self.world.pin_factory.pin(self.daemon.config.pins.motor)

    def press(self, button: str) -> None:
        """A finger on the button: gpiozero runs the daemon's handler before drive_low returns."""
        pin = self.pin(button)
        pin.drive_low()
        pin.drive_high()

    def press_and_feel(self, button: str) -> tuple[Pattern, int]:
        """Press, let the motor finish, and return (the pattern played, pulses on the pin)."""
        self.motor_idle()
        self.motor_pin.clear_states()
        played = len(self.patterns)
        self.press(button)
        wait_until(lambda: len(self.patterns) > played, f"a haptic pattern after {button}")
        self.motor_idle()
        return self.patterns[-1], pulses_on(self.motor_pin)

    def motor_idle(self) -> None:
        wait_until(lambda: self.daemon.wearable.motor.wait(0.05), "the motor to go quiet")

    def switch_activity(self, activity: str) -> None:
        self.world.motion.switch(self.daemon.wearable.clock.monotonic(), activity)

    def counts(self) -> tuple[int, ...]:
        return self.daemon.status().counts

    def collect(self, class_index: int, samples: int) -> None:
        """Select *class_index* (stopped, in Collect) and collect until it has *samples*."""
        status = self.daemon.status()
        assert status.mode.value == "collect" and not status.running
        while self.daemon.status().class_index != class_index:
            self.press("class")
        self.press("start")
        wait_until(
            lambda: self.counts()[class_index] >= samples,
            f"{samples} samples of class {class_index}",
        )
        self.press("start")

    def wait_ready(self) -> None:
        """Until READY; an error raised by run() is re-raised."""
        wait_until(lambda: self.daemon.status().ready or self.outcome, "READY")
        if "error" in self.outcome:
            raise self.outcome["error"]
        if "status" in self.outcome:
            pytest.fail(f"the daemon exited with {self.outcome['status']} before READY")

    def halt(self) -> None:
        """Teardown: stop if still running, never raise."""
        if self.thread.is_alive():
            self.daemon.request_stop()
            self.thread.join(WAIT_LIMIT)

    def stop(self) -> int:
        """request_stop() (what SIGTERM does) and wait for run() to return its exit status."""
        self.daemon.request_stop()
        self.thread.join(WAIT_LIMIT)
        if self.thread.is_alive():
            pytest.fail("the daemon did not stop")
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["status"]


def build_daemon(config_path: Path, **options: Any) -> tuple[Any, Any]:
    """(the emulated wearable, a Daemon on it) for *config_path*, as ``odar run`` builds them."""
    from odar.harness.emulated_wearable import EmulatedWearable
    from odar.service import Daemon

    config = load_config(config_path)
    world = EmulatedWearable.open(config, config_path.parent)
    options.setdefault("probe", world.thread_faults)
    return world, Daemon(config, world.wearable, config_path=config_path, **options)


def launch_daemon(
    config_path: Path,
    *,
    notifier: Any = None,
    watch: Watcher | None = None,
    wait_ready: bool = True,
) -> RunningDaemon:
    """Run a Daemon on *config_path* in a thread, watched (by a fresh :class:`Watcher` unless
    given one); by default wait until it is READY. A daemon that cannot be built raises here."""
    watch = watch if watch is not None else Watcher()
    world, daemon = build_daemon(config_path, notifier=notifier, observer=watch, seed=5)
    running = run_in_thread(world, daemon, config_path, watch)
    if wait_ready:
        running.wait_ready()
    return running


def run_in_thread(
    world: Any,
    daemon: Any,
    config_path: Path,
    watch: Watcher,
    *,
    after: Callable[[], object] | None = None,
) -> RunningDaemon:
    """``world.run(daemon)`` in the thread "test-daemon", started; *after* runs in that thread
    once run() has returned, its result in ``outcome["after"]``."""
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["status"] = world.run(daemon)
        except BaseException as error:
            outcome["error"] = error
        if after is not None:
            outcome["after"] = after()

    thread = threading.Thread(target=body, name="test-daemon", daemon=True)
    running = RunningDaemon(daemon, world, config_path, thread, watch, outcome)
    thread.start()
    return running


@pytest.fixture
def start_daemon(config_writer: ConfigWriter) -> Iterator[Callable[..., RunningDaemon]]:
    """launch_daemon() on a config (default: config_writer's, sitting idle); every daemon still
    running at teardown is stopped, so pins and files are released."""
    started: list[RunningDaemon] = []

    def start(
        config_path: Path | None = None, *, wait_ready: bool = True, **options: Any
    ) -> RunningDaemon:
        path = config_path if config_path is not None else config_writer.write()
        # Registered before waiting, so a daemon that fails to become ready is still halted.
        running = launch_daemon(path, wait_ready=False, **options)
        started.append(running)
        if wait_ready:
            running.wait_ready()
        return running

    yield start
    for running in started:
        running.halt()


@pytest.fixture
def short_socket_dir() -> Iterator[Path]:
    """AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer."""
    with tempfile.TemporaryDirectory(prefix="odar-") as directory:
        yield Path(directory)


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """A reload calls setup_logging(), which sets the root level and adds a stderr handler."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
