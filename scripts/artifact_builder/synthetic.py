"""A minimal synthetic IMU generator for pretraining and evaluation (numpy only).

Used when ``odar.drivers.emulated.motion`` is not importable. It makes the variety that lets
features transfer: body placements, device orientations, gait frequency and strength per
wearer, the sensor's own rate with timestamp jitter (resampled to the target rate), noise,
bias, and the MPU6050's full-scale ranges (clipping and LSB quantisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRAVITY = 9.80665
PLACEMENTS = ("wrist", "pocket", "waist", "chest", "ankle", "upper_arm", "bag")
ACCEL_RANGES_G = (2, 4, 8, 16)
GYRO_RANGES_DPS = (250, 500, 1000, 2000)


@dataclass(frozen=True)
class ActivityModel:
    """Body-frame motion: harmonics of a cadence, plus posture (where gravity points)."""

    cadence: float  # multiple of the wearer's step frequency (0 = still)
    accel_amplitude: float  # m/s^2 of the fundamental
    harmonics: tuple[float, ...]  # relative amplitude of harmonics 1, 2, 3...
    gyro_amplitude: float  # rad/s
    pitch_deg: float  # body tilt from upright
    impact: float = 0.0  # sharp heel-strike pulses, m/s^2
    irregularity: float = 0.05  # cadence wander


ACTIVITIES: dict[str, ActivityModel] = {
    "sit": ActivityModel(0.0, 0.05, (1.0,), 0.02, 60.0),
    "stand": ActivityModel(0.0, 0.08, (1.0,), 0.03, 0.0),
    "lie": ActivityModel(0.0, 0.03, (1.0,), 0.01, 90.0),
    "walk": ActivityModel(1.0, 2.5, (1.0, 0.6, 0.25), 1.2, 5.0, impact=2.0),
    "run": ActivityModel(1.45, 7.0, (1.0, 0.5, 0.3), 3.0, 12.0, impact=8.0),
    "stairs_up": ActivityModel(0.8, 2.8, (1.0, 1.0, 0.3), 1.0, 15.0, impact=1.0),
    "stairs_down": ActivityModel(0.95, 3.5, (1.0, 0.4, 0.6), 1.4, -5.0, impact=5.0),
    "bike": ActivityModel(0.65, 1.5, (1.0, 0.2), 2.0, 35.0, irregularity=0.02),
    "jump": ActivityModel(0.9, 9.0, (1.0, 0.8, 0.6, 0.4), 1.5, 3.0, impact=15.0),
    "brush_teeth": ActivityModel(2.4, 1.2, (1.0, 0.3), 2.5, 10.0, irregularity=0.15),
    "wave": ActivityModel(1.1, 4.0, (1.0, 0.1), 4.0, 0.0, irregularity=0.1),
    "shuffle": ActivityModel(1.25, 1.0, (1.0, 0.7, 0.5), 0.5, 8.0, impact=0.5),
}

#: how strongly each placement sees the body's motion (translation, rotation)
PLACEMENT_GAIN = {
    "wrist": (1.3, 2.0),
    "pocket": (1.2, 1.6),
    "waist": (1.0, 0.6),
    "chest": (0.8, 0.5),
    "ankle": (2.0, 2.5),
    "upper_arm": (1.1, 1.2),
    "bag": (0.7, 0.4),
}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass(frozen=True)
class Wearer:
    step_hz: float
    strength: float
    placement: str
    orientation: np.ndarray  # device axes relative to the body segment
    axis_mix: np.ndarray  # (3, n_harmonics_max) how harmonics spread over body axes
    sensor_rate_hz: float
    accel_noise: float
    gyro_noise: float
    accel_bias: np.ndarray
    gyro_bias: np.ndarray
    accel_range_g: int
    gyro_range_dps: int

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        placements: tuple[str, ...] | None = None,
        rates_hz: tuple[float, ...] = (50.0, 100.0, 200.0),
        noise_scale: float = 1.0,
    ) -> Wearer:
        return cls(
            step_hz=float(rng.uniform(1.5, 2.2)),
            strength=float(rng.uniform(0.7, 1.3)),
            placement=str(rng.choice(placements or PLACEMENTS)),
            orientation=random_rotation(rng),
            axis_mix=rng.normal(size=(3, 4)) * 0.5 + np.array([[0.3], [0.3], [1.0]]),
            sensor_rate_hz=float(rng.choice(rates_hz)),
            accel_noise=float(rng.uniform(0.01, 0.15) * noise_scale),
            gyro_noise=float(rng.uniform(0.002, 0.03) * noise_scale),
            accel_bias=rng.normal(scale=0.2 * noise_scale, size=3),
            gyro_bias=rng.normal(scale=0.03 * noise_scale, size=3),
            accel_range_g=int(rng.choice(ACCEL_RANGES_G)),
            gyro_range_dps=int(rng.choice(GYRO_RANGES_DPS)),
        )


def _body_motion(activity: ActivityModel, wearer: Wearer, t: np.ndarray, rng) -> np.ndarray:
    """(n, 6) body-frame specific force and angular rate, SI units."""
    n = len(t)
    translation_gain, rotation_gain = PLACEMENT_GAIN[wearer.placement]
    pitch = np.radians(activity.pitch_deg + rng.normal(scale=5.0))
    gravity = GRAVITY * np.array([np.sin(pitch), 0.0, np.cos(pitch)])
    accel = np.tile(gravity, (n, 1))
    gyro = np.zeros((n, 3))
    if activity.cadence > 0:
        wander = np.cumsum(rng.normal(scale=activity.irregularity, size=n)) / np.sqrt(n)
        freq = activity.cadence * wearer.step_hz * (1.0 + 0.1 * wander)
        dt = np.diff(t, prepend=t[0])
        phase = 2 * np.pi * np.cumsum(freq * dt) + rng.uniform(0, 2 * np.pi)
        amplitude = activity.accel_amplitude * wearer.strength * translation_gain
        for k, weight in enumerate(activity.harmonics):
            mix = wearer.axis_mix[:, k % wearer.axis_mix.shape[1]]
            offsets = rng.uniform(0, 2 * np.pi, size=3)
            wave = np.sin((k + 1) * phase[:, None] + offsets)
            accel += amplitude * weight * mix * wave
            gyro += (
                activity.gyro_amplitude
                * rotation_gain
                * weight
                * np.roll(mix, k + 1)
                * np.cos((k + 1) * phase[:, None] + offsets)
            )
        if activity.impact > 0:
            # Heel strikes: a short pulse once per cycle, mostly along the body's vertical.
            pulse = np.exp(-((np.mod(phase, 2 * np.pi) - 0.3) ** 2) / 0.02)
            accel[:, 2] += activity.impact * wearer.strength * translation_gain * pulse
    else:
        sway = rng.normal(scale=activity.accel_amplitude, size=(n, 3))
        accel += np.cumsum(sway, axis=0) / np.sqrt(np.arange(1, n + 1))[:, None]
        gyro += rng.normal(scale=activity.gyro_amplitude, size=(n, 3))
    return np.hstack([accel, gyro])


def synthesize(
    activity: str,
    seconds: float,
    rate_hz: float,
    wearer: Wearer,
    rng: np.random.Generator,
    jitter: float = 0.02,
) -> np.ndarray:
    """(round(seconds * rate_hz), 6) samples at ``rate_hz``, as an MPU6050 driver delivers them.

    The signal is made at the wearer's sensor rate with jittered timestamps, passed through
    the sensor's range and resolution, and resampled (linear) to ``rate_hz``.
    """
    model = ACTIVITIES[activity]
    sensor_rate = wearer.sensor_rate_hz
    n_sensor = int(np.ceil(seconds * sensor_rate)) + 2
    t = np.arange(n_sensor) / sensor_rate
    t = t + rng.normal(scale=jitter / sensor_rate, size=n_sensor)
    t = np.sort(t)
    body = _body_motion(model, wearer, t, rng)
    rotation = wearer.orientation
    accel = body[:, :3] @ rotation.T + wearer.accel_bias
    gyro = body[:, 3:] @ rotation.T + wearer.gyro_bias
    accel += rng.normal(scale=wearer.accel_noise, size=accel.shape)
    gyro += rng.normal(scale=wearer.gyro_noise, size=gyro.shape)
    accel_full = wearer.accel_range_g * GRAVITY
    gyro_full = np.radians(wearer.gyro_range_dps)
    accel = np.round(np.clip(accel, -accel_full, accel_full) / accel_full * 32767) * (
        accel_full / 32767
    )
    gyro = np.round(np.clip(gyro, -gyro_full, gyro_full) / gyro_full * 32767) * (gyro_full / 32767)
    samples = np.hstack([accel, gyro])
    n_out = round(seconds * rate_hz)
    t_out = t[0] + np.arange(n_out) / rate_hz
    return np.stack([np.interp(t_out, t, samples[:, c]) for c in range(6)], axis=1).astype(
        np.float32
    )


def make_windows(
    activities: list[str] | tuple[str, ...],
    n_per_activity: int,
    rate_hz: float,
    window: int = 400,
    rng: np.random.Generator | None = None,
    wearers: list[Wearer] | None = None,
    placements: tuple[str, ...] | None = None,
    rates_hz: tuple[float, ...] = (50.0, 100.0, 200.0),
    noise_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(X (m, window, 6) float32, y (m,) index into ``activities``), one wearer per window."""
    rng = rng or np.random.default_rng()
    seconds = window / rate_hz
    xs, ys = [], []
    for label, activity in enumerate(activities):
        for _ in range(n_per_activity):
            if wearers:
                wearer = wearers[int(rng.integers(len(wearers)))]
            else:
                wearer = Wearer.random(rng, placements, rates_hz, noise_scale)
            xs.append(synthesize(activity, seconds, rate_hz, wearer, rng))
            ys.append(label)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)
