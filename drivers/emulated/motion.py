"""Motion input for the emulated wearable: synthetic wearers and activities, recorded traces.

Every source here is a :class:`MotionSource`: give it sample times, get back what the IMU
would measure at those instants, ``ax ay az`` [m/s^2, gravity included] and ``gx gy gz``
[rad/s], in the sensor's own frame. The register-level MPU6050 emulator pulls from one;
the artifact builder calls :func:`make_windows`; a scenario switches an :class:`ActivityStream`
per activity (``odar.harness.scenario.SwitchableMotion``).

The physics (bodies, segments, gait) lives in :mod:`odar.drivers.emulated.activities`; this
module adds the wearer (placement, how the device sits, gait, sensor errors) and the sensor:
white noise from the datasheet's noise density over the filter's bandwidth, a per-axis bias,
and saturation plus 16-bit quantisation at the full-scale range. For the register emulator,
which models its own converter, use ``wearer.without_sensor_errors()``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from odar.drivers.emulated.activities import (
    ACTIVITIES,
    GRAVITY,
    N_CHANNELS,
    N_HARMONICS,
    PLACEMENTS,
    BodyTraits,
    Kinematics,
    MotionParams,
    cadence_for,
    draw_params,
    evaluate,
    random_rotations,
)
from odar.drivers.sensor_settings import ACCEL_RANGES_G, DLPF_BANDWIDTH_HZ, GYRO_RANGES_DPS
from odar.errors import EmulationError, TraceError

__all__ = [
    "ACTIVITIES",
    "PLACEMENTS",
    "ActivityStream",
    "MotionSource",
    "TraceReplay",
    "Wearer",
    "make_windows",
    "synthesize",
]

#: MPU6050 datasheet: accelerometer noise 400 ug/sqrt(Hz), gyro 0.005 deg/s/sqrt(Hz)
ACCEL_NOISE_DENSITY = 400e-6 * GRAVITY
GYRO_NOISE_DENSITY = np.radians(0.005)
#: default filter: DLPF_CFG 3 (44 Hz accelerometer bandwidth), as in SensorSettings
DEFAULT_BANDWIDTH_HZ = 44.0
_INT16_STEPS = 32768  # full scale maps to +-32768 LSB


class MotionSource(Protocol):
    """Physical motion sampled at given instants."""

    def read(self, times: np.ndarray) -> np.ndarray:
        """(n, 6) float64 ax ay az [m/s^2, gravity included], gx gy gz [rad/s] at *times*.

        *times*: (n,) float64 seconds, increasing across calls.
        """
        ...


# ----------------------------------------------------------------------------- wearers


def _identity() -> np.ndarray:
    return np.eye(3)


def _no_style() -> np.ndarray:
    return np.zeros((2, N_CHANNELS, N_HARMONICS))


def _zeros3() -> np.ndarray:
    return np.zeros(3)


@dataclass(frozen=True, eq=False)
class Wearer:
    """A person with a device on a body segment, and that device's sensor errors.

    ``orientation`` maps sensor axes into the segment's axes (x forward, y left, z up when
    standing with arms hanging). ``cadence_scale`` places the person in each activity's
    cadence range: 0.8 is the bottom, 1.0 the middle, 1.25 the top (see ``cadence_hz``).
    ``gait_style`` (2, 9, 6) perturbs the log-amplitudes and phases of the gait harmonics, so
    that two people's walks have different shapes. A ``None`` range means no saturation.
    """

    placement: str = "wrist"
    orientation: np.ndarray = field(default_factory=_identity)
    cadence_scale: float = 1.0
    amplitude_scale: float = 1.0
    asymmetry: float = 0.0
    body_scale: float = 1.0
    gait_style: np.ndarray = field(default_factory=_no_style)
    accel_noise_density: float = ACCEL_NOISE_DENSITY  # m/s^2/sqrt(Hz)
    gyro_noise_density: float = GYRO_NOISE_DENSITY  # rad/s/sqrt(Hz)
    noise_bandwidth_hz: float = DEFAULT_BANDWIDTH_HZ
    accel_bias: np.ndarray = field(default_factory=_zeros3)  # m/s^2
    gyro_bias: np.ndarray = field(default_factory=_zeros3)  # rad/s
    accel_range_g: int | None = None
    gyro_range_dps: int | None = None

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise EmulationError(
                f"wearer placement {self.placement!r} is not one of {', '.join(PLACEMENTS)}"
            )
        rotation = np.asarray(self.orientation, dtype=np.float64)
        if rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6):
            raise EmulationError("wearer orientation is not a 3x3 rotation matrix")
        if np.linalg.det(rotation) < 0:
            raise EmulationError("wearer orientation is a reflection (determinant -1)")
        if self.accel_range_g is not None and self.accel_range_g not in ACCEL_RANGES_G:
            raise EmulationError(f"wearer accel_range_g {self.accel_range_g!r} is not 2/4/8/16")
        if self.gyro_range_dps is not None and self.gyro_range_dps not in GYRO_RANGES_DPS:
            raise EmulationError(
                f"wearer gyro_range_dps {self.gyro_range_dps!r} is not 250/500/1000/2000"
            )
        object.__setattr__(self, "orientation", rotation)

    @classmethod
    def random(cls, rng: np.random.Generator, placements: Sequence[str] | None = None) -> Wearer:
        """A random person, placement, device orientation (uniform over rotations) and sensor."""
        return _Population.draw(rng, 1, placements).wearer(0)

    def cadence_hz(self, activity: str) -> float:
        """This person's typical cadence for *activity* (0 for still activities)."""
        return float(cadence_for(_model(activity), self.cadence_scale))

    def without_sensor_errors(self) -> Wearer:
        """The same body and mount with an ideal sensor: no noise, bias or saturation."""
        return dataclasses.replace(
            self,
            accel_noise_density=0.0,
            gyro_noise_density=0.0,
            accel_bias=np.zeros(3),
            gyro_bias=np.zeros(3),
            accel_range_g=None,
            gyro_range_dps=None,
        )


