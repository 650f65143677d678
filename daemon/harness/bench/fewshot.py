"""``odar bench fewshot``: personalisation accuracy from 5 windows a class.

For every pair of a set of activities, and several random draws, the head is trained from a
fresh initialisation on 5 windows per class (through the device artifacts: initialize,
train_head, optimizer) and scored on held-out windows (inference). The windows come from
people, placements, sensor rates and noise the shipped base never saw in pretraining, and
some of the activities are ones it never saw at all. Compared in the same run: the original
pipeline's bottleneck with our head (if ../shared/seed-artifacts is there), and a baseline of
per-axis mean/std/min/max features with logistic regression. A second data set comes from the
physical motion model (drivers/emulated/motion.py), at its one placement the base was not
pretrained on. The report checks the evaluation placements against the ones the manifest
says the base was pretrained on.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import itertools
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from odar.bottleneck import Bottleneck
from odar.drivers.emulated.motion import ACTIVITIES
from odar.errors import ConfigError, NotInstalledError
from odar.harness.bench import hapt_fewshot
from odar.harness.data import find_artifacts
from odar.head import Head
from odar.manifest import load_manifest
from odar.trainer import loss_settled

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_SEED_HEAD = ROOT / "artifacts" / "seed-head"
BUILDER = ROOT / "scripts" / "artifact_builder"

#: Unlike pretraining (see scripts/artifact_builder/mixed_pretraining.py: 50/100/200 Hz,
#: noise x1): other placements, other sensor rates, twice the noise and bias.
EVAL_PLACEMENTS = ("ankle", "upper_arm", "bag")
EVAL_RATES_HZ = (40.0, 400.0)
EVAL_NOISE_SCALE = 2.0
SEEN_ACTIVITIES = ("sit", "walk", "run", "stairs_up", "bike")
UNSEEN_ACTIVITIES = ("jump", "brush_teeth", "wave", "shuffle")
#: The physical model's placement that pretraining leaves out, and all its activities
#: (arm_waving, arm_circles and jumping are not pretrained on).
OTHER_PLACEMENTS = ("upper_arm",)
OTHER_ACTIVITIES = tuple(ACTIVITIES)
#: --quick: one draw of an easy, a middling and an unseen activity, few test windows.
QUICK_ACTIVITIES = ("sit", "run", "jump")
QUICK_OTHER_ACTIVITIES = ("sitting", "running", "arm_waving")
TARGET = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=None,
        help="the artifacts to measure (default: the checkout's, else the installed ones)",
    )
    parser.add_argument(
        "--seed-head",
        type=Path,
        default=DEFAULT_SEED_HEAD,
        help="head set built for the original bottleneck (skipped if absent)",
    )
    parser.add_argument("--draws", type=int, default=3, help="random draws per pair")
    parser.add_argument("--shots", type=int, default=5, help="training windows per class")
    parser.add_argument("--test", type=int, default=20, help="held-out windows per class")
    parser.add_argument(
        "--steps",
        type=int,
        default=300,
        help="at most this many optimizer steps per head; each head trains until its loss "
        "settles, as Train mode does",
    )
    parser.add_argument(
        "--activities",
        type=_names,
        help=f"comma-separated synthetic activities (default: all {len(SEEN_ACTIVITIES)} "
        f"seen and {len(UNSEEN_ACTIVITIES)} unseen)",
    )
    parser.add_argument(
        "--other-activities",
        type=_names,
        help="comma-separated physical-model activities (default: all "
        f"{len(OTHER_ACTIVITIES)}); 'none' skips that data set",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 draw, 3 activities a data set, 8 test windows (a check that it runs)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads the TFLite interpreters may use"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the random draws")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    hapt_fewshot.add_arguments(parser)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if names == ("none",):
        return ()
    if len(names) == 1 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: need two or more distinct activity names")
    return names


def _apply_quick(args: argparse.Namespace) -> None:
    if args.quick:
        args.draws, args.test = 1, 8
        args.activities = args.activities or QUICK_ACTIVITIES
        if args.other_activities is None:
            args.other_activities = QUICK_OTHER_ACTIVITIES
    args.activities = args.activities or SEEN_ACTIVITIES + UNSEEN_ACTIVITIES
    if args.other_activities is None:
        args.other_activities = OTHER_ACTIVITIES
    known = {
        "--activities": (args.activities, SEEN_ACTIVITIES + UNSEEN_ACTIVITIES),
        "--other-activities": (args.other_activities, OTHER_ACTIVITIES),
    }
    for option, (names, allowed) in known.items():
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise ConfigError(f"{option}: {', '.join(unknown)} not in {', '.join(allowed)}")


def _builder_module(name: str) -> ModuleType:
    """A numpy-only module of the artifact builder, loaded by path (scripts/ is no package)."""
    path = BUILDER / f"{name}.py"
    if not path.is_file():
        raise NotInstalledError(
            errno.ENOENT,
            f"{path}: the artifact builder's {name} module is not installed with odar; run "
            "odar bench fewshot from a checkout",
        )
    spec = importlib.util.spec_from_file_location(f"odar_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path}: cannot be loaded as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def evaluation_draws(args: argparse.Namespace, activities: tuple[str, ...]):
    """One (windows (A, shots+test, 400, 6)) array per draw; every window a new wearer."""
    synthetic = _builder_module("synthetic")
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


def other_generator_draws(args: argparse.Namespace, activities: tuple[str, ...]):
    """Windows from the physical motion model at its held-out placement, sensor rates and
    noise, resampled to 100 Hz: one (A, shots+test, 400, 6) array per draw."""
    physical = _builder_module("physical")
    rng = np.random.default_rng(args.seed + 1)
    per_class = args.shots + args.test
    draws = []
    for _ in range(args.draws):
        x, _ = physical.physical_windows(
            activities,
            per_class,
            rng,
            placements=OTHER_PLACEMENTS,
            rates_hz=EVAL_RATES_HZ,
            noise_scale=EVAL_NOISE_SCALE,
        )
        draws.append(x.reshape(len(activities), per_class, 400, 6))
    return draws


def held_out_check(artifacts: Path) -> dict:
    """The evaluation placements against the pretraining placements the manifest names."""
    training = load_manifest(artifacts, verify_hashes=False).raw.get("base", {})
    training = training.get("training_data", {})
    generators = training.get("generators", {})
    pretrained = {
        "synthetic": generators.get("synthetic", {}).get("placements", training.get("placements")),
        "physical": generators.get("physical", {}).get("placements"),
    }
    evaluated = {"synthetic": list(EVAL_PLACEMENTS), "physical": list(OTHER_PLACEMENTS)}
    overlap = {
        name: sorted(set(evaluated[name]) & set(pretrained[name] or ())) for name in evaluated
    }
    return {
        "pretraining_placements": pretrained,
        "evaluation_placements": evaluated,
        "overlap": overlap,
        "disjoint": not any(overlap.values()),
    }


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


def _pairs_accuracy(
    draws_features, args, rng, score
) -> tuple[dict[str, float], dict[tuple[int, int], float]]:
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


def train_until_settled(
    head: Head, x: np.ndarray, labels: np.ndarray, max_steps: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], int]:
    """Train a fresh head as Train mode does, until the loss settles (the daemon's own
    criterion) or *max_steps*; the parameters and the steps taken."""
    onehot = np.eye(head.num_classes, dtype=np.float32)[np.asarray(labels)]
    params = head.initial_parameters()
    state = head.initial_optimizer_state()
    rows = min(head.batch_size, len(x))
    losses: list[float] = []
    while len(losses) < max_steps and not loss_settled(losses):
        chosen = rng.choice(len(x), size=rows, replace=False)
        loss, params, state = head.train_step(params, state, x[chosen], onehot[chosen])
        losses.append(loss)
    return params, len(losses)


def _head_scorer(head: Head, steps: int, steps_taken: list[int]):
    def score(train_x, train_y, test_x, test_y, rng) -> float:
        params, taken = train_until_settled(head, train_x, train_y, steps, rng)
        steps_taken.append(taken)
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
    steps_taken: list[int] = []
    summary, per_pair = _pairs_accuracy(
        features,
        args,
        np.random.default_rng(args.seed),
        _head_scorer(head, args.steps, steps_taken),
    )
    return {
        **summary,
        "head_steps_mean": round(float(np.mean(steps_taken)), 1),
        "feature_size": manifest.feature_size,
        "bottleneck_invoke_ms": round(invoke_ms, 3),
        "bottleneck_bytes": manifest.artifacts["bottleneck"].path.stat().st_size,
        "per_pair": {f"{activities[a]}/{activities[b]}": v for (a, b), v in per_pair.items()},
    }


def _pairs(count: int) -> int:
    return count * (count - 1) // 2


def run(args: argparse.Namespace) -> int:
    if args.artifacts is None:
        args.artifacts = find_artifacts()
    _apply_quick(args)
    activities = tuple(args.activities)
    seen = [a for a in activities if a not in UNSEEN_ACTIVITIES]
    report: dict = {
        "protocol": {
            "activities_seen_in_pretraining": seen,
            "activities_unseen": [a for a in activities if a in UNSEEN_ACTIVITIES],
            "pairs": _pairs(len(activities)),
            "draws": args.draws,
            "train_windows_per_class": args.shots,
            "test_windows_per_class": args.test,
            "head_steps_max": args.steps,
            "head_training": "until the loss settles (odar.trainer.loss_settled), as Train mode",
            "placements": list(EVAL_PLACEMENTS),
            "sensor_rates_hz": list(EVAL_RATES_HZ),
            "noise_scale": EVAL_NOISE_SCALE,
            "target": TARGET,
        },
        "held_out": held_out_check(args.artifacts),
        "results": {},
    }
    seed_manifest = args.seed_head / "manifest.json"
    seed_head_usable = (
        seed_manifest.is_file()
        and load_manifest(seed_manifest, verify_hashes=False).artifacts["bottleneck"].path.is_file()
    )
    if args.hapt != "only":
        _simulated_results(args, report, activities, seed_head_usable)
    if args.hapt != "off":
        report["hapt"], hapt_results = hapt_fewshot.run(
            args, args.seed_head if seed_head_usable else None
        )
        report["results"].update(hapt_results)
    _print_report(args, report)
    return 0


def _simulated_results(args, report, activities, seed_head_usable: bool) -> None:
    """The synthetic generator's and the physical model's rows of the report."""
    draws = evaluation_draws(args, activities)
    seed_manifest = args.seed_head / "manifest.json"
    report["results"]["ours"] = _evaluate_artifacts(args.artifacts, draws, args, activities)
    if seed_head_usable:
        report["results"]["original_bottleneck_our_head"] = _evaluate_artifacts(
            args.seed_head, draws, args, activities
        )
    else:
        report["results"]["original_bottleneck_our_head"] = {
            "skipped": f"{seed_manifest} or its bottleneck (../shared/seed-artifacts) missing"
        }
    report["results"]["baseline_stats_logistic_regression"] = _baseline(draws, args, activities)
    other_activities = tuple(args.other_activities)
    if other_activities:
        other_draws = other_generator_draws(args, other_activities)
        report["other_generator"] = {
            "source": "odar.drivers.emulated.motion via scripts/artifact_builder/physical.py, "
            "at placements, sensor rates and noise left out of pretraining",
            "activities": list(other_activities),
            "pairs": _pairs(len(other_activities)),
            "placements": list(OTHER_PLACEMENTS),
            "sensor_rates_hz": list(EVAL_RATES_HZ),
            "noise_scale": EVAL_NOISE_SCALE,
        }
        report["results"]["ours_other_generator"] = _evaluate_artifacts(
            args.artifacts, other_draws, args, other_activities
        )
        report["results"]["baseline_other_generator"] = _baseline(
            other_draws, args, other_activities
        )


def _print_report(args: argparse.Namespace, report: dict) -> None:
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
                if "sitting/standing" in result.get("per_pair", {}):
                    extra += f", sitting/standing {result['per_pair']['sitting/standing']:.3f}"
                print(
                    f"{name:40s} accuracy {result['accuracy']:.3f} "
                    f"(worst pair {result['worst_pair']:.3f}){extra}"
                )
            else:
                print(f"{name:40s} {result['skipped']}")
        held_out = report["held_out"]
        print(
            f"evaluation placements disjoint from pretraining: {held_out['disjoint']} "
            f"(overlap {held_out['overlap']})"
        )
        if "hapt" in report:
            held_out = report["hapt"]["held_out"]
            print(f"HAPT test subjects disjoint from pretraining: {held_out['disjoint']}")
        print(f"target {TARGET} for ours")
