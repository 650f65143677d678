"""Collect mode (odar.collector): each window becomes a labelled record in the sample store."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from odar.collector import Collector
from odar.sample_store import SampleStore, StoreLayout
from odar.windows import Window

CLASSES = ("Class A", "Class B")
FEATURES = 8


@pytest.fixture
def store(tmp_path):
    layout = StoreLayout("a" * 64, len(CLASSES), FEATURES)
    with SampleStore.open(tmp_path / "samples.odar", layout) as store:
        yield store


def window_at(t_start: float, value: float) -> Window:
    samples = np.full((400, 6), value, np.float32)
    times = t_start + np.arange(400) / 100.0
    return Window(samples, times, float(times[0]), float(times[-1]), seq=int(t_start * 100))


def test_each_window_is_stored_with_the_selected_label(store, caplog):
    caplog.set_level(logging.INFO, logger="odar.collector")
    collector = Collector(store, CLASSES)
    assert collector.collect(window_at(1.0, 0.5), np.full(FEATURES, 1.0), 0)
    assert collector.collect(window_at(2.0, -0.5), np.full(FEATURES, 2.0), 1)
    assert collector.collect(window_at(3.0, 0.25), np.full(FEATURES, 3.0), 1)
    assert store.counts() == (1, 2)
    stored = store.load()
    np.testing.assert_array_equal(stored.labels, [0, 1, 1])
    np.testing.assert_array_equal(stored.timestamps, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(stored.features[:, 0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(stored.windows[:, 0, 0], [0.5, -0.5, 0.25])
    messages = [r.getMessage() for r in caplog.records]
    assert messages[-1] == "collected Class B: 1 Class A, 2 Class B"
    assert caplog.records[-1].ODAR_COUNTS == "1,2"


def test_a_failed_write_drops_the_window_logs_and_keeps_the_store(store, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="odar.collector")
    collector = Collector(store, CLASSES)
    assert collector.collect(window_at(1.0, 0.5), np.zeros(FEATURES), 0)
    # The store's descriptor now reads a read-only file: the next write fails with EBADF,
    # a real OSError, as a disk gone read-only would.
    read_only = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT, 0o444)
    saved = os.dup(store._descriptor)
    os.dup2(read_only, store._descriptor)
    try:
        assert collector.collect(window_at(2.0, 0.5), np.zeros(FEATURES), 1) is False
    finally:
        os.dup2(saved, store._descriptor)
        os.close(saved)
        os.close(read_only)
    assert store.counts() == (1, 0)
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name == "odar.collector"
    ]
    assert len(errors) == 1 and errors[0].startswith("sample not stored: [Errno 9] cannot append")
    assert str(store.path) in errors[0]
    assert collector.collect(window_at(3.0, 0.5), np.zeros(FEATURES), 1)
    assert store.counts() == (1, 1)


def test_collect_lines_are_rate_limited_and_say_how_many_were_not_shown(store, caplog):
    from odar.drivers.emulated.clock import VirtualClock
    from odar.journal import RateLimiter

    caplog.set_level(logging.INFO, logger="odar.collector")
    clock = VirtualClock()
    collector = Collector(store, CLASSES, limiter=RateLimiter(1.0, clock))
    for index in range(5):
        assert collector.collect(window_at(float(index), 0.0), np.zeros(FEATURES), 0)
    clock.advance(1.0)
    assert collector.collect(window_at(5.0, 0.0), np.zeros(FEATURES), 1)
    assert store.counts() == (5, 1)  # every window stored, two lines logged
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "collected Class A: 1 Class A, 0 Class B",
        "collected Class B: 5 Class A, 1 Class B (4 windows not shown)",
    ]
