"""Helpers shared by the fault tests (test_power_loss, test_faults_*, test_fuzz, test_button_storm).

Nothing here fakes the code under test: these build real state files, real sample stores and
a notifier that records what the daemon tells systemd.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from odar.engine import head_binding
from odar.manifest import Manifest, load_manifest
from odar.param_store import HeadState
from odar.sample_store import SampleStore, StoreLayout

#: The parameter and Adam-state shapes of the shipped head (128 features, 2 classes), so the
#: files the power-loss test writes are as large as the daemon's (about 200 kB).
HEAD_SHAPES: dict[str, tuple[int, ...]] = {
    "hidden_kernel": (128, 128),
    "hidden_bias": (128,),
    "output_kernel": (128, 2),
    "output_bias": (2,),
}
POWER_LOSS_MANIFEST_HASH = "power-loss-test"


def head_state_for(epoch: int) -> HeadState:
    """A head whose every value follows from *epoch*: two epochs never share a state."""
    rng = np.random.default_rng(epoch)
    params = {name: rng.standard_normal(shape, np.float32) for name, shape in HEAD_SHAPES.items()}
    optimizer = {
        f"{moment}_{name}": rng.standard_normal(shape, np.float32)
        for moment in ("m", "v")
        for name, shape in HEAD_SHAPES.items()
    }
    optimizer["step"] = np.asarray(epoch, np.float32)
    return HeadState(params, optimizer, epoch)


def kill_test_record(index: int) -> tuple[int, np.ndarray, np.ndarray, float]:
    """(label, features, window, timestamp) of the power-loss test's record *index*."""
    rng = np.random.default_rng(index)
    features = rng.standard_normal(8).astype(np.float32)
    return index % 2, features, rng.standard_normal((400, 6)).astype(np.float32), float(index)


def same_state(a: HeadState, b: HeadState) -> bool:
    """Equal by content: epoch, names, dtypes, shapes and every value."""
    if a.epoch != b.epoch:
        return False
    for mine, theirs in ((a.params, b.params), (a.optimizer, b.optimizer)):
        if set(mine) != set(theirs):
            return False
        for name, value in mine.items():
            other = theirs[name]
            if value.dtype != other.dtype or not np.array_equal(value, other):
                return False
    return True


@dataclass(frozen=True)
class ArtifactFacts:
    """What state files written for the repo's artifacts must carry."""

    manifest: Manifest
    #: What the head is bound to (odar.engine.head_binding), for ParamStore.
    manifest_hash: str
    layout: StoreLayout


def artifact_facts(artifacts_dir: Path) -> ArtifactFacts:
    manifest = load_manifest(artifacts_dir)
    layout = StoreLayout(
        manifest.artifacts["bottleneck"].sha256,
        manifest.num_classes,
        manifest.feature_size,
        (manifest.window_samples, len(manifest.input_layout)),
    )
    return ArtifactFacts(manifest, head_binding(manifest), layout)


def trained_head(facts: ArtifactFacts, epoch: int, seed: int = 0) -> HeadState:
    """A head with the artifacts' parameter shapes (small random weights), as if trained."""
    rng = np.random.default_rng(seed)
    params = {
        name: (0.05 * rng.standard_normal(shape)).astype(np.float32)
        for name, shape in facts.manifest.parameters.items()
    }
    optimizer = {
        name: np.zeros(shape, np.float32) for name, shape in facts.manifest.optimizer_state.items()
    }
    return HeadState(params, optimizer, epoch)


def prefill_samples(
    path: Path, facts: ArtifactFacts, per_class: int | Sequence[int], seed: int = 0
) -> None:
    """A sample store with *per_class* samples of every class (or per_class[label] of each),
    each class's features apart."""
    rng = np.random.default_rng(seed)
    layout = facts.layout
    counts = [per_class] * layout.num_classes if isinstance(per_class, int) else per_class
    with SampleStore.open(path, layout, sync_every=0) as store:
        for label, count in enumerate(counts):
            for index in range(count):
                features = rng.normal(2.0 * label, 0.3, layout.feature_size).astype(np.float32)
                window = rng.normal(0.0, 1.0, layout.window_shape).astype(np.float32)
                store.append(label, features, window, float(index))


@dataclass
class RecordingNotifier:
    """A SystemdNotifier stand-in that asks for watchdog pings every *interval* real seconds
    and keeps every message, with the real time it was sent."""

    interval: float | None = None
    messages: list[tuple[float, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, kind: str, text: str = "") -> bool:
        with self._lock:
            self.messages.append((time.monotonic(), kind, text))
        return True

    def watchdog_interval(self) -> float | None:
        return self.interval

    def ready(self) -> bool:
        return self._record("READY")

    def status(self, text: str) -> bool:
        return self._record("STATUS", text)

    def watchdog(self) -> bool:
        return self._record("WATCHDOG")

    def stopping(self) -> bool:
        return self._record("STOPPING")

    def reloading(self) -> bool:
        return self._record("RELOADING")

    def times_of(self, kind: str) -> list[float]:
        with self._lock:
            return [at for at, what, _ in self.messages if what == kind]
