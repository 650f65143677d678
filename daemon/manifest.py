"""``artifacts/manifest.json``: what the five artifacts are, checked before anything runs them.

The daemon never guesses: input layout, units, rate and window, class names, parameter and
optimizer-state names and shapes, and every artifact's input and output names come from here.
:func:`load_manifest` checks the schema, the SHA-256 of each file and that the shapes agree
with each other, and raises :class:`ArtifactError` naming the file and the mismatch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odar.errors import ArtifactError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
ARTIFACT_NAMES = ("bottleneck", "initialize", "train_head", "optimizer", "inference")
INPUT_LAYOUT = ("ax", "ay", "az", "gx", "gy", "gz")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    path: Path
    sha256: str
    signature: str | None
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def input(self, name: str) -> TensorInfo:
        return _by_name(self.inputs, name, self.path, "input")

    def output(self, name: str) -> TensorInfo:
        return _by_name(self.outputs, name, self.path, "output")


def _by_name(tensors, name: str, path: Path, kind: str) -> TensorInfo:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise ArtifactError(f"{path}: no {kind} named {name!r} (has {[t.name for t in tensors]})")


@dataclass(frozen=True)
class Manifest:
    path: Path
    schema_version: int
    input_layout: tuple[str, ...]
    input_units: tuple[str, ...]
    sample_rate_hz: float
    window_samples: int
    classes: tuple[str, ...]
    feature_size: int
    train_batch_size: int
    parameters: dict[str, tuple[int, ...]]
    optimizer: str
    optimizer_hyperparameters: dict[str, float]
    optimizer_state: dict[str, tuple[int, ...]]
    artifacts: dict[str, ArtifactInfo]
    raw: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(location: str | Path, verify_hashes: bool = True) -> Manifest:
    """Read and check a manifest; ``location`` is the file or the artifacts directory."""
    path = Path(location)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ArtifactError(f"{path}: manifest not found") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: not a readable JSON manifest: {error}") from error
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path}: top level must be a JSON object")
    manifest = _parse(path, raw)
    _check_consistency(manifest)
    if verify_hashes:
        for artifact in manifest.artifacts.values():
            if not artifact.path.is_file():
                raise ArtifactError(f"{artifact.path}: {artifact.name} artifact missing ({path})")
            actual = sha256_of(artifact.path)
            if actual != artifact.sha256:
                raise ArtifactError(
                    f"{artifact.path}: SHA-256 {actual} does not match {path}'s {artifact.sha256}"
                )
    return manifest


def _get(path: Path, mapping: dict, key: str, kind: type | tuple[type, ...], where: str = ""):
    label = f"{where}.{key}" if where else key
    if key not in mapping:
        raise ArtifactError(f"{path}: key {label!r} missing")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ArtifactError(f"{path}: key {label!r} = {value!r} has the wrong type")
    return value


def _shape(path: Path, value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value
    ):
        raise ArtifactError(f"{path}: {where} = {value!r} is not a shape (list of positive ints)")
    # [] is a scalar (Adam's step count).
    return tuple(value)


def _named_shapes(path: Path, raw: dict, key: str) -> dict[str, tuple[int, ...]]:
    entries = _get(path, raw, key, list)
    shapes: dict[str, tuple[int, ...]] = {}
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            raise ArtifactError(f"{path}: {where} must be an object with name and shape")
        name = _get(path, entry, "name", str, where)
        if name in shapes:
            raise ArtifactError(f"{path}: {where}: name {name!r} repeated")
        shapes[name] = _shape(path, entry.get("shape"), f"{where}.shape")
    return shapes


def _tensors(path: Path, raw: dict, key: str, where: str) -> tuple[TensorInfo, ...]:
    tensors = []
    for i, entry in enumerate(_get(path, raw, key, list, where)):
        here = f"{where}.{key}[{i}]"
        if not isinstance(entry, dict):
            raise ArtifactError(f"{path}: {here} must be an object")
        tensors.append(
            TensorInfo(
                name=_get(path, entry, "name", str, here),
                shape=_shape(path, entry.get("shape"), f"{here}.shape"),
                dtype=_get(path, entry, "dtype", str, here),
            )
        )
    return tuple(tensors)


def _parse(path: Path, raw: dict) -> Manifest:
    version = _get(path, raw, "schema_version", int)
    if version != SCHEMA_VERSION:
        raise ArtifactError(f"{path}: schema_version {version}, this odar reads {SCHEMA_VERSION}")
    source = _get(path, raw, "input", dict)
    layout = tuple(_get(path, source, "layout", list, "input"))
    if layout != INPUT_LAYOUT:
        raise ArtifactError(f"{path}: input.layout {list(layout)} is not {list(INPUT_LAYOUT)}")
    units = tuple(_get(path, source, "units", list, "input"))
    if len(units) != len(layout):
        raise ArtifactError(f"{path}: input.units has {len(units)} entries for 6 axes")
    rate = float(_get(path, source, "sample_rate_hz", (int, float), "input"))
    window = _get(path, source, "window_samples", int, "input")
    if not (rate > 0 and math.isfinite(rate)) or window <= 0:
        raise ArtifactError(f"{path}: input rate {rate} / window {window} must be positive")
    classes = tuple(_get(path, raw, "classes", list))
    if len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise ArtifactError(f"{path}: classes {list(classes)} must be two or more names")
    if len(set(classes)) != len(classes):
        raise ArtifactError(f"{path}: classes {list(classes)} repeat a name")
    optimizer = _get(path, raw, "optimizer", dict)
    artifacts_raw = _get(path, raw, "artifacts", dict)
    artifacts = {}
    for name in ARTIFACT_NAMES:
        entry = _get(path, artifacts_raw, name, dict, "artifacts")
        where = f"artifacts.{name}"
        signature = entry.get("signature")
        if signature is not None and not isinstance(signature, str):
            raise ArtifactError(f"{path}: {where}.signature must be a string or null")
        artifacts[name] = ArtifactInfo(
            name=name,
            path=path.parent / _get(path, entry, "file", str, where),
            sha256=_get(path, entry, "sha256", str, where).lower(),
            signature=signature,
            inputs=_tensors(path, entry, "inputs", where),
            outputs=_tensors(path, entry, "outputs", where),
        )
    return Manifest(
        path=path,
        schema_version=version,
        input_layout=layout,
        input_units=units,
        sample_rate_hz=rate,
        window_samples=window,
        classes=classes,
        feature_size=_get(path, raw, "feature_size", int),
        train_batch_size=_get(path, raw, "train_batch_size", int),
        parameters=_named_shapes(path, raw, "parameters"),
        optimizer=_get(path, optimizer, "name", str, "optimizer"),
        optimizer_hyperparameters=dict(_get(path, optimizer, "hyperparameters", dict, "optimizer")),
        optimizer_state=_named_shapes(path, raw, "optimizer_state"),
        artifacts=artifacts,
        raw=raw,
    )


def _check_consistency(m: Manifest) -> None:
    """The shapes the artifacts declare must fit together, or the head cannot run."""
    n, f, b = m.num_classes, m.feature_size, m.train_batch_size
    bottleneck = m.artifacts["bottleneck"]
    if len(bottleneck.inputs) != 1 or len(bottleneck.outputs) != 1:
        raise ArtifactError(f"{bottleneck.path}: a bottleneck has one input and one output")
    window_values = math.prod(bottleneck.inputs[0].shape)
    if window_values != m.window_samples * len(m.input_layout):
        raise ArtifactError(
            f"{bottleneck.path}: input {bottleneck.inputs[0].shape} holds {window_values} values,"
            f" not a {m.window_samples} x {len(m.input_layout)} window"
        )
    if math.prod(bottleneck.outputs[0].shape) != f:
        raise ArtifactError(
            f"{bottleneck.path}: output {bottleneck.outputs[0].shape} is not feature_size {f}"
        )
    expected = {
        ("train_head", "bottlenecks"): (b, f),
        ("train_head", "labels"): (b, n),
        ("train_head", "sample_weight"): (b,),
        ("inference", "bottleneck"): (1, f),
    }
    for (artifact, tensor), shape in expected.items():
        actual = m.artifacts[artifact].input(tensor).shape
        if actual != shape:
            raise ArtifactError(
                f"{m.artifacts[artifact].path}: input {tensor!r} has shape {actual}, "
                f"manifest says {shape} (batch {b}, features {f}, classes {n})"
            )
    probabilities = m.artifacts["inference"].output("probabilities").shape
    if probabilities != (1, n):
        raise ArtifactError(
            f"{m.artifacts['inference'].path}: output shape {probabilities}, {n} classes expected"
        )
    for name, shape in m.parameters.items():
        for artifact in ("train_head", "inference"):
            declared = m.artifacts[artifact].input(name).shape
            if declared != shape:
                raise ArtifactError(
                    f"{m.artifacts[artifact].path}: parameter {name!r} has shape {declared},"
                    f" manifest says {shape}"
                )
        if m.artifacts["initialize"].output(name).shape != shape:
            raise ArtifactError(f"{m.artifacts['initialize'].path}: {name!r} shape mismatch")
    optimizer_inputs = {t.name for t in m.artifacts["optimizer"].inputs}
    needed = set(m.parameters) | set(m.optimizer_state)
    if not needed <= optimizer_inputs:
        raise ArtifactError(
            f"{m.artifacts['optimizer'].path}: inputs lack {sorted(needed - optimizer_inputs)}"
        )
