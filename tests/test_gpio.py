"""Buttons, motor and LED on gpiozero's mock pins; presses end in patterns on the motor pin."""

from __future__ import annotations

import threading
import time

import pytest
from gpiozero import Device
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPWMPin

from odar.controls import Controls, Mode
from odar.drivers.gpio import StatusLed, VibrationMotor, WearableButtons
from odar.haptics import REFUSED, STARTED, class_pattern, mode_pattern, pattern_for

MODE, CLASS, START, MOTOR, LED_PIN = 17, 27, 22, 18, 23
#: Patterns play this many times faster than real time, so a test takes milliseconds.
SPEED = 200.0


@pytest.fixture
def factory():
    factory = MockFactory(pin_class=MockPWMPin)
    previous, Device.pin_factory = Device.pin_factory, factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


def on_off_states(pulses: int) -> list[bool]:
    """What a pin records for *pulses* pulses from rest: off, then on/off per pulse."""
    return [False] + [True, False] * pulses


def recorded(factory: MockFactory, pin: int) -> list[bool]:
    return [bool(state.state) for state in factory.pin(pin).states]


def until(condition, timeout: float = 5.0) -> bool:
    """Wait for the motor thread to reach *condition*; False if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def press(factory: MockFactory, pin: int) -> None:
    factory.pin(pin).drive_low()
    factory.pin(pin).drive_high()


def test_buttons_use_pull_ups_and_the_configured_debounce(factory):
    with WearableButtons(MODE, CLASS, START, bounce_time=0.03, pin_factory=factory):
        for pin in (MODE, CLASS, START):
            assert factory.pin(pin).pull == "up"
            assert factory.pin(pin).bounce == pytest.approx(0.03)


def test_each_button_runs_its_own_callback(factory):
    calls: list[str] = []
    with WearableButtons(MODE, CLASS, START, pin_factory=factory) as buttons:
        buttons.bind(
            lambda: calls.append("mode"),
            lambda: calls.append("class"),
            lambda: calls.append("start"),
        )
        press(factory, START)
        press(factory, MODE)
        press(factory, CLASS)
        factory.pin(MODE).drive_high()  # a release is not a press
    assert calls == ["start", "mode", "class"]


def test_a_failing_callback_is_logged_and_later_presses_still_work(factory, caplog):
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("handler bug")

    with WearableButtons(MODE, CLASS, START, pin_factory=factory) as buttons:
        buttons.bind(broken, lambda: calls.append("class"), lambda: None)
        press(factory, MODE)
        press(factory, CLASS)
    assert calls == ["class"]
    assert "mode button" in caplog.text and "handler bug" in caplog.text


def test_a_pin_already_in_use_releases_the_pins_claimed_before_it(factory):
    with pytest.raises(GPIOPinInUse):
        WearableButtons(MODE, CLASS, MODE, pin_factory=factory)
    WearableButtons(MODE, CLASS, START, pin_factory=factory).close()


def test_motor_plays_a_pattern_as_pulses_on_its_pin(factory):
    with VibrationMotor(MOTOR, speed=SPEED, pin_factory=factory) as motor:
        motor.play(mode_pattern(Mode.INFER))
        assert motor.wait(timeout=5)
        assert recorded(factory, MOTOR) == on_off_states(mode_pattern(Mode.INFER).pulses)


def test_play_returns_before_the_pattern_ends_and_a_new_play_cuts_it_short(factory):
    with VibrationMotor(MOTOR, pin_factory=factory) as motor:  # real time: 30 s of buzz
        motor.play([(10.0, 10.0), (10.0, 0.0)])
        assert motor.playing
        assert until(lambda: factory.pin(MOTOR).state), "the first pulse never started"
        motor.pulse(0.001)
        assert motor.wait(timeout=5)
        assert not factory.pin(MOTOR).state
        # The first pattern's first pulse, cut short; then the new pulse.
        assert recorded(factory, MOTOR) == [False, True, False, True, False]


def test_stop_and_close_leave_the_motor_off(factory):
    motor = VibrationMotor(MOTOR, pin_factory=factory)
    motor.play([(10.0, 0.0)])
    motor.stop()
    assert motor.wait(timeout=5)
    assert not factory.pin(MOTOR).state
    motor.play([(10.0, 0.0)])
    motor.close()
    assert not factory.pin(MOTOR).state
    motor.play([(1.0, 0.0)])  # after close: ignored, not an error


def test_the_players_thread_is_named_after_its_pin_and_known_to_the_kernel(factory):
    motor = VibrationMotor(MOTOR, pin_factory=factory)
    (thread,) = [t for t in threading.enumerate() if t.name == f"motor-gpio{MOTOR}"]
    assert motor.thread_name == f"motor-gpio{MOTOR}"
    # What the daemon hands sched_setscheduler to put it at the other threads' priority.
    assert motor.thread_id == thread.native_id is not None
    motor.close()
    assert motor.thread_id is None


def test_led_mirrors_a_pattern(factory):
    with StatusLed(LED_PIN, speed=SPEED, pin_factory=factory) as led:
        led.play(STARTED)
        assert led.wait(timeout=5)
    assert recorded(factory, LED_PIN) == on_off_states(STARTED.pulses)


def test_presses_drive_the_mode_machine_and_the_motor_confirms_each(factory):
    counts = [0, 0]
    controls = Controls(2, 4, lambda: counts)
    motor = VibrationMotor(MOTOR, speed=SPEED, pin_factory=factory)
    buttons = WearableButtons(MODE, CLASS, START, pin_factory=factory)
    played = []

    def confirm(event) -> None:
        pattern = pattern_for(event)
        played.append(pattern)
        motor.play(pattern)
        motor.wait(timeout=5)  # one press at a time, so each pattern is recorded whole

    buttons.bind(
        lambda: confirm(controls.press_mode()),
        lambda: confirm(controls.press_class()),
        lambda: confirm(controls.press_start_stop()),
    )
    try:
        press(factory, CLASS)  # class 1
        press(factory, MODE)  # Train
        press(factory, START)  # refused: no samples
    finally:
        buttons.close()
        motor.close()
    assert played == [class_pattern(1), mode_pattern(Mode.TRAIN), REFUSED]
    assert (controls.mode, controls.class_index, controls.running) == (Mode.TRAIN, 1, False)
    expected_pulses = sum(pattern.pulses for pattern in played)
    assert recorded(factory, MOTOR) == on_off_states(expected_pulses)
