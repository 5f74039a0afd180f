"""Data-free calibration at 224 px: what each setting of the BatchNorm inversion buys in INT8 agreement with FP32,
and what it costs in minutes and memory (README, "Data-free at 224 px").

    make study-imagenet                                      # first: the FP32 IR, agree5k and the real_2fold cell
    .venv/bin/python benchmarks/bench_datafree_224.py        # the README's variants, one after another
    .venv/bin/python benchmarks/bench_datafree_224.py --variants gkl_b16_60 --seeds 0,2

For each variant (``VARIANTS``, inversion settings of ``calibration.datafree`` in ``config/imagenet.yaml``), a set
of 64 images for EfficientNet-Lite0 is made in a child process (its wall time and peak RSS are the set's own), then
quantized by the two candidates of the ``auto`` method (``fast`` = NNCF's default recipe, ``gptq_histogram`` = the
one ``auto`` picks there) and evaluated on the study's ``agree5k`` (5,000 views of the sample) and ``test`` (the
1,000 sample images). Printed per variant and candidate: agreement with FP32 (Wilson 95 % interval), Δtop-1, and
the paired difference in agreement against the study's ``real_2fold`` cell (real images, two folds, no leakage;
bootstrap interval, McNemar p). Sets are cached in ``--work`` by their settings, so a rerun only evaluates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthcal.evaluation.stats import paired_difference, wilson_rate  # noqa: E402
from synthcal.io import load_image_set, save_image_set  # noqa: E402

STUDY = ROOT / "studies" / "imagenet"
MODEL = "efficientnet_lite0"
BASE = {"count": 64, "compile": False}
VARIANTS = {
    "norm_b32_20": {"batch_size": 32, "iterations": 20},  # before issue 32
    "gkl_b32_20": {"batch_size": 32, "iterations": 20, "bn_loss": "gaussian_kl"},
    "gkl_b32_60": {"batch_size": 32, "iterations": 60, "bn_loss": "gaussian_kl"},
    "norm_b16_60": {"batch_size": 16, "iterations": 60},
    "gkl_b16_40": {"batch_size": 16, "iterations": 40, "bn_loss": "gaussian_kl"},  # config/imagenet.yaml
    "gkl_b16_60": {"batch_size": 16, "iterations": 60, "bn_loss": "gaussian_kl"},
}
CANDIDATES = ("fast", "gptq_histogram")


def _results(*parts: str) -> Path:
    return STUDY / "results" / Path(*parts)


def _generate(settings: dict, seed: int, path: str) -> tuple[float, float]:
    """Child process: one set; returns (seconds, peak RSS in GB) of this process alone."""
    import os

    from synthcal.calibration.datafree import invert_batchnorm
    from synthcal.models import model_spec, torch_classifier

    os.chdir(STUDY)  # the config's paths are relative to the study folder
    config = yaml.safe_load((ROOT / "config" / "imagenet.yaml").read_text())
    classifier = torch_classifier(model_spec(MODEL, config["models"][MODEL]), _results("weights", f"{MODEL}.pt"))
    mean, std = classifier.pixel_space()
    options = {key: value for key, value in settings.items() if key != "count"}
    start = time.perf_counter()
    image_set = invert_batchnorm(classifier, settings["count"], seed, image_size=(224, 224), pixel_mean=mean,
                                 pixel_std=std, model_name=MODEL, show_progress=False, **options)
    seconds = time.perf_counter() - start
    save_image_set(path, image_set.images, image_set.labels, image_set.provenance)
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def make_set(settings: dict, seed: int, work: Path) -> tuple[Path, dict]:
    key = hashlib.sha256(json.dumps({**settings, "seed": seed}, sort_keys=True).encode()).hexdigest()[:12]
    path, record = work / f"set-{key}.npz", work / f"set-{key}.json"
    if not path.exists():
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            seconds, peak = pool.apply(_generate, (settings, seed, str(path)))
        record.write_text(json.dumps({"seconds": seconds, "peak_rss_gb": peak}))
    return path, json.loads(record.read_text())


def int8_predictions(images: np.ndarray, candidate: str, work: Path, tag: str) -> dict[str, np.ndarray]:
    import openvino as ov

    from synthcal.evaluation.evaluate import evaluate_ir
    from synthcal.inference import read_ir
    from synthcal.quantization.auto import DEFAULT_CANDIDATES, quantize_candidate

    recipe = next(entry for entry in DEFAULT_CANDIDATES if entry["id"] == candidate)
    quantized, _ = quantize_candidate(read_ir(_results("models", MODEL, "fp32.xml")), images, recipe)
    xml = work / f"{tag}-{candidate}.xml"
    ov.save_model(quantized, xml)
    predictions = {}
    for name, data in (("agree5k", _results("data", "eval", "agree5k.npz")), ("test", _results("data", "test.npz"))):
        _, logits = evaluate_ir(xml, load_image_set(data, stream=True), show_progress=False)
        predictions[name] = logits.argmax(1)
    return predictions


def cell_predictions(cell: str, test_set: str) -> dict[str, np.ndarray]:
    folder = _results("eval", MODEL, cell)
    path = folder / "predictions.npz" if test_set == "test" else folder / "sets" / test_set / "predictions.npz"
    with np.load(path) as stored:
        return {"predictions": stored["predictions"], "labels": stored["labels"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (the spread between seeds)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "datafree_224")
    args = parser.parse_args()
    if not _results("models", MODEL, "fp32.xml").exists():
        sys.exit("run `make study-imagenet` first: this benchmark uses its FP32 IR, sets and real_2fold cell")
    args.work.mkdir(parents=True, exist_ok=True)
    fp32 = {name: cell_predictions("fp32", name) for name in ("agree5k", "test")}
    real = {name: cell_predictions("real_2fold/default", name)["predictions"] for name in ("agree5k", "test")}
    print("variant | seed | set minutes | set peak RSS | candidate | agree5k agreement [95 %] | Δtop-1 | vs real_2fold "
          "[95 %], McNemar p | sample agreement | Δtop-1")
    for name in args.variants.split(","):
        settings = {**BASE, **VARIANTS[name]}
        for seed in (int(value) for value in args.seeds.split(",")):
            path, cost = make_set(settings, seed, args.work)
            images = load_image_set(path).images
            for candidate in CANDIDATES:
                predictions = int8_predictions(images, candidate, args.work, path.stem)
                cells = []
                for test_set in ("agree5k", "test"):
                    reference, labels = fp32[test_set]["predictions"], fp32[test_set]["labels"]
                    agrees = predictions[test_set] == reference
                    rate = wilson_rate(int(agrees.sum()), len(agrees))
                    delta = (predictions[test_set] == labels).mean() - (reference == labels).mean()
                    versus = paired_difference(agrees, real[test_set] == reference)
                    cells.append((rate, delta, versus))
                (rate, delta, versus), (sample, sample_delta, _) = cells
                print(f"{name} | {seed} | {cost['seconds'] / 60:.1f} | {cost['peak_rss_gb']:.2f} GB | {candidate} | "
                      f"{100 * rate.estimate:.2f} % [{100 * rate.ci_low:.2f}, {100 * rate.ci_high:.2f}] | "
                      f"{100 * delta:+.2f} pp | {100 * versus.estimate:+.2f} pp [{100 * versus.ci_low:+.2f}, "
                      f"{100 * versus.ci_high:+.2f}], p = {versus.mcnemar_p:.2f} | {100 * sample.estimate:.1f} % | "
                      f"{100 * sample_delta:+.1f} pp", flush=True)


if __name__ == "__main__":
    main()
