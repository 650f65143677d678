"""The FIFO driver against datasheet numbers (RM-MPU-6000A) on a recording fake bus."""

from __future__ import annotations

import errno
import logging
import math
import threading

import numpy as np
import pytest
from fake_smbus import FIFO_COUNTH, Call, FakeSMBus, ManualClock

from odar.drivers import mpu6050
from odar.drivers import mpu6050_registers as reg
from odar.drivers.mpu6050 import (
    INT_STATUS_EVERY_S,
    MPU6050,
    SensorBlock,
    bus_can_carry,
    nearest_sample_rate,
    poll_interval_for,
    raw_to_si,
    si_scale,
)
from odar.drivers.sensor_settings import SensorSettings
from odar.errors import OdarError, SensorError, SensorNotFoundError

G = 9.80665
DEG = math.pi / 180.0


class Feeder:
    """Lets samples arrive in the fake FIFO at ``rate_hz`` by the manual clock once the FIFO
    streams; sample number i carries i in accel X (mod 2**15) so order and loss show."""

    def __init__(self, bus: FakeSMBus, clock: ManualClock, rate_hz: float) -> None:
        self.bus, self.clock, self.rate_hz = bus, clock, rate_hz
        self.started_at: float | None = None
        self.pushed_since_start = 0
        self.next_index = 0
        self.paused = False
        bus.on_access = self

    def __call__(self) -> None:
        if not self.bus.fifo_streaming:
            self.started_at = None
            return
        if self.started_at is None:
            self.started_at, self.pushed_since_start = self.clock.now, 0
        due = math.floor((self.clock.now - self.started_at) * self.rate_hz + 1e-9)
        new = due - self.pushed_since_start
        if new <= 0:
            return
        self.pushed_since_start = due
        if self.paused:
            return
        counts = np.zeros((new, 6), dtype=np.int64)
        counts[:, 0] = (self.next_index + np.arange(new)) % 32768
        counts[:, 5] = -7
        self.next_index += new
        self.bus.push_samples(counts)


def make(settings: SensorSettings | None = None, who_am_i: int = 0x68):
    bus = FakeSMBus(who_am_i=who_am_i)
    clock = ManualClock()
    driver = MPU6050(bus, settings or SensorSettings(), clock=clock)
    return bus, clock, driver


def indices(blocks: list[SensorBlock], settings: SensorSettings) -> np.ndarray:
    scale = si_scale(settings)[0]
    samples = np.concatenate([b.samples for b in blocks if len(b)])
    return np.rint(samples[:, 0] / scale).astype(np.int64)


def run_for(driver: MPU6050, clock: ManualClock, seconds: float) -> list[SensorBlock]:
    blocks = []
    end = clock.now + seconds
    while clock.now < end:
        clock.advance(driver.poll_interval_s)
        blocks.append(driver.read())
    return blocks


def fed_at_1khz(reads_anywhere: bool) -> tuple[FakeSMBus, ManualClock, MPU6050]:
    """A driver at 1 kHz on 400 kHz, its fake chip fed; *reads_anywhere*: the adapter takes
    a read message that is not the last (i2c-gpio) or not (i2c-bcm2835)."""
    bus = FakeSMBus(reads_anywhere=reads_anywhere)
    clock = ManualClock()
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1, bus_hz=400_000)
    driver = MPU6050(bus, settings, clock=clock)
    Feeder(bus, clock, 1000)
    return bus, clock, driver


