"""Activity scores that survive a phone clipped on differently: a small two-layer classifier
of HAPT's six activities on the base's features plus eleven sway features, fit on the real
pretraining windows and on copies of them turned by other people's mountings.

Why: between a person's two HAPT recordings the phone's standing direction moves by 2-16
degrees, while sitting and standing differ by 6-46; a linear scorer on the base's features
leans on the tilt and, for a person whose second mounting lands where their first sitting
was, reverses. Two things do not move with the mounting: how much the body turns about the
vertical (standing people sway and twist, a seated pelvis does not; the gyroscope's component
along gravity) and the other magnitudes of the window's motion, on a log scale because a
still person's are tiny. The turned copies use the rotations that took each pretraining
subject's walking gravity direction in one recording to that in the other: real mountings,
not uniformly random ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .base_model import GRAVITY

#: block of samples averaged for the below-2-Hz parts (0.25 s at 100 Hz)
SWAY_BLOCK = 25
SWAY_FLOOR = 1e-5
SWAY_NAMES = (
    "log_std_accel_magnitude",
    "log_std_accel_along_gravity",
    "log_rms_accel_across_gravity",
    "log_std_gyro_along_gravity",
    "log_rms_gyro_across_gravity",
    "log_std_accel_magnitude_below_2hz",
    "log_std_accel_along_gravity_below_2hz",
    "log_rms_gyro_across_gravity_below_2hz",
    "log_std_accel_magnitude_jerk",
    "log_std_gyro_along_gravity_below_2hz",
    "log_std_accel_magnitude_above_2hz",
)
SWAY_SIZE = len(SWAY_NAMES)


def _std(values: tf.Tensor, axis: int) -> tf.Tensor:
    centred = values - tf.reduce_mean(values, axis=axis, keepdims=True)
    return tf.sqrt(tf.reduce_mean(tf.square(centred), axis=axis))


def _blocks(values: tf.Tensor, window: int) -> tf.Tensor:
    """(batch, window, ...) -> (batch, window // SWAY_BLOCK) block means (batch, blocks, ...)."""
    count = window // SWAY_BLOCK
    shape = [-1, count, SWAY_BLOCK, *values.shape[2:]]
    return tf.reduce_mean(tf.reshape(values[:, : count * SWAY_BLOCK], shape), axis=2)


def sway_features(window: tf.Tensor) -> tf.Tensor:
    """(batch, window, 6) SI samples -> (batch, SWAY_SIZE) logs of motion magnitudes that do
    not depend on how the device is turned (all measured along or across the window's own
    gravity direction, or on vector magnitudes)."""
    length = int(window.shape[1])
    accel, gyro = window[..., :3] / GRAVITY, window[..., 3:]
    gravity = tf.reduce_mean(accel, axis=1)
    up = gravity / tf.sqrt(tf.reduce_sum(tf.square(gravity), axis=-1, keepdims=True) + 1e-12)
    motion = accel - gravity[:, None, :]
    vertical = tf.reduce_sum(motion * up[:, None, :], axis=-1)
    across = motion - vertical[..., None] * up[:, None, :]
    turning = gyro - tf.reduce_mean(gyro, axis=1, keepdims=True)
    yaw = tf.reduce_sum(turning * up[:, None, :], axis=-1)
    tilt_rate = turning - yaw[..., None] * up[:, None, :]
    magnitude = tf.sqrt(tf.reduce_sum(tf.square(accel), axis=-1) + 1e-12)
    slow_magnitude = _blocks(magnitude, length)
    slow_tilt_rate = _blocks(tilt_rate, length)
    slow_tilt_rate -= tf.reduce_mean(slow_tilt_rate, axis=1, keepdims=True)
    count = length // SWAY_BLOCK
    fast_magnitude = tf.reshape(magnitude[:, : count * SWAY_BLOCK], [-1, count, SWAY_BLOCK])
    fast_magnitude -= slow_magnitude[:, :, None]
    rms = lambda v: tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(v), axis=-1), axis=1))  # noqa: E731
    values = [
        _std(magnitude, 1),
        _std(vertical, 1),
        rms(across),
        _std(yaw, 1),
        rms(tilt_rate),
        _std(slow_magnitude, 1),
        _std(_blocks(vertical, length), 1),
        rms(slow_tilt_rate),
        _std(magnitude[:, 1:] - magnitude[:, :-1], 1),
        _std(_blocks(yaw, length), 1),
        _std(tf.reshape(fast_magnitude, [-1, count * SWAY_BLOCK]), 1),
    ]
    return tf.math.log(tf.stack(values, axis=-1) + SWAY_FLOOR)


def sway_of(windows: np.ndarray, batch: int = 1024) -> np.ndarray:
    """:func:`sway_features` of many windows (numpy in, numpy out)."""
    parts = [
        sway_features(tf.constant(windows[i : i + batch], tf.float32)).numpy()
        for i in range(0, len(windows), batch)
    ]
    return np.concatenate(parts).astype(np.float32)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction *a* to direction *b*."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    cross = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + cross + cross @ cross / (1.0 + c)


