"""The sensor thread's scheduling: SCHED_FIFO at a low priority, so its reads come on time.

The FIFO gives the sensor thread a deadline: a read later than the FIFO holds loses samples
(81 ms at 1 kHz with the MPU-6050's 1024 bytes, 40 ms with a 512-byte clone). The kernel's
fair scheduler does not bound how late a woken thread runs when other work keeps the cores
busy, and neither nice nor an autogroup's weight changes that: on a loaded 2-core machine a
10 ms sleep at autogroup nice -10 woke up to 114 ms late, the same sleep at SCHED_FIFO at most
0.3 ms late (docs/sensor-figures.md, session 5). The kernel's own inv_mpu6050 driver reads its
FIFO from a threaded interrupt handler, which runs at SCHED_FIFO too.

The priority is low (``sensor.realtime_priority``, 10 by default): above every time-sharing
thread, below the kernel's interrupt threads (50), on which the I2C read itself waits. The
sensor thread sleeps between reads (a few per cent of a core at 1 kHz), and the kernel's
real-time throttling bounds it anyway. Only the sensor thread is real-time: a training thread
there could starve the rest of the system.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

_log = logging.getLogger(__name__)

SetScheduler = Callable[[int, int, "os.sched_param"], None]


def make_this_thread_realtime(
    priority: int | None, *, set_scheduler: SetScheduler | None = None
) -> bool:
    """Put the calling thread on SCHED_FIFO at ``priority`` (None: leave it time-sharing).

    True if it now is. A refusal is logged as one warning that says what to change and is not
    raised: the daemon still runs, with less room against a busy host."""
    if priority is None:
        _log.info("sensor thread: time-sharing (sensor.realtime_priority is null)")
        return False
    set_scheduler = set_scheduler or getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_FIFO", None)
    if set_scheduler is None or policy is None:
        _log.info("sensor thread: time-sharing (no SCHED_FIFO on this platform)")
        return False
    try:
        set_scheduler(0, policy, os.sched_param(priority))  # 0: the calling thread
    except OSError as error:
        _log.warning(
            "sensor thread stays time-sharing: SCHED_FIFO priority %d refused (%s). It needs "
            "LimitRTPRIO=%d or more (the shipped unit has it) and, on kernels with "
            "CONFIG_RT_GROUP_SCHED, a cpu cgroup with real-time runtime (no CPUWeight= or "
            "CPUAccounting= on the unit); sensor.realtime_priority: null chooses time-sharing. "
            "A busy host may overflow the FIFO at high rates",
            priority,
            error.strerror or error,
            priority,
        )
        return False
    _log.info("sensor thread: SCHED_FIFO priority %d", priority)
    return True
