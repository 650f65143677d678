"""Physics and API checks of the emulated wearer's motion input (drivers/emulated/motion.py)."""

from __future__ import annotations

import numpy as np
import pytest

from odar.drivers.emulated.activities import BodyTraits, draw_params, evaluate, random_rotations
from odar.drivers.emulated.motion import (
    ACCEL_NOISE_DENSITY,
    ACTIVITIES,
    PLACEMENTS,
    ActivityStream,
    TraceReplay,
    Wearer,
    make_windows,
    synthesize,
)
from odar.errors import EmulationError, OdarError, TraceError

G = 9.80665
STILL = ("sitting", "standing", "lying")
RATE = 100.0


def ideal(placement: str, orientation: np.ndarray | None = None, **kw: float) -> Wearer:
    wearer = Wearer(
        placement=placement, orientation=np.eye(3) if orientation is None else orientation, **kw
    )
    return wearer.without_sensor_errors()


def seconds(duration: float, rate: float = RATE, start: float = 0.0) -> np.ndarray:
    return start + np.arange(round(duration * rate)) / rate


def rodrigues(vector: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(vector)
    if angle < 1e-15:
        return np.eye(3)
    x, y, z = vector / angle
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = (np.trace(a.T @ b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cosine, -1, 1))))


def dominant_hz(signal: np.ndarray, rate: float, low: float = 0.5, high: float = 6.0) -> float:
    spectrum = np.abs(np.fft.rfft((signal - signal.mean()) * np.hanning(len(signal))))
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(spectrum[band])])


# ----------------------------------------------------------------------------- physics


@pytest.mark.parametrize("activity", STILL)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_still_device_measures_gravity_and_no_rotation(activity: str, placement: str) -> None:
    orientation = random_rotations(np.random.default_rng(7), 1)[0]
    data = ActivityStream(activity, ideal(placement, orientation), seed=1).read(seconds(20))
    magnitude = np.linalg.norm(data[:, :3], axis=1)
    assert np.abs(magnitude - G).max() < 0.05 * G
    assert abs(magnitude.mean() - G) < 0.01 * G
    assert np.sqrt(np.mean(data[:, 3:] ** 2)) < np.radians(5.0)


def test_still_noise_matches_the_datasheet_density() -> None:
    wearer = Wearer(placement="hip", noise_bandwidth_hz=44.0)
    data = ActivityStream("standing", wearer, seed=2).read(seconds(60))
    # Differences remove the slow sway and leave twice the white-noise variance.
    measured = np.std(np.diff(data[:, :3], axis=0), axis=0) / np.sqrt(2)
    expected = ACCEL_NOISE_DENSITY * np.sqrt(44.0)
    np.testing.assert_allclose(measured, expected, rtol=0.15)
    magnitude = np.linalg.norm(data[:, :3], axis=1)
    assert abs(magnitude.mean() - G) < 0.02


@pytest.mark.parametrize("activity", ["standing", "walking", "arm_circles"])
def test_device_orientation_rotates_the_readings_and_keeps_magnitudes(activity: str) -> None:
    rotation = random_rotations(np.random.default_rng(3), 1)[0]
    times = seconds(5)
    plain = ActivityStream(activity, ideal("wrist"), seed=4).read(times)
    turned = ActivityStream(activity, ideal("wrist", rotation), seed=4).read(times)
    for axes in (slice(0, 3), slice(3, 6)):
        np.testing.assert_allclose(
            np.linalg.norm(turned[:, axes], axis=1), np.linalg.norm(plain[:, axes], axis=1)
        )
        np.testing.assert_allclose(turned[:, axes], plain[:, axes] @ rotation, atol=1e-9)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_walking_dominant_frequency_is_the_cadence(placement: str) -> None:
    rng = np.random.default_rng(PLACEMENTS.index(placement))
    wearer = ideal(placement, random_rotations(rng, 1)[0], cadence_scale=rng.uniform(0.8, 1.25))
    stream = ActivityStream("walking", wearer, seed=5)
    data = stream.read(seconds(60))
    peak = dominant_hz(np.linalg.norm(data[:, :3], axis=1), RATE)
    assert 1.4 * 0.9 <= stream.cadence_hz <= 2.4 * 1.1
    if placement == "wrist":
        # A hanging arm swings once per stride: its pendulum can outweigh the steps' bounce.
        assert min(abs(peak - stream.cadence_hz), abs(2 * peak - stream.cadence_hz)) < 0.06
    else:
        assert abs(peak - stream.cadence_hz) < 0.06, (peak, stream.cadence_hz)
    assert abs(stream.cadence_hz / wearer.cadence_hz("walking") - 1) < 0.12


