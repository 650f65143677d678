"""Haptic patterns as data: what the motor says after each press, told apart by feel alone.

The vocabulary is short ticks and long dashes:

* class k: k+1 ticks (a count you can feel)
* mode: a dash then the mode's number in ticks (Collect 1, Train 2, Infer 3)
* started: two dashes; stopped: one very long buzz
* refused: a rapid rattle, unlike anything else
* finished (training ended by itself, head saved): three dashes then the long buzz
* sample removed (long press of the class button): a long buzz then a tick
* no sensor: two rattles (any button, while the IMU is missing)
* detection: one pulse of the configured length

A :class:`Pattern` iterates as ``(on_seconds, off_seconds)`` steps, which is what
``odar.drivers.gpio.VibrationMotor.play`` takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from odar.controls import Event, EventKind, Mode

TICK = 0.08
DASH = 0.3
GAP = 0.15
#: Between the parts of a compound pattern ("stopped", then the new mode).
PAUSE = 0.4
LONG_BUZZ = 0.8
RATTLE_PULSES = 6
RATTLE = 0.04


@dataclass(frozen=True)
class Pattern:
    name: str
    steps: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.steps or any(on <= 0 or off < 0 for on, off in self.steps):
            raise ValueError(f"pattern {self.name!r}: steps need on > 0 and off >= 0")

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return iter(self.steps)

    @property
    def duration(self) -> float:
        return sum(on + off for on, off in self.steps)

    @property
    def pulses(self) -> int:
        return len(self.steps)

    def then(self, other: Pattern) -> Pattern:
        """This pattern, a pause, then *other*."""
        last_on, _ = self.steps[-1]
        steps = (*self.steps[:-1], (last_on, PAUSE), *other.steps)
        return Pattern(f"{self.name}+{other.name}", steps)


def _ticks(count: int) -> tuple[tuple[float, float], ...]:
    return tuple((TICK, GAP) for _ in range(count))


MODE_NUMBER = {Mode.COLLECT: 1, Mode.TRAIN: 2, Mode.INFER: 3}
STARTED = Pattern("started", ((DASH, GAP), (DASH, GAP)))
STOPPED = Pattern("stopped", ((LONG_BUZZ, GAP),))
FINISHED = Pattern("finished", ((DASH, GAP), (DASH, GAP), (DASH, PAUSE), (LONG_BUZZ, GAP)))
SAMPLE_REMOVED = Pattern("sample removed", ((LONG_BUZZ, GAP), (TICK, GAP)))
REFUSED = Pattern("refused", tuple((RATTLE, RATTLE) for _ in range(RATTLE_PULSES)))
NO_SENSOR = Pattern("no sensor", REFUSED.then(REFUSED).steps)


def mode_pattern(mode: Mode) -> Pattern:
    return Pattern(f"mode {mode.value}", ((DASH, GAP), *_ticks(MODE_NUMBER[mode])))


def class_pattern(class_index: int) -> Pattern:
    if class_index < 0:
        raise ValueError(f"class index {class_index} is negative")
    return Pattern(f"class {class_index}", _ticks(class_index + 1))


def detection_pattern(pulse_seconds: float) -> Pattern:
    return Pattern("detection", ((pulse_seconds, 0.0),))


def pattern_for(event: Event) -> Pattern:
    """What the motor plays to confirm *event*."""
    if event.kind is EventKind.MODE_SELECTED:
        selected = mode_pattern(event.mode)
        return STOPPED.then(selected) if event.stopped else selected
    if event.kind is EventKind.CLASS_SELECTED:
        return class_pattern(event.class_index)
    if event.kind is EventKind.STARTED:
        return STARTED
    if event.kind is EventKind.STOPPED:
        return STOPPED
    return REFUSED
