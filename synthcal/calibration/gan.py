"""Kind ``gan``: class-conditional CIFAR-10 generators (DiStyleGAN folder or NVIDIA's StyleGAN2-ADA pickle).
Samples are resized to the model's input size; they keep their labels only when the dataset's classes are
CIFAR-10's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthcal.io import UNLABELLED, ImageSet

KEYS = frozenset({"generator", "checkpoint", "repo_path", "per_class", "truncation_psi", "seed"})
MODEL_SPECIFIC = False


def build(name: str, spec: dict, context) -> ImageSet:
    from synthcal.calibration import CalibrationError
    from synthcal.data import CIFAR10_CLASSES

    key = f"calibration.{name}"
    seed = int(spec.get("seed", 0))
    generator = spec.get("generator", "distylegan")
    checkpoint = spec.get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        raise CalibrationError(f"{key}.checkpoint {checkpoint!r} does not exist")
    if generator == "stylegan2-ada" and not spec.get("repo_path"):
        raise CalibrationError(f"{key}.repo_path is not set (your stylegan2-ada-pytorch checkout)")
    per_class = int(spec.get("per_class", 500))
    show_progress = context.show_progress
    if generator == "distylegan":
        from synthcal.gan.distylegan import sample_distylegan

        image_set = sample_distylegan(checkpoint, per_class, seed, show_progress=show_progress)
    elif generator == "stylegan2-ada":
        from synthcal.gan.stylegan import sample_stylegan2ada

        image_set = sample_stylegan2ada(checkpoint, spec.get("repo_path"), per_class, seed,
                                        truncation_psi=float(spec.get("truncation_psi", 1.0)),
                                        show_progress=show_progress, config_key=key)
    else:
        raise CalibrationError(f"{key}.generator {generator!r} is not one of distylegan, stylegan2-ada")
    if context.classes and list(context.classes) != list(CIFAR10_CLASSES):
        image_set = ImageSet(image_set.images, np.full(len(image_set), UNLABELLED, dtype=np.int64),
                             {**image_set.provenance, "labels_dropped": "the dataset's classes are not CIFAR-10's"})
    return image_set
