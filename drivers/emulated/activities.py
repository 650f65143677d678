"""Physical models of activities: how a body segment moves and turns, per placement.

A device sits on a *segment* (forearm, thigh, pelvis, ...) that hangs from the *trunk*. The
trunk's pivot accelerates with the gait (vertical bounce, forward surge, lateral sway) and the
trunk and the segment turn with it (pelvic roll, arm swing, thigh flexion). Every time-varying
quantity is a sum of harmonics of one motion phase (stride, pedal turn, wave) plus a few
fixed random sinusoids (postural sway, tremor, road vibration), so the model is a closed-form
function of absolute time: any sample times, any rate, and continuous across calls.

Frames: world x forward, y left, z up. Orientation angles are ZYX Euler angles (yaw, pitch,
roll) on top of a constant pose. Positive pitch tips the forward axis down: leaning forward is
positive, raising a hanging arm or thigh forward is negative. The accelerometer measures
specific force (linear acceleration minus gravity); the gyro measures the body-frame angular
velocity, the exact derivative of the orientation (both evaluated analytically).

This module holds the tables and evaluates them on numpy blocks; ``motion.py`` adds wearers,
the sensor (noise, bias, range) and the public sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GRAVITY = 9.80665
PLACEMENTS = ("wrist", "pocket", "hip", "chest", "upper_arm")

#: harmonics of the motion phase (for gait, 2 is the step frequency, odd ones are asymmetry)
N_HARMONICS = 6
#: fixed random sinusoids per window: half in the slow sway band, half in the fast band
N_SWAY = 8
SLOW_BAND_HZ = (0.05, 0.7)

# channel order of the per-window coefficient tables
ANGLE_CHANNELS = ("trunk_roll", "trunk_pitch", "trunk_yaw", "seg_roll", "seg_pitch", "seg_yaw")
LINEAR_CHANNELS = ("x", "y", "z")
N_CHANNELS = len(ANGLE_CHANNELS) + len(LINEAR_CHANNELS)

#: {harmonic: (amplitude, phase rad)}; amplitude in degrees for angles, in g for accelerations
Harmonics = dict[int, tuple[float, float]]
AXES = ("roll", "pitch", "yaw")


@dataclass(frozen=True)
class Segment:
    """How the device's body segment sits and moves relative to the trunk for one activity."""

    pose_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # roll, pitch, yaw
    swing: dict[str, Harmonics] = field(default_factory=dict)  # keys from AXES
    #: radians of angle per radian of motion phase (continuous turning: arm circles)
    turn: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: pivot (hip, shoulder, pelvis centre) to device, in trunk axes at the base pose, metres
    lever_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sway_deg: float = 0.0  # slow band, fidgeting
    tremor_deg: float = 0.0  # fast band


@dataclass(frozen=True)
class ActivityModel:
    """One activity: cadence, trunk motion, pivot acceleration and each placement's segment."""

    name: str
    cadence_hz: tuple[float, float] | None  # step (or turn, wave, jump) rate range; None: still
    phase_per_beat: float = 1.0  # 0.5 for gait: the phase is the stride, two steps per turn
    gait: bool = False  # left/right asymmetry applies
    trunk_pose_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    trunk_pose_spread_deg: float = 4.0
    lying: bool = False  # the trunk lies down on a random side
    trunk_swing: dict[str, Harmonics] = field(default_factory=dict)
    linear: dict[str, Harmonics] = field(default_factory=dict)  # keys x y z, amplitude in g
    #: vertical ground reaction as half-sine pulses: (share of weight, stance duty, harmonic)
    pulse: tuple[float, float, int] | None = None
    trunk_sway_deg: float = 0.3
    linear_sway_g: float = 0.003
    fast_band_hz: tuple[float, float] = (8.0, 12.0)  # physiological tremor by default
    vibration_g: float = 0.0  # fast band, linear (road, ground)
    segments: dict[str, Segment] = field(default_factory=dict)


def _arm(length: float, pitch_deg: float = 0.0) -> tuple[float, float, float]:
    """Shoulder to wrist of a straight arm raised forward by -pitch_deg, in trunk axes."""
    pitch = np.radians(pitch_deg)
    return (-length * np.sin(pitch), 0.0, -length * np.cos(pitch))


_BENT_ELBOW = (0.27, 0.0, -0.30)  # upper arm down, forearm forward
_THIGH = (0.06, 0.0, -0.20)  # hip joint to a front trouser pocket
_BELT = (0.12, 0.0, 0.0)
_CHEST = (0.12, 0.0, 0.35)
_UPPER_ARM = (0.0, 0.05, -0.15)


def _trunk_mounted(
    lever: tuple[float, float, float],
    swing: dict[str, Harmonics] | None = None,
    sway_deg: float = 0.0,
) -> Segment:
    """A device on the trunk itself (belt, chest): it only turns with the trunk."""
    return Segment(swing=swing or {}, lever_m=lever, sway_deg=sway_deg)


