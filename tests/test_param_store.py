"""Saved head parameters: round trip, and never garbage from a torn, corrupt or foreign file."""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odar import param_store
from odar.errors import OdarError, StateError, StateWriteError
from odar.param_store import (
    HeadState,
    ParamStore,
    decode_head_state,
    encode_head_state,
    move_aside,
)

MANIFEST = "a" * 64
OTHER_MANIFEST = "b" * 64


def head_state(epoch: int = 7, seed: int = 0) -> HeadState:
    rng = np.random.default_rng(seed)
    return HeadState(
        params={
            "w1": rng.standard_normal((16, 8)).astype(np.float32),
            "b1": rng.standard_normal(8).astype(np.float32),
        },
        optimizer={"m.w1": np.zeros((16, 8), np.float32), "step": np.asarray(3, np.int32)},
        epoch=epoch,
    )


def assert_same(left: HeadState, right: HeadState) -> None:
    assert left.epoch == right.epoch
    for mine, theirs in ((left.params, right.params), (left.optimizer, right.optimizer)):
        assert sorted(mine) == sorted(theirs)
        for name in mine:
            assert mine[name].dtype == theirs[name].dtype
            np.testing.assert_array_equal(mine[name], theirs[name])


@pytest.fixture
def store(tmp_path) -> ParamStore:
    return ParamStore(tmp_path / "head.params", MANIFEST, wall_clock=lambda: 1_700_000_000.0)


def test_round_trip(store):
    state = head_state()
    store.save(state)
    loaded = store.load()
    assert loaded is not None
    assert_same(loaded, state)


def test_no_file_is_none_and_nothing_is_moved(store, tmp_path):
    assert store.load() is None
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_and_leaves_no_temporary_file(store, tmp_path):
    store.save(head_state(epoch=1))
    store.save(head_state(epoch=2, seed=1))
    assert store.load().epoch == 2
    assert [p.name for p in tmp_path.iterdir()] == ["head.params"]


def test_truncated_at_every_offset_is_refused_and_moved_aside(store, tmp_path):
    data = encode_head_state(head_state(), MANIFEST)
    for length in range(len(data)):
        store.path.write_bytes(data[:length])
        assert store.load() is None, length
        assert not store.path.exists()
        (aside,) = tmp_path.glob("head.params.bad-*")
        assert aside.read_bytes() == data[:length]
        aside.unlink()


def test_a_flipped_byte_anywhere_is_caught():
    data = encode_head_state(head_state(), MANIFEST)
    for offset in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[offset] ^= 0x20
        with pytest.raises(StateError, match=r"checksum|magic"):
            decode_head_state(bytes(damaged), MANIFEST)


def test_parameters_of_other_artifacts_are_refused_and_moved_aside(store, tmp_path, caplog):
    ParamStore(store.path, OTHER_MANIFEST).save(head_state())
    with caplog.at_level(logging.WARNING):
        assert store.load() is None
    assert "trained for artifacts" in caplog.text and OTHER_MANIFEST in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["head.params.bad-20231114T221320Z"]


def test_move_aside_never_overwrites_an_earlier_bad_file(tmp_path):
    path = tmp_path / "head.params"
    for content in (b"one", b"two", b"three"):
        path.write_bytes(content)
        move_aside(path, 0.0)
    assert sorted(p.read_bytes() for p in tmp_path.iterdir()) == [b"one", b"three", b"two"]


def test_an_unreadable_header_is_refused():
    body = param_store.MAGIC + (5).to_bytes(4, "little") + b"{oops"
    with pytest.raises(StateError, match="unreadable header"):
        decode_head_state(body + hashlib.sha256(body).digest(), MANIFEST)


@pytest.mark.parametrize(
    ("call", "code"),
    [("write", errno.ENOSPC), ("replace", errno.EROFS), ("fsync", errno.EIO)],
)
def test_a_failed_save_keeps_the_old_file_and_raises_a_state_write_error(
    store, tmp_path, monkeypatch, call, code
):
    store.save(head_state(epoch=1))

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(param_store.os, call, fail)
    with pytest.raises(StateWriteError) as caught:
        store.save(head_state(epoch=2))
    monkeypatch.undo()
    assert isinstance(caught.value, OdarError) and caught.value.errno == code
    assert str(store.path) in str(caught.value) and os.strerror(code) in str(caught.value)
    assert store.load().epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["head.params"]


def test_a_write_that_stops_short_is_continued(store, monkeypatch):
    real_write = os.write

    def short_write(descriptor, data):
        return real_write(descriptor, bytes(data[:100]))

    monkeypatch.setattr(param_store.os, "write", short_write)
    store.save(head_state())
    monkeypatch.undo()
    assert_same(store.load(), head_state())


