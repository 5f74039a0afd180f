"""Data-free calibration sets (BatchNorm inversion): wall time per model and, with ``--agreement``, what the set is
worth: INT8 agreement with FP32 after NNCF calibrates on it, with intervals.

    .venv/bin/python benchmarks/bench_datafree.py                      # resnet20, 1,000 images, 2 threads: time
    .venv/bin/python benchmarks/bench_datafree.py --models study --agreement   # the five study models: time,
                                                                       # agreement, and the five-model total
    .venv/bin/python benchmarks/bench_datafree.py --models study --agreement --threads 1 --jobs 2
                                                                       # as the workflow runs them on 2 cores:
                                                                       # two sets at a time, one thread each
    .venv/bin/python benchmarks/bench_datafree.py --compare             # also the previous settings, side by side
    .venv/bin/python benchmarks/bench_datafree.py --models resnet20,shufflenetv2_x0_5 --agreement --cifar10 \\
        --iterations 20,30,40,60                                        # agreement-vs-steps curve, vs real data

Networks with a checkpoint in ../shared/weights (resnet20, resnet56, shufflenetv2_x0_5) use it; the others use
the synthetic weights of ../shared/reference/ARCHITECTURES.md. Their agreement (INT8 vs FP32 of the same synthetic
network, on real test images) is measurable but says less: such a network was never trained on those images.

``--agreement`` does what the workflow does per cell: exports the FP32 IR (``export_model``), quantizes it with
NNCF's ``default`` and ``default_full_bc`` entries of config.yaml (``quantize_model``), and evaluates FP32 and INT8
(``evaluate_ir``) on the 1,000 lossless test images (``test``) and the 10,000 JPEG test images (``jpeg10k``).
Agreement is the share of images where INT8 and FP32 pick the same class, with its Wilson interval; "vs" columns
are paired differences on the same images (bootstrap interval, exact McNemar p; ``synthcal.evaluation.stats``)
against the same model and method calibrated on ``--cifar10`` (100 real training images per class) and on the
``--baseline`` variant. Times are the set's generation only; on a shared machine compare them as ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import yaml

from synthcal.calibration import CalibrationContext, build_calibration_set
from synthcal.calibration.datafree import DEFAULTS, invert_batchnorm, model_settings
from synthcal.data import load_split
from synthcal.evaluation.evaluate import evaluate_ir
from synthcal.evaluation.evaluation_sets import load_evaluation_set
from synthcal.evaluation.stats import paired_difference, wilson_rate
from synthcal.io import ImageSet, load_image_set, save_image_set
from synthcal.models import model_spec, torch_classifier
from synthcal.models.cifar_zoo import build_model, synthetic_state_dict
from synthcal.models.export import export_model
from synthcal.quantization.nncf_engine import quantize_model

ROOT = Path(__file__).resolve().parents[1]
STUDY_MODELS = ["resnet20", "vgg16_bn", "mobilenetv2_x1_4", "shufflenetv2_x2_0", "repvgg_a2"]
OFFLINE_MODELS = ["resnet20", "resnet56", "shufflenetv2_x0_5"]
REAL_WEIGHTS = {"resnet20": "weights/cifar10_resnet20-4118986f.pt",
                "resnet56": "weights/cifar10_resnet56-187c023a.pt",
                "shufflenetv2_x0_5": "weights/cifar10_shufflenetv2_x0_5-1308b4e9.pt"}
# the settings before issue 13: augmented, 120 steps at lr 0.2, float32, eager
PREVIOUS = {"iterations": 120, "lr": 0.2, "jitter": 2, "flip": True, "precision": "fp32", "compile": False}
METHODS = ("default", "default_full_bc")
CIFAR10 = {"kind": "cifar10", "per_class": 100, "seed": 0}


def weights_file(name: str, shared: Path, workdir: Path) -> tuple[Path, str]:
    """The real checkpoint where ../shared has one, else the synthetic weights saved as a state_dict file."""
    if name in REAL_WEIGHTS and (shared / REAL_WEIGHTS[name]).exists():
        return shared / REAL_WEIGHTS[name], "real"
    path = workdir / f"{name}-synthetic.pt"
    if not path.exists():
        with np.load(shared / "reference/zoo_golden.npz") as golden:
            stats = {key: golden[key] for key in golden.files}
        network = build_model(name)
        torch.save(synthetic_state_dict(network, stats, prefix=f"{name}/"), path)
    return path, "synthetic"


def shipped_settings(name: str) -> dict:
    """The model's settings in the shipped datafree entry: config.yaml's for its models, else config/offline.yaml's."""
    study = yaml.safe_load((ROOT / "config.yaml").read_text())
    config = study if name in study["models"] else yaml.safe_load((ROOT / "config/offline.yaml").read_text())
    return model_settings(config["calibration"]["datafree"], name)


