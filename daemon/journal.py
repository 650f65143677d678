"""Logging to the systemd journal with structured ``ODAR_*`` fields, or to stderr without one.

``log_event(logger, "epoch 3 loss 0.41", epoch=3, loss=0.41, mode="train")`` becomes one
journal entry with ``ODAR_EPOCH=3 ODAR_LOSS=0.41 ODAR_MODE=train`` (filter with
``journalctl -u odar ODAR_MODE=train``), or the stderr line
``epoch 3 loss 0.41 [epoch=3 loss=0.41 mode=train]``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from odar.drivers.clock import Clock

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
FIELD_PREFIX = "ODAR_"
#: The record attribute where log_event keeps the fields for the stderr formatter.
_FIELDS_ATTRIBUTE = "odar_fields"
_FIELD_NAME = re.compile(r"[A-Z0-9_]+")
#: sd-daemon(3) priority prefixes: journald reads them off stderr lines it captures.
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def journal_available(environ: Mapping[str, str] | None = None) -> bool:
    """True when a journal would receive what we send (not just silently drop it)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("JOURNAL_STREAM")) or JOURNAL_SOCKET.exists()


def setup_logging(
    level: int | str,
    identifier: str = "odar",
    *,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    journal_sender: Callable[..., Any] | None = None,
) -> logging.Handler:
    """Send the root logger to the journal if one exists, else to *stream* (stderr).

    Calling it again (SIGHUP reload) replaces the handler it installed before. Returns the
    handler, so tests and the service can see which way logs go.
    """
    environ = os.environ if environ is None else environ
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    handler = _journal_handler(identifier, journal_sender) if journal_available(environ) else None
    if handler is None:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(StderrFormatter(to_journal=bool(environ.get("JOURNAL_STREAM"))))
    handler.set_name(f"{identifier}-setup-logging")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == handler.get_name():
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def _journal_handler(identifier: str, sender: Callable[..., Any] | None) -> logging.Handler | None:
    try:
        from systemd import journal
    except ImportError:
        return None
    if sender is None:
        return journal.JournalHandler(SYSLOG_IDENTIFIER=identifier)
    return journal.JournalHandler(sender_function=sender, SYSLOG_IDENTIFIER=identifier)


def journal_fields(**fields: object) -> dict[str, str]:
    """``{"ODAR_EPOCH": "3", ...}``: upper-cased and prefixed, values as strings."""
    named = {}
    for name, value in fields.items():
        upper = name.upper()
        if not upper.startswith(FIELD_PREFIX):
            upper = FIELD_PREFIX + upper
        if not _FIELD_NAME.fullmatch(upper):
            raise ValueError(f"journal field {name!r}: only letters, digits and _ are allowed")
        named[upper] = _format_value(value)
    return named


def log_event(
    logger: logging.Logger,
    message: str,
    level: int = logging.INFO,
    *,
    message_id: str | None = None,
    **fields: object,
) -> None:
    """Log *message* with structured fields (see the module docstring) and, for the entries
    listed in :mod:`odar.message_ids`, the journal's ``MESSAGE_ID``."""
    if not logger.isEnabledFor(level):
        return
    named = journal_fields(**fields)
    extra: dict[str, object] = dict(named)
    extra[_FIELDS_ATTRIBUTE] = named
    if message_id is not None:
        extra["MESSAGE_ID"] = message_id
    logger.log(level, message, extra=extra, stacklevel=2)


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ",".join(_format_value(item) for item in value)
    return str(value)


class StderrFormatter(logging.Formatter):
    """One readable line per event; no timestamp when journald captures stderr (it adds one)."""

    def __init__(self, to_journal: bool) -> None:
        if to_journal:
            super().__init__("%(name)s: %(message)s")
        else:
            super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._to_journal = to_journal

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, str] | None = getattr(record, _FIELDS_ATTRIBUTE, None)
        if fields:
            rendered = " ".join(
                f"{name.removeprefix(FIELD_PREFIX).lower()}={value}"
                for name, value in fields.items()
            )
            line = f"{line} [{rendered}]"
        if self._to_journal:
            priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
            # A traceback spans lines; journald would cut it into entries without the prefix.
            line = "\n".join(f"<{priority}>{part}" for part in line.splitlines())
        return line


class RateLimiter:
    """At most *max_per_second* events pass; the rest are counted so the next line can say so.

    For loss and probability lines only: state changes are logged without a limiter.
    """

    def __init__(self, max_per_second: float, clock: Clock) -> None:
        if not max_per_second > 0:
            raise ValueError(f"max_per_second must be > 0, got {max_per_second!r}")
        self._interval = 1.0 / max_per_second
        self._clock = clock
        self._next_allowed: float | None = None
        self._suppressed = 0

    def allow(self) -> bool:
        now = self._clock.monotonic()
        if self._next_allowed is None or now >= self._next_allowed:
            # From now, not from the last slot: a quiet spell does not bank a burst.
            self._next_allowed = now + self._interval
            return True
        self._suppressed += 1
        return False

    def take_suppressed(self) -> int:
        """Events refused since the last call; resets the count."""
        count, self._suppressed = self._suppressed, 0
        return count
