"""Test-set evaluation of an OpenVINO IR (FP32 or INT8) with the same settings for both."""

from __future__ import annotations

import os
import time

import numpy as np
import openvino as ov

from synthcal.inference import REQUEST_PIXELS, batch_within, compile_model, infer_logits, read_ir
from synthcal.io import ImageSet, save_npz_deterministic, write_json


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> dict:
    num_classes = logits.shape[1] if num_classes is None else num_classes
    predictions = logits.argmax(1)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    per_class = {
        str(c): float((predictions[labels == c] == c).mean()) if (labels == c).any() else None
        for c in range(num_classes)
    }
    return {
        "top1": float((predictions == labels).mean()),
        "top5": float((top5 == labels[:, None]).any(1).mean()),
        "per_class_top1": per_class,
        "num_images": int(len(labels)),
    }


# the evaluation pass's speed and OpenVINO's stream counts: they move from run to run, so they go to the
# evaluation's timing.json and metrics.json holds only what repeats byte for byte (the report's speed: time_model)
TIMING_FIELDS = ("images_per_second", "inference_seconds", "batch_latency_ms_median", "performance_hint",
                 "num_streams", "infer_requests", "quantization_seconds")


def agreement_metrics(predictions: np.ndarray, reference_predictions: np.ndarray) -> dict:
    agreement = float((predictions == reference_predictions).mean())
    return {"agreement_with_fp32": agreement, "flip_rate": 1.0 - agreement}


WARM_UP_IMAGES = 1000  # inferred untimed before evaluate_ir times its pass (fewer where the set is smaller)


def throughput(images: int, seconds: float) -> float:
    """Images/s over the wall time of a whole timed pass (uint8 input writes, the in-graph conversion and output
    copies included).

    With several infer requests running at once, batches overlap, so a batch's latency says nothing about
    the rate; images / wall time is what a user of the evaluator gets, counted as benchmark_app counts frames.
    """
    return images / seconds if seconds > 0 else float("nan")


def evaluate_ir(xml_path: str | os.PathLike, test_set: ImageSet, *, precision_hint: str = "f32",
                batch_size: int = 100, show_progress: bool = True) -> tuple[dict, np.ndarray]:
    """Top-1/top-5/per-class accuracy and throughput; returns (metrics, logits).

    Test images are resized to the IR's input size with the policy it was exported with. Throughput: after
    an untimed warm-up (the first ``WARM_UP_IMAGES`` images or two batches per infer request, whichever is more),
    the wall time of the one pass that yields the logits; see ``synthcal.inference.infer_outputs`` for how
    requests overlap.
    """
    from synthcal.models.preprocessing import ir_input_size, resize_images, resize_policy

    model = read_ir(xml_path)
    size, policy = ir_input_size(model), resize_policy(model)
    images = resize_images(test_set.images, size, policy)
    batch_size = batch_within(batch_size, *size, REQUEST_PIXELS)
    compiled = compile_model(model, precision_hint, uint8_images=True)
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    warm_up = max(2 * requests * batch_size, WARM_UP_IMAGES)  # every stream, twice; not timed
    infer_logits(compiled, images[:warm_up], batch_size)
    start = time.perf_counter()
    batch_seconds: list[float] = []
    logits = infer_logits(compiled, images, batch_size, show_progress, desc="evaluate", batch_seconds=batch_seconds)
    seconds = time.perf_counter() - start
    metrics = classification_metrics(logits, test_set.labels)
    metrics.update({
        "images_per_second": throughput(len(logits), seconds),
        "inference_seconds": seconds,
        "batch_latency_ms_median": float(np.median(batch_seconds)) * 1000 if batch_seconds else None,
        "batch_size": batch_size,
        "precision_hint": precision_hint or "default",
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
        "num_streams": int(compiled.get_property("NUM_STREAMS")),
        "infer_requests": requests,
        "openvino_version": ov.get_version(),
        "ir": str(xml_path),
        "test_set": test_set.provenance,
        "input_size": list(size),
        "resize": policy if images is not test_set.images else None,
    })
    return metrics, logits


