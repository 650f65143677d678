"""Every committed artifact, and the head set for the original bottleneck, loads, allocates and
runs under whichever TFLite runtime this venv has (CI: tflite-runtime 2.14 in .venv,
ai-edge-litert in .venv-litert), with no Flex delegate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odar.manifest import load_manifest
from odar.runtime import TFLiteModel, load_runtime

ROOT = Path(__file__).resolve().parent.parent
SETS = {"ours": ROOT / "artifacts", "original-bottleneck": ROOT / "artifacts" / "seed-head"}

pytestmark = pytest.mark.litert


def _manifest(set_name: str):
    directory = SETS[set_name]
    manifest = load_manifest(directory, verify_hashes=False)
    bottleneck = manifest.artifacts["bottleneck"].path
    if not bottleneck.is_file():
        pytest.skip(f"{bottleneck} not present (../shared/seed-artifacts is not beside the repo)")
    return load_manifest(directory)  # now with every SHA-256 checked


@pytest.mark.parametrize("set_name", list(SETS))
@pytest.mark.parametrize(
    "artifact", ["bottleneck", "initialize", "train_head", "optimizer", "inference"]
)
def test_artifact_runs_without_flex(set_name, artifact):
    manifest = _manifest(set_name)
    info = manifest.artifacts[artifact]
    runtime = load_runtime()
    print(f"{set_name}/{artifact} on {runtime.name}")
    # Loading is where a Flex op fails ("Select TensorFlow op(s) ... not supported").
    model = TFLiteModel(info.path, num_threads=2, runtime=runtime, signature=info.signature)
    assert model.input_shapes() == {t.name: t.shape for t in info.inputs}
    assert model.output_shapes() == {t.name: t.shape for t in info.outputs}
    rng = np.random.default_rng(0)
    feeds = {t.name: rng.uniform(0.0, 1.0, size=t.shape).astype(np.float32) for t in info.inputs}
    if "sample_weight" in feeds:
        feeds["sample_weight"] = np.ones_like(feeds["sample_weight"])
    if "step" in feeds:
        feeds["step"] = np.float32(0.0)
    outputs = model.run(feeds)
    for tensor in info.outputs:
        value = outputs[tensor.name]
        assert value.shape == tensor.shape
        assert np.isfinite(value).all(), tensor.name
    if artifact == "inference":
        assert outputs["probabilities"].sum() == pytest.approx(1.0, rel=1e-5)
    if artifact == "initialize":
        assert np.abs(outputs["hidden_kernel"]).max() > 0
