"""Kind ``folder``: any ImageFolder tree (class folders named after the dataset's classes → labels; other
layouts → unlabelled), read at the model's input size (whole images resized, or ``centre_crop``: shorter side
resized, then a centre crop of the model's size, as ImageNet evaluation does); may point inside a tarball."""

from __future__ import annotations

from synthcal.io import ImageSet

KEYS = frozenset({"path", "count", "seed", "labelled", "centre_crop"})
MODEL_SPECIFIC = False


def build(name: str, spec: dict, context) -> ImageSet:
    from synthcal.calibration import CalibrationError, seeded_subset
    from synthcal.data import DataError, read_image_folder

    if not spec.get("path"):
        raise CalibrationError(f"calibration.{name}.path is not set")
    crop = {**spec["centre_crop"], "size": list(context.size), "views": 1} if spec.get("centre_crop") else None
    try:
        image_set = read_image_folder(spec["path"], labelled=spec.get("labelled"), size=tuple(context.size),
                                      classes=context.classes or None, show_progress=context.show_progress,
                                      centre_crop=crop)
    except DataError as error:
        raise CalibrationError(f"calibration.{name}: {error}") from error
    if spec.get("count"):
        image_set = seeded_subset(image_set, int(spec["count"]), int(spec.get("seed", 0)))
    return image_set
