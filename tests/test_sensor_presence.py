"""No sensor is a state, not a crash: odar.sensor_presence alone and under the running daemon.

The chip is the register-level emulator on the emulated bus; "missing" is what a missing chip
does on a real bus: every transaction NACKed (unplugged, or nothing at the configured address),
a WHO_AM_I that is no MPU-6050 (the wrong chip), or no /dev/i2c-N at all (I2C off).
"""

from __future__ import annotations

import itertools
import logging
import time

import pytest
from conftest import wait_until
from faults_support import RecordingNotifier

from odar.drivers.emulated.clock import VirtualClock
from odar.drivers.mpu6050 import MPU6050
from odar.drivers.sensor_settings import SensorSettings
from odar.errors import SensorNotFoundError
from odar.haptics import NO_SENSOR, REFUSED
from odar.harness.sensor_rig import StillMotion, build_emulated_sensor
from odar.sensor_presence import RETRY_S, LateI2CBus, SensorPresence

#: Real seconds between the watchdog pings the daemon is asked for.
PING_S = 0.05


def _missing_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.getMessage().startswith("no sensor:")]


def _presence(settings: SensorSettings) -> tuple[SensorPresence, object, VirtualClock]:
    clock = VirtualClock()
    rig = build_emulated_sensor(settings, StillMotion(), clock)
    driver = MPU6050(rig.bus, settings, clock=clock)
    return SensorPresence(driver, settings, clock), rig, clock


