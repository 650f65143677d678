"""Delivered samples against the emulated chip's ground truth: which were really sampled by
the chip, in order, and settled; which the chip sampled but nobody delivered.

A delivered sample is converted back to raw counts and looked up among the chip's samples
after the last one matched: a frame read out of alignment (bytes of two frames) matches no
sample the chip took, an unsettled one matches a sample the truth marks unsettled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odar.drivers.emulated.mpu6050 import GroundTruth


@dataclass(frozen=True)
class TruthComparison:
    """Per delivered sample (in delivery order): ``truth_index`` (-1: no such sample was
    taken: misaligned or garbled), ``settling`` (the chip was still settling); and the
    samples the chip took between the first and last match that were not delivered."""

    truth_index: np.ndarray
    settling: np.ndarray
    not_delivered: int
    time_error_s: np.ndarray  # delivered timestamp minus the chip's sampling instant

    @property
    def misaligned(self) -> np.ndarray:
        return self.truth_index < 0

    def summary(self) -> dict[str, float | int]:
        errors = self.time_error_s
        return {
            "samples_compared": int(self.truth_index.size),
            "samples_misaligned": int(np.count_nonzero(self.misaligned)),
            "samples_settling": int(np.count_nonzero(self.settling)),
            "samples_not_delivered": int(self.not_delivered),
            "timestamp_error_mean_ms": float(errors.mean() * 1e3) if errors.size else 0.0,
            "timestamp_error_p99_abs_ms": (
                float(np.percentile(np.abs(errors), 99) * 1e3) if errors.size else 0.0
            ),
        }


def compare_with_truth(
    truth: GroundTruth, delivered_raw: np.ndarray, delivered_times: np.ndarray
) -> TruthComparison:
    """Match (m, 6) raw counts, delivered in order, with the chip's record."""
    times, raw, settled = truth.arrays()
    raw = np.ascontiguousarray(raw, dtype=np.int16)
    delivered_raw = np.ascontiguousarray(delivered_raw, dtype=np.int16)
    m, n = delivered_raw.shape[0], raw.shape[0]
    matched = np.full(m, -1, dtype=np.int64)
    next_truth = 0
    i = 0
    while i < m and next_truth < n:
        start = _find(raw, delivered_raw[i], next_truth)
        if start < 0:
            i += 1  # taken by no one: bytes of two frames, or garbage
            continue
        # A continuous stretch matches the truth row for row.
        run = min(m - i, n - start)
        same = np.all(delivered_raw[i : i + run] == raw[start : start + run], axis=1)
        length = run if same.all() else int(np.argmin(same))
        matched[i : i + length] = np.arange(start, start + length)
        next_truth = start + length
        i += length
    hits = matched[matched >= 0]
    settling = np.zeros(m, dtype=bool)
    settling[matched >= 0] = ~settled[hits]
    span = int(hits[-1] - hits[0] + 1) if hits.size else 0
    time_error = delivered_times[matched >= 0] - times[hits]
    return TruthComparison(matched, settling, span - int(hits.size), time_error)


def _find(raw: np.ndarray, row: np.ndarray, start: int, chunk: int = 65536) -> int:
    """Index of the first truth row equal to ``row`` at or after ``start``, or -1."""
    while start < raw.shape[0]:
        equal = np.flatnonzero(np.all(raw[start : start + chunk] == row, axis=1))
        if equal.size:
            return start + int(equal[0])
        start += chunk
    return -1


def to_raw(samples: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """SI samples (as the driver delivers them) back to raw int16 counts."""
    return np.rint(np.asarray(samples, dtype=np.float64) / scale).astype(np.int16)
