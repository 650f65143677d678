"""Collected samples on disk: an append-only file of checksummed records.

File layout (little-endian)::

    b"ODARSMPL"                   magic, 8 bytes
    u32 header_length
    header                        UTF-8 JSON: schema, manifest_hash, num_classes, feature_size,
                                  window_shape
    u32 CRC32 of the header
    records, each:
      u32 body_length, u32 CRC32 of the body,
      body: u32 label, f64 timestamp, f32[feature_size] features, f32[window_shape] window

Records are appended with one ``write`` each and made durable every ``sync_every`` records, so
a power cut loses at most the records since the last sync; a torn record at the end is found
by its length or CRC and cut off on the next open. The header ties the store to the artifacts
(manifest hash) and the class count: a foreign or unreadable store is moved aside as
``<name>.bad-<timestamp>`` and a new one begun.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from odar.errors import StateError, StateWriteError
from odar.param_store import move_aside, write_atomically

MAGIC = b"ODARSMPL"
SCHEMA_VERSION = 1
WINDOW_SHAPE = (400, 6)
_U32 = struct.Struct("<I")
_MAX_HEADER_BYTES = 64 * 1024
#: Records checked per read while scanning, to bound memory on open.
_SCAN_CHUNK_RECORDS = 256

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreLayout:
    """What a store is for; two stores with different layouts cannot share records."""

    manifest_hash: str
    num_classes: int
    feature_size: int
    window_shape: tuple[int, ...] = WINDOW_SHAPE

    def header_bytes(self) -> bytes:
        header = json.dumps(
            {
                "schema": SCHEMA_VERSION,
                "manifest_hash": self.manifest_hash,
                "num_classes": self.num_classes,
                "feature_size": self.feature_size,
                "window_shape": list(self.window_shape),
            },
            sort_keys=True,
        ).encode("utf-8")
        return MAGIC + _U32.pack(len(header)) + header + _U32.pack(zlib.crc32(header))

    def record_dtype(self) -> np.dtype:
        return np.dtype(
            [
                ("body_length", "<u4"),
                ("crc", "<u4"),
                ("label", "<u4"),
                ("timestamp", "<f8"),
                ("features", "<f4", (self.feature_size,)),
                ("window", "<f4", self.window_shape),
            ]
        )


#: Bytes before the body in a record: body_length and crc.
_BODY_OFFSET = 8


@dataclass(frozen=True)
class Samples:
    """Records as arrays, for training: labels (N,), timestamps (N,), features (N, F),
    windows (N, 400, 6)."""

    labels: np.ndarray
    timestamps: np.ndarray
    features: np.ndarray
    windows: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def parse_header(data: bytes, source: str = "<bytes>") -> tuple[StoreLayout, int]:
    """The layout in the header at the start of *data* and the header's size in bytes."""
    prefix = len(MAGIC) + _U32.size
    if len(data) < prefix or not data.startswith(MAGIC):
        raise StateError(f"{source}: not an odar sample store (bad magic or too short)")
    (length,) = _U32.unpack_from(data, len(MAGIC))
    if length > _MAX_HEADER_BYTES or len(data) < prefix + length + _U32.size:
        raise StateError(f"{source}: header truncated or implausibly long ({length} bytes)")
    header = data[prefix : prefix + length]
    (crc,) = _U32.unpack_from(data, prefix + length)
    if zlib.crc32(header) != crc:
        raise StateError(f"{source}: header checksum mismatch")
    try:
        fields = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StateError(f"{source}: unreadable header") from None
    if not isinstance(fields, dict) or fields.get("schema") != SCHEMA_VERSION:
        raise StateError(f"{source}: not schema {SCHEMA_VERSION} of the sample store")
    try:
        layout = StoreLayout(
            manifest_hash=_typed(fields, "manifest_hash", str),
            num_classes=_typed(fields, "num_classes", int),
            feature_size=_typed(fields, "feature_size", int),
            window_shape=tuple(_typed(fields, "window_shape", list)),
        )
    except (TypeError, KeyError) as error:
        raise StateError(f"{source}: bad header field {error}") from None
    dims = (layout.num_classes, layout.feature_size, *layout.window_shape)
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 2**20 for n in dims):
        raise StateError(f"{source}: implausible dimensions in the header: {fields}")
    return layout, prefix + length + _U32.size


