"""Scripted sessions on the emulated wearable: what the wearer does and which buttons they press.

A scenario file (YAML) is a wearer and a list of steps, run in virtual time::

    wearer: {placement: wrist, seed: 7}
    steps:
      - activity: sitting          # the emulated wearer starts sitting
      - press: start               # Collect is selected: start collecting Class A
      - until: {collected: 30}     # until 30 samples of the selected class are stored
      - press: start               # stop
      - set: {mode: train, running: true}   # press until the daemon shows this (see below)
      - until: {loss_settled: true, timeout: 600}
      - until: {stopped: true}     # until the run is over (training that stops by itself)
      - wait: 20                   # virtual seconds
      - disconnect: 2              # the sensor's wire comes loose for 2 s
      - stall: 600                 # the I2C bus hangs for 600 s (the watchdog's business)
      - hang: windows              # the daemon's window thread hangs (sensor, windows)
      - fail: windows              # the daemon's window thread raises (sensor, windows)
      - end: stop                  # stop the daemon (demo); `idle` keeps it running

Presses go through the real gpiozero buttons on the MockFactory's pins, so the daemon cannot
tell them from a finger. A ``press`` is blind: on a starved machine a press can come before the
daemon took the last one in, and every later press is then out of step. A ``set`` step is a
wearer who feels each press's buzz: it names the mode, class and running state wanted, presses
whichever button moves the daemon towards it, waits for the press to show in the daemon's
status, and presses again if it did not; long runs (the soak bench) are scripted with it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from odar.controls import Mode
from odar.drivers.clock import Clock
from odar.drivers.emulated.clock import computing_takes_no_time
from odar.drivers.emulated.motion import ACTIVITIES, PLACEMENTS, ActivityStream, Wearer
from odar.errors import ConfigError
from odar.harness.data import SCENARIOS_DIR
from odar.journal import log_event
from odar.realtime import make_this_thread_realtime
from odar.service import Status

_log = logging.getLogger(__name__)

BUTTONS = ("mode", "class", "start")
#: Daemon threads a scenario may hang or fail (through the daemon's probe), by step value.
THREADS = {"sensor": "odar-sensor", "windows": "odar-windows"}
ENDINGS = ("stop", "idle")
#: How long a scripted finger holds a button down (virtual seconds).
PRESS_SECONDS = 0.1
#: Checks of an `until` condition per virtual second.
POLLS_PER_SECOND = 4
#: How long a `set` step waits for one press to show in the daemon's status before it presses
#: again (virtual seconds; a press is handled in well under one real second).
SET_CONFIRM_SECONDS = 5.0


class ScenarioError(ConfigError):
    """A scenario file names an unknown step, activity or button, or a bad value."""


@dataclass(frozen=True)
class Step:
    kind: str
    value: Any
    timeout: float | None = None


@dataclass(frozen=True)
class Scenario:
    path: Path
    placement: str
    seed: int
    steps: tuple[Step, ...] = field(default_factory=tuple)


def resolve_scenario(name_or_path: str, config_dir: Path) -> Path:
    """A path as given, or a built-in name looked up in ``scenarios/`` beside the config."""
    given = Path(name_or_path)
    candidates = [given] if given.suffix else []
    if given.is_absolute() is False:
        candidates += [
            config_dir / given,
            config_dir / "scenarios" / f"{name_or_path}.yaml",
            SCENARIOS_DIR / f"{name_or_path}.yaml",
        ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ScenarioError(
        f"sensor.emulated.scenario: {name_or_path!r} is neither a file nor a built-in scenario "
        f"(looked in {', '.join(str(c) for c in candidates)})"
    )


def load_scenario(path: Path) -> Scenario:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ScenarioError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping with `wearer` and `steps`")
    unknown = set(raw) - {"wearer", "steps", "description"}
    if unknown:
        raise ScenarioError(f"{path}: unknown key(s) {sorted(unknown)}")
    wearer = raw.get("wearer") or {}
    if not isinstance(wearer, dict) or set(wearer) - {"placement", "seed"}:
        raise ScenarioError(
            f"{path}: wearer: expected {{placement: NAME, seed: N}}, got {wearer!r}"
        )
    placement = wearer.get("placement", "wrist")
    if placement not in PLACEMENTS:
        raise ScenarioError(f"{path}: wearer.placement: {placement!r} is not one of {PLACEMENTS}")
    seed = wearer.get("seed", 0)
    if not isinstance(seed, int):
        raise ScenarioError(f"{path}: wearer.seed: {seed!r} is not a whole number")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{path}: steps: expected a non-empty list")
    return Scenario(path, placement, seed, tuple(_step(path, i, s) for i, s in enumerate(steps)))


def _step(path: Path, index: int, raw: object) -> Step:
    where = f"{path}: steps[{index}]"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ScenarioError(f"{where}: expected one `kind: value` pair, got {raw!r}")
    ((kind, value),) = raw.items()
    if kind == "activity":
        # ACTIVITIES is a dict: an unhashable value (a list, a mapping) must not reach `in`.
        if not isinstance(value, str) or value not in ACTIVITIES:
            raise ScenarioError(f"{where}: activity {value!r} is not one of {list(ACTIVITIES)}")
        return Step(kind, value)
    if kind == "press":
        if value not in BUTTONS:
            raise ScenarioError(f"{where}: press {value!r}: buttons are {BUTTONS}")
        return Step(kind, value)
    if kind in ("wait", "disconnect", "stall"):
        if not _is_seconds(value) or value < 0:
            raise ScenarioError(f"{where}: {kind}: {value!r} is not a number of seconds >= 0")
        return Step(kind, float(value))
    if kind == "until":
        return _until(where, value)
    if kind == "set":
        return _set(where, value)
    if kind in ("hang", "fail"):
        if value not in THREADS:
            raise ScenarioError(f"{where}: {kind}: {value!r} is not one of {list(THREADS)}")
        return Step(kind, THREADS[value])
    if kind == "end":
        if value not in ENDINGS:
            raise ScenarioError(f"{where}: end: {value!r} is not one of {ENDINGS}")
        return Step(kind, value)
    raise ScenarioError(
        f"{where}: unknown step {kind!r} "
        "(activity, press, set, wait, until, disconnect, stall, hang, fail, end)"
    )


def _is_seconds(value: object) -> bool:
    """A finite number: NaN would make the player spin, infinity wait forever."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float
        return False


