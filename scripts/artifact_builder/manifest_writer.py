"""Write ``manifest.json`` from the built files, reading names and shapes back from each file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from .convert import SIGNATURE_KEY
from .head_spec import PARAMETER_NAMES, HeadSpec, gradient_name

SCHEMA_VERSION = 1
INPUT_LAYOUT = ["ax", "ay", "az", "gx", "gy", "gz"]
INPUT_UNITS = ["m/s^2", "m/s^2", "m/s^2", "rad/s", "rad/s", "rad/s"]


def head_tensor_order(spec: HeadSpec) -> dict[str, tuple[list[str], list[str]]]:
    """The order the manifest lists each head artifact's inputs and outputs in."""
    params = list(PARAMETER_NAMES)
    grads = [gradient_name(n) for n in params]
    state = list(spec.optimizer_state_shapes())
    return {
        "initialize": ([], params),
        "train_head": (["bottlenecks", "labels", "sample_weight", *params], ["loss", *grads]),
        "optimizer": ([*params, *grads, *state], [*params, *state]),
        "inference": (["bottleneck", *params], ["probabilities"]),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tensor(name: str, detail: dict) -> dict[str, Any]:
    return {
        "name": name,
        "shape": [int(n) for n in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
    }


def describe_artifact(
    path: Path, manifest_dir: Path, order: tuple[list[str], list[str]] | None = None
) -> dict[str, Any]:
    """File, hash, signature and named inputs/outputs, read from the .tflite itself."""
    interpreter = tf.lite.Interpreter(model_path=str(path))
    signatures = interpreter.get_signature_list()
    if SIGNATURE_KEY in signatures:
        runner = interpreter.get_signature_runner(SIGNATURE_KEY)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        signature: str | None = SIGNATURE_KEY
    else:
        interpreter.allocate_tensors()
        inputs = {d["name"]: d for d in interpreter.get_input_details()}
        outputs = {d["name"]: d for d in interpreter.get_output_details()}
        signature = None
    input_order, output_order = order or (list(inputs), list(outputs))
    if set(input_order) != set(inputs) or set(output_order) != set(outputs):
        raise ValueError(
            f"{path}: tensors {sorted(inputs)} -> {sorted(outputs)} are not the expected "
            f"{sorted(input_order)} -> {sorted(output_order)}"
        )
    return {
        "file": os.path.relpath(path, manifest_dir),
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
        "signature": signature,
        "inputs": [_tensor(n, inputs[n]) for n in input_order],
        "outputs": [_tensor(n, outputs[n]) for n in output_order],
    }


def write_manifest(
    out_dir: Path,
    spec: HeadSpec,
    classes: list[str],
    bottleneck_path: Path,
    sample_rate_hz: float,
    window_samples: int,
    base_info: dict[str, Any],
    build_info: dict[str, Any],
) -> Path:
    orders = head_tensor_order(spec)
    artifacts = {"bottleneck": describe_artifact(bottleneck_path, out_dir)}
    for name, order in orders.items():
        artifacts[name] = describe_artifact(out_dir / f"{name}.tflite", out_dir, order)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "input": {
            "layout": INPUT_LAYOUT,
            "units": INPUT_UNITS,
            "sample_rate_hz": sample_rate_hz,
            "window_samples": window_samples,
            "bottleneck_input": "window reshaped row-major to the bottleneck's input shape "
            "(samples x axes, interleaved ax ay az gx gy gz)",
        },
        "classes": classes,
        "feature_size": spec.feature_size,
        "train_batch_size": spec.batch_size,
        "head": {
            "layers": [f"Dense({spec.hidden_units}, relu)", f"Dense({spec.num_classes}, softmax)"],
            "loss": "mean softmax cross-entropy over rows with sample_weight 1, "
            "+ l2 * (sum(hidden_kernel^2) + sum(output_kernel^2))",
            "l2": spec.l2,
            "initializer": "Glorot uniform kernels, zero biases",
        },
        "optimizer": {
            "name": spec.optimizer.name,
            "hyperparameters": spec.optimizer.hyperparameters(),
        },
        "parameters": [{"name": n, "shape": list(s)} for n, s in spec.parameter_shapes().items()],
        "optimizer_state": [
            {"name": n, "shape": list(s), "initial": 0.0}
            for n, s in spec.optimizer_state_shapes().items()
        ],
        "artifacts": artifacts,
        "base": base_info,
        "build": {"tensorflow_version": tf.__version__, **build_info},
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path
