"""The mode machine the three buttons drive: pure logic, no GPIO, safe to call from any thread.

Rules (a wearable has no screen, so every press gives exactly one :class:`Event`, which the
service turns into a haptic pattern and a log line):

* **mode** press: next mode, Collect -> Train -> Infer -> Collect. While running it stops first
  and then switches (``Event.stopped`` is True): that is what a user reaching for the mode
  button means, and it never leaves a run going in a mode the user has left.
* **class** press: next class, only in Collect and only while stopped. Windows in flight when
  the class changes mid-run would be labelled with the wrong class, so the user stops first.
* **start/stop** press: toggles running. Start in Train is refused until every class has at
  least the train batch size of samples; start in Infer is refused until a head is available.

Mode and class are saved to ``controls.json`` on every change and restored on start; running
is not (a restart never starts collecting or training by itself).

Other threads read the state through :meth:`Controls.snapshot`, one immutable
:class:`ControlsSnapshot` taken under the lock: the window thread reads it once per window, so
mode, class and running never come from different moments. Every start begins a new
:class:`Run` with its own id, the ring position and clock time of the press; its stop records
them again. A window belongs to a run only if it lies wholly between the two
(:meth:`Run.owns`).
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from odar.errors import StateError, StateWriteError
from odar.param_store import move_aside, read_bounded, write_atomically

_log = logging.getLogger(__name__)


class Mode(enum.Enum):
    COLLECT = "collect"
    TRAIN = "train"
    INFER = "infer"

    def next(self) -> Mode:
        modes = list(Mode)
        return modes[(modes.index(self) + 1) % len(modes)]


class EventKind(enum.Enum):
    MODE_SELECTED = "mode_selected"
    CLASS_SELECTED = "class_selected"
    STARTED = "started"
    STOPPED = "stopped"
    REFUSED = "refused"


class Refusal(enum.Enum):
    """Why a press did nothing; the value is the readable reason for the log."""

    NOT_ENOUGH_SAMPLES = "every class needs at least the train batch size of samples"
    CLASS_WHILE_RUNNING = "stop before changing the class"
    CLASS_OUTSIDE_COLLECT = "the class is chosen in Collect mode"
    NO_HEAD = "no trained head to infer with"


@dataclass(frozen=True)
class Event:
    """The outcome of one press: the state after it, and what happened."""

    kind: EventKind
    mode: Mode
    class_index: int
    running: bool
    #: MODE_SELECTED only: the press also stopped a run.
    stopped: bool = False
    refusal: Refusal | None = None
    #: NOT_ENOUGH_SAMPLES only: the counts that fell short.
    class_counts: tuple[int, ...] = ()
    #: The current (or last) run's id: STARTED gives a new one.
    run_id: int = 0

    def describe(self, class_names: Sequence[str] | None = None) -> str:
        """One readable log line."""
        name = class_names[self.class_index] if class_names else f"class {self.class_index}"
        if self.kind is EventKind.MODE_SELECTED:
            return ("stopped; " if self.stopped else "") + f"mode {self.mode.value}"
        if self.kind is EventKind.CLASS_SELECTED:
            return f"class {name} selected"
        if self.kind is EventKind.STARTED:
            labelled = f" ({name})" if self.mode is Mode.COLLECT else ""
            return f"{self.mode.value} started{labelled}"
        if self.kind is EventKind.STOPPED:
            return f"{self.mode.value} stopped"
        assert self.refusal is not None
        counts = f" (counts {list(self.class_counts)})" if self.class_counts else ""
        return f"refused in {self.mode.value}: {self.refusal.value}{counts}"


@dataclass(frozen=True)
class Position:
    """Where the sensor stream was at a press: the ring's write sequence (the next sample's
    number) and the clock time, read in that order (every sample numbered below ``seq`` was
    taken before ``time``)."""

    seq: int
    time: float


@dataclass(frozen=True)
class Run:
    """One start..stop of Collect, Train or Infer. ``stop`` is None while it goes on."""

    id: int
    mode: Mode
    class_index: int
    start: Position
    stop: Position | None = None

    @property
    def going(self) -> bool:
        return self.stop is None

    def owns(self, t_start: float, t_end: float) -> bool:
        """A window from ``t_start`` to ``t_end`` (its first and last samples' times) belongs
        to this run: it starts at or after the start press and ends before the stop press."""
        if t_start < self.start.time:
            return False
        return self.stop is None or t_end < self.stop.time


@dataclass(frozen=True)
class ControlsSnapshot:
    """Mode, class and running at one moment, and the current (or last) run."""

    mode: Mode
    class_index: int
    running: bool
    #: The run going on, or the last one stopped; None before the first start.
    run: Run | None


def _no_position() -> Position:
    return Position(0, 0.0)


class Controls:
    """The selected mode and class and whether a run is going; see the module docstring."""

    def __init__(
        self,
        num_classes: int,
        train_batch_size: int,
        class_counts: Callable[[], Sequence[int]],
        *,
        head_available: Callable[[], bool] = lambda: True,
        state_path: Path | None = None,
        position: Callable[[], Position] = _no_position,
        logger: logging.Logger = _log,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.train_batch_size = train_batch_size
        self._class_counts = class_counts
        self._head_available = head_available
        self._state_path = state_path
        self._log = logger
        self._lock = threading.Lock()
        self._mode = Mode.COLLECT
        self._class_index = 0
        self._running = False
        self._position = position
        self._run: Run | None = None
        self._runs = 0
        self._snapshot = ControlsSnapshot(self._mode, self._class_index, False, None)
        if state_path is not None:
            self._mode, self._class_index = load_controls_state(state_path, num_classes, logger)
        self._publish()

    def snapshot(self) -> ControlsSnapshot:
        """Everything at one moment (immutable; swapped whole at every change)."""
        return self._snapshot

    @property
    def mode(self) -> Mode:
        return self._snapshot.mode

    @property
    def class_index(self) -> int:
        return self._snapshot.class_index

    @property
    def running(self) -> bool:
        return self._snapshot.running

    def _publish(self) -> None:
        """Called with the lock held after every change."""
        self._snapshot = ControlsSnapshot(self._mode, self._class_index, self._running, self._run)

    def _begin_run(self) -> None:
        self._running = True
        self._runs += 1
        self._run = Run(self._runs, self._mode, self._class_index, self._position())

    def _end_run(self) -> None:
        self._running = False
        if self._run is not None and self._run.going:
            self._run = replace(self._run, stop=self._position())

    def press_mode(self) -> Event:
        with self._lock:
            stopped = self._running
            self._end_run()
            self._mode = self._mode.next()
            self._publish()
            self._save()
            return self._event(EventKind.MODE_SELECTED, stopped=stopped)

    def press_class(self) -> Event:
        with self._lock:
            if self._mode is not Mode.COLLECT:
                return self._event(EventKind.REFUSED, refusal=Refusal.CLASS_OUTSIDE_COLLECT)
            if self._running:
                return self._event(EventKind.REFUSED, refusal=Refusal.CLASS_WHILE_RUNNING)
            self._class_index = (self._class_index + 1) % self.num_classes
            self._publish()
            self._save()
            return self._event(EventKind.CLASS_SELECTED)

    def press_start_stop(self) -> Event:
        with self._lock:
            if self._running:
                self._end_run()
                self._publish()
                return self._event(EventKind.STOPPED)
            if self._mode is Mode.TRAIN:
                counts = tuple(int(count) for count in self._class_counts())
                short = len(counts) < self.num_classes or any(
                    count < self.train_batch_size for count in counts
                )
                if short:
                    return self._event(
                        EventKind.REFUSED,
                        refusal=Refusal.NOT_ENOUGH_SAMPLES,
                        class_counts=counts,
                    )
            if self._mode is Mode.INFER and not self._head_available():
                return self._event(EventKind.REFUSED, refusal=Refusal.NO_HEAD)
            self._begin_run()
            self._publish()
            return self._event(EventKind.STARTED)

    def stop(self) -> Event | None:
        """Stop a run for a reason other than a press (sensor lost, epoch limit, shutdown)."""
        with self._lock:
            if not self._running:
                return None
            self._end_run()
            self._publish()
            return self._event(EventKind.STOPPED)

    def _event(
        self,
        kind: EventKind,
        *,
        stopped: bool = False,
        refusal: Refusal | None = None,
        class_counts: tuple[int, ...] = (),
    ) -> Event:
        return Event(
            kind,
            self._mode,
            self._class_index,
            self._running,
            stopped,
            refusal,
            class_counts,
            self._run.id if self._run is not None else 0,
        )

    def _save(self) -> None:
        if self._state_path is None:
            return
        try:
            save_controls_state(self._state_path, self._mode, self._class_index)
        except StateWriteError as error:
            # Losing the selection across a restart is a nuisance, not a reason to stop.
            self._log.error("%s; the selection will not survive a restart", error)


def save_controls_state(path: Path, mode: Mode, class_index: int) -> None:
    document = {"mode": mode.value, "class_index": class_index}
    write_atomically(path, (json.dumps(document) + "\n").encode("utf-8"))


def load_controls_state(
    path: Path, num_classes: int, logger: logging.Logger = _log
) -> tuple[Mode, int]:
    """The saved (mode, class); Collect and class 0 if there is none or it is bad."""
    try:
        return decode_controls_state(read_bounded(path, 4096), num_classes, str(path))
    except FileNotFoundError:
        return Mode.COLLECT, 0
    except StateError as error:
        try:
            moved = move_aside(path, time.time())
        except OSError as move_error:
            logger.warning("%s; cannot move it aside: %s", error, move_error)
        else:
            logger.warning("%s; moved to %s, starting in Collect, class 0", error, moved.name)
    except OSError as error:
        logger.warning("cannot read %s: %s; starting in Collect, class 0", path, error)
    return Mode.COLLECT, 0


def decode_controls_state(data: bytes, num_classes: int, source: str) -> tuple[Mode, int]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StateError(f"{source}: not JSON") from None
    if not isinstance(document, dict):
        raise StateError(f"{source}: not a JSON object")
    try:
        mode = Mode(document.get("mode"))
    except ValueError:
        raise StateError(
            f"{source}: mode {document.get('mode')!r} is not one of {[m.value for m in Mode]}"
        ) from None
    class_index = document.get("class_index")
    if isinstance(class_index, bool) or not isinstance(class_index, int):
        raise StateError(f"{source}: class_index {class_index!r} is not an integer")
    if not 0 <= class_index < num_classes:
        # Artifacts with fewer classes were installed since; not an error in the file.
        return mode, 0
    return mode, class_index
