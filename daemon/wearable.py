"""The wearable the daemon drives: the IMU, three buttons, the motor, an optional LED.

:func:`open_real_wearable` opens /dev/i2c-N with smbus2 and gpiozero's default pin factory
(``sensor.backend: real``). The emulated wearable (``sensor.backend: emulated``) is assembled
from the same devices by :mod:`odar.harness.emulated_wearable`; the daemon cannot tell which.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from odar.config import Config
from odar.drivers.clock import Clock, SystemClock
from odar.drivers.gpio import StatusLed, VibrationMotor, WearableButtons
from odar.drivers.i2c_bus import I2CBus
from odar.drivers.mpu6050 import MPU6050
from odar.sensor_presence import LateI2CBus

_log = logging.getLogger(__name__)


@dataclass
class Wearable:
    sensor: MPU6050
    buttons: WearableButtons
    motor: VibrationMotor
    led: StatusLed | None
    clock: Clock
    bus: I2CBus
    #: What else whoever built the wearable needs undone at close (a mock pin factory's reset).
    release: Callable[[], None] | None = None

    def close(self) -> None:
        for device in (self.buttons, self.motor, self.led):
            if device is not None:
                device.close()
        try:
            self.sensor.close()
        except OSError as error:
            _log.warning("putting the sensor to sleep failed: %s", error)
        close_bus = getattr(self.bus, "close", None)
        if close_bus is not None:
            close_bus()
        if self.release is not None:
            self.release()


def open_real_wearable(config: Config, bus: I2CBus | None = None) -> Wearable:
    """The Pi's devices; *bus* defaults to ``sensor.bus``, opened at first use: a missing
    /dev/i2c-N is the sensor's problem (:mod:`odar.sensor_presence`), reported and retried."""
    if bus is None:
        bus = LateI2CBus(config.sensor.settings.bus)
    ensure_lgpio_workdir()
    clock = SystemClock()
    return assemble_wearable(config, bus, clock, pin_factory=None, speed=1.0)


def ensure_lgpio_workdir(
    environ: MutableMapping[str, str] = os.environ,
    writable: Callable[[str], bool] = lambda path: os.access(path, os.W_OK),
) -> str | None:
    """Give lgpio a directory it can write when its working directory is not one.

    lgpio (gpiozero's pin library on Bookworm) makes a FIFO in ``$LG_WD``, else in the working
    directory, and cannot open /dev/gpiochip0 without it. The unit sets ``LG_WD``; by hand,
    ``runuser -u odar -- odar selftest`` from root's home would otherwise fail on the pins
    instead of checking them. Returns the directory chosen, or None when none was needed.
    """
    if "LG_WD" in environ:
        return None
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    if cwd and writable(cwd):
        return None
    workdir = tempfile.mkdtemp(prefix="odar-lgpio-")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    environ["LG_WD"] = workdir
    return workdir


def assemble_wearable(
    config: Config, bus: I2CBus, clock: Clock, pin_factory: Any, speed: float
) -> Wearable:
    """The devices on *bus* and *pin_factory* (None: gpiozero's default, the real pins)."""
    pins = config.pins
    sensor = MPU6050(bus, config.sensor.settings, clock=clock)
    buttons = WearableButtons(
        pins.mode_button,
        pins.class_button,
        pins.start_button,
        bounce_time=pins.bounce_time,
        pin_factory=pin_factory,
    )
    motor = VibrationMotor(pins.motor, speed=speed, pin_factory=pin_factory)
    led = (
        StatusLed(pins.led, speed=speed, pin_factory=pin_factory) if pins.led is not None else None
    )
    return Wearable(sensor, buttons, motor, led, clock, bus)
