"""The artifacts on the device: manifest checked, bottleneck and head loaded, threads set."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from odar.bottleneck import Bottleneck
from odar.errors import ArtifactError
from odar.head import Head
from odar.manifest import Manifest, load_manifest, sha256_of
from odar.runtime import Runtime, load_runtime


@dataclass(frozen=True)
class Engine:
    manifest: Manifest
    #: SHA-256 of manifest.json. Only to recognise a schema-1 sample store's binding: state is
    #: bound by what matters (:attr:`bottleneck_sha256`, :attr:`head_binding`), so a cosmetic
    #: edit of the manifest keeps it.
    manifest_hash: str
    bottleneck: Bottleneck
    head: Head
    runtime: Runtime

    @classmethod
    def load(cls, artifacts_dir: Path, num_threads: int) -> Engine:
        """Check every artifact's SHA-256 and shapes against the manifest, then load them."""
        runtime = load_runtime()
        manifest = load_manifest(artifacts_dir)
        try:
            manifest_hash = sha256_of(manifest.path)
        except OSError as error:
            raise ArtifactError(f"{manifest.path}: cannot read: {error.strerror}") from error
        return cls(
            manifest=manifest,
            manifest_hash=manifest_hash,
            bottleneck=Bottleneck(manifest, num_threads, runtime),
            head=Head(manifest, num_threads, runtime),
            runtime=runtime,
        )

    @property
    def bottleneck_sha256(self) -> str:
        """What stored features are bound to: they are this bottleneck's output."""
        return self.manifest.artifacts["bottleneck"].sha256

    @property
    def head_binding(self) -> str:
        """What saved parameters are bound to: see :func:`head_binding`."""
        return head_binding(self.manifest)

    def decimation_for(self, sensor_rate_hz: float) -> int:
        """Sensor samples per model sample; the sensor must run at a whole multiple."""
        model_rate = self.manifest.sample_rate_hz
        ratio = sensor_rate_hz / model_rate
        k = round(ratio)
        if k < 1 or abs(ratio - k) > 1e-6 * k:
            raise ArtifactError(
                f"the sensor runs at {sensor_rate_hz:g} Hz but the model wants "
                f"{model_rate:g} Hz: set sensor.rate_hz to a whole multiple of {model_rate:g}"
            )
        return k


def head_binding(manifest: Manifest) -> str:
    """SHA-256 of what a trained head depends on: the features it was trained on (the
    bottleneck's hash), its parameters' names and shapes, the optimizer and its state's names
    and shapes. Descriptions, units and other prose in the manifest do not count."""
    layout = {
        "bottleneck_sha256": manifest.artifacts["bottleneck"].sha256,
        "feature_size": manifest.feature_size,
        "num_classes": manifest.num_classes,
        "parameters": {name: list(shape) for name, shape in manifest.parameters.items()},
        "optimizer": manifest.optimizer,
        "optimizer_state": {name: list(s) for name, s in manifest.optimizer_state.items()},
    }
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode("utf-8")).hexdigest()
