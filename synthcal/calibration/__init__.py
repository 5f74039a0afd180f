"""Calibration sets: every kind ends as the same canonical image-set file plus a preview grid.

One module per kind (``cifar10``, ``folder``, ``crossfold``, ``fractal``, ``gan``, ``datafree``, ``noise``), each with
``KEYS`` (the config keys it takes besides ``kind``), ``MODEL_SPECIFIC`` (built from one classifier) and
``build(name, spec, context) -> ImageSet``. Sets are made at the model's input size (``context.size``);
adding a kind = adding one module and listing it in ``KIND_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from synthcal.calibration.preview import save_preview
from synthcal.io import ImageSet, paths_of, save_image_set

KIND_MODULES = {kind: f"synthcal.calibration.{kind}" for kind in
                ("cifar10", "folder", "crossfold", "fractal", "gan", "datafree", "noise")}
KINDS = tuple(KIND_MODULES)
MODEL_SPECIFIC_KINDS = ("datafree",)
REAL_DATA_KINDS = ("cifar10", "folder", "crossfold")  # kinds made of real images; every other kind needs none


class CalibrationError(ValueError):
    """A calibration entry that cannot be built as configured."""


@dataclass
class CalibrationContext:
    """What a kind may need besides its config entry."""

    size: tuple[int, int] = (32, 32)
    classes: list[str] = field(default_factory=list)  # the dataset's classes (label order)
    train_path: str | None = None  # the dataset's training split (kind cifar10)
    classifier: object = None  # the FP32 PyTorch classifier, raw pixels in (model-specific kinds)
    model_name: str | None = None
    show_progress: bool = True


def kind_module(kind: str):
    if kind not in KIND_MODULES:
        raise CalibrationError(f"calibration kind {kind!r} is not one of {KINDS}")
    return importlib.import_module(KIND_MODULES[kind])


def check_entry(name: str, spec: dict) -> None:
    """Unknown keys, and keys that do not apply to the entry's kind, are errors naming the key."""
    module = kind_module(spec.get("kind"))
    extra = sorted(set(spec) - set(module.KEYS) - {"kind"})
    if extra:
        raise CalibrationError(f"calibration.{name}: key(s) {extra} do not apply to kind {spec['kind']} "
                               f"(allowed: {sorted(module.KEYS)})")


def resize_set(image_set: ImageSet, size, policy: str = "bilinear") -> ImageSet:
    """The set at ``size`` (H, W); the resize is recorded in its provenance."""
    from synthcal.models.preprocessing import resize_images

    if image_set.images.shape[1:3] == tuple(size):
        return image_set
    provenance = {**image_set.provenance, "resized_from": list(image_set.images.shape[1:3]), "resize": policy}
    return ImageSet(resize_images(image_set.images, size, policy), image_set.labels, provenance)


def seeded_subset(image_set: ImageSet, count: int, seed: int) -> ImageSet:
    """``count`` images drawn without replacement (kept in order); the whole set when it is not larger."""
    if count >= len(image_set):
        return image_set
    indices = np.sort(np.random.default_rng(seed).choice(len(image_set), count, replace=False))
    return ImageSet(image_set.images[indices], image_set.labels[indices], {**image_set.provenance, "count": count})


def build_calibration_set(name: str, spec: dict, context: CalibrationContext | None = None) -> ImageSet:
    """Build calibration entry ``name`` (``calibration.<name>`` in the config) at ``context.size``."""
    context = context or CalibrationContext()
    check_entry(name, spec)
    image_set = kind_module(spec["kind"]).build(name, spec, context)
    image_set = resize_set(image_set, context.size)
    image_set.provenance = {"name": name, "kind": spec["kind"], "config": spec, "size": list(context.size),
                            **image_set.provenance}
    return image_set


def write_calibration_set(name: str, spec: dict, set_path, preview_path, context: CalibrationContext) -> ImageSet:
    image_set = build_calibration_set(name, spec, context)
    save_image_set(set_path, image_set.images, image_set.labels, image_set.provenance)
    save_preview(image_set.images, image_set.labels, preview_path)
    return image_set


def calibration_set_from_files(name: str, spec: dict, inputs, outputs, size, classes: list[str],
                               model: dict | None = None) -> ImageSet:
    """Workflow entry: builds the set (with the FP32 classifier for model-specific kinds) and its preview."""
    context = CalibrationContext(size=tuple(size), classes=list(classes))
    if "train" in inputs.keys() and inputs.train:
        context.train_path = inputs.train
    if model is not None:
        from synthcal.models import model_spec, torch_classifier

        spec_of_model = model_spec(model["name"], model["entry"])
        context.classifier = torch_classifier(spec_of_model, paths_of(inputs.network)[0])
        context.model_name = spec_of_model.name
    return write_calibration_set(name, spec, outputs.images, outputs.preview, context)