@dataclass
class _Population:
    """Random wearers as columns of arrays: cheap to draw by the thousand."""

    placements: tuple[str, ...]
    placement: np.ndarray  # (m,) index into placements
    orientation: np.ndarray  # (m, 3, 3)
    cadence_scale: np.ndarray
    amplitude_scale: np.ndarray
    asymmetry: np.ndarray
    body_scale: np.ndarray
    gait_style: np.ndarray  # (m, 2, 9, H)
    accel_noise_density: np.ndarray
    gyro_noise_density: np.ndarray
    noise_bandwidth_hz: np.ndarray
    accel_bias: np.ndarray  # (m, 3)
    gyro_bias: np.ndarray  # (m, 3)
    accel_range_g: np.ndarray
    gyro_range_dps: np.ndarray

    @classmethod
    def draw(
        cls, rng: np.random.Generator, m: int, placements: Sequence[str] | None
    ) -> _Population:
        choices = tuple(placements or PLACEMENTS)
        for placement in choices:
            if placement not in PLACEMENTS:
                raise EmulationError(
                    f"placement {placement!r} is not one of {', '.join(PLACEMENTS)}"
                )
        bandwidths = [float(bw) for bw, _ in DLPF_BANDWIDTH_HZ.values() if bw >= 20]
        return cls(
            placements=choices,
            placement=rng.integers(0, len(choices), m),
            orientation=random_rotations(rng, m),
            cadence_scale=np.exp(rng.uniform(np.log(0.8), np.log(1.25), m)),
            amplitude_scale=np.clip(np.exp(rng.normal(0.0, 0.2, m)), 0.6, 1.6),
            asymmetry=rng.uniform(0.0, 0.15, m),
            body_scale=rng.uniform(0.85, 1.15, m),
            gait_style=rng.standard_normal((m, 2, N_CHANNELS, N_HARMONICS)),
            # Cheap modules are noisier than the datasheet; any DLPF setting but 5/10 Hz.
            accel_noise_density=ACCEL_NOISE_DENSITY * rng.uniform(0.7, 2.0, m),
            gyro_noise_density=GYRO_NOISE_DENSITY * rng.uniform(0.7, 2.0, m),
            noise_bandwidth_hz=rng.choice(bandwidths, m),
            # Zero-g offset after factory trim (datasheet: +-50 mg x/y, +-80 mg z); a gyro
            # offset of a few deg/s, as a rough calibration leaves it.
            accel_bias=rng.uniform(-0.5, 0.5, (m, 3)),
            gyro_bias=np.radians(rng.uniform(-2.0, 2.0, (m, 3))),
            accel_range_g=rng.choice(sorted(ACCEL_RANGES_G), m),
            gyro_range_dps=rng.choice(sorted(GYRO_RANGES_DPS), m),
        )

    def body(self) -> BodyTraits:
        return BodyTraits(
            placement=np.array([PLACEMENTS.index(p) for p in self.placements])[self.placement],
            mount=self.orientation,
            cadence_scale=self.cadence_scale,
            amplitude_scale=self.amplitude_scale,
            asymmetry=self.asymmetry,
            body_scale=self.body_scale,
            gait_style=self.gait_style,
        )

    def sensor(self) -> _SensorErrors:
        return _SensorErrors.from_columns(
            self.accel_noise_density,
            self.gyro_noise_density,
            self.noise_bandwidth_hz,
            np.concatenate([self.accel_bias, self.gyro_bias], axis=1),
            self.accel_range_g.astype(float),
            self.gyro_range_dps.astype(float),
        )

    def wearer(self, i: int) -> Wearer:
        return Wearer(
            placement=self.placements[self.placement[i]],
            orientation=self.orientation[i],
            cadence_scale=float(self.cadence_scale[i]),
            amplitude_scale=float(self.amplitude_scale[i]),
            asymmetry=float(self.asymmetry[i]),
            body_scale=float(self.body_scale[i]),
            gait_style=self.gait_style[i],
            accel_noise_density=float(self.accel_noise_density[i]),
            gyro_noise_density=float(self.gyro_noise_density[i]),
            noise_bandwidth_hz=float(self.noise_bandwidth_hz[i]),
            accel_bias=self.accel_bias[i],
            gyro_bias=self.gyro_bias[i],
            accel_range_g=int(self.accel_range_g[i]),
            gyro_range_dps=int(self.gyro_range_dps[i]),
        )