def _until(where: str, value: object) -> Step:
    conditions = ("collected", "epochs", "loss_settled", "stopped")
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: until: expected a mapping, got {value!r}")
    timeout = value.get("timeout", 600)
    chosen = [k for k in value if k != "timeout"]
    if len(chosen) != 1 or chosen[0] not in conditions:
        raise ScenarioError(f"{where}: until: name one of {conditions} (and a timeout)")
    if not _is_seconds(timeout) or timeout <= 0:
        raise ScenarioError(f"{where}: until.timeout: {timeout!r} is not seconds > 0")
    condition, target = chosen[0], value[chosen[0]]
    if condition in ("loss_settled", "stopped"):
        if not isinstance(target, bool):
            raise ScenarioError(f"{where}: until.{condition}: {target!r} is not true or false")
    elif not isinstance(target, int) or isinstance(target, bool) or target < 0:
        raise ScenarioError(f"{where}: until.{condition}: {target!r} is not a whole number >= 0")
    return Step("until", (condition, target), float(timeout))


@dataclass(frozen=True)
class ControlsTarget:
    """What a `set` step wants the daemon's controls to show; None: whatever they show."""

    mode: Mode | None = None
    class_index: int | None = None
    running: bool | None = None

    def next_press(self, status: Status) -> str | None:
        """The button that moves the daemon towards the target, or None once it is there.

        The class is chosen first: it can only change in Collect while stopped (a mode press
        while running stops the run and moves on, as a wearer reaching for it means)."""
        if self.class_index is not None and status.class_index != self.class_index:
            if status.mode is not Mode.COLLECT:
                return "mode"
            return "start" if status.running else "class"
        if self.mode is not None and status.mode is not self.mode:
            return "mode"
        if self.running is not None and status.running != self.running:
            return "start"
        return None

    def describe(self) -> str:
        wanted = [
            f"mode {self.mode.value}" if self.mode is not None else "",
            f"class {self.class_index}" if self.class_index is not None else "",
            "" if self.running is None else ("running" if self.running else "stopped"),
        ]
        return ", ".join(part for part in wanted if part)


def _set(where: str, value: object) -> Step:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: set: expected a mapping, got {value!r}")
    unknown = set(value) - {"mode", "class", "running", "timeout"}
    if unknown or not set(value) - {"timeout"}:
        raise ScenarioError(
            f"{where}: set: name any of mode, class, running (and a timeout), got {value!r}"
        )
    mode = value.get("mode")
    modes = [m.value for m in Mode]
    if mode is not None and mode not in modes:
        raise ScenarioError(f"{where}: set.mode: {mode!r} is not one of {modes}")
    class_index = value.get("class")
    if class_index is not None and (
        not isinstance(class_index, int) or isinstance(class_index, bool) or class_index < 0
    ):
        raise ScenarioError(f"{where}: set.class: {class_index!r} is not a class index >= 0")
    running = value.get("running")
    if running is not None and not isinstance(running, bool):
        raise ScenarioError(f"{where}: set.running: {running!r} is not true or false")
    timeout = value.get("timeout", 60)
    if not _is_seconds(timeout) or timeout <= 0:
        raise ScenarioError(f"{where}: set.timeout: {timeout!r} is not seconds > 0")
    target = ControlsTarget(None if mode is None else Mode(mode), class_index, running)
    return Step("set", target, float(timeout))


