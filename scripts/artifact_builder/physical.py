"""Windows from odar's physical motion model (``odar.drivers.emulated.motion``) at any sensor
rate, resampled to the base's rate, optionally with noisier sensors.

numpy and odar only (no TensorFlow): the builder pretrains on it and ``odar bench fewshot``
loads it by path to evaluate on conditions the base never saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from odar.drivers.emulated.motion import Wearer, make_windows


def resample(windows: np.ndarray, source_hz: float, target_hz: float, length: int) -> np.ndarray:
    """(m, n, 6) at *source_hz* -> (m, length, 6) at *target_hz*, linear, from the first sample.

    Linear interpolation is what a driver-side resampler does; at a low sensor rate it keeps
    the sensor's aliasing, at a high one it drops samples without filtering, as on the device.
    """
    if source_hz == target_hz and windows.shape[1] == length:
        return windows
    source_t = np.arange(windows.shape[1]) / source_hz
    target_t = np.arange(length) / target_hz
    right = np.clip(np.searchsorted(source_t, target_t, side="right"), 1, len(source_t) - 1)
    left = right - 1
    weight = ((target_t - source_t[left]) / (source_t[right] - source_t[left]))[None, :, None]
    resampled = windows[:, left] * (1.0 - weight) + windows[:, right] * weight
    return resampled.astype(np.float32)


def _noisier_wearers(
    rng: np.random.Generator, count: int, placements: Sequence[str], noise_scale: float
) -> list[Wearer]:
    wearers = []
    for _ in range(count):
        wearer = Wearer.random(rng, placements)
        wearers.append(
            dataclasses.replace(
                wearer,
                accel_noise_density=wearer.accel_noise_density * noise_scale,
                gyro_noise_density=wearer.gyro_noise_density * noise_scale,
                accel_bias=wearer.accel_bias * noise_scale,
                gyro_bias=wearer.gyro_bias * noise_scale,
            )
        )
    return wearers


def physical_windows(
    activities: Sequence[str],
    n_per_activity: int,
    rng: np.random.Generator,
    *,
    placements: Sequence[str],
    rates_hz: Sequence[float],
    noise_scale: float = 1.0,
    rate_hz: float = 100.0,
    window: int = 400,
) -> tuple[np.ndarray, np.ndarray]:
    """(X (m, window, 6) float32 at *rate_hz*, y (m,) index into *activities*).

    Each window is a fresh random wearer at one of *placements*, recorded at a sensor rate
    picked from *rates_hz* and resampled to *rate_hz*. A *noise_scale* other than 1 multiplies
    every wearer's noise density and bias. Windows come grouped by activity.
    """
    xs = np.empty((len(activities) * n_per_activity, window, 6), np.float32)
    ys = np.repeat(np.arange(len(activities), dtype=np.int64), n_per_activity)
    sensor_rates = rng.choice(np.asarray(rates_hz, float), size=(len(activities), n_per_activity))
    for label, activity in enumerate(activities):
        for sensor_hz in np.unique(sensor_rates[label]):
            rows = np.flatnonzero(sensor_rates[label] == sensor_hz)
            # One sample past the window's end, so the last resampled point interpolates.
            length = int(np.ceil(window * sensor_hz / rate_hz)) + 1
            wearers = (
                _noisier_wearers(rng, len(rows), placements, noise_scale)
                if noise_scale != 1.0
                else None
            )
            x, _ = make_windows(
                [activity],
                len(rows),
                float(sensor_hz),
                window=length,
                rng=rng,
                wearers=wearers,
                placements=placements,
            )
            xs[label * n_per_activity + rows] = resample(x, float(sensor_hz), rate_hz, window)
    return xs, ys
