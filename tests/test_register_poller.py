"""The naive baseline: 14 single-byte reads a sample, the same SI values, loss when slow."""

from __future__ import annotations

import numpy as np
import pytest
from fake_smbus import FakeSMBus, ManualClock

from odar.drivers.sensor_settings import SensorSettings
from odar.harness.bench.register_poller import RegisterPoller

G = 9.80665


def test_one_sample_is_fourteen_single_byte_reads_converted_like_the_fifo() -> None:
    bus, clock = FakeSMBus(), ManualClock()
    poller = RegisterPoller(bus, SensorSettings(accel_range_g=4, gyro_range_dps=250), clock)
    poller.start()
    # ACCEL_XOUT = 0x2000 (1 g at +-4 g), TEMP = 0x1234 (ignored), GYRO_XOUT = 0xFF7D (-1 dps)
    data = [0x20, 0x00, 0, 0, 0, 0, 0x12, 0x34, 0xFF, 0x7D, 0, 0, 0, 0]
    bus.registers.update({0x3B + i: v for i, v in enumerate(data)})
    bus.calls.clear()
    block = poller.read()
    assert [c.kind for c in bus.calls] == ["read_byte_data"] * 14
    assert [c.register for c in bus.calls] == list(range(0x3B, 0x49))
    np.testing.assert_allclose(block.samples[0], [G, 0, 0, -0.0174533, 0, 0], atol=1e-6)
    assert block.timestamps[0] == clock.now


def test_a_slow_poll_counts_the_samples_it_skipped() -> None:
    bus, clock = FakeSMBus(), ManualClock()
    poller = RegisterPoller(bus, SensorSettings(rate_hz=100), clock)
    poller.start()
    poller.read()
    clock.advance(0.010)
    assert poller.read().lost == 0
    clock.advance(0.050)  # samples 2, 3, 4, 5 came and went; 6 is read
    block = poller.read()
    assert block.lost == 4 and block.gap
    assert poller.counters.lost == 4
    assert poller.poll_interval_s == pytest.approx(0.01)
