"""The TFLite runtime shim: tflite-runtime if it imports, else ai-edge-litert.

``ODAR_TFLITE_RUNTIME=tflite-runtime`` or ``=ai-edge-litert`` forces one. Both expose the same
``Interpreter``; :class:`TFLiteModel` runs a model by tensor *names*, through its signature
when it has one (our artifacts) or by its tensors' own names (a bare model such as the
original pipeline's bottleneck), so nothing depends on the order the converter chose.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odar.errors import ArtifactError, ConfigError, RuntimeMissingError

RUNTIME_ENV = "ODAR_TFLITE_RUNTIME"

#: runtime name -> module that provides ``Interpreter``
RUNTIME_MODULES = {
    "tflite-runtime": "tflite_runtime.interpreter",
    "ai-edge-litert": "ai_edge_litert.interpreter",
}


@dataclass(frozen=True)
class Runtime:
    name: str
    interpreter_class: type


def load_runtime(forced: str | None = None) -> Runtime:
    """The first runtime that imports, or the one ``forced`` (or ``$ODAR_TFLITE_RUNTIME``) names."""
    choice = forced if forced is not None else os.environ.get(RUNTIME_ENV) or None
    if choice is not None and choice not in RUNTIME_MODULES:
        raise ConfigError(f"{RUNTIME_ENV}={choice!r}: expected one of {', '.join(RUNTIME_MODULES)}")
    candidates = [choice] if choice else list(RUNTIME_MODULES)
    failures = []
    for name in candidates:
        try:
            module = importlib.import_module(RUNTIME_MODULES[name])
        except ImportError as error:
            failures.append(f"{name}: {error}")
            continue
        return Runtime(name, module.Interpreter)
    raise RuntimeMissingError(
        "no TFLite runtime could be imported ("
        + "; ".join(failures)
        + "); install tflite-runtime (Python <= 3.11, numpy<2) or ai-edge-litert"
    )


class TFLiteModel:
    """One .tflite file, allocated once, run with ``{name: array}`` -> ``{name: array}``."""

    def __init__(
        self,
        path: str | Path,
        num_threads: int,
        runtime: Runtime | None = None,
        signature: str | None = "serving_default",
    ) -> None:
        self.path = Path(path)
        self.runtime = runtime or load_runtime()
        try:
            # num_threads always explicit: the two runtimes default differently.
            self._interpreter = self.runtime.interpreter_class(
                model_path=str(self.path), num_threads=int(num_threads)
            )
            signatures = self._interpreter.get_signature_list()
            self._runner: Any = None
            if signature is not None and signature in signatures:
                self._runner = self._interpreter.get_signature_runner(signature)
                self.input_details = dict(self._runner.get_input_details())
                self.output_details = dict(self._runner.get_output_details())
            else:
                # Where a model with Select TensorFlow (Flex) ops fails on a stock runtime.
                self._interpreter.allocate_tensors()
                self.input_details = {d["name"]: d for d in self._interpreter.get_input_details()}
                self.output_details = {
                    d["name"]: d for d in self._interpreter.get_output_details()
                }
        except (ValueError, RuntimeError) as error:
            raise ArtifactError(
                f"{self.path}: cannot load with {self.runtime.name}: {_explain(error)}"
            ) from error

    @property
    def has_signature(self) -> bool:
        return self._runner is not None

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(int(n) for n in d["shape"]) for name, d in self.input_details.items()}

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(int(n) for n in d["shape"]) for name, d in self.output_details.items()}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.input_details) - set(inputs)
        if missing:
            raise ArtifactError(f"{self.path}: inputs {sorted(missing)} not given")
        feeds = {
            name: np.asarray(inputs[name], dtype=self.input_details[name]["dtype"])
            for name in self.input_details
        }
        if self._runner is not None:
            # The runner's outputs may be views of interpreter memory: copy before next invoke.
            return {name: np.array(value) for name, value in self._runner(**feeds).items()}
        for name, value in feeds.items():
            self._interpreter.set_tensor(self.input_details[name]["index"], value)
        self._interpreter.invoke()
        return {
            name: np.array(self._interpreter.get_tensor(d["index"]))
            for name, d in self.output_details.items()
        }


def _explain(error: Exception) -> str:
    """The runtime's message, shortened; a Flex-bound model gets what to do about it."""
    text = str(error)
    flex = re.search(r"\((Flex\w+)\) failed to prepare", text)
    if "Select TensorFlow op" in text or flex:
        op = f" ({flex.group(1)})" if flex else ""
        return (
            f"it needs TensorFlow's Flex delegate for Select TensorFlow ops{op}, which "
            "tflite-runtime and ai-edge-litert do not have; build artifacts with builtin ops "
            "only (scripts/build_artifacts.py, see artifacts/README.md)"
        )
    return text