# -- raw bytes in, SI out -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accel_range_g", "one_g_counts"), [(2, 16384), (4, 8192), (8, 4096), (16, 2048)]
)
def test_accel_counts_per_g_from_the_datasheet(accel_range_g: int, one_g_counts: int) -> None:
    settings = SensorSettings(accel_range_g=accel_range_g)
    raw = np.array([one_g_counts, -one_g_counts, 0, 0, 0, 0], dtype=">i2").tobytes()
    si = raw_to_si(raw, si_scale(settings))
    assert si.dtype == np.float32 and si.shape == (1, 6)
    np.testing.assert_allclose(si[0, :3], [G, -G, 0.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("gyro_range_dps", "counts", "dps"),
    [(250, 131, 1.0), (500, 655, 10.0), (1000, 328, 10.0), (2000, 164, 10.0)],
)
def test_gyro_counts_per_dps_from_the_datasheet(gyro_range_dps: int, counts: int, dps: float):
    settings = SensorSettings(gyro_range_dps=gyro_range_dps)
    raw = np.array([0, 0, 0, counts, 0, -counts], dtype=">i2").tobytes()
    si = raw_to_si(raw, si_scale(settings))
    np.testing.assert_allclose(si[0, 3:], [dps * DEG, 0.0, -dps * DEG], rtol=1e-6)


def test_known_fifo_bytes_through_a_read() -> None:
    # accel X 0x2000 at +-4 g is 1 g; gyro X 0xFF7D at 250 dps is -131 counts, -1 deg/s.
    settings = SensorSettings(rate_hz=100, accel_range_g=4, gyro_range_dps=250)
    bus, clock, driver = make(settings)
    driver.start()
    record = bytes([0x20, 0x00, 0xE0, 0x00, 0x00, 0x00, 0xFF, 0x7D, 0x00, 0x83, 0x7F, 0xFF])
    bus.push_fifo(record * 5)
    clock.advance(0.05)  # 5 samples at 100 Hz; the driver is sure of 3 of them
    block = driver.read()
    assert 1 <= len(block) <= 5
    expected = [G, -G, 0.0, -1.0 * DEG, 1.0 * DEG, 32767 / 131 * DEG]
    np.testing.assert_allclose(block.samples[0], expected, rtol=1e-6, atol=1e-7)
    assert block.samples[0, 3] == pytest.approx(-0.017453, abs=1e-6)
    assert block.timestamps.dtype == np.float64 and block.samples.dtype == np.float32


# -- start(): the register bits ---------------------------------------------------------------

FOREIGN_BITS = {
    reg.Register.CONFIG: 0b0010_1000,  # EXT_SYNC_SET = 5, must survive the DLPF write
    reg.Register.GYRO_CONFIG: 0b1110_0000,  # self-test bits, must survive FS_SEL
    reg.Register.ACCEL_CONFIG: 0b0000_0111,  # ACCEL_HPF bits, must survive AFS_SEL
}


@pytest.mark.parametrize("dlpf_cfg", range(7))
def test_dlpf_cfg_lands_in_config_bits_2_0_only(dlpf_cfg: int) -> None:
    bus, _, driver = make(SensorSettings(dlpf_cfg=dlpf_cfg))
    bus.registers.update(FOREIGN_BITS)
    driver.start()
    # DEVICE_RESET cleared the other bits; the driver writes the whole byte after it.
    assert bus.writes_to(reg.Register.CONFIG) == [dlpf_cfg]


@pytest.mark.parametrize(("dps", "fs_sel"), [(250, 0), (500, 1), (1000, 2), (2000, 3)])
def test_fs_sel_lands_in_gyro_config_bits_4_3(dps: int, fs_sel: int) -> None:
    bus, _, driver = make(SensorSettings(gyro_range_dps=dps))
    bus.registers.update(FOREIGN_BITS)
    driver.start()
    # DEVICE_RESET cleared the other bits; the driver writes the whole byte after it.
    assert bus.writes_to(reg.Register.GYRO_CONFIG) == [fs_sel << 3]


@pytest.mark.parametrize(("g", "afs_sel"), [(2, 0), (4, 1), (8, 2), (16, 3)])
def test_afs_sel_lands_in_accel_config_bits_4_3(g: int, afs_sel: int) -> None:
    bus, _, driver = make(SensorSettings(accel_range_g=g))
    bus.registers.update(FOREIGN_BITS)
    driver.start()
    # DEVICE_RESET cleared the other bits; the driver writes the whole byte after it.
    assert bus.writes_to(reg.Register.ACCEL_CONFIG) == [afs_sel << 3]


@pytest.mark.parametrize(
    ("rate_hz", "dlpf_cfg", "divider", "actual_hz"),
    [
        (1000, 3, 0, 1000.0),
        (100, 3, 9, 100.0),
        (4, 1, 249, 4.0),
        (1000, 0, 7, 1000.0),  # DLPF off: 8 kHz gyro output rate
        (200, 0, 39, 200.0),
        (300, 3, 2, 1000 / 3),  # 333.3 is nearer 300 than 250 is
        (280, 3, 3, 250.0),  # 250 is nearer 280 than 333.3 is
        (990, 2, 0, 1000.0),
    ],
)
def test_smplrt_div_gives_the_nearest_rate(rate_hz, dlpf_cfg, divider, actual_hz) -> None:
    settings = SensorSettings(rate_hz=rate_hz, dlpf_cfg=dlpf_cfg)
    assert nearest_sample_rate(settings) == (divider, pytest.approx(actual_hz))
    bus, _, driver = make(settings)
    driver.start()
    assert bus.registers[reg.Register.SMPLRT_DIV] == divider
    assert driver.actual_rate_hz == pytest.approx(actual_hz)


def test_an_inexact_rate_is_logged_with_both_numbers(caplog) -> None:
    _, _, driver = make(SensorSettings(rate_hz=300))
    with caplog.at_level(logging.WARNING):
        driver.start()
    assert any("300" in r.getMessage() and "333.333" in r.getMessage() for r in caplog.records)


def test_start_resets_wakes_on_the_gyro_pll_and_streams_accel_and_gyro() -> None:
    bus, clock, driver = make()
    driver.start()
    pwr = bus.writes_to(reg.Register.PWR_MGMT_1)
    assert pwr[0] & 0x80, "DEVICE_RESET first"
    assert clock.sleeps and clock.sleeps[0] >= 0.100, "the RM's 100 ms after reset"
    final_pwr = bus.registers[reg.Register.PWR_MGMT_1]
    assert final_pwr & 0x40 == 0, "SLEEP cleared"
    assert final_pwr & 0x07 == 1, "CLKSEL 1: PLL with X gyro reference"
    assert bus.registers[reg.Register.FIFO_EN] == 0x78, "XG|YG|ZG|ACCEL, no TEMP, no slaves"
    assert bus.registers[reg.Register.USER_CTRL] & 0x40, "USER_CTRL.FIFO_EN"
    user = bus.writes_to(reg.Register.USER_CTRL)
    assert user[0] & 0x04 and not user[0] & 0x40, "FIFO_RESET with the FIFO disabled"
    assert user[-1] & 0x40
    order = [c.register for c in bus.calls if c.kind.startswith("write")]
    # CONFIG is written in one block from SMPLRT_DIV, after the wake-up.
    assert order.index(reg.Register.PWR_MGMT_1) < order.index(reg.Register.SMPLRT_DIV)
    assert len(order) - 1 - order[::-1].index(reg.Register.FIFO_EN) == len(order) - 1, (
        "sampling into the FIFO is enabled last"
    )


# -- WHO_AM_I -------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "warns"), [(0x68, False), (0x70, True), (0x98, True)])
def test_who_am_i_accepts_the_mpu6050_and_known_clones(who: int, warns: bool, caplog) -> None:
    _, _, driver = make(who_am_i=who)
    with caplog.at_level(logging.WARNING):
        driver.start()
    warned = [r for r in caplog.records if f"{who:#04x}" in r.getMessage()]
    assert bool(warned) == warns


def test_who_am_i_of_another_chip_is_refused_naming_bus_address_and_value() -> None:
    _, _, driver = make(SensorSettings(bus=3), who_am_i=0x00)
    with pytest.raises(SensorNotFoundError) as caught:
        driver.start()
    message = str(caught.value)
    assert "bus 3" in message and "0x68" in message and "0x00" in message
    assert isinstance(caught.value, OdarError) and isinstance(caught.value, OSError)


def test_no_answer_is_refused_naming_the_errno() -> None:
    bus, _, driver = make()
    bus.fail_next(1, errno.EREMOTEIO)
    with pytest.raises(SensorNotFoundError, match="errno 121"):
        driver.start()


# -- the bus budget -----------------------------------------------------------------------


def test_one_khz_needs_fast_mode_and_start_says_how(caplog) -> None:
    slow = SensorSettings(rate_hz=1000, bus_hz=100_000)
    fits, needed = bus_can_carry(slow)
    assert not fits and needed > 1000 * 12 * 9
    assert bus_can_carry(SensorSettings(rate_hz=1000, bus_hz=400_000))[0]
    assert bus_can_carry(SensorSettings(rate_hz=100, bus_hz=100_000))[0]
    _, _, driver = make(slow)
    with caplog.at_level(logging.ERROR):
        driver.start()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("dtparam=i2c_arm_baudrate=400000" in r.getMessage() for r in errors)


@pytest.mark.parametrize(
    ("rate_hz", "fifo_bytes", "seconds"),
    [
        # 85 whole frames, filled to 70 % by a chip 10 % fast: 0.7 * 85 / (1.1 * rate).
        (1000, 1024, 0.7 * 85 / 1100),
        (400, 1024, 0.7 * 85 / 440),
        (100, 1024, 0.7 * 85 / 110),  # 0.541 s: once per window at the demo's hop
        # A 4096-byte FIFO would hold 2.2 s at 100 Hz: reads stop at 64 samples.
        (100, 4096, 64 / 100),
        # 42 frames of a 512-byte FIFO.
        (100, 512, 0.7 * 42 / 110),
        # At 10 Hz the FIFO would hold 5.4 s: read once a second all the same.
        (10, 1024, 1.0),
    ],
)
def test_poll_interval_is_the_fill_target_within_the_read_and_second_bounds(
    rate_hz: float, fifo_bytes: int, seconds: float
) -> None:
    assert poll_interval_for(rate_hz, fifo_bytes) == pytest.approx(seconds)


# -- streaming --------------------------------------------------------------------------------


def test_1khz_stream_is_whole_samples_in_few_cheap_transactions() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1, bus_hz=400_000)
    bus, clock, driver = make(settings)
    feeder = Feeder(bus, clock, 1000)
    driver.start()
    bus.calls.clear()
    started = clock.now
    blocks = run_for(driver, clock, 5.0)
    elapsed = clock.now - started

    reads = [c for c in bus.calls if c.kind == "i2c_rdwr"]
    status = [c for c in bus.calls if c.register == reg.Register.INT_STATUS]
    assert len(bus.calls) == len(reads) + len(status), "only FIFO reads and INT_STATUS"
    assert driver.read_mode == "burst", "the fake proves the combined read"
    assert all(c.register == FIFO_COUNTH for c in reads)
    assert all((c.length - 2) % reg.SAMPLE_BYTES == 0 for c in reads), "whole samples only"
    assert len(status) / elapsed == pytest.approx(4, abs=0.5)  # sticky: every 0.25 s
    assert len(bus.calls) / elapsed <= 30
    delivered = sum(len(b) for b in blocks)
    bus_bytes = sum(3 + c.length for c in reads) + 4 * len(status)
    assert bus_bytes / delivered <= 12.5

    got = indices(blocks, settings)
    np.testing.assert_array_equal(got, np.arange(got.size))
    assert feeder.next_index - got.size < reg.FIFO_CAPACITY_SAMPLES
    assert driver.counters.lost == 0 and driver.counters.gaps == 0
    assert not any(b.gap for b in blocks)
    assert driver.counters.samples == delivered


