"""The base on the device: window in, flat float32 features out, for ours and the original."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from odar.bottleneck import Bottleneck
from odar.runtime import TFLiteModel

ROOT = Path(__file__).resolve().parent.parent
SEED_HEAD = ROOT / "artifacts" / "seed-head"
SEED_BOTTLENECK = ROOT.parent / "shared" / "seed-artifacts" / "bottleneck.tflite"


def _synthetic():
    path = ROOT / "scripts" / "artifact_builder" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("test_bottleneck_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ours() -> Bottleneck:
    return Bottleneck(ROOT / "artifacts", num_threads=1)


def test_features_are_flat_float32_and_deterministic(ours):
    window = np.random.default_rng(0).normal(size=(400, 6)).astype(np.float32)
    first, second = ours.features(window), ours.features(window)
    assert first.shape == (ours.manifest.feature_size,)
    assert first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


def test_features_tell_activities_apart(ours):
    synthetic = _synthetic()
    rng = np.random.default_rng(1)
    x, y = synthetic.make_windows(("sit", "run"), 6, 100.0, rng=rng)
    features = ours.features_of(x)
    assert features.shape == (12, ours.feature_size)
    sit, run = features[y == 0], features[y == 1]
    between = np.linalg.norm(sit.mean(0) - run.mean(0))
    within = max(np.linalg.norm(sit - sit.mean(0), axis=1).mean(), 1e-6)
    assert between > within


def test_wrong_window_shape_is_refused(ours):
    with pytest.raises(ValueError, match=r"window shape \(6, 400\)"):
        ours.features(np.zeros((6, 400), np.float32))


def test_original_bottleneck_gets_the_interleaved_window():
    if not SEED_BOTTLENECK.is_file():
        pytest.skip(f"{SEED_BOTTLENECK} not present (../shared/seed-artifacts)")
    bottleneck = Bottleneck(SEED_HEAD, num_threads=1)
    window = np.random.default_rng(2).normal(size=(400, 6)).astype(np.float32)
    features = bottleneck.features(window)
    assert features.shape == (4480,)
    direct = TFLiteModel(SEED_BOTTLENECK, 1, signature=None).run(
        {"input_1": window.reshape(1, 2400)}
    )["Identity"]
    np.testing.assert_array_equal(features, direct.reshape(-1))
