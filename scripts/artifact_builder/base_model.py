"""The pretrained base: a small 1-D conv net from a (400, 6) SI window to a feature vector.

Scaling lives inside the model (accelerometer / g, gyroscope as is in rad/s, plus the two
vector magnitudes, which do not depend on how the device sits on the body), so the daemon
feeds the driver's samples unchanged. The exported features are standardised with the
pretraining set's per-feature mean and spread, baked in as constants: the head then starts
from inputs of unit scale, which its 40-odd Adam steps on 10 windows need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

GRAVITY = 9.80665


@dataclass(frozen=True)
class BaseSpec:
    window: int = 400
    filters: tuple[int, ...] = (32, 48, 64, 64)
    feature_size: int = 128  # global average and max pooling of the last conv layer
    dropout: float = 0.3
    #: per-axis mean, std, min, max of the scaled window (24 numbers) beside the learnt
    #: features: the device's orientation to gravity, which names a posture, kept as it is
    statistics: bool = False

    @property
    def learnt_size(self) -> int:
        return self.feature_size - (STATISTICS_SIZE if self.statistics else 0)


STATISTICS_SIZE = 24


def _window_statistics(scaled: tf.Tensor) -> tf.Tensor:
    axes = scaled[..., :6]  # accel / g and gyro, without the magnitudes
    mean = tf.reduce_mean(axes, axis=1)
    spread = tf.sqrt(tf.reduce_mean(tf.square(axes - mean[:, None, :]), axis=1) + 1e-6)
    return tf.concat(
        [mean, spread, tf.reduce_min(axes, axis=1), tf.reduce_max(axes, axis=1)], axis=-1
    )


def _scale_inputs(window: tf.Tensor) -> tf.Tensor:
    accel = window[..., :3] / GRAVITY
    gyro = window[..., 3:]
    accel_norm = tf.sqrt(tf.reduce_sum(tf.square(accel), axis=-1, keepdims=True) + 1e-6)
    gyro_norm = tf.sqrt(tf.reduce_sum(tf.square(gyro), axis=-1, keepdims=True) + 1e-6)
    return tf.concat([accel, gyro, accel_norm - 1.0, gyro_norm], axis=-1)


def build_base(spec: BaseSpec) -> tf.keras.Model:
    """Conv layers with stride 2 (fast on a Pi), then average and max pooling -> features."""
    if spec.learnt_size != 2 * spec.filters[-1]:
        raise ValueError(f"learnt features {spec.learnt_size} must be 2 x last filters")
    inputs = tf.keras.Input((spec.window, 6), name="window")
    x = scaled = tf.keras.layers.Lambda(_scale_inputs, name="scale")(inputs)
    for i, filters in enumerate(spec.filters):
        x = tf.keras.layers.Conv1D(
            filters, 7 if i == 0 else 5, strides=2, padding="same", name=f"conv{i}"
        )(x)
        x = tf.keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = tf.keras.layers.ReLU(name=f"relu{i}")(x)
    parts = [
        tf.keras.layers.GlobalAveragePooling1D(name="avg")(x),
        tf.keras.layers.GlobalMaxPooling1D(name="max")(x),
    ]
    if spec.statistics:
        parts.append(tf.keras.layers.Lambda(_window_statistics, name="statistics")(scaled))
    features = tf.keras.layers.Concatenate(name="features")(parts)
    return tf.keras.Model(inputs, features, name="bottleneck")


def pretrain(
    spec: BaseSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    epochs: int,
    seed: int,
    *,
    sample_weight: np.ndarray | None = None,
    final_rows: np.ndarray | None = None,
    final_epochs: int = 0,
) -> tuple[tf.keras.Model, dict[str, float]]:
    """Supervised activity classification; the classifier on top is thrown away after.

    *sample_weight* weighs each training window's loss; the last *final_epochs* of the
    *epochs* train on *final_rows* of the training set only (the learning rate's cosine
    decay runs over both parts)."""
    if final_epochs and final_rows is None:
        raise ValueError("final_epochs needs final_rows")
    if not 0 <= final_epochs <= epochs:
        raise ValueError(f"final_epochs {final_epochs} is not within 0..{epochs}")
    tf.keras.utils.set_random_seed(seed)
    base = build_base(spec)
    inputs = tf.keras.Input((spec.window, 6))
    features = base(inputs)
    hidden = tf.keras.layers.Dropout(spec.dropout)(features)
    scorer = tf.keras.layers.Dense(num_classes, activation="softmax", name="pretrain_classes")
    outputs = scorer(hidden)
    classifier = tf.keras.Model(inputs, outputs)
    batch_size = 64
    # Cosine decay to zero: the last epochs settle instead of bouncing at the full rate.
    first_epochs = epochs - final_epochs
    steps = first_epochs * int(np.ceil(len(x_train) / batch_size))
    if final_epochs:
        steps += final_epochs * int(np.ceil(len(final_rows) / batch_size))
    schedule = tf.keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=max(1, steps))
    classifier.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = classifier.fit(
        x_train,
        y_train,
        sample_weight=sample_weight,
        validation_data=(x_val, y_val),
        epochs=first_epochs,
        batch_size=batch_size,
        verbose=2,
    )
    if final_epochs:
        history = classifier.fit(
            x_train[final_rows],
            y_train[final_rows],
            sample_weight=None if sample_weight is None else sample_weight[final_rows],
            validation_data=(x_val, y_val),
            epochs=final_epochs,
            batch_size=batch_size,
            verbose=2,
        )
    _, val_accuracy = classifier.evaluate(x_val, y_val, verbose=0)
    quality = {
        "pretrain_classes": num_classes,
        "train_windows": len(x_train),
        "validation_windows": len(x_val),
        "epochs": epochs,
        **({"final_epochs_on_a_subset": final_epochs} if final_epochs else {}),
        **({"sample_weighted": True} if sample_weight is not None else {}),
        "final_train_accuracy": float(history.history["accuracy"][-1]),
        "validation_accuracy": float(val_accuracy),
    }
    quality["class_scorer"] = scorer  # popped by the builder: with_class_scores needs it
    return base, quality


def with_class_scores(
    base: tf.keras.Model,
    kernel: np.ndarray,
    bias: np.ndarray,
    classes: list[int] | None = None,
) -> tf.keras.Model:
    """The base with the pretraining classifier's scores (logits, one per pretraining class,
    or only *classes*) after its features: what the base learnt to tell apart, handed to the
    head directly."""
    if classes is not None:
        kernel, bias = kernel[:, classes], bias[classes]
    inputs = tf.keras.Input(base.input_shape[1:], name="window")
    features = base(inputs)
    scores = tf.keras.layers.Dense(kernel.shape[1], name="class_scores")
    combined = tf.keras.layers.Concatenate(name="features_and_scores")([features, scores(features)])
    scores.set_weights([kernel, bias])
    return tf.keras.Model(inputs, combined, name="bottleneck_with_scores")


STATISTICS_WINDOWS = 8000


def raw_features(base: tf.keras.Model, x: np.ndarray) -> np.ndarray:
    """The base's unstandardised features of (up to STATISTICS_WINDOWS of) the pretraining
    windows: what the standardisation is computed on."""
    return base.predict(x[:STATISTICS_WINDOWS], batch_size=256, verbose=0)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and spread of *features* (see :func:`raw_features`).

    A feature that never varies (a ReLU that stays at 0) gets spread 1, not a division by ~0.
    """
    mean = features.mean(axis=0)
    spread = features.std(axis=0)
    spread = np.where(spread > 1e-3, spread, 1.0)
    return mean.astype(np.float32), spread.astype(np.float32)


