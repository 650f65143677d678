"""An smbus2-compatible I2C bus whose devices are Python objects and whose time is a Clock.

The surface is the part of :class:`smbus2.SMBus` a register driver uses, with smbus2's own
argument limits and the errors the Linux i2c-dev / i2c-bcm2835 stack reports on a Raspberry Pi:

* no ACK from the address (nothing there, or a loose wire): ``OSError(121, 'Remote I/O
  error')``, EREMOTEIO, which i2c-bcm2835 returns when its ERR (NACK) status bit is set;
* more than 42 messages in one ``i2c_rdwr`` (I2C_RDWR_IOCTL_MAX_MSGS) or a message longer than
  8192 bytes: ``OSError(22)`` (EINVAL) from i2c-dev;
* a read message that is not the last of an ``i2c_rdwr``: ``OSError(95)`` (EOPNOTSUPP),
  because i2c-bcm2835 supports only one read, at the end of a combined transfer
  (``bcm2835_i2c_xfer`` refuses before touching the wire and warns once in the kernel log:
  "only one read message supported, has to be last").

``adapter="i2c-gpio"`` models the bit-banged adapter instead (``i2c-algo-bit``'s
``bit_xfer``): any sequence of reads and writes in one transfer, a repeated START before
every message after the first, one STOP at the end; a NACK of the address is ``OSError(6)``
(ENXIO, from ``bit_doAddress``). Either way each write message sets the device's register
pointer and each read message continues from it, as on the wire.

Bus-time model: each message costs a START or repeated START (1 bit time), the address byte
(9 bits with its ACK) and 9 bits per data byte; the transaction ends with a STOP (1 bit time).
The clock is advanced by that time (``clock.sleep``) after the devices have seen the access,
so a sample rate the bus cannot carry makes the emulated FIFO overflow as on the wearable.
Every message of a transaction reaches its devices at the moment the transaction does (a
device with ``begin_transaction(moment)`` is told it). On a real-time clock the devices' own
computing (the emulated chip producing the samples due) overlaps that time, as a chip's work
in silicon would, and lengthens the transaction only beyond it; ``trace`` says how much. The
emulated chip pauses a :class:`ScaledClock` while it computes, so there it takes no time.

Host scheduling (:class:`HostJitter`, seeded): before the devices see a transaction the host
may be late by a small random delay (the scheduler, the i2c-bcm2835 interrupt) and, now and
then, by a preemption stall of milliseconds; a caller's idea of "now" is then stale by that
much when the chip latches FIFO_COUNT.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from smbus2 import I2cFunc, i2c_msg

from odar.drivers.clock import Clock
from odar.drivers.i2c_bus import I2CBus
from odar.errors import EmulationError

I2C_SMBUS_BLOCK_MAX = 32  # smbus2 / linux/i2c.h
I2C_RDWR_IOCTL_MAX_MSGS = 42  # linux/i2c-dev.h
I2C_RDWR_MAX_MESSAGE_BYTES = 8192  # i2c-dev refuses longer messages
I2C_M_RD = 0x0001

START_BITS = 1  # START or repeated START: about one bit time
STOP_BITS = 1
BITS_PER_BYTE = 9  # 8 data bits + ACK/NACK

#: What i2c-bcm2835 advertises: plain I2C and SMBus emulated on top of it, without QUICK.
BCM2835_FUNCS = I2cFunc.I2C | (I2cFunc.SMBUS_EMUL & ~I2cFunc.SMBUS_QUICK)
#: What i2c-algo-bit (under i2c-gpio) advertises, of what smbus2 names.
BIT_ALGO_FUNCS = I2cFunc.I2C | I2cFunc.NOSTART | I2cFunc.SMBUS_EMUL

#: The Pi's adapters the bus can behave as (kernel driver names).
ADAPTER_BCM2835 = "i2c-bcm2835"
ADAPTER_GPIO = "i2c-gpio"
ADAPTERS = (ADAPTER_BCM2835, ADAPTER_GPIO)


class I2CTarget(Protocol):
    """A device on the emulated bus; it interprets the bytes (register pointer etc.) itself."""

    def acknowledge(self) -> bool:
        """Called for each message's address byte: bring state up to now; False to NACK."""
        ...

    def write(self, data: bytes) -> None:
        """The data bytes of one write message (for a register device: pointer, then values)."""
        ...

    def read(self, length: int) -> bytes:
        """Exactly *length* bytes for one read message."""
        ...


