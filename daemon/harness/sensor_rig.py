"""The emulated wearable's sensor: an emulated MPU-6050 on an emulated I2C bus, one clock.

The daemon (``sensor.backend: emulated``), the demo, ``odar bench sensor`` and the tests
all need the same wiring: a bus clocked at the settings' ``bus_hz``, numbered like the
settings' bus, with a register-level chip attached at the settings' address and moved by a
:class:`MotionSource`. Building it in one place keeps them from drifting apart (a chip
attached at 0x68 while the driver talks to 0x69 would look like a driver bug).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from odar.drivers.clock import Clock
from odar.drivers.emulated.bus import ADAPTER_BCM2835, EmulatedSMBus, HostJitter
from odar.drivers.emulated.clock import VirtualClock
from odar.drivers.emulated.motion import ActivityStream, MotionSource, Wearer
from odar.drivers.emulated.mpu6050 import EmulatedMPU6050
from odar.drivers.mpu6050_registers import SAMPLE_BYTES
from odar.drivers.sensor_settings import SensorSettings

STANDARD_GRAVITY = 9.80665  # m/s^2 per g


@dataclass(frozen=True)
class EmulatedSensor:
    """What :func:`build_emulated_sensor` returns: hand ``bus`` and ``clock`` to the driver;
    ``chip`` is there for fault injection and for the emulator's own counts."""

    bus: EmulatedSMBus
    chip: EmulatedMPU6050
    clock: Clock
    address: int

    def disconnect(self, seconds: float, *, power_loss: bool = False) -> None:
        """The chip stops answering for ``seconds`` (see ``EmulatedMPU6050.disconnect``)."""
        self.chip.disconnect(seconds, power_loss=power_loss)

    @property
    def samples_in_fifo(self) -> int:
        """Whole 12-byte accel+gyro samples waiting in the FIFO as of the last bus access."""
        return self.chip.fifo_count // SAMPLE_BYTES

    @property
    def samples_waiting(self) -> int:
        """Samples the chip took that are waiting to be read as of the last bus access: whole
        12-byte frames in the FIFO and the one still entering it byte by byte (taken, so
        counted by the chip, but a partial frame in the FIFO). A FIFO that lost its oldest
        bytes to an overflow starts with part of a frame: that sample is not waiting."""
        return (self.chip.fifo_count + self.chip.fifo_bytes_entering) // SAMPLE_BYTES


def build_emulated_sensor(
    settings: SensorSettings,
    motion: MotionSource,
    clock: Clock | None = None,
    *,
    who_am_i: int = 0x68,
    strict: bool = False,
    transaction_overhead_s: float = 0.0,
    jitter: HostJitter | None = None,
    adapter: str = ADAPTER_BCM2835,
    **chip_options: Any,
) -> EmulatedSensor:
    """An emulated MPU-6050 at ``settings.address`` on bus ``settings.bus`` at ``settings.bus_hz``.

    ``clock`` defaults to a fresh :class:`VirtualClock` (tests, benches); pass a
    ``ScaledClock`` when threads really block (the daemon, the demo). ``who_am_i`` 0x70 or
    0x98 makes a clone; ``strict`` enforces the register map's stricter preconditions;
    ``jitter`` makes the host late before transactions; ``adapter`` is the kernel driver the
    bus behaves as (i2c-bcm2835, the Pi's own, or i2c-gpio); ``chip_options`` go to
    :class:`EmulatedMPU6050` (clock_offset, clock_drift_per_s, record_truth, ...).
    """
    clock = clock if clock is not None else VirtualClock()
    bus = EmulatedSMBus(
        clock,
        bus_hz=settings.bus_hz,
        bus_number=settings.bus,
        transaction_overhead_s=transaction_overhead_s,
        jitter=jitter,
        adapter=adapter,
    )
    chip = EmulatedMPU6050(motion, clock, who_am_i=who_am_i, strict=strict, **chip_options)
    bus.attach(settings.address, chip)
    return EmulatedSensor(bus=bus, chip=chip, clock=clock, address=settings.address)


class StillMotion:
    """A wearer standing still with the device tilted: the same reading at every instant.

    Cheap to evaluate (the synthetic activities cost ~10 us a sample), so tests and long
    benches can run the sensor path without paying for the physics.
    """

    def __init__(
        self,
        accel_g: tuple[float, float, float] = (0.5, -0.25, 0.8),
        gyro_dps: tuple[float, float, float] = (10.0, -20.0, 5.0),
    ) -> None:
        accel = np.asarray(accel_g, dtype=np.float64) * STANDARD_GRAVITY
        gyro = np.radians(np.asarray(gyro_dps, dtype=np.float64))
        self.reading = np.concatenate([accel, gyro])

    def read(self, times: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.reading, (len(times), 6)).copy()


def wearer_motion(activity: str = "walking", seed: int = 0) -> ActivityStream:
    """A random wearer (seeded) doing ``activity`` forever, with an ideal sensor: the
    emulated chip adds its own quantisation and saturation."""
    rng = np.random.default_rng(seed)
    wearer = Wearer.random(rng).without_sensor_errors()
    return ActivityStream(activity, wearer, seed=int(rng.integers(2**31)))


__all__ = [
    "EmulatedSensor",
    "StillMotion",
    "build_emulated_sensor",
    "wearer_motion",
]