T = TypeVar("T")


def _typed(fields: dict[str, Any], name: str, kind: type[T]) -> T:
    value = fields[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r}")
    return value


class SampleStore:
    """An open store; create or recover it with :meth:`open`. Thread-safe."""

    def __init__(
        self,
        path: Path,
        layout: StoreLayout,
        descriptor: int,
        data_start: int,
        counts: list[int],
        sync_every: int,
        logger: logging.Logger,
    ) -> None:
        self.path = path
        self.layout = layout
        self._descriptor = descriptor
        self._data_start = data_start
        self._counts = counts
        self._sync_every = sync_every
        self._unsynced = 0
        self._log = logger
        self._dtype = layout.record_dtype()
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        layout: StoreLayout,
        *,
        sync_every: int = 1,
        wall_clock: Callable[[], float] = time.time,
        logger: logging.Logger = _log,
    ) -> SampleStore:
        """Open the store at *path*, creating it, or moving a bad or foreign one aside first.

        *sync_every*: fsync after this many appended records (1: each record; 0: leave it to
        the kernel). Raises :class:`StateWriteError` if a new store cannot be created.
        """
        path = Path(path)
        if sync_every < 0:
            raise ValueError(f"sync_every must be >= 0, got {sync_every}")
        try:
            with open(path, "rb") as file:
                found, data_start = parse_header(file.read(_MAX_HEADER_BYTES + 64), str(path))
            if found != layout:
                raise StateError(f"{path}: belongs to other artifacts or classes ({found})")
        except FileNotFoundError:
            data_start = _create(path, layout)
        except StateError as error:
            try:
                moved = move_aside(path, wall_clock())
            except OSError as move_error:
                raise StateWriteError(
                    move_error.errno, f"{error}; cannot move it aside: {move_error.strerror}"
                ) from move_error
            logger.warning("%s; moved to %s, starting an empty store", error, moved.name)
            data_start = _create(path, layout)
        except OSError as error:
            raise StateWriteError(error.errno, f"cannot read {path}: {error.strerror}") from error
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except OSError as error:
            raise StateWriteError(error.errno, f"cannot open {path}: {error.strerror}") from error
        counts = _recover(descriptor, path, layout, data_start, wall_clock(), logger)
        return cls(path, layout, descriptor, data_start, counts, sync_every, logger)

    def counts(self) -> tuple[int, ...]:
        """Samples per class, by class index."""
        with self._lock:
            return tuple(self._counts)

    def __len__(self) -> int:
        with self._lock:
            return sum(self._counts)

    def append(
        self, label: int, features: np.ndarray, window: np.ndarray, timestamp: float
    ) -> None:
        """Add one sample; on a write error the store is left as it was and
        :class:`StateWriteError` is raised."""
        layout = self.layout
        if not 0 <= label < layout.num_classes:
            raise ValueError(f"label {label} is not a class index (0-{layout.num_classes - 1})")
        record = np.zeros(1, dtype=self._dtype)
        record["label"] = label
        record["timestamp"] = timestamp
        try:
            record["features"] = np.asarray(features, np.float32).reshape(layout.feature_size)
            record["window"] = np.asarray(window, np.float32).reshape(layout.window_shape)
        except ValueError:
            raise ValueError(
                f"sample shapes {np.shape(features)} and {np.shape(window)} do not fit "
                f"({self.layout.feature_size},) and {self.layout.window_shape}"
            ) from None
        raw = record.tobytes()
        body = raw[_BODY_OFFSET:]
        data = _U32.pack(len(body)) + _U32.pack(zlib.crc32(body)) + body
        with self._lock:
            size_before = os.fstat(self._descriptor).st_size
            try:
                _write_all(self._descriptor, data)
                self._unsynced += 1
                if self._sync_every and self._unsynced >= self._sync_every:
                    os.fsync(self._descriptor)
                    self._unsynced = 0
            except OSError as error:
                self._undo_append(size_before)
                raise StateWriteError(
                    error.errno, f"cannot append to {self.path}: {error.strerror or error}"
                ) from error
            self._counts[label] += 1

    def load(self) -> Samples:
        """Every record, as arrays (copies: safe to keep while appending goes on)."""
        with self._lock:
            count = sum(self._counts)
            data = os.pread(self._descriptor, count * self._dtype.itemsize, self._data_start)
        records = np.frombuffer(data, dtype=self._dtype, count=count)
        return Samples(
            labels=records["label"].astype(np.int64),
            timestamps=records["timestamp"].copy(),
            features=records["features"].copy(),
            windows=records["window"].copy(),
        )

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray, np.ndarray]]:
        """(label, timestamp, features, window) per record, oldest first."""
        samples = self.load()
        for index in range(len(samples)):
            yield (
                int(samples.labels[index]),
                float(samples.timestamps[index]),
                samples.features[index],
                samples.windows[index],
            )

    def close(self) -> None:
        with self._lock:
            if self._descriptor >= 0:
                try:
                    os.fsync(self._descriptor)
                finally:
                    os.close(self._descriptor)
                    self._descriptor = -1

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _undo_append(self, size_before: int) -> None:
        # A partial record would be cut off on the next open anyway; cutting it now lets the
        # next append land on a record boundary.
        try:
            os.ftruncate(self._descriptor, size_before)
        except OSError as error:
            self._log.error("cannot cut a partial record off %s: %s", self.path, error)