#: Virtual seconds of past activities a SwitchableMotion can still be asked about: far more
#: than the chip's FIFO, a window or a bench's look back at the activity of a window.
MOTION_MEMORY = 600.0


class SwitchableMotion:
    """A MotionSource whose activity the scenario changes at given (virtual) times."""

    def __init__(self, wearer: Wearer, activity: str, seed: int) -> None:
        self._wearer = wearer
        self._seeds = np.random.SeedSequence(seed)
        self._lock = threading.Lock()
        self._starts: list[float] = [float("-inf")]
        self._streams: list[ActivityStream] = [self._stream(activity)]

    def _stream(self, activity: str) -> ActivityStream:
        (seed,) = self._seeds.spawn(1)
        return ActivityStream(activity, self._wearer, int(seed.generate_state(1)[0]))

    def switch(self, t: float, activity: str) -> None:
        with self._lock:
            self._starts.append(t)
            self._streams.append(self._stream(activity))
            # Forget activities that ended over MOTION_MEMORY ago (~7 KB each; a soak
            # switches 60 times an hour); the oldest one kept stands for all before it.
            ended = int(np.searchsorted(self._starts, t - MOTION_MEMORY, side="right")) - 1
            if ended > 0:
                del self._starts[:ended], self._streams[:ended]
                self._starts[0] = float("-inf")

    @property
    def remembered(self) -> int:
        """How many activities (the current one included) are kept."""
        with self._lock:
            return len(self._streams)

    def activity_at(self, t: float) -> str:
        with self._lock:
            index = int(np.searchsorted(self._starts, t, side="right")) - 1
            return self._streams[index].activity

    def activity_between(self, t0: float, t1: float) -> str | None:
        """The one activity done over all of [t0, t1], or None if it changed within."""
        with self._lock:
            first = int(np.searchsorted(self._starts, t0, side="right")) - 1
            last = int(np.searchsorted(self._starts, t1, side="right")) - 1
            return self._streams[first].activity if first == last else None

    def read(self, times: np.ndarray) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        with self._lock:
            starts, streams = list(self._starts), list(self._streams)
        out = np.empty((len(times), 6))
        which = np.searchsorted(starts, times, side="right") - 1
        for index in np.unique(which):
            rows = which == index
            out[rows] = streams[index].read(times[rows])
        return out


class DaemonView(Protocol):
    """What a scenario asks of the daemon it drives (:class:`odar.service.Daemon` has it)."""

    def status(self) -> Status: ...
    @property
    def stopping(self) -> bool: ...
    def request_stop(self) -> None: ...


@dataclass
class Faults:
    disconnect: Callable[[float], None]
    stall: Callable[[float], None]
    #: Make the named daemon thread hang, or raise, at its next loop turn.
    hang: Callable[[str], None] = lambda thread: None
    fail: Callable[[str], None] = lambda thread: None


class ThreadFaults:
    """The daemon's probe (:data:`odar.service.Probe`): a named thread that a scenario hung
    blocks at its next turn for good, one it failed raises :class:`InjectedFault`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hung: set[str] = set()
        self._failed: set[str] = set()

    def hang(self, thread: str) -> None:
        with self._lock:
            self._hung.add(thread)

    def fail(self, thread: str) -> None:
        with self._lock:
            self._failed.add(thread)

    def __call__(self, thread: str) -> None:
        with self._lock:
            hung, failed = thread in self._hung, thread in self._failed
            self._failed.discard(thread)
        if failed:
            raise InjectedFault(f"the scenario failed {thread}")
        if hung:
            threading.Event().wait()  # for good: only the watchdog ends this


class InjectedFault(RuntimeError):
    """What a scenario's ``fail:`` step raises in a daemon thread."""


