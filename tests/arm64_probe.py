"""Runs odar's bottleneck and head on fixed inputs and saves every number they produce.

    python arm64_probe.py ARTIFACTS_DIR INPUTS.npz RESULTS.npz

tests/test_arm64.py runs this script twice with the same inputs and artifacts: inside the
arm64 root under qemu (with the venv install.sh built there) and on the host. Only odar's own
loading path is used (``Engine.load``: manifest, SHA-256, shapes), so what is compared is what
the daemon would compute on a Pi.

INPUTS.npz holds ``windows`` (m, 400, 6) float32, ``labels`` (m,) class indices, ``steps``
(the number of train steps) and the head's starting parameters as ``param_<name>``.
RESULTS.npz holds ``features`` (m, F), ``losses`` (steps,), ``probabilities`` (m, classes)
after training, the trained parameters as ``param_<name>`` and, as strings, where it ran:
``machine``, ``runtime``, ``runtime_version``, ``numpy_version``, ``python_version``.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path

import numpy as np

from odar.engine import Engine

PARAM_PREFIX = "param_"
USAGE = "usage: arm64_probe.py ARTIFACTS_DIR INPUTS.npz RESULTS.npz"


def _runtime_version(runtime_name: str) -> str:
    try:
        return importlib.metadata.version(runtime_name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def probe(artifacts_dir: Path, inputs_path: Path, results_path: Path) -> None:
    engine = Engine.load(artifacts_dir, num_threads=1)
    head = engine.head
    with np.load(inputs_path) as inputs:
        windows = inputs["windows"]
        labels = inputs["labels"]
        steps = int(inputs["steps"])
        params = {name: inputs[PARAM_PREFIX + name] for name in head.parameter_names}

    features = engine.bottleneck.features_of(windows)
    onehot = np.eye(head.num_classes, dtype=np.float32)[labels]
    state = head.initial_optimizer_state()
    losses = []
    # Every step on the same rows: no random minibatches, so both machines do the same work.
    for _ in range(steps):
        loss, params, state = head.train_step(params, state, features, onehot)
        losses.append(loss)
    probabilities = np.stack([head.predict(params, row) for row in features])

    np.savez(
        results_path,
        features=features,
        losses=np.asarray(losses, np.float32),
        probabilities=probabilities,
        machine=np.str_(platform.machine()),
        runtime=np.str_(engine.runtime.name),
        runtime_version=np.str_(_runtime_version(engine.runtime.name)),
        numpy_version=np.str_(np.__version__),
        python_version=np.str_(platform.python_version()),
        **{PARAM_PREFIX + name: value for name, value in params.items()},
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(USAGE, file=sys.stderr)
        return 2
    probe(Path(argv[0]), Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
