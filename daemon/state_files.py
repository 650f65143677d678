"""Writing and reading the daemon's own files in its state directory, safely.

Every replacement goes through :func:`write_atomically`: a temp file with a random name in the
same directory, created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600, written,
fsynced, renamed over the target and the directory fsynced. The random name and ``O_EXCL``
mean two saves never share a temp file (one cannot truncate the other's) and a symlink planted
at a likely name is refused instead of followed: the daemon may run as root, and a predictable
name would let anyone who can write to the directory make it overwrite any file.
``os.replace`` renames over a symlink at the target itself, never through it.

Reads go through :func:`read_bounded` with ``O_NOFOLLOW``: a state file that is a symlink is
treated as bad and moved aside (the link, not what it points to).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import time
from pathlib import Path

from odar.errors import StateError, StateWriteError

_log = logging.getLogger(__name__)

#: Temp files are ``.<name>.tmp-<random hex>``.
TEMP_MARK = ".tmp-"
_TEMP_TRIES = 16
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_MODE = 0o600


def temp_prefix(path: Path) -> str:
    """What every temp file of *path* is named after (the random part follows)."""
    return f".{path.name}{TEMP_MARK}"


def create_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty, private temp file beside *path*: (descriptor, its path). Never follows or
    reuses an existing name; OSError if it cannot be created."""
    for _ in range(_TEMP_TRIES):
        temporary = path.with_name(temp_prefix(path) + secrets.token_hex(8))
        try:
            return os.open(temporary, _OPEN_NEW, FILE_MODE), temporary
        except FileExistsError:
            continue  # someone's file (or a planted link) has this name: draw another
    raise OSError(errno.EEXIST, f"no free temp name beside {path} in {_TEMP_TRIES} tries")


def write_atomically(path: Path, data: bytes) -> None:
    """Replace *path* with *data* so that a power cut leaves the old or the new file, whole.

    Temp file in the same directory, fsync, rename over, fsync of the directory (without the
    last step the rename itself may be lost). :class:`StateWriteError` on failure; the old
    file is then untouched and no temp file is left.
    """
    temporary: Path | None = None
    try:
        descriptor, temporary = create_temporary(path)
        try:
            view = memoryview(data)
            while view:
                written = os.write(descriptor, view)
                view = view[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise StateWriteError(
            error.errno, f"cannot save {path}: {error.strerror or error}"
        ) from error
    fsync_directory(path.parent)


def remove_stale_temporaries(path: Path, logger: logging.Logger = _log) -> None:
    """Delete every temp file a save of *path* cut short left behind (see
    :func:`write_atomically`). Call only when no save of *path* can be under way (at start,
    under the owner's lock). Unlinking removes a symlink itself, never its target."""
    prefix = temp_prefix(path)
    try:
        with os.scandir(path.parent) as entries:
            leftovers = [entry.name for entry in entries if entry.name.startswith(prefix)]
    except OSError:
        return
    for name in leftovers:
        try:
            os.unlink(path.with_name(name))
        except FileNotFoundError:
            continue
        except OSError as error:
            logger.warning("cannot remove the stale %s: %s", name, error.strerror)
        else:
            logger.info("removed %s, left by a save that was cut short", name)


def read_bounded(path: Path, limit: int) -> bytes:
    """The whole file, or :class:`StateError` if it is larger than *limit* bytes, a symlink or
    not a regular file. FileNotFoundError if there is none."""
    try:
        descriptor = os.open(path, _OPEN_READ)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StateError(f"{path}: a symlink, not a state file of ours") from None
        raise
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise StateError(f"{path}: not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise StateError(f"{path}: larger than {limit} bytes, not an odar state file")
    return data


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in *directory* durable."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise StateWriteError(
            error.errno, f"cannot sync {directory}: {error.strerror or error}"
        ) from error
    try:
        os.fsync(descriptor)
    except OSError as error:
        raise StateWriteError(
            error.errno, f"cannot sync {directory}: {error.strerror or error}"
        ) from error
    finally:
        os.close(descriptor)


def move_aside(path: Path, now: float) -> Path:
    """Rename *path* to ``<name>.bad-<UTC timestamp>`` (numbered if that exists); the new path.
    A symlink is renamed itself, not followed."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = path.with_name(f"{path.name}.bad-{stamp}")
    number = 1
    while os.path.lexists(target):
        target = path.with_name(f"{path.name}.bad-{stamp}-{number}")
        number += 1
    os.replace(path, target)
    return target
