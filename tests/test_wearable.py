"""The wearable's hardware assembly (odar.wearable, and odar.harness.emulated_wearable for the
emulated one): the same devices on the emulated world (register-level MPU6050, gpiozero
MockFactory) as on the real one, and clear errors when the sensor is not there."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import pulses_on

from odar.config import load_config
from odar.errors import SensorNotFoundError
from odar.harness.emulated_wearable import EmulatedWearable
from odar.harness.scenario import SwitchableMotion
from odar.wearable import ensure_lgpio_workdir, open_real_wearable

STANDARD_GRAVITY = 9.80665


def open_emulated(path):
    return EmulatedWearable.open(load_config(path), path.parent)


@pytest.fixture
def world(config_writer):
    world = open_emulated(config_writer.write({"pins": {"led": 5}}))
    yield world
    world.wearable.close()


@pytest.fixture
def wearable(world):
    return world.wearable


def test_the_emulated_wearable_has_buttons_motor_led_and_a_streaming_sensor(world, wearable):
    assert isinstance(world.motion, SwitchableMotion)
    assert world.scenario.path.name == "scenario.yaml"
    wearable.sensor.start()
    blocks = []
    while sum(len(b) for b in blocks) < 50:
        wearable.clock.sleep(wearable.sensor.poll_interval_s)
        blocks.append(wearable.sensor.read())
    samples = np.concatenate([b.samples for b in blocks if len(b)])
    assert samples.shape[1] == 6
    # A wrist at rest feels one g whichever way it is turned.
    gravity = np.linalg.norm(samples[:, :3], axis=1).mean()
    assert gravity == pytest.approx(STANDARD_GRAVITY, rel=0.15)


def test_presses_on_the_mock_pins_reach_the_bound_handlers(world, wearable):
    pressed: list[str] = []
    wearable.buttons.bind(
        lambda: pressed.append("mode"),
        lambda: pressed.append("class"),
        lambda: pressed.append("start"),
    )
    pins = world.press_pins()
    assert {pin.info.name for pin in pins.values()} == {"GPIO17", "GPIO27", "GPIO22"}
    for name in ("start", "mode", "class", "start"):
        pins[name].drive_low()
        pins[name].drive_high()
    assert pressed == ["start", "mode", "class", "start"]


def test_the_motor_and_led_pins_play_the_same_pattern(world, wearable):
    factory = world.pin_factory
    motor_pin, led_pin = factory.pin(18), factory.pin(5)
    pattern = ((0.08, 0.15), (0.08, 0.15), (0.3, 0.0))
    wearable.motor.play(pattern)
    wearable.led.play(pattern)
    assert wearable.motor.wait(5.0) and wearable.led.wait(5.0)
    assert pulses_on(motor_pin) == pulses_on(led_pin) == 3
    assert motor_pin.state == led_pin.state == 0


def test_close_releases_the_pins_for_the_next_start(config_writer):
    path = config_writer.write()
    open_emulated(path).wearable.close()
    # would raise GPIOPinInUse if still claimed
    open_emulated(path).wearable.close()


@pytest.mark.parametrize(("bus", "address"), [(1, 0x68), (3, 0x69)])
def test_a_chip_answering_garbage_is_not_an_mpu6050_naming_bus_and_address(
    config_writer, bus, address
):
    path = config_writer.write({"sensor": {"bus": bus, "address": address}})
    world = open_emulated(path)
    try:
        world.sensor.chip.inject_who_am_i(0x12)
        with pytest.raises(SensorNotFoundError) as caught:
            world.wearable.sensor.start()
    finally:
        world.wearable.close()
    message = str(caught.value)
    assert f"I2C bus {bus} address {address:#04x}" in message
    assert "0x12" in message
    assert isinstance(caught.value, OSError)


def test_a_sensor_that_does_not_answer_names_bus_and_address(config_writer):
    path = config_writer.write()
    world = open_emulated(path)
    try:
        world.sensor.disconnect(3600.0)
        with pytest.raises(SensorNotFoundError, match=r"I2C bus 1 address 0x68: no answer"):
            world.wearable.sensor.start()
    finally:
        world.wearable.close()


def test_a_missing_i2c_device_node_is_reported_with_the_fix(
    config_writer, mock_factory, monkeypatch
):
    from gpiozero import Device

    monkeypatch.setattr(Device, "pin_factory", mock_factory)
    path = config_writer.write({"sensor": {"backend": "real", "bus": 250}})
    # The bus opens at first use: a missing node is the sensor's problem (odar.sensor_presence).
    wearable = open_real_wearable(load_config(path))
    try:
        with pytest.raises(SensorNotFoundError, match=r"/dev/i2c-250 does not exist.*sensor\.bus"):
            wearable.sensor.start()
    finally:
        wearable.close()


def test_the_daemon_with_a_wrong_chip_stays_up_and_releases_the_hardware_at_stop(
    config_writer, start_daemon, monkeypatch
):
    import odar.harness.sensor_rig

    original = odar.harness.sensor_rig.build_emulated_sensor

    def clone_with_garbage(*args, **kwargs):
        kwargs["who_am_i"] = 0x00
        return original(*args, **kwargs)

    monkeypatch.setattr(odar.harness.sensor_rig, "build_emulated_sensor", clone_with_garbage)
    # No sensor is a state (odar.sensor_presence): READY, the reason kept, no exception.
    running = start_daemon(config_writer.write())
    missing = running.daemon.sensor.missing
    assert "I2C bus 1 address 0x68" in missing and "0x00" in missing
    assert running.stop() == 0
    assert running.world.pin_factory.pins == {}  # buttons and motor released, reset
    assert not running.daemon.wearable.motor.playing


def test_lgpio_gets_a_writable_workdir_only_when_the_working_directory_is_not_one():
    environ: dict[str, str] = {}
    workdir = ensure_lgpio_workdir(environ, writable=lambda path: False)
    assert workdir is not None and environ["LG_WD"] == workdir
    assert os.path.isdir(workdir) and os.access(workdir, os.W_OK)
    os.rmdir(workdir)
    assert ensure_lgpio_workdir({}, writable=lambda path: True) is None
    unit_set = {"LG_WD": "/run/odar"}
    assert ensure_lgpio_workdir(unit_set, writable=lambda path: False) is None
    assert unit_set == {"LG_WD": "/run/odar"}