def test_a_missing_chip_is_reported_once_with_the_fix_and_read_when_it_answers(caplog):
    settings = SensorSettings(bus=1, address=0x68, rate_hz=100)
    presence, rig, clock = _presence(settings)
    rig.disconnect(10.0)
    with caplog.at_level(logging.DEBUG, logger="odar"):
        presence.start()  # does not raise
        assert presence.missing is not None and "no answer to WHO_AM_I" in presence.missing
        assert presence.recovering
        assert presence.fifo_filling_since is None, "nothing fills while the chip is missing"
        looks = 0
        while True:
            assert len(presence.read()) == 0
            if presence.missing is None:
                break
            clock.advance(presence.poll_interval_s)
            looks += 1
            assert looks < 1000, "the chip was never found again"
    lines = _missing_lines(caplog.records)
    assert len(lines) == 1, lines
    assert "I2C bus 1 address 0x68" in lines[0]
    assert "dtparam=i2c_arm=on" in lines[0] and "`i2cdetect -y 1` shows 68" in lines[0]
    assert any("sensor found: MPU-6050 on I2C bus 1 address 0x68" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    # Found about when it came back (the looks are RETRY_S apart), then it streams.
    assert 10.0 <= clock.monotonic() <= 10.0 + RETRY_S + 1.0
    assert not presence.recovering and presence.problem is None
    since = presence.fifo_filling_since
    assert since is not None and 10.0 <= since <= clock.monotonic()
    clock.advance(0.5)
    assert len(presence.read()) >= 40


def test_the_wrong_address_stays_missing_and_says_which_address(caplog):
    settings = SensorSettings(bus=1, address=0x69, rate_hz=100)
    presence, rig, clock = _presence(settings)
    rig.bus.detach(0x69)
    rig.bus.attach(0x68, rig.chip)  # AD0 wired low: the chip answers at 0x68
    with caplog.at_level(logging.INFO, logger="odar"):
        presence.start()
        for _ in range(100):
            presence.read()
            clock.advance(0.1)
    assert presence.missing is not None
    assert "address 0x69" in presence.problem and "shows 69" in presence.problem
    assert len(_missing_lines(caplog.records)) == 1


def test_a_missing_bus_device_node_is_a_missing_sensor_with_the_fix():
    settings = SensorSettings(bus=250, address=0x68, rate_hz=100)
    presence = SensorPresence(MPU6050(LateI2CBus(250), settings), settings, VirtualClock())
    presence.start()
    assert presence.missing is not None
    assert "/dev/i2c-250 does not exist: enable I2C" in presence.missing


def test_the_late_bus_opens_once_the_node_is_there():
    attempts: list[int] = []

    class Opened:
        def read_byte_data(self, address: int, register: int) -> int:
            return 0x68

        def close(self) -> None:
            attempts.append(-1)

    def opener(number: int) -> Opened:
        attempts.append(number)
        if len(attempts) < 3:
            raise FileNotFoundError(2, "No such file or directory")
        return Opened()

    bus = LateI2CBus(1, opener)
    for _ in range(2):
        with pytest.raises(SensorNotFoundError, match=r"/dev/i2c-1 does not exist"):
            bus.read_byte_data(0x68, 0x75)
    assert bus.read_byte_data(0x68, 0x75) == 0x68
    assert bus.read_byte_data(0x68, 0x75) == 0x68
    bus.close()
    assert attempts == [1, 1, 1, -1]


def _start_without_chip(monkeypatch, start_daemon, config_writer, seconds: float):
    """The daemon on an emulated wearable whose chip does not answer for *seconds* (virtual)."""
    import odar.harness.sensor_rig as rig

    build = rig.build_emulated_sensor

    def build_unplugged(*args, **kwargs):
        sensor = build(*args, **kwargs)
        sensor.disconnect(seconds)
        return sensor

    monkeypatch.setattr(rig, "build_emulated_sensor", build_unplugged)
    notifier = RecordingNotifier(interval=PING_S)
    return start_daemon(config_writer.write(), notifier=notifier), notifier


def test_the_daemon_without_its_chip_is_ready_says_why_and_starts_reading_when_it_appears(
    monkeypatch, start_daemon, config_writer, caplog
):
    # 40 virtual seconds at the tests' speed of 20: 2 real seconds without a chip.
    with caplog.at_level(logging.INFO, logger="odar"):
        running, notifier = _start_without_chip(monkeypatch, start_daemon, config_writer, 40.0)
        daemon, started = running.daemon, time.monotonic()
        assert daemon.sensor.missing is not None  # READY came without data
        statuses = [text for _, kind, text in notifier.messages if kind == "STATUS"]
        assert statuses and statuses[-1].startswith("no sensor on I2C bus 1 address 0x68")
        # Any button: the no-sensor pattern, and nothing changes.
        mode = daemon.controls.mode
        for button in ("mode", "class", "start"):
            pattern, pulses = running.press_and_feel(button)
            assert pattern == NO_SENSOR and pulses == NO_SENSOR.pulses
        assert NO_SENSOR != REFUSED and daemon.controls.mode is mode
        wait_until(lambda: daemon.sensor.missing is None, "the chip to be found")
        found_at = time.monotonic()
        running.collect(class_index=0, samples=1)
    assert running.thread.is_alive()
    lines = _missing_lines(caplog.records)
    assert len(lines) == 1 and "`i2cdetect -y 1`" in lines[0], lines
    # The watchdog heard from the daemon while it waited for the chip.
    pings = [t for t in notifier.times_of("WATCHDOG") if started <= t <= found_at]
    assert len(pings) >= 2
    assert max(b - a for a, b in itertools.pairwise([started, *pings, found_at])) < 5.0
    assert not daemon.sensor.problem
    assert running.stop() == 0


def test_a_wrong_chip_keeps_the_daemon_up_and_it_stops_cleanly(
    monkeypatch, start_daemon, config_writer
):
    import odar.harness.sensor_rig as rig

    build = rig.build_emulated_sensor
    monkeypatch.setattr(
        rig, "build_emulated_sensor", lambda *a, **k: build(*a, **{**k, "who_am_i": 0x12})
    )
    running = start_daemon(config_writer.write())
    assert "reads 0x12" in running.daemon.sensor.missing
    assert running.stop() == 0
