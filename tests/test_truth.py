"""The ground-truth comparison on hand-made records: what it must call misaligned, settling
and not delivered."""

from __future__ import annotations

import numpy as np

from odar.drivers.emulated.mpu6050 import GroundTruth
from odar.drivers.emulated.truth import compare_with_truth


def record(n: int, unsettled: int = 0) -> tuple[GroundTruth, np.ndarray, np.ndarray]:
    truth = GroundTruth()
    times = np.arange(n) * 1e-3
    raw = (np.arange(n * 6).reshape(n, 6) * 7 % 30000).astype(np.int16)
    truth.record(times, raw, np.arange(n) >= unsettled)
    return truth, times, raw


def test_a_clean_stretch_matches_row_for_row_with_the_timestamp_error() -> None:
    truth, times, raw = record(100)
    result = compare_with_truth(truth, raw[10:60], times[10:60] + 0.5e-3)
    assert result.truth_index.tolist() == list(range(10, 60))
    assert not result.misaligned.any() and result.not_delivered == 0
    np.testing.assert_allclose(result.time_error_s, 0.5e-3)


def test_bytes_of_two_frames_match_nothing_and_a_hole_is_not_delivered() -> None:
    truth, _times, raw = record(100)
    shifted = np.frombuffer(raw[20:23].astype(">i2").tobytes()[4:28], dtype=">i2")
    delivered = np.vstack([raw[10:20], shifted.reshape(2, 6).astype(np.int16), raw[30:40]])
    stamps = np.arange(len(delivered)) * 1e-3
    result = compare_with_truth(truth, delivered, stamps)
    assert result.misaligned.tolist() == [False] * 10 + [True] * 2 + [False] * 10
    assert result.not_delivered == 10  # 20..29 between the matched stretches


def test_unsettled_samples_are_flagged() -> None:
    truth, times, raw = record(50, unsettled=5)
    result = compare_with_truth(truth, raw, times)
    assert result.settling.tolist() == [True] * 5 + [False] * 45
    assert result.summary()["samples_settling"] == 5
