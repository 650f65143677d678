"""Collected samples on disk: a log of fixed-size, checksummed records with an in-memory index.

Why a log and not SQLite (measured with ``scripts/measure_sample_store.py --records 2000`` on
the development machine's ext4 disk, sqlite 3.40.1, every record durable before append
returns): appends cost about the same (median 3.2 ms for this log, 3.0 ms for SQLite WAL with
synchronous=FULL; 0.03 ms with NORMAL, which may lose the last records on power loss; the
medians swing by about 1.5 ms between runs on this shared disk) and so does the space (10,244
vs 10,248 bytes a record). What decided it is damage: zeroing one 4 KiB page of the SQLite
file lost every row when it was page 1 (the header and schema) or the table's root page, and
half of them for an interior page, with no recovery in Python's sqlite3. Fixed-size records
with their own checksum lose only the records a damaged page touches, wherever it is (the same
measurement: 1,999 of 2,000 kept for a zeroed middle page, all 2,000 for the first page), and
the header is kept twice.

File layout (little-endian)::

    header copy A, padded to 4096 bytes:
      b"ODARSMP2", u32 length, UTF-8 JSON (schema, bottleneck_sha256, num_classes,
      feature_size, window_shape), u32 CRC32 of the JSON
    header copy B, the same, in the next 4096 bytes
    records from byte 8192, each ``record_size`` bytes (a multiple of 512):
      u32 b"SREC", u32 CRC32 of the rest, u32 label, u32 flags (1: deleted), u64 sample id,
      f64 timestamp, f32[feature_size] features, f32[window_shape] window, zero padding

Every field a relabel or delete changes (label, flags, CRC) lies in the record's first 24
bytes, inside one 512-byte sector, and is rewritten with one ``pwrite``. Appends go with one
``write`` each and are made durable every ``sync_every`` records. On open every slot is
checked (a chunk at a time: memory stays bounded whatever the file holds): a bad slot in the
middle is skipped and reported, the records around it are kept; a torn slot at the end is cut
off. A store of schema 1 (``ODARSMPL``, written before this format) is migrated on open,
record by record, into a new file renamed over it.

The header ties the features to the bottleneck that computed them (its SHA-256): when the
bottleneck changes, :meth:`SampleStore.open` recomputes every record's features from its
stored window with the new one (``features_for``) instead of setting the samples aside, and
says so in :attr:`SampleStore.features_recomputed`. A store with both header copies lost is
recovered the same way: its records are read with the expected layout and their features
recomputed.
"""

from __future__ import annotations

import contextlib
import errno
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
from typing import Any, BinaryIO, TypeVar

import numpy as np

from odar.errors import StateError, StateWriteError
from odar.state_files import create_temporary, fsync_directory, move_aside

MAGIC = b"ODARSMP2"
LEGACY_MAGIC = b"ODARSMPL"
SCHEMA_VERSION = 2
RECORD_MAGIC = 0x43455253  # b"SREC" little-endian
WINDOW_SHAPE = (400, 6)
HEADER_BLOCK = 4096
DATA_START = 2 * HEADER_BLOCK
SECTOR = 512
FLAG_DELETED = 1
#: Features computed by no known bottleneck (a recovered header): recompute them.
UNKNOWN_BOTTLENECK = "unknown"
_U32 = struct.Struct("<I")
_MAX_HEADER_BYTES = HEADER_BLOCK - 16
#: Records read per chunk while scanning, loading or migrating: bounds memory.
_CHUNK_RECORDS = 256
#: Bytes a CRC covers start here (after magic and crc).
_CRC_FROM = 8

_log = logging.getLogger(__name__)

