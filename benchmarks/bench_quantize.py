"""The NNCF quantize step, old settings vs new side by side: one image per NNCF item (before issue 21) vs the
default since, batches of ``STATISTICS_BATCH`` images with statistics per image. Prints the median wall time of
the step in process (``quantize_model``) and as a job (a fresh Python: imports, reading, quantizing, saving),
how far the two INT8 IRs lie apart, and, on each test set given, their agreement with FP32 with the paired
difference (bootstrap interval, McNemar p) and how many images the two INT8 IRs classify differently.

    .venv/bin/python benchmarks/bench_quantize.py --fp32 results/models/resnet20/fp32.xml \\
        --calibration results/calib/cifar10/32x32/set.npz --test results/data/test.npz \\
        --test results/data/eval/jpeg10k.npz --methods default,default_full_bc --repeats 3

Methods come from ``--config`` (default config.yaml). Run it with OMP_NUM_THREADS=1 on a shared machine; wall
times move with the load, CPU times (the process's, every thread; a job's from its exit) much less.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

JOB = """
import sys, json
from synthcal.io import load_image_set
from synthcal.quantization.nncf_engine import quantize_model
quantize_model(sys.argv[1], load_image_set(sys.argv[2]), "bench", json.loads(sys.argv[3]), sys.argv[4], sys.argv[5],
               statistics_batch=int(sys.argv[6]))
"""


def settings() -> dict[str, int]:
    """``statistics_batch`` as the method ran before issue 21 (one image per item) and as it runs now."""
    from synthcal.quantization.nncf_engine import STATISTICS_BATCH

    return {"old (1 image/item)": 1, f"new ({STATISTICS_BATCH}/item)": STATISTICS_BATCH}


def constants_in_order(xml: Path) -> list[np.ndarray]:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return [op.get_data() for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]


def largest_difference(a: Path, b: Path) -> tuple[int, float, float]:
    """(constants that differ, largest absolute difference, largest relative to the constant's own magnitude)."""
    first, second = constants_in_order(a), constants_in_order(b)
    if len(first) != len(second) or any(x.shape != y.shape for x, y in zip(first, second, strict=True)):
        return -1, float("inf"), float("inf")
    differing, largest, relative = 0, 0.0, 0.0
    for x, y in zip(first, second, strict=True):
        if not np.array_equal(x, y):
            differing += 1
            gap = float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max())
            largest = max(largest, gap)
            relative = max(relative, gap / max(float(np.abs(x.astype(np.float64)).max()), 1e-12))
    return differing, largest, relative


def predictions(xml: Path, images: np.ndarray) -> np.ndarray:
    from synthcal.inference import compile_model, infer_logits

    return infer_logits(compile_model(xml, "f32", uint8_images=True), images).argmax(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, default=Path("results/models/resnet20/fp32.xml"))
    parser.add_argument("--calibration", type=Path, default=Path("results/calib/cifar10/32x32/set.npz"))
    parser.add_argument("--test", type=Path, action="append", default=[], help="test set .npz (repeatable)")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--methods", default="default")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting, in process and as a job")
    parser.add_argument("--no-job", action="store_true", help="skip the timing as a fresh process")
    args = parser.parse_args()

    import json

    from synthcal.evaluation.stats import paired_difference
    from synthcal.io import load_image_set
    from synthcal.quantization.nncf_engine import quantize_model

    methods = yaml.safe_load(args.config.read_text())["methods"]
    calibration = load_image_set(args.calibration)
    tests = {path.stem: load_image_set(path) for path in args.test}
    fp32 = {name: predictions(args.fp32, test.images) for name, test in tests.items()}
    print(f"{args.fp32} calibrated on {args.calibration} ({len(calibration)} images); {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as work:
        for method_name in args.methods.split(","):
            method, runs = methods[method_name], settings()
            walls: dict[str, dict[str, list[float]]] = {label: {"process": [], "job": [], "process CPU": [],
                                                                "job CPU": []} for label in runs}
            xml = {label: Path(work) / method_name / str(index) / "int8.xml" for index, label in enumerate(runs)}
            for _ in range(args.repeats):  # old and new alternate, so a slow spell hits both
                for label, statistics_batch in runs.items():
                    started, cpu_started = time.perf_counter(), time.process_time()
                    quantize_model(args.fp32, calibration, method_name, method, xml[label],
                                   xml[label].with_name("quantize.json"), statistics_batch=statistics_batch)
                    walls[label]["process"].append(time.perf_counter() - started)
                    walls[label]["process CPU"].append(time.process_time() - cpu_started)
                    if not args.no_job:
                        started, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                        subprocess.run([sys.executable, "-c", JOB, str(args.fp32), str(args.calibration),
                                        json.dumps(method), str(xml[label].with_name("job.xml")),
                                        str(xml[label].with_name("job.json")), str(statistics_batch)],
                                       check=True, capture_output=True)
                        walls[label]["job"].append(time.perf_counter() - started)
                        after = resource.getrusage(resource.RUSAGE_CHILDREN)
                        walls[label]["job CPU"].append(after.ru_utime + after.ru_stime - children.ru_utime
                                                       - children.ru_stime)
            print(f"\n{method_name}")
            old, new = list(runs)
            for kind in ("process", "job", "process CPU", "job CPU"):
                if not walls[old][kind]:
                    continue
                old_median, new_median = (statistics.median(walls[label][kind]) for label in (old, new))
                figure = "CPU time" if "CPU" in kind else "wall"
                print(f"  {kind.split()[0]:8s} median {figure:8s}  {old}: {old_median:6.1f} s   {new}: "
                      f"{new_median:6.1f} s   ratio {old_median / new_median:.2f}×")
            same = xml[old].with_suffix(".bin").read_bytes() == xml[new].with_suffix(".bin").read_bytes()
            differing, largest, relative = largest_difference(xml[old], xml[new])
            print(f"  INT8 .bin identical: {same}; constants that differ: {differing}, largest difference "
                  f"{largest:.2e} ({relative:.1e} of the constant's magnitude)")
            for name, test in tests.items():
                before, after = predictions(xml[old], test.images), predictions(xml[new], test.images)
                delta = paired_difference(after == fp32[name], before == fp32[name])
                print(f"  {name} ({len(test)} images): agreement with FP32 {np.mean(before == fp32[name]):.2%} → "
                      f"{np.mean(after == fp32[name]):.2%}, Δ {delta.estimate * 100:+.2f} pp "
                      f"[{delta.ci_low * 100:+.2f}, {delta.ci_high * 100:+.2f}], McNemar p = {delta.mcnemar_p:.3g}; "
                      f"old and new INT8 disagree on {int((before != after).sum())} images")


if __name__ == "__main__":
    main()
