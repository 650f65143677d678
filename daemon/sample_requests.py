"""Changes to the samples of a running daemon: ``odar samples`` leaves a request in the
daemon's RuntimeDirectory, the daemon carries it out on its open store (so no append is lost
and its counts stay right) and leaves the reply beside it.

    <runtime_dir>/requests/<id>.json         {"op": ..., "args": {...}}; <id>.npz for import
    <runtime_dir>/requests/<id>.reply.json   {"ok": true|false, "message": ..., "counts": [...]}

The directory is the daemon's (0700): only its user and root can ask for changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from odar import sample_edit
from odar.errors import OdarError, StateError
from odar.sample_store import SampleStore

REQUESTS = "requests"
OPERATIONS = ("list", "export", "delete", "delete-last", "clear", "relabel", "import")

_log = logging.getLogger(__name__)

#: windows (n, 400, 6) -> features (n, F) with the store's bottleneck.
FeaturesOf = Callable[[np.ndarray], np.ndarray]


def _existing(store: SampleStore, ids: Sequence[int]) -> list[int]:
    known = set(store.ids())
    missing = sorted(set(ids) - known)
    if missing:
        raise StateError(
            f"no sample {', '.join(map(str, missing))} (odar samples list --all shows the ids)"
        )
    return sorted(set(ids))


def apply(
    store: SampleStore,
    op: str,
    args: dict[str, Any],
    names: Sequence[str],
    path: Path | None,
    resolve_class: Callable[[str], int],
    features_of: FeaturesOf | None = None,
) -> tuple[str, dict[str, Any]]:
    """Carry out one operation on *store* with its own primitives: (what was done, data for
    the caller: the listing for list)."""
    if op == "list":
        samples = store.load(windows=False)
        return "", {
            "ids": samples.ids.tolist(),
            "labels": samples.labels.tolist(),
            "timestamps": samples.timestamps.tolist(),
        }
    if op == "export":
        if path is None:
            raise StateError("export: no file")
        samples = store.load()
        sample_edit.export(samples, names, store.layout, path)
        return f"{len(samples)} samples exported", {}
    if op == "delete":
        ids = _existing(store, [int(i) for i in args["ids"]])
        store.delete(ids)
        return f"deleted sample {', '.join(map(str, ids))}", {}
    if op == "delete-last":
        ids = store.ids()
        if not ids:
            raise StateError("there are no samples")
        store.delete([ids[-1]])
        return f"deleted the last sample (id {ids[-1]})", {"id": ids[-1]}
    if op == "clear":
        index = resolve_class(args["class"])
        samples = store.load(windows=False)
        chosen = samples.ids[samples.labels == index].tolist()
        store.delete(chosen)
        return f"deleted the {len(chosen)} samples of {names[index]}", {}
    if op == "relabel":
        index = resolve_class(args["class"])
        (sample_id,) = _existing(store, [int(args["id"])])
        store.relabel([sample_id], index)
        return f"sample {sample_id} is now {names[index]}", {}
    if op == "import":
        if path is None:
            raise StateError("import: no file")
        labels, imported, bottleneck = sample_edit.read_export(path, store.layout)
        indices = [resolve_class(name) for name in labels]
        assert imported.windows is not None
        features = imported.features
        note = ""
        if len(imported) and bottleneck != store.layout.bottleneck_sha256:
            if features_of is None:
                raise StateError("import: the export's features come from another bottleneck")
            features = features_of(imported.windows)
            note = " (features recomputed from the raw windows: another bottleneck made them)"
        for row, index in enumerate(indices):
            store.append(
                index, features[row], imported.windows[row], float(imported.timestamps[row])
            )
        return f"imported {len(indices)} samples{note}", {}
    raise StateError(f"unknown operation {op!r} (known: {', '.join(OPERATIONS)})")


class RequestBox:
    """The daemon's side: :meth:`handle_pending` once a second from its main loop."""

    def __init__(
        self,
        runtime_dir: Path,
        store: SampleStore,
        names: Sequence[str],
        resolve_class: Callable[[str], int],
        features_of: FeaturesOf,
        on_change: Callable[[str], None],
    ) -> None:
        self.directory = runtime_dir / REQUESTS
        self._store = store
        self._names = names
        self._resolve = resolve_class
        self._features_of = features_of
        self._on_change = on_change
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            _log.warning("odar samples cannot reach the running daemon: %s", error)

    def handle_pending(self) -> None:
        try:
            pending = sorted(self.directory.glob("*.request.json"))
        except OSError:
            return
        for path in pending:
            self._handle(path)

    def _handle(self, path: Path) -> None:
        request_id = path.name.removesuffix(".request.json")
        reply: dict[str, Any]
        request: dict[str, Any] = {}
        given: Path | None = None
        try:
            request = json.loads(path.read_text(encoding="utf-8"))
            op = str(request["op"])
            file = request.get("file")
            given = self.directory / f"{request_id}{file}" if file else None
            message, data = apply(
                self._store,
                op,
                dict(request.get("args", {})),
                self._names,
                given,
                self._resolve,
                self._features_of,
            )
            reply = {"ok": True, "message": message, **data}
            if op not in ("list", "export"):
                self._on_change(message)
        except (OdarError, ValueError, KeyError, OSError) as error:
            reply = {"ok": False, "message": str(error)}
            _log.warning("odar samples request refused: %s", error)
        reply["counts"] = list(self._store.counts())
        reply_path = self.directory / f"{request_id}.reply.json"
        with contextlib.suppress(OSError):
            temporary = self.directory / f".{request_id}.reply.tmp"
            temporary.write_text(json.dumps(reply), encoding="utf-8")
            os.chmod(temporary, 0o644)
            os.replace(temporary, reply_path)
        with contextlib.suppress(OSError):
            path.unlink()
        if request.get("op") == "import" and given is not None:
            with contextlib.suppress(OSError):
                given.unlink()


