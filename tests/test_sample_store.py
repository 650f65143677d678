"""The sample store: appends survive reopening; torn tails, corruption and foreign files don't
turn into garbage samples."""

from __future__ import annotations

import errno
import logging
import os
import tracemalloc
from pathlib import Path

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


def test_a_torn_header_without_records_is_restored_or_moved_aside(tmp_path):
    """Copy A whole: copy B is restored from it; less: nothing to trust, moved aside."""
    path = tmp_path / "samples"
    header = SMALL.header_bytes() * 2
    outcomes = set()
    for length in range(1, len(header), 97):
        path.write_bytes(header[:length])
        with SampleStore.open(path, SMALL) as store:
            assert len(store) == 0
        assert path.read_bytes() == header
        asides = list(tmp_path.glob("samples.bad-*"))
        outcomes.add(bool(asides))
        for aside in asides:
            aside.unlink()
    assert outcomes == {True, False}


def test_a_corrupt_record_in_the_middle_loses_only_that_record(tmp_path, caplog):
    path = tmp_path / "samples"
    fill(path, SMALL, [0, 1, 2, 0]).close()
    data = bytearray(path.read_bytes())
    record = SMALL.record_dtype().itemsize
    data[-record - 10] ^= 0xFF  # inside the third record
    path.write_bytes(bytes(data))
    with SampleStore.open(path, SMALL, wall_clock=lambda: NOW) as store:
        assert store.counts() == (2, 1, 0)
        assert store.damaged_records == 1
        assert store.load().timestamps.tolist() == [1000.0, 1001.0, 1003.0]
        store.append(1, *sample(SMALL, 7), timestamp=5.0)
    with SampleStore.open(path, SMALL) as store:
        assert store.counts() == (2, 2, 0)
    assert "1 damaged records skipped" in caplog.text
    assert list(tmp_path.glob("samples.bad-*")) == []


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


@pytest.mark.parametrize(("call", "code"), [("pwrite", errno.ENOSPC), ("fsync", errno.EIO)])
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
    real_write = os.pwrite
    monkeypatch.setattr(
        sample_store.os, "pwrite", lambda fd, data, at: real_write(fd, data[:50], at)
    )
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
    path.write_bytes((SMALL.header_bytes() * 2 if valid_header else b"") + data)
    with SampleStore.open(path, SMALL) as store:
        loaded = store.load()
        assert sum(store.counts()) == len(loaded)
        assert set(loaded.labels.tolist()) <= {0, 1, 2}
    for aside in tmp_path.glob("samples.bad-*"):
        aside.unlink()
    path.unlink()


# ---------------------------------------------------------------------------- damage, schema 1

RECORDS_30K = 30_000


