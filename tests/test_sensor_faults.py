"""Faults on the sensor path, end to end: emulated chip -> driver -> ring buffer -> windows.

Loose wires and brown-outs must leave a marked gap and a resumed stream, never a window that
spans the hole nor an exception; a clone chip must work with a warning; a chip that is not an
MPU-6050 must be refused with the bus and address in the message.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from odar.drivers.mpu6050 import MPU6050, SensorBlock
from odar.drivers.sensor_settings import SensorSettings
from odar.errors import OdarError, SensorNotFoundError
from odar.harness.sensor_rig import EmulatedSensor, StillMotion, build_emulated_sensor
from odar.ring_buffer import RingBuffer
from odar.windows import Window, WindowCutter

G = 9.80665
SMPLRT_DIV, ACCEL_CONFIG, FIFO_EN, USER_CTRL, PWR_MGMT_1 = 0x19, 0x1C, 0x23, 0x6A, 0x6B
SLEEP = 0x40
STILL = StillMotion()
STILL_READING = STILL.reading


@dataclass
class SensorPath:
    """The daemon's sensor path on an emulated sensor, polled in virtual time."""

    sensor: EmulatedSensor
    driver: MPU6050
    cutter: WindowCutter
    blocks: list[SensorBlock] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    @classmethod
    def start(cls, settings: SensorSettings, **rig_options) -> SensorPath:
        sensor = build_emulated_sensor(settings, STILL, **rig_options)
        driver = MPU6050(sensor.bus, settings, clock=sensor.clock)
        driver.start()
        decimation = max(1, round(driver.actual_rate_hz / 100))
        ring = RingBuffer(capacity=8 * 400 * decimation)
        cutter = WindowCutter(ring, window=400, hop=100, decimation=decimation)
        return cls(sensor, driver, cutter)

    def run(self, seconds: float) -> None:
        clock = self.sensor.clock
        end = clock.monotonic() + seconds
        next_read = clock.monotonic()
        while clock.monotonic() < end:
            block = self.driver.read()  # an exception here fails the test
            self.cutter.ring.append(block)
            if len(block):
                self.blocks.append(block)
            while (window := self.cutter.poll()) is not None:
                self.windows.append(window)
            next_read = max(next_read + self.driver.poll_interval_s, clock.monotonic())
            clock.sleep(next_read - clock.monotonic())

    def samples(self) -> np.ndarray:
        return np.concatenate([b.samples for b in self.blocks])


def test_100_loose_wires_of_50_to_500_ms_each_leave_one_gap_and_a_resumed_stream() -> None:
    path = SensorPath.start(SensorSettings(rate_hz=1000, bus_hz=400_000, dlpf_cfg=1))
    rng = np.random.default_rng(2024)
    lengths = rng.uniform(0.050, 0.500, size=100)
    quiet = rng.uniform(5.0, 7.0, size=101)  # more than one 4 s window after each recovery
    disconnects = []
    for length, before in zip(lengths, quiet, strict=False):
        path.run(before)
        start = path.sensor.clock.monotonic()
        path.sensor.disconnect(float(length))  # the next read meets it
        disconnects.append((start, start + float(length)))
    path.run(quiet[-1])

    counters = path.driver.counters
    assert counters.i2c_errors == 100 and counters.recoveries == 100
    assert counters.gaps == 100 and not path.driver.recovering
    first = np.array([b.timestamps[0] for b in path.blocks])
    last = np.array([b.timestamps[-1] for b in path.blocks])
    size = np.array([len(b) for b in path.blocks])
    gap = np.array([b.gap for b in path.blocks])
    assert gap.sum() == 100
    period = 1.0 / path.driver.actual_rate_hz
    ends = [end for _, end in disconnects]
    next_starts = [start for start, _ in disconnects[1:]] + [math.inf]
    for end, next_start in zip(ends, next_starts, strict=True):
        after = (first > end) & (first < next_start)
        # Exactly one gap mark, on the first block after the chip answers again ...
        assert gap[after].sum() == 1 and gap[after][0]
        # ... and the stream is back: all but about a second of the quiet time arrives.
        quiet_s = min(next_start, path.sensor.clock.monotonic()) - end
        assert size[after].sum() >= (quiet_s - 1.0) / period
    # What each gap reports lost is the hole it leaves in the timestamps, to two samples.
    gap_index = np.flatnonzero(gap)
    holes = np.rint((first[gap_index] - last[gap_index - 1]) / period) - 1
    reported = np.array([path.blocks[i].lost for i in gap_index])
    assert np.all(np.abs(holes - reported) <= 2)

    assert len(path.windows) >= 100
    starts = np.array([w.t_start for w in path.windows])
    stops = np.array([w.t_end for w in path.windows])
    for start, end in disconnects:
        assert not np.any((starts < end) & (stops > start)), "a window spans a disconnect"
    for window in path.windows:
        steps = np.diff(window.timestamps)
        assert np.all(np.abs(steps - 10 * period) < 0.5 * period), "a hole inside a window"
    # Every stretch between two disconnects yields at least one window.
    for end, next_start in zip(ends, next_starts, strict=True):
        assert np.any((starts > end) & (stops < next_start))


