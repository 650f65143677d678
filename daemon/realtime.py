"""The daemon's threads on SCHED_FIFO at low priorities: the sensor thread's reads come on time,
and no thread it waits for is kept off a CPU by other work.

The FIFO gives the sensor thread a deadline: a read later than the FIFO holds loses samples
(81 ms at 1 kHz with the MPU-6050's 1024 bytes, 40 ms with a 512-byte clone). The kernel's
fair scheduler does not bound how late a woken thread runs when other work keeps the cores
busy, and neither nice nor an autogroup's weight changes that: on a loaded 2-core machine a
10 ms sleep at autogroup nice -10 woke up to 114 ms late, the same sleep at SCHED_FIFO at most
0.3 ms late (docs/sensor-figures.md, session 5). The kernel's own inv_mpu6050 driver reads its
FIFO from a threaded interrupt handler, which runs at SCHED_FIFO too.

A real-time sensor thread is not enough in Python: it also waits for the GIL, and a
time-sharing thread of ours that holds the GIL when another process takes its CPU keeps it
waiting for as long as that process runs (traced at 5-13 ms beside busy loops and a CI run,
docs/sensor-figures.md, sessions 11 and 12). So the daemon's other threads (the window thread,
the trainer thread, the main loop, the motor's and LED's pattern threads) run at SCHED_FIFO one
below the sensor thread (:func:`daemon_thread_priority`): above every time-sharing process,
below the sensor thread. Each of them works a bounded time and then sleeps; the training steps,
which take a core for a whole run, run in a time-sharing process of their own
(odar.training_process). Beside busy loops at 1 kHz and speed 10 this took the runs that lost
samples from 8 of 40 to 1 of 40 (session 13).

Threads and processes started by a real-time thread of ours are time-sharing
(``SCHED_RESET_ON_FORK``): the training process, and TFLite's worker threads, do not inherit
a real-time priority.

The priorities are low (``sensor.realtime_priority``, 10 by default, and 9): below the
kernel's interrupt threads (50), on which the I2C read itself waits where interrupts are
threaded (PREEMPT_RT, or ``threadirqs`` on the command line; the Debian kernel odar's image
installs has neither, docs/sensor-figures.md, session 13). The kernel's real-time
throttling bounds them anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

_log = logging.getLogger(__name__)

SetScheduler = Callable[[int, int, "os.sched_param"], None]

#: The sensor thread's name, as the daemon starts it.
SENSOR_THREAD = "odar-sensor"
#: The main loop's thread (``Daemon.run()``'s caller), as this module names it.
MAIN_LOOP = "main loop"
# The threads whose scheduling the journal says at INFO (and a refusal as a WARNING), as it
# says them: the sensor thread, and the main loop for the daemon's other threads, which take
# the same priority under the same limit.
_SAID = {SENSOR_THREAD: "sensor thread", MAIN_LOOP: "main loop"}


def daemon_thread_priority(sensor_priority: int | None) -> int | None:
    """The SCHED_FIFO priority of the daemon's threads other than the sensor thread: one below
    it (None: time-sharing, as the sensor thread)."""
    if sensor_priority is None:
        return None
    return sensor_priority - 1  # sensor.realtime_priority is at least 2


def make_this_thread_realtime(
    priority: int | None,
    *,
    thread: str = SENSOR_THREAD,
    set_scheduler: SetScheduler | None = None,
) -> bool:
    """Put the calling thread on SCHED_FIFO at ``priority`` (None: leave it time-sharing), with
    SCHED_RESET_ON_FORK: what it starts is time-sharing. See :func:`make_thread_realtime`."""
    return make_thread_realtime(0, priority, thread=thread, set_scheduler=set_scheduler)


def make_thread_realtime(
    tid: int,
    priority: int | None,
    *,
    thread: str,
    set_scheduler: SetScheduler | None = None,
) -> bool:
    """Put the thread *tid* of this process (its ``native_id``; 0: the calling thread) on
    SCHED_FIFO at ``priority`` (None: leave it time-sharing), with SCHED_RESET_ON_FORK: what it
    starts is time-sharing. For a thread of ours that was started before the daemon ran (the
    motor's); every other asks for itself.

    True if it now is. A refusal is not raised: the daemon still runs, with less room against a
    busy host. For the sensor thread and the main loop it is one warning that says what to
    change, and the result is logged at INFO; for the other threads, which ask for the main
    loop's priority under the same limit, both are DEBUG."""
    level = logging.INFO if thread in _SAID else logging.DEBUG
    thread = _SAID.get(thread, thread)
    if priority is None:
        _log.log(level, "%s: time-sharing (sensor.realtime_priority is null)", thread)
        return False
    set_scheduler = set_scheduler or getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_FIFO", None)
    if set_scheduler is None or policy is None:
        _log.log(level, "%s: time-sharing (no SCHED_FIFO on this platform)", thread)
        return False
    policy |= getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        set_scheduler(tid, policy, os.sched_param(priority))
    except OSError as error:
        _log.log(
            logging.WARNING if level == logging.INFO else logging.DEBUG,
            "%s stays time-sharing: SCHED_FIFO priority %d refused (%s). It needs "
            "LimitRTPRIO=%d or more (the shipped unit has it) and, on kernels with "
            "CONFIG_RT_GROUP_SCHED, a cpu cgroup with real-time runtime (no CPUWeight= or "
            "CPUAccounting= on the unit); sensor.realtime_priority: null chooses time-sharing. "
            "A busy host may overflow the FIFO at high rates",
            thread,
            priority,
            error.strerror or error,
            priority,
        )
        return False
    _log.log(level, "%s: SCHED_FIFO priority %d", thread, priority)
    return True


@contextlib.contextmanager
def this_thread_realtime(
    priority: int | None, *, thread: str, set_scheduler: SetScheduler | None = None
) -> Iterator[bool]:
    """:func:`make_this_thread_realtime` for a block, the thread's scheduling restored after:
    for a thread the daemon borrows (``Daemon.run()``'s caller), not one it started."""
    get_scheduler = getattr(os, "sched_getscheduler", None)
    if priority is None or get_scheduler is None:
        yield make_this_thread_realtime(priority, thread=thread, set_scheduler=set_scheduler)
        return
    policy, param = get_scheduler(0), os.sched_getparam(0)
    realtime = make_this_thread_realtime(priority, thread=thread, set_scheduler=set_scheduler)
    try:
        yield realtime
    finally:
        if realtime:
            # Lowering one's own priority is always permitted.
            (set_scheduler or os.sched_setscheduler)(0, policy, param)