def cached_set(path: Path, make) -> ImageSet:
    if path.exists():
        return load_image_set(path)
    image_set = make()
    save_image_set(path, image_set.images, image_set.labels, image_set.provenance)
    return load_image_set(path)


def test_sets(shared: Path, workdir: Path) -> dict[str, ImageSet]:
    lossless = {"source": "folder", "folders": {"test": str(shared / "data/cifar10-lossless/test")}}
    jpeg = {"source": "folder", "path": str(shared / "data/cifar10-jpeg.tar.gz/cifar10-jpeg/test"), "lossy": True}
    return {"test": cached_set(workdir / "test.npz", lambda: load_split(lossless, "test", workdir, False)),
            "jpeg10k": cached_set(workdir / "jpeg10k.npz", lambda: load_evaluation_set("jpeg10k", jpeg, workdir,
                                                                                       False))}


def cifar10_set(shared: Path, workdir: Path) -> ImageSet:
    train = {"source": "folder", "folders": {"train": str(shared / "data/cifar10-lossless/train")}}
    cached_set(workdir / "train.npz", lambda: load_split(train, "train", workdir, False))
    return build_calibration_set("cifar10", CIFAR10, CalibrationContext(train_path=str(workdir / "train.npz")))


def generate(name: str, model, count: int, threads: int, settings: dict, path: Path) -> tuple[ImageSet, float]:
    """The data-free set (cached in ``path`` with its generation time)."""
    timing = path.with_suffix(".json")
    if path.exists() and timing.exists():
        return load_image_set(path), json.loads(timing.read_text())["seconds"]
    started = time.perf_counter()
    result = invert_batchnorm(model, count, 0, num_threads=threads, model_name=name, show_progress=False, **settings)
    seconds = time.perf_counter() - started
    save_image_set(path, result.images, result.labels, result.provenance)
    timing.write_text(json.dumps({"seconds": seconds}))
    return result, seconds


def _generate_in_worker(task: tuple) -> float:
    """One set in a worker process (``--jobs``): its generation seconds."""
    name, network, count, threads, settings, path = task
    model = torch_classifier(model_spec(name, {"weights": {"source": "path", "path": str(network)}}), network)
    return generate(name, model, count, threads, settings, path)[1]


def generate_all(tasks: list[tuple], jobs: int) -> float:
    """Every set of ``tasks`` with ``jobs`` at a time (fresh processes: torch's thread pool does not survive a fork);
    the wall seconds until the last one is done."""
    started = time.perf_counter()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_generate_in_worker, tasks))
    return time.perf_counter() - started


def variant_settings(name: str, overrides: dict | None) -> dict:
    """The model's shipped inversion settings with a variant's overrides over them."""
    return {**shipped_settings(name), **(overrides or {})}


def set_path(folder: Path, settings: dict) -> Path:
    tag = hashlib.sha256(json.dumps({**DEFAULTS, **settings}, sort_keys=True).encode()).hexdigest()[:12]
    return folder / f"sets/{tag}.npz"


def predictions(xml: Path, test: dict[str, ImageSet], cache: Path) -> dict[str, np.ndarray]:
    """Top-1 classes of the IR on every test set (cached beside it)."""
    if not cache.exists():
        np.savez(cache, **{key: evaluate_ir(xml, images, show_progress=False)[1].argmax(1)
                           for key, images in test.items()})
    with np.load(cache) as stored:
        return {key: stored[key] for key in stored.files}


def cell_predictions(fp32_xml: Path, calibration: ImageSet, methods: dict, test: dict, folder: Path) -> dict:
    """method → test set → INT8 top-1 classes, quantized exactly as the workflow's rule ``quantize`` does."""
    result = {}
    for method, entry in methods.items():
        xml = folder / method / "int8.xml"
        if not (folder / method / "predictions.npz").exists():
            quantize_model(fp32_xml, calibration, method, entry, xml, folder / method / "quantize.json")
        result[method] = predictions(xml, test, folder / method / "predictions.npz")
    return result


def pp(value: float) -> str:
    return f"{100 * value:+.1f}"


def describe(cell: dict, fp32: dict, references: dict[str, dict]) -> list[str]:
    lines = []
    for method, by_set in cell.items():
        for test_set, predicted in by_set.items():
            agrees = predicted == fp32[test_set]
            rate = wilson_rate(int(agrees.sum()), len(agrees))
            text = (f"    {method:16s} {test_set:8s} agreement {100 * rate.estimate:.1f} % "
                    f"[{100 * rate.ci_low:.1f}, {100 * rate.ci_high:.1f}]")
            for label, reference in references.items():
                other = reference[method][test_set] == fp32[test_set]
                difference = paired_difference(agrees, other)
                text += (f"; vs {label} {pp(difference.estimate)} pp [{pp(difference.ci_low)}, "
                         f"{pp(difference.ci_high)}] p={difference.mcnemar_p:.2g}")
            lines.append(text)
    return lines


