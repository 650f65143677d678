"""The benchmark baseline: what popular Python MPU-6050 drivers do.

Per sample, 14 single-byte reads of ACCEL_XOUT_H..GYRO_ZOUT_L (one I2C transaction each),
polled at the sample rate. Used only by ``odar bench sensor`` to show what the FIFO driver
saves; nothing in the daemon runs it.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from odar.drivers import mpu6050_registers as reg
from odar.drivers.clock import Clock, SystemClock
from odar.drivers.i2c_bus import I2CBus
from odar.drivers.mpu6050 import DriverCounters, SensorBlock, nearest_sample_rate, si_scale
from odar.drivers.sensor_settings import ACCEL_RANGES_G, GYRO_RANGES_DPS, SensorSettings

#: Which of the seven big-endian words in ACCEL_XOUT_H..GYRO_ZOUT_L are accel xyz and gyro xyz
#: (word 3, the temperature, is read, as those drivers do, and dropped).
_CHANNEL_WORDS = [0, 1, 2, 4, 5, 6]


class RegisterPoller:
    """One sample per ``read()``, fetched register by register; the same SensorBlock out."""

    def __init__(
        self,
        bus: I2CBus,
        settings: SensorSettings,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._address = settings.address
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._smplrt_div, self._rate_hz = nearest_sample_rate(settings)
        self._scale = si_scale(settings)
        self._first_read_at: float | None = None
        self._last_sample_due = 0
        self.counters = DriverCounters()

    @property
    def actual_rate_hz(self) -> float:
        return self._rate_hz

    @property
    def poll_interval_s(self) -> float:
        return 1.0 / self._rate_hz

    def start(self) -> None:
        """Wake the chip and set ranges, filter and rate with whole-byte writes, as they do."""
        s = self._settings
        self._write(reg.Register.PWR_MGMT_1, 0)
        self._write(reg.Register.CONFIG, s.dlpf_cfg)
        self._write(reg.Register.SMPLRT_DIV, self._smplrt_div)
        self._write(reg.Register.GYRO_CONFIG, GYRO_RANGES_DPS[s.gyro_range_dps][0] << 3)
        self._write(reg.Register.ACCEL_CONFIG, ACCEL_RANGES_G[s.accel_range_g][0] << 3)

    def read(self) -> SensorBlock:
        """The current data registers as one sample stamped now; a late poll counts as loss."""
        raw = bytearray(
            self._bus.read_byte_data(self._address, reg.Register.ACCEL_XOUT_H + offset)
            for offset in range(reg.DATA_REGISTER_COUNT)
        )
        now = self._clock.monotonic()
        self.counters.transactions += reg.DATA_REGISTER_COUNT
        self.counters.bus_bytes += 4 * reg.DATA_REGISTER_COUNT
        self.counters.reads += 1
        counts = np.frombuffer(bytes(raw), dtype=">i2")[_CHANNEL_WORDS]
        samples = (counts * self._scale).astype(np.float32).reshape(1, 6)
        lost = self._missed_since_last_read(now)
        self.counters.samples += 1
        if lost:
            self.counters.lost += lost
            self.counters.gaps += 1
        return SensorBlock(np.array([now]), samples, lost=lost, gap=lost > 0)

    def close(self) -> None:
        """Nothing to undo: the popular drivers leave the chip running."""

    def _missed_since_last_read(self, now: float) -> int:
        """Samples the chip made between two polls that no poll saw (a slow poll skips some;
        a fast one sees the same sample twice, which is not counted)."""
        if self._first_read_at is None:
            self._first_read_at = now
            return 0
        due = math.floor((now - self._first_read_at) * self._rate_hz)
        missed = max(0, due - self._last_sample_due - 1)
        self._last_sample_due = max(due, self._last_sample_due)
        return missed

    def _write(self, register: int, value: int) -> None:
        self._bus.write_byte_data(self._address, register, value)
        self.counters.transactions += 1
        self.counters.bus_bytes += 3
