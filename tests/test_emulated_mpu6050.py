"""The emulated MPU6050 against numbers from the datasheet (PS-MPU-6000A, RM-MPU-6000A 4.2).

Registers are read and written through EmulatedSMBus, as a driver would; the chip's own
counters (samples_produced, fifo_bytes_lost, sample_rate_hz) only check the bookkeeping.
"""

from __future__ import annotations

import errno
import math

import numpy as np
import pytest
from smbus2 import i2c_msg
from test_emulated_clock import FakeRealTime

from odar.drivers.emulated import clock as clock_module
from odar.drivers.emulated.bus import EmulatedSMBus
from odar.drivers.emulated.clock import ScaledClock, VirtualClock
from odar.drivers.emulated.mpu6050 import EmulatedMPU6050

ADDRESS = 0x68
G = 9.80665
# Register addresses, written out from the register map rather than imported from the module
# under test, so that a wrong constant there fails here.
SMPLRT_DIV, CONFIG, GYRO_CONFIG, ACCEL_CONFIG, FIFO_EN = 0x19, 0x1A, 0x1B, 0x1C, 0x23
INT_PIN_CFG, INT_ENABLE, INT_STATUS = 0x37, 0x38, 0x3A
ACCEL_XOUT_H, ACCEL_ZOUT_H, TEMP_OUT_H, GYRO_XOUT_H = 0x3B, 0x3F, 0x41, 0x43
USER_CTRL, PWR_MGMT_1 = 0x6A, 0x6B
FIFO_COUNTH, FIFO_COUNTL, FIFO_R_W, WHO_AM_I = 0x72, 0x73, 0x74, 0x75


class Constant:
    """ax ay az [m/s^2] gx gy gz [rad/s], the same at every instant; records the times."""

    def __init__(self, *values: float) -> None:
        self.values = np.array(values, dtype=np.float64)
        self.calls: list[np.ndarray] = []

    def read(self, times: np.ndarray) -> np.ndarray:
        self.calls.append(np.array(times))
        return np.tile(self.values, (times.size, 1))


class Sinusoid:
    """A 2 Hz sway: ax = 0.5 g sin, az = 1 g + 0.1 g sin, gyro 1 rad/s sin; records times."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def read(self, times: np.ndarray) -> np.ndarray:
        self.times.extend(times.tolist())
        wave = np.sin(2 * math.pi * 2.0 * times)
        return np.stack([0.5 * G * wave, 0 * wave, G * (1 + 0.1 * wave), wave, wave, wave], 1)


class SampleCounter:
    """ax carries the sample's index (time * rate) in LSB at +-2 g, to follow FIFO bytes."""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self.last_index = 0

    def read(self, times: np.ndarray) -> np.ndarray:
        self.last_index = round(times[-1] * self.rate_hz)
        out = np.zeros((times.size, 6))
        out[:, 0] = np.round(times * self.rate_hz) * G / 16384
        return out


STILL_FLAT = Constant(0.0, 0.0, G, 0.0, 0.0, 0.0)


def make(motion=STILL_FLAT, bus_hz: int = 400_000, **chip_options):
    """A chip on a bus; the register-map tests see settled samples written at once (the
    honest start-up, write-time and reset behaviours have their own tests below)."""
    for option in ("settle_s", "frame_write_s", "reset_s"):
        chip_options.setdefault(option, 0.0)
    clock = VirtualClock()
    bus = EmulatedSMBus(clock, bus_hz=bus_hz)
    chip = EmulatedMPU6050(motion, clock, **chip_options)
    bus.attach(ADDRESS, chip)
    return clock, bus, chip


def configure(bus, *, dlpf_cfg=3, div=0, fifo_en=0x78, accel_fs=0, gyro_fs=0, wake=True):
    bus.write_byte_data(ADDRESS, CONFIG, dlpf_cfg)
    bus.write_byte_data(ADDRESS, SMPLRT_DIV, div)
    bus.write_byte_data(ADDRESS, ACCEL_CONFIG, accel_fs << 3)
    bus.write_byte_data(ADDRESS, GYRO_CONFIG, gyro_fs << 3)
    bus.write_byte_data(ADDRESS, FIFO_EN, fifo_en)
    bus.write_byte_data(ADDRESS, USER_CTRL, 0x40 if fifo_en else 0x00)
    if wake:
        bus.write_byte_data(ADDRESS, PWR_MGMT_1, 0x01)  # SLEEP off, PLL with X gyro


