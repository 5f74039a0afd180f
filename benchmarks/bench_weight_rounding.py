"""What GPTQ weight rounding is worth: one NNCF recipe with and without it, INT8 vs FP32 agreement on a real set.

Reads a finished study's files (FP32 IR, the data-free calibration set, an evaluation set) and prints, per model
and recipe, the agreement with its Wilson interval, the paired difference (bootstrap interval, McNemar p) and the
time spent; and weights only (activations left in float): how much of the disagreement the weights' rounding causes.

    .venv/bin/python benchmarks/bench_weight_rounding.py --results results --models resnet20 resnet56 \\
        --calibration datafree --test-set jpeg10k
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthcal.evaluation.stats import paired_difference, wilson_rate  # noqa: E402
from synthcal.inference import compile_model, infer_logits  # noqa: E402
from synthcal.io import load_image_set  # noqa: E402
from synthcal.quantization.auto import quantize_candidate  # noqa: E402
from synthcal.quantization.weight_rounding import (  # noqa: E402
    GPTQ_DAMP,
    channel_scales,
    round_weights,
    rounded_layers,
    set_weight_matrix,
    weight_matrix,
)

RECIPE = {"id": "histogram", "fast_bias_correction": False, "activations_range": "histogram",
          "overflow_fix": "disable", "bias_correction_images": "fifth"}


def nearest_rounded_weights(model):
    """A copy of the FP32 model with every weight GPTQ would round put on its nearest INT8 step instead (NNCF's)."""
    rounded = model.clone()
    for layer in rounded_layers(rounded):
        weights = weight_matrix(layer)
        scales = channel_scales(weights)[:, None]
        set_weight_matrix(layer, np.round(weights / scales) * scales)
    return rounded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--models", nargs="+", default=["resnet20"])
    parser.add_argument("--calibration", default="datafree")
    parser.add_argument("--test-set", default="jpeg10k", help="an evaluation set under results/data/eval/")
    parser.add_argument("--damp", type=float, default=GPTQ_DAMP)
    args = parser.parse_args()
    import openvino as ov

    results = Path(args.results)
    test_images = load_image_set(results / "data/eval" / f"{args.test_set}.npz").images
    for model_name in args.models:
        fp32_xml = results / "models" / model_name / "fp32.xml"
        calibration = load_image_set(results / "calib" / args.calibration / "32x32" / model_name / "set.npz").images
        fp32 = infer_logits(compile_model(fp32_xml), test_images).argmax(1)
        model = ov.Core().read_model(str(fp32_xml))
        rows = {}
        for label, candidate in (("NNCF rounding", RECIPE),
                                 ("GPTQ rounding", {**RECIPE, "weight_rounding": "gptq", "gptq_damp": args.damp})):
            start = time.perf_counter()
            quantized, recorded = quantize_candidate(model, calibration, candidate)
            seconds = time.perf_counter() - start
            rows[label] = (infer_logits(compile_model(quantized), test_images).argmax(1) == fp32, seconds,
                           recorded.get("weight_rounding", {}).get("seconds", 0.0))
        print(f"\n{model_name}: {RECIPE['id']} recipe on {args.calibration} ({len(calibration)} images), "
              f"agreement with FP32 on {args.test_set} ({len(test_images)} images)")
        for label, (agree, seconds, rounding_seconds) in rows.items():
            rate = wilson_rate(int(agree.sum()), len(agree))
            print(f"  {label}: {rate.estimate:.2%} [{rate.ci_low:.2%}, {rate.ci_high:.2%}]  quantize {seconds:.1f} s "
                  f"(rounding {rounding_seconds:.1f} s)")
        weights_only = {
            "nearest": infer_logits(compile_model(nearest_rounded_weights(model)), test_images).argmax(1) != fp32,
            "GPTQ": infer_logits(compile_model(round_weights(model, calibration, args.damp)[0]),
                                 test_images).argmax(1) != fp32,
        }
        print("  weights only (activations in float), predictions changed: "
              + ", ".join(f"{name} {changed.mean():.2%}" for name, changed in weights_only.items()))
        plain, rounded = rows["NNCF rounding"][0], rows["GPTQ rounding"][0]
        difference = paired_difference(rounded, plain)
        print(f"  GPTQ − NNCF rounding: {difference.estimate:+.2%} "
              f"[{difference.ci_low:+.2%}, {difference.ci_high:+.2%}] (McNemar p = {difference.mcnemar_p:.3g})")


if __name__ == "__main__":
    main()
