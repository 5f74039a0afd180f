"""Kind ``cifar10``: a stratified, seeded subset of the dataset's training split (``per_class`` images of every
class). The name stays ``cifar10`` for CIFAR-10; it works for any dataset the study uses."""

from __future__ import annotations

import numpy as np

from synthcal.io import ImageSet, load_image_set

KEYS = frozenset({"per_class", "seed"})
MODEL_SPECIFIC = False


def stratified_subset(pool: ImageSet, per_class: int, seed: int, key: str, num_classes: int = 10) -> ImageSet:
    """``per_class`` images of each class, drawn without replacement with a seeded generator."""
    from synthcal.calibration import CalibrationError

    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
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


def build(name: str, spec: dict, context) -> ImageSet:
    from synthcal.calibration import CalibrationError

    if not context.train_path:
        raise CalibrationError(f"calibration.{name}: kind cifar10 needs the dataset's training split")
    pool = load_image_set(context.train_path)
    num_classes = len(context.classes or pool.provenance.get("classes") or range(10))
    return stratified_subset(pool, int(spec.get("per_class", 500)), int(spec.get("seed", 0)),
                             f"calibration.{name}", num_classes)
