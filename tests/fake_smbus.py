"""Test doubles: a dict-backed MPU-6050 register fake that records every bus call, and a
manual clock. Not the emulator: no sensor model, no timing, no reset; tests put FIFO bytes
in by hand and read back what the driver wrote.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from smbus2 import i2c_msg

if TYPE_CHECKING:
    from odar.drivers.i2c_bus import I2CBus

FIFO_COUNTH, FIFO_COUNTL, FIFO_R_W = 0x72, 0x73, 0x74
USER_CTRL, PWR_MGMT_1, WHO_AM_I, INT_STATUS, FIFO_EN = 0x6A, 0x6B, 0x75, 0x3A, 0x23
FIFO_SIZE = 1024
SMBUS_BLOCK_MAX = 32
I2C_M_RD = 0x0001


@dataclass(frozen=True)
class Call:
    """One bus call: ``kind`` is the smbus2 method, ``register`` where it started."""

    kind: str
    register: int
    length: int
    written: tuple[int, ...] = ()
    #: For an i2c_rdwr: each read message's starting register and length, in order.
    reads: tuple[tuple[int, int], ...] = ()


class ManualClock:
    """Time stands still until ``sleep`` or ``advance``; sleeps are recorded."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class FakeSMBus:
    """Registers in a dict, the FIFO in a bytearray, every call in ``calls``."""

    def __init__(
        self, address: int = 0x68, who_am_i: int = 0x68, *, reads_anywhere: bool = False
    ) -> None:
        self.address = address
        #: False: i2c-bcm2835, a read message only last in an i2c_rdwr (else EOPNOTSUPP);
        #: True: i2c-gpio's bit algorithm, reads and writes in any order.
        self.reads_anywhere = reads_anywhere
        self.registers: dict[int, int] = {WHO_AM_I: who_am_i, PWR_MGMT_1: 0x40}
        self.fifo = bytearray()
        self.calls: list[Call] = []
        self.failures: list[OSError] = []
        #: Called before and after every bus call (tests let samples arrive by the clock).
        self.on_access: Callable[[], None] | None = None

    # -- test controls --------------------------------------------------------------------

    def fail_next(self, count: int, code: int = errno.EREMOTEIO) -> None:
        self.failures.extend(OSError(code, f"fake I2C error {code}") for _ in range(count))

    def push_fifo(self, data: bytes) -> None:
        """Append bytes as the chip would; past 1024 the oldest go (RM 4.31)."""
        self.fifo.extend(data)
        if len(self.fifo) > FIFO_SIZE:
            del self.fifo[: len(self.fifo) - FIFO_SIZE]
            self.registers[INT_STATUS] = self.registers.get(INT_STATUS, 0) | 0x10

    def push_samples(self, counts: np.ndarray) -> None:
        """(n, 6) int16 counts, accel xyz then gyro xyz, as FIFO records."""
        self.push_fifo(np.asarray(counts, dtype=">i2").reshape(-1, 6).tobytes())

    @property
    def fifo_streaming(self) -> bool:
        user_fifo_on = bool(self.registers.get(USER_CTRL, 0) & 0x40)
        return user_fifo_on and self.registers.get(FIFO_EN, 0) == 0x78

    def writes_to(self, register: int) -> list[int]:
        """Values written to ``register``, by single writes or auto-incrementing blocks."""
        return [
            c.written[register - c.register]
            for c in self.calls
            if c.kind.startswith("write")
            and c.register <= register < c.register + len(c.written)
            and (c.register == register or c.register != FIFO_R_W)
        ]

    # -- the smbus2 surface ---------------------------------------------------------------

    def _enter(
        self, kind: str, address: int, register: int, length: int, written=(), reads=()
    ) -> None:
        self._notify()
        self.calls.append(Call(kind, register, length, tuple(written), tuple(reads)))
        if self.failures:
            raise self.failures.pop(0)
        if address != self.address:
            raise OSError(errno.EREMOTEIO, f"no device at {address:#04x}")

    def _notify(self) -> None:
        if self.on_access is not None:
            self.on_access()

    def _read_from(self, register: int, length: int) -> bytes:
        out = bytearray()
        pointer = register
        for _ in range(length):
            if pointer == FIFO_COUNTH:
                self._latched_count = min(len(self.fifo), FIFO_SIZE)
                out.append(self._latched_count >> 8)
            elif pointer == FIFO_COUNTL:
                out.append(getattr(self, "_latched_count", len(self.fifo)) & 0xFF)
            elif pointer == FIFO_R_W:
                if self.fifo:
                    self._last_fifo_byte = self.fifo.pop(0)
                out.append(getattr(self, "_last_fifo_byte", 0))
            else:
                value = self.registers.get(pointer, 0)
                if pointer == INT_STATUS:
                    self.registers[INT_STATUS] = 0  # cleared by reading
                out.append(value)
            if pointer != FIFO_R_W:  # the pointer stays on FIFO_R_W
                pointer += 1
        return bytes(out)

    def _write(self, register: int, value: int) -> None:
        if register == FIFO_R_W:
            self.push_fifo(bytes([value]))
            return
        if register == USER_CTRL and value & 0x04:
            self.fifo.clear()
            value &= ~0x04  # FIFO_RESET clears itself
        if register == PWR_MGMT_1:
            value &= ~0x80  # DEVICE_RESET clears itself (no reset is modelled)
        self.registers[register] = value & 0xFF

    def read_byte_data(self, address: int, register: int) -> int:
        self._enter("read_byte_data", address, register, 1)
        return self._read_from(register, 1)[0]

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self._enter("write_byte_data", address, register, 1, (value,))
        self._write(register, value)
        self._notify()

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        if length > SMBUS_BLOCK_MAX:
            raise ValueError("Desired block length over 32 bytes")
        self._enter("read_i2c_block_data", address, register, length)
        return list(self._read_from(register, length))

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        if len(data) > SMBUS_BLOCK_MAX:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._enter("write_i2c_block_data", address, register, len(data), data)
        for offset, value in enumerate(data):
            # Writes to FIFO_R_W push into the FIFO and leave the pointer there (RM 4.31).
            self._write(register if register == FIFO_R_W else register + offset, value)
        self._notify()

    def i2c_rdwr(self, *messages: i2c_msg) -> None:
        """Each write message of one byte sets the pointer, each read reads from it."""
        is_read = [bool(m.flags & I2C_M_RD) for m in messages]
        if not self.reads_anywhere and any(is_read[:-1]):
            raise OSError(errno.EOPNOTSUPP, "only one read message supported, has to be last")
        reads: list[tuple[int, int]] = []
        pointer: int | None = None
        for message, reading in zip(messages, is_read, strict=True):
            if reading:
                if pointer is None:
                    raise NotImplementedError("the fake models a read only after a pointer write")
                reads.append((pointer, message.len))
                pointer = None
            elif message.len != 1:
                raise NotImplementedError("the fake models only one-byte pointer writes here")
            else:
                pointer = bytes(message)[0]
        register, length = reads[-1]
        self._enter("i2c_rdwr", messages[0].addr, register, length, reads=tuple(reads))
        for message, (start, count) in zip(
            [m for m, r in zip(messages, is_read, strict=True) if r], reads, strict=True
        ):
            data = self._read_from(start, count)
            ctypes.memmove(message.buf, data, len(data))


if TYPE_CHECKING:
    # The type-check stage (scripts/test.sh) holds the fake to the drivers' bus.
    _CHECKED_AGAINST: type[I2CBus] = FakeSMBus