def test_where_the_adapter_allows_int_status_comes_with_every_count_in_the_same_transaction():
    # i2c-gpio's bit algorithm takes [write 0x3A, read 1, write 0x72, read 2+n] as one
    # transfer: INT_STATUS at every read, still one transaction a read.
    bus, clock, driver = fed_at_1khz(reads_anywhere=True)
    driver.start()
    assert driver.status_with_count and driver.read_mode == "burst"
    bus.calls.clear()
    bytes_before = driver.counters.bus_bytes
    blocks = run_for(driver, clock, 2.0)

    assert len(bus.calls) == len(blocks), "one transaction a read, none for INT_STATUS alone"
    for call in bus.calls:
        assert call.kind == "i2c_rdwr"
        (status_at, status_length), (count_at, length) = call.reads
        assert (status_at, status_length) == (reg.Register.INT_STATUS, 1)
        assert count_at == FIFO_COUNTH and (length - 2) % reg.SAMPLE_BYTES == 0
    # address+W, 0x3A, address+R, status; address+W, 0x72, address+R, count and frames
    assert driver.counters.bus_bytes - bytes_before == sum(7 + c.length for c in bus.calls)
    delivered = sum(len(b) for b in blocks)
    assert delivered > 1900 and driver.counters.overflows == 0


