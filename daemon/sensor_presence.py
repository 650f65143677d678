"""No sensor is a state, not a crash.

A wearable without its IMU (unplugged, the wrong address, I2C switched off, /dev/i2c-N not
there) keeps the daemon up: READY with a STATUS saying what is missing, one journal line with
the fix, an error pattern on the motor for any button, and the chip is looked for again every
few seconds; once it answers, reading starts as if it had been there from the beginning.

:class:`SensorPresence` stands between the daemon's sensor reader (:mod:`odar.sensor_reader`)
and the driver, with the reader's view of a sensor; while the chip is missing it reports
``recovering``, so the loop keeps pinging the watchdog (a loop that hangs is still
restarted). :class:`LateI2CBus` lets the bus device node appear after the start.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from smbus2 import i2c_msg

from odar.drivers.clock import Clock
from odar.drivers.mpu6050 import MPU6050, SensorBlock
from odar.drivers.sensor_settings import SensorSettings
from odar.errors import SensorNotFoundError
from odar.journal import log_event

_log = logging.getLogger("odar")

#: Seconds between looks for a missing chip (a probe on an empty bus costs one transaction).
RETRY_S = 2.0
#: How often the sensor loop comes round while the chip is missing.
POLL_WHILE_MISSING_S = 0.1


def the_fix(settings: SensorSettings) -> str:
    """What to check when nothing answers at the configured bus and address."""
    bus, address = settings.bus, settings.address
    return (
        f"check that I2C is on (dtparam=i2c_arm=on in /boot/firmware/config.txt, "
        f"/dev/i2c-{bus} exists), the wiring (SDA pin 3, SCL pin 5, 3.3 V, GND) and that "
        f"`i2cdetect -y {bus}` shows {address:02x} (sensor.address in the config)"
    )


class SensorPresence:
    """The driver once the chip answers; until then the state "missing" with the reason."""

    def __init__(
        self,
        driver: MPU6050,
        settings: SensorSettings,
        clock: Clock,
        *,
        retry_s: float = RETRY_S,
    ) -> None:
        self.driver = driver
        self._settings = settings
        self._clock = clock
        self._retry_s = retry_s
        self._next_look = 0.0
        #: Why there is no sensor (None: it answered and is read).
        self.missing: str | None = None

    def start(self) -> None:
        """Probe and configure the chip; a missing one is reported once, not raised."""
        try:
            self.driver.start()
        except SensorNotFoundError as error:
            self.missing = str(error)
            self._next_look = self._clock.monotonic() + self._retry_s
            log_event(
                _log,
                f"no sensor: {error}; {the_fix(self._settings)}. odar runs on and starts "
                "reading when the chip answers",
                logging.ERROR,
                event="sensor_missing",
            )

    def read(self, exact: bool = False) -> SensorBlock:
        if self.missing is None:
            return self.driver.read(exact=exact)
        now = self._clock.monotonic()
        if now >= self._next_look:
            self._look_again()
        return SensorBlock.empty()

    def _look_again(self) -> None:
        try:
            self.driver.start()
        except SensorNotFoundError as error:
            self._next_look = self._clock.monotonic() + self._retry_s
            _log.debug("still no sensor: %s", error)
            return
        self.missing = None
        log_event(
            _log,
            f"sensor found: {self.driver.chip_name} on {self.driver.where}; reading",
            event="sensor_found",
        )

    @property
    def recovering(self) -> bool:
        """True while the chip is missing or the driver rides out an I2C error: the sensor
        loop is alive without data, and says so to the watchdog."""
        return self.missing is not None or self.driver.recovering

    @property
    def problem(self) -> str | None:
        """For STATUS=: what is wrong with the sensor now, or None."""
        if self.missing is not None:
            return f"no sensor on {self.driver.where}: {the_fix(self._settings)}"
        if self.driver.recovering:
            return f"sensor on {self.driver.where} not answering; retrying"
        return None

    @property
    def poll_interval_s(self) -> float:
        return POLL_WHILE_MISSING_S if self.missing is not None else self.driver.poll_interval_s

    @property
    def measured_rate_hz(self) -> float:
        return self.driver.measured_rate_hz

    @property
    def last_timestamp(self) -> float | None:
        return None if self.missing is not None else self.driver.last_timestamp

    @property
    def fifo_filling_since(self) -> float | None:
        return None if self.missing is not None else self.driver.fifo_filling_since

    def close(self) -> None:
        self.driver.close()


class LateI2CBus:
    """``smbus2.SMBus(number)``, opened at first use and again until it opens, so a
    /dev/i2c-N that is missing (I2C off) or not yet there is a sensor problem the daemon
    reports and retries, not a start-up failure."""

    def __init__(self, number: int, opener: Callable[[int], Any] | None = None) -> None:
        if opener is None:
            import smbus2

            opener = smbus2.SMBus
        self.number = number
        self._opener = opener
        self._bus: Any = None

    def open(self) -> None:
        """Open the device node now (the self-test's first finding), or raise
        :class:`SensorNotFoundError` saying why not."""
        self._opened()

    def _opened(self) -> Any:
        if self._bus is None:
            device = f"/dev/i2c-{self.number}"
            try:
                self._bus = self._opener(self.number)
            except FileNotFoundError:
                raise SensorNotFoundError(
                    errno.ENOENT,
                    f"{device} does not exist: enable I2C (raspi-config nonint do_i2c 0, or "
                    "dtparam=i2c_arm=on in config.txt and i2c-dev in /etc/modules) and check "
                    "sensor.bus",
                ) from None
            except PermissionError:
                raise SensorNotFoundError(
                    errno.EACCES, f"{device}: permission denied: the service user needs group i2c"
                ) from None
        return self._bus

    # The calls of odar.drivers.i2c_bus.I2CBus, each opening the node first.

    def read_byte_data(self, i2c_addr: int, register: int, /) -> int:
        return int(self._opened().read_byte_data(i2c_addr, register))

    def write_byte_data(self, i2c_addr: int, register: int, value: int, /) -> None:
        self._opened().write_byte_data(i2c_addr, register, value)

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, /) -> list[int]:
        return list(self._opened().read_i2c_block_data(i2c_addr, register, length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int], /) -> None:
        self._opened().write_i2c_block_data(i2c_addr, register, data)

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        self._opened().i2c_rdwr(*i2c_msgs)

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None
