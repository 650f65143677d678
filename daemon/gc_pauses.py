"""The interpreter's cycle collector, kept from pausing the sensor thread for long.

A generation-2 collection walks every object the collector tracks while it holds the GIL, and
no other thread of the process runs meanwhile: the sensor thread's next read waits for it.
Nearly all of those objects are built before the first read and live as long as the daemon:
modules, the configuration, the loaded artifacts' wrappers, gpiozero's devices. Walking them
finds nothing to free, every time.

:func:`startup_objects_frozen` collects once, before the sensor streams, then moves every
surviving object into the collector's permanent generation (:func:`gc.freeze`), which later
collections do not walk. Measured in ``odar bench daemon`` at READY (docs/sensor-figures.md,
session 10): a full collection walked about 37,000 objects in 5-8 ms on the development
machine, and after the freeze 0.01 ms. On a Raspberry Pi, several times slower, the unfrozen
walk is a sizeable part of the 81 ms the FIFO holds at 1 kHz.

The cost: a frozen object in a reference cycle that becomes garbage later is never freed. The
daemon keeps what it built at start until it stops; a reload replaces only the configuration
and the few objects built from it (whether any of them sits in a cycle is not measured). The
objects are unfrozen when the block ends, so a process that runs the daemon again (the tests,
the benches) collects them. The freeze is the process's: two daemons at once in one process
share it, and the first to stop unfreezes both, which only costs the walk again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def startup_objects_frozen() -> Iterator[int]:
    """Collect, freeze what survives, and yield how many objects were frozen; unfreeze on exit.

    >>> import gc
    >>> with startup_objects_frozen() as frozen:
    ...     frozen > 0 and gc.get_freeze_count() > 0
    True
    >>> gc.get_freeze_count()
    0
    """
    gc.collect()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()