def test_an_overflow_raised_between_two_reads_is_seen_at_the_very_next_read(caplog):
    # FIFO_OFLOW_INT (INT_STATUS bit 4, RM 4.16) set while the count is low: only INT_STATUS
    # shows it, and it comes with the next read's count, not a quarter second later.
    bus, clock, driver = fed_at_1khz(reads_anywhere=True)
    driver.start()
    run_for(driver, clock, 1.0)
    assert driver.counters.overflows == 0
    bus.registers[reg.Register.INT_STATUS] = 0x10
    clock.advance(0.010)  # far less than INT_STATUS_EVERY_S
    with caplog.at_level(logging.WARNING):
        block = driver.read()
    assert driver.counters.overflows == 1 and len(block) == 0
    assert any("INT_STATUS has FIFO_OFLOW_INT set" in r.message for r in caplog.records)
    assert bus.registers[reg.Register.INT_STATUS] == 0, "read, so cleared"
    later = run_for(driver, clock, 0.5)
    assert later[0].gap or any(b.gap for b in later[:2]), "the next samples start a new stretch"
    assert driver.counters.overflows == 1


def test_an_adapter_that_refuses_it_is_said_once_and_int_status_is_read_on_its_own(caplog):
    # i2c-bcm2835 takes one read message, the last: EOPNOTSUPP before anything is sent.
    bus, clock, driver = fed_at_1khz(reads_anywhere=False)
    with caplog.at_level(logging.INFO):
        driver.start()
        blocks = run_for(driver, clock, 2.0)
    refusals = [r for r in caplog.records if "refuses INT_STATUS and FIFO_COUNT" in r.message]
    assert len(refusals) == 1 and "errno 95" in refusals[0].message
    assert not driver.status_with_count
    assert all(len(c.reads) <= 1 for c in bus.calls if c.kind == "i2c_rdwr")
    assert sum(len(b) for b in blocks) > 1900 and driver.counters.overflows == 0


