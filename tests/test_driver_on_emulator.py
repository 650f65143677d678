"""The driver against the independently written register-level emulator, in virtual time.

Two readings of the same datasheet checked against each other: the driver's register writes
as the emulated chip stores them, and the emulator's samples as the driver converts them.
"""

from __future__ import annotations

import errno
import logging
import math

import numpy as np
import pytest

from odar.drivers.emulated.bus import EmulatedSMBus
from odar.drivers.emulated.clock import VirtualClock
from odar.drivers.emulated.mpu6050 import EmulatedMPU6050
from odar.drivers.mpu6050 import MPU6050, SensorBlock
from odar.drivers.sensor_settings import SensorSettings
from odar.harness.bench.register_poller import RegisterPoller

G = 9.80665
# A still, tilted wrist turning slowly: accel in g, gyro in deg/s.
STILL_ACCEL_G = np.array([0.5, -0.25, 0.8])
STILL_GYRO_DPS = np.array([10.0, -20.0, 5.0])


class SteadyMotion:
    """The same SI reading at every instant."""

    def read(self, times: np.ndarray) -> np.ndarray:
        row = np.concatenate([STILL_ACCEL_G * G, STILL_GYRO_DPS * math.pi / 180.0])
        return np.tile(row, (len(times), 1))


def rig(settings: SensorSettings, *, strict: bool = True):
    clock = VirtualClock(start=100.0)
    bus = EmulatedSMBus(clock, bus_hz=settings.bus_hz)
    chip = EmulatedMPU6050(SteadyMotion(), clock, strict=strict)
    bus.attach(settings.address, chip)
    return clock, bus, chip


def stream(driver, clock: VirtualClock, seconds: float) -> list[SensorBlock]:
    blocks = []
    end = clock.monotonic() + seconds
    next_read = clock.monotonic()
    while clock.monotonic() < end:
        blocks.append(driver.read())
        next_read = max(next_read + driver.poll_interval_s, clock.monotonic())
        clock.sleep(next_read - clock.monotonic())
    return blocks


def test_start_leaves_the_emulated_chip_configured_as_the_settings_say() -> None:
    settings = SensorSettings(rate_hz=200, accel_range_g=8, gyro_range_dps=1000, dlpf_cfg=2)
    _, bus, chip = rig(settings)
    driver = MPU6050(bus, settings, clock=bus.clock)
    driver.start()
    assert chip.peek(0x1A) & 0x07 == 2  # CONFIG.DLPF_CFG
    assert (chip.peek(0x1B) >> 3) & 0x03 == 2  # GYRO_CONFIG.FS_SEL, 1000 dps
    assert (chip.peek(0x1C) >> 3) & 0x03 == 2  # ACCEL_CONFIG.AFS_SEL, 8 g
    assert chip.peek(0x19) == 4  # 1 kHz / (1 + 4) = 200 Hz
    assert chip.peek(0x6B) & 0x47 == 0x01  # awake, CLKSEL 1
    assert chip.peek(0x23) == 0x78
    assert chip.sample_rate_hz == pytest.approx(200.0)


def test_1khz_on_a_400khz_bus_loses_nothing_within_the_targets() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1, bus_hz=400_000, accel_range_g=2)
    clock, bus, chip = rig(settings)
    driver = MPU6050(bus, settings, clock=clock)
    driver.start()
    bus.reset_stats()
    produced_before = chip.samples_produced
    blocks = stream(driver, clock, 10.0)
    stats = bus.stats
    delivered = sum(len(b) for b in blocks)
    produced = chip.samples_produced - produced_before

    assert chip.fifo_bytes_lost == 0
    assert driver.counters.lost == 0 and driver.counters.gaps == 0
    assert 0 <= produced - delivered <= 85  # at most one FIFO still waiting
    # Address bytes: two per combined transaction (write, then read after repeated START).
    bus_bytes = stats.bytes_read + stats.bytes_written + 2 * stats.transactions
    assert bus_bytes / delivered <= 12.5
    assert stats.transactions / 10.0 <= 25
    samples = np.concatenate([b.samples for b in blocks if len(b)])
    expected = np.concatenate([STILL_ACCEL_G * G, STILL_GYRO_DPS * math.pi / 180.0])
    # One count of quantisation at +-2 g and 500 dps.
    np.testing.assert_allclose(samples.mean(axis=0), expected, atol=G / 16384 + 1e-3)
    stamps = np.concatenate([b.timestamps for b in blocks if len(b)])
    assert np.all(np.diff(stamps) > 0)


