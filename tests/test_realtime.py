"""odar.realtime: the sensor thread's SCHED_FIFO, asked for by the thread itself, and a refusal
that is one warning naming what to change, never an exception."""

from __future__ import annotations

import errno
import logging
import os
import threading

import pytest

from odar.config import SensorConfig
from odar.realtime import make_this_thread_realtime


class RecordingScheduler:
    def __init__(self, refuse: OSError | None = None) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.refuse = refuse

    def __call__(self, pid: int, policy: int, param: os.sched_param) -> None:
        self.calls.append((pid, policy, param.sched_priority))
        if self.refuse is not None:
            raise self.refuse


def test_the_calling_thread_asks_for_fifo_at_the_priority(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = RecordingScheduler()
    with caplog.at_level(logging.INFO, logger="odar.realtime"):
        assert make_this_thread_realtime(10, set_scheduler=scheduler) is True
    # pid 0 is the calling thread, not the process: only the sensor thread is real-time.
    assert scheduler.calls == [(0, os.SCHED_FIFO, 10)]
    assert "SCHED_FIFO priority 10" in caplog.text


def test_a_refusal_is_one_warning_that_names_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = RecordingScheduler(PermissionError(errno.EPERM, "Operation not permitted"))
    with caplog.at_level(logging.WARNING, logger="odar.realtime"):
        assert make_this_thread_realtime(12, set_scheduler=scheduler) is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "Operation not permitted" in message
    assert "LimitRTPRIO=12" in message
    assert "sensor.realtime_priority: null" in message


def test_null_priority_asks_for_nothing(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = RecordingScheduler()
    with caplog.at_level(logging.INFO, logger="odar.realtime"):
        assert make_this_thread_realtime(None, set_scheduler=scheduler) is False
    assert scheduler.calls == []
    assert "time-sharing" in caplog.text


def test_on_the_real_kernel_only_the_calling_thread_changes() -> None:
    # Whether this process may take SCHED_FIFO (root, RLIMIT_RTPRIO, the cpu cgroup) is the
    # kernel's to say: the result must match what the thread then has, and only that thread.
    seen: dict[str, object] = {}

    def sensor_thread() -> None:
        seen["result"] = make_this_thread_realtime(1)
        seen["policy"] = os.sched_getscheduler(0)

    thread = threading.Thread(target=sensor_thread)
    thread.start()
    thread.join()
    assert seen["policy"] == (os.SCHED_FIFO if seen["result"] else os.SCHED_OTHER)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_the_default_priority_is_below_the_kernels_interrupt_threads() -> None:
    priority = SensorConfig().realtime_priority
    assert priority is not None
    assert 1 <= priority < 50