def reads_of_int_status_alone(bus: FakeSMBus) -> list[int]:
    """Indexes of the calls that read INT_STATUS on its own."""
    return [
        i
        for i, c in enumerate(bus.calls)
        if c.register == reg.Register.INT_STATUS and c.kind.startswith("read")
    ]


def test_int_status_on_its_own_comes_after_the_fifo_bytes_and_never_on_a_window_read():
    # A transaction before the count delays the count, which is what the FIFO's room must
    # cover: on i2c-bcm2835 INT_STATUS follows the FIFO read, in the same read().
    bus, clock, driver = fed_at_1khz(reads_anywhere=False)
    driver.start()
    run_for(driver, clock, 1.0)
    bus.calls.clear()
    blocks = run_for(driver, clock, 2.0)
    alone = reads_of_int_status_alone(bus)
    assert abs(len(alone) - 2.0 / INT_STATUS_EVERY_S) <= 1
    for i in alone:
        before = bus.calls[i - 1]
        assert before.register == FIFO_COUNTH and before.length > 2, "right after a FIFO read"
    assert sum(len(b) for b in blocks) > 1900 and driver.counters.overflows == 0
    bus.calls.clear()
    assert 2 * INT_STATUS_EVERY_S <= 10 * 0.05  # INT_STATUS due at least twice
    for _ in range(10):
        clock.advance(0.05)
        assert len(driver.read(exact=True)) >= 45
    assert reads_of_int_status_alone(bus) == [], "a window's read waits for no INT_STATUS"


def test_an_overflow_int_status_shows_after_the_fifo_bytes_discards_them(caplog):
    # FIFO_OFLOW_INT set while the count stays low: the overflow came after the count was
    # latched, while or after the bytes were read, so they may have lost their oldest bytes.
    bus, clock, driver = fed_at_1khz(reads_anywhere=False)
    driver.start()
    run_for(driver, clock, 1.0)
    for _ in range(10):  # to a read that read INT_STATUS: the next is a quarter second on
        clock.advance(0.05)
        bus.calls.clear()
        driver.read()
        if reads_of_int_status_alone(bus):
            break
    bus.registers[reg.Register.INT_STATUS] = 0x10
    delivered = []
    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            clock.advance(0.05)
            bus.calls.clear()
            delivered.append(len(driver.read()))
            if driver.counters.overflows:
                break
    assert driver.counters.overflows == 1
    assert delivered[:-1] and min(delivered[:-1]) >= 45, "unseen until INT_STATUS is read"
    assert delivered[-1] == 0, "the bytes read before INT_STATUS are not delivered"
    fifo_read, status_read = bus.calls[0], bus.calls[1]
    assert fifo_read.register == FIFO_COUNTH and fifo_read.length > 2 + 40 * reg.SAMPLE_BYTES
    assert status_read.register == reg.Register.INT_STATUS
    warnings = [r.message for r in caplog.records if "FIFO overflow" in r.message]
    assert len(warnings) == 1 and "INT_STATUS has FIFO_OFLOW_INT set" in warnings[0]
    later = run_for(driver, clock, 0.5)
    assert later[0].gap or any(b.gap for b in later[:2]), "the next samples start a new stretch"
    assert driver.counters.overflows == 1


