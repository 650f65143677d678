"""The training epochs' own process (odar.training_process), with the real artifacts."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest

from odar.engine import Engine
from odar.errors import OdarError, TrainingProcessError
from odar.manifest import MANIFEST_NAME, sha256_of
from odar.training_process import TrainingProcess, describe_exit, run_epoch

ROWS = 60


@pytest.fixture(scope="module")
def engine(artifacts_dir) -> Engine:
    return Engine.load(artifacts_dir, num_threads=1)


@pytest.fixture(scope="module")
def data(engine):
    rng = np.random.default_rng(7)
    manifest = engine.manifest
    labels = rng.integers(0, manifest.num_classes, ROWS)
    features = np.abs(rng.normal(0.0, 1.0, (ROWS, manifest.feature_size))).astype(np.float32)
    features[:, 0] += labels * 2.0
    onehot = np.eye(manifest.num_classes, dtype=np.float32)[labels]
    return features, onehot


@pytest.fixture
def process(engine):
    child = TrainingProcess(
        engine.manifest.path, engine.manifest_hash, num_threads=1, runtime=engine.runtime.name
    )
    yield child
    child.close()


def fresh_state(engine):
    head = engine.head
    return head.initial_parameters(), head.initial_optimizer_state()


def first_epochs(process, data, params, optimizer, count, seed=5, **options):
    """The first *count* epochs of a run in the child, then the run stopped."""
    epochs = process.train(*data, params, optimizer, seed=seed, **options)
    try:
        return [next(epochs) for _ in range(count)]
    finally:
        epochs.close()


def test_the_epochs_in_the_process_are_the_same_arithmetic_as_the_head_in_this_one(
    engine, data, process
):
    features, onehot = data
    params, optimizer = fresh_state(engine)
    head = engine.head
    # The child's orders: permutations drawn, one an epoch, from default_rng(seed).
    rng = np.random.default_rng(5)
    expected, here = [], (params, optimizer)
    for _ in range(3):
        order = rng.permutation(ROWS)
        # Known answer, by hand: the mean of each step's loss weighted by its rows.
        losses = []
        for begin in range(0, ROWS, head.batch_size):
            rows = order[begin : begin + head.batch_size]
            loss, *here = head.train_step(*here, features[rows], onehot[rows])
            losses.append(loss * len(rows))
        expected.append((sum(losses) / ROWS, *here))

    beats = []
    got = first_epochs(process, data, params, optimizer, 3, beat=lambda: beats.append(1))
    assert len(beats) >= 3
    for (loss, new_params, new_optimizer), (want_loss, want_params, want_optimizer) in zip(
        got, expected, strict=True
    ):
        assert loss == pytest.approx(want_loss, rel=1e-5)
        for name in head.parameter_names:
            np.testing.assert_allclose(new_params[name], want_params[name], rtol=1e-4, atol=1e-6)
        for name in new_optimizer:
            np.testing.assert_allclose(
                new_optimizer[name], want_optimizer[name], rtol=1e-4, atol=1e-6
            )
    assert got[2][0] < got[0][0]
    assert process.running and process.pid != os.getpid()


def test_run_epoch_weighs_each_step_by_its_rows():
    calls = []

    def step(params, optimizer, features, onehot):
        calls.append(len(features))
        return float(len(calls)), params, optimizer

    features = np.zeros((5, 2), np.float32)
    result = run_epoch(step, 2, features, features, np.arange(5), {}, {})
    assert calls == [2, 2, 1]
    assert result == (pytest.approx((1 * 2 + 2 * 2 + 3 * 1) / 5), {}, {})
    assert run_epoch(step, 2, features, features, np.arange(5), {}, {}, lambda: False) is None


def test_a_run_stops_when_keep_going_turns_false_and_the_next_run_starts_clean(
    engine, data, process
):
    features, onehot = data
    params, optimizer = fresh_state(engine)
    wanted = [True]
    seen = []
    for epoch in process.train(
        features, onehot, params, optimizer, seed=1, keep_going=lambda: wanted[0]
    ):
        seen.append(epoch)
        if len(seen) == 2:
            wanted[0] = False  # as a stop press: the child runs ahead, nothing more comes
    assert len(seen) == 2
    assert process.last_run_steps >= 2 * ROWS // engine.head.batch_size
    # A run stopped from outside and one ended by the caller leave the child ready for more.
    again = first_epochs(process, data, params, optimizer, 1, seed=1)
    np.testing.assert_allclose(again[0][0], seen[0][0], rtol=1e-6)
    assert first_epochs(process, data, params, optimizer, 2)[1] is not None


def test_a_long_epoch_stops_mid_epoch(engine, data, process):
    features, onehot = data
    params, optimizer = fresh_state(engine)
    big = (np.repeat(features, 2000, axis=0), np.repeat(onehot, 2000, axis=0))
    assert list(process.train(*big, params, optimizer, seed=1, keep_going=lambda: False)) == []
    # An epoch of 120,000 rows is 12,000 steps: the stop came between two of them.
    assert process.last_run_steps is not None
    assert process.last_run_steps < len(big[0]) // engine.head.batch_size
    assert first_epochs(process, data, params, optimizer, 1)


def test_a_killed_child_is_an_error_that_says_how_it_ended(engine, data, process):
    params, optimizer = fresh_state(engine)
    process.start()
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(TrainingProcessError, match="killed by SIGKILL") as raised:
        first_epochs(process, data, params, optimizer, 1)
    assert isinstance(raised.value, OdarError) and isinstance(raised.value, RuntimeError)
    assert not process.running and process.pid is None


def test_a_child_that_died_between_runs_is_an_error_at_the_next(engine, data, process):
    params, optimizer = fresh_state(engine)
    assert first_epochs(process, data, params, optimizer, 1)
    os.kill(process.pid, signal.SIGKILL)
    process._process.wait()
    with pytest.raises(TrainingProcessError, match=r"ended between runs \(killed by SIGKILL\)"):
        first_epochs(process, data, params, optimizer, 1)
    assert not process.running


def test_a_failure_in_the_child_is_raised_with_its_message(engine, data, process):
    params, optimizer = fresh_state(engine)
    name = engine.head.parameter_names[0]
    params[name] = params[name][:1]
    with pytest.raises(TrainingProcessError, match=f"parameter {name!r} has shape"):
        first_epochs(process, data, params, optimizer, 1)
    assert not process.running


def test_the_child_refuses_artifacts_changed_since_start(engine, tmp_path):
    copied = tmp_path / "artifacts"
    shutil.copytree(engine.manifest.directory, copied)
    manifest = copied / MANIFEST_NAME
    loaded = sha256_of(manifest)
    manifest.write_text(manifest.read_text() + "\n")
    process = TrainingProcess(manifest, loaded, num_threads=1, runtime=engine.runtime.name)
    with pytest.raises(TrainingProcessError, match="changed since odar started"):
        process.start()
    assert not process.running


def test_the_child_ignores_sigterm_sigint_and_sighup_and_ends_when_closed(process):
    process.start()
    child = process._process
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(child.pid, signum)
    time.sleep(0.3)
    assert child.poll() is None
    process.close()
    assert child.returncode == 0


def test_a_stopped_child_gives_no_beats_until_it_steps_again(engine, data, process):
    """The trainer's heartbeat beats on the child's progress: a child stuck mid-step (here
    SIGSTOP) stops the beats, and the watchdog restarts the service."""
    params, optimizer = fresh_state(engine)
    process.start()
    os.kill(process.pid, signal.SIGSTOP)
    beats: list[int] = []
    results = []
    epoch = threading.Thread(
        target=lambda: results.append(
            first_epochs(process, data, params, optimizer, 1, beat=lambda: beats.append(1))
        )
    )
    epoch.start()
    epoch.join(1.0)
    assert epoch.is_alive() and not beats
    os.kill(process.pid, signal.SIGCONT)
    epoch.join(30.0)
    assert not epoch.is_alive() and beats and len(results[0]) == 1


@pytest.mark.parametrize(
    ("returncode", "said"),
    [(0, "exit status 0"), (1, "exit status 1"), (-9, "killed by SIGKILL"), (None, "running")],
)
def test_describe_exit(returncode, said):
    assert said in describe_exit(returncode)