def ask(
    runtime_dir: Path,
    op: str,
    args: dict[str, Any],
    upload: Path | None = None,
    download_suffix: str | None = None,
    timeout: float = 15.0,
) -> tuple[dict[str, Any], Path | None]:
    """The CLI's side: leave a request for the running daemon and wait for its reply. *upload*
    is copied in for the daemon to read (import); with *download_suffix* the daemon writes a
    file (export) whose path comes back with the reply: the caller moves it and removes it."""
    directory = runtime_dir / REQUESTS
    request_id = uuid.uuid4().hex
    request: dict[str, Any] = {"op": op, "args": args}
    exchanged: Path | None = None
    try:
        if upload is not None:
            request["file"] = upload.suffix.lower()
            exchanged = directory / f"{request_id}{request['file']}"
            exchanged.write_bytes(upload.read_bytes())
        elif download_suffix is not None:
            request["file"] = download_suffix
            exchanged = directory / f"{request_id}{download_suffix}"
        temporary = directory / f".{request_id}.tmp"
        temporary.write_text(json.dumps(request), encoding="utf-8")
        os.replace(temporary, directory / f"{request_id}.request.json")
    except FileNotFoundError as error:
        raise StateError(f"{error.filename}: no such file or directory") from None
    except PermissionError:
        raise StateError(
            f"{directory}: permission denied: ask as the odar user or root (sudo odar samples ...)"
        ) from None
    reply_path = directory / f"{request_id}.reply.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reply_path.exists():
            reply = json.loads(reply_path.read_text(encoding="utf-8"))
            with contextlib.suppress(OSError):
                reply_path.unlink()
            return reply, (exchanged if download_suffix is not None else None)
        time.sleep(0.05)
    raise StateError(
        f"the running daemon did not answer within {timeout:g} s (request left in {directory})"
    )