FeaturesFor = Callable[[np.ndarray], np.ndarray]
#: Called as records are re-run through a new bottleneck: (records done, records in the file).
RecomputeProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class StoreLayout:
    """What a store is for. Records of another window shape or class count cannot be used;
    features of another bottleneck are recomputed from the windows."""

    bottleneck_sha256: str
    num_classes: int
    feature_size: int
    window_shape: tuple[int, ...] = WINDOW_SHAPE

    def header_bytes(self) -> bytes:
        """One header copy, padded to its 4096-byte block."""
        header = json.dumps(
            {
                "schema": SCHEMA_VERSION,
                "bottleneck_sha256": self.bottleneck_sha256,
                "num_classes": self.num_classes,
                "feature_size": self.feature_size,
                "window_shape": list(self.window_shape),
            },
            sort_keys=True,
        ).encode("utf-8")
        block = MAGIC + _U32.pack(len(header)) + header + _U32.pack(zlib.crc32(header))
        return block.ljust(HEADER_BLOCK, b"\0")

    def record_dtype(self) -> np.dtype:
        fields: list[tuple[Any, ...]] = [
            ("magic", "<u4"),
            ("crc", "<u4"),
            ("label", "<u4"),
            ("flags", "<u4"),
            ("sample_id", "<u8"),
            ("timestamp", "<f8"),
            ("features", "<f4", (self.feature_size,)),
            ("window", "<f4", self.window_shape),
        ]
        packed = np.dtype(fields).itemsize
        padding = -packed % SECTOR  # records fill whole 512-byte sectors
        if padding:
            fields.append(("padding", f"V{padding}"))
        return np.dtype(fields)

    def with_bottleneck(self, sha256: str) -> StoreLayout:
        return StoreLayout(sha256, self.num_classes, self.feature_size, self.window_shape)

    def same_records(self, other: StoreLayout) -> bool:
        """Records of *other* can be kept here (features recomputed if need be)."""
        return (self.num_classes, self.window_shape) == (other.num_classes, other.window_shape)


@dataclass(frozen=True)
class Samples:
    """Records as arrays: ids (N,), labels (N,), timestamps (N,), features (N, F) and, unless
    loaded features-only, windows (N, 400, 6)."""

    ids: np.ndarray
    labels: np.ndarray
    timestamps: np.ndarray
    features: np.ndarray
    windows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


def parse_header(data: bytes, source: str = "<bytes>") -> tuple[StoreLayout, int]:
    """The layout in the first good header copy of *data* and where records start."""
    errors = []
    for start in (0, HEADER_BLOCK):
        try:
            return _parse_header_copy(data[start : start + HEADER_BLOCK], source), DATA_START
        except StateError as error:
            errors.append(str(error))
    raise StateError(errors[0] if len(set(errors)) == 1 else "; ".join(errors))


def _parse_header_copy(data: bytes, source: str) -> StoreLayout:
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
    fields = _json_object(header, source)
    if fields.get("schema") != SCHEMA_VERSION:
        raise StateError(f"{source}: not schema {SCHEMA_VERSION} of the sample store")
    return _layout_from(fields, "bottleneck_sha256", source)


def _json_object(header: bytes, source: str) -> dict:
    try:
        fields = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StateError(f"{source}: unreadable header") from None
    if not isinstance(fields, dict):
        raise StateError(f"{source}: header is not a JSON object")
    return fields


def _layout_from(fields: dict, hash_key: str, source: str) -> StoreLayout:
    try:
        layout = StoreLayout(
            bottleneck_sha256=_typed(fields, hash_key, str),
            num_classes=_typed(fields, "num_classes", int),
            feature_size=_typed(fields, "feature_size", int),
            window_shape=tuple(_typed(fields, "window_shape", list)),
        )
    except (TypeError, KeyError) as error:
        raise StateError(f"{source}: bad header field {error}") from None
    dims = (layout.num_classes, layout.feature_size, *layout.window_shape)
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 2**20 for n in dims):
        raise StateError(f"{source}: implausible dimensions in the header: {fields}")
    return layout


T = TypeVar("T")


def _typed(fields: dict[str, Any], name: str, kind: type[T]) -> T:
    value = fields[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r}")
    return value


