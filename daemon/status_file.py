"""The daemon's status as a small JSON file in its RuntimeDirectory, for ``odar status``,
``odar watch`` and ``odar plot``.

The daemon rewrites it whole (a temp file renamed over it, so a reader never sees half of
one) on every state change and about once a second; it lives on /run (tmpfs), so the writes
cost no SD card wear, and it disappears when the service stops (systemd removes the
RuntimeDirectory). Readers are other users (the ssh login): the file is world-readable, it
holds nothing secret.

The last training run's loss curve is also kept in the state directory
(:data:`TRAINING_RUN_FILE`), so ``odar plot`` works after the service has stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from odar.errors import StateError

STATUS_FILE = "status.json"
TRAINING_RUN_FILE = "last-training.json"
#: Epoch losses kept in the status file for the live chart.
STATUS_LOSSES = 300
#: Epoch losses kept of the last training run (a week of epochs at 1 Hz would be 600k).
RUN_LOSSES = 20_000
SCHEMA = 1


def write_json(path: Path, document: dict[str, Any], mode: int = 0o644) -> None:
    """*document* at *path*, replaced whole (mkstemp in the same directory, then rename)."""
    descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            json.dump(document, file, separators=(",", ":"))
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


class StatusWriter:
    """Writes the status file; a failure is reported once (the status is a convenience: the
    daemon carries on without it)."""

    def __init__(self, directory: Path, on_error: Any) -> None:
        self.path = directory / STATUS_FILE
        self._directory = directory
        self._lock = threading.Lock()
        self._on_error = on_error
        self._failed = False

    def write(self, document: dict[str, Any]) -> None:
        with self._lock:
            try:
                self._directory.mkdir(parents=True, exist_ok=True)
                write_json(self.path, {"schema": SCHEMA, **document})
            except OSError as error:
                if not self._failed:
                    self._on_error(f"cannot write the status file {self.path}: {error}")
                self._failed = True
            else:
                self._failed = False

    def remove(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            self.path.unlink()


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON document at *path*; :class:`StateError` naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateError(f"{path}: no {what}") from None
    except OSError as error:
        raise StateError(f"{path}: cannot read the {what}: {error.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise StateError(f"{path}: the {what} is not JSON") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise StateError(f"{path}: not a schema-{SCHEMA} {what}")
    return document