def evaluate_crossfold(xml_path, test_set: ImageSet, folds: int, **options) -> tuple[dict, np.ndarray]:
    """A crossfold cell: every image scored by the INT8 model of its own fold (calibrated on the other folds'
    classes only); metrics over all images together, speed from fold 0's model."""
    from synthcal.calibration.crossfold import fold_of
    from synthcal.quantization.nncf_engine import fold_ir

    image_folds = fold_of(test_set.labels, folds)
    logits, metrics = None, {}
    for fold in range(folds):
        chosen = np.flatnonzero(image_folds == fold)
        if not len(chosen):
            continue
        part = ImageSet(test_set.images[chosen], test_set.labels[chosen], test_set.provenance)
        fold_metrics, fold_logits = evaluate_ir(fold_ir(xml_path, fold), part, **options)
        if logits is None:
            logits = np.zeros((len(test_set), fold_logits.shape[1]), dtype=fold_logits.dtype)
        logits[chosen] = fold_logits
        metrics = metrics or fold_metrics
    metrics.update(classification_metrics(logits, test_set.labels))
    metrics.update({"test_set": test_set.provenance, "ir": str(xml_path),
                    "crossfold": {"folds": folds, "images_per_fold": np.bincount(image_folds, minlength=folds).tolist(),
                                  "rule": "an image of fold k is scored by the model calibrated on the other folds"}})
    return metrics, logits


def write_evaluation(xml_path, test_set: ImageSet, metrics_path, predictions_path, *, reference_predictions=None,
                     reference_metrics: dict | None = None, extra: dict | None = None, folds: int | None = None,
                     timing_path=None, **options) -> tuple[dict, dict]:
    """Evaluate and write the metrics JSON, ``predictions.npz`` (logits + argmax) and, where given, the timing JSON
    (``TIMING_FIELDS``); both files are byte-identical for the same IR and images. Returns (metrics, timing)."""
    if folds:
        metrics, logits = evaluate_crossfold(xml_path, test_set, folds, **options)
    else:
        metrics, logits = evaluate_ir(xml_path, test_set, **options)
    predictions = logits.argmax(1)
    if reference_predictions is not None:
        metrics.update(agreement_metrics(predictions, np.asarray(reference_predictions)))
    if reference_metrics is not None:
        metrics["fp32_top1"] = reference_metrics["top1"]
        metrics["delta_top1"] = metrics["top1"] - reference_metrics["top1"]
    metrics.update(extra or {})
    timing = {key: metrics.pop(key) for key in TIMING_FIELDS if key in metrics}
    save_npz_deterministic(predictions_path, logits=logits, predictions=predictions, labels=test_set.labels)
    if timing_path is not None:
        write_json(timing_path, timing)
    write_json(metrics_path, metrics)
    return metrics, timing


def evaluate_from_files(inputs, outputs, options: dict) -> tuple[dict, dict]:
    """Workflow entry for FP32 (export.json beside) and INT8 (FP32 metrics and predictions as reference)."""
    from synthcal.io import load_image_set, read_json, read_npz_arrays

    test = load_image_set(inputs.test, stream=True)  # read a batch at a time: a set of any size
    reference_predictions = reference_metrics = folds = None
    extra: dict = {}
    if "fp32_metrics" in inputs.keys():
        reference_metrics = read_json(inputs.fp32_metrics)
        reference_predictions = read_npz_arrays(inputs.fp32_predictions, ("predictions",),
                                                "FP32 predictions file")["predictions"]
        quantize_info = read_json(inputs.quantize_info, ("method", "calibration_set", "quantization_seconds"))
        extra = {"precision": "int8", "untrained": reference_metrics.get("untrained", False),
                 "method": quantize_info["method"], "calibration": quantize_info["calibration_set"].get("name"),
                 "quantization_seconds": quantize_info["quantization_seconds"]}
        folds = quantize_info.get("folds")
    else:
        export_info = read_json(inputs.export_info, ("model",))
        extra = {"precision": "fp32", "untrained": export_info.get("untrained", False), "model": export_info["model"]}
    return write_evaluation(
        inputs.xml, test, outputs.metrics, outputs.predictions, reference_predictions=reference_predictions,
        reference_metrics=reference_metrics, extra=extra, folds=folds,
        timing_path=outputs.timing if "timing" in outputs.keys() else None,
        precision_hint=options.get("precision_hint", "f32"), batch_size=int(options.get("batch_size", 100)),
    )
