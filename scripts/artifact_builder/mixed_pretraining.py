"""The shipped base's pretraining set: odar's physical motion model for most windows, the
builder's own synthetic generator for extra variety (numpy and odar only, no TensorFlow).

What is held out, so that ``odar bench fewshot`` measures transfer and not recall:

* placements: upper_arm (physical model), ankle, upper_arm and bag (synthetic generator);
* sensor rates: pretraining records at 50/100/200 Hz, the bench at 40 and 400 Hz;
* noise: pretraining uses each wearer's own noise and bias, the bench twice that;
* activities: arm_waving, arm_circles, jumping (physical) and jump, brush_teeth, wave,
  shuffle (synthetic) are never pretrained on;
* people: every window is a fresh random wearer, drawn from the builder's own seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import synthetic
from .physical import physical_windows

PHYSICAL_ACTIVITIES = (
    "sitting",
    "standing",
    "lying",
    "walking",
    "running",
    "stairs_up",
    "stairs_down",
    "cycling",
)
PHYSICAL_PLACEMENTS = ("wrist", "pocket", "hip", "chest")
SYNTHETIC_ACTIVITIES = ("sit", "stand", "lie", "walk", "run", "stairs_up", "stairs_down", "bike")
SYNTHETIC_PLACEMENTS = ("wrist", "pocket", "waist", "chest")
SENSOR_RATES_HZ = (50.0, 100.0, 200.0)
LABEL_SCHEMES = ("activity", "activity-placement")


#: Motion-amplitude augmentation: the gain range and the share of windows it applies to.
AMPLITUDE_GAIN_RANGE = (0.5, 2.0)
AMPLITUDE_AUGMENTED_SHARE = 0.5


def augment_amplitude(
    windows: np.ndarray,
    rng: np.random.Generator,
    gain_range: tuple[float, float] = AMPLITUDE_GAIN_RANGE,
    share: float = AMPLITUDE_AUGMENTED_SHARE,
) -> np.ndarray:
    """Scale the motion of a random *share* of windows by a log-uniform gain, in place.

    The motion is the accelerometer minus its window mean (gravity and bias stay) and the
    whole gyroscope signal. How hard a body segment moves depends on where the device sits
    and on who wears it; four placements give the base only four gains to learn from, so
    this teaches it that the gain alone does not name the activity.
    """
    chosen = np.flatnonzero(rng.random(len(windows)) < share)
    gains = np.exp(rng.uniform(*np.log(gain_range), len(chosen))).astype(np.float32)
    for row, gain in zip(chosen, gains, strict=True):
        accel = windows[row, :, :3]
        still = accel.mean(axis=0)
        windows[row, :, :3] = still + (accel - still) * gain
        windows[row, :, 3:] *= gain
    return windows


@dataclass(frozen=True)
class MixedSet:
    windows: np.ndarray  # (m, 400, 6) float32, shuffled
    labels: np.ndarray  # (m,) index into class_names
    class_names: tuple[str, ...]


def _class_name(source: str, activity: str, placement: str, scheme: str) -> str:
    # Each generator keeps its own classes: their "walk" and "walking" are different models.
    if scheme == "activity":
        return f"{source}:{activity}"
    return f"{source}:{activity}@{placement}"


def mixed_windows(
    physical_per_activity: int,
    synthetic_per_activity: int,
    rng: np.random.Generator,
    *,
    scheme: str = "activity",
    augment: bool = False,
    rate_hz: float = 100.0,
    window: int = 400,
) -> MixedSet:
    """Windows of both generators, each activity spread evenly over its placements; with
    *augment*, half of them get a random motion gain (:func:`augment_amplitude`)."""
    if scheme not in LABEL_SCHEMES:
        raise ValueError(f"label scheme {scheme!r} is not one of {', '.join(LABEL_SCHEMES)}")
    parts: list[np.ndarray] = []
    names: list[str] = []
    for placement in PHYSICAL_PLACEMENTS:
        x, y = physical_windows(
            PHYSICAL_ACTIVITIES,
            max(1, physical_per_activity // len(PHYSICAL_PLACEMENTS)),
            rng,
            placements=(placement,),
            rates_hz=SENSOR_RATES_HZ,
            rate_hz=rate_hz,
            window=window,
        )
        parts.append(x)
        names += [_class_name("physical", PHYSICAL_ACTIVITIES[i], placement, scheme) for i in y]
    for placement in SYNTHETIC_PLACEMENTS:
        x, y = synthetic.make_windows(
            SYNTHETIC_ACTIVITIES,
            max(1, synthetic_per_activity // len(SYNTHETIC_PLACEMENTS)),
            rate_hz=rate_hz,
            window=window,
            rng=rng,
            placements=(placement,),
            rates_hz=SENSOR_RATES_HZ,
        )
        parts.append(x)
        names += [_class_name("synthetic", SYNTHETIC_ACTIVITIES[i], placement, scheme) for i in y]
    class_names = tuple(dict.fromkeys(names))
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[name] for name in names], dtype=np.int64)
    windows = np.concatenate(parts)
    if augment:
        augment_amplitude(windows, rng)
    order = rng.permutation(len(labels))
    return MixedSet(windows[order], labels[order], class_names)


def provenance(
    physical_per_activity: int,
    synthetic_per_activity: int,
    scheme: str,
    augment: bool,
    seed: int,
) -> dict[str, Any]:
    """What the manifest says about the pretraining data (``odar bench fewshot`` reads the
    placements from here to check it evaluates elsewhere)."""
    return {
        "kind": "synthetic",
        "generators": {
            "physical": {
                "module": "drivers/emulated/motion.py (odar.drivers.emulated.motion)",
                "activities": list(PHYSICAL_ACTIVITIES),
                "placements": list(PHYSICAL_PLACEMENTS),
                "windows_per_activity": physical_per_activity,
            },
            "synthetic": {
                "module": "scripts/artifact_builder/synthetic.py",
                "activities": list(SYNTHETIC_ACTIVITIES),
                "placements": list(SYNTHETIC_PLACEMENTS),
                "windows_per_activity": synthetic_per_activity,
            },
        },
        "activities": list(PHYSICAL_ACTIVITIES + SYNTHETIC_ACTIVITIES),
        "placements": sorted(set(PHYSICAL_PLACEMENTS + SYNTHETIC_PLACEMENTS)),
        "sensor_rates_hz": list(SENSOR_RATES_HZ),
        "labels": scheme,
        "augmentation": (
            f"motion gain log-uniform {AMPLITUDE_GAIN_RANGE[0]}-{AMPLITUDE_GAIN_RANGE[1]} on "
            f"{AMPLITUDE_AUGMENTED_SHARE:.0%} of the training windows (not validation)"
            if augment
            else "none"
        ),
        "wearers": "a fresh random wearer per window (body, gait, device orientation, noise, "
        "bias, accelerometer and gyroscope full-scale ranges)",
        "held_out_for_evaluation": "placements upper_arm (physical), ankle/upper_arm/bag "
        "(synthetic); sensor rates 40 and 400 Hz; noise and bias x2; activities arm_waving, "
        "arm_circles, jumping, jump, brush_teeth, wave, shuffle",
        "seed": seed,
        "note": "no real recordings; rebuild with --hhar DIR for a base trained on HHAR",
    }
