"""The emulated wearable's sensor as the daemon, the demo and the benches build it."""

from __future__ import annotations

import errno
import math

import numpy as np
import pytest

from odar.drivers.emulated.bus import transaction_bits
from odar.drivers.emulated.clock import ScaledClock, VirtualClock
from odar.drivers.mpu6050 import MPU6050
from odar.drivers.sensor_settings import SensorSettings
from odar.harness.sensor_rig import StillMotion, build_emulated_sensor, wearer_motion

G = 9.80665
WHO_AM_I = 0x75


def test_the_chip_answers_at_the_settings_address_on_the_settings_bus() -> None:
    settings = SensorSettings(bus=3, address=0x69)
    sensor = build_emulated_sensor(settings, StillMotion())
    assert sensor.address == 0x69
    assert sensor.bus.bus_number == 3
    assert sensor.bus.read_byte_data(0x69, WHO_AM_I) == 0x68
    with pytest.raises(OSError) as nothing_there:
        sensor.bus.read_byte_data(0x68, WHO_AM_I)
    assert nothing_there.value.errno == errno.EREMOTEIO


def test_the_bus_runs_at_the_settings_clock_on_the_rigs_clock() -> None:
    settings = SensorSettings(bus_hz=100_000)
    sensor = build_emulated_sensor(settings, StillMotion(), VirtualClock(start=5.0))
    sensor.bus.read_byte_data(settings.address, WHO_AM_I)
    # One register byte written, one read: two messages and a STOP.
    assert sensor.clock.monotonic() == pytest.approx(5.0 + transaction_bits([1, 1]) / 100_000)
    assert sensor.bus.clock is sensor.clock and sensor.chip.clock is sensor.clock


def test_a_virtual_clock_is_the_default_and_a_scaled_clock_is_used_when_given() -> None:
    default = build_emulated_sensor(SensorSettings(), StillMotion())
    assert isinstance(default.clock, VirtualClock) and default.clock.monotonic() == 0.0
    scaled = ScaledClock(speed=1000.0)
    assert build_emulated_sensor(SensorSettings(), StillMotion(), scaled).clock is scaled


def test_a_clone_answers_with_its_own_who_am_i() -> None:
    sensor = build_emulated_sensor(SensorSettings(), StillMotion(), who_am_i=0x70)
    assert sensor.bus.read_byte_data(0x68, WHO_AM_I) == 0x70


def test_the_driver_reads_the_still_wearer_back_in_si_units() -> None:
    settings = SensorSettings(rate_hz=200, accel_range_g=2, gyro_range_dps=250)
    sensor = build_emulated_sensor(settings, StillMotion())
    driver = MPU6050(sensor.bus, settings, clock=sensor.clock)
    driver.start()
    sensor.clock.sleep(0.2)
    block = driver.read()
    assert len(block) >= 30
    expected = np.r_[np.array([0.5, -0.25, 0.8]) * G, np.radians([10.0, -20.0, 5.0])]
    # Half a count of quantisation at 2 g (16384 LSB/g) and 250 dps (131 LSB/(deg/s)).
    tolerance = np.r_[[0.5 * G / 16384] * 3, [0.5 * math.pi / 180 / 131] * 3] + 1e-6
    assert np.all(np.abs(block.samples - expected) <= tolerance)
    # What the driver left behind is what the rig reports as waiting.
    assert sensor.samples_in_fifo == sensor.chip.fifo_count // 12


def test_a_sample_whose_frame_is_still_entering_the_fifo_is_waiting() -> None:
    # 100 Hz (the first sample 10 ms after wake), each frame entering over 50 us: a count
    # 20 us after the second sample sees one whole frame and 5 bytes (1 + 20/50 x 12) of the
    # next. The chip took both samples: a bench that counted only whole frames in the FIFO
    # left one taken, undelivered sample out of its books at the end of a run.
    settings = SensorSettings(rate_hz=100, dlpf_cfg=1)
    sensor = build_emulated_sensor(settings, StillMotion(), frame_write_s=50e-6)
    bus, chip = sensor.bus, sensor.chip
    bus.write_byte_data(0x68, 0x19, 9)  # SMPLRT_DIV: 1 kHz / 10
    bus.write_byte_data(0x68, 0x1A, 1)  # CONFIG: DLPF_CFG 1
    bus.write_byte_data(0x68, 0x23, 0x78)  # FIFO_EN: accel and gyro
    bus.write_byte_data(0x68, 0x6A, 0x40)  # USER_CTRL: FIFO_EN
    woke = sensor.clock.monotonic()
    bus.write_byte_data(0x68, 0x6B, 0x01)  # PWR_MGMT_1: awake, PLL on gyro X
    sensor.clock.sleep(woke + 0.020 + 20e-6 - sensor.clock.monotonic())
    # FIFO_COUNTH, as the driver reads it (the count reaches the chip at the transaction's start).
    bus.read_byte_data(0x68, 0x72)
    assert chip.samples_produced == 2
    assert (chip.fifo_count, chip.fifo_bytes_entering) == (17, 7)
    assert sensor.samples_in_fifo == 1
    assert sensor.samples_waiting == 2


def test_a_disconnect_through_the_rig_nacks_until_it_is_over() -> None:
    sensor = build_emulated_sensor(SensorSettings(), StillMotion())
    sensor.disconnect(0.2)
    with pytest.raises(OSError) as nack:
        sensor.bus.read_byte_data(0x68, WHO_AM_I)
    assert nack.value.errno == errno.EREMOTEIO
    sensor.clock.sleep(0.2)
    assert sensor.bus.read_byte_data(0x68, WHO_AM_I) == 0x68


def test_still_motion_is_the_same_reading_at_every_instant() -> None:
    reading = StillMotion(accel_g=(0.0, 0.0, 1.0), gyro_dps=(90.0, 0.0, 0.0)).read(np.arange(4.0))
    assert reading.shape == (4, 6)
    np.testing.assert_allclose(reading, np.tile([0, 0, G, math.pi / 2, 0, 0], (4, 1)))


def test_a_seeded_wearer_moves_the_same_way_each_time() -> None:
    times = np.arange(0.0, 4.0, 0.01)
    first = wearer_motion("walking", seed=11).read(times)
    again = wearer_motion("walking", seed=11).read(times)
    other = wearer_motion("walking", seed=12).read(times)
    assert first.shape == (400, 6) and np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    # Walking moves the wrist: the accelerometer varies well beyond sensor noise.
    assert first[:, :3].std(axis=0).max() > 0.5