def test_1khz_on_a_100khz_bus_says_how_to_fix_it_and_reports_the_loss(caplog) -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1, bus_hz=100_000)
    clock, bus, _ = rig(settings)
    driver = MPU6050(bus, settings, clock=clock)
    with caplog.at_level(logging.ERROR):
        driver.start()
    assert any("dtparam=i2c_arm_baudrate=400000" in r.getMessage() for r in caplog.records)
    blocks = stream(driver, clock, 3.0)
    delivered = sum(len(b) for b in blocks)
    assert delivered < 0.95 * 3000
    assert driver.counters.lost > 0 and driver.counters.gaps > 0


def test_a_loose_wire_is_ridden_out_and_the_gap_counted() -> None:
    settings = SensorSettings(rate_hz=500, dlpf_cfg=1, bus_hz=400_000)
    clock, bus, chip = rig(settings)
    driver = MPU6050(bus, settings, clock=clock)
    driver.start()
    before = stream(driver, clock, 1.0)
    chip.disconnect(0.5)
    during = stream(driver, clock, 0.6)
    assert driver.counters.recoveries == 1 and not driver.recovering
    after = stream(driver, clock, 1.0)
    blocks = [b for b in before + during + after if len(b)]
    gaps = [b for b in blocks if b.gap]
    assert len(gaps) == 1
    # About 0.5 s of samples (250) plus what was in the FIFO and the re-initialisation.
    assert 250 <= gaps[0].lost <= 250 + 85 + 100


def test_an_eio_storm_never_raises_out_of_read() -> None:
    settings = SensorSettings(rate_hz=100, bus_hz=400_000)
    clock, bus, _ = rig(settings)
    driver = MPU6050(bus, settings, clock=clock)
    driver.start()
    stream(driver, clock, 0.5)
    bus.inject_errors(errno.EIO, transactions=6)
    stream(driver, clock, 2.0)
    assert driver.counters.i2c_errors == 1 and driver.counters.recoveries == 1
    assert not driver.recovering
    # Recovered: the next second of the stream arrives whole (100 samples at 100 Hz), give or
    # take what waits in the FIFO for the next read, at most a poll interval's worth.
    resumed = stream(driver, clock, 1.0)
    slack = 100 * driver.poll_interval_s + 5
    assert 100 - slack <= sum(len(block) for block in resumed) <= 100 + slack
    assert not any(block.gap for block in resumed)


def test_the_naive_poller_reads_the_same_values_at_14_transactions_a_sample() -> None:
    settings = SensorSettings(rate_hz=100, bus_hz=400_000)
    clock, bus, _ = rig(settings)
    poller = RegisterPoller(bus, settings, clock=clock)
    poller.start()
    clock.sleep(0.05)
    bus.reset_stats()
    blocks = stream(poller, clock, 1.0)
    assert bus.stats.transactions == 14 * len(blocks)
    expected = np.concatenate([STILL_ACCEL_G * G, STILL_GYRO_DPS * math.pi / 180.0])
    np.testing.assert_allclose(blocks[-1].samples[0], expected, atol=4 * G / 8192)


# ---------------------------------------------------------------- the honest chip