def open_no_follow(path: Path) -> BinaryIO:
    """*path* for reading; :class:`StateError` if it is a symlink (never read through)."""
    try:
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StateError(f"{path}: a symlink, not a state file of ours") from None
        raise


@dataclass
class _Entry:
    slot: int
    sample_id: int
    label: int


class SampleStore:
    """An open store; create, migrate or recover it with :meth:`open`. Thread-safe."""

    def __init__(
        self,
        path: Path,
        layout: StoreLayout,
        descriptor: int,
        entries: list[_Entry],
        slots: int,
        damaged: int,
        sync_every: int,
        logger: logging.Logger,
    ) -> None:
        self.path = path
        self.layout = layout
        self._descriptor = descriptor
        self._entries = {entry.sample_id: entry for entry in entries}
        self._slots = slots
        self._next_id = max((e.sample_id for e in entries), default=0) + 1
        self._counts = [0] * layout.num_classes
        for entry in entries:
            self._counts[entry.label] += 1
        #: Slots found damaged on open (skipped, their neighbours kept).
        self.damaged_records = damaged
        #: True when open() recomputed the features with a new bottleneck (or after a lost
        #: header): a head trained on the old features must be retrained.
        self.features_recomputed = False
        self._sync_every = sync_every
        self._unsynced = 0
        #: Bounds (bytes) :meth:`can_accept` checks: the store's size, the free space kept.
        self.max_bytes: int | None = None
        self.reserve_free_bytes = 0
        self._log = logger
        self._dtype = layout.record_dtype()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        layout: StoreLayout,
        *,
        sync_every: int = 1,
        features_for: FeaturesFor | None = None,
        legacy_manifest_hash: str | None = None,
        wall_clock: Callable[[], float] = time.time,
        logger: logging.Logger = _log,
        progress: RecomputeProgress | None = None,
    ) -> SampleStore:
        """Open the store at *path*: create it, migrate a schema-1 store, recompute features a
        different bottleneck made (with *features_for*, windows (n, 400, 6) -> features
        (n, F)), or move a foreign or unusable one aside and begin anew. A recompute can take
        minutes on a large store: *progress* hears of every chunk of records it finishes.

        *sync_every*: fsync after this many appended records (1: each; 0: leave it to the
        kernel). *legacy_manifest_hash*: the manifest hash a schema-1 store was bound to that
        means its features are this bottleneck's. Raises :class:`StateWriteError` if the store
        cannot be created or rewritten.
        """
        path = Path(path)
        if sync_every < 0:
            raise ValueError(f"sync_every must be >= 0, got {sync_every}")
        now = wall_clock()
        try:
            found = _identify(path, layout, legacy_manifest_hash, logger)
        except FileNotFoundError:
            _create(path, layout)
            found = layout
        except StateError as error:
            _set_aside(path, error, now, logger)
            _create(path, layout)
            found = layout
        except OSError as error:
            raise StateWriteError(error.errno, f"cannot read {path}: {error.strerror}") from error
        recomputed = False
        if found != layout:
            if not found.same_records(layout) or features_for is None:
                _set_aside(
                    path,
                    StateError(f"{path}: belongs to other artifacts or classes ({found})"),
                    now,
                    logger,
                )
                _create(path, layout)
            else:
                _rewrite(path, found, layout, features_for, logger, progress)
                recomputed = True
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            raise StateWriteError(error.errno, f"cannot open {path}: {error.strerror}") from error
        try:
            entries, slots, damaged, highest_id = _scan(descriptor, path, layout, logger)
        except BaseException:
            os.close(descriptor)
            raise
        store = cls(path, layout, descriptor, entries, slots, damaged, sync_every, logger)
        store._next_id = max(store._next_id, highest_id + 1)
        store.features_recomputed = recomputed
        return store

    # ------------------------------------------------------------------ reading

    def counts(self) -> tuple[int, ...]:
        """Samples per class, by class index."""
        with self._lock:
            return tuple(self._counts)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._entries)

    def size_bytes(self) -> int:
        with self._lock:
            return DATA_START + self._slots * self._dtype.itemsize

    def set_bounds(self, max_bytes: int | None, reserve_free_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.reserve_free_bytes = reserve_free_bytes

    def can_accept(self) -> str | None:
        """None if one more sample fits within the bounds; else why not (for the journal and
        STATUS), naming the config key."""
        record = self._dtype.itemsize
        size = self.size_bytes()
        if self.max_bytes is not None and size + record > self.max_bytes:
            return (
                f"the sample store is full ({size / 2**20:.0f} MiB, storage.max_samples_mib "
                f"{self.max_bytes / 2**20:.0f})"
            )
        try:
            stats = os.statvfs(self.path.parent)
        except OSError as error:
            return f"cannot see the free space of {self.path.parent}: {error.strerror}"
        free = stats.f_bavail * stats.f_frsize
        if free - record < self.reserve_free_bytes:
            return (
                f"the disk is nearly full ({free / 2**20:.1f} MiB free, storage.reserve_free_mib "
                f"{self.reserve_free_bytes / 2**20:.0f})"
            )
        return None

    def load(self, *, windows: bool = True) -> Samples:
        """Every live record as arrays, oldest first (copies: safe while appends go on).
        ``windows=False``: features only, for training (no raw windows in memory)."""
        ids: list[int] = []
        labels: list[int] = []
        stamps: list[float] = []
        features: list[np.ndarray] = []
        raw: list[np.ndarray] = []
        for chunk in self._chunks():
            ids.extend(chunk["sample_id"].tolist())
            labels.extend(chunk["label"].tolist())
            stamps.extend(chunk["timestamp"].tolist())
            features.append(chunk["features"].copy())
            if windows:
                raw.append(chunk["window"].copy())
        size = self.layout.feature_size
        return Samples(
            ids=np.asarray(ids, np.int64),
            labels=np.asarray(labels, np.int64),
            timestamps=np.asarray(stamps, np.float64),
            features=np.concatenate(features) if features else np.zeros((0, size), np.float32),
            windows=(
                (
                    np.concatenate(raw)
                    if raw
                    else np.zeros((0, *self.layout.window_shape), np.float32)
                )
                if windows
                else None
            ),
        )

    def load_features(self) -> Samples:
        return self.load(windows=False)

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray, np.ndarray]]:
        """(label, timestamp, features, window) per live record, oldest first."""
        for chunk in self._chunks():
            for record in chunk:
                yield (
                    int(record["label"]),
                    float(record["timestamp"]),
                    record["features"].copy(),
                    record["window"].copy(),
                )

    def export(self, path: str | os.PathLike[str], ids: list[int] | None = None) -> int:
        """Write the live records (or those of *ids*) to an ``.npz`` (ids, labels, timestamps,
        features, windows); the number written."""
        wanted = None if ids is None else set(ids)
        samples = self.load()
        keep = (
            np.ones(len(samples), bool) if wanted is None else np.isin(samples.ids, sorted(wanted))
        )
        assert samples.windows is not None
        with open(path, "wb") as file:
            np.savez(
                file,
                ids=samples.ids[keep],
                labels=samples.labels[keep],
                timestamps=samples.timestamps[keep],
                features=samples.features[keep],
                windows=samples.windows[keep],
            )
        return int(keep.sum())

    def _chunks(self) -> Iterator[np.ndarray]:
        """Live records, a bounded chunk at a time."""
        with self._lock:
            live = sorted(entry.slot for entry in self._entries.values())
            descriptor = self._descriptor
        size = self._dtype.itemsize
        groups: list[list[int]] = []
        for slot in live:
            if groups and slot - groups[-1][0] < _CHUNK_RECORDS:
                groups[-1].append(slot)
            else:
                groups.append([slot])
        for slots in groups:
            first, last = slots[0], slots[-1]
            with self._lock:
                data = os.pread(descriptor, (last - first + 1) * size, DATA_START + first * size)
            records = np.frombuffer(data, dtype=self._dtype, count=len(data) // size)
            chosen = records[[slot - first for slot in slots]]
            # A delete may have landed since the slots were listed.
            yield chosen[(chosen["flags"] & FLAG_DELETED) == 0]

    # ------------------------------------------------------------------ writing

    def append(self, label: int, features: np.ndarray, window: np.ndarray, timestamp: float) -> int:
        """Add one sample and return its id; on a write error the store is left as it was and
        :class:`StateWriteError` is raised."""
        layout = self.layout
        if not 0 <= label < layout.num_classes:
            raise ValueError(f"label {label} is not a class index (0-{layout.num_classes - 1})")
        record = np.zeros(1, dtype=self._dtype)
        try:
            record["features"] = np.asarray(features, np.float32).reshape(layout.feature_size)
            record["window"] = np.asarray(window, np.float32).reshape(layout.window_shape)
        except ValueError:
            raise ValueError(
                f"sample shapes {np.shape(features)} and {np.shape(window)} do not fit "
                f"({self.layout.feature_size},) and {self.layout.window_shape}"
            ) from None
        record["label"] = label
        record["timestamp"] = timestamp
        with self._lock:
            sample_id = self._next_id
            record["sample_id"] = sample_id
            data = _sealed(record)
            size_before = DATA_START + self._slots * self._dtype.itemsize
            try:
                _pwrite_all(self._descriptor, data, size_before)
                self._unsynced += 1
                if self._sync_every and self._unsynced >= self._sync_every:
                    os.fsync(self._descriptor)
                    self._unsynced = 0
            except OSError as error:
                self._undo_append(size_before)
                raise StateWriteError(
                    error.errno, f"cannot append to {self.path}: {error.strerror or error}"
                ) from error
            self._entries[sample_id] = _Entry(self._slots, sample_id, label)
            self._slots += 1
            self._next_id += 1
            self._counts[label] += 1
        return sample_id

    def delete(self, ids: list[int]) -> int:
        """Mark the records *ids* deleted (their slots stay until a compaction); how many."""
        return self._rewrite_slots(ids, lambda record: record.__setitem__("flags", FLAG_DELETED))

    def relabel(self, ids: list[int], label: int) -> int:
        """Give the records *ids* the class *label*; how many changed."""
        if not 0 <= label < self.layout.num_classes:
            raise ValueError(f"label {label} is not a class index")
        return self._rewrite_slots(ids, lambda record: record.__setitem__("label", label))

    def _rewrite_slots(self, ids: list[int], change: Callable[[np.ndarray], None]) -> int:
        size = self._dtype.itemsize
        done = 0
        with self._lock:
            for sample_id in ids:
                entry = self._entries.get(sample_id)
                if entry is None:
                    continue
                offset = DATA_START + entry.slot * size
                record = np.frombuffer(
                    os.pread(self._descriptor, size, offset), dtype=self._dtype
                ).copy()
                change(record[0])
                sealed = _sealed(record)
                try:
                    # magic, crc, label, flags: one sector, one write.
                    os.pwrite(self._descriptor, sealed[:16], offset)
                    os.fsync(self._descriptor)
                except OSError as error:
                    raise StateWriteError(
                        error.errno, f"cannot change {self.path}: {error.strerror or error}"
                    ) from error
                self._counts[entry.label] -= 1
                if int(record["flags"][0]) & FLAG_DELETED:
                    del self._entries[sample_id]
                else:
                    entry.label = int(record["label"][0])
                    self._counts[entry.label] += 1
                done += 1
        return done

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
        # next append land on a slot boundary.
        try:
            os.ftruncate(self._descriptor, size_before)
        except OSError as error:
            self._log.error("cannot cut a partial record off %s: %s", self.path, error)


def _sealed(record: np.ndarray) -> bytes:
    """The record's bytes with its magic and CRC set."""
    record["magic"] = RECORD_MAGIC
    raw = bytearray(record.tobytes())
    _U32.pack_into(raw, 4, zlib.crc32(memoryview(raw)[_CRC_FROM:]))
    return bytes(raw)


def _record_ok(chunk: bytes, start: int, size: int, num_classes: int) -> bool:
    magic, crc, label = struct.unpack_from("<III", chunk, start)
    if magic != RECORD_MAGIC or label >= num_classes:
        return False
    return zlib.crc32(memoryview(chunk)[start + _CRC_FROM : start + size]) == crc


def _identify(
    path: Path, layout: StoreLayout, legacy_manifest_hash: str | None, logger: logging.Logger
) -> StoreLayout:
    """The layout of the store at *path*, migrating a schema-1 store first. StateError if it
    is not ours."""
    with open_no_follow(path) as file:
        head = file.read(DATA_START)
    if head.startswith(LEGACY_MAGIC):
        return _migrate_legacy(path, head, layout, legacy_manifest_hash, logger)
    try:
        found = parse_header(head, str(path))[0]
    except StateError as error:
        if not _has_records(path, layout):
            raise
        # Both header copies are damaged but records follow: keep them, recompute features.
        logger.warning("%s; rebuilding the header from the records", error)
        recovered = layout.with_bottleneck(UNKNOWN_BOTTLENECK)
        _rewrite_header(path, recovered)
        return recovered
    if head[:DATA_START] != found.header_bytes() * 2:
        # One copy is damaged (or short): restore it from the other.
        logger.warning("%s: a damaged copy of the header restored from the other", path)
        _rewrite_header(path, found)
    return found


def _has_records(path: Path, layout: StoreLayout) -> bool:
    """A good record of *layout* somewhere in the first slots after the header."""
    size = layout.record_dtype().itemsize
    with open_no_follow(path) as file:
        file.seek(DATA_START)
        chunk = file.read(size * 64)
    return any(
        _record_ok(chunk, index * size, size, layout.num_classes)
        for index in range(len(chunk) // size)
    )


def _rewrite_header(path: Path, layout: StoreLayout) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            header = layout.header_bytes()
            os.pwrite(descriptor, header + header, 0)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise StateWriteError(
            error.errno, f"cannot rewrite the header of {path}: {error.strerror}"
        ) from error


def _scan(
    descriptor: int, path: Path, layout: StoreLayout, logger: logging.Logger
) -> tuple[list[_Entry], int, int, int]:
    """Index the good records; skip damaged slots; cut a torn tail. (entries, slots, damaged,
    the highest sample id seen, deleted ones too)"""
    dtype = layout.record_dtype()
    size = dtype.itemsize
    file_size = os.fstat(descriptor).st_size
    slots = max(0, (file_size - DATA_START) // size)
    entries: list[_Entry] = []
    bad_slots: list[int] = []
    seen: set[int] = set()
    highest_id = 0
    for first in range(0, slots, _CHUNK_RECORDS):
        chunk = os.pread(descriptor, size * _CHUNK_RECORDS, DATA_START + first * size)
        records = np.frombuffer(chunk, dtype=dtype, count=len(chunk) // size)
        for index in range(len(records)):
            slot = first + index
            if not _record_ok(chunk, index * size, size, layout.num_classes):
                bad_slots.append(slot)
                continue
            sample_id = int(records["sample_id"][index])
            highest_id = max(highest_id, sample_id)
            if int(records["flags"][index]) & FLAG_DELETED or sample_id in seen:
                continue
            seen.add(sample_id)
            entries.append(_Entry(slot, sample_id, int(records["label"][index])))
    # Bad slots at the very end are a torn append (or several): cut them off.
    keep = slots
    while bad_slots and bad_slots[-1] == keep - 1:
        bad_slots.pop()
        keep -= 1
    end = DATA_START + keep * size
    if end < file_size:
        try:
            os.ftruncate(descriptor, end)
            os.fsync(descriptor)
        except OSError as error:
            raise StateWriteError(
                error.errno, f"cannot cut the torn tail off {path}: {error.strerror}"
            ) from error
        logger.warning("%s: cut off %d bytes of a torn last record", path, file_size - end)
    if bad_slots:
        logger.warning(
            "%s: %d damaged records skipped (slots %s), the %d others kept",
            path,
            len(bad_slots),
            _ranges(bad_slots),
            len(entries),
        )
    return entries, keep, len(bad_slots), highest_id


def _ranges(slots: list[int]) -> str:
    parts: list[str] = []
    start = previous = slots[0]
    for slot in [*slots[1:], None]:
        if slot is not None and slot == previous + 1:
            previous = slot
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if slot is not None:
            start = previous = slot
    return ", ".join(parts[:5]) + (", ..." if len(parts) > 5 else "")


def _create(path: Path, layout: StoreLayout) -> None:
    """A new, empty store at *path*, atomically."""
    header = layout.header_bytes()
    with _NewFile(path) as new:
        new.write(header + header)


class _NewFile:
    """A private temp file beside *path*, renamed over it (and synced) when the block ends
    without an error, removed otherwise. OSError -> StateWriteError."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _NewFile:
        try:
            self.descriptor, self.temporary = create_temporary(self.path)
        except OSError as error:
            raise self._failed(error) from error
        self.offset = 0
        return self

    def write(self, data: bytes) -> None:
        _pwrite_all(self.descriptor, data, self.offset)
        self.offset += len(data)

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        try:
            if error is None:
                os.fsync(self.descriptor)
        except OSError as failure:
            error = failure
        finally:
            os.close(self.descriptor)
        if error is None:
            try:
                os.replace(self.temporary, self.path)
            except OSError as failure:
                error = failure
        if error is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temporary)
            if isinstance(error, OSError) and not isinstance(error, StateWriteError):
                raise self._failed(error) from error
            return  # the block's own exception goes on
        fsync_directory(self.path.parent)

    def _failed(self, error: OSError) -> StateWriteError:
        return StateWriteError(error.errno, f"cannot write {self.path}: {error.strerror or error}")


def _rewrite(
    path: Path,
    found: StoreLayout,
    layout: StoreLayout,
    features_for: FeaturesFor,
    logger: logging.Logger,
    progress: RecomputeProgress | None = None,
) -> None:
    """Re-run every stored window through the new bottleneck into a new file renamed over
    *path*; the old file stays whole until the rename."""
    old_dtype, new_dtype = found.record_dtype(), layout.record_dtype()
    size = old_dtype.itemsize
    kept = done = 0
    with open_no_follow(path) as source, _NewFile(path) as new:
        total = max(0, os.fstat(source.fileno()).st_size - DATA_START) // size
        header = layout.header_bytes()
        new.write(header + header)
        source.seek(DATA_START)
        while chunk := source.read(size * _CHUNK_RECORDS):
            records = np.frombuffer(chunk, dtype=old_dtype, count=len(chunk) // size)
            done += len(records)
            good = [
                index
                for index in range(len(records))
                if _record_ok(chunk, index * size, size, found.num_classes)
                and not int(records["flags"][index]) & FLAG_DELETED
            ]
            if not good:
                if progress is not None:
                    progress(done, total)
                continue
            out = np.zeros(len(good), dtype=new_dtype)
            for name in ("label", "sample_id", "timestamp", "window"):
                out[name] = records[name][good]
            out["features"] = np.asarray(features_for(out["window"]), np.float32).reshape(
                len(good), layout.feature_size
            )
            new.write(b"".join(_sealed(out[i : i + 1]) for i in range(len(good))))
            kept += len(good)
            if progress is not None:
                progress(done, total)
    logger.warning(
        "%s: the bottleneck changed (%s -> %s); features of %d samples recomputed from their "
        "windows",
        path,
        found.bottleneck_sha256[:12],
        layout.bottleneck_sha256[:12],
        kept,
    )


def _migrate_legacy(
    path: Path,
    head: bytes,
    layout: StoreLayout,
    legacy_manifest_hash: str | None,
    logger: logging.Logger,
) -> StoreLayout:
    """Copy a schema-1 store (``ODARSMPL``) record by record into schema 2; its layout."""
    prefix = len(LEGACY_MAGIC) + _U32.size
    if len(head) < prefix:
        raise StateError(f"{path}: a schema-1 sample store with a truncated header")
    (length,) = _U32.unpack_from(head, len(LEGACY_MAGIC))
    if length > _MAX_HEADER_BYTES or len(head) < prefix + length + _U32.size:
        raise StateError(f"{path}: a schema-1 sample store with a truncated header")
    header = head[prefix : prefix + length]
    if zlib.crc32(header) != _U32.unpack_from(head, prefix + length)[0]:
        raise StateError(f"{path}: a schema-1 sample store with a damaged header")
    fields = _json_object(header, str(path))
    old = _layout_from(fields, "manifest_hash", str(path))
    same_features = legacy_manifest_hash is not None and old.bottleneck_sha256 == (
        legacy_manifest_hash
    )
    found = layout.with_bottleneck(
        layout.bottleneck_sha256 if same_features else UNKNOWN_BOTTLENECK
    )
    found = StoreLayout(
        found.bottleneck_sha256, old.num_classes, old.feature_size, old.window_shape
    )
    legacy = np.dtype(
        [
            ("body_length", "<u4"),
            ("crc", "<u4"),
            ("label", "<u4"),
            ("timestamp", "<f8"),
            ("features", "<f4", (old.feature_size,)),
            ("window", "<f4", old.window_shape),
        ]
    )
    size, body_length = legacy.itemsize, legacy.itemsize - 8
    data_start = prefix + length + _U32.size
    new_dtype = found.record_dtype()
    migrated = skipped = 0
    with open_no_follow(path) as source, _NewFile(path) as new:
        out_header = found.header_bytes()
        new.write(out_header + out_header)
        source.seek(data_start)
        while chunk := source.read(size * _CHUNK_RECORDS):
            records = np.frombuffer(chunk, dtype=legacy, count=len(chunk) // size)
            good = [
                index
                for index in range(len(records))
                if records["body_length"][index] == body_length
                and records["label"][index] < old.num_classes
                and zlib.crc32(chunk[index * size + 8 : (index + 1) * size])
                == records["crc"][index]
            ]
            skipped += len(records) - len(good)
            if not good:
                continue
            out = np.zeros(len(good), dtype=new_dtype)
            for name in ("label", "timestamp", "features", "window"):
                out[name] = records[name][good]
            out["sample_id"] = np.arange(migrated + 1, migrated + 1 + len(good))
            new.write(b"".join(_sealed(out[i : i + 1]) for i in range(len(good))))
            migrated += len(good)
    logger.warning(
        "%s: migrated %d samples from schema 1 to %d%s",
        path,
        migrated,
        SCHEMA_VERSION,
        f" ({skipped} damaged records skipped)" if skipped else "",
    )
    return found


def _set_aside(path: Path, error: StateError, now: float, logger: logging.Logger) -> None:
    try:
        moved = move_aside(path, now)
    except OSError as move_error:
        raise StateWriteError(
            move_error.errno, f"{error}; cannot move it aside: {move_error.strerror}"
        ) from move_error
    logger.warning("%s; moved to %s, starting an empty store", error, moved.name)


def _pwrite_all(descriptor: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(descriptor, view, offset)
        view, offset = view[written:], offset + written
