"""The state directory (``paths.state_dir``), checked and locked before any state file is opened.

The daemon may run as root (an install without the unit's ``User=``, a test), so a directory
someone else can write to would let them plant files or links for it to read or write. Refused
(:class:`StateDirectoryError`, exit 78) when:

- it is a symlink or not a directory;
- it is owned by another user than the one the daemon runs as;
- it is group- or world-writable.

A second daemon on the same directory would interleave appends and saves with the first: an
exclusive ``flock`` on ``<state_dir>/.lock``, held for the daemon's life, refuses it. The kernel
drops the lock when the process dies, however it dies, so a crash never leaves it stuck.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from odar.errors import StateDirectoryError
from odar.state_files import remove_stale_temporaries

LOCK_FILE = ".lock"
_DIRECTORY_MODE = 0o700

_log = logging.getLogger(__name__)


class StateDirectory:
    """An open, checked, locked state directory; :meth:`close` releases the lock."""

    def __init__(self, path: Path, lock_descriptor: int) -> None:
        self.path = path
        self._lock_descriptor = lock_descriptor

    @classmethod
    def open(
        cls, path: Path, *, owner_uid: int | None = None, logger: logging.Logger = _log
    ) -> StateDirectory:
        """Create *path* (0700) if absent, check it, take its lock. *owner_uid*: who must own it
        (default: this process's effective user)."""
        owner_uid = os.geteuid() if owner_uid is None else owner_uid
        where = f"paths.state_dir: {path}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, _DIRECTORY_MODE)
            info = os.lstat(path)
        except OSError as error:
            raise StateDirectoryError(f"{where}: cannot create it: {error.strerror}") from error
        check_state_directory(path, info, owner_uid)
        lock_path = path / LOCK_FILE
        try:
            descriptor = os.open(
                lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError as error:
            raise StateDirectoryError(
                f"{where}: cannot open the lock file {lock_path}: {error.strerror}"
            ) from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateDirectoryError(
                    f"{where}: in use by another odar (it holds {lock_path}); "
                    "one daemon per state directory"
                ) from None
            raise StateDirectoryError(f"{where}: cannot lock {lock_path}: {error}") from error
        return cls(path, descriptor)

    def file(self, name: str) -> Path:
        return self.path / name

    def remove_stale_temporaries(self, names: tuple[str, ...], logger: logging.Logger) -> None:
        """Temp files of saves cut short, of the files *names*: safe now, nothing else can be
        saving them (we hold the lock)."""
        for name in names:
            remove_stale_temporaries(self.path / name, logger)

    def close(self) -> None:
        if self._lock_descriptor >= 0:
            os.close(self._lock_descriptor)  # drops the flock
            self._lock_descriptor = -1


def check_state_directory(path: Path, info: os.stat_result, owner_uid: int) -> None:
    """:class:`StateDirectoryError` unless *info* (an lstat of *path*) is a directory owned by
    *owner_uid* that no one else may write to."""
    where = f"paths.state_dir: {path}"
    if stat.S_ISLNK(info.st_mode):
        raise StateDirectoryError(f"{where}: is a symlink; give the real directory")
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirectoryError(f"{where}: is not a directory")
    if info.st_uid != owner_uid:
        raise StateDirectoryError(
            f"{where}: owned by uid {info.st_uid}, not by the user odar runs as "
            f"(uid {owner_uid}); chown it or run odar as its owner"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateDirectoryError(
            f"{where}: writable by its group or by everyone (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); chmod go-w it"
        )
