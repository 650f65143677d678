"""Gap-free, fixed-length windows cut from the ring buffer, decimated to the model's rate.

A window never spans a gap: after one, cutting starts again at the first sample after it.
With ``decimation`` k > 1 each model sample is the mean of k consecutive sensor samples
(1 kHz sensor, 100 Hz model), blocks counted from the start of the gap-free run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from odar.ring_buffer import RingBuffer


@dataclass(frozen=True)
class Window:
    """``samples`` (window, channels) float32 and their ``timestamps`` (the mean of each
    decimation block); ``t_start``/``t_end`` are the first and last sensor samples' times and
    ``seq`` the ring sequence number of the first."""

    samples: np.ndarray
    timestamps: np.ndarray
    t_start: float
    t_end: float
    seq: int


class WindowCutter:
    """Hands out windows of ``window`` model samples every ``hop`` model samples.

    ``hop`` defaults to half a window. Reading starts at ``start_seq`` (default: the oldest
    sample the ring holds); :meth:`restart` jumps to now. One consumer thread.
    """

    def __init__(
        self,
        ring: RingBuffer,
        window: int = 400,
        hop: int | None = None,
        decimation: int = 1,
        start_seq: int | None = None,
    ) -> None:
        hop = window // 2 if hop is None else hop
        if window <= 0 or hop <= 0 or decimation <= 0:
            raise ValueError(
                f"window cutter: window {window}, hop {hop} and decimation {decimation} "
                "must all be > 0"
            )
        self.ring = ring
        self.window = window
        self.hop = hop
        self.decimation = decimation
        self._fetch_max = max(ring.capacity // 2, 1)
        self.restart(ring.oldest_seq if start_seq is None else start_seq)

    def restart(self, seq: int | None = None, not_before: float | None = None) -> None:
        """Forget buffered samples and cut from ``seq`` (default: the next sample written),
        skipping samples taken before the time ``not_before``: samples still in the sensor's
        FIFO at a press reach the ring after it, with their own (earlier) times."""
        self._next_seq = self.ring.write_seq if seq is None else seq
        self._not_before = not_before
        self._clear_run()
        self._publish_next_window_end()

    def poll(self) -> Window | None:
        """The next window if the ring already holds it, else None; never blocks."""
        while True:
            window = self._take_window()
            if window is not None:
                self._publish_next_window_end()
                return window
            fetched = self._fetch()
            self._publish_next_window_end()
            if not fetched:
                return None

    def next_window_end_seq(self) -> int:
        """Ring sequence number of the next window's last raw sample, if no gap comes first.

        A hint for the sensor reader's schedule, safe to call from its thread: one number the
        window thread replaces whole once its cutting is done. Worked out from the run's
        arrays and cursor while the window thread changes them one by one, it was now and
        then off by a window (seen at 400 Hz: a window read skipped, the window ~110 ms late).
        """
        return self._next_window_end

    def _publish_next_window_end(self) -> None:
        last_model = self._cursor + self.window - 1
        k = self.decimation
        if last_model < self._run_seqs.shape[0]:
            self._next_window_end = int(self._run_seqs[last_model]) + k - 1
            return
        # Model samples past the run start at the first raw sample not yet averaged.
        beyond = last_model - self._run_seqs.shape[0]
        self._next_window_end = self._raw_first_seq + (beyond + 1) * k - 1

    def window_end_after(self, seq: int) -> int:
        """Ring sequence number of the last raw sample of the first window that ends after
        ``seq`` (the newest sample read), if no gap comes first.

        The next window's end, or, where the window thread has not yet cut that window (its
        last sample is already in the ring), the end a whole number of hops later: windows in
        a gap-free run end ``hop`` model samples apart. Safe to call from the sensor thread,
        as :meth:`next_window_end_seq`.
        """
        end = self._next_window_end
        if end > seq:
            return end
        step = self.hop * self.decimation
        return end + ((seq - end) // step + 1) * step

    def next_window(self, timeout: float | None = None) -> Window | None:
        """The next window, waiting up to ``timeout`` seconds for the producer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            window = self.poll()
            if window is not None:
                return window
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if not self.ring.wait_for(self._next_seq + 1, remaining):
                return None

    # -- the run of gap-free, decimated samples ---------------------------------------------

    def _clear_run(self) -> None:
        channels = self.ring.channels
        self._raw_samples = np.empty((0, channels), dtype=np.float32)
        self._raw_times = np.empty(0, dtype=np.float64)
        self._raw_first_seq = self._next_seq
        self._run_samples = np.empty((0, channels), dtype=np.float32)
        self._run_times = np.empty(0, dtype=np.float64)
        self._run_first_times = np.empty(0, dtype=np.float64)
        self._run_last_times = np.empty(0, dtype=np.float64)
        self._run_seqs = np.empty(0, dtype=np.int64)
        self._cursor = 0

    def _fetch(self) -> bool:
        """Move new ring samples, up to the next gap, into the run; False when none came."""
        piece = self.ring.read(self._next_seq, self._fetch_max)
        if len(piece) == 0:
            if piece.missed:  # all overwritten: nothing to cut, but the run is broken
                self._next_seq = piece.start_seq
                self._clear_run()
            return piece.missed > 0
        # Stop at the next gap so that windows before it are cut before the run is dropped.
        later_gaps = np.flatnonzero(piece.gap_before[1:])
        count = int(later_gaps[0]) + 1 if later_gaps.size else len(piece)
        if piece.gap_before[0]:
            self._next_seq = piece.start_seq
            self._clear_run()
        self._next_seq = piece.start_seq + count
        samples, times = piece.samples[:count], piece.timestamps[:count]
        if self._not_before is not None:
            later = np.flatnonzero(times >= self._not_before)
            skip = int(later[0]) if later.size else count
            samples, times = samples[skip:], times[skip:]
            # Nothing is kept before the first sample at or after the time: the run is empty.
            self._raw_first_seq = piece.start_seq + skip
            if later.size:
                self._not_before = None
        if len(times):
            self._extend(samples, times)
        return True

    def _extend(self, samples: np.ndarray, times: np.ndarray) -> None:
        if self._raw_samples.shape[0] == 0:
            raw_samples, raw_times = samples, times
        else:
            raw_samples = np.concatenate([self._raw_samples, samples])
            raw_times = np.concatenate([self._raw_times, times])
        k = self.decimation
        whole = (raw_samples.shape[0] // k) * k
        if whole:
            blocks = raw_samples[:whole].reshape(-1, k, raw_samples.shape[1])
            block_times = raw_times[:whole].reshape(-1, k)
            self._run_samples = np.concatenate(
                [self._run_samples, blocks.mean(axis=1, dtype=np.float64).astype(np.float32)]
            )
            self._run_times = np.concatenate([self._run_times, block_times.mean(axis=1)])
            self._run_first_times = np.concatenate([self._run_first_times, block_times[:, 0]])
            self._run_last_times = np.concatenate([self._run_last_times, block_times[:, -1]])
            seqs = self._raw_first_seq + np.arange(0, whole, k, dtype=np.int64)
            self._run_seqs = np.concatenate([self._run_seqs, seqs])
        self._raw_samples = raw_samples[whole:].copy()
        self._raw_times = raw_times[whole:].copy()
        self._raw_first_seq += whole

    def _take_window(self) -> Window | None:
        start, end = self._cursor, self._cursor + self.window
        if self._run_samples.shape[0] < end:
            return None
        window = Window(
            samples=self._run_samples[start:end].copy(),
            timestamps=self._run_times[start:end].copy(),
            t_start=float(self._run_first_times[start]),
            t_end=float(self._run_last_times[end - 1]),
            seq=int(self._run_seqs[start]),
        )
        self._cursor += self.hop
        self._drop_consumed()
        return window

    def _drop_consumed(self) -> None:
        """Forget model samples no future window can start at or contain."""
        drop = min(self._cursor, self._run_samples.shape[0])
        if drop < self.window:  # not worth a copy yet
            return
        self._run_samples = self._run_samples[drop:]
        self._run_times = self._run_times[drop:]
        self._run_first_times = self._run_first_times[drop:]
        self._run_last_times = self._run_last_times[drop:]
        self._run_seqs = self._run_seqs[drop:]
        self._cursor -= drop