def _create(path: Path, layout: StoreLayout) -> int:
    header = layout.header_bytes()
    write_atomically(path, header)
    return len(header)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _recover(
    descriptor: int,
    path: Path,
    layout: StoreLayout,
    data_start: int,
    now: float,
    logger: logging.Logger,
) -> list[int]:
    """Count the good records; cut the file after the last one (a torn or corrupt tail)."""
    dtype = layout.record_dtype()
    size = os.fstat(descriptor).st_size
    counts = [0] * layout.num_classes
    offset = data_start
    body_length = dtype.itemsize - _BODY_OFFSET
    while offset < size:
        chunk = os.pread(descriptor, dtype.itemsize * _SCAN_CHUNK_RECORDS, offset)
        whole = len(chunk) // dtype.itemsize
        records = np.frombuffer(chunk, dtype=dtype, count=whole)
        good = 0
        for index in range(whole):
            start = index * dtype.itemsize + _BODY_OFFSET
            body = chunk[start : start + body_length]
            label = int(records["label"][index])
            if (
                records["body_length"][index] != body_length
                or records["crc"][index] != zlib.crc32(body)
                or label >= layout.num_classes
            ):
                break
            counts[label] += 1
            good += 1
        offset += good * dtype.itemsize
        if good < _SCAN_CHUNK_RECORDS:
            break
    if offset < size:
        _cut_tail(descriptor, path, offset, size, dtype.itemsize, now, logger)
    return counts


def _cut_tail(
    descriptor: int,
    path: Path,
    offset: int,
    size: int,
    record_size: int,
    now: float,
    logger: logging.Logger,
) -> None:
    dropped = size - offset
    if dropped > record_size:
        # More than one torn record: keep the bytes for a post-mortem before cutting them.
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        aside = path.with_name(f"{path.name}.bad-{stamp}-tail")
        try:
            write_atomically(aside, os.pread(descriptor, dropped, offset))
        except StateWriteError as error:
            logger.error("cannot keep the damaged tail of %s: %s", path, error)
    try:
        os.ftruncate(descriptor, offset)
        os.fsync(descriptor)
    except OSError as error:
        raise StateWriteError(
            error.errno, f"cannot cut the damaged tail off {path}: {error.strerror}"
        ) from error
    logger.warning("%s: cut off %d damaged bytes after the last good record", path, dropped)
