"""``odar selftest`` through the CLI on the emulated wearable: all pass, then one fault per
check, each naming the failing part."""

from __future__ import annotations

import re

import numpy as np
import pytest

from odar.cli import main
from odar.harness import sensor_rig

PRESS_ALL = {
    "description": "keeps still, presses each button when asked",
    "wearer": {"placement": "wrist", "seed": 3},
    "steps": [
        {"activity": "standing"},
        {"wait": 12},
        {"press": "mode"},
        {"wait": 2},
        {"press": "class"},
        {"wait": 2},
        {"press": "start"},
        {"end": "idle"},
    ],
}


def selftest_config(config_writer, scenario=PRESS_ALL, **overrides):
    return config_writer.write(
        {"sensor": {"emulated": {"speed": 5.0}}, **overrides}, scenario=scenario
    )


def run_selftest(path, *extra):
    return main(["selftest", "--config", str(path), *extra])


def test_every_check_passes_on_the_emulated_wearable(config_writer, capsys):
    assert run_selftest(selftest_config(config_writer)) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "PASS  sensor (MPU6050 on I2C bus 1 at 0x68): WHO_AM_I 0x68: MPU-6050" in out
    assert "FIFO 1024 bytes" in out and "filled to 1024 bytes" in out
    gravity = float(re.search(r"\|g\| ([0-9.]+), gravity along [+-][xyz]", out).group(1))
    assert abs(gravity - 9.81) <= 1.0
    for button, pin in (("mode", 17), ("class", 27), ("start", 22)):
        assert f"PASS  {button} button: GPIO{pin}" in out
    assert out.rstrip().endswith("selftest: all 9 checks passed")


def _with_chip(monkeypatch, change):
    build = sensor_rig.build_emulated_sensor

    def faulty(settings, motion, clock=None, **options):
        return change(build, settings, motion, clock, options)

    monkeypatch.setattr(sensor_rig, "build_emulated_sensor", faulty)


def test_an_absent_chip_names_the_sensor(config_writer, capsys, monkeypatch):
    def absent(build, settings, motion, clock, options):
        sensor = build(settings, motion, clock, **options)
        sensor.bus.detach(settings.address)
        return sensor

    _with_chip(monkeypatch, absent)
    assert run_selftest(selftest_config(config_writer), "--skip-buttons") == 1
    out = capsys.readouterr().out
    assert "FAIL  sensor (MPU6050 on I2C bus 1 at 0x68): no answer to WHO_AM_I" in out
    assert "look at: sensor (MPU6050 on I2C bus 1 at 0x68)" in out


def test_a_wrong_chip_id_names_the_sensor(config_writer, capsys, monkeypatch):
    def other(build, settings, motion, clock, options):
        return build(settings, motion, clock, **{**options, "who_am_i": 0x12})

    _with_chip(monkeypatch, other)
    assert run_selftest(selftest_config(config_writer), "--skip-buttons") == 1
    assert "WHO_AM_I reads 0x12, not 0x68" in capsys.readouterr().out


class StuckAxis:
    """The wearer's motion with one axis frozen (a cracked solder joint on the chip)."""

    def __init__(self, motion, axis, value):
        self.motion, self.axis, self.value = motion, axis, value

    def read(self, times):
        samples = np.array(self.motion.read(times))
        samples[:, self.axis] = self.value
        return samples


def test_a_stuck_axis_is_named(config_writer, capsys, monkeypatch):
    def stuck(build, settings, motion, clock, options):
        return build(settings, StuckAxis(motion, 4, 0.0), clock, **options)

    _with_chip(monkeypatch, stuck)
    assert run_selftest(selftest_config(config_writer), "--skip-buttons") == 1
    out = capsys.readouterr().out
    assert "FAIL  sensor data: stuck axis: gy (every sample +0.000)" in out


class HalfGravity:
    """An accelerometer reading half of what it feels (a wrong full-scale setting)."""

    def __init__(self, motion):
        self.motion = motion

    def read(self, times):
        samples = np.array(self.motion.read(times))
        samples[:, :3] *= 0.5
        return samples


def test_gravity_far_from_9_81_fails(config_writer, capsys, monkeypatch):
    def weak(build, settings, motion, clock, options):
        return build(settings, HalfGravity(motion), clock, **options)

    _with_chip(monkeypatch, weak)
    assert run_selftest(selftest_config(config_writer), "--skip-buttons") == 1
    out = capsys.readouterr().out
    assert re.search(r"FAIL  sensor data: \|g\| is [45]\.[0-9]+ m/s\^2, not about 9\.81", out)


def test_a_button_never_pressed_names_it_and_its_pin(config_writer, capsys):
    no_class = {
        **PRESS_ALL,
        "steps": [
            {"activity": "standing"},
            {"wait": 12},
            {"press": "mode"},
            {"wait": 18},  # the class prompt times out meanwhile
            {"press": "start"},
            {"end": "idle"},
        ],
    }
    assert run_selftest(selftest_config(config_writer, no_class)) == 1
    out = capsys.readouterr().out
    assert "FAIL  class button: no press within 15 s on GPIO27 (header pin 13)" in out
    assert "PASS  mode button" in out and "PASS  start button" in out
    assert "look at: class button" in out


def test_a_motor_pin_that_never_goes_high_names_the_motor(config_writer, capsys, monkeypatch):
    from gpiozero import DigitalOutputDevice

    monkeypatch.setattr(DigitalOutputDevice, "on", lambda self: None)
    assert run_selftest(selftest_config(config_writer), "--skip-buttons") == 1
    assert "FAIL  motor: GPIO18 (header pin 12) never read back high" in capsys.readouterr().out


def test_a_bus_too_slow_for_the_rate_names_the_bus(config_writer, capsys):
    path = selftest_config(
        config_writer, sensor={"rate_hz": 1000, "bus_hz": 100000, "emulated": {"speed": 5.0}}
    )
    assert run_selftest(path, "--skip-buttons") == 1
    out = capsys.readouterr().out
    assert "FAIL  I2C bus 1:" in out and "dtparam=i2c_arm_baudrate=400000" in out


def test_the_real_backend_without_i2c_names_the_sensor(config_writer, capsys, monkeypatch):
    import smbus2

    def missing(bus):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(smbus2, "SMBus", missing)
    path = config_writer.write({"sensor": {"backend": "real"}})
    assert run_selftest(path, "--skip-buttons") == 1
    out = capsys.readouterr().out
    assert "FAIL  sensor (MPU6050 on I2C bus 1 at 0x68): /dev/i2c-1 does not exist" in out


@pytest.mark.parametrize("value", [b"\x00\x06\x1a\x80", b""])
def test_the_bus_clock_comes_from_the_device_tree(tmp_path, value):
    from odar.selftest import device_tree_bus_hz

    node = tmp_path / "class" / "i2c-adapter" / "i2c-1" / "of_node"
    node.mkdir(parents=True)
    (node / "clock-frequency").write_bytes(value)
    assert device_tree_bus_hz(tmp_path, 1) == (400_000 if value else None)