class ScenarioPlayer:
    """Plays a scenario on its own thread: activities, presses, waits, faults. It begins when the
    daemon is ready and ends with the scenario, on :meth:`cancel`, or when the daemon stops."""

    def __init__(
        self,
        scenario: Scenario,
        motion: SwitchableMotion,
        clock: Clock,
        press_pins: Mapping[str, Any],
        daemon: DaemonView,
        faults: Faults,
        logger: logging.Logger = _log,
        realtime_priority: int | None = None,
    ) -> None:
        self.scenario = scenario
        self._motion = motion
        self._clock = clock
        self._pins = press_pins
        self._daemon = daemon
        self._faults = faults
        self._log = logger
        self._cancel = threading.Event()
        self.finished = threading.Event()
        self._realtime_priority = realtime_priority
        #: Whether the thread got SCHED_FIFO (None: not asked for, or not yet started).
        self.realtime: bool | None = None
        self._thread = threading.Thread(target=self._run, name="odar-scenario", daemon=True)
        # A new activity's motion takes milliseconds of numpy, holding the interpreter: the
        # daemon's threads wait for it, so on a scaled clock the world waits too, as it does
        # for the emulated chip's computing (session 9 traced FIFO overflows at 1 kHz and
        # speed 10 to switches that took 3-4.6 ms while the sensor thread waited).
        self._computing = computing_takes_no_time(clock)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def _ended(self) -> bool:
        return self._cancel.is_set() or self._daemon.stopping

    def _sleep(self, seconds: float) -> None:
        end = self._clock.monotonic() + seconds
        while not self._ended():
            left = end - self._clock.monotonic()
            if left <= 0:
                return
            self._clock.sleep(min(left, 1.0 / POLLS_PER_SECOND))

    def _run(self) -> None:
        if self._realtime_priority is not None:
            self.realtime = make_this_thread_realtime(
                self._realtime_priority, thread="odar-scenario"
            )
        try:
            while not self._daemon.status().ready:
                if self._ended():
                    return
                self._clock.sleep(1.0 / POLLS_PER_SECOND)
            log_event(self._log, f"scenario {self.scenario.path.name} starts", event="scenario")
            for step in self.scenario.steps:
                if self._ended():
                    return
                self._play(step)
        except Exception:
            self._log.exception("scenario %s failed", self.scenario.path)
        finally:
            self.finished.set()

    def _play(self, step: Step) -> None:
        now = self._clock.monotonic()
        if step.kind == "activity":
            self._log.info("scenario: the wearer is now %s", step.value)
            with self._computing():
                self._motion.switch(now, step.value)
        elif step.kind == "press":
            self._press(step.value)
        elif step.kind == "set":
            self._set(step)
        elif step.kind == "wait":
            self._sleep(step.value)
        elif step.kind == "disconnect":
            self._log.info("scenario: the sensor's wire comes loose for %.1f s", step.value)
            self._faults.disconnect(step.value)
        elif step.kind == "stall":
            self._log.info("scenario: the I2C bus stalls for %.1f s", step.value)
            self._faults.stall(step.value)
        elif step.kind == "hang":
            self._log.info("scenario: the daemon's %s thread hangs", step.value)
            self._faults.hang(step.value)
        elif step.kind == "fail":
            self._log.info("scenario: the daemon's %s thread raises", step.value)
            self._faults.fail(step.value)
        elif step.kind == "until":
            self._until(step)
        elif step.kind == "end" and step.value == "stop":
            self._daemon.request_stop()

    def _press(self, button: str) -> None:
        pin = self._pins[button]
        pin.drive_low()
        self._sleep(PRESS_SECONDS)
        pin.drive_high()
        self._sleep(PRESS_SECONDS)

    def _set(self, step: Step) -> None:
        target: ControlsTarget = step.value
        deadline = self._clock.monotonic() + (step.timeout or 0.0)
        while not self._ended():
            before = self._daemon.status()
            button = target.next_press(before)
            if button is None:
                return
            if self._clock.monotonic() >= deadline:
                self._log.warning(
                    "scenario: set %s timed out (the daemon shows mode %s, class %d, %s)",
                    target.describe(),
                    before.mode.value,
                    before.class_index,
                    "running" if before.running else "stopped",
                )
                return
            self._press(button)
            # A refused start changes nothing: it is pressed again after the wait, as a
            # wearer would after the refusal's buzz.
            shown = (before.mode, before.class_index, before.running)
            confirm = self._clock.monotonic() + SET_CONFIRM_SECONDS
            while not self._ended() and self._clock.monotonic() < confirm:
                now = self._daemon.status()
                if (now.mode, now.class_index, now.running) != shown:
                    break
                self._sleep(1.0 / POLLS_PER_SECOND)

    def _until(self, step: Step) -> None:
        condition, target = step.value
        checks: dict[str, Callable[[Status], bool]] = {
            "collected": lambda status: status.selected_count >= int(target),
            "epochs": lambda status: status.epoch >= int(target),
            "loss_settled": lambda status: status.loss_settled == bool(target),
            # Training that stops by itself: the run is over.
            "stopped": lambda status: (not status.running) == bool(target),
        }
        deadline = self._clock.monotonic() + (step.timeout or 0.0)
        while not checks[condition](self._daemon.status()):
            if self._ended():
                return
            if self._clock.monotonic() >= deadline:
                self._log.warning("scenario: until %s %s timed out", condition, target)
                return
            self._sleep(1.0 / POLLS_PER_SECOND)
