"""EmulatedSMBus: smbus2's surface and limits, the kernel's errors, the bus-time model."""

from __future__ import annotations

import contextlib
import errno
import threading

import pytest
from smbus2 import i2c_msg

from odar.drivers.emulated.bus import EmulatedSMBus, transaction_bits
from odar.drivers.emulated.clock import VirtualClock
from odar.errors import EmulationError

ADDRESS = 0x50


class RegisterFile:
    """A plain 256-byte register device (like an EEPROM) that records what it is sent."""

    def __init__(self) -> None:
        self.registers = bytearray(range(256))
        self.pointer = 0
        self.writes: list[bytes] = []
        self.present = True

    def acknowledge(self) -> bool:
        return self.present

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        if data:
            self.pointer = data[0]
            for value in data[1:]:
                self.registers[self.pointer] = value
                self.pointer = (self.pointer + 1) % 256

    def read(self, length: int) -> bytes:
        out = bytes(self.registers[(self.pointer + i) % 256] for i in range(length))
        self.pointer = (self.pointer + length) % 256
        return out


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def device() -> RegisterFile:
    return RegisterFile()


@pytest.fixture
def bus(clock: VirtualClock, device: RegisterFile) -> EmulatedSMBus:
    bus = EmulatedSMBus(clock, bus_hz=100_000)
    bus.attach(ADDRESS, device)
    return bus


def test_byte_data_round_trip_goes_through_the_register_pointer(bus, device) -> None:
    bus.write_byte_data(ADDRESS, 0x10, 0xAB)
    assert device.writes[-1] == bytes([0x10, 0xAB])
    assert bus.read_byte_data(ADDRESS, 0x10) == 0xAB
    bus.write_byte(ADDRESS, 0x10)  # SMBus send byte: pointer only
    assert bus.read_byte(ADDRESS) == 0xAB


def test_word_data_is_little_endian_on_the_wire_as_smbus_defines(bus, device) -> None:
    device.registers[0x20:0x22] = bytes([0x12, 0x34])
    assert bus.read_word_data(ADDRESS, 0x20) == 0x3412
    bus.write_word_data(ADDRESS, 0x30, 0xBEEF)
    assert device.writes[-1] == bytes([0x30, 0xEF, 0xBE])


def test_block_calls_accept_32_bytes_and_refuse_33_with_smbus2s_messages(bus) -> None:
    assert bus.read_i2c_block_data(ADDRESS, 0, 32) == list(range(32))
    bus.write_i2c_block_data(ADDRESS, 0x40, list(range(32)))
    with pytest.raises(ValueError, match="Desired block length over 32 bytes"):
        bus.read_i2c_block_data(ADDRESS, 0, 33)
    with pytest.raises(ValueError, match="Data length cannot exceed 32 bytes"):
        bus.write_i2c_block_data(ADDRESS, 0, [0] * 33)


def test_i2c_rdwr_fills_real_smbus2_read_messages(bus, device) -> None:
    write = i2c_msg.write(ADDRESS, [0x80])
    read = i2c_msg.read(ADDRESS, 100)  # past smbus2's 32-byte block limit
    bus.i2c_rdwr(write, read)
    assert list(read) == list(range(0x80, 0x80 + 100))
    assert bytes(read) == bytes(range(0x80, 0x80 + 100))
    assert device.writes[-1] == bytes([0x80])


def test_i2c_rdwr_refuses_what_i2c_dev_and_i2c_bcm2835_refuse(bus) -> None:
    read_first = (i2c_msg.read(ADDRESS, 2), i2c_msg.write(ADDRESS, [0]))
    with pytest.raises(OSError) as not_last:
        bus.i2c_rdwr(*read_first)
    assert not_last.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as too_many:
        bus.i2c_rdwr(*[i2c_msg.write(ADDRESS, [0]) for _ in range(43)])
    assert too_many.value.errno == errno.EINVAL
    assert bus.stats.transactions == 0  # refused before anything reached the wire