def _still(
    name: str,
    *,
    trunk_pose: tuple[float, float, float],
    lying: bool = False,
    wrist_pitch: float,
    pocket_pitch: float,
    arm_pitch: float,
    trunk_sway: float,
    wrist_sway: float,
) -> ActivityModel:
    # Breathing and balance show up as the slow sway band; fidgeting as segment sway.
    return ActivityModel(
        name=name,
        cadence_hz=None,
        trunk_pose_deg=trunk_pose,
        trunk_pose_spread_deg=8.0,
        lying=lying,
        trunk_sway_deg=trunk_sway,
        linear_sway_g=0.004,
        segments={
            "wrist": Segment(
                pose_deg=(0.0, wrist_pitch, 0.0),
                lever_m=_arm(0.6, wrist_pitch) if wrist_pitch > -45 else _BENT_ELBOW,
                sway_deg=wrist_sway,
                tremor_deg=0.002,
            ),
            "pocket": Segment(pose_deg=(0.0, pocket_pitch, 0.0), lever_m=_THIGH, sway_deg=0.4),
            "hip": _trunk_mounted(_BELT),
            "chest": _trunk_mounted(_CHEST, sway_deg=0.3),
            "upper_arm": Segment(
                pose_deg=(0.0, arm_pitch, 0.0), lever_m=_UPPER_ARM, sway_deg=wrist_sway / 2
            ),
        },
    )


def _gait(
    name: str,
    *,
    cadence: tuple[float, float],
    lean_deg: float,
    vertical: Harmonics,
    forward: Harmonics,
    lateral: Harmonics,
    pulse: tuple[float, float, int] | None,
    arm_swing_deg: float,
    thigh_swing_deg: float,
    thigh_pitch_deg: float,
    wrist: Segment | None = None,
    trunk_scale: float = 1.0,
) -> ActivityModel:
    s = trunk_scale
    return ActivityModel(
        name=name,
        cadence_hz=cadence,
        phase_per_beat=0.5,
        gait=True,
        trunk_pose_deg=(0.0, lean_deg, 0.0),
        trunk_swing={
            "roll": {1: (3.0 * s, 0.0)},
            "pitch": {2: (2.0 * s, 0.6)},
            "yaw": {1: (4.0 * s, -0.5)},
        },
        linear={"z": vertical, "x": forward, "y": lateral},
        pulse=pulse,
        trunk_sway_deg=0.5,
        vibration_g=0.01,
        fast_band_hz=(12.0, 20.0),
        segments={
            # Arms swing opposite to the same-side leg: half a stride out of phase.
            "wrist": wrist
            or Segment(
                pose_deg=(0.0, -8.0, 0.0),
                swing={"pitch": {1: (arm_swing_deg, np.pi), 2: (3.0, 0.3)}},
                lever_m=_arm(0.6, -8.0),
                tremor_deg=0.002,
            ),
            "pocket": Segment(
                pose_deg=(0.0, thigh_pitch_deg, 0.0),
                swing={"pitch": {1: (thigh_swing_deg, 0.0), 2: (thigh_swing_deg / 6, 0.8)}},
                lever_m=_THIGH,
            ),
            "hip": _trunk_mounted(_BELT, swing={"yaw": {1: (3.0, -0.5)}}),
            "chest": _trunk_mounted(_CHEST),
            "upper_arm": Segment(
                pose_deg=(0.0, -4.0, 0.0),
                swing={"pitch": {1: (arm_swing_deg * 0.6, np.pi)}},
                lever_m=_UPPER_ARM,
            ),
        },
    )


def _gesture(
    name: str, *, cadence: tuple[float, float], wrist: Segment, upper_arm: Segment
) -> ActivityModel:
    # The rest of the body stands and only feels the arm's reaction.
    return ActivityModel(
        name=name,
        cadence_hz=cadence,
        trunk_swing={"roll": {1: (1.0, 0.0)}, "yaw": {1: (1.5, 0.4)}},
        linear={"y": {1: (0.03, 0.0)}, "x": {1: (0.02, 1.0)}},
        trunk_sway_deg=0.5,
        segments={
            "wrist": wrist,
            "upper_arm": upper_arm,
            "pocket": Segment(pose_deg=(0.0, -3.0, 0.0), lever_m=_THIGH, sway_deg=0.4),
            "hip": _trunk_mounted(_BELT),
            "chest": _trunk_mounted(_CHEST),
        },
    )


