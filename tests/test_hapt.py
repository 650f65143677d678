"""The HAPT loader on a small pickle the test writes in the same format as the shipped file
(a pandas-1.0 frame pickled at protocol 2 with Python 2 module names), so the test needs
neither pandas nor the download."""

from __future__ import annotations

import gzip
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from odar.drivers.emulated import hapt
from odar.errors import DatasetError, OdarError


@dataclass(frozen=True)
class _Name:
    """A global the pickle names (module, name), written as a GLOBAL opcode."""

    module: str
    name: str

    def __call__(self, *args):  # the pickler only checks that a reducer's function is callable
        raise AssertionError("never called")


@dataclass
class _Reduced:
    function: _Name
    args: tuple
    state: object = None


class _HaptPickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table is open
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_name(self, obj: _Name) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Name] = _save_name

    def reducer_override(self, obj):
        if isinstance(obj, _Reduced):
            return obj.function, obj.args, obj.state
        return NotImplemented


_OBJECT = _Name("__builtin__", "object")
_NDARRAY = _Name("numpy", "ndarray")


def _dtype(code: str, order: str) -> _Reduced:
    return _Reduced(_Name("numpy", "dtype"), (code, 0, 1), (3, order, None, None, None, -1, -1, 0))


def _array(values: np.ndarray) -> _Reduced:
    if values.dtype == object:
        dtype, raw = _dtype("O8", "|"), list(values)
    else:
        dtype, raw = _dtype(values.dtype.str[1:], "<"), values.astype(values.dtype.str).tobytes()
    state = (1, values.shape, dtype, False, raw)
    return _Reduced(_Name("numpy.core.multiarray", "_reconstruct"), (_NDARRAY, (0,), b"b"), state)


def _frame(columns: dict[str, np.ndarray]) -> _Reduced:
    """A DataFrame as pandas 1.0 pickles it: float columns in one block, ints in another."""
    names = list(columns)
    floats = [n for n in names if columns[n].dtype.kind == "f"]
    ints = [n for n in names if columns[n].dtype.kind == "i"]
    rows = len(next(iter(columns.values())))
    new_index = _Name("pandas.core.indexes.base", "_new_Index")
    axes = [
        _Reduced(
            new_index,
            (_Name("pandas.core.indexes.base", "Index"),
             {"data": _array(np.array(names, dtype=object)), "name": None}),
        ),
        _Reduced(
            new_index,
            (_Name("pandas.core.indexes.range", "RangeIndex"),
             {"name": None, "start": 0, "stop": rows, "step": 1}),
        ),
    ]  # fmt: skip
    blocks = [
        {"values": _array(np.stack([columns[n] for n in floats])), "mgr_locs": slice(0, 6, 1)},
        {"values": _array(np.stack([columns[n] for n in ints])), "mgr_locs": slice(6, 8, 1)},
    ]
    reconstructor = _Name("copy_reg", "_reconstructor")
    manager = _Reduced(
        reconstructor,
        (_Name("pandas.core.internals.managers", "BlockManager"), _OBJECT, None),
        ([], [], [], {"0.14.1": {"axes": axes, "blocks": blocks}}),
    )
    state = {"_data": manager, "_typ": "dataframe", "_metadata": [], "attrs": {}}
    return _Reduced(reconstructor, (_Name("pandas.core.frame", "DataFrame"), _OBJECT, None), state)


def _recording(rng: np.random.Generator, labels: np.ndarray) -> dict[str, np.ndarray]:
    n = len(labels)
    columns = {name: rng.normal(size=n) for name in hapt.COLUMNS}
    columns["sequence"] = np.arange(n, dtype=np.int64)
    columns["label"] = labels.astype(np.int64)
    return columns


def _write(path: Path, data: dict[int, list[dict[str, np.ndarray]]]) -> None:
    frames = {subject: [_frame(c) for c in recordings] for subject, recordings in data.items()}
    buffer = io.BytesIO()
    _HaptPickler(buffer, protocol=2).dump(frames)
    with gzip.open(path, "wb") as file:
        file.write(buffer.getvalue())


@pytest.fixture
def small_pickle(tmp_path) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    # Subject 1: walking (HAPT id 1) 300 samples, a transition (7), sitting (4) 250 samples,
    # unlabelled (-1). Subject 2: lying (6) 220 samples in each of two recordings.
    data = {
        1: [_recording(rng, np.repeat([1, 7, 4, -1], [300, 20, 250, 30]))],
        2: [_recording(rng, np.full(220, 6)), _recording(rng, np.full(220, 6))],
    }
    path = tmp_path / "HAPT.pkl.gz"
    _write(path, data)
    return path, data


