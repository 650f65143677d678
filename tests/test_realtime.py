"""odar.realtime: the daemon's threads on SCHED_FIFO, each asked for by the thread itself, the
sensor thread above the others, what they start time-sharing, and a refusal that is one warning
naming what to change, never an exception."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading

import pytest
from conftest import may_take_sched_fifo, scheduling_of

from odar.config import SensorConfig
from odar.realtime import (
    MAIN_LOOP,
    daemon_thread_priority,
    make_this_thread_realtime,
    make_thread_realtime,
    this_thread_realtime,
)


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
    # pid 0 is the calling thread, not the process; what it starts is time-sharing.
    assert scheduler.calls == [(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 10)]
    assert caplog.messages == ["sensor thread: SCHED_FIFO priority 10"]


def test_another_thread_is_named_by_its_kernel_id(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = RecordingScheduler()
    with caplog.at_level(logging.DEBUG, logger="odar.realtime"):
        assert make_thread_realtime(4242, 9, thread="motor-gpio18", set_scheduler=scheduler)
    assert scheduler.calls == [(4242, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 9)]
    assert caplog.messages == ["motor-gpio18: SCHED_FIFO priority 9"]


def test_on_the_real_kernel_another_thread_of_this_process_can_be_put_there() -> None:
    ready, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: (ready.set(), done.wait()))
    thread.start()
    ready.wait()
    try:
        assert thread.native_id is not None
        realtime = make_thread_realtime(thread.native_id, 9, thread="motor-gpio18")
        assert realtime is may_take_sched_fifo(9)
        assert scheduling_of(thread.native_id) == (
            (os.SCHED_FIFO, 9) if realtime else (os.SCHED_OTHER, 0)
        )
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # not the caller
    finally:
        done.set()
        thread.join()


def test_the_other_threads_are_one_below_the_sensor_thread() -> None:
    assert daemon_thread_priority(10) == 9
    assert daemon_thread_priority(2) == 1
    assert daemon_thread_priority(None) is None


def test_the_main_loop_is_said_and_the_other_threads_only_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = RecordingScheduler(PermissionError(errno.EPERM, "Operation not permitted"))
    with caplog.at_level(logging.INFO, logger="odar.realtime"):
        assert make_this_thread_realtime(9, thread=MAIN_LOOP, set_scheduler=RecordingScheduler())
        assert not make_this_thread_realtime(9, thread="odar-windows", set_scheduler=refused)
    assert caplog.messages == ["main loop: SCHED_FIFO priority 9"]
    with caplog.at_level(logging.DEBUG, logger="odar.realtime"):
        make_this_thread_realtime(9, thread="odar-windows", set_scheduler=refused)
    assert caplog.records[-1].levelno == logging.DEBUG
    assert caplog.records[-1].getMessage().startswith("odar-windows stays time-sharing")


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
    assert seen["policy"] == (
        os.SCHED_FIFO | os.SCHED_RESET_ON_FORK if seen["result"] else os.SCHED_OTHER
    )
    assert seen["result"] is may_take_sched_fifo(1)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_on_the_real_kernel_what_a_realtime_thread_starts_is_time_sharing() -> None:
    # The training process and TFLite's worker threads must not inherit a real-time priority:
    # a training run would hold a core at it.
    seen: dict[str, object] = {}

    def trainer_thread() -> None:
        seen["result"] = make_this_thread_realtime(5, thread="odar-trainer")
        seen["self"] = scheduling_of(0)
        worker = threading.Thread(target=lambda: seen.update(worker=scheduling_of(0)))
        worker.start()
        worker.join()
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
            capture_output=True,
            text=True,
            check=True,
        )
        seen["child"] = int(child.stdout)

    thread = threading.Thread(target=trainer_thread)
    thread.start()
    thread.join()
    assert seen["result"] is may_take_sched_fifo(5)
    assert seen["self"] == ((os.SCHED_FIFO, 5) if seen["result"] else (os.SCHED_OTHER, 0))
    assert seen["worker"] == (os.SCHED_OTHER, 0)
    assert seen["child"] == os.SCHED_OTHER


def test_a_borrowed_thread_gets_its_scheduling_back() -> None:
    seen: dict[str, object] = {}

    def caller() -> None:
        with this_thread_realtime(9, thread=MAIN_LOOP) as realtime:
            seen["realtime"] = realtime
            seen["inside"] = scheduling_of(0)
        seen["after"] = os.sched_getscheduler(0)

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join()
    assert seen["realtime"] is may_take_sched_fifo(9)
    assert seen["inside"] == ((os.SCHED_FIFO, 9) if seen["realtime"] else (os.SCHED_OTHER, 0))
    assert seen["after"] == os.SCHED_OTHER


def test_a_borrowed_thread_is_given_back_after_an_exception() -> None:
    scheduler = RecordingScheduler()
    with (
        pytest.raises(KeyError),
        this_thread_realtime(9, thread=MAIN_LOOP, set_scheduler=scheduler),
    ):
        raise KeyError("the daemon failed")
    assert scheduler.calls == [
        (0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 9),
        (0, os.sched_getscheduler(0), os.sched_getparam(0).sched_priority),
    ]


def test_the_default_priority_is_below_the_kernels_interrupt_threads() -> None:
    priority = SensorConfig().realtime_priority
    assert priority is not None
    assert 2 <= priority < 50
