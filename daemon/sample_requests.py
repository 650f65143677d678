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
from odar.sample_store import Samples, SampleStore

REQUESTS = "requests"
OPERATIONS = ("delete", "delete-last", "clear", "relabel", "import")

_log = logging.getLogger(__name__)


def apply(
    store: SampleStore,
    op: str,
    args: dict[str, Any],
    names: Sequence[str],
    payload: Path | None,
    resolve_class: Callable[[str], int],
    refeature: Callable[[Samples], Samples] | None = None,
) -> str:
    """Carry out one change on *store*; the message says what was done."""
    if op == "delete":
        ids = [int(i) for i in args["ids"]]
        store.edit(lambda samples: sample_edit.delete(samples, ids))
        return f"deleted sample {', '.join(map(str, sorted(set(ids))))}"
    if op == "delete-last":
        store.edit(sample_edit.delete_last)
        return "deleted the last sample"
    if op == "clear":
        index = resolve_class(args["class"])
        before = store.counts()[index]
        store.edit(lambda samples: sample_edit.clear(samples, index))
        return f"deleted the {before} samples of {names[index]}"
    if op == "relabel":
        index = resolve_class(args["class"])
        sample_id = int(args["id"])
        store.edit(lambda samples: sample_edit.relabel(samples, sample_id, index))
        return f"sample {sample_id} is now {names[index]}"
    if op == "import":
        if payload is None:
            raise StateError("import: no file")
        labels, imported, manifest_hash = sample_edit.read_export(payload, store.layout)
        indices = [resolve_class(name) for name in labels]
        imported = Samples(
            labels=np.asarray(indices, np.int64),
            timestamps=imported.timestamps,
            features=imported.features,
            windows=imported.windows,
        )
        note = ""
        if manifest_hash != store.layout.manifest_hash:
            if refeature is None:
                raise StateError(
                    "import: the export was made with other artifacts; its features do not fit"
                )
            imported = refeature(imported)
            note = " (features recomputed from the raw windows for these artifacts)"
        store.edit(lambda samples: sample_edit.concatenate(samples, imported))
        return f"imported {len(imported)} samples{note}"
    raise StateError(f"unknown operation {op!r} (known: {', '.join(OPERATIONS)})")


class RequestBox:
    """The daemon's side: :meth:`handle_pending` once a second from its main loop."""

    def __init__(
        self,
        runtime_dir: Path,
        store: SampleStore,
        names: Sequence[str],
        resolve_class: Callable[[str], int],
        refeature: Callable[[Samples], Samples],
        on_change: Callable[[str], None],
    ) -> None:
        self.directory = runtime_dir / REQUESTS
        self._store = store
        self._names = names
        self._resolve = resolve_class
        self._refeature = refeature
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
        payload = self.directory / f"{request_id}.npz"
        csv_payload = self.directory / f"{request_id}.csv"
        try:
            request = json.loads(path.read_text(encoding="utf-8"))
            given = payload if payload.exists() else csv_payload if csv_payload.exists() else None
            message = apply(
                self._store,
                str(request["op"]),
                dict(request.get("args", {})),
                self._names,
                given,
                self._resolve,
                self._refeature,
            )
            reply = {"ok": True, "message": message}
            self._on_change(message)
        except (OdarError, ValueError, KeyError, OSError) as error:
            reply = {"ok": False, "message": str(error)}
            _log.warning("odar samples request refused: %s", error)
        reply["counts"] = list(self._store.counts())
        reply_path = self.directory / f"{request_id}.reply.json"
        with contextlib.suppress(OSError):
            temporary = reply_path.with_suffix(".tmp")
            temporary.write_text(json.dumps(reply), encoding="utf-8")
            os.chmod(temporary, 0o644)
            os.replace(temporary, reply_path)
        for leftover in (path, payload, csv_payload):
            with contextlib.suppress(OSError):
                leftover.unlink()


def ask(
    runtime_dir: Path,
    op: str,
    args: dict[str, Any],
    payload: Path | None = None,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """The CLI's side: leave a request for the running daemon and wait for its reply."""
    directory = runtime_dir / REQUESTS
    request_id = uuid.uuid4().hex
    try:
        if payload is not None:
            data = payload.read_bytes()
            staged = directory / f"{request_id}{payload.suffix.lower()}"
            staged.write_bytes(data)
        temporary = directory / f".{request_id}.tmp"
        temporary.write_text(json.dumps({"op": op, "args": args}), encoding="utf-8")
        os.replace(temporary, directory / f"{request_id}.request.json")
    except FileNotFoundError as error:
        raise StateError(f"{error.filename}: no such file or directory") from None
    except PermissionError:
        raise StateError(
            f"{directory}: permission denied: change the samples as the odar user or root "
            "(sudo odar samples ...)"
        ) from None
    reply_path = directory / f"{request_id}.reply.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reply_path.exists():
            reply = json.loads(reply_path.read_text(encoding="utf-8"))
            with contextlib.suppress(OSError):
                reply_path.unlink()
            return reply
        time.sleep(0.05)
    raise StateError(
        f"the running daemon did not answer within {timeout:g} s (request left in {directory})"
    )
