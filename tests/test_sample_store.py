"""The sample store: appends survive reopening; torn tails, corruption and foreign files don't
turn into garbage samples."""

from __future__ import annotations

import errno
import logging
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odar import sample_store
from odar.errors import OdarError, StateError, StateWriteError
from odar.sample_store import SampleStore, StoreLayout, parse_header

MANIFEST = "c" * 64
FEATURES = 8
#: A small window keeps the every-byte-offset tests fast; the format does not care.
SMALL = StoreLayout(MANIFEST, num_classes=3, feature_size=FEATURES, window_shape=(4, 6))
FULL = StoreLayout(MANIFEST, num_classes=2, feature_size=FEATURES)
NOW = 1_700_000_000.0


def sample(layout: StoreLayout, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal(layout.feature_size).astype(np.float32)
    window = rng.standard_normal(layout.window_shape).astype(np.float32)
    return features, window


def fill(path, layout: StoreLayout, labels: list[int], **options) -> SampleStore:
    store = SampleStore.open(path, layout, wall_clock=lambda: NOW, **options)
    for seed, label in enumerate(labels):
        features, window = sample(layout, seed)
        store.append(label, features, window, timestamp=1000.0 + seed)
    return store


def test_round_trip_of_full_size_windows(tmp_path):
    labels = [0, 1, 1, 0, 1]
    with fill(tmp_path / "samples", FULL, labels) as store:
        assert store.counts() == (2, 3) and len(store) == 5
        loaded = store.load()
    assert loaded.labels.tolist() == labels
    assert loaded.windows.shape == (5, 400, 6) and loaded.windows.dtype == np.float32
    assert loaded.features.shape == (5, FEATURES)
    assert loaded.timestamps.tolist() == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    for seed in range(5):
        features, window = sample(FULL, seed)
        np.testing.assert_array_equal(loaded.features[seed], features)
        np.testing.assert_array_equal(loaded.windows[seed], window)
    label, timestamp, features, window = list(SampleStore.open(tmp_path / "samples", FULL))[3]
    assert (label, timestamp) == (0, 1003.0)
    np.testing.assert_array_equal(window, sample(FULL, 3)[1])


def test_samples_survive_a_restart_and_appends_continue(tmp_path):
    fill(tmp_path / "samples", SMALL, [0, 2]).close()
    with SampleStore.open(tmp_path / "samples", SMALL) as store:
        assert store.counts() == (1, 0, 1)
        store.append(1, *sample(SMALL, 9), timestamp=5.0)
        assert store.load().labels.tolist() == [0, 2, 1]


def test_a_torn_last_record_is_cut_off_at_every_byte_offset(tmp_path, caplog):
    path = tmp_path / "samples"
    fill(path, SMALL, [0, 1, 2]).close()
    whole = path.read_bytes()
    record = SMALL.record_dtype().itemsize
    two_records = len(whole) - record
    for length in range(two_records, len(whole)):
        path.write_bytes(whole[:length])
        with SampleStore.open(path, SMALL) as store:
            assert store.counts() == (1, 1, 0), length
            assert store.load().labels.tolist() == [0, 1]
        assert path.stat().st_size == two_records
    assert "cut off" in caplog.text
    assert list(tmp_path.glob("*.bad-*")) == []  # a torn record is not worth keeping


def test_a_torn_header_is_moved_aside_at_every_byte_offset(tmp_path):
    path = tmp_path / "samples"
    header = SMALL.header_bytes()
    for length in range(1, len(header)):
        path.write_bytes(header[:length])
        with SampleStore.open(path, SMALL) as store:
            assert len(store) == 0
        assert path.read_bytes() == header
        (aside,) = tmp_path.glob("samples.bad-*")
        aside.unlink()


def test_a_corrupt_record_in_the_middle_keeps_the_records_before_it_and_the_tail_aside(tmp_path):
    path = tmp_path / "samples"
    fill(path, SMALL, [0, 1, 2, 0]).close()
    data = bytearray(path.read_bytes())
    record = SMALL.record_dtype().itemsize
    data[-record - 10] ^= 0xFF  # inside the third record's window
    path.write_bytes(bytes(data))
    with SampleStore.open(path, SMALL, wall_clock=lambda: NOW) as store:
        assert store.counts() == (1, 1, 0)
    (tail,) = tmp_path.glob("samples.bad-*-tail")
    assert tail.read_bytes() == bytes(data[-2 * record :])


@pytest.mark.parametrize(
    "other",
    [
        StoreLayout("d" * 64, 3, FEATURES, (4, 6)),
        StoreLayout(MANIFEST, 4, FEATURES, (4, 6)),
        StoreLayout(MANIFEST, 3, FEATURES + 1, (4, 6)),
        StoreLayout(MANIFEST, 3, FEATURES, (5, 6)),
    ],
)
def test_a_foreign_store_is_moved_aside_and_a_new_one_begun(tmp_path, caplog, other):
    path = tmp_path / "samples"
    fill(path, other, [0, 1]).close()
    foreign = path.read_bytes()
    with caplog.at_level(logging.WARNING), SampleStore.open(path, SMALL) as store:
        assert store.counts() == (0, 0, 0)
    assert "belongs to other artifacts or classes" in caplog.text
    (aside,) = tmp_path.glob("samples.bad-*")
    assert aside.read_bytes() == foreign


def test_every_record_is_synced_by_default_and_batches_when_asked(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(sample_store.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    store = SampleStore.open(tmp_path / "a", SMALL)
    batched = SampleStore.open(tmp_path / "b", SMALL, sync_every=3)
    synced.clear()  # creating a store syncs its header and directory
    for _ in range(6):
        store.append(0, *sample(SMALL, 0), timestamp=0.0)
    assert len(synced) == 6
    synced.clear()
    for _ in range(6):
        batched.append(0, *sample(SMALL, 0), timestamp=0.0)
    assert len(synced) == 2
    store.close()
    batched.close()


@pytest.mark.parametrize(("call", "code"), [("write", errno.ENOSPC), ("fsync", errno.EIO)])
def test_a_failed_append_leaves_the_store_as_it_was(tmp_path, monkeypatch, call, code):
    path = tmp_path / "samples"
    store = fill(path, SMALL, [0, 1])
    size = path.stat().st_size

    def fail(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(sample_store.os, call, fail)
    with pytest.raises(StateWriteError) as caught:
        store.append(2, *sample(SMALL, 5), timestamp=0.0)
    monkeypatch.undo()
    assert isinstance(caught.value, OdarError) and caught.value.errno == code
    assert str(path) in str(caught.value)
    assert store.counts() == (1, 1, 0) and path.stat().st_size == size
    store.append(2, *sample(SMALL, 5), timestamp=0.0)
    store.close()
    with SampleStore.open(path, SMALL) as reopened:
        assert reopened.counts() == (1, 1, 1)


def test_a_write_that_stops_short_is_continued(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(sample_store.os, "write", lambda fd, data: real_write(fd, data[:50]))
    fill(tmp_path / "samples", SMALL, [1, 2]).close()
    monkeypatch.undo()
    with SampleStore.open(tmp_path / "samples", SMALL) as store:
        assert store.counts() == (0, 1, 1)


def test_bad_samples_are_refused_before_anything_is_written(tmp_path):
    with SampleStore.open(tmp_path / "samples", SMALL) as store:
        features, window = sample(SMALL, 0)
        with pytest.raises(ValueError, match="label 3"):
            store.append(3, features, window, 0.0)
        with pytest.raises(ValueError, match=r"\(4, 5\)"):
            store.append(0, features, window[:, :5], 0.0)
        assert len(store) == 0


def test_an_unreadable_state_directory_is_a_state_write_error(tmp_path):
    (tmp_path / "samples").mkdir()  # a directory where the file should be
    with pytest.raises(StateWriteError, match="samples"):
        SampleStore.open(tmp_path / "samples", SMALL)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_headers_give_only_our_error(data):
    with pytest.raises(StateError):
        parse_header(data)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=600), valid_header=st.booleans())
def test_random_files_open_as_a_store_with_only_whole_records(tmp_path, data, valid_header):
    path = tmp_path / "samples"
    path.write_bytes((SMALL.header_bytes() if valid_header else b"") + data)
    with SampleStore.open(path, SMALL) as store:
        loaded = store.load()
        assert sum(store.counts()) == len(loaded)
        assert set(loaded.labels.tolist()) <= {0, 1, 2}
    for aside in tmp_path.glob("samples.bad-*"):
        aside.unlink()
    path.unlink()
