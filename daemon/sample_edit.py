"""What ``odar samples`` does to a sample store, as operations on :class:`Samples` arrays:
delete by id, delete the last, clear a class, relabel, export to CSV/NPZ and import.

A sample's id is its 1-based position in the store, oldest first (``odar samples list
--all`` shows them); deleting a sample renumbers the ones after it. The store is read here
without changing it (:func:`read_store`), so a running daemon's store can be listed and
exported; changes go through the daemon when it runs (:mod:`odar.sample_requests`) and through
:meth:`SampleStore.replace_all` when it does not.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odar.errors import StateError
from odar.sample_store import Samples, StoreLayout, parse_header

EXPORT_FORMAT = "odar-samples-1"
_BODY_OFFSET = 8
_MAX_HEADER = 64 * 1024 + 64


@dataclass(frozen=True)
class ClassSummary:
    name: str
    count: int
    #: The stored timestamps (the sensor clock's seconds) of the first and last sample.
    first: float | None
    last: float | None


def read_store(path: Path) -> tuple[StoreLayout, Samples]:
    """Every whole, checksummed record of the store at *path*, without touching the file (a
    torn record being appended is left out)."""
    try:
        with open(path, "rb") as file:
            head = file.read(_MAX_HEADER)
            layout, data_start = parse_header(head, str(path))
            file.seek(data_start)
            data = file.read()
    except FileNotFoundError:
        raise StateError(f"{path}: no sample store (nothing collected yet)") from None
    except OSError as error:
        raise StateError(f"{path}: cannot read: {error.strerror}") from None
    dtype = layout.record_dtype()
    whole = len(data) // dtype.itemsize
    records = np.frombuffer(data, dtype=dtype, count=whole)
    good = 0
    body_length = dtype.itemsize - _BODY_OFFSET
    for index in range(whole):
        start = index * dtype.itemsize + _BODY_OFFSET
        if (
            records["body_length"][index] != body_length
            or records["crc"][index] != zlib.crc32(data[start : start + body_length])
            or records["label"][index] >= layout.num_classes
        ):
            break
        good += 1
    records = records[:good]
    return layout, Samples(
        labels=records["label"].astype(np.int64),
        timestamps=records["timestamp"].copy(),
        features=records["features"].copy(),
        windows=records["window"].copy(),
    )


def summarize(samples: Samples, names: Sequence[str]) -> list[ClassSummary]:
    summaries = []
    for index, name in enumerate(names):
        times = samples.timestamps[samples.labels == index]
        summaries.append(
            ClassSummary(
                name,
                len(times),
                float(times.min()) if len(times) else None,
                float(times.max()) if len(times) else None,
            )
        )
    return summaries


def select(samples: Samples, keep: np.ndarray) -> Samples:
    return Samples(
        labels=samples.labels[keep],
        timestamps=samples.timestamps[keep],
        features=samples.features[keep],
        windows=samples.windows[keep],
    )


def check_ids(samples: Samples, ids: Iterable[int]) -> list[int]:
    ids = sorted(set(ids))
    bad = [i for i in ids if not 1 <= i <= len(samples)]
    if bad:
        raise StateError(
            f"no sample {', '.join(map(str, bad))}: the ids are 1-{len(samples)}"
            if len(samples)
            else "there are no samples"
        )
    return ids


def delete(samples: Samples, ids: Iterable[int]) -> Samples:
    keep = np.ones(len(samples), bool)
    keep[np.asarray(check_ids(samples, ids), int) - 1] = False
    return select(samples, keep)


def delete_last(samples: Samples) -> Samples:
    if not len(samples):
        raise StateError("there are no samples")
    return delete(samples, [len(samples)])


def clear(samples: Samples, class_index: int) -> Samples:
    return select(samples, samples.labels != class_index)


def relabel(samples: Samples, sample_id: int, class_index: int) -> Samples:
    (sample_id,) = check_ids(samples, [sample_id])
    labels = samples.labels.copy()
    labels[sample_id - 1] = class_index
    return Samples(labels, samples.timestamps, samples.features, samples.windows)


def concatenate(first: Samples, second: Samples) -> Samples:
    return Samples(
        labels=np.concatenate([first.labels, second.labels]),
        timestamps=np.concatenate([first.timestamps, second.timestamps]),
        features=np.concatenate([first.features, second.features]),
        windows=np.concatenate([first.windows, second.windows]),
    )


# ---------------------------------------------------------------------------- files


def export(samples: Samples, names: Sequence[str], layout: StoreLayout, path: Path) -> None:
    """*samples* to *path*: ``.npz`` (arrays) or ``.csv`` (one row a sample: id, class,
    timestamp, the features, then the raw window flattened row by row)."""
    suffix = path.suffix.lower()
    labels = [names[i] for i in samples.labels]
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if suffix == ".npz":
            with open(temporary, "wb") as file:
                np.savez_compressed(
                    file,
                    format=np.array(EXPORT_FORMAT),
                    class_names=np.array(list(names)),
                    labels=np.array(labels),
                    timestamps=samples.timestamps,
                    features=samples.features,
                    windows=samples.windows,
                    manifest_hash=np.array(layout.manifest_hash),
                )
        elif suffix == ".csv":
            _write_csv(temporary, samples, labels, layout)
        else:
            raise StateError(f"{path}: export to .csv or .npz")
        os.replace(temporary, path)
    except OSError as error:
        raise StateError(f"{path}: cannot write: {error.strerror}") from None
    finally:
        if temporary.exists():
            temporary.unlink()


def _write_csv(path: Path, samples: Samples, labels: list[str], layout: StoreLayout) -> None:
    axes = ("ax", "ay", "az", "gx", "gy", "gz")
    rows, columns = layout.window_shape
    header = [
        "id",
        "class",
        "timestamp",
        *(f"f{i}" for i in range(layout.feature_size)),
        *(
            f"{axes[c] if c < len(axes) else f'c{c}'}_{r}"
            for r in range(rows)
            for c in range(columns)
        ),
    ]
    with open(path, "w", newline="", encoding="utf-8") as file:
        file.write(f"# {EXPORT_FORMAT} manifest_hash={layout.manifest_hash}\n")
        writer = csv.writer(file)
        writer.writerow(header)
        for index in range(len(samples)):
            writer.writerow(
                [
                    index + 1,
                    labels[index],
                    repr(float(samples.timestamps[index])),
                    *(repr(float(v)) for v in samples.features[index]),
                    *(repr(float(v)) for v in samples.windows[index].reshape(-1)),
                ]
            )


def read_export(path: Path, layout: StoreLayout) -> tuple[list[str], Samples, str | None]:
    """(class name of each sample, the samples with labels unset, the exporter's manifest
    hash) from a file :func:`export` wrote."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if str(data.get("format", "")) != EXPORT_FORMAT:
                    raise StateError(f"{path}: not an odar samples export ({EXPORT_FORMAT})")
                labels = [str(v) for v in data["labels"]]
                samples = Samples(
                    np.zeros(len(labels), np.int64),
                    np.asarray(data["timestamps"], np.float64),
                    np.asarray(data["features"], np.float32),
                    np.asarray(data["windows"], np.float32),
                )
                manifest_hash = str(data["manifest_hash"]) if "manifest_hash" in data else None
        elif suffix == ".csv":
            labels, samples, manifest_hash = _read_csv(path, layout)
        else:
            raise StateError(f"{path}: import a .csv or .npz that odar samples export wrote")
    except FileNotFoundError:
        raise StateError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError) as error:
        raise StateError(f"{path}: cannot read the export: {error}") from None
    expected = (layout.feature_size,), tuple(layout.window_shape)
    if len(samples) and (samples.features.shape[1:], samples.windows.shape[1:]) != expected:
        raise StateError(
            f"{path}: samples of shape {samples.features.shape[1:]} and "
            f"{samples.windows.shape[1:]}, the store holds {expected[0]} and {expected[1]}"
        )
    return labels, samples, manifest_hash


