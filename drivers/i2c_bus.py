"""The I2C bus the drivers need: the smbus2.SMBus calls they make, as a Protocol.

``smbus2.SMBus`` on a Pi, ``odar.drivers.emulated.bus.EmulatedSMBus`` on the emulator and the
tests' ``FakeSMBus`` all provide it; mypy checks each of them against it (scripts/test.sh).
Positional-only, as the drivers call them: the implementations' parameter names may differ.
"""

from __future__ import annotations

from typing import Protocol

from smbus2 import i2c_msg


class I2CBus(Protocol):
    def read_byte_data(self, i2c_addr: int, register: int, /) -> int:
        """One register's byte."""
        ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int, /) -> None:
        """One register's byte."""
        ...

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        """Messages in one combined transaction; read messages get their buffers filled."""
        ...
