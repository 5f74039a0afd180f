"""Data-free calibration-set generation (BatchNorm inversion): wall time and BN loss per model.

    .venv/bin/python benchmarks/bench_datafree.py                      # resnet20, 1,000 images, 2 threads
    .venv/bin/python benchmarks/bench_datafree.py --models study       # the five study models, one after another
    .venv/bin/python benchmarks/bench_datafree.py --compare             # also the previous settings, side by side

resnet20 uses its real checkpoint from ../shared; other architectures use the synthetic weights of
../shared/reference/ARCHITECTURES.md (speed does not depend on the values). "bn loss" is the set's
``bn_loss_final``: the BN-statistics loss of the uint8 output, averaged over its generation batches.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from synthcal.calibration.datafree import DEFAULTS, invert_batchnorm
from synthcal.models.cifar_zoo import build_model, synthetic_state_dict
from synthcal.models.raw_pixels import RawPixelClassifier
from synthcal.models.zoo import ZOO_INPUT, load_zoo_classifier

STUDY_MODELS = ["resnet20", "vgg16_bn", "mobilenetv2_x1_4", "shufflenetv2_x2_0", "repvgg_a2"]
REAL_WEIGHTS = {"resnet20": "weights/cifar10_resnet20-4118986f.pt"}
# the settings before issue 13: augmented, 120 steps at lr 0.2, float32, eager
PREVIOUS = {"iterations": 120, "lr": 0.2, "jitter": 2, "flip": True, "precision": "fp32", "compile": False}


def classifier(name: str, shared: Path):
    if name in REAL_WEIGHTS and (shared / REAL_WEIGHTS[name]).exists():
        return load_zoo_classifier(name, shared / REAL_WEIGHTS[name]), "real"
    with np.load(shared / "reference/zoo_golden.npz") as golden:
        stats = {key: golden[key] for key in golden.files}
    network = build_model(name)
    network.load_state_dict(synthetic_state_dict(network, stats, prefix=f"{name}/"), strict=True)
    return RawPixelClassifier(network, ZOO_INPUT).eval(), "synthetic"


def run(name: str, model, count: int, threads: int, settings: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    result = invert_batchnorm(model, count, 0, num_threads=threads, model_name=name, show_progress=False,
                              **settings)
    return time.perf_counter() - started, result.provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20", help="comma-separated names, or 'study' for all five")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", action="store_true", help="also run the previous settings (slow)")
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    args = parser.parse_args()
    names = STUDY_MODELS if args.models == "study" else args.models.split(",")
    shared = Path(args.shared)
    variants = {"now": {}} | ({"previous": PREVIOUS} if args.compare else {})
    print(f"defaults: {DEFAULTS}")
    totals = dict.fromkeys(variants, 0.0)
    for name in names:
        model, weights = classifier(name, shared)
        for variant, settings in variants.items():
            seconds, provenance = run(name, model, args.count, args.threads, settings)
            totals[variant] += seconds
            print(f"{name} ({weights} weights, {variant}: {provenance['iterations']} steps/batch, "
                  f"{provenance['precision']}, compiled {provenance['compiled']}): {seconds:.1f} s, "
                  f"bn loss {provenance['bn_loss_initial']:.2f} -> {provenance['bn_loss_final']:.3f}", flush=True)
            if variant == "now":
                print(f"datafree: {args.count} images in {seconds:.1f} s, bn loss {provenance['bn_loss_final']:.3f}",
                      flush=True)
    for variant, seconds in totals.items():
        print(f"total ({variant}, {len(names)} models x {args.count} images, {args.threads} threads): "
              f"{seconds:.1f} s = {seconds / 60:.1f} min")
    if args.compare:
        print(f"speed-up now vs previous: {totals['previous'] / totals['now']:.2f}x")


if __name__ == "__main__":
    main()