def test_an_oversized_file_is_refused_without_reading_it_all(store, monkeypatch):
    monkeypatch.setattr(param_store, "MAX_FILE_BYTES", 100)
    store.path.write_bytes(b"x" * 1000)
    assert store.load() is None
    assert not store.path.exists()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_give_only_our_error(data):
    with pytest.raises(StateError):
        decode_head_state(data, MANIFEST)


@settings(max_examples=100, deadline=None)
@given(prefix=st.binary(max_size=200))
def test_random_bytes_with_a_valid_magic_give_only_our_error(prefix):
    with pytest.raises(StateError):
        decode_head_state(param_store.MAGIC + prefix, MANIFEST)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_random_files_load_as_none(tmp_path, data):
    store = ParamStore(tmp_path / "head.params", MANIFEST)
    store.path.write_bytes(data)
    assert store.load() is None
    for aside in tmp_path.glob("head.params.bad-*"):
        aside.unlink()


def test_a_signed_file_with_a_bad_payload_is_refused():
    header = b'{"manifest_hash": "%s", "payload_length": 4, "schema": 1}' % MANIFEST.encode()
    body = param_store.MAGIC + len(header).to_bytes(4, "little") + header + b"junk"
    with pytest.raises(StateError, match="unreadable arrays"):
        decode_head_state(body + hashlib.sha256(body).digest(), MANIFEST)


def test_load_removes_temp_files_left_by_a_killed_save(tmp_path):
    store = ParamStore(tmp_path / "head.params", "a" * 64)
    store.save(HeadState({"w": np.ones(3, np.float32)}, {}, 4))
    stale = tmp_path / ".head.params.tmp-999999"
    stale.write_bytes(b"half a save")
    loaded = store.load()
    assert loaded is not None and loaded.epoch == 4
    assert not stale.exists()


def test_two_threads_saving_at_once_never_fail_or_mix(store, tmp_path):
    """The trainer's periodic save and the shutdown save may run together: each must land
    whole (the old code shared one temp name and raised or left a short file)."""
    import threading

    from faults_support import head_state_for, same_state

    failures: list[BaseException] = []
    for round_index in range(100):
        barrier = threading.Barrier(2)
        epochs = (2 * round_index, 2 * round_index + 1)

        def save(epoch: int, barrier=barrier) -> None:
            barrier.wait()
            try:
                store.save(head_state_for(epoch))
            except BaseException as error:
                failures.append(error)

        threads = [threading.Thread(target=save, args=(epoch,)) for epoch in epochs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        loaded = store.load()
        assert loaded is not None and loaded.epoch in epochs, round_index
        assert same_state(loaded, head_state_for(loaded.epoch))
    assert failures == []
    assert [p.name for p in tmp_path.iterdir()] == ["head.params"]


def test_temp_files_are_private_and_never_follow_planted_links(store, tmp_path):
    """Symlinks at likely temp names (the old PID-based ones too) are never written through."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's secret")
    victim.chmod(0o600)
    for pid in range(os.getpid() - 50, os.getpid() + 50):
        (tmp_path / f".head.params.tmp-{pid}").symlink_to(victim)
    store.save(HeadState({"w": np.ones(3, np.float32)}))
    assert victim.read_bytes() == b"root's secret"
    assert not store.path.is_symlink()
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.load() is not None  # cleans up every leftover temp name, links included
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.params", "victim"]
    assert victim.read_bytes() == b"root's secret"


def test_a_symlinked_parameter_file_is_not_read_through_but_moved_aside(store, tmp_path):
    other = tmp_path / "elsewhere.params"
    store.save(HeadState({"w": np.ones(3, np.float32)}))
    store.path.rename(other)
    store.path.symlink_to(other)
    assert store.load() is None
    assert other.exists() and not os.path.lexists(store.path)
    (aside,) = tmp_path.glob("head.params.bad-*")
    assert aside.is_symlink()


def test_an_archive_flagged_as_encrypted_is_unreadable_state_not_a_crash() -> None:
    # Found by test_fuzz: zipfile raises RuntimeError for a member whose encryption bit is set.
    from odar.param_store import _decode_payload

    buffer = io.BytesIO()
    np.savez(buffer, epoch=np.int64(1))
    data = bytearray(buffer.getvalue())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at != -1:
            data[at + flags_at] |= 1  # bit 0 of the general purpose flags: encrypted
            at = data.find(signature, at + 4)
    with pytest.raises(StateError, match="unreadable arrays"):
        _decode_payload(bytes(data), "head.params")