def test_a_brown_out_resets_the_chip_and_the_driver_configures_it_again() -> None:
    settings = SensorSettings(rate_hz=200, accel_range_g=16, bus_hz=400_000)
    path = SensorPath.start(settings)
    path.run(1.0)
    before = len(path.blocks)
    path.sensor.disconnect(0.3, power_loss=True)
    chip = path.sensor.chip
    assert chip.peek(PWR_MGMT_1) & SLEEP and chip.peek(ACCEL_CONFIG) == 0  # power-up state
    path.run(2.0)

    assert path.driver.counters.recoveries == 1 and not path.driver.recovering
    assert chip.peek(PWR_MGMT_1) & SLEEP == 0
    assert chip.peek(SMPLRT_DIV) == 4  # 1 kHz / (1 + 4) = 200 Hz
    assert (chip.peek(ACCEL_CONFIG) >> 3) & 0x03 == 3  # AFS_SEL 3: +-16 g
    assert chip.peek(FIFO_EN) == 0x78 and chip.peek(USER_CTRL) & 0x40
    after = path.blocks[before:]
    assert after[0].gap and after[0].lost >= 0.3 * 200
    resumed = np.concatenate([b.samples for b in after])
    assert len(resumed) >= 200 * 1.0
    # At +-16 g one count is 1/2048 g: the re-applied range reads the still wrist right.
    tolerance = np.r_[[0.5 * G / 2048] * 3, [0.5 * math.pi / 180 / 65.5] * 3] + 1e-6
    assert np.all(np.abs(resumed - STILL_READING) <= tolerance)


@pytest.mark.parametrize(("who_am_i", "name"), [(0x70, "MPU-6500"), (0x98, "0x98")])
def test_a_clone_is_used_with_a_warning(caplog, who_am_i: int, name: str) -> None:
    with caplog.at_level(logging.WARNING):
        path = SensorPath.start(SensorSettings(rate_hz=100), who_am_i=who_am_i)
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert f"{who_am_i:#04x}" in warning.getMessage()
    assert "bus 1" in warning.getMessage() and "0x68" in warning.getMessage()
    assert name in path.driver.chip_name
    path.run(1.0)
    assert len(path.samples()) >= 100 - 15  # the newest few wait in the FIFO for the next read
    np.testing.assert_allclose(path.samples().mean(axis=0), STILL_READING, atol=5e-3)


@pytest.mark.parametrize("who_am_i", [0x00, 0xFF, 0x12, 0x69])
def test_a_chip_that_is_not_an_mpu6050_is_refused_naming_bus_and_address(who_am_i: int) -> None:
    settings = SensorSettings(bus=3, address=0x69)
    sensor = build_emulated_sensor(settings, STILL, who_am_i=who_am_i)
    driver = MPU6050(sensor.bus, settings, clock=sensor.clock)
    with pytest.raises(SensorNotFoundError) as refused:
        driver.start()
    assert isinstance(refused.value, OSError) and isinstance(refused.value, OdarError)
    message = str(refused.value)
    assert "bus 3" in message and "0x69" in message
    assert f"{who_am_i:#04x}" in message


def test_nothing_at_the_address_is_refused_naming_bus_and_address() -> None:
    sensor = build_emulated_sensor(SensorSettings(address=0x68), STILL)
    wrong = SensorSettings(address=0x69)
    with pytest.raises(SensorNotFoundError, match=r"bus 1 address 0x69.*no answer"):
        MPU6050(sensor.bus, wrong, clock=sensor.clock).start()
