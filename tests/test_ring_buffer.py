"""The ring buffer: exact contents, wrap-around, gap marks, overwrite, producer vs consumer."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from odar.drivers.mpu6050 import SensorBlock
from odar.ring_buffer import RingBuffer

PERIOD = 0.001


def block(first_seq: int, count: int, gap: bool = False, lost: int = 0) -> SensorBlock:
    """Samples whose every channel holds seq*10+channel and whose time is seq*PERIOD."""
    seqs = np.arange(first_seq, first_seq + count)
    samples = (seqs[:, None] * 10 + np.arange(6)[None, :]).astype(np.float32)
    return SensorBlock(seqs * PERIOD, samples, lost, gap)


def test_reads_back_exactly_what_was_appended() -> None:
    ring = RingBuffer(16)
    ring.append(block(0, 5))
    ring.append(block(5, 3))
    assert ring.write_seq == 8
    piece = ring.read(0)
    assert piece.start_seq == 0 and len(piece) == 8 and piece.missed == 0
    np.testing.assert_array_equal(piece.samples, block(0, 8).samples)
    np.testing.assert_array_equal(piece.timestamps, block(0, 8).timestamps)
    assert piece.samples.dtype == np.float32 and piece.timestamps.dtype == np.float64
    assert not piece.gap_before.any()
    tail = ring.read(6, max_count=1)
    assert tail.start_seq == 6 and len(tail) == 1 and tail.samples[0, 0] == 60


def test_wraps_around_the_end_of_the_storage() -> None:
    ring = RingBuffer(10)
    ring.append(block(0, 7))
    ring.append(block(7, 7))  # positions 7, 8, 9, then 0..3
    piece = ring.read(4)
    assert piece.start_seq == 4 and piece.missed == 0
    np.testing.assert_array_equal(piece.samples, block(4, 10).samples)
    np.testing.assert_array_equal(piece.timestamps, block(4, 10).timestamps)


def test_gap_marks_the_first_sample_of_a_gap_block() -> None:
    ring = RingBuffer(32)
    ring.append(block(0, 4))
    ring.append(block(10, 4, gap=True, lost=6))
    ring.append(block(14, 4))
    marks = ring.read(0).gap_before
    assert marks.tolist() == [False] * 4 + [True] + [False] * 7


def test_an_empty_gap_block_marks_the_next_sample() -> None:
    ring = RingBuffer(32)
    ring.append(block(0, 3))
    ring.append(SensorBlock.empty(lost=5, gap=True))
    ring.append(block(8, 2))
    assert ring.read(0).gap_before.tolist() == [False, False, False, True, False]


def test_a_lagging_consumer_is_told_what_it_missed() -> None:
    ring = RingBuffer(10)
    for first in range(0, 25, 5):
        ring.append(block(first, 5))
    piece = ring.read(0)
    assert piece.missed == 15 and piece.start_seq == 15 and len(piece) == 10
    assert piece.gap_before[0] and not piece.gap_before[1:].any()
    np.testing.assert_array_equal(piece.samples, block(15, 10).samples)
    assert ring.overwritten == 15
    assert ring.oldest_seq == 15


def test_a_block_larger_than_the_ring_keeps_its_tail_and_numbers() -> None:
    ring = RingBuffer(10)
    ring.append(block(0, 25))
    assert ring.write_seq == 25
    piece = ring.read(0)
    assert piece.start_seq == 15 and piece.missed == 15
    np.testing.assert_array_equal(piece.samples, block(15, 10).samples)


def test_samples_the_producer_is_writing_over_are_never_returned() -> None:
    ring = RingBuffer(10)
    ring.append(block(0, 10))
    # A producer has reserved 4 more samples (overwriting seqs 0-3) and not committed yet.
    ring._reserved += 4
    piece = ring.read(0)
    assert piece.start_seq == 4 and piece.missed == 4 and piece.gap_before[0]
    np.testing.assert_array_equal(piece.samples, block(4, 6).samples)


def test_wait_for_times_out_then_wakes_on_append() -> None:
    ring = RingBuffer(8)
    assert ring.wait_for(1, timeout=0.01) is False
    producer = threading.Timer(0.01, lambda: ring.append(block(0, 2)))
    producer.start()
    assert ring.wait_for(2, timeout=5.0) is True
    producer.join()


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity 0"):
        RingBuffer(0)


def test_producer_and_consumer_threads_never_see_torn_or_reordered_data() -> None:
    ring = RingBuffer(256)
    total = 150_000
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 60, size=total)
    done = threading.Event()
    problems: list[str] = []
    seen = {"samples": 0, "missed": 0}

    def produce() -> None:
        first = 0
        for size in sizes:
            size = int(min(size, total - first))
            if size <= 0:
                break
            ring.append(block(first, size))
            first += size
        done.set()

    def consume() -> None:
        next_seq = 0
        while True:
            finished = done.is_set()
            piece = ring.read(next_seq, max_count=int(rng.integers(1, 300)))
            seen["missed"] += piece.missed
            if len(piece):
                seqs = np.arange(piece.start_seq, piece.end_seq)
                if not np.array_equal(piece.samples[:, 0], seqs * 10.0):
                    problems.append(f"samples at {piece.start_seq} are not their seqs")
                if not np.allclose(np.diff(piece.timestamps), PERIOD):
                    problems.append(f"timestamps at {piece.start_seq} are not one period apart")
                if not np.array_equal(
                    piece.samples[:, 5] - piece.samples[:, 0], np.full(len(piece), 5.0)
                ):
                    problems.append(f"a torn sample at {piece.start_seq}")
                seen["samples"] += len(piece)
            next_seq = piece.end_seq
            if finished and next_seq >= ring.write_seq:
                return

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not problems, problems[:5]
    assert seen["samples"] + seen["missed"] == total
    assert seen["missed"] == ring.overwritten