def test_as_i2c_gpio_any_messages_go_in_one_transfer_each_write_moving_the_pointer(
    clock, device
) -> None:
    # i2c-algo-bit's bit_xfer: a repeated START before each message after the first, one STOP.
    bus = EmulatedSMBus(clock, bus_hz=100_000, adapter="i2c-gpio")
    bus.attach(ADDRESS, device)
    first, second = i2c_msg.read(ADDRESS, 1), i2c_msg.read(ADDRESS, 2)
    bus.i2c_rdwr(
        i2c_msg.write(ADDRESS, [0x3A]), first, i2c_msg.write(ADDRESS, [0x72]), second
    )
    assert list(first) == [0x3A] and list(second) == [0x72, 0x73]
    assert bus.stats.transactions == 1
    # 4 x (START + address) + 1 + 1 + 1 + 2 data bytes + STOP, each byte 9 bits with its ACK.
    assert clock.monotonic() == pytest.approx(transaction_bits([1, 1, 1, 2]) / 100_000)
    assert transaction_bits([1, 1, 1, 2]) == 4 * (1 + 9) + 5 * 9 + 1
    with pytest.raises(OSError) as absent:
        bus.read_byte_data(0x68, 0x75)
    assert absent.value.errno == errno.ENXIO  # bit_doAddress: no ACK is ENXIO


def test_the_pi_s_own_adapter_refuses_the_same_transfer_before_the_wire(bus) -> None:
    status = i2c_msg.read(ADDRESS, 1)
    with pytest.raises(OSError) as refused:
        bus.i2c_rdwr(
            i2c_msg.write(ADDRESS, [0x3A]), status, i2c_msg.write(ADDRESS, [0x72]),
            i2c_msg.read(ADDRESS, 2),
        )
    assert refused.value.errno == errno.EOPNOTSUPP and bus.adapter == "i2c-bcm2835"
    assert bus.stats.transactions == 0


def test_no_device_at_the_address_is_a_nack_reported_as_eremoteio(bus) -> None:
    with pytest.raises(OSError) as raised:
        bus.read_byte_data(0x68, 0x75)
    assert raised.value.errno == errno.EREMOTEIO == 121
    assert raised.value.strerror == "Remote I/O error"
    assert bus.stats.nacks == 1


def test_a_device_that_stops_acknowledging_nacks_and_then_recovers(bus, device) -> None:
    device.present = False
    with pytest.raises(OSError) as raised:
        bus.read_byte_data(ADDRESS, 0)
    assert raised.value.errno == errno.EREMOTEIO
    device.present = True
    assert bus.read_byte_data(ADDRESS, 5) == 5


@pytest.mark.parametrize("bus_hz", [100_000, 400_000])
def test_read_byte_data_costs_39_bit_times(clock, device, bus_hz: int) -> None:
    # S + addr+W + reg (1 + 9 + 9), Sr + addr+R + data (1 + 9 + 9), P (1)
    bus = EmulatedSMBus(clock, bus_hz=bus_hz)
    bus.attach(ADDRESS, device)
    before = clock.monotonic()
    bus.read_byte_data(ADDRESS, 0)
    assert clock.monotonic() - before == pytest.approx(39 / bus_hz, rel=1e-12)
    assert bus.stats.bus_seconds == pytest.approx(39 / bus_hz, rel=1e-12)


def test_bus_time_of_each_smbus_call_matches_its_protocol(bus, clock) -> None:
    expected_bits = [
        (lambda: bus.write_byte_data(ADDRESS, 1, 2), 1 + 9 + 9 + 9 + 1),
        (lambda: bus.read_word_data(ADDRESS, 1), 1 + 9 + 9 + 1 + 9 + 18 + 1),
        (lambda: bus.write_word_data(ADDRESS, 1, 2), 1 + 9 + 27 + 1),
        (lambda: bus.read_byte(ADDRESS), 1 + 9 + 9 + 1),
        (lambda: bus.write_byte(ADDRESS, 1), 1 + 9 + 9 + 1),
        (lambda: bus.read_i2c_block_data(ADDRESS, 0, 14), 30 + 9 * 14),
        (lambda: bus.write_i2c_block_data(ADDRESS, 0, [0] * 6), 20 + 9 * 6),
        (lambda: bus.i2c_rdwr(i2c_msg.write(ADDRESS, [0]), i2c_msg.read(ADDRESS, 12)), 138),
    ]
    for call, bits in expected_bits:
        before = clock.monotonic()
        call()
        assert clock.monotonic() - before == pytest.approx(bits / 100_000, rel=1e-12)
    assert transaction_bits([1, 12]) == 138


