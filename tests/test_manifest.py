"""manifest.json: the committed one loads; every kind of damage names the file and the fault."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from odar.errors import ArtifactError
from odar.manifest import ARTIFACT_NAMES, load_manifest, sha256_of

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture
def copy(tmp_path) -> Path:
    for name in ARTIFACT_NAMES:
        shutil.copyfile(ARTIFACTS / f"{name}.tflite", tmp_path / f"{name}.tflite")
    shutil.copyfile(ARTIFACTS / "manifest.json", tmp_path / "manifest.json")
    return tmp_path


def edit(directory: Path, change) -> None:
    path = directory / "manifest.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_committed_manifest_describes_the_committed_artifacts():
    manifest = load_manifest(ARTIFACTS)
    assert manifest.schema_version == 1
    assert manifest.input_layout == ("ax", "ay", "az", "gx", "gy", "gz")
    assert manifest.input_units == ("m/s^2",) * 3 + ("rad/s",) * 3
    assert (manifest.sample_rate_hz, manifest.window_samples) == (100.0, 400)
    assert manifest.classes == ("Class A", "Class B")
    assert manifest.feature_size * 128 <= 4480 * 128
    assert list(manifest.parameters) == [
        "hidden_kernel",
        "hidden_bias",
        "output_kernel",
        "output_bias",
    ]
    assert manifest.parameters["hidden_kernel"] == (manifest.feature_size, 128)
    for artifact in manifest.artifacts.values():
        assert sha256_of(artifact.path) == artifact.sha256
    raw = manifest.raw
    training = raw["base"]["training_data"]
    assert training["kind"] in ("synthetic", "HHAR", "real and synthetic")
    if "real" in training:  # the licence (CC BY 4.0) asks for the credit
        assert "Reyes-Ortiz" in training["real"]["credit"] and training["real"]["license"]
        assert not set(training["real"]["subjects"]) & {2, 4, 9, 10, 12, 13, 18, 20, 24}
    assert 0.0 < raw["base"]["quality"]["validation_accuracy"] <= 1.0
    assert raw["build"]["tensorflow_version"]


def test_a_changed_artifact_fails_its_hash(copy):
    with open(copy / "optimizer.tflite", "ab") as file:
        file.write(b"\0")
    with pytest.raises(ArtifactError, match=r"optimizer\.tflite: SHA-256"):
        load_manifest(copy)


def test_a_missing_artifact_is_named(copy):
    (copy / "inference.tflite").unlink()
    with pytest.raises(ArtifactError, match=r"inference\.tflite: inference artifact missing"):
        load_manifest(copy)


def test_missing_manifest_and_bad_json(tmp_path):
    with pytest.raises(ArtifactError, match="manifest not found"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json: not a readable JSON"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.update(schema_version=2), "schema_version 2"),
        (lambda raw: raw.pop("classes"), "'classes' missing"),
        (lambda raw: raw.update(classes=["only"]), "two or more"),
        (lambda raw: raw.update(classes=["A", "A"]), "repeat"),
        (lambda raw: raw["input"].update(layout=["gx", "gy", "gz", "ax", "ay", "az"]), "layout"),
        (lambda raw: raw["input"].update(sample_rate_hz=-1), "must be positive"),
        (lambda raw: raw.update(feature_size=raw["feature_size"] + 1), "feature_size"),
        (lambda raw: raw.update(train_batch_size=3), "'bottlenecks' has shape"),
        (lambda raw: raw["parameters"][0].update(shape=[1, 2]), "'hidden_kernel' has shape"),
        (lambda raw: raw["artifacts"].pop("optimizer"), "'artifacts.optimizer' missing"),
        (lambda raw: raw["optimizer_state"].append({"name": "extra", "shape": [1]}), "extra"),
    ],
)
def test_inconsistent_manifests_are_rejected_with_the_reason(copy, change, message):
    edit(copy, change)
    with pytest.raises(ArtifactError, match=message) as caught:
        load_manifest(copy)
    assert "manifest.json" in str(caught.value) or ".tflite" in str(caught.value)


def test_more_classes_than_the_artifacts_have_is_caught(copy):
    edit(copy, lambda raw: raw.update(classes=["A", "B", "C"]))
    with pytest.raises(ArtifactError, match="'labels' has shape"):
        load_manifest(copy)
