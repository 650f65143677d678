"""The latency stages of ``odar bench daemon --stages``: known moments in, known stages out."""

from __future__ import annotations

import numpy as np
import pytest

from odar.harness.bench.latency_stages import (
    STAGES,
    WindowTimes,
    read_spans,
    stage_figures,
    stage_seconds,
)


def one_window(**moments: float) -> WindowTimes:
    return WindowTimes(**{name: np.array([value]) for name, value in moments.items()})


def test_the_stages_of_one_window_add_up_to_its_latency() -> None:
    # Due at 10.000 s; the read issued 2 ms later, 0.4 ms of it injected lateness, 5 ms on the
    # wire, the emulated chip computing 1 ms beyond the wire, back at 10.010; in the ring
    # 0.3 ms later, cut 0.7 ms later, decided 2 ms later. The driver stamped it 0.2 ms late.
    times = one_window(
        due=10.000,
        t_end=10.0002,
        issued=10.002,
        jitter=0.0004,
        wire=0.005,
        emulator=0.001,
        ended=10.010,
        in_ring=10.0103,
        cut=10.011,
        decided=10.013,
    )
    stages = {name: float(value[0]) * 1e3 for name, value in stage_seconds(times).items()}
    assert stages == pytest.approx(
        {
            "wait_for_read": 2.0,
            "host_jitter": 0.4,
            "bus_wire": 5.0,
            "emulator": 1.0,
            "read_host": 1.6,
            "to_ring": 0.3,
            "wake_and_cut": 0.7,
            "compute": 2.0,
            "total": 13.0,
            "total_less_emulation": 11.6,
            "timestamp_error": 0.2,
        }
    )
    parts = [k for k in STAGES if k not in ("total", "total_less_emulation", "timestamp_error")]
    assert sum(stages[k] for k in parts) == pytest.approx(stages["total"])
    figures = stage_figures(times)
    assert figures["windows"] == 1
    assert figures["total"]["p99_ms"] == pytest.approx(13.0)


def test_a_read_is_the_transactions_between_the_block_before_and_its_own() -> None:
    # issued, injected lateness, wire, devices' computing, ended
    trace = np.array(
        [
            [1.000, 0.0001, 0.004, 0.001, 1.005],  # read 1: one transaction
            [1.050, 0.0002, 0.0002, 0.002, 1.053],  # read 2: the count (computing 1.8 ms over)
            [1.053, 0.0003, 0.003, 0.001, 1.057],  # read 2: the data
        ]
    )
    block_at = np.array([1.006, 1.058, 1.200])  # the third read left no trace
    previous = np.r_[-np.inf, block_at[:-1]]
    issued, late, wire, over, ended = read_spans(trace, previous, block_at)
    np.testing.assert_allclose(issued[:2], [1.000, 1.050])
    np.testing.assert_allclose(late[:2], [0.0001, 0.0005])
    np.testing.assert_allclose(wire[:2], [0.004, 0.0032])
    np.testing.assert_allclose(over[:2], [0.0, 0.0018])
    np.testing.assert_allclose(ended[:2], [1.005, 1.057])
    assert np.isnan([issued[2], late[2], wire[2], over[2], ended[2]]).all()
