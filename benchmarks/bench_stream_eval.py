"""A 50,000-image ImageNet-style folder through the workflow's own jobs (issue 31): the test split built and the FP32
EfficientNet-Lite0 IR evaluated at 224 px, each job's peak RSS from Snakemake's ``benchmark:`` files, and the
evaluation's images/s beside OpenVINO's ``benchmark_app`` on the same IR, precision and cores (the evaluation job
is given both cores with ``--set-threads``; in a study it takes one, so two run side by side).

The folder is the ImageNet sample's 1,000 images repeated by symbolic links (``--images`` in all, one class folder
per class). Runs ``snakemake`` on ``config/imagenet.yaml`` with the test folder swapped, in a scratch directory.

    .venv/bin/python benchmarks/bench_stream_eval.py --images 50000
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"
MODEL = "efficientnet_lite0"


def linked_folder(root: Path, images: int) -> Path:
    """``images`` links to the sample's files, round-robin over its classes (one folder per class)."""
    classes = sorted(path for path in SAMPLE.iterdir() if path.is_dir())
    for index in range(images):
        wnid = classes[index % len(classes)]
        (root / wnid.name).mkdir(parents=True, exist_ok=True)
        source = next(wnid.iterdir())
        (root / wnid.name / f"{index:06d}{source.suffix}").symlink_to(source)
    return root


def study_config(folder: Path, workdir: Path) -> Path:
    config = yaml.safe_load((REPO / "config" / "imagenet.yaml").read_text())
    config["data"]["folders"]["test"] = str(folder)
    config["study"] = [{"models": [MODEL], "calibration": ["noise"], "methods": ["default"], "test_sets": []}]
    config.pop("evaluation", None)
    path = workdir / "bench-stream.yaml"  # not config.yaml: it would replace the checkout's as the base
    path.write_text(yaml.safe_dump(config))
    return path


def benchmark_app(xml: Path, batch: int, seconds: int) -> float:
    """Throughput (images/s) of OpenVINO's own benchmark_app: f32, throughput hint, the evaluation's batch, all the
    machine's cores, as the evaluation job has them (benchmark_app's -nthreads would need -hint none)."""
    run = subprocess.run([str(REPO / ".venv" / "bin" / "benchmark_app"), "-m", str(xml), "-d", "CPU", "-hint",
                          "throughput", "-infer_precision", "f32", "-t", str(seconds),
                          "-shape", f"[{batch},3,224,224]"], capture_output=True, text=True, check=True)
    return float(re.search(r"Throughput:\s+([\d.]+) FPS", run.stdout).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--app-seconds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as scratch:
        scratch = Path(scratch)
        folder = linked_folder(scratch / "val", args.images)
        workdir = scratch / "study"
        workdir.mkdir()
        target = f"results/eval/{MODEL}/fp32/metrics.json"
        started = time.perf_counter()
        subprocess.run([str(REPO / ".venv" / "bin" / "snakemake"), target, "-s", str(REPO / "Snakefile"),
                        "--cores", "2", "--set-threads", "evaluate_fp32=2",  # both cores, as benchmark_app has
                        "-d", str(workdir), "--configfile", str(study_config(folder, workdir))],
                       check=True, cwd=REPO)
        wall = time.perf_counter() - started
        rows = []
        for tsv in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
            record = pd.read_csv(tsv, sep="\t").iloc[0]
            rows.append({"job": str(tsv.relative_to(workdir / "results" / "benchmarks")), "s": record["s"],
                         "max_rss_MB": record["max_rss"]})
        print(pd.DataFrame(rows).to_string(index=False))
        metrics = json.loads((workdir / target).read_text())
        metrics |= json.loads((workdir / target).with_name("timing.json").read_text())  # the pass's speed
        app = benchmark_app(workdir / "results" / "models" / MODEL / "fp32.xml", metrics["batch_size"],
                            args.app_seconds)
        print(json.dumps({"images": args.images, "batch_size": metrics["batch_size"],
                          "top1": metrics["top1"], "evaluate_images_per_second": round(metrics["images_per_second"], 1),
                          "benchmark_app_images_per_second": app,
                          "ratio": round(metrics["images_per_second"] / app, 3),
                          "peak_rss_MB": max(row["max_rss_MB"] for row in rows), "wall_s": round(wall, 1)}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