def test_cadence_scale_spans_each_activity_range() -> None:
    for activity, (low, high) in [("walking", (1.4, 2.4)), ("running", (2.4, 3.2))]:
        assert Wearer(cadence_scale=0.8).cadence_hz(activity) == pytest.approx(low)
        assert Wearer(cadence_scale=1.25).cadence_hz(activity) == pytest.approx(high)
    person = Wearer(cadence_scale=1.1)
    assert person.cadence_hz("stairs_up") < person.cadence_hz("walking")
    assert person.cadence_hz("walking") < person.cadence_hz("running")
    assert person.cadence_hz("sitting") == 0.0


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_running_shakes_more_than_walking(placement: str) -> None:
    wearer = ideal(placement)
    times = seconds(30)
    variances = {
        activity: np.var(
            np.linalg.norm(ActivityStream(activity, wearer, 6).read(times)[:, :3], axis=1)
        )
        for activity in ("walking", "running")
    }
    assert variances["running"] > 2.0 * variances["walking"]


def test_stairs_are_more_vertical_than_walking_and_down_lands_harder() -> None:
    wearer = ideal("hip")  # identity mount: sensor z is the trunk's up axis
    times = seconds(60)
    shares, peaks = {}, {}
    for activity in ("walking", "stairs_up", "stairs_down"):
        data = ActivityStream(activity, wearer, seed=8).read(times)
        variance = data[:, :3].var(axis=0)
        shares[activity] = variance[2] / variance.sum()
        peaks[activity] = data[:, 2].max()
    assert shares["stairs_up"] > shares["walking"] + 0.1
    assert shares["stairs_down"] > shares["walking"]
    assert peaks["stairs_down"] > peaks["stairs_up"] > peaks["walking"]


@pytest.mark.parametrize(
    ("activity", "placement"),
    [
        ("walking", "wrist"),
        ("running", "pocket"),
        ("cycling", "pocket"),
        ("arm_circles", "wrist"),
        ("lying", "chest"),
    ],
)
def test_gyro_integrates_to_the_orientation(activity: str, placement: str) -> None:
    rate = 2000.0
    times = seconds(2.0, rate, start=3.0)
    rotation = random_rotations(np.random.default_rng(9), 1)[0]
    kin = ActivityStream(activity, ideal(placement, rotation), seed=10).kinematics(times)
    orientation = kin.world_from_sensor[0]
    worst = 0.0
    for k in range(len(times) - 1):
        # Midpoint rule: the mean body rate over the step, applied in the body frame.
        step = 0.5 * (kin.angular_velocity[k] + kin.angular_velocity[k + 1]) / rate
        orientation = orientation @ rodrigues(step)
        worst = max(worst, rotation_angle_deg(orientation, kin.world_from_sensor[k + 1]))
    # Exact rates leave only the integrator's error (about 1e-4 deg); a wrong term in the
    # Euler-rate formulas leaves several hundredths of a degree or more.
    assert worst < 0.005
    travelled = rotation_angle_deg(kin.world_from_sensor[0], kin.world_from_sensor[-1])
    assert travelled > (0.3 if activity == "lying" else 5.0)  # the segment really turned


def test_lever_arm_acceleration_is_the_second_derivative_of_position() -> None:
    # With the pivot held still, the device moves on a sphere round the shoulder: its
    # acceleration must be the second derivative of R(t) @ lever.
    wearer = ideal("wrist", random_rotations(np.random.default_rng(25), 1)[0])
    body = BodyTraits(
        placement=np.array([PLACEMENTS.index("wrist")]),
        mount=wearer.orientation[None],
        cadence_scale=np.ones(1),
        amplitude_scale=np.ones(1),
        asymmetry=np.zeros(1),
        body_scale=np.ones(1),
        gait_style=wearer.gait_style[None],
    )
    params = draw_params("walking", body, np.random.default_rng(26))
    params.harmonic_coef[..., 6:9] = 0.0
    params.sway_coef[..., 6:9] = 0.0
    params.pulse_weight[:] = 0.0
    # Slow enough that float32 trig noise (3e-7) does not swamp the second difference.
    rate = 250.0
    times = seconds(1.5, rate, start=2.0)
    kin = evaluate(params, times[None], with_rotation=True)
    world_from_sensor = kin.world_from_sensor[0]
    lever_in_sensor = wearer.orientation.T @ params.lever[0]
    position = world_from_sensor @ lever_in_sensor
    acceleration = (position[2:] - 2 * position[1:-1] + position[:-2]) * rate**2
    expected = np.einsum(
        "nji,nj->ni", world_from_sensor[1:-1], acceleration + np.array([0.0, 0.0, G])
    )
    assert np.abs(acceleration).max() > 3.0  # the arm's swing is not negligible
    np.testing.assert_allclose(kin.specific_force[0, 1:-1], expected, atol=0.05)


