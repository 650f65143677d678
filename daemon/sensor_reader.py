"""The daemon's sensor read cadence: reads on a fixed grid that keeps the FIFO well below full,
moved so that a read comes just after each window's last sample is due.

Sleeping a whole poll interval after each read (the loop this replaces) lets every late read
push the next one later: at 1 kHz the FIFO then held 77 of its 85 samples at each read, and a
chip 5 % fast or one read 10 ms late overflowed it. Here reads are planned on the clock:

* the grid: one read every ``sensor.poll_interval_s`` (the driver's fill target for its part's
  FIFO, for a chip 10 % fast), counted from the planned time, not from when the last read
  ended, and the first from when the FIFO began to fill (``sensor.fifo_filling_since``), not
  from when the sensor thread began; a late read is followed by the next planned one, never
  by a burst of catch-up reads;
* window ends: when the last sample of the first window to end after the newest sample read
  is due (from the ring's sequence numbers, the last timestamp and the chip's measured rate;
  the window thread may not have cut the window before it yet), a read comes
  ``WINDOW_READ_MARGIN_S`` plus half a period after it, reading the count first (``exact``)
  so that sample is in it. The
  grid before it is spaced evenly (never wider than the fill target) so that its last read
  (the pre-read) *ends* ``PRE_READ_MARGIN_S`` before the window's end, keeping the window-end
  read short on the bus. The window is then cut soon after its last sample, with one extra
  wake-up a hop.

A read is not instant: at 1 kHz and 400 kHz a grid read of ~50 frames is ~14 ms on the wire
alone. A pre-read that *started* 16 samples before the window's end (as first built) ended
after it, and the window read then carried the ~30 frames that came meanwhile (~8 ms more on
the wire, measured with ``odar bench daemon --stages``). So the reader learns what its reads
cost per sample (the median of its recent plain reads: wire, transactions, host) and starts
the pre-read early enough for it to end in time. And as each read carries what came while the
one before was on the wire, a second pre-read back to back (where the first would leave it at
least the margin's samples, and at least ``MIN_SECOND_PRE_READ_SAMPLES``) leaves the window read
~12 samples at 1 kHz instead of ~20-25.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from odar.drivers.clock import Clock
from odar.drivers.mpu6050 import SensorBlock

#: After a window's last sample is due: room for the frame to be written and host jitter.
WINDOW_READ_MARGIN_S = 0.0015
#: The last pre-read ends this long before the window read: room for it to end a little late
#: (host lateness is time, whatever the rate). The window read then carries the samples of
#: this span (8 at 1 kHz: ~2.2 ms on a 400 kHz wire, which is window-to-motor latency) and
#: those that came while the pre-read was on the wire. (As a count of 8 samples it was 20 ms
#: at 400 Hz and 80 ms at 100 Hz.)
PRE_READ_MARGIN_S = 0.008
#: Reads whose cost per sample is learnt: plain (not exact) reads of at least this many
#: samples (smaller ones are mostly per-transaction overhead) ...
COST_MIN_SAMPLES = 8
#: ... the median of this many of the latest (a stalled read does not move it).
COST_READS = 15
#: A second pre-read, back to back with the first, when the first would leave at least
#: the margin's samples for it: each read carries the samples that came during the one before
#: (at 1 kHz and 400 kHz ~0.3 of them), so the window read carries ~0.3 x fewer again.
MAX_PRE_READS = 2
#: ... and at least this many: fewer (~1 ms on a 400 kHz wire) are not worth a transaction.
#: At 100 Hz, read every half second, a second pre-read would take ~1.5 samples (0.4 ms) off
#: the window read for 5 more bus bytes a window, 0.1 a sample.
MIN_SECOND_PRE_READ_SAMPLES = 4.0
#: Reads closer together than this are merged into the earlier one.
MIN_READ_SPACING_S = 0.002
#: A window read that did not find the window's last sample (the chip slower than measured,
#: or stopped: a silent reset) is tried again after this many sample periods, not at once:
#: a stopped chip would otherwise be read back to back, as fast as the bus allows.
WINDOW_RETRY_PERIODS = 2


class Sensor(Protocol):
    """What the reader needs of the driver (:class:`odar.drivers.mpu6050.MPU6050`)."""

    @property
    def poll_interval_s(self) -> float: ...

    @property
    def measured_rate_hz(self) -> float: ...

    @property
    def last_timestamp(self) -> float | None: ...

    @property
    def fifo_filling_since(self) -> float | None: ...

    def read(self, exact: bool = False) -> SensorBlock: ...


class Ring(Protocol):
    @property
    def write_seq(self) -> int: ...

    def append(self, block: Any) -> None: ...


@dataclass(frozen=True)
class PlannedRead:
    at: float
    exact: bool
    reason: str  # "grid", "pre-read" or "window"
    #: The ring sequence number of the window end a pre-read or window read is for.
    window_end: int | None = None


class SensorReader:
    """Reads ``sensor`` into ``ring`` on the plan above. ``window_end_after(seq)`` returns the
    ring sequence number of the last sample of the first window that ends after ``seq``, the
    newest sample read (None: no window is pending). It must not wait for the window thread
    to cut the window before: the next read is planned as soon as a read is appended, and a
    window end already read would leave that plan on the grid, past the next window's end
    (:meth:`odar.windows.WindowCutter.window_end_after`)."""

    def __init__(
        self,
        sensor: Sensor,
        ring: Ring,
        clock: Clock,
        *,
        window_end_after: Callable[[int], int | None] | None = None,
    ) -> None:
        self.sensor = sensor
        self.ring = ring
        self.clock = clock
        self.window_end_after = window_end_after
        self.reads = {"grid": 0, "pre-read": 0, "window": 0}
        now = clock.monotonic()
        # The grid counts from when the FIFO began to fill, not from when this thread got
        # here: under load the thread may start a good part of the FIFO's time after it.
        filling_since = sensor.fifo_filling_since
        self._grid_from = now if filling_since is None else min(now, filling_since)
        self._last_read_at = self._grid_from
        self._planned: PlannedRead | None = None
        # The window end the last window read was for, and the one the last plan aimed at.
        self._window_end_read: int | None = None
        self._window_end_planned: int | None = None
        self._last_read: PlannedRead | None = None
        self._pre_reads_planned = 1
        self._pre_reads_done = 0
        self._seconds_per_sample: deque[float] = deque(maxlen=COST_READS)

    @property
    def read_seconds_per_sample(self) -> float:
        """What a plain read has cost per sample lately, from start to return (0: not known)."""
        return statistics.median(self._seconds_per_sample) if self._seconds_per_sample else 0.0

    def plan(self, now: float) -> PlannedRead:
        """The next read after a read that ended at ``now``."""
        interval = self.sensor.poll_interval_s
        if interval <= 0:  # the driver is recovering and paces itself
            return PlannedRead(now, False, "grid")
        grid = PlannedRead(max(self._grid_from + interval, now), False, "grid")
        window_read = self._window_read_at()
        if window_read is None:
            return grid
        rate = self.sensor.measured_rate_hz
        pre_read_end = window_read - PRE_READ_MARGIN_S
        ahead = pre_read_end - self._grid_from
        end = self._window_end_planned
        last = self._last_read
        if last is not None and last.reason == "pre-read" and last.window_end == end:
            if self._pre_reads_done < self._pre_reads_planned:
                return PlannedRead(now, False, "pre-read", end)  # the next, back to back
            pre_read_done = True
        else:
            pre_read_done = False
        if pre_read_done or ahead < MIN_READ_SPACING_S:
            # The pre-read (or a grid read) was just done: now the window's end itself.
            at = max(window_read, now)
            if end == self._window_end_read:
                retry = WINDOW_RETRY_PERIODS / self.sensor.measured_rate_hz
                at = max(at, self._last_read_at + max(MIN_READ_SPACING_S, retry))
            if at > grid.at:
                # Never past the FIFO's fill target (a window end that moved on: a new run).
                return grid
            return PlannedRead(at, True, "window", end)
        # Space the grid evenly so that its last read before the window is the pre-read.
        reads = math.ceil(ahead / interval - 1e-9)
        if reads > 1:
            return PlannedRead(max(self._grid_from + ahead / reads, now), False, "grid")
        # The pre-reads start early enough to end on time: the first carries the samples since
        # the last read began, (at - grid_from) * rate, at its cost per sample q / rate; each
        # next one (back to back) q times the one before. k reads take (q + ... + q^k) times
        # (at - grid_from).
        q = self.read_seconds_per_sample * rate
        second_carries = q * ahead * rate / (1.0 + q)
        worth = max(MIN_SECOND_PRE_READ_SAMPLES, PRE_READ_MARGIN_S * rate)
        self._pre_reads_planned = MAX_PRE_READS if second_carries >= worth else 1
        spread = sum(q**k for k in range(1, self._pre_reads_planned + 1))
        at = self._grid_from + ahead / (1.0 + spread)
        return PlannedRead(max(at, now), False, "pre-read", end)

    def _window_read_at(self) -> float | None:
        if self.window_end_after is None:
            return None
        newest = self.ring.write_seq - 1
        end = self.window_end_after(newest)
        self._window_end_planned = end
        last = self.sensor.last_timestamp
        if end is None or last is None:
            return None
        ahead = end - newest  # samples after the newest delivered
        if ahead <= 0:
            return None
        period = 1.0 / self.sensor.measured_rate_hz
        return last + ahead * period + 0.5 * period + WINDOW_READ_MARGIN_S

    def step(self) -> SensorBlock:
        """Wait for the planned read, do it, append the block, plan the next one."""
        planned = self._planned or self.plan(self.clock.monotonic())
        wait = planned.at - self.clock.monotonic()
        if wait > 0:
            self.clock.sleep(wait)
        started = self.clock.monotonic()
        block = self.sensor.read(exact=planned.exact)
        if not planned.exact and len(block) >= COST_MIN_SAMPLES:
            self._seconds_per_sample.append((self.clock.monotonic() - started) / len(block))
        if len(block) or block.gap:
            self.ring.append(block)
        self.reads[planned.reason] += 1
        if planned.reason == "pre-read":
            last = self._last_read
            same = (
                last is not None
                and last.reason == "pre-read"
                and last.window_end == planned.window_end
            )
            self._pre_reads_done = self._pre_reads_done + 1 if same else 1
        self._last_read = planned
        self._window_end_read = self._window_end_planned if planned.reason == "window" else None
        self._last_read_at = started
        # The grid counts from the planned time unless the read began much later.
        self._grid_from = planned.at if started - planned.at < MIN_READ_SPACING_S else started
        self._planned = self.plan(self.clock.monotonic())
        return block

    def run(
        self, halt: threading.Event, after_read: Callable[[SensorBlock], None] | None = None
    ) -> None:
        """Read until ``halt`` is set; ``after_read`` sees every block (the watchdog)."""
        while not halt.is_set():
            block = self.step()
            if after_read is not None:
                after_read(block)
