"""The HHAR loader on small files in HHAR's exact format, with known answers."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from artifact_builder.hhar import (
    ACTIVITIES,
    COLUMNS,
    cut_windows,
    join_and_resample,
    load_hhar,
    read_sensor_csv,
)

from odar.errors import DatasetError


def write_sensor(path: Path, rows: list[tuple]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for i, (t_ns, x, y, z, user, device, gt) in enumerate(rows):
            writer.writerow([i, t_ns // 1_000_000, t_ns, x, y, z, user, "nexus4", device, gt])


def recording(rate_hz, seconds, start_s, labels, f, user="a", device="nexus4_1", rng=None):
    """Rows whose value is a known function of time: resampling can be checked exactly."""
    rows = []
    n = int(seconds * rate_hz)
    for i in range(n):
        t = start_s + i / rate_hz
        if rng is not None:
            t += rng.uniform(-0.1, 0.1) / rate_hz
        rows.append((int(t * 1e9), *f(t), user, device, labels(t)))
    rng.shuffle(rows) if rng is not None else None  # files are not guaranteed sorted
    return rows


def linear(t):
    return (t, 2 * t, -t)


def test_read_sensor_groups_by_user_and_device_and_sorts(tmp_path):
    rng = np.random.default_rng(0)
    rows = recording(50, 2, 10.0, lambda t: "walk", linear, rng=rng)
    rows += recording(50, 1, 10.0, lambda t: "sit", linear, user="b", device="s3_1")
    write_sensor(tmp_path / "acc.csv", rows)
    streams = read_sensor_csv(tmp_path / "acc.csv")
    assert set(streams) == {("a", "nexus4_1"), ("b", "s3_1")}
    a = streams[("a", "nexus4_1")]
    assert len(a.times_s) == 100 and np.all(np.diff(a.times_s) > 0)
    np.testing.assert_allclose(a.xyz[:, 1], 2 * a.times_s, rtol=1e-9)
    assert set(a.labels.tolist()) == {"walk"}


def test_join_resamples_both_sensors_onto_one_grid(tmp_path):
    rng = np.random.default_rng(1)
    write_sensor(tmp_path / "acc.csv", recording(50, 6, 100.0, lambda t: "walk", linear, rng=rng))
    gyro = lambda t: (0.5 * t, 0.0, 1.0)  # noqa: E731
    write_sensor(tmp_path / "gyr.csv", recording(200, 6, 100.1, lambda t: "walk", gyro, rng=rng))
    accel = read_sensor_csv(tmp_path / "acc.csv")[("a", "nexus4_1")]
    gyroscope = read_sensor_csv(tmp_path / "gyr.csv")[("a", "nexus4_1")]
    ((samples, labels),) = join_and_resample(accel, gyroscope, rate_hz=100.0)
    times = samples[:, 0].astype(np.float64)
    assert times[0] == pytest.approx(gyroscope.times_s[0], abs=1e-4)  # starts where both do
    np.testing.assert_allclose(np.diff(times), 0.01, atol=2e-4)  # 100 Hz grid
    np.testing.assert_allclose(samples[:, 1], 2 * times, rtol=1e-5)
    np.testing.assert_allclose(samples[:, 3], 0.5 * times, rtol=1e-5)
    np.testing.assert_allclose(samples[:, 5], 1.0)
    assert set(labels.tolist()) == {"walk"}


def test_a_gap_splits_the_recording(tmp_path):
    rows = recording(100, 5, 0.0, lambda t: "walk", linear)
    rows += recording(100, 5, 6.0, lambda t: "walk", linear)  # one second missing
    write_sensor(tmp_path / "acc.csv", rows)
    stream = read_sensor_csv(tmp_path / "acc.csv")[("a", "nexus4_1")]
    pieces = join_and_resample(stream, stream, 100.0)
    assert len(pieces) == 2
    assert all(abs(len(samples) - 500) <= 1 for samples, _ in pieces)


def test_windows_never_span_a_label_change_or_null():
    samples = np.zeros((1000, 6), np.float32)
    labels = np.array(["walk"] * 450 + ["null"] * 100 + ["sit"] * 450)
    windows, names = cut_windows(samples, labels, window=400, hop=50)
    assert names == ["walk", "walk", "sit", "sit"]
    assert all(w.shape == (400, 6) for w in windows)


def test_load_hhar_end_to_end(tmp_path):
    def labels(t):
        return "walk" if t < 20 else ("null" if t < 21 else "stairsup")

    for user, device in (("a", "nexus4_1"), ("b", "s3mini_1")):
        accel = recording(100, 30, 0.0, labels, linear, user, device)
        gyro = recording(150, 30, 0.0, labels, lambda t: (1, 2, 3), user, device)
        write_sensor(tmp_path / f"acc_{user}.csv", accel)
        write_sensor(tmp_path / f"gyr_{user}.csv", gyro)
    # one file per sensor, as HHAR ships them
    for sensor, prefix in (("accelerometer", "acc"), ("gyroscope", "gyr")):
        lines = []
        for user in ("a", "b"):
            lines += (tmp_path / f"{prefix}_{user}.csv").read_text().splitlines()[1:]
        (tmp_path / f"Phones_{sensor}.csv").write_text(",".join(COLUMNS) + "\n" + "\n".join(lines))
    x, y, users = load_hhar(tmp_path, rate_hz=100.0, window=400, hop=200)
    assert x.shape[1:] == (400, 6) and x.dtype == np.float32
    names = [ACTIVITIES[i] for i in y]
    # per user: walk fills grid 0..1999 -> windows at 0, 200, ..., 1600 (9); stairs fill
    # 2100..2999 (the accelerometer ends at 29.99 s) -> windows at 2200, 2400, 2600 (3)
    assert names.count("walk") == 18 and names.count("stairsup") == 6
    assert len(names) == 24
    assert sorted(set(users.tolist())) == ["a", "b"]
    np.testing.assert_allclose(x[..., 3:], np.broadcast_to([1, 2, 3], x[..., 3:].shape))


def test_bad_files_name_the_file_and_line(tmp_path):
    bad_header = tmp_path / "Phones_accelerometer.csv"
    bad_header.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match=r"Phones_accelerometer\.csv: header"):
        read_sensor_csv(bad_header)
    bad_value = tmp_path / "x.csv"
    write_sensor(bad_value, [(1, "nan?", 0, 0, "a", "d", "walk")])
    bad_value.write_text(bad_value.read_text().replace("nan?", "abc"))
    with pytest.raises(DatasetError, match=r"x\.csv:2"):
        read_sensor_csv(bad_value)
