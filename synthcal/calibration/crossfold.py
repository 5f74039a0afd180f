"""Kind ``crossfold``: the real-image reference of a study that has no training split (the ImageNet sample). The
calibration set is the study's test split; each of ``folds`` INT8 models is calibrated on the images of the other
folds' classes and scores only its own fold, so no image is ever scored by a model calibrated on it (nor on a crop or
flip of it: folds go by class). Fold of an image: its label modulo ``folds``."""

from __future__ import annotations

import numpy as np

from synthcal.io import ImageSet, load_image_set

KEYS = frozenset({"folds", "seed"})  # seed: filled in by the schema; folds draw nothing at random
MODEL_SPECIFIC = False
DEFAULT_FOLDS = 2


def fold_of(labels: np.ndarray, folds: int) -> np.ndarray:
    """Each image's fold: its class index modulo ``folds``."""
    return np.asarray(labels) % int(folds)


def calibration_images(image_set: ImageSet, fold: int) -> ImageSet:
    """The images fold ``fold``'s INT8 model is calibrated on: every image outside the fold."""
    folds = int(image_set.provenance["folds"])
    keep = fold_of(image_set.labels, folds) != fold
    return ImageSet(image_set.images[keep], image_set.labels[keep],
                    {**image_set.provenance, "fold": fold, "count": int(keep.sum())})


def build(name: str, spec: dict, context) -> ImageSet:
    from synthcal.calibration import CalibrationError

    folds = int(spec.get("folds", DEFAULT_FOLDS))
    if folds < 2:
        raise CalibrationError(f"calibration.{name}.folds must be at least 2, got {folds}")
    if not context.train_path:
        raise CalibrationError(f"calibration.{name}: kind crossfold needs the study's test split")
    pool = load_image_set(context.train_path, stream=True)  # written on a chunk at a time, never held whole
    if not pool.labelled:
        raise CalibrationError(f"calibration.{name}: kind crossfold needs labelled test images (folds go by class)")
    present = np.unique(fold_of(pool.labels, folds))
    if len(present) < folds:
        raise CalibrationError(f"calibration.{name}: the test split's classes fill only {len(present)} of "
                               f"{folds} folds; lower folds")
    return ImageSet(pool.images, pool.labels, {"source": pool.provenance, "folds": folds,
                                               "fold_rule": "label % folds"})
