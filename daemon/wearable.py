"""The physical wearable the daemon drives: the IMU, three buttons, the motor, an optional LED.

``sensor.backend: real`` opens /dev/i2c-N with smbus2 and gpiozero's default pin factory;
``emulated`` builds the same devices on the register-level MPU6050 emulator and gpiozero's
MockFactory, with a scripted wearer (see :mod:`odar.scenario`). The daemon cannot tell which.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odar.config import Config
from odar.drivers.clock import Clock, SystemClock
from odar.drivers.gpio import StatusLed, VibrationMotor, WearableButtons
from odar.drivers.mpu6050 import MPU6050
from odar.scenario import Scenario, SwitchableMotion, load_scenario, resolve_scenario
from odar.sensor_presence import LateI2CBus
from odar.sensor_rig import EmulatedSensor

_log = logging.getLogger(__name__)


@dataclass
class EmulatedWorld:
    """What only the emulated wearable has: the chip, the scripted wearer, the mock pins."""

    sensor: EmulatedSensor
    motion: SwitchableMotion
    scenario: Scenario
    pin_factory: Any

    def press_pins(self, config: Config) -> dict[str, Any]:
        return {
            "mode": self.pin_factory.pin(config.pins.mode_button),
            "class": self.pin_factory.pin(config.pins.class_button),
            "start": self.pin_factory.pin(config.pins.start_button),
        }


@dataclass
class Wearable:
    sensor: MPU6050
    buttons: WearableButtons
    motor: VibrationMotor
    led: StatusLed | None
    clock: Clock
    bus: Any
    emulated: EmulatedWorld | None = None

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
        if self.emulated is not None:
            self.emulated.pin_factory.reset()


def open_wearable(config: Config, config_dir: Path) -> Wearable:
    if config.sensor.backend == "emulated":
        return _open_emulated(config, config_dir)
    return _open_real(config)


def _open_real(config: Config) -> Wearable:
    # Opened at first use: a missing /dev/i2c-N is the sensor's problem, reported and retried.
    bus = LateI2CBus(config.sensor.settings.bus)
    clock = SystemClock()
    return _assemble(config, bus, clock, pin_factory=None, speed=1.0)


def _open_emulated(config: Config, config_dir: Path) -> Wearable:
    import numpy as np
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from odar.drivers.emulated.clock import ScaledClock
    from odar.drivers.emulated.motion import Wearer
    from odar.sensor_rig import build_emulated_sensor

    emulated = config.sensor.emulated
    scenario = load_scenario(resolve_scenario(emulated.scenario, config_dir))
    seed = emulated.seed if emulated.seed is not None else scenario.seed
    # Noise and bias stay (the emulated chip has none of its own); saturation and
    # quantisation are the chip's job at the configured full scale.
    wearer = dataclasses.replace(
        Wearer.random(np.random.default_rng(seed), placements=[scenario.placement]),
        accel_range_g=None,
        gyro_range_dps=None,
    )
    first = next((s.value for s in scenario.steps if s.kind == "activity"), "sitting")
    motion = SwitchableMotion(wearer, first, seed)
    clock = ScaledClock(emulated.speed)
    sensor = build_emulated_sensor(config.sensor.settings, motion, clock)
    factory = MockFactory(pin_class=MockPWMPin)
    world = EmulatedWorld(sensor, motion, scenario, factory)
    wearable = _assemble(config, sensor.bus, clock, factory, emulated.speed)
    wearable.emulated = world
    return wearable


def _assemble(config: Config, bus: Any, clock: Clock, pin_factory: Any, speed: float) -> Wearable:
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
