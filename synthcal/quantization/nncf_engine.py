"""INT8 quantization with NNCF: ``default`` (≈ POT DefaultQuantization) and ``accuracy_aware``
(≈ POT AccuracyAwareQuantization), configured by a named method entry of the config."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openvino as ov

from synthcal.inference import batch_within, compile_model, fixed_batch, infer_logits, read_ir, to_model_input
from synthcal.io import ImageSet, write_json
from synthcal.models.export import save_ir
from synthcal.quantization.ignored_scope import IgnoredScopeError, check_ignored_scope
from synthcal.quantization.ir import fake_quantize_count, float_compute_layers


@contextlib.contextmanager
def without_torch():
    """``import torch`` fails inside (where torch is not loaded yet). NNCF imports torch to register its torch
    tensor functions and, in every ``nncf.quantize``, to ask whether the model is a torch model; a job quantizing
    an IR needs neither and saves about 1.3 s of start-up (41 jobs in the offline study). Bytes are unchanged
    (checked on resnet20 and resnet56 IRs)."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # what Python's import system reads as "not importable"
    try:
        yield
    finally:
        if sys.modules.get("torch", False) is None:
            del sys.modules["torch"]


with without_torch():
    import nncf

ALGORITHMS = ("default", "accuracy_aware")
STATISTICS_BATCH = 100  # images per NNCF calibration item when the method names no batch_size (32-px inputs)
STATISTICS_PIXELS = STATISTICS_BATCH * 32 * 32  # larger inputs: fewer images per item (224 px: 2), same memory


class QuantizationError(RuntimeError):
    """A method that cannot run with the given calibration set or parameters."""


def _subset_size(value, num_items: int) -> int:
    """``all`` (POT's default: the whole set) or a number of dataset items (NNCF's default: 300)."""
    return num_items if value in (None, "all") else min(int(value), num_items)


def _ignored_scope(spec: dict | None) -> nncf.IgnoredScope | None:
    if not spec:
        return None
    return nncf.IgnoredScope(names=spec.get("names", []), types=spec.get("types", []),
                             patterns=spec.get("patterns", []), validate=spec.get("validate", True))


def _advanced_parameters(spec: dict | None, *, per_image_statistics: bool = False
                         ) -> nncf.AdvancedQuantizationParameters | None:
    """The advanced parameters NNCF takes as plain values (see the config schema for the list);
    ``per_image_statistics``: statistics of every image of a batched item (NNCF's ``batchwise_statistics``)."""
    if not spec and not per_image_statistics:
        return None
    spec = dict(spec or {})
    if "overflow_fix" in spec:
        spec["overflow_fix"] = nncf.OverflowFix(spec["overflow_fix"])
    if per_image_statistics:
        spec["batchwise_statistics"] = True
    return nncf.AdvancedQuantizationParameters(**spec)


def nncf_arguments(method: dict, num_items: int, subset_items: int | None = None) -> dict:
    """Arguments shared by both NNCF entry points, resolved from a method's config entry (``subset_items``: the
    subset already resolved to dataset items)."""
    arguments = {
        "preset": nncf.QuantizationPreset(method.get("preset", "performance")),
        "target_device": nncf.TargetDevice[method.get("target_device", "CPU").upper()],
        "subset_size": (subset_items if subset_items is not None
                        else _subset_size(method.get("subset_size", "all"), num_items)),
        "fast_bias_correction": bool(method.get("fast_bias_correction", True)),
        "model_type": nncf.ModelType(method["model_type"]) if method.get("model_type") else None,
        "ignored_scope": _ignored_scope(method.get("ignored_scope")),
    }
    return arguments


