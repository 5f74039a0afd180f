"""The POT engine: OpenVINO's Post-training Optimization Tool (openvino-dev 2023.3), the 2022 study's quantizer.

Runs only in the side environment (``make pot-env``; rule ``quantize_pot``)::

    python -m synthcal.quantization.pot --fp32 fp32.xml --calibration set.npz --name pot_default \
        --method '{"engine": "pot", "algorithm": "default"}' --xml int8.xml --info quantize.json

Module-level imports are numpy and light synthcal modules only, so the config translation (:func:`pot_algorithms`,
:func:`check_pot_method`) also loads in the main environment; POT itself is imported inside
:func:`quantize_with_pot`.

A method entry with ``engine: pot`` maps onto POT as follows:

* ``algorithm: default`` → DefaultQuantization, ``accuracy_aware`` → AccuracyAwareQuantization (``maximal_drop``,
  absolute drop, the study's 0.02);
* ``preset``, ``target_device``, ``use_fast_bias`` as in POT; ``stat_subset_size``: ``all`` (the whole set, as
  the study ran it) or a number of images (POT takes the first ones; its own default is 300);
* POT's metric (accuracy-aware only) is top-1 over the calibration set against ``validation``: ``labels`` (the
  set's own labels, the study's), ``agreement`` (the FP32 model's top-1; any set) or ``auto`` (labels where the set
  has them, else agreement).

Statistics and metric inference use the evaluator's ``INFERENCE_PRECISION_HINT`` and one infer request (images
in order, so the same inputs give the same IR). Weights are stored in int8 (``compress_model_weights``), as POT's
command line does. The INT8 IR lands beside a ``quantize.json`` with the fields the main evaluator and report
read (method, calibration set, timings, float layers, accuracy control).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from synthcal.io import ImageSet, atomic_path, write_json

POT_ALGORITHMS = {"default": "DefaultQuantization", "accuracy_aware": "AccuracyAwareQuantization"}
POT_DEVICES = ("ANY", "CPU", "GPU", "CPU_SPR")
COMMON_KEYS = {"engine", "algorithm", "preset", "stat_subset_size", "target_device", "use_fast_bias"}
ACCURACY_AWARE_KEYS = {"maximal_drop", "validation", "max_iter_num", "ranking_subset_size", "tune_hyperparams"}
VALIDATIONS = ("labels", "agreement", "auto")


class PotError(ValueError):
    """A POT method entry that cannot run as configured; the message names the key."""


def check_pot_method(name: str, method: dict) -> None:
    """Keys and values POT understands (NNCF-only keys such as ``subset_size`` are refused, not ignored)."""
    key = f"methods.{name}"
    algorithm = method.get("algorithm", "default")
    if algorithm not in POT_ALGORITHMS:
        raise PotError(f"{key}.algorithm {algorithm!r} is not one of {sorted(POT_ALGORITHMS)}")
    allowed = COMMON_KEYS | (ACCURACY_AWARE_KEYS if algorithm == "accuracy_aware" else set())
    unknown = sorted(set(method) - allowed)
    if unknown:
        raise PotError(f"{key}: {', '.join(unknown)} not understood by the POT engine with algorithm {algorithm!r} "
                       f"(POT keys: {', '.join(sorted(allowed))})")
    if method.get("preset", "performance") not in ("performance", "mixed"):
        raise PotError(f"{key}.preset must be performance or mixed")
    if method.get("target_device", "CPU") not in POT_DEVICES:
        raise PotError(f"{key}.target_device {method['target_device']!r} is not one POT knows: {POT_DEVICES}")
    size = method.get("stat_subset_size", "all")
    if size != "all" and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise PotError(f"{key}.stat_subset_size must be 'all' or a positive integer, got {size!r}")
    drop = method.get("maximal_drop", 0.02)
    if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 < drop < 1:
        raise PotError(f"{key}.maximal_drop must lie in (0, 1), got {drop!r}")
    if method.get("validation", "labels") not in VALIDATIONS:
        raise PotError(f"{key}.validation must be one of {VALIDATIONS}")


def stat_subset_size(value, num_images: int) -> int:
    """``all`` (the whole set) or a number of images, never more than the set holds."""
    return num_images if value in (None, "all") else min(int(value), num_images)


def pot_algorithms(name: str, method: dict, num_images: int) -> list[dict]:
    """The ``algorithms`` list POT's ``create_pipeline`` takes, from a method entry."""
    check_pot_method(name, method)
    algorithm = method.get("algorithm", "default")
    params = {
        "target_device": method.get("target_device", "CPU"),
        "preset": method.get("preset", "performance"),
        "stat_subset_size": stat_subset_size(method.get("stat_subset_size", "all"), num_images),
        "use_fast_bias": bool(method.get("use_fast_bias", True)),
    }
    if algorithm == "accuracy_aware":
        params.update(maximal_drop=float(method.get("maximal_drop", 0.02)), drop_type="absolute",
                      tune_hyperparams=bool(method.get("tune_hyperparams", False)))
        for optional in ("max_iter_num", "ranking_subset_size"):
            if optional in method:
                params[optional] = int(method[optional])
    return [{"name": POT_ALGORITHMS[algorithm], "params": params}]