def test_a_nack_costs_start_address_and_stop(bus, clock) -> None:
    with pytest.raises(OSError):
        bus.read_byte_data(0x68, 0)
    assert clock.monotonic() == pytest.approx(11 / 100_000, rel=1e-12)


def test_stats_count_data_bytes_without_address_bytes_and_reset(bus) -> None:
    bus.read_i2c_block_data(ADDRESS, 0, 14)  # writes 1 (pointer), reads 14
    bus.write_byte_data(ADDRESS, 0x10, 1)  # writes 2
    stats = bus.stats
    assert (stats.transactions, stats.bytes_written, stats.bytes_read) == (2, 3, 14)
    assert stats.bus_seconds == pytest.approx((30 + 9 * 14 + 29) / 100_000)
    bus.reset_stats()
    assert bus.stats.transactions == 0 and bus.stats.bus_seconds == 0.0


def test_injected_errors_fail_the_next_transactions_then_the_bus_works(bus) -> None:
    bus.inject_errors(errno.EIO, transactions=2)
    for _ in range(2):
        with pytest.raises(OSError) as raised:
            bus.read_byte_data(ADDRESS, 7)
        assert raised.value.errno == errno.EIO
    assert bus.read_byte_data(ADDRESS, 7) == 7


def test_injected_stall_holds_the_bus_longer(bus, clock) -> None:
    bus.inject_stall(0.25)
    before = clock.monotonic()
    bus.read_byte_data(ADDRESS, 0)
    assert clock.monotonic() - before == pytest.approx(0.25 + 39 / 100_000)
    assert bus.stats.stall_seconds == 0.25
    before = clock.monotonic()
    bus.read_byte_data(ADDRESS, 0)
    assert clock.monotonic() - before == pytest.approx(39 / 100_000)


def test_out_of_range_arguments_are_refused_not_truncated(bus) -> None:
    with pytest.raises(EmulationError, match="value 256"):
        bus.write_byte_data(ADDRESS, 0, 256)
    with pytest.raises(EmulationError, match="register -1"):
        bus.read_byte_data(ADDRESS, -1)
    with pytest.raises(OSError) as raised:
        bus.read_byte_data(0x80, 0)
    assert raised.value.errno == errno.EINVAL


def test_attach_refuses_a_second_device_at_the_same_address(bus) -> None:
    with pytest.raises(EmulationError, match="0x50"):
        bus.attach(ADDRESS, RegisterFile())


def test_a_closed_bus_fails_like_a_closed_descriptor(clock, device) -> None:
    with EmulatedSMBus(clock) as bus:
        bus.attach(ADDRESS, device)
        assert bus.read_byte_data(ADDRESS, 3) == 3
    assert bus.fd is None
    with pytest.raises(OSError) as raised:
        bus.read_byte_data(ADDRESS, 3)
    assert raised.value.errno == errno.EBADF
    bus.open(1)
    assert bus.read_byte_data(ADDRESS, 3) == 3