def fifo_count(bus) -> int:
    high, low = bus.read_i2c_block_data(ADDRESS, FIFO_COUNTH, 2)
    return high << 8 | low


def read_fifo(bus, length: int) -> bytes:
    pointer, data = i2c_msg.write(ADDRESS, [FIFO_R_W]), i2c_msg.read(ADDRESS, length)
    bus.i2c_rdwr(pointer, data)
    return bytes(data)


def int16(bus, register: int) -> int:
    high, low = bus.read_i2c_block_data(ADDRESS, register, 2)
    return int.from_bytes(bytes([high, low]), "big", signed=True)


# ---------------------------------------------------------------- reset and power


def test_reset_values_are_zero_except_pwr_mgmt_1_and_who_am_i() -> None:
    _, bus, _ = make()
    values = {register: bus.read_byte_data(ADDRESS, register) for register in range(128)}
    assert values.pop(PWR_MGMT_1) == 0x40
    assert values.pop(WHO_AM_I) == 0x68
    assert set(values.values()) == {0}


def test_a_chip_that_was_never_woken_produces_nothing() -> None:
    clock, bus, chip = make()
    configure(bus, wake=False)
    clock.advance(2.0)
    assert fifo_count(bus) == 0
    assert bus.read_i2c_block_data(ADDRESS, ACCEL_XOUT_H, 14) == [0] * 14
    assert bus.read_byte_data(ADDRESS, INT_STATUS) == 0
    assert chip.samples_produced == 0


def test_device_reset_restores_reset_values_and_clears_itself() -> None:
    clock, bus, _ = make()
    configure(bus, div=4, accel_fs=2)
    clock.advance(0.1)
    assert fifo_count(bus) > 0
    bus.write_byte_data(ADDRESS, PWR_MGMT_1, 0x80)
    assert bus.read_byte_data(ADDRESS, PWR_MGMT_1) == 0x40
    for register in (SMPLRT_DIV, ACCEL_CONFIG, FIFO_EN, USER_CTRL):
        assert bus.read_byte_data(ADDRESS, register) == 0
    assert fifo_count(bus) == 0
    clock.advance(1.0)
    assert fifo_count(bus) == 0  # asleep again


def test_read_only_registers_ignore_writes() -> None:
    clock, bus, _ = make()
    configure(bus, fifo_en=0)
    clock.advance(0.01)
    accel_z = bus.read_i2c_block_data(ADDRESS, ACCEL_ZOUT_H, 2)
    bus.write_byte_data(ADDRESS, WHO_AM_I, 0x00)
    bus.write_i2c_block_data(ADDRESS, ACCEL_ZOUT_H, [0x12, 0x34])
    assert bus.read_byte_data(ADDRESS, WHO_AM_I) == 0x68
    assert bus.read_i2c_block_data(ADDRESS, ACCEL_ZOUT_H, 2) == accel_z


# ---------------------------------------------------------------- sample rate


@pytest.mark.parametrize(
    ("dlpf_cfg", "div", "fifo_en", "seconds", "samples", "frame_bytes"),
    [
        (3, 9, 0x78, 0.5, 50, 12),  # 1 kHz / 10 = 100 Hz, accel + 3 gyro
        (1, 0, 0x08, 0.05, 50, 6),  # 1 kHz, accel only
        (0, 79, 0x78, 0.5, 50, 12),  # DLPF off: 8 kHz / 80 = 100 Hz
        (7, 159, 0xF8, 1.0, 50, 14),  # DLPF_CFG 7 also 8 kHz: 8 kHz / 160 = 50 Hz; + temp
        (6, 255, 0x70, 2.0, 7, 6),  # slowest with DLPF: 1 kHz / 256 = 3.9 Hz, gyro only
    ],
)
def test_fifo_fills_at_gyro_output_rate_over_one_plus_smplrt_div(
    dlpf_cfg, div, fifo_en, seconds, samples, frame_bytes
) -> None:
    clock, bus, chip = make()
    configure(bus, dlpf_cfg=dlpf_cfg, div=div, fifo_en=fifo_en)
    clock.advance(seconds)
    assert fifo_count(bus) == samples * frame_bytes
    gyro_output_hz = 8000 if dlpf_cfg in (0, 7) else 1000
    assert chip.sample_rate_hz == gyro_output_hz / (1 + div)