def _model(activity: str):
    try:
        return ACTIVITIES[activity]
    except KeyError:
        raise EmulationError(
            f"activity {activity!r} is not one of {', '.join(ACTIVITIES)}"
        ) from None


def _body_traits(wearers: Sequence[Wearer]) -> BodyTraits:
    return BodyTraits(
        placement=np.array([PLACEMENTS.index(w.placement) for w in wearers]),
        mount=np.stack([w.orientation for w in wearers]),
        cadence_scale=np.array([w.cadence_scale for w in wearers], dtype=float),
        amplitude_scale=np.array([w.amplitude_scale for w in wearers], dtype=float),
        asymmetry=np.array([w.asymmetry for w in wearers], dtype=float),
        body_scale=np.array([w.body_scale for w in wearers], dtype=float),
        gait_style=np.stack([w.gait_style for w in wearers]),
    )


# ----------------------------------------------------------------------------- the sensor


@dataclass
class _SensorErrors:
    """Per-window sensor error model, arrays lead with m."""

    noise_std: np.ndarray  # (m, 6)
    bias: np.ndarray  # (m, 6)
    full_scale: np.ndarray  # (m, 6), inf when not saturating

    @classmethod
    def from_columns(
        cls,
        accel_density: np.ndarray,
        gyro_density: np.ndarray,
        bandwidth_hz: np.ndarray,
        bias: np.ndarray,
        accel_range_g: np.ndarray,
        gyro_range_dps: np.ndarray,
    ) -> _SensorErrors:
        """Ranges of 0 (or NaN) mean no saturation."""
        # White noise sampled through the filter keeps the variance density^2 * bandwidth
        # whatever the output rate: a slower rate aliases the noise instead of removing it.
        root_bw = np.sqrt(bandwidth_hz)
        accel_fs = np.where(accel_range_g > 0, accel_range_g * GRAVITY, np.inf)
        gyro_fs = np.where(gyro_range_dps > 0, np.radians(gyro_range_dps), np.inf)
        return cls(
            noise_std=np.repeat(
                np.stack([accel_density, gyro_density], 1) * root_bw[:, None], 3, 1
            ),
            bias=bias,
            full_scale=np.repeat(np.stack([accel_fs, gyro_fs], axis=1), 3, axis=1),
        )

    @classmethod
    def of(cls, wearers: Sequence[Wearer]) -> _SensorErrors:
        return cls.from_columns(
            np.array([w.accel_noise_density for w in wearers], dtype=float),
            np.array([w.gyro_noise_density for w in wearers], dtype=float),
            np.array([w.noise_bandwidth_hz for w in wearers], dtype=float),
            np.stack([np.concatenate([w.accel_bias, w.gyro_bias]) for w in wearers]),
            np.array([w.accel_range_g or 0 for w in wearers], dtype=float),
            np.array([w.gyro_range_dps or 0 for w in wearers], dtype=float),
        )

    def take(self, rows: slice) -> _SensorErrors:
        return _SensorErrors(self.noise_std[rows], self.bias[rows], self.full_scale[rows])

    def measure(self, clean: Kinematics, rng: np.random.Generator) -> np.ndarray:
        """(m, n, 6) readings: truth + bias + noise, saturated and quantised at full scale."""
        truth = np.concatenate([clean.specific_force, clean.angular_velocity], axis=-1)
        # Always draw the noise, so the random stream does not depend on who is noisy.
        noise = rng.standard_normal(truth.shape) * self.noise_std[:, None, :]
        readings = truth + self.bias[:, None, :] + noise
        full = self.full_scale[:, None, :]
        if np.all(np.isinf(full)):
            return readings
        lsb = np.where(np.isinf(full), 0.0, full / _INT16_STEPS)
        codes = np.clip(
            np.round(readings / np.where(lsb > 0, lsb, 1.0)), -_INT16_STEPS, _INT16_STEPS - 1
        )
        return np.where(lsb > 0, codes * lsb, readings)


