"""Loading the HHAR data set (Heterogeneity Human Activity Recognition) into labelled windows.

Files: ``Phones_accelerometer.csv`` and ``Phones_gyroscope.csv`` (or ``Watch_*``), columns
``Index, Arrival_Time, Creation_Time, x, y, z, User, Model, Device, gt``. Accelerometer
(m/s^2) and gyroscope (rad/s) rows are separate, at the device's own rate (about 50-200 Hz),
so per (user, device): join the two on ``Creation_Time`` (nanoseconds), resample both to one
uniform rate, split where either sensor has a gap or the label changes, cut windows.
numpy and the standard library only: the tests run it in the device venv.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odar.errors import DatasetError

COLUMNS = ("Index", "Arrival_Time", "Creation_Time", "x", "y", "z", "User", "Model", "Device", "gt")
ACTIVITIES = ("bike", "sit", "stand", "walk", "stairsup", "stairsdown")
UNLABELLED = ("null", "")
#: a pause longer than this in either sensor's stream splits a recording
MAX_GAP_S = 0.1


@dataclass(frozen=True)
class Stream:
    """One sensor of one (user, device), sorted by time."""

    times_s: np.ndarray  # (n,) float64
    xyz: np.ndarray  # (n, 3) float64
    labels: np.ndarray  # (n,) str


def read_sensor_csv(path: str | Path) -> dict[tuple[str, str], Stream]:
    """One HHAR sensor file -> {(user, device): Stream}."""
    path = Path(path)
    columns: dict[tuple[str, str], list[list]] = defaultdict(lambda: [[], [], []])
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise DatasetError(f"{path}: header {header} is not HHAR's {list(COLUMNS)}")
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(COLUMNS):
                raise DatasetError(f"{path}:{line_number}: {len(row)} fields, expected 10")
            try:
                time_s = int(row[2]) / 1e9
                xyz = (float(row[3]), float(row[4]), float(row[5]))
            except ValueError as error:
                raise DatasetError(f"{path}:{line_number}: {error}") from error
            times, values, labels = columns[(row[6], row[8])]
            times.append(time_s)
            values.append(xyz)
            labels.append(row[9])
    streams = {}
    for key, (times, values, labels) in columns.items():
        order = np.argsort(np.asarray(times), kind="stable")
        streams[key] = Stream(
            times_s=np.asarray(times)[order],
            xyz=np.asarray(values, dtype=np.float64)[order],
            labels=np.asarray(labels)[order],
        )
    return streams


def _segments(times: np.ndarray, max_gap_s: float) -> list[tuple[float, float]]:
    """Spans of a stream without a gap longer than ``max_gap_s``."""
    if len(times) < 2:
        return []
    breaks = np.flatnonzero(np.diff(times) > max_gap_s)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(times) - 1]])
    return [(times[s], times[e]) for s, e in zip(starts, ends, strict=True) if e > s]


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]):
    for a0, a1 in a:
        for b0, b1 in b:
            start, end = max(a0, b0), min(a1, b1)
            if end > start:
                yield start, end


def join_and_resample(
    accel: Stream, gyro: Stream, rate_hz: float, max_gap_s: float = MAX_GAP_S
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Both sensors on one uniform time grid: [(samples (n, 6) float32, labels (n,))] per span.

    Values are interpolated linearly; the label of a grid point is the accelerometer's label
    nearest in time. Spans end where either sensor pauses for more than ``max_gap_s``.
    """
    pieces = []
    spans = _overlap(_segments(accel.times_s, max_gap_s), _segments(gyro.times_s, max_gap_s))
    for start, end in spans:
        grid = start + np.arange(int(np.floor((end - start) * rate_hz)) + 1) / rate_hz
        if len(grid) < 2:
            continue
        samples = np.empty((len(grid), 6), dtype=np.float32)
        for axis in range(3):
            samples[:, axis] = np.interp(grid, accel.times_s, accel.xyz[:, axis])
            samples[:, 3 + axis] = np.interp(grid, gyro.times_s, gyro.xyz[:, axis])
        nearest = np.clip(np.searchsorted(accel.times_s, grid), 1, len(accel.times_s) - 1)
        earlier = grid - accel.times_s[nearest - 1] < accel.times_s[nearest] - grid
        nearest = np.where(earlier, nearest - 1, nearest)
        pieces.append((samples, accel.labels[nearest]))
    return pieces


def cut_windows(
    samples: np.ndarray, labels: np.ndarray, window: int, hop: int
) -> tuple[list[np.ndarray], list[str]]:
    """Windows of one label only (a window across a label change is dropped)."""
    windows, window_labels = [], []
    for start in range(0, len(samples) - window + 1, hop):
        span = labels[start : start + window]
        if span[0] in UNLABELLED or not np.all(span == span[0]):
            continue
        windows.append(samples[start : start + window])
        window_labels.append(str(span[0]))
    return windows, window_labels


def load_hhar(
    directory: str | Path,
    rate_hz: float = 100.0,
    window: int = 400,
    hop: int = 200,
    source: str = "Phones",
    activities: tuple[str, ...] = ACTIVITIES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` (m, window, 6) float32 (ax ay az m/s^2, gx gy gz rad/s), ``y`` (m,) index into
    ``activities``, ``users`` (m,) str for splitting by person."""
    directory = Path(directory)
    accel = read_sensor_csv(directory / f"{source}_accelerometer.csv")
    gyro = read_sensor_csv(directory / f"{source}_gyroscope.csv")
    index = {name: i for i, name in enumerate(activities)}
    xs, ys, users = [], [], []
    for key in sorted(set(accel) & set(gyro)):
        for samples, labels in join_and_resample(accel[key], gyro[key], rate_hz):
            windows, names = cut_windows(samples, labels, window, hop)
            for w, name in zip(windows, names, strict=True):
                if name in index:
                    xs.append(w)
                    ys.append(index[name])
                    users.append(key[0])
    if not xs:
        return (
            np.zeros((0, window, 6), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, dtype=str),
        )
    return np.stack(xs), np.asarray(ys, dtype=np.int64), np.asarray(users)