def test_loads_columns_in_si_units_and_activity_indices(small_pickle):
    path, data = small_pickle
    recordings = hapt.load_pickle(path)
    assert [(r.subject, r.index) for r in recordings] == [(1, 0), (2, 0), (2, 1)]
    first = recordings[0]
    columns = data[1][0]
    # Accelerometer columns are in g: 1 g is 9.80665 m/s^2; the gyroscope is rad/s as is.
    np.testing.assert_allclose(first.samples[:, 0], columns["acc-x"] * 9.80665, rtol=1e-6)
    np.testing.assert_allclose(first.samples[:, 5], columns["gyro-z"], rtol=1e-6)
    assert first.samples.dtype == np.float32
    # HAPT ids 1..6 become 0..5; transitions and unlabelled become -1.
    assert first.labels[0] == hapt.ACTIVITIES.index("walking")
    assert first.labels[310] == -1 and first.labels[-1] == -1
    assert first.labels[400] == hapt.ACTIVITIES.index("sitting")


def test_windows_stay_inside_one_activity_and_resample_to_100_hz(small_pickle):
    path, _ = small_pickle
    x, y, subject, recording = hapt.windows(hapt.load_pickle(path), rate_hz=100.0, window=400)
    # 300 walking samples at 50 Hz = 599 at 100 Hz -> windows at 0, 100: 2; sitting 250 ->
    # 499 -> 1; each lying recording 220 -> 439 -> 1; the transition never makes a window.
    assert x.shape == (5, 400, 6)
    assert y.tolist() == [0, 0, 3, 5, 5]
    assert subject.tolist() == [1, 1, 1, 2, 2] and recording.tolist() == [0, 0, 0, 0, 1]


def test_resample_interpolates_between_samples():
    samples = np.arange(12, dtype=np.float32).reshape(2, 6)
    resampled = hapt.resample(samples, 100.0)
    np.testing.assert_allclose(resampled[1], (samples[0] + samples[1]) / 2)


def test_a_pickle_naming_anything_else_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({1: [Payload()]}, protocol=2))
    with pytest.raises(DatasetError, match="does not allow") as raised:
        hapt.load_pickle(path)
    assert isinstance(raised.value, OdarError) and str(path) in str(raised.value)
    assert not marker.exists()


def test_a_file_that_is_no_pickle_names_itself(tmp_path):
    path = tmp_path / "HAPT.pkl.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match=str(path)):
        hapt.load_pickle(path)


def test_test_subjects_are_uci_s_and_disjoint_from_training():
    assert hapt.TEST_SUBJECTS == (2, 4, 9, 10, 12, 13, 18, 20, 24)
    assert set(hapt.TRAIN_SUBJECTS).isdisjoint(hapt.TEST_SUBJECTS)
    assert len(hapt.TRAIN_SUBJECTS) + len(hapt.TEST_SUBJECTS) == 30


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ODAR_CACHE_DIR", str(tmp_path))
    assert hapt.cache_dir() == tmp_path


def test_fetch_uses_a_cached_pickle_without_downloading(monkeypatch, tmp_path):
    (tmp_path / "hapt").mkdir()
    (tmp_path / "hapt" / "HAPT.pkl.gz").write_bytes(b"")

    def no_download(*args, **kwargs):
        raise AssertionError("fetch downloaded although the cache holds the file")

    monkeypatch.setattr(hapt.subprocess, "run", no_download)
    assert hapt.fetch(tmp_path) == tmp_path / "hapt" / "HAPT.pkl.gz"


def test_activity_loop_plays_the_longest_run_looped_and_interpolated():
    labels = np.array([3, 3, -1, 3, 3, 3, 0])  # sitting runs of 2 and 3 samples
    samples = np.zeros((7, 6), np.float32)
    samples[3:6, 0] = [10.0, 20.0, 30.0]
    loop = hapt.ActivityLoop(hapt.Recording(1, 0, samples, labels), "sitting")
    assert loop.duration == pytest.approx(3 / 50.0)
    # 50 Hz: t = 0.01 s is halfway between the first two samples; after the last sample the
    # loop interpolates back to the first; one duration later it repeats.
    values = loop.read(np.array([0.0, 0.01, 0.05, 0.06 + 0.02]))[:, 0]
    np.testing.assert_allclose(values, [10.0, 15.0, 20.0, 20.0])
    with pytest.raises(DatasetError, match="has no walking"):
        hapt.ActivityLoop(hapt.Recording(1, 0, samples[:6], labels[:6]), "walking")
