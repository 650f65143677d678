"""Windows: exact contents, hop, decimation, gaps, a lagging consumer, two threads."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from odar import windows as windows_module
from odar.drivers.mpu6050 import SensorBlock
from odar.ring_buffer import RingBuffer
from odar.windows import WindowCutter

PERIOD = 0.001


def block(first: int, count: int, gap: bool = False) -> SensorBlock:
    """Sample n holds n in channel 0 and -n in channel 5; it was taken at n * PERIOD."""
    numbers = np.arange(first, first + count, dtype=np.float64)
    samples = np.zeros((count, 6), dtype=np.float32)
    samples[:, 0] = numbers
    samples[:, 5] = -numbers
    return SensorBlock(numbers * PERIOD, samples, 0, gap)


def all_windows(cutter: WindowCutter) -> list:
    windows = []
    while (window := cutter.poll()) is not None:
        windows.append(window)
    return windows


def test_windows_hold_exactly_the_samples_in_order() -> None:
    ring = RingBuffer(100)
    ring.append(block(0, 23))
    windows = all_windows(WindowCutter(ring, window=10, hop=5))
    assert [w.seq for w in windows] == [0, 5, 10]
    for w in windows:
        assert w.samples.shape == (10, 6) and w.samples.dtype == np.float32
        np.testing.assert_array_equal(w.samples[:, 0], np.arange(w.seq, w.seq + 10))
        np.testing.assert_array_equal(w.samples[:, 5], -np.arange(w.seq, w.seq + 10))
        assert w.t_start == pytest.approx(w.seq * PERIOD)
        assert w.t_end == pytest.approx((w.seq + 9) * PERIOD)


def test_windows_arrive_as_samples_do() -> None:
    ring = RingBuffer(100)
    cutter = WindowCutter(ring, window=10, hop=10)
    ring.append(block(0, 7))
    assert cutter.poll() is None
    ring.append(block(7, 7))
    first = cutter.poll()
    assert first is not None and first.seq == 0
    assert cutter.poll() is None
    ring.append(block(14, 6))
    assert cutter.poll().seq == 10


@pytest.mark.parametrize(("hop", "starts"), [(1, list(range(11))), (4, [0, 4, 8]), (15, [0])])
def test_hop(hop: int, starts: list[int]) -> None:
    ring = RingBuffer(100)
    ring.append(block(0, 20))
    assert [w.seq for w in all_windows(WindowCutter(ring, window=10, hop=hop))] == starts


def test_a_hop_longer_than_the_window_skips_samples() -> None:
    ring = RingBuffer(100)
    ring.append(block(0, 50))
    assert [w.seq for w in all_windows(WindowCutter(ring, window=10, hop=15))] == [0, 15, 30]


def test_decimation_averages_blocks_of_k() -> None:
    ring = RingBuffer(1000)
    ring.append(block(0, 109))  # 10 whole blocks of 10, and 9 samples short of another
    windows = all_windows(WindowCutter(ring, window=5, hop=5, decimation=10))
    assert [w.seq for w in windows] == [0, 50]
    first = windows[0]
    # Model sample j is the mean of sensor samples 10j..10j+9: 10j + 4.5.
    np.testing.assert_allclose(first.samples[:, 0], [4.5, 14.5, 24.5, 34.5, 44.5])
    np.testing.assert_allclose(first.samples[:, 5], [-4.5, -14.5, -24.5, -34.5, -44.5])
    np.testing.assert_allclose(first.timestamps, np.array([4.5, 14.5, 24.5, 34.5, 44.5]) * PERIOD)
    assert first.t_start == pytest.approx(0.0)
    assert first.t_end == pytest.approx(49 * PERIOD)


def test_no_window_spans_a_gap_and_cutting_restarts_after_it() -> None:
    ring = RingBuffer(200)
    ring.append(block(0, 14))
    ring.append(block(20, 20, gap=True))
    cutter = WindowCutter(ring, window=10, hop=5)
    windows = all_windows(cutter)
    assert [w.seq for w in windows] == [0, 14, 19, 24]
    assert [int(w.samples[0, 0]) for w in windows] == [0, 20, 25, 30]
    for w in windows:
        assert np.all(np.diff(w.samples[:, 0]) == 1)


def test_a_gap_drops_an_unfinished_decimation_block() -> None:
    ring = RingBuffer(200)
    ring.append(block(0, 13))  # one whole block of 4 ... three, and one sample left over
    ring.append(block(100, 16, gap=True))
    windows = all_windows(WindowCutter(ring, window=4, hop=4, decimation=4))
    assert len(windows) == 1
    np.testing.assert_allclose(windows[0].samples[:, 0], [101.5, 105.5, 109.5, 113.5])


def test_a_lagging_consumer_restarts_at_the_oldest_sample_kept() -> None:
    ring = RingBuffer(50)
    cutter = WindowCutter(ring, window=10, hop=10)
    for first in range(0, 200, 20):
        ring.append(block(first, 20))
    windows = all_windows(cutter)
    assert [w.seq for w in windows] == [150, 160, 170, 180, 190]
    assert ring.overwritten == 150


def test_restart_skips_to_now() -> None:
    ring = RingBuffer(100)
    ring.append(block(0, 30))
    cutter = WindowCutter(ring, window=10, hop=10)
    cutter.restart()
    assert cutter.poll() is None
    ring.append(block(30, 10))
    assert cutter.poll().seq == 30


def test_next_window_times_out_and_wakes_for_the_producer() -> None:
    ring = RingBuffer(100)
    cutter = WindowCutter(ring, window=10, hop=10)
    assert cutter.next_window(timeout=0.01) is None
    feeder = threading.Timer(0.01, lambda: ring.append(block(0, 10)))
    feeder.start()
    window = cutter.next_window(timeout=5.0)
    feeder.join()
    assert window is not None and window.seq == 0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="hop 0"):
        WindowCutter(RingBuffer(10), window=4, hop=0)


def test_producer_and_consumer_threads_get_only_contiguous_windows() -> None:
    ring = RingBuffer(600)  # small enough that the consumer sometimes falls behind
    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 80, size=3000)
    gaps = rng.random(3000) < 0.01
    done = threading.Event()
    windows = []

    def produce() -> None:
        number = 0
        for size, gap in zip(sizes, gaps, strict=True):
            if gap:
                number += 7  # seven samples never arrive
            ring.append(block(number, int(size), gap=bool(gap)))
            number += int(size)
        done.set()

    def consume() -> None:
        cutter = WindowCutter(ring, window=100, hop=30, decimation=1)
        while True:
            window = cutter.next_window(timeout=0.05)
            if window is not None:
                windows.append(window)
            elif done.is_set() and cutter.poll() is None:
                return

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(windows) > 100
    for w in windows:
        steps = np.diff(w.timestamps)
        assert np.all(steps > 0)
        np.testing.assert_allclose(steps, PERIOD, rtol=1e-6)
        np.testing.assert_array_equal(np.diff(w.samples[:, 0]), np.ones(99))
        assert w.t_end - w.t_start == pytest.approx(99 * PERIOD)


@pytest.mark.parametrize("decimation", [1, 3])
def test_the_next_window_end_is_the_last_raw_sample_of_the_next_window(decimation) -> None:
    ring = RingBuffer(4000)
    cutter = WindowCutter(ring, window=20, hop=7, decimation=decimation)
    expected = cutter.next_window_end_seq()
    assert expected == 20 * decimation - 1  # from the ring's start
    first = 0
    for size in [5, 13, 1, 40, 9, 33, 2, 60] * 3:
        ring.append(block(first, size))
        first += size
        while (window := cutter.poll()) is not None:
            assert window.seq + 20 * decimation - 1 == expected
            expected = cutter.next_window_end_seq()
    assert expected > first - 1  # the next window is not in the ring yet


@pytest.mark.parametrize("decimation", [1, 3])
def test_the_window_end_after_the_newest_sample_skips_windows_not_cut_yet(decimation) -> None:
    # The sensor thread asks right after appending, before the window thread has cut.
    ring = RingBuffer(4000)
    cutter = WindowCutter(ring, window=20, hop=7, decimation=decimation)
    k = decimation
    assert cutter.window_end_after(0) == 20 * k - 1  # nothing cut, nothing past the first
    ring.append(block(0, 40 * k))  # windows ending at model samples 19, 26, 33 are in it
    assert cutter.next_window_end_seq() == 20 * k - 1  # the window thread has not cut
    assert cutter.window_end_after(40 * k - 1) == 41 * k - 1  # the window ending at 40
    assert cutter.window_end_after(26 * k - 1) == 27 * k - 1  # 26 is still to come
    cut = all_windows(cutter)
    assert [w.seq + 20 * k - 1 for w in cut] == [20 * k - 1, 27 * k - 1, 34 * k - 1]
    assert cutter.next_window_end_seq() == cutter.window_end_after(40 * k - 1)


def test_the_next_window_end_seen_from_another_thread_is_never_half_updated() -> None:
    # The sensor thread asks at any moment, between any two of the window thread's steps:
    # every answer must be an end the cutter holds before or after a poll, never one worked
    # out from arrays and a cursor of which only some were replaced.
    ring = RingBuffer(4000)
    cutter = WindowCutter(ring, window=20, hop=7, decimation=3)
    seen: list[int | None] = []

    def between_steps(frame, event, arg):
        if frame.f_code.co_filename != windows_module.__file__:
            return None
        if event == "line":
            seen.append(cutter.next_window_end_seq())
        return between_steps

    first = 0
    for size in [5, 13, 1, 40, 9, 33, 2, 60] * 4:
        ring.append(block(first, size))
        first += size
        ends = {cutter.next_window_end_seq()}
        start = len(seen)
        sys.settrace(between_steps)
        try:
            while (window := cutter.poll()) is not None:
                ends.add(window.seq + 20 * 3 - 1)
        finally:
            sys.settrace(None)
        ends.add(cutter.next_window_end_seq())
        assert len(seen) > start
        odd = [answer for answer in seen[start:] if answer not in ends]
        assert not odd, f"after sample {first - 1}: {odd} not in {sorted(ends)}"


def test_restart_at_a_press_skips_samples_taken_before_it() -> None:
    # Samples 30..34 were still in the sensor's FIFO at the press (time of sample 35): they
    # reach the ring after it, numbered after the press's write sequence, yet come before it.
    ring = RingBuffer(100)
    ring.append(block(0, 30))
    cutter = WindowCutter(ring, window=10, hop=10)
    cutter.restart(ring.write_seq, not_before=35 * PERIOD)
    ring.append(block(30, 20))
    window = cutter.poll()
    assert window is not None and window.seq == 35 and window.t_start >= 35 * PERIOD
    np.testing.assert_array_equal(window.samples[:, 0], np.arange(35, 45))
    assert cutter.poll() is None


def test_restart_at_a_press_with_decimation_counts_blocks_from_the_first_sample_kept() -> None:
    ring = RingBuffer(100)
    cutter = WindowCutter(ring, window=4, hop=4, decimation=2)
    cutter.restart(0, not_before=3 * PERIOD)
    ring.append(block(0, 20))
    window = cutter.poll()
    assert window is not None and window.seq == 3
    np.testing.assert_allclose(window.samples[:, 0], [3.5, 5.5, 7.5, 9.5])