class _Batches(Sequence):
    """NNCF's calibration items: the first ``count`` images (default all) in batches, each read and converted when
    NNCF asks for it, so a set on disk (``StoredImages``, e.g. a crossfold cell's half of a 50,000-image test
    split) is never held whole."""

    def __init__(self, images, batch_size: int, count: int | None = None):
        self.images, self.per_item = images, int(batch_size)  # not `batch_size`: NNCF reads that as a DataLoader's
        self.count = len(images) if count is None else min(int(count), len(images))

    def __len__(self) -> int:
        return -(-self.count // self.per_item)

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.per_item
        return to_model_input(np.asarray(self.images[start:min(start + self.per_item, self.count)]))


def per_image_items(images, count: int, statistics_batch: int = STATISTICS_BATCH) -> _Batches:
    """The first ``count`` images as NNCF items for statistics per image (``batchwise_statistics``):
    ``statistics_batch`` images an item, fewer for larger inputs (``STATISTICS_PIXELS``: 2 at 224 px)."""
    return _Batches(images, batch_within(statistics_batch, images.shape[1], images.shape[2], STATISTICS_PIXELS), count)


def calibration_items(images: np.ndarray, method: dict, statistics_batch: int = STATISTICS_BATCH
                      ) -> tuple[Sequence[np.ndarray], int, dict]:
    """NNCF's calibration items, the subset in items, and what to record.

    ``batch_size: 1`` (the schema's default) means statistics per image. For ``algorithm: default`` the subset's
    images then go to NNCF in batches of ``statistics_batch`` with statistics still taken per image
    (``batchwise_statistics``): the same ranges as one image per item, and the same images for bias correction,
    at a fraction of NNCF's per-item cost (resnet20, 1,000 images: 2.9× less CPU time, full bias correction 2.0×;
    benchmarks/bench_quantize.py). Bias shifts are summed in another order, so they move in the last float bits
    (≤ 2e-6; agreement with FP32 unchanged). Accuracy-aware methods keep one image per item: their
    layer-by-layer search is path-dependent, and those bits changed which layers it reverted (noise set: 27
    instead of 16 of 32). ``batch_size`` > 1 keeps NNCF's own batch semantics: statistics of whole batches,
    ``subset_size`` counting batches. ``statistics_batch=1``: one image per item, as before issue 21. Items hold
    at most ``STATISTICS_PIXELS`` pixels (224 px: 2 images), else NNCF's activations at 224 px need gigabytes.
    """
    batch_size = int(method.get("batch_size", 1))
    if batch_size > 1 or statistics_batch <= 1 or method.get("algorithm", "default") != "default":
        items = _Batches(images, batch_size)
        subset = _subset_size(method.get("subset_size", "all"), len(items))
        return items, subset, {"calibration_batch_size": batch_size, "per_image_statistics": batch_size == 1,
                               "calibration_samples_used": min(subset * batch_size, len(images)),
                               "subset_semantics": "items of calibration_batch_size images; "
                                                   "'all' = whole set as POT did"}
    used = _subset_size(method.get("subset_size", "all"), len(images))
    items = per_image_items(images, used, statistics_batch)
    return items, len(items), {"calibration_batch_size": items.per_item, "per_image_statistics": True,
                               "calibration_samples_used": used,
                               "subset_semantics": "the first subset_size images, statistics per image; "
                                                   "'all' = whole set as POT did"}


def quantize_model(fp32_xml: str | os.PathLike, calibration: ImageSet, method_name: str, method: dict,
                   int8_xml: str | os.PathLike, info_path: str | os.PathLike, *, precision_hint: str = "f32",
                   extra_info: dict | None = None, statistics_batch: int = STATISTICS_BATCH) -> dict:
    """Quantize the FP32 IR with one method entry; writes the INT8 IR and a JSON of what happened
    (``statistics_batch``: see :func:`calibration_items`)."""
    algorithm = method.get("algorithm", "default")
    if algorithm not in ALGORITHMS:
        raise QuantizationError(f"methods.{method_name}.algorithm {algorithm!r} is not one of {ALGORITHMS}")
    if len(calibration) == 0:
        raise QuantizationError("the calibration set is empty")
    model = read_ir(fp32_xml)
    try:  # in NNCF's place, in words naming the key
        check_ignored_scope(method_name, method.get("ignored_scope"),
                            [op.get_friendly_name() for op in model.get_ordered_ops()], str(fp32_xml))
    except IgnoredScopeError as error:
        raise QuantizationError(str(error)) from None
    if fixed_batch(model):  # an IR that keeps an ONNX graph's fixed batch (issue 35): one image per item
        if fixed_batch(model) != 1 or int(method.get("batch_size", 1)) != 1:
            raise QuantizationError(f"methods.{method_name}: the FP32 IR {fp32_xml} has a fixed batch of "
                                    f"{fixed_batch(model)}; NNCF can feed it only batch_size: 1")
        statistics_batch = 1
    items, subset_items, batching = calibration_items(calibration.images, method, statistics_batch)
    arguments = nncf_arguments(method, len(items), subset_items)
    advanced = _advanced_parameters(method.get("advanced"),
                                    per_image_statistics=batching["calibration_batch_size"] > 1
                                    and batching["per_image_statistics"])
    info: dict = {
        "method": method_name,
        "engine": "nncf",
        "algorithm": algorithm,
        "config": method,
        "nncf_version": nncf.__version__,
        "openvino_version": ov.get_version(),
        "calibration_set": calibration.provenance,
        "calibration_images_available": len(calibration),
        **batching,
        "nncf_arguments": {key: str(value) if value is not None else None for key, value in arguments.items()},
    }
    start = time.perf_counter()
    calibration_dataset = nncf.Dataset(items)
    if algorithm == "default":
        with without_torch():
            quantized = nncf.quantize(model, calibration_dataset, **arguments, advanced_parameters=advanced)
    else:
        quantized = _quantize_with_accuracy_control(model, calibration, calibration_dataset, method, method_name,
                                                    arguments, advanced, precision_hint, info)
    info["quantization_seconds"] = time.perf_counter() - start
    info["float_layers"] = float_compute_layers(quantized)
    info["fake_quantize_count"] = fake_quantize_count(quantized)
    info.update(extra_info or {})
    save_ir(quantized, int8_xml)
    write_json(info_path, info)
    return info


def _quantize_with_accuracy_control(model, calibration: ImageSet, calibration_dataset, method: dict,
                                    method_name: str, arguments: dict, advanced, precision_hint: str,
                                    info: dict) -> ov.Model:
    validation = method.get("validation", "labels")
    if validation == "auto":  # the study's choice where it can be made: labels, else FP32 agreement
        validation = "labels" if calibration.labelled else "agreement"
    count = method.get("validation_count")
    if count and count > len(calibration):
        logging.getLogger(__name__).warning(
            "methods.%s.validation_count = %d but the calibration set has %d images: validating on all %d",
            method_name, count, len(calibration), len(calibration))
        info["validation_count_capped"] = {"requested": count, "used": len(calibration)}
    images = calibration.images[:count] if count else calibration.images
    if validation == "labels":
        if not calibration.labelled:
            raise QuantizationError(
                f"methods.{method_name}.validation is 'labels' but the calibration set has no labels; "
                "use 'agreement' (top-1 agreement with the FP32 model) for unlabelled sets"
            )
        targets = calibration.labels[: len(images)]
    elif validation == "agreement":
        targets = infer_logits(compile_model(model, precision_hint), images).argmax(1)
    else:
        raise QuantizationError(f"methods.{method_name}.validation {validation!r} is not one of labels, agreement, "
                                "auto")
    items = list(zip(_Batches(images, 1), targets, strict=True))
    eval_batch = fixed_batch(model) or 100

    def validate(compiled_model: ov.CompiledModel, data) -> tuple[float, list[float]]:
        data = list(data)
        correct: list[float] = []
        for start in range(0, len(data), eval_batch):
            chunk = data[start:start + eval_batch]
            logits = compiled_model(np.concatenate([image for image, _ in chunk]))[0]
            correct.extend((logits.argmax(1) == np.array([target for _, target in chunk])).astype(float).tolist())
        return float(np.mean(correct)), correct

    drop_type = nncf.DropType(method.get("drop_type", "absolute"))
    restorer = nncf.AdvancedAccuracyRestorerParameters(
        **{key: method[key] for key in ("max_num_iterations", "tune_hyperparams", "ranking_subset_size",
                                         "num_ranking_workers") if key in method}
    )
    captured = _CapturedLog()
    nncf_logger = logging.getLogger("nncf")
    nncf_logger.addHandler(captured)
    try:
        with without_torch():
            quantized = nncf.quantize_with_accuracy_control(
                model, calibration_dataset, nncf.Dataset(items, lambda item: item[0]), validate,
                max_drop=float(method.get("max_drop", 0.02)), drop_type=drop_type, **arguments,
                advanced_quantization_parameters=advanced,
                advanced_accuracy_restorer_parameters=restorer,
            )
    finally:
        nncf_logger.removeHandler(captured)
    baseline = validate(compile_model(model, precision_hint), items)[0]
    final = validate(compile_model(quantized, precision_hint), items)[0]
    info["accuracy_control"] = {
        "validation": validation, "validation_images": len(items), "max_drop": method.get("max_drop", 0.02),
        "drop_type": drop_type.value, "baseline_metric": baseline, "final_metric": final,
        "metric_drop": metric_drop(baseline, final, drop_type.value),
        "nncf_log": captured.lines,
    }
    return quantized


def metric_drop(baseline: float, final: float, drop_type: str) -> float:
    """The drop NNCF holds to ``max_drop``: ``absolute`` baseline − final, ``relative`` that over the baseline."""
    if drop_type not in ("absolute", "relative"):
        raise ValueError(f"drop_type must be absolute or relative, got {drop_type!r}")
    return baseline - final if drop_type == "absolute" else (baseline - final) / baseline


class _CapturedLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def fold_ir(int8_xml, fold: int) -> Path:
    """Where a crossfold cell's INT8 model of fold ``fold`` lies (fold 0: the cell's own int8.xml)."""
    int8_xml = Path(int8_xml)
    return int8_xml if fold == 0 else int8_xml.parent / "folds" / str(fold) / int8_xml.name


def quantize_crossfold(fp32_xml, calibration: ImageSet, method_name: str, method: dict, int8_xml, info_path,
                       **options) -> dict:
    """A crossfold cell (``synthcal.calibration.crossfold``): one INT8 model per fold, each calibrated on the images
    outside its fold; fold 0's is the cell's int8.xml (timed, reported), the others under ``folds/``, written first."""
    from synthcal.calibration.crossfold import calibration_images

    folds = int(calibration.provenance["folds"])
    infos = []
    with tempfile.TemporaryDirectory() as scratch:
        for fold in range(folds - 1, -1, -1):  # fold 0 (int8.xml, quantize.json) last: complete means complete
            fold_info = Path(scratch) / f"fold{fold}.json"
            infos.append(quantize_model(fp32_xml, calibration_images(calibration, fold), method_name, method,
                                        fold_ir(int8_xml, fold), fold_info if fold else info_path, **options,
                                        extra_info={"folds": folds} if fold == 0 else None))
            if fold == 0:
                infos[-1]["fold_models"] = [
                    {"fold": index, "ir": str(fold_ir(int8_xml, index)), "calibration_images": len(
                        calibration_images(calibration, index)),
                     "quantization_seconds": info["quantization_seconds"]}
                    for index, info in zip(range(folds - 1, -1, -1), infos, strict=True)][::-1]
                infos[-1]["quantization_seconds"] = sum(info["quantization_seconds"] for info in infos)
                write_json(info_path, infos[-1])
    return infos[-1]


def quantize_from_files(method_name: str, method: dict, inputs, outputs, precision_hint: str = "f32") -> dict:
    """Workflow entry: FP32 IR + calibration set in, INT8 IR + quantize.json out."""
    from synthcal.io import load_image_set

    calibration = load_image_set(inputs.calibration, stream=True)
    quantize = quantize_crossfold if calibration.provenance.get("folds") else quantize_model
    return quantize(inputs.xml, calibration, method_name, method, outputs.xml, outputs.info,
                    precision_hint=precision_hint)
