"""The trainable head on the device: initialize, train_head + optimizer, inference.

Parameters and optimizer state are ordered dicts name -> float32 array, in manifest order, so
they can be saved and restored by name. One :meth:`Head.train_step` is one gradient step on
up to ``train_batch_size`` rows; fewer rows are padded with rows of weight 0, which the
train_head artifact leaves out of the loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from odar.bottleneck import as_manifest
from odar.errors import ArtifactError
from odar.manifest import ArtifactInfo, Manifest
from odar.runtime import Runtime, TFLiteModel

Arrays = dict[str, np.ndarray]


def _check_tensors(info: ArtifactInfo, model: TFLiteModel) -> None:
    """Refuse, at load, a file whose tensors are not the manifest's: a foreign artifact whose
    hash was written into the manifest would otherwise fail only once training or inference
    first runs it, on a background thread."""
    for kind, declared, actual in (
        ("inputs", info.inputs, model.input_shapes()),
        ("outputs", info.outputs, model.output_shapes()),
    ):
        expected = {tensor.name: tensor.shape for tensor in declared}
        if actual != expected:
            raise ArtifactError(
                f"{info.path}: {kind} {actual} are not the manifest's {expected} "
                f"(not the {info.name} artifact?)"
            )


class Head:
    def __init__(
        self,
        manifest: Manifest | str | Path,
        num_threads: int = 1,
        runtime: Runtime | None = None,
    ) -> None:
        self.manifest = as_manifest(manifest)
        self.parameter_names = tuple(self.manifest.parameters)
        self.num_classes = self.manifest.num_classes
        self.feature_size = self.manifest.feature_size
        self.batch_size = self.manifest.train_batch_size
        self._models = {
            name: TFLiteModel(info.path, num_threads, runtime, signature=info.signature)
            for name, info in self.manifest.artifacts.items()
            if name != "bottleneck"
        }
        for name, model in self._models.items():
            _check_tensors(self.manifest.artifacts[name], model)

    def _run(self, artifact: str, inputs: Arrays) -> Arrays:
        return self._models[artifact].run(inputs)

    def _check_parameters(self, params: Mapping[str, np.ndarray]) -> None:
        for name, shape in self.manifest.parameters.items():
            if name not in params:
                raise ArtifactError(f"parameter {name!r} missing (have {sorted(params)})")
            if np.shape(params[name]) != shape:
                raise ArtifactError(
                    f"parameter {name!r} has shape {np.shape(params[name])}, manifest {shape}"
                )

    def initial_parameters(self) -> Arrays:
        """Fresh random head parameters (new draws on every call)."""
        out = self._run("initialize", {})
        return {name: out[name].astype(np.float32) for name in self.parameter_names}

    def initial_optimizer_state(self) -> Arrays:
        return {
            entry["name"]: np.full(entry["shape"], entry.get("initial", 0.0), np.float32)
            for entry in self.manifest.raw["optimizer_state"]
        }

    def _batch(self, bottlenecks: np.ndarray, onehot: np.ndarray) -> Arrays:
        bottlenecks = np.asarray(bottlenecks, np.float32)
        onehot = np.asarray(onehot, np.float32)
        rows = len(bottlenecks)
        if bottlenecks.shape != (rows, self.feature_size) or onehot.shape != (
            rows,
            self.num_classes,
        ):
            raise ValueError(
                f"bottlenecks {bottlenecks.shape} / labels {onehot.shape}: expected "
                f"(rows, {self.feature_size}) / (rows, {self.num_classes})"
            )
        if not 1 <= rows <= self.batch_size:
            raise ValueError(f"{rows} rows in one step; train_head takes 1..{self.batch_size}")
        padded_x = np.zeros((self.batch_size, self.feature_size), np.float32)
        padded_y = np.zeros((self.batch_size, self.num_classes), np.float32)
        weight = np.zeros(self.batch_size, np.float32)
        padded_x[:rows], padded_y[:rows], weight[:rows] = bottlenecks, onehot, 1.0
        return {"bottlenecks": padded_x, "labels": padded_y, "sample_weight": weight}

    def loss_and_gradients(
        self, params: Arrays, bottlenecks: np.ndarray, onehot: np.ndarray
    ) -> tuple[float, Arrays]:
        self._check_parameters(params)
        out = self._run("train_head", {**params, **self._batch(bottlenecks, onehot)})
        return float(out["loss"]), {name: out[f"grad_{name}"] for name in self.parameter_names}

    def apply_gradients(
        self, params: Arrays, gradients: Arrays, opt_state: Arrays
    ) -> tuple[Arrays, Arrays]:
        feeds = {**params, **opt_state, **{f"grad_{n}": g for n, g in gradients.items()}}
        out = self._run("optimizer", feeds)
        new_params = {name: out[name] for name in self.parameter_names}
        new_state = {name: out[name] for name in self.manifest.optimizer_state}
        return new_params, new_state

    def train_step(
        self, params: Arrays, opt_state: Arrays, bottlenecks: np.ndarray, onehot: np.ndarray
    ) -> tuple[float, Arrays, Arrays]:
        """One step: (loss before the step, new parameters, new optimizer state)."""
        loss, gradients = self.loss_and_gradients(params, bottlenecks, onehot)
        new_params, new_state = self.apply_gradients(params, gradients, opt_state)
        return loss, new_params, new_state

    def predict(self, params: Mapping[str, np.ndarray], bottleneck: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N,)`` for one feature vector ``(F,)``."""
        self._check_parameters(params)
        feature = np.asarray(bottleneck, np.float32).reshape(1, self.feature_size)
        return self._run("inference", {**params, "bottleneck": feature})["probabilities"][0]

    def fit(
        self,
        bottlenecks: np.ndarray,
        labels: np.ndarray,
        steps: int,
        rng: np.random.Generator,
        params: Arrays | None = None,
    ) -> tuple[Arrays, list[float]]:
        """Train from fresh (or given) parameters on labelled rows; minibatches drawn by
        ``rng``. ``labels`` are class indices. Returns the parameters and the loss per step."""
        onehot = np.eye(self.num_classes, dtype=np.float32)[np.asarray(labels)]
        params = params if params is not None else self.initial_parameters()
        state = self.initial_optimizer_state()
        losses = []
        rows = min(self.batch_size, len(bottlenecks))
        for _ in range(steps):
            chosen = rng.choice(len(bottlenecks), size=rows, replace=False)
            loss, params, state = self.train_step(
                params, state, bottlenecks[chosen], onehot[chosen]
            )
            losses.append(loss)
        return params, losses