def _take_params(params: MotionParams, rows: slice) -> MotionParams:
    return MotionParams(
        **{f.name: getattr(params, f.name)[rows] for f in dataclasses.fields(params)}
    )


# ----------------------------------------------------------------------------- sources


def synthesize(
    activity: str,
    seconds: float,
    rate_hz: float,
    wearer: Wearer,
    rng: np.random.Generator,
    *,
    jitter: float = 0.0,
) -> np.ndarray:
    """(round(seconds * rate_hz), 6) float64 readings of *wearer* doing *activity*.

    Sample k is taken at k / rate_hz plus Gaussian timing jitter of *jitter* sample periods
    (the readings stay labelled with their nominal times, as a driver would deliver them).
    """
    _model(activity)
    params = draw_params(activity, _body_traits([wearer]), rng)
    n = round(seconds * rate_hz)
    times = np.arange(n) / rate_hz
    if jitter:
        times = times + rng.normal(0.0, jitter / rate_hz, n)
    return _SensorErrors.of([wearer]).measure(evaluate(params, times[None]), rng)[0]


def _as_times(times: np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise EmulationError(f"motion times must be a 1-D array of seconds, got shape {t.shape}")
    return t


class ActivityStream:
    """One activity done forever by *wearer*: a MotionSource continuous across read() calls.

    Everything but the sensor noise is a closed-form function of absolute time, so reading
    [0, 1) then [1, 2) gives what reading [0, 2) gives (up to the noise).
    """

    def __init__(self, activity: str, wearer: Wearer, seed: int | None = None) -> None:
        _model(activity)
        motion_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
        self.activity = activity
        self.wearer = wearer
        self._params = draw_params(
            activity, _body_traits([wearer]), np.random.default_rng(motion_seed)
        )
        self._sensor = _SensorErrors.of([wearer])
        self._noise = np.random.default_rng(noise_seed)

    @property
    def cadence_hz(self) -> float:
        """The cadence of this bout (the wearer's typical cadence, varied a few percent)."""
        return float(self._params.beat_hz[0])

    def kinematics(self, times: np.ndarray) -> Kinematics:
        """The noise-free truth at *times*, with the world-from-sensor rotation; (n, ...)."""
        kin = evaluate(self._params, _as_times(times)[None], with_rotation=True)
        return Kinematics(kin.specific_force[0], kin.angular_velocity[0], kin.rotation()[0])

    def read(self, times: np.ndarray) -> np.ndarray:
        clean = evaluate(self._params, _as_times(times)[None])
        return self._sensor.measure(clean, self._noise)[0]


# ----------------------------------------------------------------------------- traces

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_ACCEL_UNITS = {"ms2": 1.0, "mps2": 1.0, "g": GRAVITY}
_GYRO_UNITS = {"rads": 1.0, "radps": 1.0, "dps": float(np.radians(1.0))}
_CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz")
_COLUMN = re.compile(r"^(t|time|timestamp|ax|ay|az|gx|gy|gz)(?:_([a-z0-9]+))?$")


def _column_scale(name: str, unit: str | None, path: Path) -> float:
    if name in ("t", "time", "timestamp"):
        table, default = _TIME_UNITS, "s"
    elif name.startswith("a"):
        table, default = _ACCEL_UNITS, "ms2"
    else:
        table, default = _GYRO_UNITS, "rads"
    unit = unit or default
    if unit not in table:
        raise TraceError(
            f"{path}: column {name}_{unit} has unknown unit {unit!r} "
            f"(use one of {', '.join(table)})"
        )
    return table[unit]


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(encoding="utf-8") as handle:
            lines = [line for line in handle if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"{path}: cannot read the trace: {error}") from error
    if not lines:
        raise TraceError(f"{path}: empty trace, no header line")
    header = [name.strip().lower() for name in lines[0].split(",")]
    columns: dict[str, tuple[int, float]] = {}
    for position, raw in enumerate(header):
        match = _COLUMN.match(raw)
        if not match:
            continue  # labels and other extras are allowed and ignored
        name = "t" if match[1] in ("time", "timestamp") else match[1]
        if name in columns:
            raise TraceError(f"{path}: column {name!r} appears twice in the header")
        columns[name] = position, _column_scale(match[1], match[2], path)
    missing = [name for name in ("t", *_CHANNELS) if name not in columns]
    if missing:
        raise TraceError(
            f"{path}: header lacks column(s) {', '.join(missing)} "
            f"(found {', '.join(header)}; expected t, ax, ay, az, gx, gy, gz)"
        )
    wanted = [columns[name][0] for name in ("t", *_CHANNELS)]
    rows = np.empty((len(lines) - 1, 7))
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        try:
            rows[number - 2] = [float(cells[i]) for i in wanted]
        except (ValueError, IndexError):
            raise TraceError(
                f"{path}: data line {number} is not {len(header)} numeric columns: {line.strip()!r}"
            ) from None
    scales = np.array([columns[name][1] for name in ("t", *_CHANNELS)])
    rows *= scales
    return rows[:, 0], rows[:, 1:]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("t", "samples") if key not in archive.files]
            if missing:
                raise TraceError(
                    f"{path}: NPZ lacks array(s) {', '.join(missing)} "
                    f"(has {', '.join(archive.files) or 'none'}; expected t and samples)"
                )
            times, samples = archive["t"], archive["samples"]
    except TraceError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise TraceError(f"{path}: cannot read the NPZ trace: {error}") from error
    if times.ndim != 1 or samples.ndim != 2 or samples.shape != (len(times), 6):
        raise TraceError(
            f"{path}: t has shape {times.shape} and samples {samples.shape}; "
            "expected t (n,) and samples (n, 6)"
        )
    try:
        return times.astype(np.float64), samples.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise TraceError(f"{path}: t or samples is not numeric: {error}") from error