@pytest.mark.parametrize("activity", STILL)
def test_still_accelerometer_reads_gravity_in_the_rotated_frame(activity: str) -> None:
    rotation = random_rotations(np.random.default_rng(11), 1)[0]
    kin = ActivityStream(activity, ideal("pocket", rotation), seed=12).kinematics(seconds(10))
    gravity_in_sensor = np.einsum("nji,j->ni", kin.world_from_sensor, [0.0, 0.0, G])
    np.testing.assert_allclose(kin.specific_force, gravity_in_sensor, atol=0.02 * G)


def test_arm_circles_turn_at_the_cadence() -> None:
    stream = ActivityStream("arm_circles", ideal("wrist"), seed=13)
    kin = stream.kinematics(seconds(1.0 / stream.cadence_hz, 2000.0))
    # Pitch rate dominates; one turn takes one period.
    turned = np.sum(np.linalg.norm(kin.angular_velocity, axis=1)) / 2000.0
    assert turned == pytest.approx(2 * np.pi, rel=0.1)
    # Beside gravity the hand feels the centripetal pull of a 0.6 m arm: r * omega^2.
    gravity = np.einsum("nji,j->ni", kin.world_from_sensor, [0.0, 0.0, G])
    motion = np.linalg.norm(kin.specific_force - gravity, axis=1).mean()
    assert motion == pytest.approx(0.6 * (2 * np.pi * stream.cadence_hz) ** 2, rel=0.15)


def test_full_scale_ranges_clip_and_quantise() -> None:
    small = Wearer(placement="wrist", accel_range_g=2, gyro_range_dps=250)
    large = Wearer(placement="wrist", accel_range_g=16, gyro_range_dps=2000)
    times = seconds(10)
    clipped = ActivityStream("running", small, seed=14).read(times)
    free = ActivityStream("running", large, seed=14).read(times)
    accel_fs, gyro_fs = 2 * G, np.radians(250)
    assert np.abs(clipped[:, :3]).max() <= accel_fs
    assert np.abs(clipped[:, 3:]).max() <= gyro_fs
    assert np.mean(np.isclose(np.abs(clipped[:, :3]), accel_fs, rtol=1e-3)) > 0.01
    assert np.abs(free[:, :3]).max() > accel_fs
    assert np.abs(free[:, 3:]).max() > gyro_fs
    codes = clipped[:, :3] / (accel_fs / 32768)
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-6)


def test_synthesize_shape_rate_and_jitter() -> None:
    wearer = ideal("hip")
    steady = synthesize("walking", 10.0, 50.0, wearer, np.random.default_rng(1))
    jittered = synthesize("walking", 10.0, 50.0, wearer, np.random.default_rng(1), jitter=0.2)
    assert steady.shape == jittered.shape == (500, 6)
    assert steady.dtype == np.float64
    # Same motion, sampled at slightly different instants: close, not equal.
    assert 0 < np.abs(steady - jittered).mean() < 0.2 * np.abs(steady - steady.mean(0)).mean()
    with pytest.raises(EmulationError, match="moonwalking"):
        synthesize("moonwalking", 1.0, 50.0, wearer, np.random.default_rng(1))


def test_every_activity_and_placement_is_finite_and_plausible() -> None:
    rng = np.random.default_rng(15)
    for activity in ACTIVITIES:
        for placement in PLACEMENTS:
            data = synthesize(activity, 4.0, 100.0, Wearer.random(rng, [placement]), rng)
            assert np.isfinite(data).all()
            assert np.linalg.norm(data[:, :3], axis=1).max() < 16 * G
            assert 0.5 * G < np.linalg.norm(data[:, :3], axis=1).mean() < 4 * G, activity