def answer_back_late_once(bus: FakeSMBus, clock: ManualClock, seconds: float) -> None:
    """The next combined read's answer comes back ``seconds`` after the chip latched its
    count (the host ran something else meanwhile), as a late ioctl return would."""
    plain = bus.i2c_rdwr
    pending = [seconds]

    def late(*messages: object) -> None:
        plain(*messages)
        if pending:
            clock.advance(pending.pop())

    bus.i2c_rdwr = late  # type: ignore[method-assign]


def reads_after_a_late_answer(
    monkeypatch: pytest.MonkeyPatch, *, catch_up: bool
) -> tuple[FakeSMBus, MPU6050, list[SensorBlock], list[Call]]:
    bus, clock, driver = fed_at_1khz(reads_anywhere=False)
    if not catch_up:
        monkeypatch.setattr(mpu6050, "LEFT_BEHIND_READ_SHARE", 10.0)
    driver.start()
    run_for(driver, clock, 1.0)
    answer_back_late_once(bus, clock, 0.045)
    clock.advance(driver.poll_interval_s)
    slow = driver.read()
    # The next read guesses from the late answer: the frames that arrived meanwhile are
    # not certain, so it asks for few of the ~45 the count then shows.
    clock.advance(0.003)
    bus.calls.clear()
    after = driver.read()
    calls_after = list(bus.calls)
    blocks = [slow, after, *run_for(driver, clock, 1.0)]
    return bus, driver, blocks, calls_after


def test_frames_a_read_left_behind_are_read_at_once_not_a_poll_interval_later(monkeypatch):
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1, bus_hz=400_000)
    _, driver, blocks, calls_after = reads_after_a_late_answer(monkeypatch, catch_up=True)
    combined, rest = calls_after  # then FIFO_R_W for the whole frames the count showed
    assert combined.register == FIFO_COUNTH
    assert rest.register == reg.Register.FIFO_R_W and rest.length % reg.SAMPLE_BYTES == 0
    assert rest.length // reg.SAMPLE_BYTES >= 30
    assert len(blocks[1]) == (combined.length - 2 + rest.length) // reg.SAMPLE_BYTES
    assert driver.counters.overflows == 0 and driver.counters.lost == 0
    got = indices(blocks, settings)
    np.testing.assert_array_equal(np.diff(got), 1)


def test_without_reading_them_the_next_read_finds_the_fifo_overflowed(monkeypatch):
    # The same reads with the catch-up switched off: what the fix is for.
    _, driver, _, calls_after = reads_after_a_late_answer(monkeypatch, catch_up=False)
    assert len(calls_after) == 1
    assert driver.counters.overflows == 1


def test_timestamps_are_continuous_and_track_the_clock_despite_jitter() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    bus, clock, driver = make(settings)
    Feeder(bus, clock, 1000)
    driver.start()
    rng = np.random.default_rng(7)
    blocks = []
    for _ in range(200):
        clock.advance(driver.poll_interval_s * rng.uniform(0.6, 1.4))
        blocks.append(driver.read())
    stamps = np.concatenate([b.timestamps for b in blocks])
    steps = np.diff(stamps)
    assert np.all(steps > 0)
    assert np.all(np.abs(steps - 1e-3) <= 0.5e-3)
    # The newest delivered sample is no later than now and at most a FIFO behind.
    assert clock.now - reg.FIFO_CAPACITY_SAMPLES * 1e-3 <= stamps[-1] <= clock.now


