"""Extra test sets (``evaluation.sets``): more images to measure INT8-vs-FP32 agreement on.

Each entry names a labelled image source like those under ``data`` (``download``, ``local`` pickle batches or a
``folder`` tree, which may point inside a tarball) and says whether its images are ``lossy`` (e.g. JPEG re-encoded
CIFAR-10: its top-1 is not the published one, but agreement with FP32 on it is still a fair measure).
"""

from __future__ import annotations

import os

from synthcal.data import CIFAR10_MD5, CIFAR10_URL, load_split
from synthcal.io import ImageSet

DEFAULT_TEST_SET = "test"  # the study's own test split (results/data/test.npz); extra sets take other names


def data_source(spec: dict) -> tuple[dict, str]:
    """The ``data``-section source and split that ``synthcal.data.load_split`` reads for one set entry."""
    split = spec.get("split", "test")
    source = spec.get("source")
    if source == "folder":
        data = {"source": "folder", "folders": {split: spec["path"]}}
    elif source == "local":
        data = {"source": "local", "local_path": spec["local_path"]}
    elif source == "download":
        data = {"source": "download", "url": spec.get("url", CIFAR10_URL), "md5": spec.get("md5", CIFAR10_MD5)}
    else:
        raise ValueError(f"evaluation set source {source!r} is not one of download, local, folder")
    if spec.get("limit"):
        data["limit"] = {split: int(spec["limit"])}
    if spec.get("centre_crop"):
        data["centre_crop"] = spec["centre_crop"]
    return data, split


def load_evaluation_set(name: str, spec: dict, cache_dir: str | os.PathLike, show_progress: bool = True) -> ImageSet:
    """Read one ``evaluation.sets`` entry; its provenance records the set's name and whether it is lossy."""
    data, split = data_source(spec)
    image_set = load_split(data, split, cache_dir, show_progress=show_progress,
                           config_key=f"evaluation.sets.{name}.path")
    if not image_set.labelled:
        raise ValueError(f"evaluation.sets.{name}: every image needs a label (class folders named after the classes)")
    image_set.provenance.update({"name": name, "lossy": bool(spec.get("lossy", False))})
    return image_set
