"""Window-to-motor latency split into its stages, for ``odar bench daemon --stages``.

The emulated chip keeps its ground truth (when it really took each sample), the emulated bus
a trace of its transactions (issued, the host lateness it injected, ended), and the daemon's
observer hooks say when a block reached the ring buffer, when a window was cut and when the
motor was told. For every inferred window, on the world's clock:

    due          the chip took the window's last sample (truth)
    read issued  the first transaction of the read that delivered it
    read ended   its last transaction returned
    in the ring  the block was appended (the observer's block_read)
    cut          the window thread had cut the window (window_cut)
    decided      bottleneck + head done, the motor told (inferred)

The stages are the differences; ``host_jitter`` is the part of the read the emulated bus
spent being late on purpose (:class:`odar.drivers.emulated.bus.HostJitter`), so
``bus_wire`` the bits on the wire and ``read_host`` the rest of the read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from odar.drivers.emulated.mpu6050 import GroundTruth
from odar.drivers.emulated.truth import compare_with_truth, to_raw
from odar.drivers.mpu6050 import SensorBlock
from odar.windows import Window

#: Stage names in the order they happen, with what each spans.
STAGES = {
    "wait_for_read": "the window's last sample due on the chip's clock -> the read issued",
    "host_jitter": "the emulated host's injected lateness inside that read",
    "bus_wire": "the read's transactions' time on the wire (bits at the bus clock, stalls)",
    "emulator": "the emulated chip's computing (the wearer's motion for the samples due, on "
    "this host's CPU) beyond the wire time it overlaps: a cost of the emulation only, and "
    "about 0 since session 7: the world's clock stands still meanwhile (ScaledClock.paused)",
    "read_host": "the rest of the read: the driver's Python between and around its "
    "transactions, the host's sleep overshoot, waits for the GIL",
    "to_ring": "the read returned -> the block in the ring buffer (decode, stamp, append)",
    "wake_and_cut": "the block in the ring -> the window thread has cut the window",
    "compute": "the window cut -> the motor told (bottleneck, head, detector)",
    "total": "the window's last sample due -> the motor told (what the wearer feels)",
    "total_less_emulation": "total less host_jitter and emulator: the same window "
    "with the chip's work done in silicon and no lateness injected on top of this host's own",
    "timestamp_error": "the window's t_end (the driver's stamp) minus when the sample was due",
}


@dataclass(frozen=True)
class WindowTimes:
    """One inferred window's moments (seconds on the world's clock), arrays over windows."""

    due: np.ndarray
    t_end: np.ndarray
    issued: np.ndarray
    jitter: np.ndarray
    wire: np.ndarray
    emulator: np.ndarray
    ended: np.ndarray
    in_ring: np.ndarray
    cut: np.ndarray
    decided: np.ndarray


def stage_seconds(times: WindowTimes) -> dict[str, np.ndarray]:
    """Each stage's duration per window."""
    return {
        "wait_for_read": times.issued - times.due,
        "host_jitter": times.jitter,
        "bus_wire": times.wire,
        "emulator": times.emulator,
        "read_host": times.ended
        - times.issued
        - times.jitter
        - times.wire
        - times.emulator,
        "to_ring": times.in_ring - times.ended,
        "wake_and_cut": times.cut - times.in_ring,
        "compute": times.decided - times.cut,
        "total": times.decided - times.due,
        "total_less_emulation": times.decided
        - times.due
        - times.jitter
        - times.emulator,
        "timestamp_error": times.t_end - times.due,
    }


def stage_figures(times: WindowTimes) -> dict[str, Any]:
    """p50 / p99 / max in ms of every stage over the windows."""
    figures: dict[str, Any] = {"windows": int(times.due.size)}
    for name, seconds in stage_seconds(times).items():
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        figures[name] = (
            {
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "max_ms": float(ms.max()),
            }
            if ms.size
            else None
        )
    return figures


