"""Calibration-set quality statistics measured with the FP32 classifier.

How the classifier sees a set: its predicted-class histogram (and that histogram's
normalised entropy: 1 = perfectly balanced), its confidence (mean max-softmax), for
labelled sets how often it agrees with the labels ("class consistency"), and the
Fréchet distance between the set's and a reference pool's penultimate features
(an FID computed with the classifier itself instead of Inception).

``model`` takes raw pixels in [0, 255]: the workflow passes the FP32 IR (every model kind has one); a
PyTorch classifier with ``forward_features`` works too.
"""

from __future__ import annotations

import sys

import numpy as np
import scipy.linalg

from synthcal.io import UNLABELLED, ImageSet, StoredImages


def _final_linear(model):
    """The last ``nn.Linear`` in module order: the head that maps ``forward_features`` to logits."""
    from torch import nn

    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier head")
    return linears[-1]


def predict_with_features(model, images_uint8: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, classes) and penultimate features (N, D), both float64, for uint8 NHWC images.

    ``model``: a PyTorch classifier with ``forward_features`` (raw pixels in), or an OpenVINO IR (path or
    ``ov.Model``, raw pixels in) whose features are the input of its last MatMul (the logits when it has none).
    """
    if not isinstance(images_uint8, StoredImages):  # a set on disk is read a batch at a time
        images_uint8 = np.asarray(images_uint8)
    if images_uint8.dtype != np.uint8 or images_uint8.ndim != 4 or images_uint8.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images_uint8.dtype} {images_uint8.shape}")
    torch = sys.modules.get("torch")  # a PyTorch model means torch is imported; IR-only jobs never import it
    if torch is None or not isinstance(model, torch.nn.Module):
        return _openvino_logits_and_features(model, images_uint8, batch_size)
    head = _final_linear(model)
    was_training = model.training
    model.eval()
    logits, features = [], []
    try:
        with torch.no_grad():
            for start in range(0, len(images_uint8), batch_size):
                pixels = torch.from_numpy(images_uint8[start:start + batch_size]).permute(0, 3, 1, 2).float()
                batch_features = model.forward_features(pixels)
                features.append(batch_features.double().numpy())
                logits.append(head(batch_features).double().numpy())
    finally:
        model.train(was_training)
    if not logits:
        return np.zeros((0, head.out_features)), np.zeros((0, head.in_features))
    return np.concatenate(logits), np.concatenate(features)


def _openvino_logits_and_features(model, images_uint8: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    import openvino as ov

    from synthcal.inference import REQUEST_PIXELS, batch_within, compile_model, infer_outputs

    batch_size = batch_within(batch_size, *images_uint8.shape[1:3], REQUEST_PIXELS)
    model = model if isinstance(model, ov.Model) else ov.Core().read_model(str(model))
    model = model.clone()
    matmuls = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    if matmuls:
        data = [value for value in matmuls[-1].inputs() if value.get_source_output().get_node().get_type_name()
                != "Constant"]
        model.add_outputs([data[0].get_source_output() if data else matmuls[-1].input_value(0)])
    outputs = infer_outputs(compile_model(model, "f32", uint8_images=True), images_uint8, batch_size)
    logits, features = outputs[0], outputs[-1]
    return logits.astype(np.float64), features.reshape(len(features), -1).astype(np.float64)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets.

    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 sqrt(C_a C_b))``. If the matrix square root is
    not finite (near-singular covariances, e.g. fewer samples than dimensions), ``eps * I``
    is added to both covariances; small imaginary parts from round-off are dropped.
    """
    feats_a, feats_b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"need two (N, D) feature arrays with equal D, got {feats_a.shape} and {feats_b.shape}")
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples per set")
    mean_a, mean_b = feats_a.mean(axis=0), feats_b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(feats_a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(feats_b, rowvar=False))
    cross = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(cross).all():
        offset = eps * np.eye(len(cov_a))
        cross = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(cross):
        imaginary = np.abs(cross.imag).max()
        if imaginary > 1e-3 * max(1.0, np.abs(cross.real).max()):
            raise ValueError(f"matrix square root has a large imaginary part ({imaginary:.3g})")
        cross = cross.real
    diff = mean_a - mean_b
    distance = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(cross)
    return float(max(distance, 0.0))  # round-off can give tiny negatives for identical sets


def _consistency(logits: np.ndarray, labels: np.ndarray) -> float:
    labels = np.asarray(labels)
    if len(labels) != len(logits):
        raise ValueError(f"{len(labels)} labels for {len(logits)} images")
    if not len(labels) or (labels == UNLABELLED).any():
        raise ValueError("class consistency needs a label for every image")
    return float((logits.argmax(axis=1) == labels).mean())


