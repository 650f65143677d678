"""Train mode (odar.trainer): epochs over the sample store with the real training artifacts."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import pytest
from conftest import wait_until

from odar.drivers.emulated.clock import VirtualClock
from odar.engine import Engine
from odar.journal import RateLimiter
from odar.param_store import HeadState, ParamStore
from odar.sample_store import SampleStore, StoreLayout
from odar.trainer import (
    IDLE_BEAT_SECONDS,
    LOSS_HISTORY,
    PROCESS_IDLE_SECONDS,
    LatestHead,
    Trainer,
    loss_settled,
)
from odar.training_process import TrainingProcess

PER_CLASS = 12


@pytest.fixture(scope="module")
def engine(artifacts_dir) -> Engine:
    return Engine.load(artifacts_dir, num_threads=1)


@pytest.fixture
def samples(tmp_path, engine):
    """Two well-separated clusters of features, one per class."""
    manifest = engine.manifest
    layout = StoreLayout(
        engine.bottleneck_sha256,
        manifest.num_classes,
        manifest.feature_size,
        (manifest.window_samples, len(manifest.input_layout)),
    )
    rng = np.random.default_rng(1)
    centres = rng.normal(0.0, 1.0, size=(manifest.num_classes, manifest.feature_size))
    window = np.zeros((manifest.window_samples, 6), np.float32)
    with SampleStore.open(tmp_path / "samples.odar", layout, sync_every=0) as store:
        for index in range(PER_CLASS * manifest.num_classes):
            label = index % manifest.num_classes
            features = np.abs(centres[label] + rng.normal(0.0, 0.3, manifest.feature_size))
            store.append(label, features, window, float(index))
        yield store


@pytest.fixture
def param_store(tmp_path, engine) -> ParamStore:
    return ParamStore(tmp_path / "head.params", engine.head_binding)


def fresh_head(engine: Engine) -> LatestHead:
    head = engine.head
    return LatestHead(HeadState(head.initial_parameters(), head.initial_optimizer_state()), False)


#: Trainers a test made: halted after it, so that no training process outlives its test.
MADE: list[Trainer] = []


@pytest.fixture(autouse=True)
def halt_trainers():
    yield
    while MADE:
        trainer = MADE.pop()
        trainer.halt()
        trainer.join(30.0)
        assert not trainer.alive and not trainer.process.running


def training_process(engine: Engine) -> TrainingProcess:
    return TrainingProcess(
        engine.manifest.path,
        engine.manifest_hash,
        num_threads=1,
        runtime=engine.runtime.name,
    )


def make_trainer(engine, samples, latest, param_store, clock=None, **options) -> Trainer:
    clock = clock if clock is not None else VirtualClock()
    options.setdefault("save_every_seconds", 60.0)
    options.setdefault("max_epochs", None)
    trainer = Trainer(
        engine.head,
        training_process(engine),
        samples,
        latest,
        param_store,
        clock,
        limiter=RateLimiter(1000.0, clock),
        seed=3,
        **options,
    )
    MADE.append(trainer)
    return trainer


def test_epochs_lower_the_loss_and_stop_saves_what_inference_sees(engine, samples, param_store):
    latest = fresh_head(engine)
    trainer = make_trainer(engine, samples, latest, param_store)
    assert not latest.trained
    trainer.start()
    wait_until(lambda: latest.get().epoch >= 20, "20 epochs")
    assert trainer.running and latest.trained
    trainer.stop()  # a request: returns at once
    assert trainer.wait_idle(30.0) and not trainer.running
    state = latest.get()
    assert len(trainer.losses) == state.epoch
    assert trainer.losses[-1] < 0.5 * trainer.losses[0]
    saved = param_store.load()
    assert saved is not None and saved.epoch == state.epoch
    for name, array in state.params.items():
        np.testing.assert_array_equal(saved.params[name], array)
    for name, array in state.optimizer.items():
        np.testing.assert_array_equal(saved.optimizer[name], array)


def test_max_epochs_stops_by_itself_and_reports_finished(engine, samples, param_store):
    finished = threading.Event()
    latest = fresh_head(engine)
    trainer = make_trainer(
        engine, samples, latest, param_store, max_epochs=4, on_finished=finished.set
    )
    trainer.start()
    assert finished.wait(30.0)
    wait_until(lambda: not trainer.running, "the trainer thread to end")
    assert latest.get().epoch == 4 and len(trainer.losses) == 4
    assert param_store.load().epoch == 4


def test_training_resumes_from_a_saved_state(engine, samples, param_store):
    latest = fresh_head(engine)
    first = make_trainer(engine, samples, latest, param_store, max_epochs=30)
    first.start()
    wait_until(lambda: not first.running and latest.get().epoch == 30, "30 epochs")
    saved = param_store.load()

    resumed = LatestHead(saved, trained=True)
    second = make_trainer(engine, samples, resumed, param_store, max_epochs=33)
    second.start()
    wait_until(lambda: not second.running and resumed.get().epoch == 33, "3 more epochs")
    assert len(second.losses) == 3
    assert second.losses[0] <= first.losses[-1] * 1.5
    assert second.losses[0] < 0.5 * first.losses[0]


def test_an_empty_optimizer_state_starts_from_the_manifest_initial_values(
    engine, samples, param_store
):
    latest = LatestHead(HeadState(engine.head.initial_parameters(), {}, 0), trained=False)
    trainer = make_trainer(engine, samples, latest, param_store, max_epochs=1)
    trainer.start()
    wait_until(lambda: not trainer.running and latest.get().epoch == 1, "one epoch")
    assert sorted(latest.get().optimizer) == sorted(engine.manifest.optimizer_state)


def test_parameters_are_saved_every_save_every_seconds_of_clock_time(engine, samples, param_store):
    clock = VirtualClock()
    latest = fresh_head(engine)
    trainer = make_trainer(engine, samples, latest, param_store, clock, save_every_seconds=60.0)
    trainer.start()
    try:
        wait_until(lambda: latest.get().epoch >= 3, "3 epochs")
        assert not param_store.path.exists()  # no clock time has passed
        clock.advance(61.0)
        wait_until(param_store.path.exists, "a periodic save")
        assert trainer.running
        assert param_store.load().epoch >= 3
    finally:
        trainer.halt()
        trainer.join(30.0)


def test_a_failed_save_is_logged_and_training_carries_on(engine, samples, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    unwritable = ParamStore(tmp_path / "missing-dir" / "head.params", engine.head_binding)
    latest = fresh_head(engine)
    trainer = make_trainer(engine, samples, latest, unwritable, max_epochs=2)
    assert trainer.save() is False
    trainer.start()
    wait_until(lambda: not trainer.running, "the trainer to end")
    assert latest.get().epoch == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("missing-dir" in m and "previous file stays" in m for m in errors)


@pytest.mark.parametrize(
    ("losses", "settled"),
    [
        ([0.5] * 40, True),
        (list(np.linspace(1.0, 0.2, 40)), False),
        ([0.5] * 39, False),
        ([0.9, 0.0005], True),
        ([0.5] * 20 + [0.495] * 20, True),
        ([0.5] * 20 + [0.48] * 20, False),
    ],
)
def test_loss_settled(engine, samples, param_store, losses, settled):
    trainer = make_trainer(engine, samples, fresh_head(engine), param_store)
    trainer.losses.extend(float(loss) for loss in losses)
    assert trainer.loss_settled() is settled
    assert trainer.last_loss == pytest.approx(losses[-1])


def test_epoch_lines_are_rate_limited_and_say_how_many_were_not_shown(
    engine, samples, param_store, caplog
):
    caplog.set_level(logging.INFO, logger="odar.trainer")
    clock = VirtualClock()
    latest = fresh_head(engine)
    trainer = Trainer(
        engine.head,
        training_process(engine),
        samples,
        latest,
        param_store,
        clock,
        save_every_seconds=60.0,
        max_epochs=None,
        limiter=RateLimiter(1.0, clock),
    )
    MADE.append(trainer)
    trainer.start()
    wait_until(lambda: latest.get().epoch >= 5, "5 epochs")
    clock.advance(1.0)
    # Epochs are fast: wait for ones that surely ended after the advance, not a fixed number.
    advanced_at = latest.get().epoch
    wait_until(lambda: latest.get().epoch >= advanced_at + 5, "5 more epochs")
    trainer.halt()
    trainer.join(30.0)
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert epochs[0].startswith("epoch 1: loss ")
    assert len(epochs) == 2 and "epochs not shown)" in epochs[1]


def test_stop_when_settled_ends_the_run_by_itself_and_saves(engine, samples, param_store):
    finished = threading.Event()
    latest = fresh_head(engine)
    trainer = make_trainer(
        engine, samples, latest, param_store, stop_when_settled=True, on_finished=finished.set
    )
    trainer.start()
    wait_until(finished.is_set, "training to finish by itself")
    assert trainer.finish_reason == "loss settled"
    assert loss_settled(trainer.losses)
    saved = param_store.load()
    assert saved is not None and saved.epoch == latest.get().epoch


def test_training_loads_features_only_never_the_raw_windows(engine, samples, param_store):
    """A 300 MB store is 95% windows the head never sees: loading them could OOM a Pi Zero 2."""
    loaded = []
    real_load = samples.load

    def recording_load(**options):
        result = real_load(**options)
        loaded.append(result)
        return result

    samples.load = recording_load
    trainer = make_trainer(engine, samples, fresh_head(engine), param_store, max_epochs=2)
    trainer.start()
    wait_until(lambda: not trainer.running, "two epochs")
    assert loaded and all(result.windows is None for result in loaded)
    assert len(loaded[0]) == len(samples)


def test_stop_is_a_request_and_saves_never_overlap(engine, samples, param_store):
    latest = fresh_head(engine)
    trainer = make_trainer(engine, samples, latest, param_store)
    inside, most = [0], [0]
    lock = threading.Lock()
    real_save = param_store.save
    release = threading.Event()

    def watched_save(state):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        release.wait(0.01)
        real_save(state)
        with lock:
            inside[0] -= 1

    param_store.save = watched_save
    trainer.start()
    wait_until(lambda: latest.get().epoch >= 2, "2 epochs")
    savers = [threading.Thread(target=trainer.save) for _ in range(8)]
    for saver in savers:
        saver.start()
    trainer.stop()  # returns at once; the trainer thread saves as the run ends
    for saver in savers:
        saver.join()
    assert trainer.wait_idle(30.0)
    assert most[0] == 1
    assert param_store.load().epoch == latest.get().epoch
    trainer.halt()
    trainer.join(30.0)
    assert not trainer.alive


def test_the_loss_history_is_bounded(engine, samples, param_store):
    trainer = make_trainer(engine, samples, fresh_head(engine), param_store)
    trainer.losses.extend(float(n) for n in range(10 * LOSS_HISTORY))
    assert len(trainer.losses) == LOSS_HISTORY
    assert trainer.last_loss == 10 * LOSS_HISTORY - 1


def test_runs_share_a_training_process_which_ends_once_idle_for_its_time(
    engine, samples, param_store, caplog
):
    caplog.set_level(logging.INFO, logger="odar.trainer")
    clock = VirtualClock()
    latest = fresh_head(engine)
    trainer = make_trainer(engine, samples, latest, param_store, clock)
    pids = []
    for run in range(1, 3):
        target = latest.get().epoch + 3
        trainer.start()
        wait_until(lambda run=run: trainer.runs == run, f"run {run}")
        wait_until(lambda target=target: latest.get().epoch >= target, "3 more epochs")
        pids.append(trainer.process.pid)
        trainer.stop()
        assert trainer.wait_idle(30.0)
        clock.advance(PROCESS_IDLE_SECONDS / 2)
    assert pids[0] == pids[1] and pids[0] not in (None, os.getpid())
    (started,) = [r.getMessage() for r in caplog.records if "started in" in r.getMessage()]
    assert started.startswith(f"training process {pids[0]} started in ")
    assert param_store.load().epoch == latest.get().epoch >= 6
    child = trainer.process._process
    time.sleep(3 * IDLE_BEAT_SECONDS)  # the idle trainer thread looked, and kept it
    assert trainer.process.running
    clock.advance(PROCESS_IDLE_SECONDS / 2)
    wait_until(lambda: not trainer.process.running, "the idle training process to end")
    assert child.returncode == 0
    trainer.start()  # a new run starts a new one
    wait_until(lambda: trainer.runs == 3 and trainer.process.pid is not None, "run 3")
    assert trainer.process.pid not in pids
