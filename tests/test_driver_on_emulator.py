"""The driver against the independently written register-level emulator, in virtual time.

Two readings of the same datasheet checked against each other: the driver's register writes
as the emulated chip stores them, and the emulator's samples as the driver converts them.
"""

from __future__ import annotations

import errno
import logging
import math

import numpy as np
import pytest

from odar.drivers.emulated.bus import EmulatedSMBus
from odar.drivers.emulated.clock import VirtualClock
from odar.drivers.emulated.mpu6050 import EmulatedMPU6050
from odar.drivers.mpu6050 import MPU6050, SensorBlock
from odar.drivers.sensor_settings import SensorSettings
from odar.harness.bench.register_poller import RegisterPoller

G = 9.80665
# A still, tilted wrist turning slowly: accel in g, gyro in deg/s.
STILL_ACCEL_G = np.array([0.5, -0.25, 0.8])
STILL_GYRO_DPS = np.array([10.0, -20.0, 5.0])


class SteadyMotion:
    """The same SI reading at every instant."""

    def read(self, times: np.ndarray) -> np.ndarray:
        row = np.concatenate([STILL_ACCEL_G * G, STILL_GYRO_DPS * math.pi / 180.0])
        return np.tile(row, (len(times), 1))


def rig(settings: SensorSettings, *, strict: bool = True):
    clock = VirtualClock(start=100.0)
    bus = EmulatedSMBus(clock, bus_hz=settings.bus_hz)
    chip = EmulatedMPU6050(SteadyMotion(), clock, strict=strict)
    bus.attach(settings.address, chip)
    return clock, bus, chip


def stream(driver, clock: VirtualClock, seconds: float) -> list[SensorBlock]:
    blocks = []
    end = clock.monotonic() + seconds
    next_read = clock.monotonic()
    while clock.monotonic() < end:
        blocks.append(driver.read())
        next_read = max(next_read + driver.poll_interval_s, clock.monotonic())
        clock.sleep(next_read - clock.monotonic())
    return blocks


def test_start_leaves_the_emulated_chip_configured_as_the_settings_say() -> None:
    settings = SensorSettings(rate_hz=200, accel_range_g=8, gyro_range_dps=1000, dlpf_cfg=2)
    _, bus, chip = rig(settings)
    driver = MPU6050(bus, settings, clock=bus.clock)
    driver.start()
    assert chip.peek(0x1A) & 0x07 == 2  # CONFIG.DLPF_CFG
    assert (chip.peek(0x1B) >> 3) & 0x03 == 2  # GYRO_CONFIG.FS_SEL, 1000 dps
    assert (chip.peek(0x1C) >> 3) & 0x03 == 2  # ACCEL_CONFIG.AFS_SEL, 8 g
    assert chip.peek(0x19) == 4  # 1 kHz / (1 + 4) = 200 Hz
    assert chip.peek(0x6B) & 0x47 == 0x01  # awake, CLKSEL 1
    assert chip.peek(0x23) == 0x78
    assert chip.sample_rate_hz == pytest.approx(200.0)


def test_1khz_on_a_400khz_bus_loses_nothing_within_the_targets() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1, bus_hz=400_000, accel_range_g=2)
    clock, bus, chip = rig(settings)
    driver = MPU6050(bus, settings, clock=clock)
    driver.start()
    bus.reset_stats()
    produced_before = chip.samples_produced
    blocks = stream(driver, clock, 10.0)
    stats = bus.stats
    delivered = sum(len(b) for b in blocks)
    produced = chip.samples_produced - produced_before

    assert chip.fifo_bytes_lost == 0
    assert driver.counters.lost == 0 and driver.counters.gaps == 0
    assert 0 <= produced - delivered <= 85  # at most one FIFO still waiting
    # Address bytes: two per combined transaction (write, then read after repeated START).
    bus_bytes = stats.bytes_read + stats.bytes_written + 2 * stats.transactions
    assert bus_bytes / delivered <= 12.5
    assert stats.transactions / 10.0 <= 25
    samples = np.concatenate([b.samples for b in blocks if len(b)])
    expected = np.concatenate([STILL_ACCEL_G * G, STILL_GYRO_DPS * math.pi / 180.0])
    # One count of quantisation at +-2 g and 500 dps.
    np.testing.assert_allclose(samples.mean(axis=0), expected, atol=G / 16384 + 1e-3)
    stamps = np.concatenate([b.timestamps for b in blocks if len(b)])
    assert np.all(np.diff(stamps) > 0)


def test_1khz_on_a_100khz_bus_says_how_to_fix_it_and_reports_the_loss(caplog) -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1, bus_hz=100_000)
    clock, bus, _ = rig(settings)
    driver = MPU6050(bus, settings, clock=clock)
    with caplog.at_level(logging.ERROR):
        driver.start()
    assert any("dtparam=i2c_arm_baudrate=400000" in r.getMessage() for r in caplog.records)
    blocks = stream(driver, clock, 3.0)
    delivered = sum(len(b) for b in blocks)
    assert delivered < 0.95 * 3000
    assert driver.counters.lost > 0 and driver.counters.gaps > 0


def test_a_loose_wire_is_ridden_out_and_the_gap_counted() -> None:
    settings = SensorSettings(rate_hz=500, dlpf_cfg=1, bus_hz=400_000)
    clock, bus, chip = rig(settings)
    driver = MPU6050(bus, settings, clock=clock)
    driver.start()
    before = stream(driver, clock, 1.0)
    chip.disconnect(0.5)
    during = stream(driver, clock, 0.6)
    assert driver.counters.recoveries == 1 and not driver.recovering
    after = stream(driver, clock, 1.0)
    blocks = [b for b in before + during + after if len(b)]
    gaps = [b for b in blocks if b.gap]
    assert len(gaps) == 1
    # About 0.5 s of samples (250) plus what was in the FIFO and the re-initialisation.
    assert 250 <= gaps[0].lost <= 250 + 85 + 100


def test_an_eio_storm_never_raises_out_of_read() -> None:
    settings = SensorSettings(rate_hz=100, bus_hz=400_000)
    clock, bus, _ = rig(settings)
    driver = MPU6050(bus, settings, clock=clock)
    driver.start()
    stream(driver, clock, 0.5)
    bus.inject_errors(errno.EIO, transactions=6)
    stream(driver, clock, 2.0)
    assert driver.counters.i2c_errors == 1 and driver.counters.recoveries == 1
    assert not driver.recovering
    # Recovered: the next second of the stream arrives whole (100 samples at 100 Hz, and what
    # waited in the FIFO since the last read, at most a poll interval's worth).
    resumed = stream(driver, clock, 1.0)
    assert 100 <= sum(len(block) for block in resumed) <= 100 + 100 * driver.poll_interval_s + 5
    assert not any(block.gap for block in resumed)


def test_the_naive_poller_reads_the_same_values_at_14_transactions_a_sample() -> None:
    settings = SensorSettings(rate_hz=100, bus_hz=400_000)
    clock, bus, _ = rig(settings)
    poller = RegisterPoller(bus, settings, clock=clock)
    poller.start()
    clock.sleep(0.05)
    bus.reset_stats()
    blocks = stream(poller, clock, 1.0)
    assert bus.stats.transactions == 14 * len(blocks)
    expected = np.concatenate([STILL_ACCEL_G * G, STILL_GYRO_DPS * math.pi / 180.0])
    np.testing.assert_allclose(blocks[-1].samples[0], expected, atol=4 * G / 8192)