@pytest.mark.parametrize("seed", [3, 4])
def test_reads_split_anywhere_equal_one_read(seed: int) -> None:
    times = seconds(30.0, 200.0, start=0.3)
    rng = np.random.default_rng(17)
    cuts = np.sort(rng.choice(np.arange(1, len(times)), 7, replace=False))
    whole = ActivityStream("walking", ideal("wrist"), seed).read(times)
    source = ActivityStream("walking", ideal("wrist"), seed)
    pieces = np.vstack([source.read(part) for part in np.split(times, cuts)])
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-9)


def test_wearer_rejects_bad_fields() -> None:
    with pytest.raises(EmulationError, match="ankle"):
        Wearer(placement="ankle")
    with pytest.raises(EmulationError, match="rotation"):
        Wearer(orientation=np.ones((3, 3)))
    with pytest.raises(EmulationError, match="accel_range_g"):
        Wearer(accel_range_g=3)


# ----------------------------------------------------------------------------- traces


@pytest.fixture
def recording() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(19)
    times = 12.5 + np.arange(100) / 50.0
    return times, rng.normal(0, 3, (100, 6))


def expected_interpolation(times, samples, query):
    return np.stack([np.interp(query, times - times[0], samples[:, c]) for c in range(6)], 1)


def test_csv_trace_replays_by_linear_interpolation(tmp_path, recording) -> None:
    times, samples = recording
    path = tmp_path / "walk.csv"
    rows = np.column_stack([times, samples])
    np.savetxt(path, rows, delimiter=",", header="t,ax,ay,az,gx,gy,gz,", comments="")
    replay = TraceReplay(path, loop=False)
    query = seconds(1.9, 100.0)
    np.testing.assert_allclose(replay.read(query), expected_interpolation(times, samples, query))
    assert replay.rate_hz == pytest.approx(50.0)


def test_csv_units_in_the_header_are_converted(tmp_path, recording) -> None:
    times, samples = recording
    path = tmp_path / "units.csv"
    scaled = np.column_stack([times * 1000, samples[:, :3] / G, np.degrees(samples[:, 3:])])
    header = "# recorded on a test bench\nlabel,timestamp_ms,ax_g,ay_g,az_g,gx_dps,gy_dps,gz_dps"
    lines = [header] + ["walk," + ",".join(f"{v:.17g}" for v in row) for row in scaled]
    path.write_text("\n".join(lines) + "\n")
    query = seconds(1.9, 100.0)
    np.testing.assert_allclose(
        TraceReplay(path).read(query), expected_interpolation(times, samples, query), atol=1e-9
    )


def test_npz_trace_replays_and_loops(tmp_path, recording) -> None:
    times, samples = recording
    path = tmp_path / "walk.npz"
    np.savez(path, t=times, samples=samples)
    replay = TraceReplay(path, loop=True)
    assert replay.duration == pytest.approx(2.0)
    query = seconds(1.9, 100.0)
    expected = expected_interpolation(times, samples, query)
    np.testing.assert_allclose(replay.read(query), expected)
    np.testing.assert_allclose(replay.read(query + 3 * replay.duration), expected, atol=1e-9)
    # Between the last sample and the wrap, the replay heads back to the first sample.
    halfway = replay.read(np.array([1.99]))[0]
    np.testing.assert_allclose(halfway, 0.5 * (samples[-1] + samples[0]), atol=1e-9)


@pytest.mark.parametrize(
    ("name", "content", "complaint"),
    [
        ("nohead.csv", "t,ax,ay,az,gx,gy\n0,1,2,3,4,5\n", "gz"),
        ("text.csv", "t,ax,ay,az,gx,gy,gz\n0,1,2,3,4,5,6\n0.1,1,x,3,4,5,6\n", "line 3"),
        ("back.csv", "t,ax,ay,az,gx,gy,gz\n0,1,2,3,4,5,6\n0,1,2,3,4,5,6\n", "does not increase"),
        ("short.csv", "t,ax,ay,az,gx,gy,gz\n0,1,2,3,4,5,6\n", "at least 2"),
        ("unit.csv", "t_fortnights,ax,ay,az,gx,gy,gz\n0,1,2,3,4,5,6\n", "fortnights"),
        ("empty.csv", "", "empty"),
        ("nan.csv", "t,ax,ay,az,gx,gy,gz\n0,1,2,3,4,5,6\n1,nan,2,3,4,5,6\n", "NaN"),
        ("trace.txt", "t,ax\n", "unknown trace format"),
    ],
)
def test_bad_csv_traces_say_what_is_wrong(tmp_path, name, content, complaint) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TraceError, match=complaint) as caught:
        TraceReplay(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, OdarError)


