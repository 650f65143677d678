"""Haptic patterns: distinct by feel, and the right one for each press."""

from __future__ import annotations

import itertools

import pytest

from odar.controls import Event, EventKind, Mode, Refusal
from odar.haptics import (
    FINISHED,
    PAUSE,
    REFUSED,
    SAMPLE_REMOVED,
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
        FINISHED,
        SAMPLE_REMOVED,
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
    joined = STOPPED.then(class_pattern(1))
    assert joined.pulses == STOPPED.pulses + 2
    assert joined.steps[0][1] == PAUSE
    assert joined.duration == pytest.approx(
        STOPPED.duration - STOPPED.steps[-1][1] + PAUSE + class_pattern(1).duration
    )


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