def read_spans(
    trace: np.ndarray, previous_block_at: np.ndarray, block_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each read that ended in a block appended at ``block_at`` (after the block before it,
    at ``previous_block_at``): its first transaction's issue; its transactions' injected
    lateness, wire time and the emulated devices' computing beyond the wire time; its last
    transaction's end. ``trace`` (n, 5): issued, lateness, wire, computing, ended, in order
    (one thread reads the bus). A read with no transaction traced gives NaN."""
    nan = np.full(block_at.shape, np.nan)
    if not len(trace):
        return nan, nan, nan, nan, nan
    issued, late, wire, computing, ended = trace.T
    first = np.searchsorted(issued, previous_block_at, side="left")
    last = np.searchsorted(ended, block_at, side="right")  # one past the read's last
    some = last > first
    safe_first = np.minimum(first, len(issued) - 1)
    safe_last = np.maximum(last - 1, 0)

    def summed(values: np.ndarray) -> np.ndarray:
        cumulative = np.r_[0.0, np.cumsum(values)]
        return np.where(some, cumulative[last] - cumulative[np.minimum(first, last)], np.nan)

    return (
        np.where(some, issued[safe_first], np.nan),
        summed(late),
        summed(wire),
        summed(np.maximum(computing - wire, 0.0)),
        np.where(some, ended[safe_last], np.nan),
    )


class StageTrace:
    """Collects the moments above while the daemon runs (called on the daemon's threads)."""

    def __init__(self, clock: Any, truth: GroundTruth, bus_trace: list[Any]) -> None:
        self.clock = clock
        self.truth = truth
        self.bus_trace = bus_trace
        self._lock = threading.Lock()
        self._samples: list[np.ndarray] = []
        self._stamps: list[np.ndarray] = []
        self._block_at: list[float] = []
        self._block_sizes: list[int] = []
        self._cut_at: dict[float, float] = {}
        self._inferred: list[tuple[float, float]] = []  # t_end, decided
        #: Every delivered sample against the chip's record, once window_times has run.
        self.truth_summary: dict[str, float | int] | None = None

    def block_read(self, block: SensorBlock) -> None:
        now = self.clock.monotonic()
        if not len(block):
            return
        self._samples.append(block.samples)
        self._stamps.append(block.timestamps)
        self._block_at.append(now)
        self._block_sizes.append(len(block))

    def window_cut(self, window: Window) -> None:
        with self._lock:
            self._cut_at[window.t_end] = self.clock.monotonic()

    def inferred(self, window: Window, decided_at: float) -> None:
        with self._lock:
            self._inferred.append((window.t_end, decided_at))

    def window_times(self, scale: np.ndarray) -> WindowTimes | None:
        """The moments of every inferred window whose last sample the truth knows."""
        if not self._samples or not self._inferred:
            return None
        stamps = np.concatenate(self._stamps)
        comparison = compare_with_truth(
            self.truth, to_raw(np.concatenate(self._samples), scale), stamps
        )
        self.truth_summary = comparison.summary()
        truth_times = self.truth.arrays()[0]
        due_of_sample = np.full(stamps.shape, np.nan)
        matched = comparison.truth_index >= 0
        due_of_sample[matched] = truth_times[comparison.truth_index[matched]]
        sizes = np.asarray(self._block_sizes)
        block_of_sample = np.repeat(np.arange(sizes.size), sizes)
        block_at = np.asarray(self._block_at)
        previous_at = np.r_[-np.inf, block_at[:-1]]
        trace = np.asarray(self.bus_trace, dtype=np.float64).reshape(-1, 5)
        issued, jitter, wire, computing, ended = read_spans(trace, previous_at, block_at)

        order = np.argsort(stamps, kind="stable")
        rows = []
        for t_end, decided in self._inferred:
            at = int(np.searchsorted(stamps[order], t_end))
            if at >= stamps.size or stamps[order[at]] != t_end or t_end not in self._cut_at:
                continue
            sample = int(order[at])
            block = int(block_of_sample[sample])
            row = (
                due_of_sample[sample],
                t_end,
                issued[block],
                jitter[block],
                wire[block],
                computing[block],
                ended[block],
                block_at[block],
                self._cut_at[t_end],
                decided,
            )
            if not np.isnan(row).any():
                rows.append(row)
        columns = np.asarray(rows, dtype=np.float64).reshape(-1, 10).T
        return WindowTimes(*columns)