def test_the_motion_source_is_asked_for_every_sample_instant_in_order() -> None:
    motion = Constant(0, 0, G, 0, 0, 0)
    clock, bus, _ = make(motion)
    configure(bus, div=1)  # 500 Hz
    for _ in range(20):
        clock.advance(0.0137)
        fifo_count(bus)
    times = np.concatenate(motion.calls)
    assert np.all(np.diff(times) == pytest.approx(1 / 500))
    assert len(times) == pytest.approx((times[-1] - times[0]) * 500 + 1)


class SlowToCompute(Constant):
    """Still and flat, but every call takes ``seconds`` of real time, as Python does."""

    def __init__(self, real: FakeRealTime, seconds: float) -> None:
        super().__init__(0, 0, G, 0, 0, 0)
        self.real, self.seconds = real, seconds

    def read(self, times: np.ndarray) -> np.ndarray:
        self.real.now += self.seconds
        return super().read(times)


def test_on_a_scaled_clock_the_chips_computing_takes_none_of_the_worlds_time(
    monkeypatch,
) -> None:
    real = FakeRealTime()
    monkeypatch.setattr(clock_module, "time", real)
    clock = ScaledClock(10.0)
    bus = EmulatedSMBus(clock, bus_hz=400_000)
    motion = SlowToCompute(real, 0.05)
    chip = EmulatedMPU6050(motion, clock, settle_s=0.0, frame_write_s=0.0, reset_s=0.0)
    bus.attach(ADDRESS, chip)
    configure(bus)  # 1 kHz
    counted_from, before = clock.monotonic(), chip.samples_produced
    for _ in range(5):
        real.now += 0.02  # a fifth of a second of the world
        fifo_count(bus)
    world = clock.monotonic() - counted_from
    # Each count's 50 ms of computing would have been 0.5 s of the world, and 500 samples.
    assert len(motion.calls) == 5
    assert world == pytest.approx(1.0, abs=0.01)
    assert chip.samples_produced - before == pytest.approx(1000 * world, abs=2)
    assert clock.paused_seconds == pytest.approx(0.05 * 5)


# ---------------------------------------------------------------- conversion


@pytest.mark.parametrize(
    ("motion", "accel_fs", "gyro_fs", "register", "expected_bytes"),
    [
        (Constant(0, 0, G, 0, 0, 0), 0, 0, ACCEL_ZOUT_H, [0x40, 0x00]),  # 1 g at +-2 g: 16384
        (Constant(0, 0, -G, 0, 0, 0), 0, 0, ACCEL_ZOUT_H, [0xC0, 0x00]),  # -16384
        (Constant(0, 0, G, 0, 0, 0), 1, 0, ACCEL_ZOUT_H, [0x20, 0x00]),  # +-4 g: 8192
        (Constant(0, 0, G, 0, 0, 0), 3, 0, ACCEL_ZOUT_H, [0x08, 0x00]),  # +-16 g: 2048
        (Constant(0, 0, 0, 1.0, 0, 0), 0, 0, GYRO_XOUT_H, [0x1D, 0x52]),  # 57.2958*131 = 7506
        (Constant(0, 0, 0, 0, 0, 1.0), 0, 3, GYRO_XOUT_H + 4, [0x03, 0xAC]),  # *16.4 = 940
    ],
)
def test_known_physical_inputs_give_the_datasheets_raw_bytes(
    motion, accel_fs, gyro_fs, register, expected_bytes
) -> None:
    clock, bus, _ = make(motion)
    configure(bus, accel_fs=accel_fs, gyro_fs=gyro_fs, fifo_en=0)
    clock.advance(0.01)
    assert bus.read_i2c_block_data(ADDRESS, register, 2) == expected_bytes


