"""Evaluator throughput against OpenVINO's own benchmark_app and the seed's per-image loop, for the resnet20
FP32 IR and an INT8 IR of it, on the 1,000 lossless CIFAR-10 test images (images/s, medians of interleaved
repeats).

    .venv/bin/python benchmarks/bench_eval.py [--repeats 5] [--seconds 3] [--shared ../shared]

What each column times (same IR file, batch, INFERENCE_PRECISION_HINT f32, performance hint, streams and
infer requests as the evaluator compiles with):
- evaluator: ``evaluate_ir``'s images_per_second: wall time of its one pass over the test images after its
  warm-up: uint8 NHWC images written as stored, converted to float32 NCHW inside the compiled model
  (``compile_model(uint8_images=True)``), output copies included.
- benchmark_app: ``benchmark_app -m IR -data_shape [B,3,H,W] -inference_only true -hint H -infer_precision
  f32 -t T``: the dynamic-batch IR as the evaluator runs it, inputs filled once before a T-second loop
  (inference only). Its streams and infer requests are checked to equal the evaluator's (it takes
  ``-nstreams`` only with ``-hint none``, and ``-nireq`` changes the hint's stream choice). Its
  "Throughput: X FPS" counts frames (= images); checked here against its Count × batch / Duration.
  ``--static`` reshapes to a fixed batch (``-shape``) instead.
- seed loop: one image per synchronous ``infer`` call on a LATENCY-compiled model, conversion included.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from synthcal.data import read_image_folder
from synthcal.evaluation.evaluate import evaluate_ir
from synthcal.inference import compile_model, to_model_input
from synthcal.models import model_spec
from synthcal.models.export import export_model
from synthcal.quantization.nncf_engine import quantize_model

BENCHMARK_APP = Path(sys.executable).with_name("benchmark_app")


def evaluator_settings(xml: Path) -> dict:
    """The hint, streams and request count the evaluator's compile_model gets on this machine."""
    compiled = compile_model(xml)
    return {"hint": str(compiled.get_property("PERFORMANCE_HINT")).lower(),
            "streams": int(compiled.get_property("NUM_STREAMS")),
            "requests": int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))}


def benchmark_app(xml: Path, settings: dict, batch: int, size: tuple[int, int], seconds: int, static: bool) -> float:
    """Images/s from benchmark_app's Throughput line, after checking what it counts."""
    shape = f"[{batch},3,{size[0]},{size[1]}]"
    shape_args = ["-shape", shape] if static else ["-data_shape", shape, "-inference_only", "true"]
    command = [str(BENCHMARK_APP), "-m", str(xml), "-d", "CPU", *shape_args, "-hint", settings["hint"],
               "-infer_precision", "f32", "-t", str(seconds)]
    log = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    streams = int(re.search(r"NUM_STREAMS: (\d+)", log).group(1))
    requests = int(re.search(r"asynchronously, (\d+) inference requests", log).group(1))
    if (streams, requests) != (settings["streams"], settings["requests"]):
        raise RuntimeError(f"benchmark_app ran {streams} streams / {requests} requests, the evaluator "
                           f"{settings['streams']} / {settings['requests']}:\n{log}")
    fps = float(re.search(r"Throughput:\s+([\d.]+) FPS", log).group(1))
    count = int(re.search(r"Count:\s+(\d+) iterations", log).group(1))
    duration = float(re.search(r"Duration:\s+([\d.]+) ms", log).group(1)) / 1000
    images_rate, batches_rate = count * batch / duration, count / duration
    if abs(fps - images_rate) <= 0.02 * images_rate:
        return fps
    if abs(fps - batches_rate) <= 0.02 * batches_rate:
        return fps * batch
    raise RuntimeError(f"benchmark_app's {fps} FPS is neither {images_rate:.1f} images/s nor {batches_rate:.1f} "
                       f"batches/s ({count} iterations in {duration:.3f} s):\n{log}")


def seed_loop(xml: Path, images: np.ndarray) -> float:
    """Images/s of one image per synchronous infer call on a LATENCY-compiled model (the seed's loop)."""
    request = compile_model(xml, performance_hint="LATENCY").create_infer_request()
    for image in images[:20]:  # warm-up, not timed
        request.infer({0: to_model_input(image[None])})
    start = time.perf_counter()
    for image in images:
        request.infer({0: to_model_input(image[None])})[0].copy()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3, help="benchmark_app -t duration")
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--static", action="store_true", help="benchmark_app on a fixed batch (-shape)")
    args = parser.parse_args()
    shared = Path(args.shared)
    test = read_image_folder(shared / "data/cifar10-lossless/test", show_progress=False)
    train = read_image_folder(shared / "data/cifar10-lossless/train", show_progress=False)
    size = test.images.shape[1:3]
    columns = ("evaluator", "benchmark_app", "seed loop")
    speeds = {(name, column): [] for name in ("fp32", "int8") for column in columns}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_model(model_spec("resnet20", {}), [str(shared / "weights/cifar10_resnet20-4118986f.pt")],
                     tmp / "fp32.xml", tmp / "export.json", test.images[:64])
        quantize_model(tmp / "fp32.xml", train, "default", {"algorithm": "default", "subset_size": 300},
                       tmp / "int8.xml", tmp / "quantize.json")
        settings = {name: evaluator_settings(tmp / f"{name}.xml") for name in ("fp32", "int8")}
        for _ in range(args.repeats):  # interleaved so every column sees the same machine state
            for name in ("fp32", "int8"):
                xml = tmp / f"{name}.xml"
                metrics, _ = evaluate_ir(xml, test, batch_size=args.batch_size, show_progress=False)
                speeds[name, "evaluator"].append(metrics["images_per_second"])
                speeds[name, "benchmark_app"].append(
                    benchmark_app(xml, settings[name], args.batch_size, size, args.seconds, args.static))
                speeds[name, "seed loop"].append(seed_loop(xml, test.images))
    median = {key: statistics.median(values) for key, values in speeds.items()}
    print(f"resnet20, {len(test)} images {size[0]}x{size[1]}, batch {args.batch_size}, precision hint f32, "
          f"{args.repeats} interleaved repeats, benchmark_app -t {args.seconds} "
          f"({'static -shape' if args.static else 'dynamic batch, -data_shape, inference only'})")
    for name in ("fp32", "int8"):
        print(f"{name}: hint {settings[name]['hint']}, {settings[name]['streams']} streams, "
              f"{settings[name]['requests']} infer requests")
    print(f"{'images/s':<10}" + "".join(f"{column:>16}" for column in columns) + "   all repeats")
    for name in ("fp32", "int8"):
        print(f"{name.upper():<10}" + "".join(f"{median[name, column]:>16.0f}" for column in columns) + "   " +
              " | ".join(", ".join(f"{v:.0f}" for v in speeds[name, column]) for column in columns))
    for name in ("fp32", "int8"):
        paired = statistics.median(ours / theirs for ours, theirs in
                                   zip(speeds[name, "evaluator"], speeds[name, "benchmark_app"], strict=True))
        print(f"{name.upper()}: evaluator / seed loop {median[name, 'evaluator'] / median[name, 'seed loop']:.2f}x, "
              f"median of per-repeat evaluator / benchmark_app {paired:.2f}x")
    ratio = {name: median[name, "evaluator"] / median[name, "benchmark_app"] for name in ("fp32", "int8")}
    print(f"evaluator vs benchmark_app: fp32 {ratio['fp32']:.2f}x int8 {ratio['int8']:.2f}x")


if __name__ == "__main__":
    main()