def test_the_first_read_after_start_may_only_ask_for_the_count() -> None:
    bus, _, driver = make()
    driver.start()
    block = driver.read()
    assert len(block) == 0
    assert bus.calls[-1].kind == "i2c_rdwr" and bus.calls[-1].length == 2


def test_stream_reads_at_the_poll_interval_into_the_sink() -> None:
    settings = SensorSettings(rate_hz=200)
    bus, clock, driver = make(settings)
    Feeder(bus, clock, 200)
    driver.start()
    stop = threading.Event()
    received: list[SensorBlock] = []
    end = clock.now + 2.0

    class Sink:
        def append(self, block: SensorBlock) -> None:
            received.append(block)
            if clock.now >= end:
                stop.set()

    clock.sleeps.clear()
    driver.stream(Sink(), stop)
    assert received and all(len(b) for b in received)
    assert clock.sleeps and max(clock.sleeps) <= driver.poll_interval_s + 1e-9
    got = indices(received, settings)
    np.testing.assert_array_equal(got, np.arange(got.size))


# -- overflow ------------------------------------------------------------------------------


def test_overflow_resets_the_fifo_and_reports_the_loss_on_the_next_block(caplog) -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    bus, clock, driver = make(settings)
    Feeder(bus, clock, 1000)
    driver.start()
    before = run_for(driver, clock, 0.5)
    clock.advance(0.300)  # 300 samples into an 85-sample FIFO
    with caplog.at_level(logging.WARNING):
        assert len(driver.read()) == 0
    overflow = [r.getMessage() for r in caplog.records if "FIFO overflow" in r.getMessage()]
    assert len(overflow) == 1, "logged once"
    assert "FIFO_OFLOW_INT" in overflow[0] or "FIFO_COUNT 1024" in overflow[0]
    user = bus.writes_to(reg.Register.USER_CTRL)
    assert user[-2] & 0x04, "FIFO_RESET after the overflow"
    assert driver.counters.overflows == 1
    after = [b for b in run_for(driver, clock, 0.2) if len(b)]
    assert after[0].gap and not any(b.gap for b in after[1:])
    # The estimate from elapsed time matches what the chip really produced and was dropped.
    truly_lost = indices(after, settings)[0] - indices(before, settings)[-1] - 1
    assert truly_lost > 300
    assert after[0].lost == pytest.approx(truly_lost, abs=2)
    assert driver.counters.lost == after[0].lost and driver.counters.gaps == 1


def test_the_fifo_says_since_when_it_fills_from_start_through_each_restart_to_close() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    bus, clock, driver = make(settings)
    feeder = Feeder(bus, clock, 1000)
    assert driver.fifo_filling_since is None
    driver.start()
    started = driver.fifo_filling_since
    assert started is not None and feeder.started_at is not None
    # Start sleeps for the gyro to settle first: the FIFO fills from its end, not from its call.
    assert started > 1000.0 + 0.020 and started == pytest.approx(feeder.started_at, abs=1e-9)
    run_for(driver, clock, 0.2)
    assert driver.fifo_filling_since == started, "reads do not restart it"
    clock.advance(0.300)  # an overflow: the FIFO is reset and fills again from now
    restarted_at = clock.now
    driver.read()
    assert driver.counters.overflows == 1
    assert driver.fifo_filling_since == pytest.approx(restarted_at, abs=1e-9)
    driver.close()
    assert driver.fifo_filling_since is None


def test_fewer_samples_than_certain_means_a_reset_not_garbage() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    bus, clock, driver = make(settings)
    feeder = Feeder(bus, clock, 1000)
    driver.start()
    run_for(driver, clock, 0.2)
    feeder.paused = True  # the chip stops writing the FIFO
    clock.advance(driver.poll_interval_s)
    block = driver.read()
    assert len(block) == 0
    assert driver.counters.gaps == 1
    feeder.paused = False
    later = [b for b in run_for(driver, clock, 0.2) if len(b)]
    assert later[0].gap


# -- I2C errors -----------------------------------------------------------------------------


