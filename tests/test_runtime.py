"""The runtime shim: which runtime loads, forcing one, and running models by tensor name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odar import runtime
from odar.errors import ArtifactError, ConfigError, OdarError, RuntimeMissingError
from odar.runtime import RUNTIME_ENV, TFLiteModel, load_runtime

ROOT = Path(__file__).resolve().parent.parent
INFERENCE = ROOT / "artifacts" / "inference.tflite"
SEED_BOTTLENECK = ROOT.parent / "shared" / "seed-artifacts" / "bottleneck.tflite"


def test_a_runtime_loads_and_the_env_var_can_force_it(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    found = load_runtime()
    assert found.name in runtime.RUNTIME_MODULES
    print(f"runtime in this venv: {found.name}")
    monkeypatch.setenv(RUNTIME_ENV, found.name)
    assert load_runtime().name == found.name


def test_an_unknown_runtime_name_is_a_config_error(monkeypatch):
    monkeypatch.setenv(RUNTIME_ENV, "tensorflow")
    with pytest.raises(ConfigError, match="ODAR_TFLITE_RUNTIME='tensorflow'"):
        load_runtime()


def test_no_importable_runtime_raises_runtime_missing(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    monkeypatch.setattr(
        runtime,
        "RUNTIME_MODULES",
        {"tflite-runtime": "no_such_module_a", "ai-edge-litert": "no_such_module_b"},
    )
    with pytest.raises(RuntimeMissingError) as caught:
        load_runtime()
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, OdarError)
    assert "no_such_module_a" in str(caught.value) and "no_such_module_b" in str(caught.value)


def test_num_threads_is_always_passed(monkeypatch):
    seen = {}
    real = load_runtime()

    def recording(**kwargs):
        seen.update(kwargs)
        return real.interpreter_class(**kwargs)

    TFLiteModel(INFERENCE, 3, runtime.Runtime("recording", recording))
    assert seen["num_threads"] == 3


def test_signature_model_runs_by_name():
    model = TFLiteModel(INFERENCE, 1)
    assert model.has_signature
    shapes = model.input_shapes()
    feeds = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    out = model.run(feeds)
    assert list(out) == ["probabilities"]
    # zero weights: every class equally likely
    assert np.allclose(out["probabilities"], 1.0 / out["probabilities"].shape[1])
    with pytest.raises(ArtifactError, match="bottleneck"):
        model.run({k: v for k, v in feeds.items() if k != "bottleneck"})


def test_model_without_signature_runs_by_tensor_names():
    if not SEED_BOTTLENECK.is_file():
        pytest.skip(f"{SEED_BOTTLENECK} not present (../shared/seed-artifacts)")
    model = TFLiteModel(SEED_BOTTLENECK, 1)
    assert not model.has_signature
    assert model.input_shapes() == {"input_1": (1, 2400)}
    out = model.run({"input_1": np.zeros((1, 2400), np.float32)})
    assert out["Identity"].shape == (1, 1, 35, 128)


def test_a_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ArtifactError, match=r"broken\.tflite"):
        TFLiteModel(bad, 1)