def test_temperature_reads_25_degc_through_the_datasheet_formula() -> None:
    clock, bus, _ = make()
    configure(bus, fifo_en=0)
    clock.advance(0.01)
    temp_out = int16(bus, TEMP_OUT_H)
    assert temp_out == round((25.0 - 36.53) * 340)
    assert temp_out / 340 + 36.53 == pytest.approx(25.0, abs=0.01)


@pytest.mark.parametrize(
    ("values", "register", "expected"),
    [
        ((0, 0, 5 * G, 0, 0, 0), ACCEL_ZOUT_H, 32767),
        ((0, 0, -5 * G, 0, 0, 0), ACCEL_ZOUT_H, -32768),
        ((0, 0, 0, 100.0, 0, 0), GYRO_XOUT_H, 32767),
        ((0, 0, 0, -100.0, 0, 0), GYRO_XOUT_H, -32768),
    ],
)
def test_values_beyond_full_scale_saturate(values, register, expected) -> None:
    clock, bus, _ = make(Constant(*values))
    configure(bus, fifo_en=0)
    clock.advance(0.01)
    assert int16(bus, register) == expected


# ---------------------------------------------------------------- FIFO


# ax = 0.25 g, ay = -0.5 g, az = 1 g; gx, gy, gz = 0.1, -0.2, 0.3 rad/s at +-2 g, 250 deg/s.
DISTINCT = Constant(0.25 * G, -0.5 * G, G, 0.1, -0.2, 0.3)
ACCEL_RAW = [4096, -8192, 16384]
TEMP_RAW = [-3920]
GYRO_RAW = [751, -1501, 2252]  # round(5.7296*131), round(-11.459*131), round(17.189*131)


@pytest.mark.parametrize(
    ("fifo_en", "expected_frame"),
    [
        (0x08, ACCEL_RAW),
        (0x80, TEMP_RAW),
        (0x40 | 0x10, [GYRO_RAW[0], GYRO_RAW[2]]),
        (0x78, ACCEL_RAW + GYRO_RAW),
        (0xF8, ACCEL_RAW + TEMP_RAW + GYRO_RAW),
    ],
)
def test_fifo_frames_hold_enabled_sensors_in_register_order(fifo_en, expected_frame) -> None:
    clock, bus, _ = make(DISTINCT)
    configure(bus, div=9, fifo_en=fifo_en)  # 100 Hz
    clock.advance(0.03)
    count = fifo_count(bus)
    assert count == 3 * 2 * len(expected_frame)
    frames = np.frombuffer(read_fifo(bus, count), dtype=">i2").reshape(3, -1)
    assert frames.tolist() == [expected_frame] * 3


def test_fifo_stays_empty_without_user_ctrl_fifo_en_while_registers_update() -> None:
    clock, bus, _ = make(DISTINCT)
    configure(bus, div=9, fifo_en=0x78)
    bus.write_byte_data(ADDRESS, USER_CTRL, 0x04)  # FIFO_EN off, FIFO emptied
    clock.advance(0.1)
    assert fifo_count(bus) == 0
    assert int16(bus, GYRO_XOUT_H) == GYRO_RAW[0]


def test_sig_cond_reset_clears_the_data_registers_and_itself() -> None:
    clock, bus, _ = make(DISTINCT)
    configure(bus, div=9, fifo_en=0)
    clock.advance(0.015)  # one sample at 100 Hz; the next is due 5 ms after the reads below
    assert int16(bus, ACCEL_ZOUT_H) == 16384
    bus.write_byte_data(ADDRESS, USER_CTRL, 0x01)
    assert bus.read_i2c_block_data(ADDRESS, ACCEL_XOUT_H, 14) == [0] * 14
    assert bus.read_byte_data(ADDRESS, USER_CTRL) == 0


def test_burst_read_from_fifo_counth_returns_count_then_fifo_bytes() -> None:
    clock, bus, _ = make(DISTINCT)
    configure(bus, div=9, fifo_en=0x08)  # 6-byte frames at 100 Hz
    clock.advance(0.02)
    data = bus.read_i2c_block_data(ADDRESS, FIFO_COUNTH, 2 + 6)
    assert data[:2] == [0, 12]
    assert np.frombuffer(bytes(data[2:]), dtype=">i2").tolist() == ACCEL_RAW
    # The pointer stays at FIFO_R_W: a plain read pops the next frame.
    second = bytes(bus.read_byte(ADDRESS) for _ in range(6))
    assert np.frombuffer(second, dtype=">i2").tolist() == ACCEL_RAW
    assert fifo_count(bus) == 0


