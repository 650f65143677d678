"""A tiny build with scripts/build_artifacts.py, so the builder cannot rot (needs TensorFlow:
CI runs this file in .venv-build). Also checks what the committed set cannot: the SGD
optimizer's formula and N > 2 classes, and that --bottleneck builds a head for a foreign base."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip(
        "TensorFlow is not importable in this venv; run in .venv-build (scripts/setup-build.sh)",
        allow_module_level=True,
    )

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import build_artifacts  # noqa: E402

from odar.bottleneck import Bottleneck  # noqa: E402
from odar.head import Head  # noqa: E402
from odar.manifest import load_manifest  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    argv = ["--smoke", "--out", str(out), "--num-classes", "3", "--optimizer", "sgd"]
    assert build_artifacts.main(argv) == 0
    return out


def test_smoke_build_writes_a_valid_manifest(smoke_set):
    manifest = load_manifest(smoke_set)
    assert manifest.classes == ("Class A", "Class B", "Class C")
    assert manifest.optimizer == "sgd" and manifest.optimizer_state == {}
    assert manifest.raw["base"]["training_data"]["kind"] == "synthetic"
    assert manifest.raw["build"]["tensorflow_version"]
    features = Bottleneck(manifest).features(np.zeros((400, 6), np.float32))
    assert features.shape == (manifest.feature_size,)


def test_sgd_step_matches_the_formula(smoke_set):
    head = Head(smoke_set)
    learning_rate = head.manifest.optimizer_hyperparameters["learning_rate"]
    params = head.initial_parameters()
    rng = np.random.default_rng(0)
    grads = {n: rng.normal(size=p.shape).astype(np.float32) for n, p in params.items()}
    new_params, state = head.apply_gradients(params, grads, {})
    assert state == {}
    for name in params:
        np.testing.assert_allclose(
            new_params[name], params[name] - learning_rate * grads[name], rtol=1e-5, atol=1e-7
        )


def test_three_class_head_trains(smoke_set):
    head = Head(smoke_set)
    rng = np.random.default_rng(1)
    centres = 3 * rng.normal(size=(3, head.feature_size)).astype(np.float32)
    labels = np.repeat([0, 1, 2], 3)
    x = centres[labels] + 0.1 * rng.normal(size=(9, head.feature_size)).astype(np.float32)
    params, losses = head.fit(x, labels, steps=200, rng=rng)
    assert losses[-1] < losses[0]
    assert head.predict(params, x[0]).shape == (3,)
    assert [int(np.argmax(head.predict(params, row))) for row in x] == labels.tolist()


def test_bring_your_own_bottleneck(smoke_set, tmp_path):
    argv = ["--bottleneck", str(smoke_set / "bottleneck.tflite"), "--out", str(tmp_path)]
    assert build_artifacts.main(argv) == 0
    manifest = load_manifest(tmp_path)
    assert manifest.raw["base"]["origin"] == "external"
    assert manifest.feature_size == load_manifest(smoke_set).feature_size
    assert (tmp_path / "bottleneck.tflite").read_bytes() == (
        smoke_set / "bottleneck.tflite"
    ).read_bytes()