def bottleneck_function(
    base: tf.keras.Model,
    window: int,
    statistics: tuple[np.ndarray, np.ndarray] | None = None,
    scorer=None,
):
    """The base as a named signature: ``window`` (1, 400, 6) -> ``features`` (1, F),
    standardised with *statistics* (mean, spread) when given, then followed by
    ``features @ kernel + bias`` when *scorer* is a tuple (kernel, bias), or by
    ``scorer.tf_scores(features, window)`` when it is an object (a PostureScorer)."""
    if statistics is None:
        offset, scale = None, None
    else:
        offset = tf.constant(statistics[0][None, :])
        scale = tf.constant((1.0 / statistics[1])[None, :])
    if isinstance(scorer, tuple):
        score_kernel, score_bias = tf.constant(scorer[0]), tf.constant(scorer[1][None, :])

    @tf.function(input_signature=[tf.TensorSpec((1, window, 6), tf.float32, name="window")])
    def bottleneck(window_tensor):
        features = base(window_tensor, training=False)
        if offset is not None:
            features = (features - offset) * scale
        if isinstance(scorer, tuple):
            scores = tf.matmul(features, score_kernel) + score_bias
            features = tf.concat([features, scores], axis=-1)
        elif scorer is not None:  # reads the window too (a PostureScorer)
            scores = scorer.tf_scores(features, window_tensor)
            features = tf.concat([features, scores], axis=-1)
        return {"features": features}

    return bottleneck.get_concrete_function()