@dataclass
class HostJitter:
    """Seeded host lateness before each transaction: an exponential delay of mean
    ``mean_s`` (capped at ``cap_s``), plus with probability ``preempt_probability`` a
    preemption stall uniform in ``preempt_s``."""

    mean_s: float = 0.0002
    cap_s: float = 0.002
    preempt_probability: float = 0.002
    preempt_s: tuple[float, float] = (0.002, 0.010)
    seed: int = 0

    def __post_init__(self) -> None:
        low, high = self.preempt_s
        if not (
            self.mean_s >= 0
            and self.cap_s >= 0
            and 0 <= self.preempt_probability <= 1
            and 0 <= low <= high
        ):
            raise EmulationError(f"HostJitter: inconsistent parameters {self!r}")
        self._rng = np.random.default_rng(self.seed)
        self.total_s = 0.0
        self.preemptions = 0

    def draw(self) -> float:
        delay = min(self.cap_s, float(self._rng.exponential(self.mean_s))) if self.mean_s else 0.0
        if self.preempt_probability and self._rng.random() < self.preempt_probability:
            delay += float(self._rng.uniform(*self.preempt_s))
            self.preemptions += 1
        self.total_s += delay
        return delay


@dataclass(frozen=True)
class BusStats:
    """Traffic since the last ``reset_stats``. Byte counts exclude address bytes."""

    transactions: int = 0
    nacks: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    bus_seconds: float = 0.0  # time on the wire at bus_hz, including injected stalls
    stall_seconds: float = 0.0


@dataclass(frozen=True)
class _Message:
    address: int
    read_length: int | None  # None for a write message
    payload: bytes = b""


def transaction_bits(message_lengths: Sequence[int]) -> int:
    """Bit times of one transaction whose messages carry these data byte counts."""
    bits = STOP_BITS
    for length in message_lengths:
        bits += START_BITS + BITS_PER_BYTE * (1 + length)
    return bits


def _os_error(code: int) -> OSError:
    # The kernel's errors carry only errno and strerror; so do ours, so that drivers are
    # tested against what they will really see.
    return OSError(code, os.strerror(code))