def parse_variants(args) -> dict[str, dict | None]:
    """label → settings over the model's shipped ones (None: as shipped, config.yaml / config/offline.yaml)."""
    variants: dict[str, dict | None] = {}
    for value in (args.iterations.split(",") if args.iterations else []):
        variants[f"{int(value)} steps"] = {"iterations": int(value)}
    variants = variants or {"now": None}
    if args.compare:
        variants["previous"] = PREVIOUS
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20",
                        help="comma-separated names, 'study' (the five study models) or 'offline' (its three)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1,
                        help="sets generated at a time, each with --threads (the workflow: 2 cores, 1 thread each)")
    parser.add_argument("--iterations", help="comma-separated step counts to sweep (default: the model's default)")
    parser.add_argument("--compare", action="store_true", help="also run the previous settings (slow)")
    parser.add_argument("--agreement", action="store_true", help="quantize with NNCF and measure INT8 agreement")
    parser.add_argument("--cifar10", action="store_true", help="with --agreement: also calibrate on real images")
    parser.add_argument("--baseline", default="",
                        help="with --agreement: the variant label the others are compared with, e.g. '60 steps'")
    parser.add_argument("--workdir", help="keep sets, IRs and predictions here and reuse them (default: temporary)")
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    args = parser.parse_args()
    names = {"study": STUDY_MODELS, "offline": OFFLINE_MODELS}.get(args.models) or args.models.split(",")
    shared = Path(args.shared)
    variants = parse_variants(args)
    config_methods = yaml.safe_load((ROOT / "config.yaml").read_text())["methods"]
    methods = {method: config_methods[method] for method in METHODS}
    print(f"defaults: {DEFAULTS}")
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(args.workdir or temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        test = test_sets(shared, workdir) if args.agreement else {}
        real = cifar10_set(shared, workdir) if args.agreement and args.cifar10 else None
        totals = dict.fromkeys(variants, 0.0)
        parallel_wall = None
        if args.jobs > 1:
            tasks = [(name, weights_file(name, shared, workdir)[0], args.count, args.threads, settings,
                      set_path(workdir / name, settings))
                     for name in names for settings in (variant_settings(name, o) for o in variants.values())]
            tasks.sort(key=lambda task: -Path(task[1]).stat().st_size)  # largest networks first: no long tail
            parallel_wall = generate_all(tasks, args.jobs)
        for name in names:
            network, weights = weights_file(name, shared, workdir)
            spec = model_spec(name, {"weights": {"source": "path", "path": str(network)}})
            model = torch_classifier(spec, network)
            folder = workdir / name
            references, cells, fp32 = {}, {}, {}
            if args.agreement:
                fp32_xml = folder / "fp32.xml"
                if not fp32_xml.exists():
                    export_model(spec, [str(network)], fp32_xml, folder / "export.json",
                                 parity_images=test["test"].images[:64])
                fp32 = predictions(fp32_xml, test, folder / "fp32.npz")
                if real is not None:
                    references["cifar10"] = cell_predictions(fp32_xml, real, methods, test, folder / "cifar10")
            for variant, overrides in variants.items():
                settings = variant_settings(name, overrides)
                path = set_path(folder, settings)
                image_set, seconds = generate(name, model, args.count, args.threads, settings, path)
                totals[variant] += seconds
                provenance = image_set.provenance
                print(f"{name} ({weights} weights, {variant}: {provenance['iterations']} steps/batch, "
                      f"{provenance['precision']}, compiled {provenance['compiled']}): {seconds:.1f} s, "
                      f"bn loss {provenance['bn_loss_initial']:.2f} -> {provenance['bn_loss_final']:.3f}", flush=True)
                if args.agreement:
                    cells[variant] = cell_predictions(fp32_xml, image_set, methods, test, folder / "cells" / path.stem)
            for variant, cell in cells.items():
                against = {**references, **({args.baseline: cells[args.baseline]}
                                            if args.baseline in cells and variant != args.baseline else {})}
                print(f"  {name} {variant}:")
                print("\n".join(describe(cell, fp32, against)), flush=True)
        for variant, seconds in totals.items():
            print(f"total ({variant}, {len(names)} models x {args.count} images, {args.threads} threads): "
                  f"{seconds:.1f} s = {seconds / 60:.1f} min of set generation")
        if parallel_wall is not None:
            print(f"all {len(names) * len(variants)} sets, {args.jobs} at a time with {args.threads} thread(s) each: "
                  f"{parallel_wall:.1f} s = {parallel_wall / 60:.1f} min wall")
        if args.compare:
            first = next(iter(totals))
            print(f"speed-up {first} vs previous: {totals['previous'] / totals[first]:.2f}x")


if __name__ == "__main__":
    main()
