#!/usr/bin/env python3
"""How the sitting/standing recipe was chosen: HAPT's training subjects only, never its test
subjects (2, 4, 9, 10, 12, 13, 18, 20, 24; refused below).

    .venv/bin/python scripts/sit_stand_choice.py head DIR [DIR ...]
        five-shot sitting/standing (and the other 14 pairs) on the validation subjects 27-30,
        through a numpy copy of the device head, for each artifact set
    .venv/bin/python scripts/sit_stand_choice.py scorers DIR
        activity scorers refit on DIR's first 128 features (linear or 32 ReLU units, with or
        without the sway features, with or without copies turned by other subjects'
        mountings), each subject's scores from a scorer fit without them (5 folds over the
        17 pretraining subjects; the validation subjects' from a fit on all 17): how well a
        person's sitting/standing threshold on one recording carries to their other one

Numpy and odar only (.venv). The figures are in artifacts/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

from odar.bottleneck import Bottleneck
from odar.drivers.emulated import hapt
from odar.manifest import load_manifest
from odar.trainer import loss_settled

SITTING, STANDING = 3, 4
GRAVITY = 9.80665
PRETRAINING = tuple(s for s in hapt.TRAIN_SUBJECTS if s not in hapt.VALIDATION_SUBJECTS)
FOLDS = 5


def windows() -> tuple[np.ndarray, ...]:
    recordings = [r for r in hapt.load() if r.subject not in hapt.TEST_SUBJECTS]
    x, y, subject, recording = hapt.windows(recordings, rate_hz=100.0, window=400, hop=100)
    if np.isin(subject, hapt.TEST_SUBJECTS).any():
        raise SystemExit("a UCI test subject reached the choice: refused")
    return x, y, subject, recording


def adam_update(params, grads, first, second, step, learning_rate, epsilon) -> None:
    """One Adam step in place (beta 0.9 and 0.999, as TensorFlow's and the optimizer
    artifact's)."""
    for i, grad in enumerate(grads):
        first[i] = 0.9 * first[i] + 0.1 * grad
        second[i] = 0.999 * second[i] + 0.001 * grad * grad
        params[i] -= (
            learning_rate
            * (first[i] / (1 - 0.9**step))
            / (np.sqrt(second[i] / (1 - 0.999**step)) + epsilon)
        )


def head_accuracy(train_x, train_y, test_x, test_y, rng) -> float:
    """The device head (Dense 128 relu, softmax, L2 0.001, Adam 0.005, batches of 10, until
    the loss settles or 300 steps), in numpy."""
    n, d = train_x.shape
    limits = np.sqrt(6 / (d + 128)), np.sqrt(6 / (128 + 2))
    params = [
        rng.uniform(-limits[0], limits[0], (d, 128)),
        np.zeros(128),
        rng.uniform(-limits[1], limits[1], (128, 2)),
        np.zeros(2),
    ]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    onehot, losses = np.eye(2)[train_y], []
    while len(losses) < 300 and not loss_settled(losses):
        rows = rng.choice(n, size=min(10, n), replace=False)
        a, target = train_x[rows], onehot[rows]
        pre = a @ params[0] + params[1]
        hidden = np.maximum(pre, 0)
        logits = hidden @ params[2] + params[3]
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        l2 = np.sum(params[0] ** 2) + np.sum(params[2] ** 2)
        losses.append(-np.mean(np.sum(target * np.log(p + 1e-12), 1)) + 1e-3 * l2)
        d_logits = (p - target) / len(a)
        d_pre = d_logits @ params[2].T * (pre > 0)
        grads = [
            a.T @ d_pre + 2e-3 * params[0],
            d_pre.sum(0),
            hidden.T @ d_logits + 2e-3 * params[2],
            d_logits.sum(0),
        ]
        step = len(losses)
        adam_update(params, grads, first, second, step, learning_rate=0.005, epsilon=1e-7)
    hidden = np.maximum(test_x @ params[0] + params[1], 0)
    return float(np.mean(np.argmax(hidden @ params[2] + params[3], 1) == test_y))


def _fit_and_score(features, train, test, rng) -> float:
    (train_a, train_b), (test_a, test_b) = train, test
    train_rows, test_rows = np.concatenate(train), np.concatenate(test)
    train_y = np.repeat([0, 1], [len(train_a), len(train_b)])
    test_y = np.repeat([0, 1], [len(test_a), len(test_b)])
    return head_accuracy(features[train_rows], train_y, features[test_rows], test_y, rng)


def cross_person(features, y, subject, pair, draws, seed=0) -> float:
    """Five shots a class from the pretraining subjects, 40 test windows a class from the
    validation subjects."""
    rng = np.random.default_rng(seed)
    pool, held = np.isin(subject, PRETRAINING), np.isin(subject, hapt.VALIDATION_SUBJECTS)
    accuracies = []
    for _ in range(draws):
        train = [rng.choice(np.flatnonzero(pool & (y == c)), 5, replace=False) for c in pair]
        test = [rng.choice(np.flatnonzero(held & (y == c)), 40, replace=False) for c in pair]
        accuracies.append(_fit_and_score(features, train, test, rng))
    return float(np.mean(accuracies))


def personal(features, y, subject, recording, pair, draws, people, seed=0) -> dict[int, float]:
    """Per person: five shots a class from one recording, up to 40 test windows a class from
    the other, both directions."""
    rng = np.random.default_rng(seed)
    per_person: dict[int, list[float]] = {}
    for person in people:
        for shots_from in (0, 1):
            mine = subject == person
            source = [np.flatnonzero(mine & (recording == shots_from) & (y == c)) for c in pair]
            target = [np.flatnonzero(mine & (recording != shots_from) & (y == c)) for c in pair]
            if min(map(len, source)) < 5 or min(map(len, target)) == 0:
                continue
            for _ in range(draws):
                train = [rng.choice(rows, 5, replace=False) for rows in source]
                test = [rng.choice(rows, min(40, len(rows)), replace=False) for rows in target]
                per_person.setdefault(int(person), []).append(
                    _fit_and_score(features, train, test, rng)
                )
    return {person: float(np.mean(a)) for person, a in per_person.items()}


def head_command(directories: list[str]) -> None:
    x, y, subject, recording = windows()
    people = hapt.VALIDATION_SUBJECTS
    for directory in directories:
        features = Bottleneck(load_manifest(directory), 2).features_of(x)
        pair = (SITTING, STANDING)
        mine = personal(features, y, subject, recording, pair, 4, people)
        others = [p for p in itertools.combinations(range(6), 2) if p != pair]
        cross_others = [cross_person(features, y, subject, p, 4) for p in others]
        personal_others = [
            np.mean(list(personal(features, y, subject, recording, p, 1, people).values()))
            for p in others
        ]
        print(
            f"{directory}: sitting/standing cross-person "
            f"{cross_person(features, y, subject, pair, 16):.3f}, personal "
            f"{np.mean(list(mine.values())):.3f} "
            f"({', '.join(f'{k}: {v:.2f}' for k, v in mine.items())}); other 14 pairs: "
            f"cross-person mean {np.mean(cross_others):.3f} (worst {min(cross_others):.3f}), "
            f"personal mean {np.mean(personal_others):.3f} (worst {min(personal_others):.3f})",
            flush=True,
        )


def sway(x: np.ndarray, block: int = 25) -> np.ndarray:
    """Numpy twin of scripts/artifact_builder/posture_scorer.sway_features."""
    accel, gyro = x[..., :3] / GRAVITY, x[..., 3:]
    gravity = accel.mean(1)
    up = gravity / np.linalg.norm(gravity, axis=1, keepdims=True)
    motion = accel - gravity[:, None]
    vertical = np.einsum("mtj,mj->mt", motion, up)
    across = motion - vertical[..., None] * up[:, None]
    turning = gyro - gyro.mean(1, keepdims=True)
    yaw = np.einsum("mtj,mj->mt", turning, up)
    tilt_rate = turning - yaw[..., None] * up[:, None]
    magnitude = np.linalg.norm(accel, axis=-1)
    count = x.shape[1] // block

    def blocks(v):
        return v[:, : count * block].reshape(len(v), count, block, *v.shape[2:]).mean(2)

    slow_tilt = blocks(tilt_rate)
    slow_tilt -= slow_tilt.mean(1, keepdims=True)
    slow_magnitude = blocks(magnitude)
    fast = magnitude[:, : count * block].reshape(len(x), count, block) - slow_magnitude[..., None]
    values = [
        magnitude.std(1),
        vertical.std(1),
        np.sqrt((across**2).sum(-1).mean(1)),
        yaw.std(1),
        np.sqrt((tilt_rate**2).sum(-1).mean(1)),
        slow_magnitude.std(1),
        blocks(vertical).std(1),
        np.sqrt((slow_tilt**2).sum(-1).mean(1)),
        np.diff(magnitude, axis=1).std(1),
        blocks(yaw).std(1),
        fast.reshape(len(x), -1).std(1),
    ]
    return np.log(np.stack(values, 1) + 1e-5)


def _rotation_between(a, b):
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    cross = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + cross + cross @ cross / (1.0 + c)


def fold_of(person: int) -> int:
    return PRETRAINING.index(person) % FOLDS


def remounted_features(bottleneck, x, y, subject, recording, copies, seed=12) -> list[np.ndarray]:
    """Base features (first 128) of the pretraining subjects' windows, each recording turned by
    the walking-derived mounting of another subject of the same fold (so a fold held out of a
    fit never lends its own mountings to it)."""
    gravity = x[..., :3].mean(1)
    mountings, owners = [], []
    for person in PRETRAINING:
        walking = [gravity[(subject == person) & (recording == r) & (y == 0)] for r in (0, 1)]
        turn = _rotation_between(walking[0].mean(0), walking[1].mean(0))
        mountings += [turn, turn.T]
        owners += [person, person]
    rng = np.random.default_rng(seed)
    pool = np.isin(subject, PRETRAINING)
    out = []
    for _ in range(copies):
        turned = x.copy()
        for person in PRETRAINING:
            usable = [
                i for i, o in enumerate(owners) if o != person and fold_of(o) == fold_of(person)
            ]
            for r in (0, 1):
                rows = (subject == person) & (recording == r)
                turn = mountings[usable[rng.integers(len(usable))]].astype(np.float32)
                turned[rows, :, :3] = x[rows, :, :3] @ turn.T
                turned[rows, :, 3:] = x[rows, :, 3:] @ turn.T
        features = np.zeros((len(x), 128), np.float32)
        features[pool] = bottleneck.features_of(turned[pool])[:, :128]
        out.append(features)
    return out


def _softmax_fit(inputs, labels, hidden, seed=0):
    """Softmax regression (hidden 0: full-batch gradient descent, 600 steps, as the builder's
    linear scorer) or one hidden ReLU layer (full-batch Adam, 400 steps, as posture_scorer)."""
    onehot = np.eye(6)[labels]
    if hidden == 0:
        kernel, bias = np.zeros((inputs.shape[1], 6)), np.zeros(6)
        for _ in range(600):
            z = inputs @ kernel + bias
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            kernel -= 0.5 * (inputs.T @ (p - onehot) / len(inputs) + 1e-3 * kernel)
            bias -= 0.5 * (p - onehot).mean(0)
        return lambda v: v @ kernel + bias
    rng = np.random.default_rng(seed)
    params = [
        rng.normal(0, np.sqrt(2 / inputs.shape[1]), (inputs.shape[1], hidden)),
        np.zeros(hidden),
        rng.normal(0, np.sqrt(1 / hidden), (hidden, 6)),
        np.zeros(6),
    ]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    for step in range(1, 401):
        pre = inputs @ params[0] + params[1]
        act = np.maximum(pre, 0)
        z = act @ params[2] + params[3]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d_z = (p - onehot) / len(inputs)
        d_pre = d_z @ params[2].T * (pre > 0)
        grads = [inputs.T @ d_pre + 1e-3 * params[0], d_pre.sum(0)]
        grads += [act.T @ d_z + 1e-3 * params[2], d_z.sum(0)]
        adam_update(params, grads, first, second, step, learning_rate=0.01, epsilon=1e-8)
    return lambda v: np.maximum(v @ params[0] + params[1], 0) @ params[2] + params[3]


def cross_fit_scores(inputs, turned, y, subject, hidden) -> np.ndarray:
    """Stand-minus-sit scores, each pretraining subject's from a fit without its fold, the
    validation subjects' from a fit on all 17."""
    out = np.zeros(len(inputs))
    for fold in [*range(FOLDS), None]:
        left_out = [p for p in PRETRAINING if fold is not None and fold_of(p) == fold]
        fit = np.isin(subject, PRETRAINING) & ~np.isin(subject, left_out)
        train = np.concatenate([inputs[fit], *(t[fit] for t in turned)])
        score = _softmax_fit(train, np.tile(y[fit], 1 + len(turned)), hidden)
        target = np.isin(subject, left_out) if left_out else ~np.isin(subject, PRETRAINING)
        logits = score(inputs[target])
        out[target] = logits[:, STANDING] - logits[:, SITTING]
    return out


def carried_threshold(values, y, subject, recording) -> dict[int, float]:
    """Per person: threshold at the midpoint of one recording's sitting and standing means,
    balanced accuracy on the other recording, both directions."""
    out: dict[int, list[float]] = {}
    for person in np.unique(subject):
        for r in (0, 1):
            a, b = (subject == person) & (recording == r), (subject == person) & (recording != r)
            sit_a, stand_a = values[a & (y == SITTING)], values[a & (y == STANDING)]
            sit_b, stand_b = values[b & (y == SITTING)], values[b & (y == STANDING)]
            if min(len(sit_a), len(stand_a), len(sit_b), len(stand_b)) < 3:
                continue
            middle, sign = (
                (sit_a.mean() + stand_a.mean()) / 2,
                np.sign(stand_a.mean() - sit_a.mean()),
            )
            right = np.mean(sign * (stand_b - middle) > 0) + np.mean(sign * (sit_b - middle) < 0)
            out.setdefault(int(person), []).append(right / 2)
    return {person: float(np.mean(a)) for person, a in out.items()}


def scorers_command(directory: str) -> None:
    x, y, subject, recording = windows()
    bottleneck = Bottleneck(load_manifest(directory), 2)
    features = bottleneck.features_of(x)[:, :128]
    pool = np.isin(subject, PRETRAINING)
    motion = sway(x)
    motion = (motion - motion[pool].mean(0)) / (motion[pool].std(0) + 1e-6)
    turned = remounted_features(bottleneck, x, y, subject, recording, copies=3)
    with_sway = np.concatenate([features, motion], 1)
    turned_with_sway = [np.concatenate([t, motion], 1) for t in turned]
    variants = [
        ("linear on the 128 features (the previous set)", features, [], 0),
        ("linear, + 11 sway features", with_sway, [], 0),
        ("linear, + other subjects' mountings x3", features, turned, 0),
        ("linear, + sway + mountings", with_sway, turned_with_sway, 0),
        ("32 ReLU units on the 128 features", features, [], 32),
        ("32 ReLU units, + sway", with_sway, [], 32),
        ("32 ReLU units, + mountings", features, turned, 32),
        ("32 ReLU units, + sway + mountings (posture)", with_sway, turned_with_sway, 32),
    ]
    for name, inputs, copies, hidden in variants:
        values = cross_fit_scores(inputs, copies, y, subject, hidden)
        carried = carried_threshold(values, y, subject, recording)
        validation = [carried[p] for p in hapt.VALIDATION_SUBJECTS]
        print(
            f"{name}: carried threshold, 21 subjects {np.mean(list(carried.values())):.3f} "
            f"(worst {min(carried.values()):.2f}), validation {np.mean(validation):.3f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("head", "scorers"))
    p.add_argument("artifacts", nargs="+")
    args = p.parse_args(argv)
    if args.command == "head":
        head_command(args.artifacts)
    else:
        scorers_command(args.artifacts[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