def _read_csv(path: Path, layout: StoreLayout) -> tuple[list[str], Samples, str | None]:
    with open(path, newline="", encoding="utf-8") as file:
        first = file.readline()
        if not first.startswith(f"# {EXPORT_FORMAT}"):
            raise StateError(f"{path}: not an odar samples export ({EXPORT_FORMAT})")
        manifest_hash = first.strip().partition("manifest_hash=")[2] or None
        reader = csv.reader(file)
        next(reader)
        labels, times, features, windows = [], [], [], []
        size = layout.feature_size
        for row in reader:
            labels.append(row[1])
            times.append(float(row[2]))
            features.append([float(v) for v in row[3 : 3 + size]])
            windows.append([float(v) for v in row[3 + size :]])
    count = len(labels)
    return (
        labels,
        Samples(
            np.zeros(count, np.int64),
            np.asarray(times, np.float64),
            np.asarray(features, np.float32).reshape(count, size),
            np.asarray(windows, np.float32).reshape(count, *layout.window_shape),
        ),
        manifest_hash,
    )


def summary_json(summaries: list[ClassSummary], total: int) -> dict[str, Any]:
    return {
        "total": total,
        "classes": [
            {"class": s.name, "count": s.count, "first": s.first, "last": s.last} for s in summaries
        ],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)