def test_concurrent_transactions_are_serialised(bus, clock) -> None:
    per_thread, threads_count = 300, 4

    def reader() -> None:
        for _ in range(per_thread):
            assert bus.read_i2c_block_data(ADDRESS, 0x10, 4) == [0x10, 0x11, 0x12, 0x13]

    threads = [threading.Thread(target=reader) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = per_thread * threads_count
    assert bus.stats.transactions == total
    assert clock.monotonic() == pytest.approx(total * (30 + 36) / 100_000)


def test_host_jitter_is_seeded_and_delays_every_transaction() -> None:
    from odar.drivers.emulated.bus import HostJitter

    def run(seed: int) -> float:
        clock = VirtualClock()
        bus = EmulatedSMBus(clock, bus_hz=400_000, jitter=HostJitter(seed=seed))
        for _ in range(2000):
            with contextlib.suppress(OSError):  # nothing answers at 0x50
                bus.read_byte_data(0x50, 0)
        return clock.monotonic() - 2000 * bus.transaction_seconds([0])

    delayed = run(1)
    assert delayed == run(1)  # the same seed, the same lateness
    assert delayed != run(2)
    # mean 0.2 ms capped at 2 ms, plus ~0.2 % preemptions of 2-10 ms: about 0.4-0.5 s.
    assert 0.3 < delayed < 0.7


class ComputingDevice(RegisterFile):
    """A device whose work takes ``seconds`` of the clock, as the emulated chip's does on a
    real-time clock (producing the samples due)."""

    def __init__(self, clock: VirtualClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    moment: float | None = None

    def begin_transaction(self, moment: float) -> None:
        self.moment = moment
        self.moments = [*getattr(self, "moments", []), moment]

    def end_transaction(self) -> None:
        self.moment = None

    def acknowledge(self) -> bool:
        self.clock.advance(self.seconds)
        return True


@pytest.mark.parametrize(
    "each, elapsed", [(0.00005, 39 / 100_000), (0.001, 0.002)], ids=["within", "beyond"]
)
def test_a_devices_computing_overlaps_the_wire_time_and_is_traced(each, elapsed) -> None:
    # read_byte_data is 39 bit times (0.39 ms at 100 kHz) and two acknowledges. A device
    # computing 0.05 ms at each finishes within the wire time: the transaction lasts the wire
    # time. One computing 1 ms at each outlasts it: the transaction lasts its 2 ms. Both
    # messages reach the device at the transaction's start, whatever it computed between.
    clock = VirtualClock(start=5.0)
    bus = EmulatedSMBus(clock, bus_hz=100_000)
    device = ComputingDevice(clock, each)
    bus.attach(ADDRESS, device)
    bus.trace = []
    bus.read_byte_data(ADDRESS, 0)
    assert clock.monotonic() - 5.0 == pytest.approx(elapsed, rel=1e-9)
    assert bus.stats.bus_seconds == pytest.approx(39 / 100_000, rel=1e-12)
    ((issued, late, wire, device_seconds, ended),) = bus.trace
    assert (issued, late, ended) == pytest.approx((5.0, 0.0, 5.0 + elapsed))
    assert wire == pytest.approx(39 / 100_000)
    assert device_seconds == pytest.approx(2 * each)
    assert device.moments == [5.0]
    assert device.moment is None  # told the transaction ended


class SleepCountingClock(VirtualClock):
    def __init__(self, start: float = 0.0) -> None:
        super().__init__(start)
        self.sleeps = 0

    def sleep(self, seconds: float) -> None:
        self.sleeps += seconds > 0
        super().sleep(seconds)


def test_a_late_host_is_told_to_the_chip_as_a_moment_not_slept_to() -> None:
    # A sleep before the chip saw the transaction would add the emulation's own wake-up and
    # wait for the interpreter to the lateness drawn, before the count is latched; at speed 10
    # ten times over. The chip is told the moment; one sleep ends the transaction no sooner
    # than the wire time after it.
    from odar.drivers.emulated.bus import HostJitter

    clock = SleepCountingClock(start=5.0)
    bus = EmulatedSMBus(clock, bus_hz=100_000, jitter=HostJitter(seed=4))
    device = ComputingDevice(clock, 0.0)
    bus.attach(ADDRESS, device)
    bus.trace = []
    draws = HostJitter(seed=4)
    for _ in range(50):
        bus.read_byte_data(ADDRESS, 0)
    assert clock.sleeps == 50, "one sleep a transaction"
    for (issued, late, wire, _, ended), moment in zip(bus.trace, device.moments, strict=True):
        assert late == draws.draw()
        assert moment == pytest.approx(issued + late, abs=1e-12)
        assert ended == pytest.approx(issued + late + wire, abs=1e-12)
    assert sum(t[1] for t in bus.trace) > 0
