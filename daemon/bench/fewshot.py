"""``odar bench fewshot``: personalisation accuracy from 5 windows a class.

For every pair of a set of activities, and several random draws, the head is trained from a
fresh initialisation on 5 windows per class (through the device artifacts: initialize,
train_head, optimizer) and scored on held-out windows (inference). The windows come from
people, placements, sensor rates and noise the shipped base never saw in pretraining, and
half the activities are ones it never saw at all. Compared in the same run: the original
pipeline's bottleneck with our head (if ../shared/seed-artifacts is there), and a baseline of
per-axis mean/std/min/max features with logistic regression. A second data set comes from the
emulated wearer's own motion model, a different simulator the base never saw.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from odar.bottleneck import Bottleneck
from odar.head import Head
from odar.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARTIFACTS = ROOT / "artifacts"
DEFAULT_SEED_HEAD = ROOT / "artifacts" / "seed-head"

#: Unlike pretraining (wrist/pocket/waist/chest, 50/100/200 Hz, noise x1, see
#: scripts/build_artifacts.py): other placements, other sensor rates, twice the noise.
EVAL_PLACEMENTS = ("ankle", "upper_arm", "bag")
EVAL_RATES_HZ = (40.0, 400.0)
EVAL_NOISE_SCALE = 2.0
SEEN_ACTIVITIES = ("sit", "walk", "run", "stairs_up", "bike")
UNSEEN_ACTIVITIES = ("jump", "brush_teeth", "wave", "shuffle")
TARGET = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument(
        "--seed-head",
        type=Path,
        default=DEFAULT_SEED_HEAD,
        help="head set built for the original bottleneck (skipped if absent)",
    )
    parser.add_argument("--draws", type=int, default=3, help="random draws per pair")
    parser.add_argument("--shots", type=int, default=5, help="training windows per class")
    parser.add_argument("--test", type=int, default=20, help="held-out windows per class")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per head")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _generator() -> ModuleType:
    """The synthetic IMU generator (numpy only) that the base was pretrained with."""
    path = ROOT / "scripts" / "artifact_builder" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("odar_bench_synthetic", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"{path}: the synthetic generator (run from a checkout)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def evaluation_draws(args: argparse.Namespace, activities: tuple[str, ...]):
    """One (windows (A, shots+test, 400, 6)) array per draw; every window a new wearer."""
    synthetic = _generator()
    rng = np.random.default_rng(args.seed)
    draws = []
    for _ in range(args.draws):
        x, _ = synthetic.make_windows(
            activities,
            args.shots + args.test,
            rate_hz=100.0,
            rng=rng,
            placements=EVAL_PLACEMENTS,
            rates_hz=EVAL_RATES_HZ,
            noise_scale=EVAL_NOISE_SCALE,
        )
        draws.append(x.reshape(len(activities), args.shots + args.test, 400, 6))
    return draws


def other_generator_draws(args: argparse.Namespace):
    """Windows from the emulated wearer's own motion model (drivers/emulated/motion.py), a
    different simulator from the one the base was pretrained on: (draws, activity names)."""
    from odar.drivers.emulated.activities import ACTIVITIES
    from odar.drivers.emulated.motion import make_windows

    activities = tuple(ACTIVITIES)
    rng = np.random.default_rng(args.seed + 1)
    per_class = args.shots + args.test
    draws = []
    for _ in range(args.draws):
        x, _ = make_windows(activities, per_class, 100.0, rng=rng)
        draws.append(x.reshape(len(activities), per_class, 400, 6))
    return draws, activities


def _baseline(draws, args, activities) -> dict:
    stats = [statistics_features(d.reshape(-1, 400, 6)).reshape(*d.shape[:2], -1) for d in draws]
    summary, per_pair = _pairs_accuracy(
        stats,
        args,
        None,
        lambda tx, ty, vx, vy, _rng: logistic_regression_accuracy(tx, ty, vx, vy),
    )
    return {
        **summary,
        "per_pair": {f"{activities[a]}/{activities[b]}": v for (a, b), v in per_pair.items()},
    }


def statistics_features(windows: np.ndarray) -> np.ndarray:
    """The baseline's features: per-axis mean, std, min, max (24 numbers)."""
    return np.concatenate(
        [windows.mean(1), windows.std(1), windows.min(1), windows.max(1)], axis=-1
    )


def logistic_regression_accuracy(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mean) / std, (x_test - mean) / std
    w, bias = np.zeros(a.shape[1]), 0.0
    for _ in range(300):
        p = 1.0 / (1.0 + np.exp(-(a @ w + bias)))
        w -= 0.5 * (a.T @ (p - y_train) / len(a) + 1e-2 * w)
        bias -= 0.5 * float(np.mean(p - y_train))
    return float(np.mean(((b @ w + bias) > 0) == (y_test == 1)))


