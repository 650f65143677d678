"""The daemon's read cadence on a scripted sensor in virtual time: where each read lands."""

from __future__ import annotations

import numpy as np
import pytest

from odar.drivers.emulated.clock import VirtualClock
from odar.drivers.mpu6050 import SensorBlock, poll_interval_for
from odar.ring_buffer import RingBuffer
from odar.sensor_reader import (
    PRE_READ_MARGIN_S,
    WINDOW_READ_MARGIN_S,
    WINDOW_RETRY_PERIODS,
    SensorReader,
)
from odar.windows import WindowCutter


class ScriptedSensor:
    """A 1 kHz chip whose reads take ``read_s`` of clock time and deliver every sample due."""

    def __init__(
        self,
        clock: VirtualClock,
        rate_hz: float = 1000.0,
        read_s: float = 0.004,
        read_s_per_sample: float = 0.0,
    ):
        self.clock, self.rate_hz, self.read_s = clock, rate_hz, read_s
        self.read_s_per_sample = read_s_per_sample
        self.poll_interval_s = 0.060
        self.measured_rate_hz = rate_hz
        self.last_timestamp: float | None = None
        self.fifo_filling_since: float | None = clock.monotonic()
        self.delivered = 0
        self.reads: list[tuple[float, bool]] = []
        self.sizes: list[int] = []

    def read(self, exact: bool = False) -> SensorBlock:
        now = self.clock.monotonic()
        self.reads.append((now, exact))
        due = int(now * self.rate_hz)
        n = due - self.delivered
        stamps = (self.delivered + 1 + np.arange(n)) / self.rate_hz
        self.delivered = due
        if n:
            self.last_timestamp = float(stamps[-1])
        self.clock.sleep(self.read_s + n * self.read_s_per_sample)
        self.sizes.append(n)
        return SensorBlock(stamps, np.zeros((n, 6), np.float32))


class Ring:
    def __init__(self) -> None:
        self.write_seq = 0

    def append(self, block: SensorBlock) -> None:
        self.write_seq += len(block)


def test_reads_keep_a_fixed_cadence_whatever_a_read_costs() -> None:
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.015)
    reader = SensorReader(sensor, Ring(), clock)
    for _ in range(20):
        reader.step()
    starts = np.array([at for at, _ in sensor.reads])
    # Sleep-after-read would space them 60 + 15 ms apart.
    np.testing.assert_allclose(np.diff(starts), 0.060, atol=1e-9)
    assert reader.reads == {"grid": 20, "pre-read": 0, "window": 0}


def test_the_first_read_counts_from_when_the_fifo_began_to_fill_not_from_the_thread() -> None:
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.001)  # its FIFO fills from 0
    clock.advance(0.045)  # the sensor thread began late: the FIFO already holds 45 samples
    reader = SensorReader(sensor, Ring(), clock)
    reader.step()
    assert sensor.reads[0][0] == pytest.approx(0.060), "a fill target after the FIFO began"
    assert sensor.sizes[0] == 60

    late = VirtualClock()
    sensor = ScriptedSensor(late, read_s=0.001)
    late.advance(0.075)  # later than the fill target itself: read at once
    SensorReader(sensor, Ring(), late).step()
    assert sensor.reads[0][0] == pytest.approx(0.075)


def test_a_sensor_that_is_not_streaming_yet_starts_the_grid_now() -> None:
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.001)
    sensor.fifo_filling_since = None  # a missing chip, looked for again at its own pace
    clock.advance(0.045)
    SensorReader(sensor, Ring(), clock).step()
    assert sensor.reads[0][0] == pytest.approx(0.105)


def test_a_late_read_is_followed_by_the_plan_not_by_catch_up_reads() -> None:
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.001)
    reader = SensorReader(sensor, Ring(), clock)
    reader.step()
    sensor.read_s = 0.200  # a stalled host during the next read
    reader.step()
    sensor.read_s = 0.001
    reader.step()
    reader.step()
    starts = [at for at, _ in sensor.reads]
    assert starts[2] == pytest.approx(starts[1] + 0.200)  # at once, once
    assert starts[3] == pytest.approx(starts[2] + 0.060)


