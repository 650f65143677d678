"""The artifacts on the device: manifest checked, bottleneck and head loaded, threads set."""

from __future__ import annotations

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
    #: SHA-256 of manifest.json: a head or sample store saved for other artifacts never loads.
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