def resolve_validation(name: str, method: dict, calibration: ImageSet) -> str:
    """``labels`` or ``agreement`` for this set (``auto`` picks labels when the set has them)."""
    validation = method.get("validation", "labels")
    if validation == "auto":
        return "labels" if calibration.labelled else "agreement"
    if validation == "labels" and not calibration.labelled:
        raise PotError(f"methods.{name}.validation is 'labels' but the calibration set has no labels; use "
                       "'agreement' (top-1 agreement with the FP32 model) or 'auto'")
    return validation


def top1(logits: np.ndarray, targets: np.ndarray) -> float:
    return float((logits.argmax(1) == targets).mean())


def quantize_with_pot(fp32_xml: str | os.PathLike, calibration: ImageSet, name: str, method: dict,
                      int8_xml: str | os.PathLike, info_path: str | os.PathLike, *,
                      precision_hint: str = "f32") -> dict:
    """Quantize the FP32 IR with POT; writes ``int8.xml``/``.bin`` and ``quantize.json`` (all or nothing)."""
    from openvino.runtime import Core, get_version, serialize
    from openvino.tools.pot import compress_model_weights, create_pipeline, load_model, save_model
    from openvino.tools.pot.utils.logger import init_logger
    from openvino.tools.pot.version import get_version as pot_version

    from synthcal.inference import compile_model, infer_logits, to_model_input
    from synthcal.quantization.ir import fake_quantize_count, float_compute_layers

    if len(calibration) == 0:
        raise PotError("the calibration set is empty")
    _skip_needless_pot_work()
    algorithms = pot_algorithms(name, method, len(calibration))
    accuracy_aware = method.get("algorithm", "default") == "accuracy_aware"
    fp32_xml, int8_xml = Path(fp32_xml), Path(int8_xml)
    init_logger(level="INFO")
    validation = resolve_validation(name, method, calibration) if accuracy_aware else None
    if validation == "agreement":
        targets = infer_logits(compile_model(fp32_xml, precision_hint), calibration.images).argmax(1)
    else:
        targets = calibration.labels
    inputs = to_model_input(calibration.images)
    engine = _engine(inputs, targets, precision_hint, with_metric=accuracy_aware)
    info: dict = {
        "method": name,
        "engine": "pot",
        "algorithm": method.get("algorithm", "default"),
        "config": method,
        "pot_version": pot_version(),
        "openvino_version": get_version(),
        "numpy_version": np.__version__,
        "python": sys.version.split()[0],
        "calibration_set": calibration.provenance,
        "calibration_images_available": len(calibration),
        "calibration_batch_size": 1,
        "pot_algorithms": algorithms,
        "calibration_samples_used": algorithms[0]["params"]["stat_subset_size"],
        "subset_semantics": "stat_subset_size = the first N images; 'all' = whole set as the study ran POT",
        "precision_hint": precision_hint,
    }
    int8_xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pot-", dir=int8_xml.parent) as work:
        if accuracy_aware:
            algorithms[0]["params"]["exec_log_dir"] = work  # POT's log folder, not the working directory
        start = time.perf_counter()
        model = load_model({"model_name": "fp32", "model": str(fp32_xml), "weights": str(fp32_xml.with_suffix(".bin"))})
        quantized = create_pipeline(algorithms, engine).run(model)
        compress_model_weights(quantized)
        saved = save_model(quantized, str(Path(work) / "out"), model_name="int8")[0]
        info["quantization_seconds"] = time.perf_counter() - start
        algorithms[0]["params"].pop("exec_log_dir", None)
        int8_model = Core().read_model(saved["model"])
        _stable_constant_names(int8_model)
        stable = Path(work) / "stable.xml"
        serialize(int8_model, str(stable), str(stable.with_suffix(".bin")))
        saved = {"model": str(stable), "weights": str(stable.with_suffix(".bin"))}
        info["float_layers"] = float_compute_layers(int8_model)
        info["fake_quantize_count"] = fake_quantize_count(int8_model)
        if info["fake_quantize_count"] == 0:
            raise PotError(f"methods.{name}: POT returned a model without FakeQuantize nodes (nothing quantized)")
        if accuracy_aware:
            baseline = top1(infer_logits(compile_model(fp32_xml, precision_hint), calibration.images), targets)
            final = top1(infer_logits(compile_model(saved["model"], precision_hint), calibration.images), targets)
            info["accuracy_control"] = {
                "validation": validation, "validation_images": len(calibration),
                "max_drop": algorithms[0]["params"]["maximal_drop"], "drop_type": "absolute",
                "baseline_metric": baseline, "final_metric": final, "metric_drop": baseline - final,
            }
        with atomic_path(int8_xml.with_suffix(".bin")) as tmp:
            shutil.copyfile(saved["weights"], tmp)
        with atomic_path(int8_xml) as tmp:
            shutil.copyfile(saved["model"], tmp)
    write_json(info_path, info)
    return info