def class_consistency(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Fraction of images the classifier predicts as their (assigned or true) label."""
    logits, _ = predict_with_features(model, images, batch_size)
    return _consistency(logits, labels)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def calibration_quality(model, calib: ImageSet, reference: ImageSet | np.ndarray,
                        batch_size: int = 256) -> dict:
    """Quality statistics of ``calib``; ``reference`` is an image set or its precomputed features (N, D)."""
    logits, features = predict_with_features(model, calib.images, batch_size)
    if isinstance(reference, ImageSet):
        _, reference_features = predict_with_features(model, reference.images, batch_size)
    else:
        reference_features = np.asarray(reference, np.float64)
    num_classes = logits.shape[1]
    histogram = np.bincount(logits.argmax(axis=1), minlength=num_classes)
    shares = histogram / max(histogram.sum(), 1)
    nonzero = shares[shares > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(num_classes)) if num_classes > 1 else 0.0
    return {
        "count": len(calib),
        "predicted_histogram": histogram.tolist(),
        "histogram_entropy": entropy,
        "mean_max_softmax": float(_softmax(logits).max(axis=1).mean()) if len(logits) else float("nan"),
        "class_consistency": _consistency(logits, calib.labels) if calib.labelled else None,
        "frechet_distance": frechet_distance(features, reference_features),
        "reference_count": len(reference_features),
    }


def reference_subset(pool: ImageSet, count: int = 5000, seed: int = 0) -> ImageSet:
    """A seeded subset of the training pool (Fréchet statistics need thousands, not 50,000)."""
    if len(pool) <= count:
        return pool
    indices = np.sort(np.random.default_rng(seed).choice(len(pool), count, replace=False))
    return ImageSet(pool.images[indices], pool.labels[indices], pool.provenance)


def reference_at_size(pool: ImageSet, size, count: int = 5000) -> ImageSet:
    """``reference_subset`` resized to a model's input size."""
    from synthcal.calibration import resize_set

    return resize_set(reference_subset(pool, count), size)


def reference_features_from_files(inputs, out_path, reference_count: int = 5000) -> None:
    """Workflow entry: the FP32 model's penultimate features of the reference pool, once per model (every
    calibration set's Fréchet distance compares against them)."""
    from synthcal.io import load_image_set, save_npz_deterministic
    from synthcal.models.preprocessing import ir_input_size

    reference = reference_at_size(load_image_set(inputs.train, stream=True), ir_input_size(inputs.xml),
                                  reference_count)
    _, features = predict_with_features(inputs.xml, reference.images)
    save_npz_deterministic(out_path, features=features)


def quality_from_files(model_name: str, inputs, out_path) -> dict:
    """Workflow entry: quality statistics of one calibration set under one FP32 model (its IR), against the
    reference features of ``reference_features_from_files``."""
    from synthcal.io import load_image_set, read_npz_arrays, write_json

    calibration = load_image_set(inputs.calibration, stream=True)
    reference_features = read_npz_arrays(inputs.reference, ("features",), "reference features file")["features"]
    stats = calibration_quality(inputs.xml, calibration, reference_features)
    stats.update(model=model_name, calibration=calibration.provenance.get("name"),
                 kind=calibration.provenance.get("kind"))
    write_json(out_path, stats)
    return stats


def generator_quality(judge: str, classifier, generator_dir, reference: ImageSet, per_class: int = 100,
                      seed: int = 1234) -> dict:
    """A DiStyleGAN checkpoint folder's class consistency and Fréchet distance under the classifier ``judge``
    (``classifier``: its FP32 IR, or a PyTorch classifier with raw pixels in)."""
    from synthcal.gan.distylegan import sample_distylegan

    samples = sample_distylegan(generator_dir, per_class, seed, show_progress=False)
    stats = calibration_quality(classifier, samples, reference)
    stats.update(judge=judge, samples=len(samples), per_class=per_class, seed=seed, generator=str(generator_dir))
    return stats


def generator_quality_from_files(judge: str, inputs, out_path, per_class: int = 100, seed: int = 1234,
                                 reference_count: int = 5000) -> dict:
    """Workflow entry: ``generator_quality`` of a trained generator against the training split."""
    from pathlib import Path

    from synthcal.io import load_image_set, write_json

    reference = reference_subset(load_image_set(inputs.train), reference_count)
    stats = generator_quality(judge, inputs.xml, Path(inputs.generator).parent, reference, per_class, seed)
    write_json(out_path, stats)
    return stats