_MODELS = (
    _still(
        "sitting",
        trunk_pose=(0.0, 5.0, 0.0),
        wrist_pitch=-75.0,
        pocket_pitch=-88.0,
        arm_pitch=-15.0,
        trunk_sway=0.6,
        wrist_sway=1.0,
    ),
    _still(
        "standing",
        trunk_pose=(0.0, 2.0, 0.0),
        wrist_pitch=-5.0,
        pocket_pitch=-2.0,
        arm_pitch=-3.0,
        trunk_sway=0.8,
        wrist_sway=0.8,
    ),
    _still(
        "lying",
        trunk_pose=(0.0, 0.0, 0.0),
        lying=True,
        wrist_pitch=0.0,
        pocket_pitch=-5.0,
        arm_pitch=0.0,
        trunk_sway=0.4,
        wrist_sway=1.0,
    ),
    _gait(
        "walking",
        cadence=(1.4, 2.4),
        lean_deg=3.0,
        vertical={2: (0.30, 0.0), 4: (0.10, 1.0), 6: (0.03, 2.0)},
        forward={2: (0.20, -1.4), 4: (0.08, 0.5)},
        lateral={1: (0.12, 0.0), 3: (0.04, 0.7)},
        pulse=None,
        arm_swing_deg=22.0,
        thigh_swing_deg=22.0,
        thigh_pitch_deg=-8.0,
    ),
    _gait(
        "running",
        cadence=(2.4, 3.2),
        lean_deg=8.0,
        vertical={4: (0.15, 0.4)},
        forward={2: (0.40, -1.2), 4: (0.15, 0.3)},
        lateral={1: (0.20, 0.0), 3: (0.06, 0.5)},
        pulse=(1.0, 0.40, 2),  # flight phases: the body is in free fall between steps
        arm_swing_deg=32.0,
        thigh_swing_deg=38.0,
        thigh_pitch_deg=-18.0,
        wrist=Segment(
            pose_deg=(0.0, -80.0, 0.0),
            swing={"pitch": {1: (28.0, np.pi), 2: (5.0, 0.3)}, "yaw": {1: (8.0, np.pi)}},
            lever_m=_BENT_ELBOW,
            tremor_deg=0.002,
        ),
        trunk_scale=1.4,
    ),
    # Climbing pushes the body up each step: slower, more vertical, leaning into the stairs.
    _gait(
        "stairs_up",
        cadence=(1.1, 1.9),
        lean_deg=10.0,
        vertical={2: (0.40, 0.3), 4: (0.06, 1.2)},
        forward={2: (0.08, -1.0)},
        lateral={1: (0.10, 0.0)},
        pulse=None,
        arm_swing_deg=12.0,
        thigh_swing_deg=30.0,
        thigh_pitch_deg=-32.0,
        trunk_scale=0.8,
    ),
    # Descending lands on each step: impact pulses with sharp harmonics, upright or leaning back.
    _gait(
        "stairs_down",
        cadence=(1.3, 2.1),
        lean_deg=-3.0,
        vertical={2: (0.20, 0.0), 6: (0.06, 0.5)},
        forward={2: (0.10, 1.0)},
        lateral={1: (0.12, 0.0)},
        pulse=(0.35, 0.45, 2),
        arm_swing_deg=14.0,
        thigh_swing_deg=24.0,
        thigh_pitch_deg=-20.0,
        trunk_scale=0.9,
    ),
    ActivityModel(
        name="cycling",
        cadence_hz=(0.9, 1.6),  # pedal turns per second
        trunk_pose_deg=(0.0, 30.0, 0.0),
        trunk_pose_spread_deg=8.0,
        trunk_swing={"roll": {1: (2.5, 0.0)}, "pitch": {2: (0.8, 0.0)}},
        linear={"z": {2: (0.05, 0.0)}, "y": {1: (0.04, 0.0)}, "x": {2: (0.03, 1.0)}},
        trunk_sway_deg=0.6,
        fast_band_hz=(8.0, 25.0),
        vibration_g=0.12,  # road
        segments={
            "wrist": Segment(pose_deg=(0.0, -65.0, 0.0), lever_m=(0.45, 0.0, -0.2), sway_deg=1.0),
            "pocket": Segment(
                pose_deg=(0.0, -62.0, 0.0),
                swing={"pitch": {1: (22.0, 0.0)}, "yaw": {1: (4.0, 1.2)}},
                lever_m=_THIGH,
            ),
            "hip": _trunk_mounted(_BELT),
            "chest": _trunk_mounted(_CHEST),
            "upper_arm": Segment(pose_deg=(0.0, -45.0, 0.0), lever_m=_UPPER_ARM, sway_deg=0.8),
        },
    ),
    _gesture(
        "arm_waving",
        cadence=(1.0, 2.5),
        # Hand raised, forearm waving side to side about the elbow (approximated at the shoulder).
        wrist=Segment(
            pose_deg=(0.0, -150.0, 0.0),
            swing={"roll": {1: (25.0, 0.0), 3: (3.0, 0.4)}, "pitch": {2: (5.0, 0.0)}},
            lever_m=_arm(0.35, -150.0),
            tremor_deg=0.002,
        ),
        upper_arm=Segment(
            pose_deg=(0.0, -120.0, 0.0),
            swing={"roll": {1: (10.0, 0.0)}},
            lever_m=_arm(0.15, -120.0),
        ),
    ),
    _gesture(
        "arm_circles",
        cadence=(0.5, 1.5),
        # A straight arm turning about the shoulder: the pitch runs through whole turns.
        wrist=Segment(
            turn=(0.0, -1.0, 0.0),
            swing={"roll": {1: (6.0, 0.0)}},
            lever_m=_arm(0.6),
        ),
        upper_arm=Segment(turn=(0.0, -1.0, 0.0), lever_m=_arm(0.15)),
    ),
    ActivityModel(
        name="jumping",
        cadence_hz=(1.5, 2.5),  # jumps per second
        trunk_pose_deg=(0.0, 5.0, 0.0),
        trunk_swing={"pitch": {1: (6.0, 0.5)}, "roll": {1: (1.0, 0.0)}},
        linear={"x": {1: (0.10, 0.0), 2: (0.05, 0.3)}, "z": {2: (0.10, 0.5)}},
        pulse=(1.0, 0.55, 1),
        trunk_sway_deg=0.5,
        fast_band_hz=(12.0, 20.0),
        vibration_g=0.01,
        segments={
            "wrist": Segment(
                pose_deg=(0.0, -20.0, 0.0),
                swing={"pitch": {1: (15.0, np.pi)}},
                lever_m=_arm(0.6, -20.0),
            ),
            "pocket": Segment(
                pose_deg=(0.0, -15.0, 0.0), swing={"pitch": {1: (18.0, 0.3)}}, lever_m=_THIGH
            ),
            "hip": _trunk_mounted(_BELT),
            "chest": _trunk_mounted(_CHEST),
            "upper_arm": Segment(
                pose_deg=(0.0, -15.0, 0.0),
                swing={"pitch": {1: (30.0, np.pi)}},
                lever_m=_UPPER_ARM,
            ),
        },
    ),
)