def _skip_needless_pot_work() -> None:
    """Two things POT does that nothing reads, found with cProfile on an accuracy-aware run; the IR bytes stay the
    same (tests/test_pot.py runs a cell without this and compares):

    - Model Optimizer's IR writer, which saves every candidate model POT evaluates, formats the whole graph into
      a debug message for each constant, debug logging on or not; networkx (≥ 2.6) counts every edge to print a
      graph. Graphs print as their name instead.
    - The accuracy-aware loop writes each intermediate model to ``exec_log_dir`` for inspection, and never reads
      it back.
    """
    from openvino.tools.mo.graph.graph import Graph
    from openvino.tools.pot.algorithms.quantization.accuracy_aware_common.algorithm import AccuracyAwareCommon

    Graph.__str__ = lambda graph: str(graph.name)
    AccuracyAwareCommon._save_intermediate_model = lambda algorithm, model: None


def _stable_constant_names(model) -> None:
    """POT names folded constants after OpenVINO's global node counter, which differs from run to run; name each
    after the first input it feeds instead, so the same inputs give the same IR bytes."""
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            targets = sorted((target.get_node().get_friendly_name(), target.get_index())
                             for target in op.output(0).get_target_inputs())
            if targets:
                op.set_friendly_name(f"{targets[0][0]}/input{targets[0][1]}")


def _engine(inputs: np.ndarray, targets: np.ndarray, precision_hint: str, with_metric: bool):
    """POT's IEEngine over the calibration images, compiled with the evaluator's precision hint."""
    from openvino.tools.pot import DataLoader, IEEngine, Metric

    class ImageLoader(DataLoader):
        def __init__(self):
            super().__init__({})

        def __len__(self):
            return len(inputs)

        def __getitem__(self, index):
            return inputs[index], int(targets[index])

    class Top1(Metric):
        name = "top1"

        def __init__(self):
            super().__init__()
            self._matches: list[list[float]] = []

        @property
        def value(self):
            return {self.name: self._matches[-1]}

        @property
        def avg_value(self):
            return {self.name: float(np.mean(np.concatenate(self._matches)))}

        def update(self, output, target):
            self._matches.append((np.asarray(output[0]).argmax(1) == np.asarray(target)).astype(float).tolist())

        def reset(self):
            self._matches = []

        def get_attributes(self):
            return {self.name: {"direction": "higher-better", "type": "accuracy"}}

    engine = IEEngine({"device": "CPU", "stat_requests_number": 1, "eval_requests_number": 1}, ImageLoader(),
                      Top1() if with_metric else None)
    if precision_hint:
        engine._ie.set_property("CPU", {"INFERENCE_PRECISION_HINT": precision_hint})
    return engine


def main(argv: list[str] | None = None) -> None:
    from synthcal.io import load_image_set

    parser = argparse.ArgumentParser(description="Quantize an FP32 IR with POT (side environment only).")
    parser.add_argument("--fp32", required=True, help="FP32 IR (.xml, .bin beside it)")
    parser.add_argument("--calibration", required=True, help="calibration set (.npz)")
    parser.add_argument("--name", required=True, help="method name (methods.<name> in the config)")
    parser.add_argument("--method", required=True, help="the method entry as JSON")
    parser.add_argument("--xml", required=True, help="INT8 IR to write (.bin beside it)")
    parser.add_argument("--info", required=True, help="quantize.json to write")
    parser.add_argument("--precision-hint", default="f32")
    args = parser.parse_args(argv)
    info = quantize_with_pot(args.fp32, load_image_set(args.calibration), args.name, json.loads(args.method),
                             args.xml, args.info, precision_hint=args.precision_hint)
    summary = {key: info[key] for key in ("method", "algorithm", "quantization_seconds", "fake_quantize_count")}
    print(json.dumps({**summary, "float_layers": len(info["float_layers"])}))


if __name__ == "__main__":
    main()