def test_a_zeroed_page_in_the_middle_of_30000_records_keeps_every_other_record(tmp_path):
    """The daemon's record size (a 400 x 6 window); one 4 KiB page zeroed 10% and 50% in: only
    the records that page touches are lost, and opening never holds more than a chunk."""
    path = tmp_path / "samples"
    layout = FULL
    features, window = sample(layout, 0)
    with SampleStore.open(path, layout, sync_every=0) as store:
        for index in range(RECORDS_30K):
            store.append(index % 2, features, window, timestamp=float(index))
    size = path.stat().st_size
    record = layout.record_dtype().itemsize
    for fraction in (0.1, 0.5):
        offset = int(size * fraction) // 4096 * 4096
        with open(path, "r+b") as file:
            file.seek(offset)
            file.write(bytes(4096))
        touched = {(at - sample_store.DATA_START) // record for at in (offset, offset + 4095)}
        tracemalloc.start()
        with SampleStore.open(path, layout) as store:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            stamps = store.load(windows=False).timestamps
        assert peak < 16 * 2**20, f"opening peaked at {peak / 2**20:.1f} MiB"
        assert fraction == 0.5 or len(stamps) == RECORDS_30K - len(touched)
        assert set(stamps.astype(int).tolist()).isdisjoint(touched)
    assert len(stamps) >= RECORDS_30K - 4
    assert path.stat().st_size == size  # nothing cut off, nothing moved aside
    assert list(tmp_path.glob("samples.bad-*")) == []


def test_a_damaged_first_header_copy_is_read_from_the_second(tmp_path):
    path = tmp_path / "samples"
    fill(path, SMALL, [0, 1, 2]).close()
    with open(path, "r+b") as file:
        file.write(bytes(4096))
    with SampleStore.open(path, SMALL) as store:
        assert store.counts() == (1, 1, 1)
        assert not store.features_recomputed


def double(windows: np.ndarray) -> np.ndarray:
    """A stand-in bottleneck: the first FEATURES values of each window, doubled."""
    return 2.0 * windows.reshape(len(windows), -1)[:, :FEATURES]


def test_a_recompute_tells_how_far_it_got_chunk_by_chunk(tmp_path):
    """A large store takes minutes to re-run on a Pi: the caller hears of every chunk (the
    daemon pushes systemd's start limit on with it), ending at every record in the file."""
    path = tmp_path / "samples"
    records = 600  # three chunks of 256, the last one short
    fill(path, SMALL, [seed % 3 for seed in range(records)]).close()
    heard: list[tuple[int, int]] = []
    newer = StoreLayout("e" * 64, 3, FEATURES, (4, 6))
    with SampleStore.open(
        path, newer, features_for=double, progress=lambda *told: heard.append(told)
    ) as store:
        assert len(store) == records
    assert heard == [(256, records), (512, records), (records, records)]


def test_both_header_copies_lost_the_records_are_kept_and_their_features_recomputed(tmp_path):
    path = tmp_path / "samples"
    fill(path, SMALL, [0, 1, 2, 2]).close()
    with open(path, "r+b") as file:
        file.write(bytes(8192))
    with SampleStore.open(path, SMALL, features_for=double) as store:
        assert store.counts() == (1, 1, 2)
        assert store.features_recomputed
        loaded = store.load()
    np.testing.assert_array_equal(loaded.features, double(loaded.windows))
    with SampleStore.open(path, SMALL) as store:  # the header is whole again
        assert len(store) == 4 and not store.features_recomputed


def test_another_bottleneck_recomputes_features_from_the_windows(tmp_path, caplog):
    path = tmp_path / "samples"
    fill(path, SMALL, [0, 1, 2]).close()
    newer = StoreLayout("e" * 64, 3, FEATURES, (4, 6))
    with (
        caplog.at_level(logging.WARNING),
        SampleStore.open(path, newer, features_for=double) as store,
    ):
        assert store.features_recomputed and store.counts() == (1, 1, 1)
        loaded = store.load()
    assert "the bottleneck changed" in caplog.text
    for seed in range(3):
        np.testing.assert_array_equal(loaded.windows[seed], sample(SMALL, seed)[1])
    np.testing.assert_array_equal(loaded.features, double(loaded.windows))
    assert list(tmp_path.glob("samples.bad-*")) == []


SCHEMA1 = Path(__file__).resolve().parent / "data" / "samples-schema1.odar"


@pytest.mark.parametrize("same_manifest", [True, False])
def test_a_store_written_by_schema_1_migrates_without_loss(tmp_path, same_manifest, caplog):
    """tests/data/samples-schema1.odar was written by the previous code: 12 records, record
    i of label i % 2, timestamp 100 + i, features and window drawn from default_rng(i)."""
    path = tmp_path / "samples.odar"
    path.write_bytes(SCHEMA1.read_bytes())
    layout = StoreLayout("b" * 64, 2, 8, (400, 6))
    legacy = "1" * 64 if same_manifest else "2" * 64
    with (
        caplog.at_level(logging.WARNING),
        SampleStore.open(path, layout, legacy_manifest_hash=legacy, features_for=double) as store,
    ):
        assert store.counts() == (6, 6)
        assert store.features_recomputed is not same_manifest
        loaded = store.load()
    assert "migrated 12 samples from schema 1" in caplog.text
    for index in range(12):
        rng = np.random.default_rng(index)
        features = rng.standard_normal(8).astype(np.float32)
        window = rng.standard_normal((400, 6)).astype(np.float32)
        assert loaded.labels[index] == index % 2 and loaded.timestamps[index] == 100.0 + index
        np.testing.assert_array_equal(loaded.windows[index], window)
        expected = features if same_manifest else double(window[None])[0]
        np.testing.assert_array_equal(loaded.features[index], expected)
    assert path.read_bytes()[:8] == sample_store.MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.odar"]


# ---------------------------------------------------------------------------- primitives


@pytest.mark.parametrize("change", ["relabel", "delete"])
def test_a_relabel_or_delete_cut_short_at_any_byte_loses_at_most_that_record(tmp_path, change):
    """Delete and relabel rewrite a record's first bytes in place, inside one sector. If power
    goes mid-write, whatever prefix reached the card leaves that record old, new or (its CRC
    failing) dropped as damaged: never another record, never the store."""
    path = tmp_path / "samples"
    fill(path, SMALL, [0, 1, 2, 0, 1]).close()
    before = path.read_bytes()
    with SampleStore.open(path, SMALL) as store:
        target = store.ids()[2]
        if change == "relabel":
            assert store.relabel([target], 0) == 1
        else:
            assert store.delete([target]) == 1
    after = path.read_bytes()
    differing = [i for i in range(len(before)) if before[i] != after[i]]
    first, last = differing[0], differing[-1]
    assert last - first < 16 and first // 512 == last // 512  # one write, one sector
    outcomes = set()
    for cut in range(first, last + 2):
        path.write_bytes(after[:cut] + before[cut:])
        with SampleStore.open(path, SMALL) as store:
            others = [i for i in store.ids() if i != target]
            assert len(others) == 4
            labels = dict(zip(store.ids(), store.load(windows=False).labels.tolist(), strict=True))
            if target not in labels:
                outcomes.add("gone")
            else:
                outcomes.add("old" if labels[target] == 2 else "new")
            assert [labels[i] for i in others] == [0, 1, 0, 1]
    assert "old" in outcomes and ("new" in outcomes or "gone" in outcomes)


def test_delete_relabel_and_export_survive_a_reopen(tmp_path):
    path = tmp_path / "samples"
    store = fill(path, SMALL, [0, 1, 2, 0, 1])
    ids = store.ids()
    assert len(ids) == 5
    assert store.delete([ids[1], 999]) == 1
    assert store.relabel([ids[0], ids[3]], 2) == 2
    assert store.counts() == (0, 1, 3)
    new_id = store.append(0, *sample(SMALL, 9), timestamp=9.0)
    assert new_id > max(ids)
    store.close()
    with SampleStore.open(path, SMALL) as store:
        assert store.counts() == (1, 1, 3)
        assert store.ids() == [ids[0], ids[2], ids[3], ids[4], new_id]
        exported = store.export(tmp_path / "out.npz", ids=[ids[0], ids[4]])
        features_only = store.load(windows=False)
    assert exported == 2 and features_only.windows is None
    with np.load(tmp_path / "out.npz") as archive:
        assert archive["labels"].tolist() == [2, 1]
        np.testing.assert_array_equal(archive["windows"][1], sample(SMALL, 4)[1])