class NoisyMotion:
    """A wrist moving so that no two samples are alike: the ground truth can tell each one."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def read(self, times: np.ndarray) -> np.ndarray:
        base = np.concatenate([STILL_ACCEL_G * G, STILL_GYRO_DPS * math.pi / 180.0])
        return base + self.rng.normal(0.0, [0.5] * 3 + [0.2] * 3, size=(len(times), 6))


def honest(settings: SensorSettings, *, jitter=None, **chip_options):
    from odar.harness.sensor_rig import build_emulated_sensor

    sensor = build_emulated_sensor(
        settings,
        NoisyMotion(),
        VirtualClock(start=100.0),
        jitter=jitter,
        record_truth=True,
        strict=True,
        **chip_options,
    )
    driver = MPU6050(sensor.bus, settings, clock=sensor.clock)
    driver.start()
    return sensor, driver


def checked(sensor, driver, blocks):
    """The truth comparison of everything delivered."""
    from odar.drivers.emulated.truth import compare_with_truth, to_raw
    from odar.drivers.mpu6050 import si_scale

    full = [b for b in blocks if len(b)]
    samples = np.concatenate([b.samples for b in full])
    stamps = np.concatenate([b.timestamps for b in full])
    raw = to_raw(samples, si_scale(driver._settings))
    return compare_with_truth(sensor.chip.truth, raw, stamps)


@pytest.mark.parametrize("offset", [0.05, -0.08])
def test_a_chip_clock_off_by_per_cent_loses_nothing_and_is_measured(offset) -> None:
    from odar.drivers.emulated.bus import HostJitter

    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    sensor, driver = honest(settings, jitter=HostJitter(seed=1), clock_offset=offset)
    blocks = stream(driver, sensor.clock, 20.0)
    truth = checked(sensor, driver, blocks)
    assert driver.counters.lost == 0 and driver.counters.gaps == 0
    assert not truth.misaligned.any() and not truth.settling.any()
    assert truth.not_delivered == 0
    assert driver.measured_rate_hz == pytest.approx(1000 * (1 + offset), rel=2e-3)
    # Centred: once the rate is measured, the timestamps sit on the sampling instants on
    # average, not half a period late.
    settled_half = truth.time_error_s[truth.time_error_s.size // 2 :]
    assert abs(float(np.mean(settled_half))) < 0.25e-3


@pytest.mark.parametrize("who_am_i, fifo_bytes", [(0x70, 512), (0x98, 4096), (0x72, 512)])
def test_each_part_streams_with_its_own_fifo_size(who_am_i, fifo_bytes) -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    sensor, driver = honest(settings, who_am_i=who_am_i)
    assert driver.fifo_bytes == fifo_bytes
    blocks = stream(driver, sensor.clock, 5.0)
    truth = checked(sensor, driver, blocks)
    assert driver.counters.lost == 0 and driver.counters.overflows == 0
    assert not truth.misaligned.any() and truth.not_delivered == 0
    if fifo_bytes < 1024:
        assert sensor.bus.read_byte_data(0x68, 0x1D) == 1  # A_DLPF_CFG set on 6500-class


def test_a_330_ms_stall_on_a_512_byte_fifo_is_an_overflow_detected_and_recovered(caplog) -> None:
    settings = SensorSettings(rate_hz=100)
    sensor, driver = honest(settings, who_am_i=0x70)
    blocks = stream(driver, sensor.clock, 2.0)
    sensor.bus.inject_stall(0.330)
    sensor.clock.sleep(0.2)  # the read before the stall was late, too
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        blocks += stream(driver, sensor.clock, 3.0)
    truth = checked(sensor, driver, blocks)
    assert driver.counters.overflows == 1 and driver.counters.gaps == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert not truth.misaligned.any()
    assert driver.counters.lost == pytest.approx(truth.not_delivered, abs=2)


@pytest.mark.parametrize("read_mode, per_read", [("auto", 1), ("count-then-data", 2)])
def test_int_status_at_every_read_costs_no_transaction_on_i2c_gpio(read_mode, per_read) -> None:
    from odar.harness.sensor_rig import build_emulated_sensor

    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    sensor = build_emulated_sensor(
        settings, NoisyMotion(), VirtualClock(start=100.0), adapter="i2c-gpio", strict=True
    )
    driver = MPU6050(sensor.bus, settings, clock=sensor.clock, read_mode=read_mode)
    driver.start()
    assert driver.status_with_count
    stream(driver, sensor.clock, 1.0)  # the rate is learnt; every read carries frames
    sensor.bus.reset_stats()
    reads_before = driver.counters.reads
    stream(driver, sensor.clock, 5.0)
    reads = driver.counters.reads - reads_before
    # Counted on the emulated bus: the same transactions a read as without INT_STATUS.
    assert sensor.bus.stats.transactions == per_read * reads
    if per_read == 1:
        assert sensor.bus.stats.transactions / 5.0 <= 30


def test_an_overflow_on_the_emulated_chip_is_seen_by_fifo_oflow_int_at_the_next_read(
    caplog,
) -> None:
    from odar.harness.sensor_rig import build_emulated_sensor

    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    sensor = build_emulated_sensor(
        settings,
        NoisyMotion(),
        VirtualClock(start=100.0),
        adapter="i2c-gpio",
        record_truth=True,
        strict=True,
    )
    driver = MPU6050(sensor.bus, settings, clock=sensor.clock)
    driver.start()
    blocks = stream(driver, sensor.clock, 1.0)
    sensor.clock.sleep(0.2)  # 200 samples: the 85-frame FIFO overflows, FIFO_OFLOW_INT set
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        block = driver.read()
    assert driver.counters.overflows == 1 and len(block) == 0
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "INT_STATUS has FIFO_OFLOW_INT set" in warnings[0]
    blocks += stream(driver, sensor.clock, 2.0)
    truth = checked(sensor, driver, blocks)
    assert not truth.misaligned.any() and driver.counters.overflows == 1


def test_the_combined_read_leaves_no_backlog_of_frames_that_came_while_it_was_on_the_wire():
    # At 400 kHz a frame takes 12 x 9 / 400 kHz = 0.27 ms on the wire: a 50-frame answer is
    # ~14 ms, in which 14 more frames arrive. Counting arrivals from the transaction's return
    # left them behind at every read (a backlog of ~15 frames eating the FIFO's headroom);
    # counting from the latest moment the count can have been latched (the return less the
    # answer's wire time) asks for them next time.
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1, bus_hz=400_000)
    sensor, driver = honest(settings)
    stream(driver, sensor.clock, 1.0)  # the rate is measured
    driver.read()
    start = sensor.clock.monotonic()
    left_behind = []
    for _ in range(100):
        sensor.clock.sleep(0.050 - (sensor.clock.monotonic() - start) % 0.050)
        before = sensor.bus.stats.transactions
        assert len(driver.read()) > 40
        # In the FIFO at the count's latch, unread (on a read with INT_STATUS after the
        # burst, the chip's last access is that later transaction).
        if sensor.bus.stats.transactions == before + 1:
            left_behind.append(sensor.samples_in_fifo)
    # Only the margins are left (1 % of the rate, one frame held back, one being written,
    # the guess's rounding down): 4 here, 20 when counted from the return.
    assert driver.read_mode == "burst" and len(left_behind) >= 75 and max(left_behind) <= 5


def test_after_a_minute_on_a_fast_chip_a_silent_reset_is_found_at_the_next_exact_read() -> None:
    # Counted from the FIFO's start at the nominal rate less 12 %, a chip 5 % fast has long
    # delivered more than promised: a minute in, that count would stay blind to a stopped
    # chip for ~10 s. The frames certainly arrived since the last count are not.
    settings = SensorSettings(rate_hz=100)
    sensor, driver = honest(settings, clock_offset=0.05)
    stream(driver, sensor.clock, 60.0)
    sensor.chip.brown_out()
    sensor.clock.sleep(0.2)
    driver.read(exact=True)  # count then data: nothing asked for that the count did not show
    assert driver.counters.resets_detected == 1


def test_a_silent_reset_is_found_while_the_window_read_is_retried_every_two_periods() -> None:
    # The reader retries a window read that did not find the window's last sample every two
    # periods. Each retry's count found nothing new, and the frames certainly arrived were
    # counted from that count: never more than 2 - 1 (the frame being written), below the 4
    # that make the driver read its configuration back. A chip reset just before a window's
    # end stayed asleep for seconds (until a host stall widened the spacing), 2 s in
    # `odar bench sensor --seconds 320 --rate 100 --part 0x68 --seed 1 --chip-clock 0.05
    # --silent-reset-every 13 --stall-every 7`. Counted from the last count that found new
    # frames, the evidence adds up: found within the 4 frames and the margins.
    settings = SensorSettings(rate_hz=100)
    sensor, driver = honest(settings, clock_offset=0.05)
    stream(driver, sensor.clock, 60.0)
    driver.read()  # the pre-read, just before the window's end
    sensor.chip.brown_out()
    period = 1.0 / driver.measured_rate_hz
    for _ in range(10):
        sensor.clock.sleep(2 * period)
        driver.read(exact=True)
    assert driver.counters.resets_detected == 1


def test_a_silent_reset_is_found_by_reading_the_configuration_back_and_repaired(caplog) -> None:
    settings = SensorSettings(rate_hz=500)
    sensor, driver = honest(settings)
    blocks = stream(driver, sensor.clock, 2.0)
    sensor.chip.brown_out()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        blocks += stream(driver, sensor.clock, 3.0)
    truth = checked(sensor, driver, blocks)
    assert driver.counters.resets_detected == 1 and driver.counters.gaps == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "PWR_MGMT_1 reads 0x40" in warnings[0]
    assert sensor.bus.stats.nacks == 0
    assert not truth.misaligned.any() and not truth.settling.any()
    assert sum(len(b) for b in blocks[-5:]) > 0, "streaming again"


def test_an_error_mid_burst_resynchronises_without_misaligned_frames() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    sensor, driver = honest(settings)
    blocks = stream(driver, sensor.clock, 1.0)
    sensor.bus.inject_errors(errno.EIO, mid_burst=True)
    blocks += stream(driver, sensor.clock, 1.0)
    truth = checked(sensor, driver, blocks)
    assert driver.counters.i2c_errors == 1 and driver.counters.recoveries == 1
    assert driver.counters.gaps == 1 and driver.counters.resets_detected == 0
    assert not truth.misaligned.any()


def test_partial_frames_in_the_count_never_misalign() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    # A frame takes 0.6 ms to enter the FIFO: most counts catch one half written.
    sensor, driver = honest(settings, frame_write_s=0.6e-3)
    blocks = stream(driver, sensor.clock, 3.0)
    truth = checked(sensor, driver, blocks)
    assert driver.counters.gaps == 0 and not truth.misaligned.any()


def test_no_unsettled_sample_is_delivered_after_start_or_re_initialise() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    sensor, driver = honest(settings, settle_s=0.030)
    blocks = stream(driver, sensor.clock, 1.0)
    sensor.chip.brown_out()
    blocks += stream(driver, sensor.clock, 1.0)
    _times, _, settled = sensor.chip.truth.arrays()
    assert (~settled).sum() >= 2 * 29, "the chip did settle twice"
    assert not checked(sensor, driver, blocks).settling.any()


@pytest.mark.parametrize("code", [errno.ENXIO, errno.EAGAIN])
def test_enxio_and_eagain_are_transient(code) -> None:
    settings = SensorSettings(rate_hz=100)
    sensor, driver = honest(settings)
    stream(driver, sensor.clock, 0.5)
    sensor.bus.inject_errors(code)
    sensor.clock.sleep(0.1)
    assert len(driver.read()) == 0 and driver.recovering
    stream(driver, sensor.clock, 0.5)
    assert not driver.recovering and driver.counters.recoveries == 1


def test_the_bus_clock_is_read_from_sysfs_and_a_mismatch_said(tmp_path, caplog) -> None:
    node = tmp_path / "class/i2c-adapter/i2c-1/of_node"
    node.mkdir(parents=True)
    (node / "clock-frequency").write_bytes((100_000).to_bytes(4, "big"))
    settings = SensorSettings(rate_hz=100, bus_hz=400_000)
    clock, bus, _ = rig(settings)
    driver = MPU6050(bus, settings, clock=clock, sysfs_root=tmp_path)
    with caplog.at_level(logging.WARNING):
        driver.start()
    assert driver.bus_clock_hz == 100_000
    said = [r.getMessage() for r in caplog.records if "100000 Hz" in r.getMessage()]
    assert said and "sensor.bus_hz 400000" in said[0]


def test_without_sysfs_the_configured_bus_clock_stands(tmp_path, caplog) -> None:
    settings = SensorSettings(rate_hz=100)
    clock, bus, _ = rig(settings)
    driver = MPU6050(bus, settings, clock=clock, sysfs_root=tmp_path)
    with caplog.at_level(logging.WARNING):
        driver.start()
    assert driver.bus_clock_hz is None and not caplog.records


def test_the_combined_read_is_used_only_where_proven() -> None:
    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    clock, bus, _ = rig(settings)
    proven = MPU6050(bus, settings, clock=clock)
    proven.start()
    assert proven.read_mode == "burst"
    kernel_way = MPU6050(bus, settings, clock=clock, read_mode="count-then-data")
    kernel_way.start()
    assert kernel_way.read_mode == "count-then-data"


def test_a_stall_between_count_and_data_never_delivers_a_shifted_fifo() -> None:
    from odar.harness.sensor_rig import build_emulated_sensor

    settings = SensorSettings(rate_hz=1000, dlpf_cfg=1)
    sensor = build_emulated_sensor(
        settings, NoisyMotion(), VirtualClock(start=100.0), record_truth=True
    )
    driver = MPU6050(sensor.bus, settings, clock=sensor.clock, read_mode="count-then-data")
    driver.start()
    blocks = stream(driver, sensor.clock, 1.0)
    # The count's transaction is held 330 ms: the FIFO (85 ms at 1 kHz) overflows before
    # the data read, so the count it latched no longer describes the FIFO.
    sensor.bus.inject_stall(0.330)
    blocks += stream(driver, sensor.clock, 1.0)
    truth = checked(sensor, driver, blocks)
    assert driver.counters.overflows == 1 and driver.counters.gaps == 1
    assert not truth.misaligned.any()