def test_i2c_errors_are_ridden_out_with_backoff_then_a_fifo_reset() -> None:
    settings = SensorSettings(rate_hz=100)
    bus, clock, driver = make(settings)
    Feeder(bus, clock, 100)
    driver.start()
    before = run_for(driver, clock, 1.0)
    resets_before = sum(1 for v in bus.writes_to(reg.Register.PWR_MGMT_1) if v & 0x80)
    bus.fail_next(4, errno.EIO)
    clock.advance(driver.poll_interval_s)
    assert len(driver.read()) == 0
    assert driver.recovering
    clock.sleeps.clear()
    attempts = 0
    while driver.recovering:
        attempts += 1
        assert len(driver.read()) == 0
        assert attempts < 10
    backoffs = [s for s in clock.sleeps if s < 0.1]
    assert backoffs == sorted(backoffs) and backoffs[-1] > backoffs[0], "the backoff grows"
    resets_after = sum(1 for v in bus.writes_to(reg.Register.PWR_MGMT_1) if v & 0x80)
    # The configuration read back intact: a FIFO reset (a failed read may have popped
    # bytes), not a full re-initialise.
    assert resets_after == resets_before
    assert bus.writes_to(reg.Register.USER_CTRL)[-2] & 0x04
    assert driver.counters.i2c_errors == 1 and driver.counters.recoveries == 1
    blocks = [b for b in run_for(driver, clock, 0.5) if len(b)]
    assert blocks[0].gap and not any(b.gap for b in blocks[1:])
    truly_lost = indices(blocks, settings)[0] - indices(before, settings)[-1] - 1
    assert blocks[0].lost == pytest.approx(truly_lost, abs=2)
    assert driver.counters.lost == blocks[0].lost


@pytest.mark.parametrize("code", [errno.EIO, errno.EREMOTEIO, errno.ETIMEDOUT, errno.EBUSY])
def test_each_transient_errno_starts_recovery(code: int) -> None:
    bus, clock, driver = make()
    driver.start()
    bus.fail_next(1, code)
    clock.advance(0.1)
    assert len(driver.read()) == 0 and driver.recovering
    assert len(driver.read()) == 0 and not driver.recovering


def test_other_errors_propagate() -> None:
    bus, clock, driver = make()
    driver.start()
    bus.fail_next(1, errno.EINVAL)
    clock.advance(0.1)
    with pytest.raises(OSError) as caught:
        driver.read()
    assert caught.value.errno == errno.EINVAL


def test_read_before_start_is_an_error() -> None:
    _, _, driver = make()
    with pytest.raises(SensorError, match="before start"):
        driver.read()


def test_close_puts_the_chip_to_sleep() -> None:
    bus, _, driver = make()
    driver.start()
    driver.close()
    assert bus.registers[reg.Register.PWR_MGMT_1] & 0x40


def test_timestamps_spread_corrections_so_continuous_data_never_looks_like_a_hole() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    bus, clock, driver = make(settings)
    Feeder(bus, clock, 1000)
    driver.start()
    rng = np.random.default_rng(3)
    blocks = []
    for _ in range(300):
        # Reads late and early by far more than the period: a loaded host.
        clock.advance(driver.poll_interval_s * rng.uniform(0.1, 1.4))
        blocks.append(driver.read())
    assert not any(b.gap for b in blocks)
    stamps = np.concatenate([b.timestamps for b in blocks])
    steps = np.diff(stamps) / 1e-3
    assert steps.min() >= 0.95 - 1e-9 and steps.max() <= 1.05 + 1e-9
    # ... and they still follow the clock.
    assert abs(stamps[-1] - clock.now) < reg.FIFO_CAPACITY_SAMPLES * 1e-3


def test_timestamps_far_from_the_continued_ones_start_afresh_as_a_gap() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    bus, clock, driver = make(settings)
    Feeder(bus, clock, 1000)
    driver.start()
    for _ in range(5):
        clock.advance(driver.poll_interval_s)
        driver.read()
    last = driver.read().timestamps
    # The host's clock jumps ahead of the samples' own pace by 2 s (no data is missing).
    driver._last_timestamp = float(last[-1]) - 2.0 if len(last) else clock.now - 2.0
    clock.advance(driver.poll_interval_s)
    block = driver.read()
    assert block.gap and len(block)
    assert abs(block.timestamps[-1] - clock.now) < reg.FIFO_CAPACITY_SAMPLES * 1e-3
