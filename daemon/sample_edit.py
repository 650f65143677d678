"""What ``odar samples`` reads and writes: per-class summaries, and exports to CSV/NPZ (raw
windows, timestamps, class names, features) that :func:`read_export` reads back.

The changes themselves are the sample store's primitives (ids, ``delete``, ``relabel``,
``append``), applied by :mod:`odar.sample_requests`: by the daemon when it runs, by the
command on the stopped store otherwise.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odar.errors import StateError
from odar.sample_store import Samples, StoreLayout

EXPORT_FORMAT = "odar-samples-1"


@dataclass(frozen=True)
class ClassSummary:
    name: str
    count: int
    #: The stored timestamps (the sensor clock's seconds) of the first and last sample.
    first: float | None
    last: float | None


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


# ---------------------------------------------------------------------------- files


def export(samples: Samples, names: Sequence[str], layout: StoreLayout, path: Path) -> None:
    """*samples* to *path*: ``.npz`` (arrays) or ``.csv`` (one row a sample: id, class,
    timestamp, the features, then the raw window flattened row by row)."""
    suffix = path.suffix.lower()
    if samples.windows is None:
        raise ValueError("export needs the raw windows: load(windows=True)")
    labels = [names[i] for i in samples.labels]
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if suffix == ".npz":
            with open(temporary, "wb") as file:
                np.savez_compressed(
                    file,
                    format=np.array(EXPORT_FORMAT),
                    ids=samples.ids,
                    class_names=np.array(list(names)),
                    labels=np.array(labels),
                    timestamps=samples.timestamps,
                    features=samples.features,
                    windows=samples.windows,
                    bottleneck_sha256=np.array(layout.bottleneck_sha256),
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
    assert samples.windows is not None
    with open(path, "w", newline="", encoding="utf-8") as file:
        file.write(f"# {EXPORT_FORMAT} bottleneck_sha256={layout.bottleneck_sha256}\n")
        writer = csv.writer(file)
        writer.writerow(header)
        for index in range(len(samples)):
            writer.writerow(
                [
                    int(samples.ids[index]),
                    labels[index],
                    repr(float(samples.timestamps[index])),
                    *(repr(float(v)) for v in samples.features[index]),
                    *(repr(float(v)) for v in samples.windows[index].reshape(-1)),
                ]
            )


def read_export(path: Path, layout: StoreLayout) -> tuple[list[str], Samples, str | None]:
    """(class name of each sample, the samples with labels unset, the SHA-256 of the
    bottleneck that computed the features) from a file :func:`export` wrote."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if str(data.get("format", "")) != EXPORT_FORMAT:
                    raise StateError(f"{path}: not an odar samples export ({EXPORT_FORMAT})")
                labels = [str(v) for v in data["labels"]]
                samples = Samples(
                    np.zeros(len(labels), np.int64),
                    np.zeros(len(labels), np.int64),
                    np.asarray(data["timestamps"], np.float64),
                    np.asarray(data["features"], np.float32),
                    np.asarray(data["windows"], np.float32),
                )
                manifest_hash = (
                    str(data["bottleneck_sha256"]) if "bottleneck_sha256" in data else None
                )
        elif suffix == ".csv":
            labels, samples, manifest_hash = _read_csv(path, layout)
        else:
            raise StateError(f"{path}: import a .csv or .npz that odar samples export wrote")
    except FileNotFoundError:
        raise StateError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError) as error:
        raise StateError(f"{path}: cannot read the export: {error}") from None
    expected = (layout.feature_size,), tuple(layout.window_shape)
    assert samples.windows is not None
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
        manifest_hash = first.strip().partition("bottleneck_sha256=")[2] or None
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
