"""Haptic patterns: distinct by feel, and the right one for each press."""

from __future__ import annotations

import itertools

import pytest

from odar.controls import Event, EventKind, Mode, Refusal
from odar.drivers.gpio import VibrationMotor
from odar.haptics import (
    REFUSED,
    STARTED,
    STOPPED,
    TICK,
    Pattern,
    class_pattern,
    detection_pattern,
    mode_pattern,
    pattern_for,
)


def every_confirmation(num_classes: int) -> list[Pattern]:
    return [
        *(mode_pattern(mode) for mode in Mode),
        *(class_pattern(index) for index in range(num_classes)),
        STARTED,
        STOPPED,
        REFUSED,
        STOPPED.then(mode_pattern(Mode.TRAIN)),
    ]


def test_every_confirmation_feels_different_up_to_eight_classes():
    patterns = every_confirmation(8)
    for first, second in itertools.combinations(patterns, 2):
        assert first.steps != second.steps, (first.name, second.name)


def test_class_k_is_k_plus_one_ticks_and_modes_count_up():
    assert [class_pattern(k).pulses for k in range(3)] == [1, 2, 3]
    assert all(on == TICK for on, _ in class_pattern(2))
    assert [mode_pattern(mode).pulses for mode in Mode] == [2, 3, 4]


def test_detection_is_one_pulse_of_the_configured_length():
    assert detection_pattern(0.3).steps == ((0.3, 0.0),)
    assert detection_pattern(0.3).duration == pytest.approx(0.3)


def test_then_joins_with_a_pause():
    # The long buzz, the 0.4 s pause instead of its gap, then two ticks.
    assert STOPPED.then(class_pattern(1)).steps == ((0.8, 0.4), (0.08, 0.15), (0.08, 0.15))
    assert STOPPED.then(class_pattern(1)).duration == pytest.approx(1.66)


def test_patterns_reject_empty_or_negative_steps():
    with pytest.raises(ValueError, match="bad"):
        Pattern("bad", ())
    with pytest.raises(ValueError, match="bad"):
        Pattern("bad", ((0.1, -0.1),))
    with pytest.raises(ValueError, match="-1"):
        class_pattern(-1)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (Event(EventKind.MODE_SELECTED, Mode.INFER, 0, False), mode_pattern(Mode.INFER)),
        (
            Event(EventKind.MODE_SELECTED, Mode.TRAIN, 0, False, stopped=True),
            STOPPED.then(mode_pattern(Mode.TRAIN)),
        ),
        (Event(EventKind.CLASS_SELECTED, Mode.COLLECT, 2, False), class_pattern(2)),
        (Event(EventKind.STARTED, Mode.COLLECT, 0, True), STARTED),
        (Event(EventKind.STOPPED, Mode.TRAIN, 0, False), STOPPED),
        (
            Event(EventKind.REFUSED, Mode.TRAIN, 0, False, refusal=Refusal.NOT_ENOUGH_SAMPLES),
            REFUSED,
        ),
    ],
)
def test_pattern_for_each_event(event, expected):
    assert pattern_for(event) == expected


# ---------------------------------------------------------------------------- as felt

#: Patterns play this many times slower than on the wearable, so that a busy machine's late
#: wake-ups (a tenth of a second and more under load) shrink to a quarter in pattern seconds.
SLOWER = 4.0
#: How much later than asked a pin may change, in pattern seconds (a sleep overshoots, never
#: undershoots): well under the 0.22 s between a tick and a dash, or a gap and the pause.
LATE = 0.1


def every_pattern() -> list[Pattern]:
    """Every pattern the daemon plays: each confirmation, each mode after a stop, a detection."""
    stopped_then = [STOPPED.then(mode_pattern(mode)) for mode in Mode]
    patterns = [*every_confirmation(8), *stopped_then, detection_pattern(0.5)]
    return list({pattern.name: pattern for pattern in patterns}.values())


def felt(pin) -> list[float]:
    """Pattern seconds between the changes of a mock pin after its first rise: on, off, ..., on."""
    states = pin.states[1:]  # [0] is the state at clear_states()
    assert [s.state for s in states] == [1, 0] * (len(states) // 2), states
    return [s.timestamp / SLOWER for s in states[1:]]


@pytest.mark.slow
def test_the_motor_plays_every_pattern_with_its_timing(mock_factory):
    patterns = every_pattern()
    motors = [
        VibrationMotor(2 + i, speed=1 / SLOWER, pin_factory=mock_factory)
        for i in range(len(patterns))
    ]
    try:
        pins = [mock_factory.pin(2 + i) for i in range(len(patterns))]
        for pin, motor, pattern in zip(pins, motors, patterns, strict=True):
            pin.clear_states()
            motor.play(pattern)  # all at once, each on its own pin: about 10 s in all
        for motor, pattern in zip(motors, patterns, strict=True):
            assert motor.wait(10 * SLOWER * pattern.duration + 5), pattern.name
        played = [felt(pin) for pin in pins]  # before close() releases the pins
    finally:
        for motor in motors:
            motor.close()
    for measured, pattern in zip(played, patterns, strict=True):
        # The pin shows every on and off but the last off (after it nothing changes).
        asked = [seconds for step in pattern.steps for seconds in step][:-1]
        assert len(measured) == len(asked), (pattern.name, measured)
        for got, wanted in zip(measured, asked, strict=True):
            assert wanted - 0.005 <= got <= wanted + LATE, (pattern.name, measured, asked)
