"""The C heap over weeks of uptime: two malloc arenas and a fixed mmap threshold.

What the daemon allocates and frees all day (a window's arrays, TFLite's buffers, log records,
the trainer's copy of every stored sample's features, the sample store's read chunks) goes
through glibc's malloc. Two of its defaults let the resident size creep up with hours of
uptime although the memory in use does not:

- one arena per thread that allocates (up to 8 a core), each keeping its own freed memory;
- a *dynamic* mmap threshold: once a block bigger than 128 KiB that came from mmap is freed,
  blocks up to that size come from the heap instead. The trainer's features (536 bytes a
  stored sample) and the store's read chunks (2.5 MiB) grow with the store, so every training
  run then leaves a hole in the heap that later small blocks pin.

:func:`tune_malloc` sets both, as ``MALLOC_ARENA_MAX`` and ``MALLOC_MMAP_THRESHOLD_`` in the
environment would (fixing the mmap threshold also stops glibc from raising the trim threshold,
so a free top of the heap over 128 KiB goes back to the kernel). Measured with
``odar bench soak``: see DEVELOPERS.md, "Memory". Where malloc is not glibc's (musl, macOS) or
refuses a setting, that default is kept, and an INFO line says so.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

#: glibc's mallopt() parameter numbers (malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Arenas the daemon's threads share: the sensor and window threads allocate all the time, the
#: trainer in bursts; two keep them from contending on one lock without one free list each.
MALLOC_ARENAS = 2
#: Blocks this big or bigger always come from mmap and go back to the kernel when freed
#: (glibc's own starting value, kept from moving).
MMAP_THRESHOLD_BYTES = 128 * 1024

_log = logging.getLogger(__name__)


def _mallopt() -> Callable[[int, int], int] | None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def tune_malloc(
    arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD_BYTES
) -> bool:
    """Set the arena limit and the fixed mmap threshold; call it before threads start (arenas
    made before stay). False, and an INFO line, where malloc is not glibc's or refuses."""
    mallopt = _mallopt()
    if mallopt is None:
        _log.info("malloc has no mallopt() here (not glibc): its defaults are kept")
        return False
    refused = [
        name
        for name, parameter, value in (
            ("M_ARENA_MAX", M_ARENA_MAX, arenas),
            ("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, mmap_threshold),
        )
        if not mallopt(parameter, value)
    ]
    if refused:
        _log.info("malloc refused %s (mallopt returned 0): those defaults are kept", refused)
    return not refused