ACTIVITIES: dict[str, ActivityModel] = {model.name: model for model in _MODELS}


# ----------------------------------------------------------------------------- rotations


def _axis_rotation(angle: np.ndarray | float, layout: str) -> np.ndarray:
    """Stacked 3x3 rotations; *layout* spells the nine entries (1, 0, c, s, -: minus s)."""
    c, s = np.cos(angle), np.sin(angle)
    entries = {"1": np.ones_like(c), "0": np.zeros_like(c), "c": c, "s": s, "-": -s}
    return np.stack([entries[k] for k in layout], axis=-1).reshape((*np.shape(c), 3, 3))


def rotation_x(angle: np.ndarray | float) -> np.ndarray:
    return _axis_rotation(angle, "1000c-0sc")


def rotation_y(angle: np.ndarray | float) -> np.ndarray:
    return _axis_rotation(angle, "c0s010-0c")


def rotation_z(angle: np.ndarray | float) -> np.ndarray:
    return _axis_rotation(angle, "c-0sc0001")


def euler_zyx(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Rz(yaw) @ Ry(pitch) @ Rx(roll), stacked over the angles' shape."""
    return rotation_z(yaw) @ rotation_y(pitch) @ rotation_x(roll)


def random_rotations(rng: np.random.Generator, m: int) -> np.ndarray:
    """(m, 3, 3) rotations uniform over SO(3) (normalised Gaussian quaternions)."""
    q = rng.standard_normal((m, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(m, 3, 3)


# ----------------------------------------------------------------------------- parameters


@dataclass
class MotionParams:
    """Everything random about m windows (or one stream), drawn once; arrays lead with m."""

    beat_hz: np.ndarray  # (m,) cadence: steps, turns, waves or jumps per second
    phase_hz: np.ndarray  # (m,) motion phase frequency (stride for gait)
    phase0: np.ndarray  # (m,)
    wander: np.ndarray  # (m,) fractional cadence wander
    wander_hz: np.ndarray  # (m,)
    wander_phase: np.ndarray  # (m,)
    harmonic_coef: np.ndarray  # (m, 2H, 9): sin(h p) rows then cos(h p) rows
    turn: np.ndarray  # (m, 6) angle per radian of phase
    sway_hz: np.ndarray  # (m, K)
    sway_coef: np.ndarray  # (m, 2K, 9): sin(2 pi f t) rows then cos rows
    pulse_weight: np.ndarray  # (m,)
    pulse_duty: np.ndarray  # (m,)
    pulse_harmonic: np.ndarray  # (m,)
    pulse_asymmetry: np.ndarray  # (m,)
    trunk_pose: np.ndarray  # (m, 3, 3) world from trunk at rest
    segment_pose: np.ndarray  # (m, 3, 3) trunk from segment at rest
    lever: np.ndarray  # (m, 3) pivot to device in segment axes, metres
    mount: np.ndarray  # (m, 3, 3) segment from sensor: the device's orientation on the body

    def __len__(self) -> int:
        return len(self.beat_hz)


@dataclass
class BodyTraits:
    """The wearer fields the motion depends on, stacked over m windows."""

    placement: np.ndarray  # (m,) int index into PLACEMENTS
    mount: np.ndarray  # (m, 3, 3)
    cadence_scale: np.ndarray  # (m,)
    amplitude_scale: np.ndarray  # (m,)
    asymmetry: np.ndarray  # (m,)
    body_scale: np.ndarray  # (m,)
    gait_style: np.ndarray  # (m, 2, 9, H)


def cadence_for(model: ActivityModel, cadence_scale: np.ndarray | float) -> np.ndarray:
    """Cadence in the activity's range: scale 0.8 is the bottom, 1 the middle, 1.25 the top."""
    if model.cadence_hz is None:
        return np.zeros_like(np.asarray(cadence_scale, dtype=float))
    low, high = model.cadence_hz
    position = np.log(cadence_scale) / (2 * np.log(1.25))  # -0.5 .. 0.5
    return np.sqrt(low * high) * (high / low) ** position


def _harmonic_table(spec: dict[str, Harmonics], keys: tuple[str, ...]) -> np.ndarray:
    """(len(keys), H, 2) amplitude and phase; amplitude still in the table's units."""
    table = np.zeros((len(keys), N_HARMONICS, 2))
    for axis, harmonics in spec.items():
        for h, (amplitude, phase) in harmonics.items():
            table[keys.index(axis), h - 1] = amplitude, phase
    return table


@dataclass(frozen=True)
class _Compiled:
    """An ActivityModel as arrays, one row per placement."""

    trunk: np.ndarray  # (3, H, 2) degrees
    linear: np.ndarray  # (3, H, 2) g
    segment: np.ndarray  # (P, 3, H, 2) degrees
    segment_pose: np.ndarray  # (P, 3) degrees
    turn: np.ndarray  # (P, 3)
    lever: np.ndarray  # (P, 3) trunk axes
    sway: np.ndarray  # (P,) degrees
    tremor: np.ndarray  # (P,) degrees


def _compile(model: ActivityModel) -> _Compiled:
    segments = [model.segments.get(p, Segment()) for p in PLACEMENTS]
    return _Compiled(
        trunk=_harmonic_table(model.trunk_swing, AXES),
        linear=_harmonic_table(model.linear, LINEAR_CHANNELS),
        segment=np.stack([_harmonic_table(s.swing, AXES) for s in segments]),
        segment_pose=np.array([s.pose_deg for s in segments]),
        turn=np.array([s.turn for s in segments]),
        lever=np.array([s.lever_m for s in segments]),
        sway=np.array([s.sway_deg for s in segments]),
        tremor=np.array([s.tremor_deg for s in segments]),
    )


_COMPILED = {name: _compile(model) for name, model in ACTIVITIES.items()}


def draw_params(activity: str, body: BodyTraits, rng: np.random.Generator) -> MotionParams:
    """Random motion parameters for len(body) windows of *activity*, one body per window."""
    model, table = ACTIVITIES[activity], _COMPILED[activity]
    m = len(body.placement)
    place = body.placement

    # Within one person the cadence still varies a little from bout to bout.
    beat = cadence_for(model, body.cadence_scale) * np.exp(rng.normal(0, 0.03, m))
    phase_hz = beat * model.phase_per_beat

    # Amplitude and phase per channel and harmonic: the activity's table, shaped by the
    # person's gait style and a smaller per-window variation.
    amp_deg = np.concatenate(
        [np.broadcast_to(table.trunk, (m, 3, N_HARMONICS, 2)), table.segment[place]], axis=1
    )
    amplitude = np.concatenate(
        [np.radians(amp_deg[..., 0]), np.broadcast_to(table.linear[..., 0] * GRAVITY, (m, 3, 6))],
        axis=1,
    )  # (m, 9, H)
    phase = np.concatenate(
        [amp_deg[..., 1], np.broadcast_to(table.linear[..., 1], (m, 3, N_HARMONICS))], axis=1
    )
    style = body.gait_style
    amplitude = amplitude * np.exp(0.2 * style[:, 0] + 0.08 * rng.standard_normal(amplitude.shape))
    phase = phase + 0.3 * style[:, 1] + 0.1 * rng.standard_normal(phase.shape)
    amplitude *= body.amplitude_scale[:, None, None]
    if model.gait:
        # A limp or a dominant leg: the stride fundamental (odd harmonics) grows with the
        # step harmonic's strength on the linear axes.
        step = amplitude[:, 6:9, 1]
        amplitude[:, 6:9, 0] += 2.0 * body.asymmetry[:, None] * step
    harmonic_coef = np.concatenate(
        [amplitude * np.cos(phase), amplitude * np.sin(phase)], axis=2
    ).transpose(0, 2, 1)  # a sin(hp + c) = a cos c sin(hp) + a sin c cos(hp)

    # Sway, tremor and vibration: shared random frequencies, random mixing per channel.
    k_slow = N_SWAY // 2
    fast_low, fast_high = model.fast_band_hz
    sway_hz = np.concatenate(
        [
            rng.uniform(*SLOW_BAND_HZ, (m, k_slow)),
            rng.uniform(fast_low, fast_high, (m, N_SWAY - k_slow)),
        ],
        axis=1,
    )
    slow_rms = np.zeros((m, N_CHANNELS))
    fast_rms = np.zeros((m, N_CHANNELS))
    slow_rms[:, 0:3] = np.radians(model.trunk_sway_deg)
    slow_rms[:, 3:6] = np.radians(table.sway[place])[:, None]
    slow_rms[:, 6:9] = model.linear_sway_g * GRAVITY
    fast_rms[:, 3:6] = np.radians(table.tremor[place])[:, None]
    fast_rms[:, 6:9] = model.vibration_g * GRAVITY
    # Sinusoid amplitudes ~ N(0, rms * sqrt(2 / K)) per sin and cos term gives about rms overall.
    mix = rng.standard_normal((m, 2, N_SWAY, N_CHANNELS)) * np.sqrt(1.0 / k_slow)
    mix[:, :, :k_slow] *= slow_rms[:, None, None, :]
    mix[:, :, k_slow:] *= fast_rms[:, None, None, :]
    sway_coef = mix.reshape(m, 2 * N_SWAY, N_CHANNELS)

    pulse_weight, pulse_duty, pulse_harmonic = model.pulse or (0.0, 0.5, 1)
    duty = np.clip(pulse_duty * np.exp(rng.normal(0, 0.08, m)), 0.2, 0.9)

    trunk_pose = _trunk_poses(model, m, rng)
    seg_angles = np.radians(table.segment_pose[place] + rng.normal(0, 6.0, (m, 3)))
    segment_pose = euler_zyx(seg_angles[:, 0], seg_angles[:, 1], seg_angles[:, 2])
    base_pose = euler_zyx(*np.radians(table.segment_pose[place]).T)
    # The lever is fixed to the segment: written in trunk axes at the table's pose.
    lever = np.einsum("mji,mj->mi", base_pose, table.lever[place]) * body.body_scale[:, None]

    return MotionParams(
        beat_hz=beat,
        phase_hz=phase_hz,
        phase0=rng.uniform(0, 2 * np.pi, m),
        wander=rng.uniform(0.0, 0.04, m) if model.cadence_hz else np.zeros(m),
        wander_hz=rng.uniform(0.03, 0.15, m),
        wander_phase=rng.uniform(0, 2 * np.pi, m),
        harmonic_coef=harmonic_coef,
        turn=np.concatenate([np.zeros((m, 3)), table.turn[place]], axis=1),
        sway_hz=sway_hz,
        sway_coef=sway_coef,
        # Above one the body would fall faster than gravity between steps.
        pulse_weight=np.minimum(pulse_weight * body.amplitude_scale, 1.0),
        pulse_duty=duty,
        pulse_harmonic=np.full(m, float(pulse_harmonic)),
        pulse_asymmetry=body.asymmetry if model.gait else np.zeros(m),
        trunk_pose=trunk_pose,
        segment_pose=segment_pose,
        lever=lever,
        mount=body.mount,
    )


def _trunk_poses(model: ActivityModel, m: int, rng: np.random.Generator) -> np.ndarray:
    angles = np.radians(
        np.asarray(model.trunk_pose_deg) + rng.normal(0, model.trunk_pose_spread_deg, (m, 3))
    )
    # The heading stays near zero: the gait's accelerations are written in the walking direction.
    pose = euler_zyx(angles[:, 0], angles[:, 1], angles[:, 2])
    if model.lying:
        # Turn about the body's long axis (back, side, front), then lay the body down.
        side = rng.integers(0, 4, m) * (np.pi / 2) + rng.normal(0, 0.25, m)
        down = rotation_y(np.full(m, -np.pi / 2))
        pose = pose @ down @ rotation_z(side)
    return pose


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Kinematics:
    """Clean (noise-free) sensor-frame motion at the requested times; arrays lead with (m, n)."""

    specific_force: np.ndarray  # (m, n, 3) m/s^2, what an ideal accelerometer reads
    angular_velocity: np.ndarray  # (m, n, 3) rad/s, what an ideal gyro reads
    world_from_sensor: np.ndarray | None = None  # (m, n, 3, 3) when asked for

    def rotation(self) -> np.ndarray:
        """``world_from_sensor``, which ``evaluate(..., with_rotation=True)`` fills in."""
        if self.world_from_sensor is None:
            raise ValueError("these kinematics were evaluated without with_rotation=True")
        return self.world_from_sensor


def _sincos_turns(turns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of 2 pi * turns, to about 3e-7 absolute.

    Reducing to one turn in float64 and taking the sine in float32 is some 30 times faster
    than numpy's float64 sine of large arguments (float32 sin/cos are vectorised), and 3e-7
    is far below the 16-bit converter's resolution.
    """
    fraction = (turns - np.floor(turns)).astype(np.float32) * np.float32(2 * np.pi)
    return np.sin(fraction).astype(np.float64), np.cos(fraction).astype(np.float64)


def _basis(turns: np.ndarray, count: int) -> np.ndarray:
    """[sin(2 pi k x), ..., cos(2 pi k x), ...] for k = 1..count, stacked on a last axis."""
    sines, cosines = _sincos_turns(turns[..., None] * np.arange(1, count + 1))
    return np.concatenate([sines, cosines], axis=-1)


def _derivative_coefs(coef: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of the first and second derivative of sum a sin(w x) + b cos(w x)."""
    k = coef.shape[1] // 2
    a, b = coef[:, :k], coef[:, k:]
    w = rates[..., None]
    first = np.concatenate([-w * b, w * a], axis=1)
    second = np.concatenate([-(w**2) * a, -(w**2) * b], axis=1)
    return first, second


@dataclass(frozen=True)
class _Trig:
    """Sines and cosines of (roll, pitch, yaw) angles, computed once and reused."""

    sin: np.ndarray  # (..., 3)
    cos: np.ndarray  # (..., 3)

    @classmethod
    def of(cls, angles: np.ndarray) -> _Trig:
        return cls(*_sincos_turns(angles / (2 * np.pi)))


def _body_rates(
    trig: _Trig, rates: np.ndarray, accels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Body angular velocity and acceleration of Rz(yaw) Ry(pitch) Rx(roll) from Euler rates."""
    sr, sp = trig.sin[..., 0], trig.sin[..., 1]
    cr, cp = trig.cos[..., 0], trig.cos[..., 1]
    d_roll, d_pitch, d_yaw = np.moveaxis(rates, -1, 0)
    dd_roll, dd_pitch, dd_yaw = np.moveaxis(accels, -1, 0)
    omega = np.stack(
        [
            d_roll - d_yaw * sp,
            d_pitch * cr + d_yaw * cp * sr,
            -d_pitch * sr + d_yaw * cp * cr,
        ],
        axis=-1,
    )
    alpha = np.stack(
        [
            dd_roll - dd_yaw * sp - d_yaw * d_pitch * cp,
            dd_pitch * cr
            - d_pitch * d_roll * sr
            + dd_yaw * cp * sr
            - d_yaw * d_pitch * sp * sr
            + d_yaw * cp * cr * d_roll,
            -dd_pitch * sr
            - d_pitch * d_roll * cr
            + dd_yaw * cp * cr
            - d_yaw * d_pitch * sp * cr
            - d_yaw * cp * sr * d_roll,
        ],
        axis=-1,
    )
    return omega, alpha


def _euler_transpose_apply(trig: _Trig, v: np.ndarray) -> np.ndarray:
    """(Rz(yaw) Ry(pitch) Rx(roll))^T v, without building the matrices."""
    sr, sp, sy = np.moveaxis(trig.sin, -1, 0)
    cr, cp, cy = np.moveaxis(trig.cos, -1, 0)
    x, y, z = np.moveaxis(v, -1, 0)
    x, y = cy * x + sy * y, -sy * x + cy * y
    x, z = cp * x - sp * z, sp * x + cp * z
    y, z = cr * y + sr * z, -sr * y + cr * z
    return np.stack([x, y, z], axis=-1)


def _apply_transpose(matrix: np.ndarray, v: np.ndarray) -> np.ndarray:
    """matrix^T v for per-window (m, 3, 3) matrices and (m, n, 3) vectors."""
    return v @ matrix  # row vectors: (v^T M)^T = M^T v


def _pulses(params: MotionParams, phase_turns: np.ndarray, cos_phase: np.ndarray) -> np.ndarray:
    """Vertical ground reaction in units of body weight: half-sines with mean one."""
    duty = params.pulse_duty[:, None]
    step = params.pulse_harmonic[:, None] * phase_turns
    within = step - np.floor(step)
    shape = np.where(
        within < duty, np.pi / (2 * duty) * np.sin(np.pi * within / np.maximum(duty, 1e-9)), 0.0
    )
    # The other foot's step is half a stride later, so cos(phase) flips sign between the two
    # steps: one is stronger than the other and the mean stays one.
    return shape * (1.0 + params.pulse_asymmetry[:, None] * cos_phase)


def evaluate(params: MotionParams, times: np.ndarray, *, with_rotation: bool = False) -> Kinematics:
    """Ideal sensor readings of each window's motion at *times* ((m, n) seconds)."""
    t = np.asarray(times, dtype=np.float64)
    two_pi = 2 * np.pi
    f = params.phase_hz[:, None]
    wander_sin, wander_cos = _sincos_turns(
        params.wander_hz[:, None] * t + params.wander_phase[:, None] / two_pi
    )
    wander = params.wander[:, None]
    safe_wander_hz = np.maximum(params.wander_hz[:, None], 1e-9)
    # The motion phase in turns: a steady cadence, slowly wandering by a few percent.
    phase_turns = (
        f * t + params.phase0[:, None] / two_pi + wander * f / safe_wander_hz * wander_sin / two_pi
    )
    phase = two_pi * phase_turns
    d_phase = two_pi * f * (1.0 + wander * wander_cos)
    dd_phase = -two_pi * f * wander * two_pi * params.wander_hz[:, None] * wander_sin

    harmonic_rates = np.broadcast_to(np.arange(1.0, N_HARMONICS + 1), (len(params), N_HARMONICS))
    first, second = _derivative_coefs(params.harmonic_coef[..., :6], harmonic_rates)
    basis = _basis(phase_turns, N_HARMONICS)
    phase_cos = basis[..., N_HARMONICS]
    by_phase = basis @ np.concatenate([params.harmonic_coef, first, second], axis=2)
    sway_rates = two_pi * params.sway_hz
    sway_first, sway_second = _derivative_coefs(params.sway_coef[..., :6], sway_rates)
    sway_basis = np.concatenate(_sincos_turns(params.sway_hz[:, None, :] * t[..., None]), axis=-1)
    by_time = sway_basis @ np.concatenate([params.sway_coef, sway_first, sway_second], axis=2)

    turn = params.turn[:, None, :]
    dv_dphase = by_phase[..., 9:15] + turn
    angles = by_phase[..., 0:6] + by_time[..., 0:6] + turn * phase[..., None]
    rates = d_phase[..., None] * dv_dphase + by_time[..., 9:15]
    accels = (
        dd_phase[..., None] * dv_dphase
        + d_phase[..., None] ** 2 * by_phase[..., 15:21]
        + by_time[..., 15:21]
    )
    linear = by_phase[..., 6:9] + by_time[..., 6:9]
    if np.any(params.pulse_weight > 0):
        weight = params.pulse_weight[:, None]
        linear[..., 2] += weight * GRAVITY * (_pulses(params, phase_turns, phase_cos) - 1.0)

    trunk_trig, segment_trig = _Trig.of(angles[..., 0:3]), _Trig.of(angles[..., 3:6])
    omega_trunk, alpha_trunk = _body_rates(trunk_trig, rates[..., 0:3], accels[..., 0:3])
    omega_rel, alpha_rel = _body_rates(segment_trig, rates[..., 3:6], accels[..., 3:6])

    def trunk_to_segment(v: np.ndarray) -> np.ndarray:
        return _euler_transpose_apply(segment_trig, _apply_transpose(params.segment_pose, v))

    # The trunk's pivot: specific force = a - g, in world, then down the chain of frames.
    linear[..., 2] += GRAVITY
    force_trunk = _euler_transpose_apply(trunk_trig, _apply_transpose(params.trunk_pose, linear))
    trunk_omega_in_segment = trunk_to_segment(omega_trunk)
    omega = trunk_omega_in_segment + omega_rel
    alpha = trunk_to_segment(alpha_trunk) - np.cross(omega_rel, trunk_omega_in_segment) + alpha_rel
    lever = np.broadcast_to(params.lever[:, None, :], omega.shape)
    force = (
        trunk_to_segment(force_trunk)
        + np.cross(alpha, lever)
        + np.cross(omega, np.cross(omega, lever))
    )
    rotation = None
    if with_rotation:
        rotation = (
            params.trunk_pose[:, None]
            @ euler_zyx(*np.moveaxis(angles[..., 0:3], -1, 0))
            @ params.segment_pose[:, None]
            @ euler_zyx(*np.moveaxis(angles[..., 3:6], -1, 0))
            @ params.mount[:, None]
        )
    return Kinematics(
        specific_force=_apply_transpose(params.mount, force),
        angular_velocity=_apply_transpose(params.mount, omega),
        world_from_sensor=rotation,
    )
