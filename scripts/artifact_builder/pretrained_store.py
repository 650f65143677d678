"""A pretrained base kept on disk (``--save-pretrained DIR``) and used again (``--pretrained
DIR``), so what only changes the export (class scores, their gain, the standardisation) is
tried without pretraining again: the base's weights, the pretraining classifier's kernel and
bias, the base's raw features of the windows the standardisation is computed on, and what the
manifest says about the pretraining."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from .base_model import BaseSpec, build_base

WEIGHTS = "base.weights.h5"
ARRAYS = "scorer_and_features.npz"
INFO = "pretraining.json"


def save(
    directory: Path,
    spec: BaseSpec,
    base: tf.keras.Model,
    kernel: np.ndarray,
    bias: np.ndarray,
    features: np.ndarray,
    info: dict[str, Any],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    base.save_weights(str(directory / WEIGHTS))
    np.savez(directory / ARRAYS, kernel=kernel, bias=bias, features=features)
    spec_fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}
    (directory / INFO).write_text(json.dumps({"spec": spec_fields, **info}, indent=1))


def load(directory: Path, spec: BaseSpec):
    """(base, kernel, bias, features, info); refuses a base saved with another spec."""
    info_path = directory / INFO
    if not info_path.is_file():
        raise SystemExit(f"--pretrained {directory}: no {INFO} (not saved by --save-pretrained)")
    info = json.loads(info_path.read_text())
    saved = info.pop("spec")
    wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}
    if saved != wanted:
        raise SystemExit(
            f"--pretrained {directory}: saved for base {saved}, this build asks for {wanted} "
            "(--no-statistics-features or --smoke differ?)"
        )
    base = build_base(spec)
    base.load_weights(str(directory / WEIGHTS))
    arrays = np.load(directory / ARRAYS)
    return base, arrays["kernel"], arrays["bias"], arrays["features"], info