def test_empty_fifo_read_repeats_the_last_byte_read() -> None:
    clock, bus, _ = make(DISTINCT)
    configure(bus, div=9, fifo_en=0x70)  # gyro only: the frame ends with gz = 2252 = 0x08CC
    clock.advance(0.01)
    data = read_fifo(bus, 6 + 4)
    assert data[6:] == bytes([0xCC]) * 4


def test_a_burst_write_to_fifo_r_w_pushes_every_byte_into_the_fifo() -> None:
    _, bus, _ = make()  # asleep: nothing but these bytes enters the FIFO
    bus.write_i2c_block_data(ADDRESS, FIFO_R_W, [0x11, 0x22, 0x33])
    assert fifo_count(bus) == 3
    assert read_fifo(bus, 3) == bytes([0x11, 0x22, 0x33])


def test_fifo_count_low_byte_is_latched_by_reading_the_high_byte() -> None:
    clock, bus, _ = make()
    configure(bus, div=9)
    clock.advance(0.05)
    assert bus.read_byte_data(ADDRESS, FIFO_COUNTL) == 0  # nothing latched yet
    assert fifo_count(bus) == 60
    clock.advance(0.05)
    assert bus.read_byte_data(ADDRESS, FIFO_COUNTL) == 60  # stale until COUNTH is read
    assert bus.read_byte_data(ADDRESS, FIFO_COUNTH) == 0
    assert bus.read_byte_data(ADDRESS, FIFO_COUNTL) == 120


def test_overflow_keeps_the_newest_1024_bytes_and_sets_fifo_oflow() -> None:
    motion = SampleCounter(1000.0)
    clock, bus, chip = make(motion)
    bus.write_byte_data(ADDRESS, INT_ENABLE, 0x10)
    configure(bus, div=0, fifo_en=0x78)  # 12-byte frames at 1 kHz
    clock.advance(0.2)
    status = bus.read_byte_data(ADDRESS, INT_STATUS)
    assert status & 0x10
    assert bus.read_byte_data(ADDRESS, INT_STATUS) == 0  # cleared by the read
    count = fifo_count(bus)
    assert count == 1024
    produced = chip.samples_produced
    assert produced == 200
    data = read_fifo(bus, count)
    # The oldest bytes were dropped, not whole frames: the FIFO now starts mid-frame.
    skew = (produced * 12 - 1024) % 12
    frames = np.frombuffer(data[(12 - skew) % 12 :], dtype=">i2").reshape(-1, 6)
    newest = motion.last_index
    assert len(frames) == 85
    assert frames[:, 0].tolist() == list(range(newest - 84, newest + 1))
    # ...with the last (12 - skew) bytes of the frame before them (gy, gz here).
    partial_frame = np.array([newest - 85, 0, 0, 0, 0, 0], dtype=">i2").tobytes()[skew:]
    assert skew == 8 and data[:4] == partial_frame
    assert chip.fifo_bytes_lost == produced * 12 - 1024


def test_fifo_reset_empties_the_fifo_and_clears_itself() -> None:
    clock, bus, _ = make()
    configure(bus, div=9)
    clock.advance(0.1)
    assert fifo_count(bus) == 120
    bus.write_byte_data(ADDRESS, USER_CTRL, 0x44)  # FIFO_EN | FIFO_RESET
    assert fifo_count(bus) == 0
    assert bus.read_byte_data(ADDRESS, USER_CTRL) == 0x40
    clock.advance(0.1)
    assert fifo_count(bus) == 120


def test_strict_fifo_reset_acts_only_while_fifo_en_is_zero() -> None:
    clock, bus, _ = make(strict=True)
    configure(bus, div=9)
    clock.advance(0.1)
    bus.write_byte_data(ADDRESS, USER_CTRL, 0x44)
    assert fifo_count(bus) == 120
    bus.write_byte_data(ADDRESS, USER_CTRL, 0x04)
    assert fifo_count(bus) == 0


