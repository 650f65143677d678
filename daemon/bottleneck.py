"""The frozen pretrained base on the device: one (400, 6) window -> one feature vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odar.errors import ArtifactError
from odar.manifest import Manifest, load_manifest
from odar.runtime import Runtime, TFLiteModel


def as_manifest(manifest: Manifest | str | Path) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else load_manifest(manifest)


class Bottleneck:
    """``features(window)``: samples as the driver delivers them, features as the head wants.

    The window is reshaped row-major to the artifact's input shape (the original pipeline's
    [1, 2400] is the same interleaved order), and the output is flattened to ``(F,)``.
    """

    def __init__(
        self,
        manifest: Manifest | str | Path,
        num_threads: int = 1,
        runtime: Runtime | None = None,
    ) -> None:
        self.manifest = as_manifest(manifest)
        info = self.manifest.artifacts["bottleneck"]
        self.window_shape = (self.manifest.window_samples, len(self.manifest.input_layout))
        self.feature_size = self.manifest.feature_size
        self._model = TFLiteModel(info.path, num_threads, runtime, signature=info.signature)
        self._input = info.inputs[0]
        self._output_name = info.outputs[0].name
        actual = self._model.input_shapes().get(self._input.name)
        if actual != self._input.shape:
            raise ArtifactError(
                f"{info.path}: input {self._input.name!r} is {actual}, manifest says "
                f"{self._input.shape}"
            )

    def features(self, window: np.ndarray) -> np.ndarray:
        window = np.asarray(window, dtype=np.float32)
        if window.shape != self.window_shape:
            raise ValueError(f"window shape {window.shape}, expected {self.window_shape}")
        outputs = self._model.run({self._input.name: window.reshape(self._input.shape)})
        return outputs[self._output_name].reshape(self.feature_size)

    def features_of(self, windows: np.ndarray) -> np.ndarray:
        """(m, 400, 6) -> (m, F); the artifact takes one window at a time."""
        return (
            np.stack([self.features(w) for w in windows])
            if len(windows)
            else np.zeros((0, self.feature_size), np.float32)
        )