def _pairs_accuracy(draws_features, args, rng, score) -> dict:
    """Mean accuracy over all pairs and draws; ``score(train_x, train_y, test_x, test_y)``."""
    n_activities = draws_features[0].shape[0]
    per_pair = {}
    for a, b in itertools.combinations(range(n_activities), 2):
        results = []
        for features in draws_features:
            train_x = np.concatenate([features[a, : args.shots], features[b, : args.shots]])
            test_x = np.concatenate([features[a, args.shots :], features[b, args.shots :]])
            train_y = np.repeat([0, 1], args.shots)
            test_y = np.repeat([0, 1], args.test)
            results.append(score(train_x, train_y, test_x, test_y, rng))
        per_pair[(a, b)] = float(np.mean(results))
    values = list(per_pair.values())
    return {"accuracy": float(np.mean(values)), "worst_pair": float(np.min(values))}, per_pair


def _head_scorer(head: Head, steps: int):
    def score(train_x, train_y, test_x, test_y, rng) -> float:
        params, _ = head.fit(train_x, train_y, steps, rng)
        predicted = [int(np.argmax(head.predict(params, x)[:2])) for x in test_x]
        return float(np.mean(np.asarray(predicted) == test_y))

    return score


def _evaluate_artifacts(directory: Path, draws, args, activities) -> dict:
    manifest = load_manifest(directory)
    bottleneck = Bottleneck(manifest, args.threads)
    head = Head(manifest, args.threads)
    started = time.perf_counter()
    features = [
        bottleneck.features_of(d.reshape(-1, 400, 6)).reshape(*d.shape[:2], -1) for d in draws
    ]
    invoke_ms = (time.perf_counter() - started) * 1e3 / sum(len(d) * d.shape[1] for d in draws)
    summary, per_pair = _pairs_accuracy(
        features, args, np.random.default_rng(args.seed), _head_scorer(head, args.steps)
    )
    return {
        **summary,
        "feature_size": manifest.feature_size,
        "bottleneck_invoke_ms": round(invoke_ms, 3),
        "bottleneck_bytes": manifest.artifacts["bottleneck"].path.stat().st_size,
        "per_pair": {f"{activities[a]}/{activities[b]}": v for (a, b), v in per_pair.items()},
    }


def run(args: argparse.Namespace) -> int:
    activities = SEEN_ACTIVITIES + UNSEEN_ACTIVITIES
    draws = evaluation_draws(args, activities)
    report: dict = {
        "protocol": {
            "activities_seen_in_pretraining": list(SEEN_ACTIVITIES),
            "activities_unseen": list(UNSEEN_ACTIVITIES),
            "pairs": len(activities) * (len(activities) - 1) // 2,
            "draws": args.draws,
            "train_windows_per_class": args.shots,
            "test_windows_per_class": args.test,
            "head_steps": args.steps,
            "placements": list(EVAL_PLACEMENTS),
            "sensor_rates_hz": list(EVAL_RATES_HZ),
            "noise_scale": EVAL_NOISE_SCALE,
            "target": TARGET,
        },
        "results": {},
    }
    report["results"]["ours"] = _evaluate_artifacts(args.artifacts, draws, args, activities)
    seed_manifest = args.seed_head / "manifest.json"
    if (
        seed_manifest.is_file()
        and load_manifest(seed_manifest, verify_hashes=False).artifacts["bottleneck"].path.is_file()
    ):
        report["results"]["original_bottleneck_our_head"] = _evaluate_artifacts(
            args.seed_head, draws, args, activities
        )
    else:
        report["results"]["original_bottleneck_our_head"] = {
            "skipped": f"{seed_manifest} or its bottleneck (../shared/seed-artifacts) missing"
        }
    report["results"]["baseline_stats_logistic_regression"] = _baseline(draws, args, activities)
    other_draws, other_activities = other_generator_draws(args)
    report["other_generator"] = {
        "source": "odar.drivers.emulated.motion.make_windows (not used in pretraining)",
        "activities": list(other_activities),
    }
    report["results"]["ours_other_generator"] = _evaluate_artifacts(
        args.artifacts, other_draws, args, other_activities
    )
    report["results"]["baseline_other_generator"] = _baseline(other_draws, args, other_activities)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, result in report["results"].items():
            if "accuracy" in result:
                extra = (
                    f", bottleneck {result['bottleneck_invoke_ms']} ms/window"
                    if "bottleneck_invoke_ms" in result
                    else ""
                )
                print(
                    f"{name:40s} accuracy {result['accuracy']:.3f} "
                    f"(worst pair {result['worst_pair']:.3f}){extra}"
                )
            else:
                print(f"{name:40s} {result['skipped']}")
        print(f"target {TARGET} for ours")
    return 0
