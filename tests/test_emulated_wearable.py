"""The emulated wearable: its mock pins (gpiozero's, with a bounded memory of their states), and
the interpreter slice and the host stalls of a world that runs faster."""

from __future__ import annotations

import logging
import sys

import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory

from odar.drivers.emulated.clock import ScaledClock
from odar.harness.emulated_wearable import (
    PIN_HISTORY,
    BoundedHistoryPin,
    host_stalls_counted_once,
    interpreter_slice_scaled,
)


def test_a_pin_remembers_only_its_latest_state_changes():
    factory = MockFactory(pin_class=BoundedHistoryPin)
    try:
        motor = LED(18, pin_factory=factory)
        for index in range(PIN_HISTORY + 7):
            motor.value = index % 2 == 0  # on, off, on, ...: every assignment a change
        pin = factory.pin(18)
        assert len(pin.states) == PIN_HISTORY
        # The last of the 10,007 changes was an "on" (index 10,006); the oldest are gone.
        assert [bool(s.state) for s in list(pin.states)[-3:]] == [True, False, True]
        pin.clear_states()
        assert len(pin.states) == 1 and pin.states.maxlen == PIN_HISTORY
    finally:
        factory.reset()


def test_the_interpreter_slice_is_scaled_only_above_speed_1_and_restored():
    before = sys.getswitchinterval()
    with interpreter_slice_scaled(10.0):
        assert sys.getswitchinterval() == pytest.approx(before / 10)
    assert sys.getswitchinterval() == before
    with interpreter_slice_scaled(0.5):
        assert sys.getswitchinterval() == before
    with pytest.raises(RuntimeError), interpreter_slice_scaled(4.0):
        raise RuntimeError("the run failed")
    assert sys.getswitchinterval() == before


def test_host_stalls_are_counted_once_only_above_speed_1_and_only_while_running(caplog):
    clock = ScaledClock(10.0)
    with host_stalls_counted_once(ScaledClock(1.0)) as watch:
        assert watch is None
    with host_stalls_counted_once(clock, enabled=False) as watch:
        assert watch is None
    assert clock.stall_source is None
    with caplog.at_level(logging.WARNING), host_stalls_counted_once(clock) as watch:
        if watch is None:  # where the watchers may not be real-time: said, and charged
            assert "host stalls count 10 times over" in caplog.text
        else:
            assert watch.watching and clock.stall_source is watch
    assert clock.stall_source is None
    if watch is not None:
        assert watch.pids == [], "the watchers end with the run"