def test_strict_int_status_reports_only_enabled_interrupts() -> None:
    clock, bus, _ = make(strict=True)
    configure(bus, div=0)
    clock.advance(0.2)
    assert bus.read_byte_data(ADDRESS, INT_STATUS) == 0
    bus.write_byte_data(ADDRESS, INT_ENABLE, 0x11)
    clock.advance(0.2)
    assert bus.read_byte_data(ADDRESS, INT_STATUS) == 0x11


def test_data_ready_is_set_by_a_new_sample_and_int_rd_clear_clears_on_any_read() -> None:
    clock, bus, _ = make()
    configure(bus, div=9, fifo_en=0)
    bus.write_byte_data(ADDRESS, INT_PIN_CFG, 0x10)  # INT_RD_CLEAR
    clock.advance(0.01)
    bus.read_i2c_block_data(ADDRESS, ACCEL_XOUT_H, 14)
    assert bus.read_byte_data(ADDRESS, INT_STATUS) == 0
    clock.advance(0.01)
    assert bus.read_byte_data(ADDRESS, INT_STATUS) == 0x01


def test_a_long_gap_asks_the_motion_source_only_for_what_can_still_be_seen() -> None:
    motion = Constant(0, 0, G, 0, 0, 0)
    clock, bus, chip = make(motion)
    configure(bus, dlpf_cfg=0, div=0)  # 8 kHz
    clock.advance(60.0)
    assert fifo_count(bus) == 1024
    assert chip.samples_produced == pytest.approx(480_000, abs=5)
    assert sum(call.size for call in motion.calls) <= 1024 // 12 + 2


# ---------------------------------------------------------------- bus time and faults


