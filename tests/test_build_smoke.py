"""A tiny build with scripts/build_artifacts.py, so the builder cannot rot (needs TensorFlow:
CI runs this file in .venv-build). Also checks what the committed set cannot: the SGD
optimizer's formula and N > 2 classes, that --bottleneck builds a head for a foreign base,
that the features come out standardised, and that pretraining leaves out what the bench
evaluates on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip(
        "TensorFlow is not importable in this venv; run in .venv-build (scripts/setup-build.sh)",
        allow_module_level=True,
    )

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import build_artifacts  # noqa: E402
from artifact_builder import mixed_pretraining  # noqa: E402

from odar.bottleneck import Bottleneck  # noqa: E402
from odar.harness.bench import fewshot  # noqa: E402
from odar.head import Head  # noqa: E402
from odar.manifest import load_manifest  # noqa: E402

pytestmark = pytest.mark.slow


SMOKE_SEED = 11


@pytest.fixture(scope="module")
def smoke_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    argv = ["--smoke", "--out", str(out), "--num-classes", "3", "--optimizer", "sgd"]
    kept = ["--save-pretrained", str(out / "pretrained")]
    assert build_artifacts.main([*argv, "--seed", str(SMOKE_SEED), *kept]) == 0
    return out


def test_smoke_build_writes_a_valid_manifest(smoke_set):
    manifest = load_manifest(smoke_set)
    assert manifest.classes == ("Class A", "Class B", "Class C")
    assert manifest.optimizer == "sgd" and manifest.optimizer_state == {}
    assert manifest.raw["base"]["training_data"]["kind"] == "real and synthetic"
    assert manifest.raw["build"]["tensorflow_version"]
    features = Bottleneck(manifest).features(np.zeros((400, 6), np.float32))
    assert features.shape == (manifest.feature_size,)


def test_sgd_step_matches_the_formula(smoke_set):
    head = Head(smoke_set)
    learning_rate = head.manifest.optimizer_hyperparameters["learning_rate"]
    params = head.initial_parameters()
    rng = np.random.default_rng(0)
    grads = {n: rng.normal(size=p.shape).astype(np.float32) for n, p in params.items()}
    new_params, state = head.apply_gradients(params, grads, {})
    assert state == {}
    for name in params:
        np.testing.assert_allclose(
            new_params[name], params[name] - learning_rate * grads[name], rtol=1e-5, atol=1e-7
        )


def test_three_class_head_trains(smoke_set):
    head = Head(smoke_set)
    rng = np.random.default_rng(1)
    centres = 3 * rng.normal(size=(3, head.feature_size)).astype(np.float32)
    labels = np.repeat([0, 1, 2], 3)
    x = centres[labels] + 0.1 * rng.normal(size=(9, head.feature_size)).astype(np.float32)
    params, losses = head.fit(x, labels, steps=200, rng=rng)
    assert losses[-1] < losses[0]
    assert head.predict(params, x[0]).shape == (3,)
    assert [int(np.argmax(head.predict(params, row))) for row in x] == labels.tolist()


def test_bring_your_own_bottleneck(smoke_set, tmp_path):
    argv = ["--bottleneck", str(smoke_set / "bottleneck.tflite"), "--out", str(tmp_path)]
    assert build_artifacts.main(argv) == 0
    manifest = load_manifest(tmp_path)
    assert manifest.raw["base"]["origin"] == "external"
    assert manifest.feature_size == load_manifest(smoke_set).feature_size
    assert (tmp_path / "bottleneck.tflite").read_bytes() == (
        smoke_set / "bottleneck.tflite"
    ).read_bytes()


def test_features_are_standardised_on_the_pretraining_windows(smoke_set):
    # The builder's first draw from its seed is the training set (smoke sizes: 12 physical
    # and 8 synthetic windows per activity); the statistics were taken on all of it.
    args = build_artifacts.parse_args(["--smoke", "--seed", str(SMOKE_SEED)])
    x, *_ = build_artifacts.pretraining_data(args)
    # (The last three, HAPT's posture scores, are standardised on the real windows only.)
    features = Bottleneck(load_manifest(smoke_set)).features_of(x)[:, :-3]
    spread = features.std(axis=0)
    live = spread > 1e-3
    assert live.sum() >= features.shape[1] // 2
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(spread[live], 1.0, rtol=1e-2)


def test_pretraining_mixes_both_generators_and_holds_out_the_bench_conditions(smoke_set):
    training = load_manifest(smoke_set).raw["base"]["training_data"]
    physical = training["generators"]["physical"]
    synthetic = training["generators"]["synthetic"]
    assert physical["windows_per_activity"] > synthetic["windows_per_activity"]
    assert not set(physical["placements"]) & set(fewshot.OTHER_PLACEMENTS)
    assert not set(synthetic["placements"]) & set(fewshot.EVAL_PLACEMENTS)
    assert not set(physical["activities"]) & {"arm_waving", "arm_circles", "jumping"}
    assert not set(synthetic["activities"]) & set(fewshot.UNSEEN_ACTIVITIES)
    assert set(training["sensor_rates_hz"]).isdisjoint(fewshot.EVAL_RATES_HZ)


def test_mixed_set_labels_every_generator_activity_and_placement():
    mixed = mixed_pretraining.mixed_windows(
        8, 4, np.random.default_rng(0), scheme="activity-placement"
    )
    expected = len(mixed_pretraining.PHYSICAL_ACTIVITIES) * len(
        mixed_pretraining.PHYSICAL_PLACEMENTS
    ) + len(mixed_pretraining.SYNTHETIC_ACTIVITIES) * len(mixed_pretraining.SYNTHETIC_PLACEMENTS)
    assert len(mixed.class_names) == expected
    assert mixed.windows.shape == (len(mixed.labels), 400, 6)
    assert np.bincount(mixed.labels).min() >= 1
    coarse = mixed_pretraining.mixed_windows(8, 4, np.random.default_rng(0), scheme="activity")
    assert len(coarse.class_names) == 16
    assert "physical:walking" in coarse.class_names and "synthetic:walk" in coarse.class_names


def test_amplitude_augmentation_scales_motion_and_keeps_gravity():
    rng = np.random.default_rng(3)
    t = np.arange(400) / 100.0
    window = np.zeros((400, 6), np.float32)
    window[:, 2] = 9.8 + np.sin(2 * np.pi * 2 * t)
    window[:, 3] = 0.5 * np.cos(2 * np.pi * 2 * t)
    windows = np.repeat(window[None], 200, axis=0)
    augmented = mixed_pretraining.augment_amplitude(windows.copy(), rng, (0.5, 2.0), share=0.5)
    np.testing.assert_allclose(augmented[:, :, 2].mean(axis=1), window[:, 2].mean(), rtol=1e-5)
    gains = augmented[:, :, 3].std(axis=1) / window[:, 3].std()
    changed = ~np.isclose(gains, 1.0, atol=1e-4)
    assert 0.3 < changed.mean() < 0.7
    assert gains.min() >= 0.5 - 1e-4 and gains.max() <= 2.0 + 1e-4
    accel_gains = (augmented[:, :, 2].std(axis=1)) / window[:, 2].std()
    np.testing.assert_allclose(accel_gains, gains, rtol=1e-3)


def test_pretraining_sees_hapt_training_subjects_only_and_credits_the_data_set(smoke_set):
    from odar.drivers.emulated import hapt

    real = load_manifest(smoke_set).raw["base"]["training_data"]["real"]
    assert real["kind"] == "UCI HAPT" and real["license"] == "CC BY 4.0"
    assert "Reyes-Ortiz" in real["credit"] and "Neurocomputing" in real["credit"]
    assert set(real["subjects"]) <= set(hapt.TRAIN_SUBJECTS)
    assert not set(real["subjects"]) & (set(hapt.TEST_SUBJECTS) | set(hapt.VALIDATION_SUBJECTS))
    assert fewshot.hapt_fewshot.held_out_check(smoke_set, hapt.TEST_SUBJECTS)["disjoint"]


def test_statistics_features_sit_beside_the_learnt_ones(smoke_set):
    # The last 24 features are the window's per-axis mean/std/min/max, standardised: a
    # window lying still on its back and one upright differ in the accelerometer means.
    manifest = load_manifest(smoke_set)
    bottleneck = Bottleneck(manifest)
    upright, on_back = np.zeros((400, 6), np.float32), np.zeros((400, 6), np.float32)
    upright[:, 0], on_back[:, 2] = 9.80665, 9.80665
    a, b = bottleneck.features(upright), bottleneck.features(on_back)
    assert manifest.feature_size == 16 + 24 + 3  # learnt, statistics, HAPT posture scores
    means = slice(16, 19)  # accel x, y, z means
    assert a[means][0] > b[means][0] and a[means][2] < b[means][2]


def test_small_rotations_turn_by_at_most_the_jitter():
    from artifact_builder import real_pretraining

    rotations = real_pretraining.small_rotations(np.random.default_rng(0), 500, 15.0)
    identity = np.broadcast_to(np.eye(3), rotations.shape)
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, 1, 2), identity, atol=1e-9)
    angles = np.degrees(np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= 15.0 + 1e-6 and angles.max() > 12.0


def test_a_kept_base_is_exported_again_with_the_class_scores_at_their_gain(smoke_set, tmp_path):
    argv = ["--smoke", "--seed", str(SMOKE_SEED), "--out", str(tmp_path)]
    again = [*argv, "--pretrained", str(smoke_set / "pretrained"), "--real-activity-scores", "0"]
    assert build_artifacts.main([*again, "--class-scores", "real", "--class-score-gain", "3"]) == 0
    manifest = load_manifest(tmp_path)
    assert manifest.feature_size == 16 + 24 + 6  # HAPT's six pretraining classes' scores
    assert "--save-pretrained" in manifest.raw["base"]["quality"]["pretrained_by"]
    x, *_ = build_artifacts.pretraining_data(build_artifacts.parse_args(argv))
    before = Bottleneck(load_manifest(smoke_set)).features_of(x[:50])
    after = Bottleneck(manifest).features_of(x)
    np.testing.assert_array_equal(after[:50, :40], before[:, :40])  # the same base
    np.testing.assert_allclose(after[:, -6:].std(axis=0), 3.0, rtol=1e-2)


def test_real_activity_scores_name_the_activity_of_the_real_windows_at_their_gain(smoke_set):
    from artifact_builder import real_pretraining

    from odar.drivers.emulated import hapt

    real = real_pretraining.hapt_windows(
        hapt.load(),
        real_pretraining.pretraining_subjects(),
        np.random.default_rng(SMOKE_SEED),
        max_per_class=6,
    )
    scores = Bottleneck(load_manifest(smoke_set)).features_of(real.windows)[:, -3:]
    np.testing.assert_allclose(scores.std(axis=0), 3.0, rtol=1e-2)  # the default gain
    np.testing.assert_allclose(scores.mean(axis=0), 0.0, atol=1e-2)
    for column, activity in enumerate((3, 4, 5)):  # sitting, standing, lying: each score is
        own = real.labels == activity  # highest on the windows of its own posture
        assert scores[own, column].mean() > scores[~own, column].mean() + 1.0


def test_activity_scorer_separates_known_clusters_and_scales_its_scores():
    from artifact_builder import real_pretraining

    rng = np.random.default_rng(5)
    centres = 4 * rng.normal(size=(6, 10))
    labels = np.repeat(np.arange(6), 30)
    features = centres[labels] + rng.normal(size=(180, 10))
    scorer = real_pretraining.fit_activity_scorer(features, labels, gain=2.0)
    scores = features @ scorer.kernel + scorer.bias
    assert scorer.train_accuracy == 1.0
    np.testing.assert_allclose(scores.std(axis=0), 2.0, rtol=1e-3)
    assert (np.argmax(scores, axis=1) == labels).all()


def test_sway_features_do_not_turn_with_the_device_and_see_turning_about_gravity():
    from artifact_builder import posture_scorer, real_pretraining

    rng = np.random.default_rng(3)
    window = np.zeros((2, 400, 6), np.float32)
    window[:, :, 0] = 9.80665  # gravity along x
    window[:, :, :3] += 0.05 * rng.normal(size=(2, 400, 3))
    window[:, :, 3:] = 0.004 * rng.normal(size=(2, 400, 3))
    window[1, :, 3] += 0.05 * np.sin(np.linspace(0, 8 * np.pi, 400))  # turning about gravity
    sway = posture_scorer.sway_of(window)
    assert sway.shape == (2, posture_scorer.SWAY_SIZE)
    yaw = posture_scorer.SWAY_NAMES.index("log_std_gyro_along_gravity")
    # std of 0.05 sin is 0.05 / sqrt 2; of the noise 0.004
    assert sway[0, yaw] == pytest.approx(np.log(0.004), abs=0.15)
    assert sway[1, yaw] == pytest.approx(np.log(np.hypot(0.05 / np.sqrt(2), 0.004)), abs=0.05)
    turns = real_pretraining.small_rotations(rng, 2, 40.0)
    turned = real_pretraining.rotate(window, turns).astype(np.float32)
    np.testing.assert_allclose(posture_scorer.sway_of(turned), sway, atol=1e-3)


def test_walking_mountings_turn_one_recordings_walking_direction_onto_the_others():
    from artifact_builder import posture_scorer

    windows = np.zeros((4, 400, 6), np.float32)
    windows[:2, :, 0] = 9.8  # recording 0: gravity along x
    windows[2:, :, 0], windows[2:, :, 2] = 9.8 * np.cos(0.2), 9.8 * np.sin(0.2)
    labels, subjects, recordings = np.zeros(4, int), np.full(4, 7), np.array([0, 0, 1, 1])
    rotations, owners = posture_scorer.walking_mountings(windows, labels, subjects, recordings)
    assert owners.tolist() == [7, 7]
    np.testing.assert_allclose(rotations[0] @ [1, 0, 0], [np.cos(0.2), 0, np.sin(0.2)], atol=1e-6)
    np.testing.assert_allclose(rotations[1] @ rotations[0], np.eye(3), atol=1e-6)


def test_posture_scorer_separates_known_clusters_and_scales_its_scores():
    from artifact_builder import posture_scorer

    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(6), 30)
    features = (4 * rng.normal(size=(6, 10)))[labels] + rng.normal(size=(180, 10))
    sway = rng.normal(size=(180, posture_scorer.SWAY_SIZE))
    scorer = posture_scorer.fit_posture_scorer(features, sway, labels, gain=2.0)
    scores = scorer.scores(features, sway)
    assert scorer.train_accuracy == 1.0
    np.testing.assert_allclose(scores.std(axis=0), 2.0, rtol=1e-3)
    assert (np.argmax(scores, axis=1) == labels).all()


def test_the_choice_scripts_numpy_sway_is_the_builders():
    from artifact_builder import posture_scorer
    from sit_stand_choice import sway

    rng = np.random.default_rng(9)
    windows = rng.normal(size=(3, 400, 6)).astype(np.float32) * [0.3, 0.3, 0.3, 0.05, 0.05, 0.05]
    windows[..., 1] += 9.80665
    np.testing.assert_allclose(posture_scorer.sway_of(windows), sway(windows), atol=1e-4)


def test_pretraining_weighs_real_windows_and_can_end_on_the_simulators(tmp_path):
    argv = ["--smoke", "--seed", str(SMOKE_SEED), "--out", str(tmp_path)]
    options = ["--last-filters", "12", "--real-weight", "0.5", "--simulator-epochs", "1"]
    assert build_artifacts.main([*argv, *options, "--activity-scores-of", "all"]) == 0
    manifest = load_manifest(tmp_path)
    assert manifest.feature_size == 24 + 24 + 6  # 2 x 12 learnt, statistics, all six scores
    quality = manifest.raw["base"]["quality"]
    assert quality["final_epochs_on_a_subset"] == 1 and quality["sample_weighted"]
