"""harness.bench.sched_trace: ftrace's scheduler events read back, and a sensor thread's time
before an overflow split by what it and our other threads were doing (known answers)."""

from __future__ import annotations

import logging
import threading

import pytest

from odar.errors import EmulationError
from odar.harness.bench.sched_trace import (
    OverflowMoments,
    SchedulerTrace,
    Switch,
    Wakeup,
    explain,
    parse,
)

SENSOR, WINDOWS, HOG0, HOG1 = 100, 200, 900, 901


def switch(at: float, cpu: int, prev: int, state: str, nxt: int, prio: int = 120) -> str:
    """One sched_switch line as the kernel writes it (trace_clock mono)."""
    names = {0: "swapper/1", SENSOR: "odar", WINDOWS: "odar", HOG0: "python3", HOG1: "python3"}
    return (
        f"         {names[prev]}-{prev}   [{cpu:03d}] d..2. {at:.6f}: sched_switch: "
        f"prev_comm={names[prev]} prev_pid={prev} prev_prio={prio} prev_state={state} ==> "
        f"next_comm={names[nxt]} next_pid={nxt} next_prio={prio}"
    )


def wakeup(at: float, cpu: int, by: int, tid: int) -> str:
    return (
        f"         python3-{by}   [{cpu:03d}] dN.4. {at:.6f}: sched_wakeup: "
        f"comm=odar pid={tid} prio=89 target_cpu={cpu:03d}"
    )


# The sensor thread runs 2 ms and sleeps for the GIL; the window thread, which holds it, is
# preempted by a hog for 4 ms, then runs 2 ms; the sensor thread, woken, waits 1 ms for a
# CPU, runs 1 ms and sleeps again while the window thread runs 2 ms more, then nothing of
# ours wants a CPU.
TRACE = [
    "# tracer: nop",
    switch(1.000, 0, HOG0, "R+", SENSOR),
    switch(1.001, 1, WINDOWS, "R+", HOG1),
    switch(1.002, 0, SENSOR, "S", HOG0),
    switch(1.006, 1, HOG1, "R", WINDOWS),
    wakeup(1.008, 0, HOG0, SENSOR),
    switch(1.009, 0, HOG0, "R", SENSOR),
    switch(1.010, 0, SENSOR, "S", HOG0),
    switch(1.012, 1, WINDOWS, "S", HOG1),
    wakeup(1.020, 1, HOG1, 555),
]


def test_switches_and_wakeups_are_read_with_each_tasks_name():
    trace = parse(TRACE)
    assert trace.events[0] == Switch(1.000, 0, HOG0, True, SENSOR)
    assert trace.events[2] == Switch(1.002, 0, SENSOR, False, HOG0)
    assert trace.events[4] == Wakeup(1.008, SENSOR)
    assert len(trace.events) == len(TRACE) - 1, "the header is not an event"
    assert trace.names[SENSOR] == "odar" and trace.names[HOG1] == "python3"


def test_the_sensor_threads_time_is_split_by_what_our_other_threads_did():
    (report,) = explain(
        parse(TRACE), {SENSOR, WINDOWS}, SENSOR, [1.015], 0.015, {WINDOWS: "odar-windows"}
    )
    assert report["ms"] == pytest.approx(
        {
            "running": 3.0,  # 1.000-1.002, 1.009-1.010
            "waiting_cpu": 1.0,  # woken at 1.008, on a CPU at 1.009
            "ours_preempted": 4.0,  # asleep 1.002-1.006 while the window thread was runnable
            "ours_ran": 4.0,  # asleep 1.006-1.008 and 1.010-1.012 while it ran
            "asleep": 3.0,  # 1.012-1.015: nothing of ours wanted a CPU
        },
        abs=1e-6,
    )
    assert sum(report["ms"].values()) == pytest.approx(15.0)
    assert report["ours_preempted_by_thread_ms"] == pytest.approx({"odar-windows": 4.0})
    assert report["ours_ran_by_thread_ms"] == pytest.approx({"odar-windows": 4.0})
    # While the sensor thread was off its CPU: HOG0 1.002-1.009 and 1.010-1.015 on CPU 0;
    # HOG1 1.002-1.006 and 1.012-1.015 on CPU 1.
    assert report["others_on_cpu_ms"] == pytest.approx(
        {f"python3:{HOG0}": 12.0, f"python3:{HOG1}": 7.0}, abs=1e-6
    )


def test_only_the_span_before_each_moment_is_explained():
    early, late = explain(parse(TRACE), {SENSOR, WINDOWS}, SENSOR, [1.004, 1.010], 0.002)
    assert early["ms"]["running"] == pytest.approx(0.0)
    assert early["ms"]["ours_preempted"] == pytest.approx(2.0)
    assert late["ms"]["running"] == pytest.approx(1.0)
    assert late["ms"]["waiting_cpu"] == pytest.approx(1.0)


def test_a_switch_from_idle_missing_from_the_trace_is_taken_as_at_the_wake_up():
    # Seen in real traces: woken on an idle CPU, the sensor thread next shows switching out,
    # with no switch to it in between.
    lines = [
        switch(2.000, 1, SENSOR, "S", 0),
        wakeup(2.001, 1, 0, SENSOR),
        switch(2.004, 1, SENSOR, "S", 0),
    ]
    (report,) = explain(parse(lines), {SENSOR}, SENSOR, [2.004], before_s=0.004)
    assert report["ms"] == pytest.approx(
        {"running": 3.0, "waiting_cpu": 0.0, "ours_ran": 0.0, "ours_preempted": 0.0,
         "asleep": 1.0},
        abs=1e-6,
    )  # fmt: skip


def test_overflow_log_lines_are_noted_with_the_logging_thread_and_nothing_else_is():
    log = logging.getLogger("odar.drivers.mpu6050")
    with OverflowMoments() as overflows:
        log.warning("I2C bus 1 address 0x68: FIFO overflow (FIFO_COUNT 1024 of 1024 bytes)")
        log.warning("I2C bus 1 address 0x68: a silent reset: re-initialising")
        tid = []
        reader = threading.Thread(
            target=lambda: (tid.append(threading.get_native_id()), log.warning("FIFO overflow"))
        )
        reader.start()
        reader.join()
    log.warning("FIFO overflow after the bench")
    assert [t for _, t in overflows.moments] == [threading.get_native_id(), tid[0]]
    assert {threading.get_native_id(), tid[0]} <= overflows.our_tids
    assert overflows.thread_names[threading.get_native_id()] == threading.current_thread().name
    assert overflows.moments[0][0] <= overflows.moments[1][0]


def test_without_tracefs_the_trace_says_what_is_missing(tmp_path):
    with pytest.raises(EmulationError, match="--sched-trace"):
        SchedulerTrace(tmp_path / "no").check()
    with pytest.raises(EmulationError, match="--sched-trace"), SchedulerTrace(tmp_path / "no"):
        pass
