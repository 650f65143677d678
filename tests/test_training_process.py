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


def test_an_epoch_in_the_process_is_the_same_arithmetic_as_the_head_in_this_one(
    engine, data, process
):
    features, onehot = data
    params, optimizer = fresh_state(engine)
    order = np.random.default_rng(1).permutation(ROWS)
    head = engine.head
    expected = run_epoch(
        head.train_step, head.batch_size, features, onehot, order, params, optimizer
    )
    assert expected is not None
    # Known answer, by hand: the mean of each step's loss weighted by its rows.
    losses, here = [], (params, optimizer)
    for begin in range(0, ROWS, head.batch_size):
        rows = order[begin : begin + head.batch_size]
        loss, *here = head.train_step(*here, features[rows], onehot[rows])
        losses.append(loss * len(rows))
    assert expected[0] == pytest.approx(sum(losses) / ROWS, rel=1e-6)

    beats = []
    process.load(features, onehot)
    result = process.epoch(order, params, optimizer, beat=lambda: beats.append(1))
    assert result is not None and beats
    loss, new_params, new_optimizer = result
    assert loss == pytest.approx(expected[0], rel=1e-6)
    for name in head.parameter_names:
        np.testing.assert_allclose(new_params[name], expected[1][name], rtol=1e-5, atol=1e-7)
    for name in new_optimizer:
        np.testing.assert_allclose(new_optimizer[name], expected[2][name], rtol=1e-5, atol=1e-7)
    assert process.running and process.pid != os.getpid()


def test_a_second_epoch_goes_on_from_the_first(engine, data, process):
    features, onehot = data
    params, optimizer = fresh_state(engine)
    order = np.arange(ROWS)
    process.load(features, onehot)
    first = process.epoch(order, params, optimizer)
    assert first is not None
    second = process.epoch(order, first[1], first[2])
    assert second is not None and second[0] < first[0]


def test_keep_going_false_stops_the_epoch_and_the_child_trains_on(engine, data, process):
    features, onehot = data
    params, optimizer = fresh_state(engine)
    process.load(np.repeat(features, 200, axis=0), np.repeat(onehot, 200, axis=0))
    order = np.arange(ROWS * 200)
    assert process.epoch(order, params, optimizer, keep_going=lambda: False) is None
    # The stop belonged to that epoch: the next runs to its end.
    process.load(features, onehot)
    assert process.epoch(np.arange(ROWS), params, optimizer) is not None


def test_a_killed_child_is_an_error_that_says_how_it_ended(engine, data, process):
    features, onehot = data
    params, optimizer = fresh_state(engine)
    process.load(features, onehot)
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(TrainingProcessError, match="killed by SIGKILL") as raised:
        process.epoch(np.arange(ROWS), params, optimizer)
    assert isinstance(raised.value, OdarError) and isinstance(raised.value, RuntimeError)
    assert not process.running and process.pid is None


def test_a_failure_in_the_child_is_raised_with_its_message(engine, data, process):
    features, onehot = data
    params, optimizer = fresh_state(engine)
    name = engine.head.parameter_names[0]
    params[name] = params[name][:1]
    process.load(features, onehot)
    with pytest.raises(TrainingProcessError, match=f"parameter {name!r} has shape"):
        process.epoch(np.arange(ROWS), params, optimizer)
    assert not process.running


def test_the_child_refuses_artifacts_changed_since_start(engine, tmp_path, data):
    copied = tmp_path / "artifacts"
    shutil.copytree(engine.manifest.directory, copied)
    manifest = copied / MANIFEST_NAME
    loaded = sha256_of(manifest)
    manifest.write_text(manifest.read_text() + "\n")
    process = TrainingProcess(manifest, loaded, num_threads=1, runtime=engine.runtime.name)
    with pytest.raises(TrainingProcessError, match="changed since odar started"):
        process.load(*data)
    assert not process.running


def test_the_child_ignores_sigterm_and_sigint_and_ends_when_closed(engine, data, process):
    process.load(*data)
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
    features, onehot = data
    params, optimizer = fresh_state(engine)
    process.load(features, onehot)
    os.kill(process.pid, signal.SIGSTOP)
    beats: list[float] = []
    results = []
    epoch = threading.Thread(
        target=lambda: results.append(
            process.epoch(np.arange(ROWS), params, optimizer, beat=lambda: beats.append(1))
        )
    )
    epoch.start()
    epoch.join(1.0)
    assert epoch.is_alive() and not beats
    os.kill(process.pid, signal.SIGCONT)
    epoch.join(30.0)
    assert not epoch.is_alive() and beats and results[0] is not None


def test_epoch_before_load_is_refused(engine, process):
    params, optimizer = fresh_state(engine)
    with pytest.raises(TrainingProcessError, match="call load"):
        process.epoch(np.arange(3), params, optimizer)


@pytest.mark.parametrize(
    ("returncode", "said"),
    [(0, "exit status 0"), (1, "exit status 1"), (-9, "killed by SIGKILL"), (None, "running")],
)
def test_describe_exit(returncode, said):
    assert said in describe_exit(returncode)
