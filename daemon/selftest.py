"""``odar selftest``: bring-up checks for a freshly soldered wearable, one line each.

In order: the sensor answers (WHO_AM_I, the part it names); one second of data at rest with
|g| about 9.81 m/s^2, every axis alive and gravity's axis named; the FIFO fills to its
1024 bytes when nobody reads it; the I2C bus clock (from the device tree where the kernel
shows it) carries the configured rate; the motor and the LED pulse (their pins read back
high); each button, asked for by name, is pressed within the timeout. A failing line names
the part to look at. Exit 0 only when every check passes.

The daemon must not be running (it holds the pins and the bus): ``systemctl stop odar``.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odar.config import Config, load_config
from odar.drivers import mpu6050_registers as reg
from odar.drivers.mpu6050 import SensorBlock, bus_can_carry, nearest_sample_rate
from odar.errors import OdarError
from odar.pins import describe_pin
from odar.wearable import Wearable

DEFAULT_CONFIG = Path("/etc/odar/odar.yaml")
STANDARD_GRAVITY = 9.80665
#: |g| at rest may differ this much from standard gravity (the chip's factory offset is
#: up to +-50 mg per axis by the datasheet; a few degrees of slow movement add a little).
GRAVITY_TOLERANCE = 1.0
#: Seconds of data the data check looks at.
DATA_SECONDS = 1.0
#: Seconds the data check may take to get that second.
DATA_DEADLINE = 5.0
AXES = ("ax", "ay", "az", "gx", "gy", "gz")
PULSE = ((0.15, 0.15), (0.15, 0.15), (0.15, 0.15))
BUTTONS = ("mode", "class", "start")


@dataclass(frozen=True)
class Check:
    #: The part the check is about ("sensor", "motor", "mode button", ...).
    part: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.part}: {self.detail}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="the configuration to check"
    )
    parser.add_argument(
        "--button-timeout",
        type=float,
        default=15.0,
        help="seconds to wait for each button press",
    )
    parser.add_argument("--skip-buttons", action="store_true", help="do not ask for button presses")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    def say(text: str) -> None:
        print(text, flush=True)

    if config.sensor.backend == "emulated":
        # The emulated world (a scripted wearer presses the buttons) only when asked for.
        from odar.harness.selftest_rig import run_emulated_selftest

        checks = run_emulated_selftest(
            config, args.config, say, args.button_timeout, args.skip_buttons
        )
    else:
        checks = run_real_selftest(config, say, args.button_timeout, args.skip_buttons)
    return summarize(checks, say)


def summarize(checks: list[Check], say: Callable[[str], None]) -> int:
    failed = [check for check in checks if not check.passed]
    if failed:
        parts = ", ".join(dict.fromkeys(check.part for check in failed))
        say(
            f"selftest: {len(checks) - len(failed)} of {len(checks)} checks passed; "
            f"look at: {parts}"
        )
        return 1
    say(f"selftest: all {len(checks)} checks passed")
    return 0


def sensor_part(config: Config) -> str:
    return f"sensor (MPU6050 on I2C bus {config.sensor.bus} at {config.sensor.address:#04x})"


def run_real_selftest(
    config: Config, say: Callable[[str], None], button_timeout: float, skip_buttons: bool
) -> list[Check]:
    from odar.sensor_presence import LateI2CBus
    from odar.wearable import open_real_wearable

    bus = LateI2CBus(config.sensor.bus)
    try:
        # The daemon opens the bus late (no /dev/i2c-N is a state it reports); here a missing
        # node is the first finding, before the pins.
        bus.open()
        wearable = open_real_wearable(config, bus)
    except OdarError as error:
        bus.close()
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        check = Check(sensor_part(config), False, str(reason))
        say(check.line())
        return [check]
    except Exception as error:  # gpiozero's pin factory: no GPIO chip, pins busy
        bus.close()
        check = Check("GPIO", False, f"cannot open the pins: {error}; is odar running?")
        say(check.line())
        return [check]
    with contextlib.closing(wearable):
        return SelfTest(config, wearable, say, button_timeout, skip_buttons).run()


class SelfTest:
    """The checks on one opened wearable."""

    def __init__(
        self,
        config: Config,
        wearable: Wearable,
        say: Callable[[str], None],
        button_timeout: float,
        skip_buttons: bool = False,
        sysfs: Path = Path("/sys"),
    ) -> None:
        self.config = config
        self.wearable = wearable
        self.say = say
        self.button_timeout = button_timeout
        self.skip_buttons = skip_buttons
        self.sysfs = sysfs
        self.checks: list[Check] = []
        self._address = config.sensor.address

    def run(self) -> list[Check]:
        sensor = sensor_part(self.config)
        if self._check(sensor, self.chip):
            if self._check("sensor data", self.data):
                self._check("sensor FIFO", self.fifo)
        else:
            self._record(Check("sensor data", False, "not read: the sensor does not answer"))
        self._check(f"I2C bus {self.config.sensor.bus}", self.bus)
        motor = self.wearable.motor
        self._check("motor", lambda: self.pulse("motor", motor, self.config.pins.motor))
        if self.wearable.led is not None and self.config.pins.led is not None:
            led, led_pin = self.wearable.led, self.config.pins.led
            self._check("LED", lambda: self.pulse("LED", led, led_pin))
        else:
            self._record(Check("LED", True, "none configured (pins.led: null)"))
        if not self.skip_buttons:
            self.buttons()
        return self.checks

    # ------------------------------------------------------------------ plumbing

    def _record(self, check: Check) -> Check:
        self.checks.append(check)
        self.say(check.line())
        return check

    def _check(self, part: str, body: Callable[[], Check]) -> bool:
        try:
            check = body()
        except Exception as error:  # any fault of the part under test is that part's FAIL
            check = Check(part, False, f"{type(error).__name__}: {error}")
        return self._record(check).passed

    # ------------------------------------------------------------------ sensor

    def chip(self) -> Check:
        part = sensor_part(self.config)
        bus = self.wearable.bus
        try:
            who_am_i = bus.read_byte_data(self._address, reg.Register.WHO_AM_I)
        except OSError as error:
            return Check(
                part,
                False,
                f"no answer to WHO_AM_I: errno {error.errno} ({error.strerror or error}); check "
                "SDA to GPIO2 (pin 3), SCL to GPIO3 (pin 5), 3.3 V, GND, and AD0 against "
                "sensor.address (0x68 with AD0 low, 0x69 high)",
            )
        if who_am_i == reg.WHO_AM_I_MPU6050:
            name = "MPU-6050"
        elif who_am_i in reg.WHO_AM_I_CLONES:
            name = reg.WHO_AM_I_CLONES[who_am_i]
        else:
            return Check(
                part,
                False,
                f"WHO_AM_I reads {who_am_i:#04x}, not 0x68 (MPU-6050) or a known clone "
                f"({', '.join(f'{k:#04x}' for k in reg.WHO_AM_I_CLONES)}): another chip "
                "answers at this address",
            )
        return Check(
            part, True, f"WHO_AM_I {who_am_i:#04x}: {name}, FIFO {reg.FIFO_SIZE_BYTES} bytes"
        )

    def data(self) -> Check:
        sensor = self.wearable.sensor
        clock = self.wearable.clock
        sensor.start()
        blocks: list[SensorBlock] = []
        begun = clock.monotonic()
        # Until a gap-free second is in hand (a gap, e.g. a slow first read, starts it over).
        while clock.monotonic() - begun < DATA_DEADLINE:
            block = sensor.read()
            if block.gap:
                blocks = []
            if len(block):
                blocks.append(block)
                span = block.timestamps[-1] - blocks[0].timestamps[0]
                if span >= DATA_SECONDS:
                    break
            clock.sleep(sensor.poll_interval_s)
        part = "sensor data"
        if not blocks:
            return Check(part, False, f"no samples in {DATA_SECONDS:g} s: the FIFO stays empty")
        times = np.concatenate([b.timestamps for b in blocks])
        samples = np.concatenate([b.samples for b in blocks])
        keep = times >= times[-1] - DATA_SECONDS
        times, samples = times[keep], samples[keep]
        mean = samples.mean(axis=0)
        stuck = [
            f"{AXES[axis]} (every sample {samples[0, axis]:+.3f})"
            for axis in range(6)
            if np.ptp(samples[:, axis]) == 0
        ]
        gravity = float(np.linalg.norm(mean[:3]))
        down = int(np.argmax(np.abs(mean[:3])))
        axes = ", ".join(f"{AXES[i]} {mean[i]:+.2f}" for i in range(3))
        gyro = ", ".join(f"{AXES[i]} {mean[i]:+.3f}" for i in range(3, 6))
        summary = (
            f"{len(samples)} samples in {DATA_SECONDS:g} s; accel {axes} m/s^2, |g| "
            f"{gravity:.2f}, gravity along {'+' if mean[down] > 0 else '-'}{'xyz'[down]}; "
            f"gyro {gyro} rad/s"
        )
        if stuck:
            return Check(part, False, f"stuck axis: {', '.join(stuck)}; {summary}")
        if abs(gravity - STANDARD_GRAVITY) > GRAVITY_TOLERANCE:
            return Check(
                part,
                False,
                f"|g| is {gravity:.2f} m/s^2, not about {STANDARD_GRAVITY:.2f}: keep the "
                f"wearable still, or the accelerometer is faulty; {summary}",
            )
        return Check(part, True, summary)

    def fifo(self) -> Check:
        """Nobody reads for longer than the FIFO takes to fill: FIFO_COUNT must reach 1024."""
        sensor = self.wearable.sensor
        _, rate = nearest_sample_rate(self.config.sensor.settings)
        seconds = 1.5 * reg.FIFO_CAPACITY_SAMPLES / rate
        sensor.read()  # empty it
        self.wearable.clock.sleep(seconds)
        bus = self.wearable.bus
        high = bus.read_byte_data(self._address, reg.Register.FIFO_COUNTH)
        low = bus.read_byte_data(self._address, reg.Register.FIFO_COUNTL)
        count = (high << 8) | low
        sensor.close()
        part = "sensor FIFO"
        if count < reg.FIFO_SIZE_BYTES:
            return Check(
                part,
                False,
                f"FIFO_COUNT {count} bytes after {seconds:.1f} s unread, expected "
                f"{reg.FIFO_SIZE_BYTES}: the FIFO is not filling at {rate:g} Hz",
            )
        return Check(part, True, f"filled to {count} bytes in {seconds:.1f} s unread")

    def bus(self) -> Check:
        settings = self.config.sensor.settings
        seen = device_tree_bus_hz(self.sysfs, settings.bus)
        _, rate = nearest_sample_rate(settings)
        fits, needed = bus_can_carry(settings)
        part = f"I2C bus {settings.bus}"
        if seen is None:
            source = f"{settings.bus_hz} Hz configured (sensor.bus_hz; the kernel does not show it)"
            clock_hz = settings.bus_hz
        else:
            source = f"{seen} Hz in the device tree"
            clock_hz = seen
        traffic = getattr(self.wearable.sensor, "counters", None)
        if not fits or clock_hz < settings.bus_hz:
            return Check(
                part,
                False,
                f"{source}; {rate:g} Hz needs {needed / 1000:.0f} kbit/s and sensor.bus_hz is "
                f"{settings.bus_hz}: set dtparam=i2c_arm_baudrate=400000 in config.txt, reboot",
            )
        used = f", {traffic.bus_bytes} bytes read so far" if traffic is not None else ""
        return Check(part, True, f"{source}; {rate:g} Hz needs {needed / 1000:.0f} kbit/s{used}")

    # ------------------------------------------------------------------ outputs, buttons

    def pulse(self, name: str, player: object, pin: int) -> Check:
        """Play three pulses and watch the pin read back high (a shorted or missing driver
        stage cannot be seen from the pin: the line asks the user to feel or see it)."""
        device = player.device  # type: ignore[attr-defined]
        went_high = threading.Event()
        player.play(PULSE)  # type: ignore[attr-defined]
        while True:
            if device.value:
                went_high.set()
            if player.wait(0.001):  # type: ignore[attr-defined]
                break
        where = describe_pin(pin)
        if not went_high.is_set():
            return Check(name, False, f"{where} never read back high while pulsing")
        sense = "feel" if name == "motor" else "see"
        return Check(name, True, f"{where} pulsed 3 times ({sense} it?)")

    def buttons(self) -> None:
        pressed = {name: threading.Event() for name in BUTTONS}
        order: list[str] = []

        def on(name: str) -> Callable[[], None]:
            def press() -> None:
                order.append(name)
                pressed[name].set()

            return press

        self.wearable.buttons.bind(on("mode"), on("class"), on("start"))
        clock = self.wearable.clock
        pins = self.config.pins
        for name, pin in zip(
            BUTTONS, (pins.mode_button, pins.class_button, pins.start_button), strict=True
        ):
            part = f"{name} button"
            where = describe_pin(pin)
            self.say(
                f"      press the {name.upper()} button on {where} within {self.button_timeout:g} s"
            )
            before = len(order)
            begun = clock.monotonic()
            while not pressed[name].is_set() and clock.monotonic() - begun < self.button_timeout:
                clock.sleep(0.02)
            others = sorted(set(order[before:]) - {name})
            if pressed[name].is_set():
                waited = clock.monotonic() - begun
                self._record(Check(part, True, f"{where} pressed after {waited:.1f} s"))
            else:
                hint = (
                    f"; the {' and '.join(others)} button was pressed instead: wires swapped?"
                    if others
                    else ""
                )
                self._record(
                    Check(
                        part,
                        False,
                        f"no press within {self.button_timeout:g} s on {where}: check its wire "
                        f"from the pin to GND{hint}",
                    )
                )
            for event in pressed.values():
                event.clear()


def device_tree_bus_hz(sysfs: Path, bus: int) -> int | None:
    """The I2C adapter's clock-frequency from the device tree, where the kernel shows it."""
    path = sysfs / "class" / "i2c-adapter" / f"i2c-{bus}" / "of_node" / "clock-frequency"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return int.from_bytes(data[:4], "big") if len(data) >= 4 else None
