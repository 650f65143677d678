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
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from artifact_builder import synthetic
from artifact_builder.head_spec import HeadSpec, OptimizerSpec

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE_HZ = 100.0
WINDOW = 400

#: What the shipped base sees; ``odar bench fewshot`` evaluates on other placements, rates,
#: noise and partly other activities.
PRETRAIN_ACTIVITIES = ("sit", "stand", "lie", "walk", "run", "stairs_up", "stairs_down", "bike")
PRETRAIN_PLACEMENTS = ("wrist", "pocket", "waist", "chest")
PRETRAIN_RATES_HZ = (50.0, 100.0, 200.0)


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
    p.add_argument("--windows-per-activity", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--smoke", action="store_true", help="tiny data and one epoch (CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.windows_per_activity, args.epochs = 12, 1
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
    common = dict(
        rate_hz=SAMPLE_RATE_HZ,
        window=WINDOW,
        placements=PRETRAIN_PLACEMENTS,
        rates_hz=PRETRAIN_RATES_HZ,
    )
    x, y = synthetic.make_windows(PRETRAIN_ACTIVITIES, args.windows_per_activity, rng=rng, **common)
    x_val, y_val = synthetic.make_windows(
        PRETRAIN_ACTIVITIES, max(2, args.windows_per_activity // 5), rng=rng, **common
    )
    provenance = {
        "kind": "synthetic",
        "generator": "scripts/artifact_builder/synthetic.py",
        "activities": list(PRETRAIN_ACTIVITIES),
        "placements": list(PRETRAIN_PLACEMENTS),
        "sensor_rates_hz": list(PRETRAIN_RATES_HZ),
        "wearers": "a fresh random wearer per window (gait frequency, strength, device "
        "orientation, noise, bias, accel 2-16 g and gyro 250-2000 dps ranges)",
        "windows": len(x),
        "validation_windows": len(x_val),
        "seed": args.seed,
        "note": "no real recordings; rebuild with --hhar DIR for a base trained on HHAR",
    }
    return x, y, x_val, y_val, PRETRAIN_ACTIVITIES, provenance


def build_base(args: argparse.Namespace, out_dir: Path) -> tuple[Path, int, dict]:
    from artifact_builder.base_model import BaseSpec, bottleneck_function, pretrain
    from artifact_builder.convert import to_tflite

    spec = BaseSpec(filters=(8, 8, 8, 8), feature_size=16) if args.smoke else BaseSpec()
    x, y, x_val, y_val, activities, provenance = pretraining_data(args)
    started = time.monotonic()
    base, quality = pretrain(spec, x, y, x_val, y_val, len(activities), args.epochs, args.seed)
    quality["pretrain_seconds"] = round(time.monotonic() - started, 1)
    path = out_dir / "bottleneck.tflite"
    path.write_bytes(to_tflite(bottleneck_function(base, WINDOW)))
    info = {
        "origin": "built",
        "architecture": f"scaling (accel/g, |a|, |w|) + Conv1D {list(spec.filters)} stride 2 "
        "+ BatchNorm + ReLU, global average and max pooling",
        "training_data": provenance,
        "quality": quality,
    }
    return path, spec.feature_size, info


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
    for name, make in HEAD_ARTIFACTS.items():
        (out_dir / f"{name}.tflite").write_bytes(to_tflite(make(spec)))
    build_info = {
        "command": "scripts/build_artifacts.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": round(time.monotonic() - started, 1),
    }
    manifest = write_manifest(
        out_dir, spec, classes, bottleneck_path, SAMPLE_RATE_HZ, WINDOW, base_info, build_info
    )
    print(f"wrote {manifest} and five artifacts in {build_info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
