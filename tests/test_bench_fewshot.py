"""``odar bench fewshot`` on small settings: the whole code path (data from both generators,
the device artifacts training a head per pair, the original-bottleneck set, the baseline) and
the report's shape and relations. Accuracy targets are the bench's job, not this file's: the
only accuracy asserted is a sanity floor on an easy pair."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from odar.cli import EX_CONFIG, main
from odar.harness.bench import fewshot

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _bench_json(capsys, *argv: str) -> dict:
    assert main(["bench", "fewshot", "--json", "--threads", "1", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def quick_report() -> dict:
    # One run shared by the module; capsys is function-scoped, so capture by hand. The real
    # people (HAPT) are tests/test_hapt_fewshot.py's.
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        argv = ["bench", "fewshot", "--json", "--quick", "--threads", "1", "--hapt", "off"]
        assert main(argv) == 0
    return json.loads(buffer.getvalue())


def _assert_accuracy_result(result: dict, pairs: list[str]) -> None:
    assert 0.0 <= result["worst_pair"] <= result["accuracy"] <= 1.0
    assert sorted(result["per_pair"]) == sorted(pairs)
    assert all(0.0 <= value <= 1.0 for value in result["per_pair"].values())
    assert result["accuracy"] == pytest.approx(np.mean(list(result["per_pair"].values())))
    assert result["worst_pair"] == pytest.approx(min(result["per_pair"].values()))


def test_quick_run_reports_every_result_over_all_pairs(quick_report):
    protocol = quick_report["protocol"]
    activities = protocol["activities_seen_in_pretraining"] + protocol["activities_unseen"]
    assert sorted(activities) == sorted(fewshot.QUICK_ACTIVITIES)
    assert protocol["pairs"] == 3 and protocol["draws"] == 1
    assert protocol["test_windows_per_class"] == 8 and protocol["train_windows_per_class"] == 5
    assert "jump" in protocol["activities_unseen"]
    pairs = [f"{a}/{b}" for i, a in enumerate(fewshot.QUICK_ACTIVITIES)
             for b in fewshot.QUICK_ACTIVITIES[i + 1 :]]  # fmt: skip
    results = quick_report["results"]
    for name in ("ours", "baseline_stats_logistic_regression"):
        _assert_accuracy_result(results[name], pairs)
    assert results["ours"]["feature_size"] <= 256  # a small head (the original base: 4480)
    assert results["ours"]["bottleneck_invoke_ms"] > 0
    original = results["original_bottleneck_our_head"]
    if "skipped" in original:
        print(f"original bottleneck not compared: {original['skipped']}")
    else:
        _assert_accuracy_result(original, pairs)


def test_quick_run_scores_the_held_out_placement_of_the_physical_model(quick_report):
    other = quick_report["other_generator"]
    assert other["activities"] == list(fewshot.QUICK_OTHER_ACTIVITIES)
    assert other["pairs"] == 3
    assert other["placements"] == ["upper_arm"]
    names = fewshot.QUICK_OTHER_ACTIVITIES
    pairs = [f"{a}/{b}" for i, a in enumerate(names) for b in names[i + 1 :]]
    for name in ("ours_other_generator", "baseline_other_generator"):
        _assert_accuracy_result(quick_report["results"][name], pairs)


def test_an_easy_pair_is_learnt_from_five_windows(quick_report):
    # Sitting against running differs in everything; chance is 0.5.
    assert quick_report["results"]["ours"]["per_pair"]["sit/run"] > 0.5
    assert quick_report["results"]["ours_other_generator"]["per_pair"]["sitting/running"] > 0.5


def test_shipped_base_was_not_pretrained_where_the_bench_evaluates(quick_report):
    held_out = quick_report["held_out"]
    assert held_out["disjoint"], held_out["overlap"]
    manifest = json.loads((ARTIFACTS / "manifest.json").read_text(encoding="utf-8"))
    training = manifest["base"]["training_data"]
    pretrained = set(training.get("placements", []))
    assert pretrained, "the manifest names no pretraining placements"
    assert not pretrained & set(fewshot.EVAL_PLACEMENTS)
    physical = training.get("generators", {}).get("physical")
    if physical is None:
        print("this base was not pretrained on the physical model")
    else:
        assert not set(physical["placements"]) & set(fewshot.OTHER_PLACEMENTS)
        assert not set(physical["activities"]) >= set(fewshot.OTHER_ACTIVITIES)
    assert set(fewshot.EVAL_RATES_HZ).isdisjoint(training["sensor_rates_hz"])


def test_chosen_activities_and_skipping_the_other_generator(capsys, tmp_path):
    report = _bench_json(
        capsys,
        "--activities", "sit,run",
        "--other-activities", "none",
        "--draws", "1",
        "--test", "4",
        "--seed-head", str(tmp_path / "absent"),
        "--hapt", "off",
    )  # fmt: skip
    assert report["protocol"]["pairs"] == 1
    assert list(report["results"]["ours"]["per_pair"]) == ["sit/run"]
    assert "skipped" in report["results"]["original_bottleneck_our_head"]
    assert "other_generator" not in report
    assert "ours_other_generator" not in report["results"]
    assert "hapt" not in report


def test_unknown_activity_is_a_config_error_naming_it(capsys):
    assert main(["bench", "fewshot", "--activities", "sit,moonwalk"]) == EX_CONFIG
    assert "moonwalk" in capsys.readouterr().err


def test_one_activity_is_refused_by_the_parser():
    with pytest.raises(SystemExit):
        main(["bench", "fewshot", "--activities", "sit"])


def test_logistic_baseline_separates_separable_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, (30, 24)), rng.normal(3, 1, (30, 24))])
    y = np.repeat([0, 1], 30)
    order = rng.permutation(60)
    x, y = x[order], y[order]
    assert fewshot.logistic_regression_accuracy(x[:10], y[:10], x[10:], y[10:]) == 1.0
    flipped = fewshot.logistic_regression_accuracy(x[:10], y[:10], x[10:], 1 - y[10:])
    assert flipped == 0.0


def test_statistics_features_are_mean_std_min_max_per_axis():
    windows = np.arange(2 * 400 * 6, dtype=np.float64).reshape(2, 400, 6)
    features = fewshot.statistics_features(windows)
    assert features.shape == (2, 24)
    np.testing.assert_allclose(features[0, :6], windows[0].mean(0))
    np.testing.assert_allclose(features[1, 18:], windows[1].max(0))


def test_resampling_keeps_a_ramp_a_ramp():
    physical = fewshot._builder_module("physical")
    source_hz, target_hz = 40.0, 100.0
    t = np.arange(161) / source_hz
    ramp = np.repeat((2.0 * t + 1.0)[None, :, None], 6, axis=2)
    out = physical.resample(ramp, source_hz, target_hz, 400)
    assert out.shape == (1, 400, 6) and out.dtype == np.float32
    expected = 2.0 * np.arange(400) / target_hz + 1.0
    np.testing.assert_allclose(out[0, :, 3], expected, rtol=1e-6)


def test_physical_windows_come_at_the_base_rate_with_labels_in_order():
    physical = fewshot._builder_module("physical")
    x, y = physical.physical_windows(
        ("sitting", "running"),
        3,
        np.random.default_rng(1),
        placements=("upper_arm",),
        rates_hz=(40.0, 400.0),
        noise_scale=2.0,
    )
    assert x.shape == (6, 400, 6) and x.dtype == np.float32
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
    # Gravity is in every window; running shakes the accelerometer far more than sitting.
    magnitude = np.linalg.norm(x[..., :3], axis=-1)
    assert np.all(np.abs(magnitude.mean(axis=1)[:3] - 9.81) < 2.0)
    assert magnitude[3:].std(axis=1).min() > magnitude[:3].std(axis=1).max()


def test_heads_train_until_the_loss_settles_or_the_cap():
    from odar.head import Head
    from odar.trainer import loss_settled

    head = Head(Path(__file__).resolve().parent.parent / "artifacts")
    rng = np.random.default_rng(0)
    # Two well separated clusters: the loss falls below the settled floor long before 300.
    x = np.concatenate(
        [rng.normal(-3, 0.1, (5, head.feature_size)), rng.normal(3, 0.1, (5, head.feature_size))]
    ).astype(np.float32)
    y = np.repeat([0, 1], 5)
    params, steps = fewshot.train_until_settled(head, x, y, 300, np.random.default_rng(1))
    assert steps < 300
    assert np.argmax(head.predict(params, x[0])) == 0
    assert np.argmax(head.predict(params, x[-1])) == 1
    # The cap holds when the loss cannot settle within it.
    _, capped = fewshot.train_until_settled(head, x, y, 3, np.random.default_rng(1))
    assert capped == 3
    assert not loss_settled([1.0, 0.9, 0.8])
    assert loss_settled([0.5] * 40)
    assert not loss_settled([1.0] * 20 + [0.5] * 20)
