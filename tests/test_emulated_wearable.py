"""The emulated wearable's mock pins: gpiozero's, with a bounded memory of their states."""

from __future__ import annotations

from gpiozero import LED
from gpiozero.pins.mock import MockFactory

from odar.harness.emulated_wearable import PIN_HISTORY, BoundedHistoryPin


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