class EmulatedSMBus:
    """``smbus2.SMBus`` for emulated devices; see the module docstring for the model."""

    def __init__(
        self,
        clock: Clock,
        *,
        bus_hz: int = 100_000,
        bus_number: int = 1,
        transaction_overhead_s: float = 0.0,
        jitter: HostJitter | None = None,
        adapter: str = ADAPTER_BCM2835,
    ) -> None:
        if adapter not in ADAPTERS:
            raise EmulationError(
                f"EmulatedSMBus: adapter {adapter!r} is not one of {', '.join(ADAPTERS)}"
            )
        if not bus_hz > 0:
            raise EmulationError(f"EmulatedSMBus: bus_hz={bus_hz!r} must be > 0")
        if not transaction_overhead_s >= 0:
            raise EmulationError(
                f"EmulatedSMBus: transaction_overhead_s={transaction_overhead_s!r} must be >= 0"
            )
        self.clock = clock
        self.bus_hz = int(bus_hz)
        self.bus_number = int(bus_number)
        # Host-side cost per transaction (ioctl, interrupt latency); 0 counts only the wire.
        self.transaction_overhead_s = float(transaction_overhead_s)
        self.adapter = adapter
        self.address: int | None = None
        self.force = False
        self._devices: dict[int, I2CTarget] = {}
        self._lock = threading.RLock()
        # BusStats' fields by name: whole counts, and seconds as floats.
        self._counters: dict[str, Any] = dict.fromkeys(BusStats.__dataclass_fields__, 0)
        self._pending_stalls: deque[float] = deque()
        self._pending_errors: deque[tuple[int, bool]] = deque()
        self.jitter = jitter
        #: When set to a list, every transaction appends (issued, host lateness drawn, time on
        #: the wire, the devices' computing, ended) on the bus's clock: what a bench needs to
        #: split a read's time.
        self.trace: list[tuple[float, float, float, float, float]] | None = None
        self.fd: int | None = -1  # not a real descriptor; None once closed, as in smbus2

    # ------------------------------------------------------------------ devices and faults

    def attach(self, address: int, device: I2CTarget) -> None:
        """Put *device* on the bus at 7-bit *address*."""
        self._check_address(address)
        with self._lock:
            if address in self._devices:
                raise EmulationError(
                    f"{self._name}: address {address:#04x} already has a device attached"
                )
            self._devices[address] = device

    def detach(self, address: int) -> None:
        with self._lock:
            if self._devices.pop(address, None) is None:
                raise EmulationError(f"{self._name}: no device attached at {address:#04x}")

    def inject_stall(self, extra_seconds: float, transactions: int = 1) -> None:
        """The next *transactions* transactions each hold the bus *extra_seconds* longer
        (a slave stretching the clock, a busy host)."""
        if not extra_seconds >= 0 or transactions < 1:
            raise EmulationError(
                f"{self._name}: inject_stall(extra_seconds={extra_seconds!r}, "
                f"transactions={transactions!r}) needs seconds >= 0 and transactions >= 1"
            )
        with self._lock:
            self._pending_stalls.extend([float(extra_seconds)] * transactions)

    def inject_errors(
        self, error_number: int, transactions: int = 1, *, mid_burst: bool = False
    ) -> None:
        """The next *transactions* transactions fail with ``OSError(error_number)`` after the
        address byte, touching no device (EIO 5, EBUSY 16, ETIMEDOUT 110 are seen on Pis).
        ``mid_burst``: the failure comes at the end of the read instead, after the device
        has given (and a FIFO has lost) every byte; the caller receives none of them."""
        if error_number <= 0 or transactions < 1:
            raise EmulationError(
                f"{self._name}: inject_errors(error_number={error_number!r}, "
                f"transactions={transactions!r}) needs a positive errno and transactions >= 1"
            )
        with self._lock:
            self._pending_errors.extend([(int(error_number), mid_burst)] * transactions)

    # ------------------------------------------------------------------ statistics

    @property
    def stats(self) -> BusStats:
        """A snapshot of the counters."""
        with self._lock:
            return BusStats(**self._counters)

    def reset_stats(self) -> None:
        with self._lock:
            self._counters = dict.fromkeys(BusStats.__dataclass_fields__, 0)

    def transaction_seconds(self, message_lengths: Sequence[int]) -> float:
        """Wire time of a transaction with these data byte counts per message, at bus_hz."""
        return transaction_bits(message_lengths) / self.bus_hz + self.transaction_overhead_s

    # ------------------------------------------------------------------ smbus2 surface

    def open(self, bus: int | str) -> None:
        expected = (self.bus_number, f"/dev/i2c-{self.bus_number}")
        if bus not in expected:
            raise _os_error(errno.ENOENT)
        self.fd = -1

    def close(self) -> None:
        self.fd = None
        self.address = None

    def __enter__(self) -> EmulatedSMBus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        """SMBus receive byte: one byte from the device's current pointer."""
        return self._transfer([_Message(i2c_addr, 1)])[0][0]

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        """SMBus send byte; on a register device this sets the pointer."""
        self._transfer([_Message(i2c_addr, None, bytes([self._byte(value, "value")]))])

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return self._read_register_block(i2c_addr, register, 1)[0]

    def write_byte_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        data = bytes([self._byte(register, "register"), self._byte(value, "value")])
        self._transfer([_Message(i2c_addr, None, data)])

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        """SMBus read word: the first byte on the wire is the LOW byte of the result."""
        low, high = self._read_register_block(i2c_addr, register, 2)
        return low | (high << 8)

    def write_word_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        if not 0 <= value <= 0xFFFF:
            raise EmulationError(f"{self._name}: word value {value!r} is not 0..0xffff")
        data = bytes([self._byte(register, "register"), value & 0xFF, value >> 8])
        self._transfer([_Message(i2c_addr, None, data)])

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        if length > I2C_SMBUS_BLOCK_MAX:
            raise ValueError(f"Desired block length over {I2C_SMBUS_BLOCK_MAX} bytes")
        if length < 0:
            raise _os_error(errno.EINVAL)
        return list(self._read_register_block(i2c_addr, register, length))

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: Sequence[int], force: bool | None = None
    ) -> None:
        if len(data) > I2C_SMBUS_BLOCK_MAX:
            raise ValueError(f"Data length cannot exceed {I2C_SMBUS_BLOCK_MAX} bytes")
        payload = bytes([self._byte(register, "register")])
        payload += bytes(self._byte(value, "value") for value in data)
        self._transfer([_Message(i2c_addr, None, payload)])

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        """Combined transfer of ``smbus2.i2c_msg`` messages; read messages get their buffers
        filled, so ``list(msg)`` and ``bytes(msg)`` work as with the kernel."""
        if not 0 < len(i2c_msgs) <= I2C_RDWR_IOCTL_MAX_MSGS:
            raise _os_error(errno.EINVAL)
        messages = []
        for position, msg in enumerate(i2c_msgs):
            if msg.len > I2C_RDWR_MAX_MESSAGE_BYTES:
                raise _os_error(errno.EINVAL)
            is_read = bool(msg.flags & I2C_M_RD)
            if is_read and position != len(i2c_msgs) - 1 and self.adapter == ADAPTER_BCM2835:
                raise _os_error(errno.EOPNOTSUPP)
            if is_read:
                messages.append(_Message(msg.addr, msg.len))
            else:
                messages.append(_Message(msg.addr, None, bytes(msg)))
        results = self._transfer(messages)
        for msg, data in zip(i2c_msgs, results, strict=True):
            if msg.flags & I2C_M_RD:
                ctypes.memmove(msg.buf, data, len(data))

    # ------------------------------------------------------------------ the transaction

    @property
    def _name(self) -> str:
        return f"emulated i2c-{self.bus_number}"

    @property
    def funcs(self) -> I2cFunc:
        """What the adapter advertises (smbus2 reads it with I2C_FUNCS)."""
        return BCM2835_FUNCS if self.adapter == ADAPTER_BCM2835 else BIT_ALGO_FUNCS

    @property
    def _nack_errno(self) -> int:
        return errno.EREMOTEIO if self.adapter == ADAPTER_BCM2835 else errno.ENXIO

    def _byte(self, value: int, what: str) -> int:
        # smbus2 would truncate silently through ctypes; refusing catches driver bugs.
        if not 0 <= value <= 0xFF:
            raise EmulationError(f"{self._name}: {what} {value!r} is not a byte (0..255)")
        return value

    @staticmethod
    def _check_address(address: int) -> None:
        if not 0 <= address <= 0x7F:
            # i2c-dev refuses a 7-bit slave address above 0x7f with EINVAL.
            raise _os_error(errno.EINVAL)

    def _read_register_block(self, i2c_addr: int, register: int, length: int) -> bytes:
        pointer = bytes([self._byte(register, "register")])
        messages = [_Message(i2c_addr, None, pointer), _Message(i2c_addr, length)]
        return self._transfer(messages)[1]

    def _transfer(self, messages: Sequence[_Message]) -> list[bytes]:
        for message in messages:
            self._check_address(message.address)
        with self._lock:
            if self.fd is None:
                raise _os_error(errno.EBADF)
            issued = self.clock.monotonic()
            # The host is late issuing the transaction: the devices see it that much later.
            # The moment is told them, not slept to: a sleep here would add the emulation's
            # own wake-up and its wait for the interpreter to the lateness drawn, before the
            # chip latches its count (at speed 10 each tenth of a millisecond of those is a
            # millisecond of the world's). The answer still comes back no sooner than the
            # wire time after that moment.
            late = self.jitter.draw() if self.jitter is not None else 0.0
            seen = issued + late
            stall = self._pending_stalls.popleft() if self._pending_stalls else 0.0
            injected, mid_burst = (
                self._pending_errors.popleft() if self._pending_errors else (None, False)
            )
            if mid_burst:
                injected_after, injected = injected, None
            else:
                injected_after = None
            results: list[bytes] = []
            lengths: list[int] = []
            error: OSError | None = None
            read = written = 0
            # Every message of the transaction reaches its devices at one moment.
            addresses = dict.fromkeys(m.address for m in messages)
            present = [d for a in addresses if (d := self._devices.get(a)) is not None]
            for target in present:
                if hasattr(target, "begin_transaction"):
                    target.begin_transaction(seen)
            try:
                for message in messages:
                    device = self._devices.get(message.address)
                    if injected is not None:
                        error = _os_error(injected)
                    elif device is None or not device.acknowledge():
                        error = _os_error(self._nack_errno)
                    if error is not None:
                        lengths.append(0)  # the address byte went out; the master then stops
                        break
                    assert device is not None
                    if message.read_length is None:
                        device.write(message.payload)
                        results.append(b"")
                        lengths.append(len(message.payload))
                        written += len(message.payload)
                    else:
                        data = bytes(device.read(message.read_length))
                        results.append(data)
                        lengths.append(len(data))
                        read += len(data)
            finally:
                for target in present:
                    if hasattr(target, "end_transaction"):
                        target.end_transaction()
            if error is None and injected_after is not None:
                error = _os_error(injected_after)
            cost = self.transaction_seconds(lengths) + stall
            counters = self._counters
            counters["transactions"] += 1
            counters["nacks"] += error is not None and error.errno == self._nack_errno
            counters["bytes_read"] += read
            counters["bytes_written"] += written
            counters["bus_seconds"] += cost
            counters["stall_seconds"] += stall
            # Held under the lock: while one transaction is on the wire the bus is busy. On a
            # real-time clock the devices' own computing (the wearer's motion for the samples
            # due) is what a chip does in silicon while the bits go out: it overlaps the wire
            # time. The devices saw the transaction at `seen`, so the answer is never back
            # sooner than its wire time after they latched it.
            computing = self.clock.monotonic() - seen
            self.clock.sleep(cost - computing)
            if self.trace is not None:
                self.trace.append((issued, late, cost, computing, self.clock.monotonic()))
            if error is not None:
                raise error
            return results


if TYPE_CHECKING:
    # mypy holds the emulated bus to the drivers' bus (drivers/i2c_bus.py).
    _CHECKED_AGAINST: type[I2CBus] = EmulatedSMBus