class TraceReplay:
    """A recorded trace replayed as a MotionSource, linearly interpolated to any times.

    Formats, chosen by suffix:

    * ``.csv``: comma-separated, one header line, ``#`` comments allowed. Columns (any order,
      extra columns ignored): time as ``t``, ``time`` or ``timestamp``, then ``ax ay az gx gy
      gz``. A suffix states the unit: time ``_s`` (default) ``_ms`` ``_us`` ``_ns``;
      acceleration ``_ms2`` (default, m/s^2) or ``_g``; rotation ``_rads`` (default) or
      ``_dps``. Example header: ``timestamp_ms,ax_g,ay_g,az_g,gx_dps,gy_dps,gz_dps``.
    * ``.npz``: arrays ``t`` (n,) seconds and ``samples`` (n, 6) in SI units.

    The trace's first sample is time 0. With ``loop`` it repeats every ``duration`` (the
    recording plus one sample period, interpolating from the last sample back to the first);
    without, times outside the recording hold the first or last sample.
    """

    def __init__(self, path: str | Path, *, loop: bool = True) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            times, samples = _read_csv(self.path)
        elif suffix == ".npz":
            times, samples = _read_npz(self.path)
        else:
            raise TraceError(f"{self.path}: unknown trace format {suffix!r} (use .csv or .npz)")
        if len(times) < 2:
            raise TraceError(f"{self.path}: a trace needs at least 2 samples, has {len(times)}")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(samples))):
            raise TraceError(f"{self.path}: the trace contains NaN or infinite values")
        steps = np.diff(times)
        if np.any(steps <= 0):
            where = int(np.argmax(steps <= 0)) + 1
            raise TraceError(
                f"{self.path}: time does not increase at sample {where} "
                f"({times[where - 1]!r} then {times[where]!r})"
            )
        self.loop = loop
        self.period = float(np.median(steps))
        self.times = times - times[0]
        self.samples = samples
        self.duration = float(self.times[-1] + (self.period if loop else 0.0))
        if loop:
            self._grid = np.append(self.times, self.duration)
            self._values = np.vstack([samples, samples[:1]])
        else:
            self._grid, self._values = self.times, samples

    @property
    def rate_hz(self) -> float:
        """The recording's typical sample rate."""
        return 1.0 / self.period

    def read(self, times: np.ndarray) -> np.ndarray:
        t = _as_times(times)
        if self.loop:
            t = np.mod(t, self.duration)
        return np.stack([np.interp(t, self._grid, self._values[:, c]) for c in range(6)], axis=1)