def stepped_reader(sensor: ScriptedSensor, clock: VirtualClock, hop: int, until: float):
    """A reader whose windows end every `hop` samples, stepped until `until` virtual seconds."""
    ring = Ring()
    reader = SensorReader(
        sensor, ring, clock, window_end_after=lambda newest: ((newest + 1) // hop + 1) * hop - 1
    )
    while clock.monotonic() < until:
        reader.step()
    return reader


def test_each_window_end_gets_an_exact_read_just_after_its_last_sample() -> None:
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.001)
    # A window ends every second at 1 kHz.
    reader = stepped_reader(sensor, clock, hop=1000, until=10.0)
    window_reads = [at for at, exact in sensor.reads if exact]
    # Sample 1000k - 1 (0-based) is due at 1000k ms, read 0.5 ms + the margin later.
    ends = np.arange(1, len(window_reads) + 1) * 1.0
    assert len(window_reads) >= 9
    np.testing.assert_allclose(window_reads, ends + 0.0005 + WINDOW_READ_MARGIN_S, atol=1e-9)
    # ... after a read that ends PRE_READ_MARGIN_S before it, so that it carries few samples.
    assert reader.reads["pre-read"] == len(window_reads)
    before = [sensor.reads[i - 1][0] for i, (_, exact) in enumerate(sensor.reads) if exact]
    pre_read_ends = np.array(before) + 0.001
    np.testing.assert_allclose(
        np.array(window_reads) - pre_read_ends, PRE_READ_MARGIN_S, atol=0.1e-3
    )
    # No more wake-ups than the grid and one extra per window.
    assert len(sensor.reads) <= 10.0 / 0.060 + 2 * len(window_reads) + 1


def test_a_pre_read_that_costs_bus_time_starts_early_enough_to_end_before_the_window() -> None:
    # At 400 kHz a frame is 12 bytes x 9 clocks = 0.27 ms on the wire: a 50-sample read takes
    # 13.5 ms. Started 8 samples before the window's end, the pre-read would end after
    # it and hold the window's read back until then.
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.0005, read_s_per_sample=0.00027)
    reader = stepped_reader(sensor, clock, hop=500, until=10.0)
    window_reads = [at for at, exact in sensor.reads if exact]
    assert len(window_reads) >= 18
    ends = np.arange(1, len(window_reads) + 1) * 500 / 1000
    late = np.array(window_reads) - (ends + 0.0005 + WINDOW_READ_MARGIN_S)
    # Every window's read is on time (the grid reads before the first taught the cost): the
    # pre-read ended PRE_READ_MARGIN_S before it.
    np.testing.assert_allclose(late, 0.0, atol=1e-9)
    before = [i - 1 for i, (_, exact) in enumerate(sensor.reads) if exact]
    pre_read_ends = [
        sensor.reads[i][0] + 0.0005 + 0.00027 * sensor.sizes[i] for i in before[1:]
    ]
    np.testing.assert_allclose(
        np.array(window_reads[1:]) - pre_read_ends, PRE_READ_MARGIN_S, atol=0.5e-3
    )
    assert reader.read_seconds_per_sample == pytest.approx(0.00027 + 0.0005 / 55, rel=0.2)
    # Two pre-reads back to back: the first (~40 samples, ~11 ms) leaves ~11 for the second
    # (~3.5 ms), which leaves the window read the margin's 8 samples and ~4 more; one pre-read
    # would have left it ~20.
    assert reader.reads["pre-read"] == 2 * len(window_reads)
    window_sizes = [n for (_, exact), n in zip(sensor.reads, sensor.sizes, strict=True) if exact]
    assert max(window_sizes) <= PRE_READ_MARGIN_S * 1000 + 5


def test_at_100_hz_the_window_read_carries_the_margins_time_not_a_count_of_samples() -> None:
    # The margin before the window's end is time (host lateness is time): at 100 Hz 8 ms is
    # under one sample, so the window read carries one or two samples, not 8 (80 ms' worth).
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, rate_hz=100.0, read_s=0.0005, read_s_per_sample=0.00027)
    sensor.poll_interval_s = poll_interval_for(100.0)  # 0.54 s: just over a hop
    reader = stepped_reader(sensor, clock, hop=50, until=10.0)
    window_sizes = [n for (_, exact), n in zip(sensor.reads, sensor.sizes, strict=True) if exact]
    assert len(window_sizes) >= 18
    assert max(window_sizes) <= 2
    # One pre-read a window and nothing else: a second would take ~1.5 samples off the window
    # read, not worth its transaction, and the grid's fill target is longer than a hop.
    assert reader.reads["pre-read"] == len(window_sizes)
    assert reader.reads["grid"] <= 1