def test_bad_npz_traces_say_what_is_wrong(tmp_path) -> None:
    wrong_shape = tmp_path / "shape.npz"
    np.savez(wrong_shape, t=np.arange(5.0), samples=np.zeros((5, 3)))
    missing = tmp_path / "missing.npz"
    np.savez(missing, time=np.arange(5.0), samples=np.zeros((5, 6)))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    for path, complaint in [
        (wrong_shape, "samples"),
        (missing, "lacks array"),
        (corrupt, "cannot read"),
        (tmp_path / "absent.npz", "cannot read"),
    ]:
        with pytest.raises(TraceError, match=complaint) as caught:
            TraceReplay(path)
        assert str(path) in str(caught.value)


# ----------------------------------------------------------------------------- training data


def test_make_windows_shapes_labels_and_determinism() -> None:
    activities = ["sitting", "walking", "jumping"]
    x, y = make_windows(activities, 12, 50.0, window=400, rng=np.random.default_rng(20))
    assert x.shape == (36, 400, 6) and x.dtype == np.float32
    assert y.dtype == np.int64 and list(np.bincount(y)) == [12, 12, 12]
    assert np.isfinite(x).all()
    again, _ = make_windows(activities, 12, 50.0, rng=20, batch=5)
    np.testing.assert_array_equal(again, x)  # same seed, any batch size: same windows
    other, _ = make_windows(activities, 12, 50.0, rng=21)
    assert not np.allclose(other, x)
    # Walking windows move more than sitting ones.
    spread = x[..., :3].std(axis=1).mean(axis=1)
    assert spread[y == 1].min() > spread[y == 0].max()


def test_make_windows_uses_the_given_wearers() -> None:
    rng = np.random.default_rng(22)
    people = [Wearer.random(rng, ["chest"]) for _ in range(3)]
    x, _ = make_windows(["standing"], 10, 50.0, window=100, rng=rng, wearers=people)
    biases = np.array([w.accel_bias for w in people])
    # A still chest reads gravity plus one of these people's bias: the mean sits near |g|.
    window_means = x[..., :3].mean(axis=1)
    distances = np.abs(np.linalg.norm(window_means, axis=1) - G)
    assert distances.max() < np.linalg.norm(biases, axis=1).max() + 0.3


def test_a_simple_classifier_tells_walking_from_sitting() -> None:
    def features(windows: np.ndarray) -> np.ndarray:
        magnitude = np.linalg.norm(windows[..., :3], axis=2)
        rotation = np.linalg.norm(windows[..., 3:], axis=2)
        return np.column_stack([magnitude.std(axis=1), np.log(rotation.mean(axis=1) + 1e-3)])

    def data(seed: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = make_windows(["sitting", "walking"], 100, 50.0, window=200, rng=seed)
        return features(x), y.astype(float)

    train_x, train_y = data(23)
    test_x, test_y = data(24)  # other wearers, placements and orientations
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0)
    train_x, test_x = (train_x - mean) / scale, (test_x - mean) / scale
    weights, bias = np.zeros(2), 0.0
    for _ in range(500):
        p = 1 / (1 + np.exp(-(train_x @ weights + bias)))
        weights -= 0.5 * train_x.T @ (p - train_y) / len(train_y)
        bias -= 0.5 * np.mean(p - train_y)
    accuracy = np.mean(((test_x @ weights + bias) > 0) == (test_y > 0.5))
    assert accuracy > 0.95


def test_random_wearers_vary_within_plausible_bounds() -> None:
    rng = np.random.default_rng(27)
    people = [Wearer.random(rng, ["pocket", "hip"]) for _ in range(200)]
    assert {w.placement for w in people} == {"pocket", "hip"}
    for w in people:
        np.testing.assert_allclose(w.orientation @ w.orientation.T, np.eye(3), atol=1e-12)
        assert np.abs(w.accel_bias).max() <= 0.5
        assert w.accel_range_g in (2, 4, 8, 16) and w.gyro_range_dps in (250, 500, 1000, 2000)
    cadences = np.array([w.cadence_hz("walking") for w in people])
    assert 1.4 <= cadences.min() < 1.6 and 2.2 < cadences.max() <= 2.4
    # Uniform random orientations: the sensor's z axis points anywhere (mean near zero).
    z_axes = np.array([w.orientation[:, 2] for w in people])
    assert np.linalg.norm(z_axes.mean(axis=0)) < 0.2
    with pytest.raises(EmulationError, match="ankle"):
        Wearer.random(rng, ["ankle"])