# ----------------------------------------------------------------------------- training data


def make_windows(
    activities: Sequence[str],
    n_per_activity: int,
    rate_hz: float,
    window: int = 400,
    rng: np.random.Generator | int | None = None,
    wearers: Sequence[Wearer] | None = None,
    *,
    placements: Sequence[str] | None = None,
    jitter: float = 0.05,
    rate_error: float = 0.01,
    batch: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled windows for training: (X (m, window, 6) float32, y (m,) int64).

    ``y`` indexes *activities*; the windows come grouped by activity in that order (shuffle
    them yourself). Each window has its own wearer: a fresh random one (placements limited to
    *placements* if given), or one picked at random from *wearers* (to hold people out). Each
    window's clock runs fast or slow by up to *rate_error* and each sample time jitters by
    *jitter* periods; readings carry the wearer's noise, bias, range and quantisation.
    *batch* only bounds memory: the result does not depend on it.
    """
    if n_per_activity < 0 or window < 1 or not rate_hz > 0:
        raise EmulationError(
            f"make_windows: n_per_activity {n_per_activity!r}, window {window!r} and "
            f"rate_hz {rate_hz!r} must be >= 0, >= 1 and > 0"
        )
    for activity in activities:
        _model(activity)
    rng = np.random.default_rng(rng)
    total = len(activities) * n_per_activity
    windows = np.empty((total, window, 6), dtype=np.float32)
    labels = np.repeat(np.arange(len(activities), dtype=np.int64), n_per_activity)
    ticks = np.arange(window, dtype=np.float64) / rate_hz
    for label, activity in enumerate(activities):
        if n_per_activity == 0:
            continue
        if wearers:
            people = [wearers[i] for i in rng.integers(0, len(wearers), n_per_activity)]
            body, sensor = _body_traits(people), _SensorErrors.of(people)
        else:
            population = _Population.draw(rng, n_per_activity, placements)
            body, sensor = population.body(), population.sensor()
        params = draw_params(activity, body, rng)
        starts = rng.uniform(0.0, 600.0, n_per_activity)
        clock = 1.0 + rng.uniform(-rate_error, rate_error, n_per_activity)
        # Separate streams for timing and noise, consumed in order, so that any batch size
        # draws the same numbers for the same window.
        timing_rng, noise_rng = rng.spawn(2)
        offset = label * n_per_activity
        for first in range(0, n_per_activity, batch):
            rows = slice(first, min(first + batch, n_per_activity))
            count = rows.stop - rows.start
            times = starts[rows, None] + ticks * clock[rows, None]
            if jitter:
                times = times + timing_rng.normal(0.0, jitter / rate_hz, (count, window))
            clean = evaluate(_take_params(params, rows), times)
            readings = sensor.take(rows).measure(clean, noise_rng)
            windows[offset + rows.start : offset + rows.stop] = readings
    return windows, labels
