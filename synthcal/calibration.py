"""Calibration sets: every kind ends as the same canonical image-set file plus a preview grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from synthcal.io import ImageSet, load_image_set, save_image_set
from synthcal.plots import save_preview

KINDS = ("cifar10", "folder", "fractal", "gan", "datafree", "noise")
MODEL_SPECIFIC_KINDS = ("datafree",)


class CalibrationError(ValueError):
    """A calibration entry that cannot be built as configured."""


def stratified_subset(pool: ImageSet, per_class: int, seed: int, key: str) -> ImageSet:
    """``per_class`` images of each class, drawn without replacement with a seeded generator."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(10):
        candidates = np.flatnonzero(pool.labels == label)
        if len(candidates) < per_class:
            raise CalibrationError(
                f"{key}.per_class = {per_class} but the training pool has only {len(candidates)} images of class "
                f"{label}; lower {key}.per_class"
            )
        chosen.append(np.sort(rng.choice(candidates, per_class, replace=False)))
    indices = np.concatenate(chosen)
    provenance = {"source": pool.provenance, "per_class": per_class, "seed": seed}
    return ImageSet(pool.images[indices], pool.labels[indices], provenance)


def build_calibration_set(name: str, spec: dict, *, train_path: str | os.PathLike | None = None,
                          classifier=None, model_name: str | None = None, show_progress: bool = True) -> ImageSet:
    """Build calibration entry ``name`` (``calibration.<name>`` in the config)."""
    key = f"calibration.{name}"
    kind = spec.get("kind")
    seed = int(spec.get("seed", 0))
    if kind == "cifar10":
        image_set = stratified_subset(load_image_set(train_path), int(spec.get("per_class", 500)), seed, key)
    elif kind == "folder":
        from synthcal.data import DataError, read_image_folder

        if not spec.get("path"):
            raise CalibrationError(f"{key}.path is not set")
        try:
            image_set = read_image_folder(spec["path"], labelled=spec.get("labelled"), show_progress=show_progress)
        except DataError as error:
            raise CalibrationError(f"{key}: {error}") from error
        if spec.get("count"):
            image_set = _first(image_set, int(spec["count"]), seed)
    elif kind == "fractal":
        from synthcal.fractal import generate_fractals

        image_set = generate_fractals(int(spec.get("count", 5000)), seed, colorization=spec.get("colorization",
                                      "palette"), model_dir=spec.get("model_dir"), backend=spec.get("backend", "numpy"),
                                      show_progress=show_progress)
    elif kind == "noise":
        from synthcal.noise import generate_noise

        image_set = generate_noise(int(spec.get("count", 5000)), seed, spec.get("distribution", "uniform"))
    elif kind == "gan":
        image_set = _sample_gan(spec, key, seed, show_progress)
    elif kind == "datafree":
        from synthcal.datafree import invert_batchnorm

        if classifier is None:
            raise CalibrationError(f"{key}: the datafree kind needs the FP32 classifier it inverts")
        options = {k: v for k, v in spec.items() if k not in ("kind", "seed", "per_class", "count")}
        count = int(spec.get("count") or 10 * int(spec.get("per_class", 100)))
        image_set = invert_batchnorm(classifier, count, seed, model_name=model_name, show_progress=show_progress,
                                     **options)
    else:
        raise CalibrationError(f"{key}.kind {kind!r} is not one of {KINDS}")
    image_set.provenance = {"name": name, "kind": kind, "config": spec, **image_set.provenance}
    return image_set


def _first(image_set: ImageSet, count: int, seed: int) -> ImageSet:
    if count >= len(image_set):
        return image_set
    indices = np.sort(np.random.default_rng(seed).choice(len(image_set), count, replace=False))
    return ImageSet(image_set.images[indices], image_set.labels[indices], {**image_set.provenance, "count": count})


def _sample_gan(spec: dict, key: str, seed: int, show_progress: bool) -> ImageSet:
    generator = spec.get("generator", "distylegan")
    checkpoint = spec.get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        raise CalibrationError(f"{key}.checkpoint {checkpoint!r} does not exist")
    if generator == "stylegan2-ada" and not spec.get("repo_path"):
        raise CalibrationError(f"{key}.repo_path is not set (your stylegan2-ada-pytorch checkout)")
    per_class = int(spec.get("per_class", 500))
    if generator == "distylegan":
        from synthcal.distylegan import sample_distylegan

        return sample_distylegan(checkpoint, per_class, seed, show_progress=show_progress)
    if generator == "stylegan2-ada":
        from synthcal.stylegan import sample_stylegan2ada

        return sample_stylegan2ada(checkpoint, spec.get("repo_path"), per_class, seed,
                                   truncation_psi=float(spec.get("truncation_psi", 1.0)), show_progress=show_progress,
                                   config_key=key)
    raise CalibrationError(f"{key}.generator {generator!r} is not one of distylegan, stylegan2-ada")


def write_calibration_set(name: str, spec: dict, set_path, preview_path, **context) -> ImageSet:
    image_set = build_calibration_set(name, spec, **context)
    save_image_set(set_path, image_set.images, image_set.labels, image_set.provenance)
    save_preview(image_set.images, image_set.labels, preview_path)
    return image_set


def calibration_set_from_files(name: str, spec: dict, inputs, outputs, model_name: str | None = None,
                               deploy_repvgg: bool = False) -> ImageSet:
    """Workflow entry: builds the set (with the FP32 classifier for model-specific kinds) and its preview."""
    context: dict = {}
    if "train" in inputs.keys() and inputs.train:
        context["train_path"] = inputs.train
    if "weights" in inputs.keys():
        from synthcal.export import load_classifier

        context["classifier"] = load_classifier(model_name, inputs.weights, deploy_repvgg)
        context["model_name"] = model_name
    return write_calibration_set(name, spec, outputs.images, outputs.preview, **context)
