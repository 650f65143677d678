"""The artifacts on the device (odar.engine): checked against the manifest, then loaded."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from odar.engine import Engine
from odar.errors import ArtifactError
from odar.manifest import ARTIFACT_NAMES, MANIFEST_NAME


@pytest.fixture(scope="module")
def engine(artifacts_dir) -> Engine:
    return Engine.load(artifacts_dir, num_threads=1)


def test_the_repository_artifacts_load_and_agree_with_each_other(engine, artifacts_dir):
    manifest = engine.manifest
    raw = (artifacts_dir / MANIFEST_NAME).read_bytes()
    assert engine.manifest_hash == hashlib.sha256(raw).hexdigest()
    assert manifest.classes == tuple(json.loads(raw)["classes"])
    assert "Class B" in manifest.classes
    window = np.random.default_rng(0).normal(size=(manifest.window_samples, 6))
    features = engine.bottleneck.features(window.astype(np.float32))
    assert features.shape == (manifest.feature_size,)
    params = engine.head.initial_parameters()
    probabilities = engine.head.predict(params, features)
    assert probabilities.shape == (manifest.num_classes,)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("artifact", ARTIFACT_NAMES)
def test_an_artifact_whose_bytes_changed_is_refused_naming_the_file(
    engine, artifacts_dir, tmp_path, artifact
):
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir, copy)
    path = engine.manifest.artifacts[artifact].path
    target = copy / path.name
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as caught:
        Engine.load(copy, num_threads=1)
    assert path.name in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_missing_manifest_is_refused_naming_it(tmp_path):
    with pytest.raises(ArtifactError, match=MANIFEST_NAME):
        Engine.load(tmp_path, num_threads=1)


@pytest.mark.parametrize(("sensor_hz", "decimation"), [(100.0, 1), (200.0, 2), (1000.0, 10)])
def test_decimation_is_the_whole_ratio_of_sensor_to_model_rate(engine, sensor_hz, decimation):
    assert engine.manifest.sample_rate_hz == 100.0
    assert engine.decimation_for(sensor_hz) == decimation


@pytest.mark.parametrize("sensor_hz", [50.0, 150.0, 142.857])
def test_a_sensor_rate_that_is_not_a_whole_multiple_names_the_setting(engine, sensor_hz):
    with pytest.raises(ArtifactError, match=r"set sensor\.rate_hz to a whole multiple of 100"):
        engine.decimation_for(sensor_hz)