def test_windows_the_window_thread_has_not_cut_yet_still_get_their_reads() -> None:
    # The next read is planned as soon as a read is appended, before the window thread cuts
    # the window that read completed: the cutter's next window is then one already read. At
    # 100 Hz the grid's fill target (0.54 s) is longer than a hop (0.5 s), so a plan that took
    # no window for a grid read would go on missing every window's end, and each window
    # would wait in the FIFO for up to half a second.
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, rate_hz=100.0, read_s=0.0005, read_s_per_sample=0.00027)
    sensor.poll_interval_s = poll_interval_for(100.0)
    ring = RingBuffer(4000)
    cutter = WindowCutter(ring, window=400, hop=50, start_seq=0)
    reader = SensorReader(sensor, ring, clock, window_end_after=cutter.window_end_after)
    window_ends: list[float] = []
    while clock.monotonic() < 30.0:
        reader.step()  # plans the next read before the windows below are cut
        while (window := cutter.poll()) is not None:
            window_ends.append(window.t_end)
    window_reads = [at for at, exact in sensor.reads if exact]
    assert len(window_ends) >= 50
    # Each window after the first is read 0.5 period + the margin after its last sample.
    read_after = np.array(window_reads[-len(window_ends) + 1 :]) - np.array(window_ends[1:])
    np.testing.assert_allclose(read_after, 0.005 + WINDOW_READ_MARGIN_S, atol=1e-6)


def test_a_window_end_that_moves_far_on_after_a_pre_read_does_not_hold_the_grid_back() -> None:
    # A start press restarts the cutter: the next window's end jumps 4 s on, just after a
    # pre-read for the old one. Its window read would wait 4 s (the FIFO overflows in 0.2 s at
    # 400 Hz); the grid goes on instead.
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.001)
    ring = Ring()
    ends = {"next": 999}
    reader = SensorReader(sensor, ring, clock, window_end_after=lambda newest: ends["next"])
    while reader.reads["pre-read"] == 0:
        reader.step()
    ends["next"] = 4999
    reader._planned = reader.plan(clock.monotonic())  # as planned after the pre-read
    before = len(sensor.reads)
    while clock.monotonic() < 2.0:
        reader.step()
    starts = np.array([at for at, _ in sensor.reads[before - 1 :]])
    assert np.diff(starts).max() <= sensor.poll_interval_s + 1e-9


def test_a_recovering_driver_is_read_again_at_once_it_paces_itself() -> None:
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.050)
    ring = Ring()
    reader = SensorReader(sensor, ring, clock, window_end_after=lambda newest: 10_000)
    reader.step()
    sensor.poll_interval_s = 0.0  # as MPU6050 says while recovering
    reader.step()
    reader.step()
    starts = [at for at, _ in sensor.reads]
    assert starts[2] == pytest.approx(starts[1] + 0.050)  # no wait beyond the read itself


def test_a_chip_that_stops_before_a_windows_end_is_not_read_back_to_back() -> None:
    # A silent reset: the chip sleeps and delivers nothing, so the window's last sample never
    # comes and its read is always overdue. Retries come WINDOW_RETRY_PERIODS apart, not as
    # fast as the bus allows.
    clock = VirtualClock()
    sensor = ScriptedSensor(clock, read_s=0.0002)
    reader = stepped_reader(sensor, clock, hop=1000, until=0.9)
    sensor.rate_hz = 0.0  # stopped: no sample is due any more
    sensor.read = _stopped(sensor)  # type: ignore[method-assign]
    before = len(sensor.reads)
    while clock.monotonic() < 1.5:
        reader.step()
    stopped_reads = sensor.reads[before:]
    gaps = np.diff([at for at, _ in stopped_reads])
    assert all(exact for _, exact in stopped_reads[1:])
    assert gaps.min() >= WINDOW_RETRY_PERIODS / 1000.0 - 1e-9
    assert len(stopped_reads) <= 0.6 / (WINDOW_RETRY_PERIODS / 1000.0) + 2


def _stopped(sensor: ScriptedSensor):
    def read(exact: bool = False) -> SensorBlock:
        sensor.reads.append((sensor.clock.monotonic(), exact))
        sensor.clock.sleep(sensor.read_s)
        return SensorBlock.empty()

    return read