def walking_mountings(
    windows: np.ndarray, labels: np.ndarray, subjects: np.ndarray, recordings: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per subject with walking in both recordings: the rotation from the first recording's
    mean walking gravity direction to the second's, and back: (rotations (k, 3, 3), the
    subject each belongs to (k,)). Walking is upright in both, so the difference is the
    phone's mounting."""
    gravity = windows[..., :3].mean(axis=1)
    rotations, owners = [], []
    for subject in np.unique(subjects):
        mine = (subjects == subject) & (labels == 0)
        first, second = mine & (recordings == 0), mine & (recordings == 1)
        if not first.any() or not second.any():
            continue
        turn = _rotation_between(gravity[first].mean(0), gravity[second].mean(0))
        rotations += [turn, turn.T]
        owners += [subject, subject]
    return np.array(rotations), np.array(owners)


def remounted(
    windows: np.ndarray,
    subjects: np.ndarray,
    recordings: np.ndarray,
    rotations: np.ndarray,
    owners: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The windows with each recording turned by one mounting rotation of another subject."""
    turned = windows.copy()
    for subject in np.unique(subjects):
        others = np.flatnonzero(owners != subject)
        for recording in np.unique(recordings[subjects == subject]):
            rows = (subjects == subject) & (recordings == recording)
            turn = rotations[others[rng.integers(len(others))]].astype(np.float32)
            turned[rows, :, :3] = windows[rows, :, :3] @ turn.T
            turned[rows, :, 3:] = windows[rows, :, 3:] @ turn.T
    return turned


@dataclass(frozen=True)
class PostureScorer:
    """``scores = relu([features, (sway - sway_mean) / sway_spread] @ hidden_kernel +
    hidden_bias) @ kernel + bias``, the output standardisation and gain folded in."""

    sway_mean: np.ndarray  # (SWAY_SIZE,)
    sway_spread: np.ndarray  # (SWAY_SIZE,)
    hidden_kernel: np.ndarray  # (features + SWAY_SIZE, hidden)
    hidden_bias: np.ndarray  # (hidden,)
    kernel: np.ndarray  # (hidden, 6)
    bias: np.ndarray  # (6,)
    train_accuracy: float

    def scores(self, features: np.ndarray, sway: np.ndarray) -> np.ndarray:
        inputs = np.concatenate([features, (sway - self.sway_mean) / self.sway_spread], 1)
        hidden = np.maximum(inputs @ self.hidden_kernel + self.hidden_bias, 0.0)
        return hidden @ self.kernel + self.bias

    def tf_scores(self, features: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
        sway = (sway_features(window) - self.sway_mean) * (1.0 / self.sway_spread)
        inputs = tf.concat([features, sway], axis=-1)
        hidden = tf.nn.relu(tf.matmul(inputs, self.hidden_kernel) + self.hidden_bias)
        return tf.matmul(hidden, self.kernel) + self.bias


def fit_posture_scorer(
    features: np.ndarray,
    sway: np.ndarray,
    labels: np.ndarray,
    gain: float,
    *,
    hidden: int = 32,
    iterations: int = 400,
    learning_rate: float = 0.01,
    l2: float = 1e-3,
    seed: int = 0,
    reference_rows: int | None = None,
) -> PostureScorer:
    """Full-batch Adam on softmax cross-entropy of *labels* (six activities). *features* are
    the base's standardised features, *sway* the raw :func:`sway_features`; the sway is
    standardised (and the logits afterwards, before *gain*) on the first *reference_rows*
    rows, the windows as recorded (all rows when None)."""
    reference = slice(None) if reference_rows is None else slice(0, reference_rows)
    sway_mean = sway[reference].mean(axis=0)
    sway_spread = sway[reference].std(axis=0) + 1e-6
    inputs = np.concatenate([features, (sway - sway_mean) / sway_spread], 1).astype(np.float64)
    classes = int(labels.max()) + 1
    onehot = np.eye(classes)[labels]
    rng = np.random.default_rng(seed)
    params = [
        rng.normal(0.0, np.sqrt(2.0 / inputs.shape[1]), (inputs.shape[1], hidden)),
        np.zeros(hidden),
        rng.normal(0.0, np.sqrt(1.0 / hidden), (hidden, classes)),
        np.zeros(classes),
    ]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    for step in range(1, iterations + 1):
        pre = inputs @ params[0] + params[1]
        act = np.maximum(pre, 0.0)
        logits = act @ params[2] + params[3]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        d_logits = (p - onehot) / len(inputs)
        d_pre = d_logits @ params[2].T * (pre > 0)
        grads = [
            inputs.T @ d_pre + l2 * params[0],
            d_pre.sum(axis=0),
            act.T @ d_logits + l2 * params[2],
            d_logits.sum(axis=0),
        ]
        for i, grad in enumerate(grads):
            first[i] = 0.9 * first[i] + 0.1 * grad
            second[i] = 0.999 * second[i] + 0.001 * grad * grad
            params[i] -= (
                learning_rate
                * (first[i] / (1 - 0.9**step))
                / (np.sqrt(second[i] / (1 - 0.999**step)) + 1e-8)
            )
    logits = np.maximum(inputs @ params[0] + params[1], 0.0) @ params[2] + params[3]
    accuracy = float(np.mean(np.argmax(logits[reference], axis=1) == labels[reference]))
    mean, spread = logits[reference].mean(axis=0), logits[reference].std(axis=0) + 1e-6
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return PostureScorer(
        f32(sway_mean),
        f32(sway_spread),
        f32(params[0]),
        f32(params[1]),
        f32(params[2] * (gain / spread)),
        f32((params[3] - mean) * (gain / spread)),
        accuracy,
    )