def drain_continuously(clock, bus, seconds: float) -> int:
    """Read whole frames as fast as the bus allows; return INT_STATUS bits seen."""
    seen = 0
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        seen |= bus.read_byte_data(ADDRESS, INT_STATUS)
        count = fifo_count(bus)
        if count >= 12:
            read_fifo(bus, min(count, 1020) // 12 * 12)
        else:
            clock.sleep(0.002)
    return seen


@pytest.mark.parametrize(("bus_hz", "overflows"), [(100_000, True), (400_000, False)])
def test_1khz_six_axis_overflows_a_100khz_bus_but_not_a_400khz_bus(bus_hz, overflows) -> None:
    clock, bus, _ = make(bus_hz=bus_hz)
    configure(bus, div=0, fifo_en=0x78)
    seen = drain_continuously(clock, bus, 2.0)
    assert bool(seen & 0x10) is overflows


def test_loose_wire_nacks_until_reconnected_and_the_chip_keeps_running() -> None:
    clock, bus, chip = make()
    configure(bus, div=0)
    fifo_count(bus)
    chip.disconnect(0.5)
    with pytest.raises(OSError) as raised:
        bus.read_byte_data(ADDRESS, WHO_AM_I)
    assert raised.value.errno == errno.EREMOTEIO
    clock.advance(0.5)
    assert bus.read_byte_data(ADDRESS, WHO_AM_I) == 0x68
    assert bus.read_byte_data(ADDRESS, PWR_MGMT_1) == 0x01
    assert bus.read_byte_data(ADDRESS, INT_STATUS) & 0x10  # it overflowed meanwhile
    assert fifo_count(bus) == 1024


def test_power_loss_disconnect_leaves_the_chip_asleep_with_reset_values() -> None:
    clock, bus, chip = make()
    configure(bus, div=0, accel_fs=1)
    clock.advance(0.05)
    chip.disconnect(1.0, power_loss=True)
    clock.advance(1.0)
    assert bus.read_byte_data(ADDRESS, PWR_MGMT_1) == 0x40
    assert bus.read_byte_data(ADDRESS, ACCEL_CONFIG) == 0
    assert bus.read_byte_data(ADDRESS, USER_CTRL) == 0
    assert fifo_count(bus) == 0
    assert bus.read_i2c_block_data(ADDRESS, ACCEL_XOUT_H, 14) == [0] * 14


@pytest.mark.parametrize("clone", [0x70, 0x98, 0x00])
def test_clones_answer_who_am_i_with_their_own_value(clone: int) -> None:
    _, bus, chip = make(who_am_i=clone)
    assert bus.read_byte_data(ADDRESS, WHO_AM_I) == clone
    chip.inject_who_am_i(0x68)
    assert bus.read_byte_data(ADDRESS, WHO_AM_I) == 0x68


def test_garbage_fault_corrupts_samples_for_a_while_then_data_is_right_again() -> None:
    clock, bus, chip = make(Sinusoid())
    configure(bus, div=9, fifo_en=0)
    chip.inject_garbage(0.5, seed=3)
    accel_z = []
    for _ in range(40):
        clock.advance(0.05)
        accel_z.append(int16(bus, ACCEL_ZOUT_H))
    garbled, clean = np.array(accel_z[:9]), np.array(accel_z[12:])
    # Around 1 g +- 0.1 g, a clean Z reads 14745..18022 LSB at +-2 g.
    assert np.all((clean > 14000) & (clean < 18500))
    assert np.mean((garbled > 14000) & (garbled < 18500)) < 0.5


def test_sinusoid_round_trips_within_half_an_lsb_through_the_fifo() -> None:
    motion = Sinusoid()
    clock, bus, _ = make(motion)
    configure(bus, div=9, fifo_en=0x08)
    clock.advance(0.5)
    count = fifo_count(bus)
    frames = np.frombuffer(read_fifo(bus, count), dtype=">i2").reshape(-1, 3)
    times = np.array(motion.times[-len(frames) :])
    expected_ax = 0.5 * np.sin(2 * math.pi * 2.0 * times) * 16384
    assert len(frames) == 50
    assert np.max(np.abs(frames[:, 0] - expected_ax)) <= 0.5


# ---------------------------------------------------------------- the honest chip


@pytest.mark.parametrize("offset, produced", [(0.05, 1050), (-0.08, 920), (0.0, 1000)])
def test_the_sample_clock_is_the_chips_own_and_may_be_off_by_per_cent(offset, produced) -> None:
    clock, bus, chip = make(clock_offset=offset)
    configure(bus, div=0, fifo_en=0)  # 1 kHz nominal
    clock.advance(1.0)
    fifo_count(bus)  # any access brings the chip up to now
    assert chip.samples_produced == produced


def test_clock_drift_changes_the_rate_over_the_run() -> None:
    # +1 % per 100 s: over the second 100 s the rate is ~1.5 % above nominal on average.
    clock, bus, chip = make(clock_drift_per_s=0.0001)
    configure(bus, div=9, fifo_en=0)  # 100 Hz nominal
    clock.advance(100.0)
    fifo_count(bus)
    first = chip.samples_produced
    clock.advance(100.0)
    fifo_count(bus)
    assert first == pytest.approx(10_050, abs=2)
    assert chip.samples_produced - first == pytest.approx(10_150, abs=2)


def test_a_count_latched_while_a_frame_is_written_includes_part_of_it() -> None:
    # 100 us a byte (an exaggeration, to hit it); a fast bus keeps the access times short.
    clock, bus, chip = make(bus_hz=3_400_000, frame_write_s=1.2e-3)
    configure(bus, div=9)  # 100 Hz, first sample 10 ms after wake
    clock.advance(0.010 + 350e-6)  # 4 bytes of the first frame are in (1 + 3.5)
    assert fifo_count(bus) == 4
    # The sample is taken (counted) though 8 of its bytes have not entered the FIFO yet.
    assert chip.samples_produced == 1 and chip.fifo_bytes_entering == 8
    clock.advance(0.001)
    assert fifo_count(bus) == 12
    assert chip.fifo_bytes_entering == 0


@pytest.mark.parametrize(
    "who_am_i, capacity",
    [(0x68, 1024), (0x70, 512), (0x71, 512), (0x72, 512), (0x73, 512), (0x98, 4096)],
)
def test_fifo_capacity_is_the_parts_own_from_the_kernels_table(who_am_i, capacity) -> None:
    clock, bus, chip = make(who_am_i=who_am_i)
    bus.write_byte_data(ADDRESS, INT_ENABLE, 0x10)
    configure(bus, div=0)
    clock.advance(5.0)  # 60 000 bytes produced
    assert bus.read_byte_data(ADDRESS, WHO_AM_I) == who_am_i
    assert fifo_count(bus) == capacity
    assert bus.read_byte_data(ADDRESS, INT_STATUS) & 0x10
    assert chip.fifo_capacity == capacity


def test_an_error_mid_burst_still_pops_the_bytes_from_the_fifo() -> None:
    clock, bus, _ = make()
    configure(bus, div=9)
    clock.advance(0.1)
    assert fifo_count(bus) == 120
    bus.inject_errors(errno.EIO, mid_burst=True)
    with pytest.raises(OSError) as raised:
        read_fifo(bus, 48)
    assert raised.value.errno == errno.EIO
    assert fifo_count(bus) == 72  # the four frames are gone all the same


def test_a_brown_out_resets_silently_asleep_and_keeps_acknowledging() -> None:
    clock, bus, chip = make()
    configure(bus, div=0, accel_fs=2)
    clock.advance(0.05)
    chip.brown_out()
    assert bus.read_byte_data(ADDRESS, PWR_MGMT_1) == 0x40
    assert bus.read_byte_data(ADDRESS, ACCEL_CONFIG) == 0
    assert bus.read_byte_data(ADDRESS, USER_CTRL) == 0
    produced = chip.samples_produced
    clock.advance(1.0)
    assert fifo_count(bus) == 0
    assert chip.samples_produced == produced
    assert bus.stats.nacks == 0


def test_device_reset_takes_time_during_which_the_chip_does_not_answer() -> None:
    clock, bus, _ = make(reset_s=0.050)
    configure(bus)
    bus.write_byte_data(ADDRESS, PWR_MGMT_1, 0x80)
    clock.advance(0.040)
    with pytest.raises(OSError) as raised:
        bus.read_byte_data(ADDRESS, WHO_AM_I)
    assert raised.value.errno == errno.EREMOTEIO
    clock.advance(0.010)
    assert bus.read_byte_data(ADDRESS, PWR_MGMT_1) == 0x40


def test_the_gyro_settles_for_30_ms_after_wake_and_the_truth_says_so() -> None:
    clock, bus, chip = make(Constant(0, 0, G, 0, 0, 0), settle_s=0.030, record_truth=True)
    configure(bus, div=0)  # 1 kHz: samples at 1, 2, ... ms after wake
    clock.advance(0.08)
    data = read_fifo(bus, fifo_count(bus) // 12 * 12)
    frames = np.frombuffer(data, dtype=">i2").reshape(-1, 6)
    times, raw, settled = chip.truth.arrays()
    assert len(times) == len(frames) == 80
    assert settled.tolist() == [False] * 29 + [True] * 51  # 1..29 ms settling, 30 ms on
    assert np.all(frames[:29, 3] > 0) and np.all(frames[29:, 3:] == 0)
    assert np.array_equal(raw, frames)


def test_accel_config2_of_the_6500_class_reads_back() -> None:
    _, bus, _ = make(who_am_i=0x70)
    bus.write_byte_data(ADDRESS, 0x1D, 0x03)
    assert bus.read_byte_data(ADDRESS, 0x1D) == 0x03


def test_every_message_of_a_transaction_sees_the_chip_at_the_transactions_moment() -> None:
    # On a real-time clock the emulator's computing for the first message takes milliseconds;
    # a chip latches FIFO_COUNT microseconds into the transaction. Told the moment by the bus,
    # the chip answers as of then, whatever the clock reads meanwhile.
    clock, bus, chip = make()
    configure(bus, dlpf_cfg=1, div=0, fifo_en=0x78)  # 1 kHz, accel + gyro: 12-byte frames
    clock.advance(0.0105)
    moment = clock.monotonic()
    before = fifo_count(bus)
    clock.advance(0.0050)  # computing, as seen on the clock

    def count_as_the_bus_asks() -> int:
        assert chip.acknowledge()
        chip.write(bytes([FIFO_COUNTH]))
        assert chip.acknowledge()
        high, low = chip.read(2)
        return high << 8 | low

    chip.begin_transaction(moment)
    assert count_as_the_bus_asks() == before
    chip.end_transaction()
    assert count_as_the_bus_asks() == before + 5 * 12
