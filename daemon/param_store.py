"""The head's parameters, optimizer state and epoch, saved atomically in a checksummed envelope.

File layout (little-endian)::

    b"ODARHEAD"                 magic, 8 bytes
    u32 header_length
    header                      UTF-8 JSON: schema, manifest_hash (the head binding, below),
                                payload_length
    payload                     .npz of the arrays (no pickles)
    SHA-256                     32 bytes, over every byte before it

The header's ``manifest_hash`` field ties the parameters to what they depend on, so a head
trained for one bottleneck or head layout is never loaded into another. Since schema 1's second
release it holds :func:`odar.engine.head_binding` (the bottleneck's SHA-256, the parameters'
and optimizer state's names and shapes, the optimizer), not the manifest file's hash: a
cosmetic edit of manifest.json keeps the head. A file saved under the manifest file's hash by
an earlier odar is still accepted (``also_accept``) and rewritten at the next save. A file that
fails any check is moved aside as ``<name>.bad-<timestamp>`` and :meth:`ParamStore.load`
returns None: training then starts from the ``initialize`` artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from odar.errors import StateError
from odar.state_files import (  # noqa: F401 (re-exported: controls and older callers)
    fsync_directory,
    move_aside,
    read_bounded,
    remove_stale_temporaries,
    write_atomically,
)

MAGIC = b"ODARHEAD"
SCHEMA_VERSION = 1
_DIGEST_BYTES = 32
_LENGTH = struct.Struct("<I")
#: A head is kilobytes; anything near this is not ours, and reading it would waste memory.
MAX_FILE_BYTES = 64 * 1024 * 1024
_PARAM_PREFIX = "param."
_OPTIMIZER_PREFIX = "optimizer."
_EPOCH_KEY = "epoch"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadState:
    """What training needs to carry on where it stopped."""

    params: Mapping[str, np.ndarray]
    optimizer: Mapping[str, np.ndarray] = field(default_factory=dict)
    epoch: int = 0


def encode_head_state(state: HeadState, manifest_hash: str) -> bytes:
    arrays: dict[str, np.ndarray] = {_EPOCH_KEY: np.asarray(state.epoch, dtype=np.int64)}
    for prefix, group in ((_PARAM_PREFIX, state.params), (_OPTIMIZER_PREFIX, state.optimizer)):
        for name, array in group.items():
            arrays[prefix + name] = np.asarray(array)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    header = json.dumps(
        {"schema": SCHEMA_VERSION, "manifest_hash": manifest_hash, "payload_length": len(payload)},
        sort_keys=True,
    ).encode("utf-8")
    body = MAGIC + _LENGTH.pack(len(header)) + header + payload
    return body + hashlib.sha256(body).digest()


def decode_head_state(
    data: bytes, manifest_hash: str, source: str = "<bytes>", also_accept: tuple[str, ...] = ()
) -> HeadState:
    """The state in *data*; :class:`StateError` naming *source* if it is not a good one for us."""
    if len(data) < len(MAGIC) + _LENGTH.size + _DIGEST_BYTES or not data.startswith(MAGIC):
        raise StateError(f"{source}: not an odar parameter file (bad magic or too short)")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise StateError(f"{source}: checksum mismatch (truncated or corrupt)")
    (header_length,) = _LENGTH.unpack_from(body, len(MAGIC))
    header_start = len(MAGIC) + _LENGTH.size
    header_bytes = body[header_start : header_start + header_length]
    payload = body[header_start + header_length :]
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StateError(f"{source}: unreadable header") from None
    if not isinstance(header, dict):
        raise StateError(f"{source}: header is not a JSON object")
    if header.get("schema") != SCHEMA_VERSION:
        raise StateError(
            f"{source}: schema {header.get('schema')!r}, this odar reads {SCHEMA_VERSION}"
        )
    if header.get("manifest_hash") not in (manifest_hash, *also_accept):
        raise StateError(
            f"{source}: trained for artifacts {header.get('manifest_hash')!r}, "
            f"these are {manifest_hash!r}"
        )
    if header.get("payload_length") != len(payload):
        raise StateError(f"{source}: payload is {len(payload)} bytes, header says otherwise")
    return _decode_payload(payload, source)


def _decode_payload(payload: bytes, source: str) -> HeadState:
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (
        ValueError,
        OSError,
        EOFError,
        KeyError,
        NotImplementedError,
        RuntimeError,  # zipfile: a member flagged as encrypted
        zipfile.BadZipFile,
        zlib.error,
    ) as error:
        raise StateError(f"{source}: unreadable arrays: {error}") from None
    epoch = arrays.pop(_EPOCH_KEY, None)
    if epoch is None or epoch.shape != () or epoch.dtype.kind != "i":
        raise StateError(f"{source}: no epoch count")
    params = {
        k.removeprefix(_PARAM_PREFIX): v for k, v in arrays.items() if k.startswith(_PARAM_PREFIX)
    }
    optimizer = {
        k.removeprefix(_OPTIMIZER_PREFIX): v
        for k, v in arrays.items()
        if k.startswith(_OPTIMIZER_PREFIX)
    }
    if len(params) + len(optimizer) != len(arrays):
        raise StateError(f"{source}: unexpected arrays {sorted(arrays)}")
    return HeadState(params=params, optimizer=optimizer, epoch=int(epoch))


class ParamStore:
    """``<state_dir>/head.params``: :meth:`save` replaces it atomically, :meth:`load` checks it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest_hash: str,
        *,
        also_accept: tuple[str, ...] = (),
        wall_clock: Callable[[], float] = time.time,
        logger: logging.Logger = _log,
    ) -> None:
        self.path = Path(path)
        self.manifest_hash = manifest_hash
        self._also_accept = also_accept
        self._wall_clock = wall_clock
        self._log = logger
        # One save at a time: the trainer's periodic save, its save on stop and the shutdown
        # save may come from different threads; each must land whole, one after the other.
        self._lock = threading.Lock()

    def save(self, state: HeadState) -> None:
        """Replace the file; on failure raise :class:`StateWriteError`, the old file intact."""
        data = encode_head_state(state, self.manifest_hash)
        with self._lock:
            write_atomically(self.path, data)

    def load(self) -> HeadState | None:
        """The saved state, or None if there is none or it was bad (then it is moved aside)."""
        with self._lock:
            return self._load()

    def _load(self) -> HeadState | None:
        remove_stale_temporaries(self.path, self._log)
        try:
            data = read_bounded(self.path, MAX_FILE_BYTES)
        except FileNotFoundError:
            return None
        except StateError as error:
            self._set_aside(error)
            return None
        except OSError as error:
            self._log.error("cannot read %s: %s; starting from initialize", self.path, error)
            return None
        try:
            return decode_head_state(
                data, self.manifest_hash, str(self.path), also_accept=self._also_accept
            )
        except StateError as error:
            self._set_aside(error)
            return None

    def _set_aside(self, error: StateError) -> None:
        try:
            moved = move_aside(self.path, self._wall_clock())
        except OSError as move_error:
            self._log.error("%s; cannot move it aside: %s", error, move_error)
            return
        self._log.warning("%s; moved to %s, training starts from initialize", error, moved.name)
