"""FP32 vs INT8 OpenVINO evaluation throughput for resnet20 on the lossless test images (side by side).

    .venv/bin/python benchmarks/bench_eval.py [--repeats 5] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from synthcal.data import read_image_folder
from synthcal.evaluate import evaluate_ir
from synthcal.models import model_spec
from synthcal.models.export import export_model
from synthcal.quantize import quantize_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    shared = Path(args.shared)
    test = read_image_folder(shared / "data/cifar10-lossless/test", show_progress=False)
    train = read_image_folder(shared / "data/cifar10-lossless/train", show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_model(model_spec("resnet20", {}), [str(shared / "weights/cifar10_resnet20-4118986f.pt")],
                     tmp / "fp32.xml", tmp / "export.json", test.images[:64])
        quantize_model(tmp / "fp32.xml", train, "default", {"algorithm": "default", "subset_size": 300},
                       tmp / "int8.xml", tmp / "quantize.json")
        speeds: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(args.repeats):  # interleaved so both see the same machine state
            for name in speeds:
                metrics, _ = evaluate_ir(tmp / f"{name}.xml", test, batch_size=args.batch_size, show_progress=False)
                speeds[name].append(metrics["images_per_second"])
    fp32, int8 = statistics.median(speeds["fp32"]), statistics.median(speeds["int8"])
    print(f"images: {len(test)}  batch: {args.batch_size}  repeats: {args.repeats}  precision hint: f32")
    print(f"FP32 median images/s: {fp32:.0f}   (all: {', '.join(f'{v:.0f}' for v in speeds['fp32'])})")
    print(f"INT8 median images/s: {int8:.0f}   (all: {', '.join(f'{v:.0f}' for v in speeds['int8'])})")
    print(f"INT8 / FP32 speed-up: {int8 / fp32:.2f}x")


if __name__ == "__main__":
    main()
