"""A preallocated ring of sensor samples between the driver thread and the window thread.

Samples are numbered by a sequence number (total written so far); consumers ask for ranges
by number. One producer thread and one consumer thread; the lock is held only to move the
indices, never while copying. The producer first *reserves* the numbers it is about to write,
copies, then *commits* them; a reader copies without the lock and afterwards drops anything
the producer may have reserved over meanwhile (a sequence-lock): it never hands out a torn
sample, and what it drops it reports as overwritten, with a gap mark.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Block(Protocol):
    """What ``append`` takes (``odar.drivers.mpu6050.SensorBlock``)."""

    @property
    def timestamps(self) -> np.ndarray: ...
    @property
    def samples(self) -> np.ndarray: ...
    @property
    def gap(self) -> bool: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class RingSlice:
    """Samples ``start_seq`` .. ``start_seq + len - 1``; ``gap_before[i]`` marks a break in
    the stream just before sample i; ``missed`` samples before ``start_seq`` were overwritten
    before the reader got to them (then ``gap_before[0]`` is set too)."""

    start_seq: int
    samples: np.ndarray
    timestamps: np.ndarray
    gap_before: np.ndarray
    missed: int

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def end_seq(self) -> int:
        return self.start_seq + len(self)


class RingBuffer:
    """``capacity`` samples of ``channels`` float32, with float64 timestamps and gap marks."""

    def __init__(self, capacity: int, channels: int = 6) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError(
                f"ring buffer: capacity {capacity} and channels {channels} must be > 0"
            )
        self.capacity = capacity
        self.channels = channels
        self._samples = np.zeros((capacity, channels), dtype=np.float32)
        self._timestamps = np.zeros(capacity, dtype=np.float64)
        self._gap_before = np.zeros(capacity, dtype=bool)
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        self._committed = 0  # samples fully written
        self._reserved = 0  # samples being written (>= committed)
        self._gap_pending = False
        self._overwritten = 0

    # -- producer -------------------------------------------------------------------------

    def append(self, block: Block) -> None:
        """Copy a block in; a gap on an empty block marks the next sample appended."""
        count = len(block)
        if count == 0:
            if block.gap:
                with self._lock:
                    self._gap_pending = True
            return
        samples = np.asarray(block.samples, dtype=np.float32).reshape(count, self.channels)
        timestamps = np.asarray(block.timestamps, dtype=np.float64)
        gap = bool(block.gap)
        if count > self.capacity:
            # The head would be overwritten by the block's own tail before anyone could read
            # it; a reader asking for it finds it missing and counts it then.
            keep = self.capacity
            samples, timestamps, count, gap = samples[-keep:], timestamps[-keep:], keep, True
            with self._lock:
                self._reserved += len(block) - keep
                self._committed = self._reserved
        with self._lock:
            start = self._reserved
            self._reserved = start + count
            gap = gap or self._gap_pending
            self._gap_pending = False
        first = start % self.capacity
        head = min(count, self.capacity - first)
        self._samples[first : first + head] = samples[:head]
        self._timestamps[first : first + head] = timestamps[:head]
        self._gap_before[first : first + head] = False
        if head < count:
            tail = count - head
            self._samples[:tail] = samples[head:]
            self._timestamps[:tail] = timestamps[head:]
            self._gap_before[:tail] = False
        self._gap_before[first] = gap
        with self._written:
            self._committed = start + count
            self._written.notify_all()

    # -- consumer -------------------------------------------------------------------------

    @property
    def write_seq(self) -> int:
        """Sequence number the next sample will get (= samples written so far)."""
        with self._lock:
            return self._committed

    @property
    def oldest_seq(self) -> int:
        """The oldest sample still held."""
        with self._lock:
            return max(0, self._committed - self.capacity)

    @property
    def overwritten(self) -> int:
        """Samples a reader asked for that had been overwritten before it got to them."""
        with self._lock:
            return self._overwritten

    def read(self, from_seq: int, max_count: int | None = None) -> RingSlice:
        """Copies of the samples from ``from_seq`` on (at most ``max_count``)."""
        with self._lock:
            committed = self._committed
        start = max(from_seq, committed - self.capacity)
        missed = max(0, start - from_seq)
        end = committed if max_count is None else min(committed, start + max_count)
        end = max(start, end)
        positions = np.arange(start, end) % self.capacity
        samples = self._samples[positions]
        timestamps = self._timestamps[positions]
        gap_before = self._gap_before[positions]
        with self._lock:
            reserved = self._reserved
        # Anything the producer reserved over while we copied may be torn: drop it.
        clobbered = min(end, reserved - self.capacity) - start
        if clobbered > 0:
            samples, timestamps = samples[clobbered:], timestamps[clobbered:]
            gap_before = gap_before[clobbered:]
            start += clobbered
            missed += clobbered
        if missed:
            with self._lock:
                self._overwritten += missed
            if gap_before.size:
                gap_before[0] = True
        return RingSlice(start, samples, timestamps, gap_before, missed)

    def wait_for(self, seq: int, timeout: float | None) -> bool:
        """Block until sample ``seq - 1`` is written (``write_seq >= seq``) or ``timeout``."""
        with self._written:
            return self._written.wait_for(lambda: self._committed >= seq, timeout)
