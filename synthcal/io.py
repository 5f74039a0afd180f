"""File helpers shared by every step: atomic writes, JSON, and the canonical image-set file.

An image set (a dataset split or a calibration set) is one ``.npz`` file with
``images`` (N, 32, 32, 3) uint8 RGB, ``labels`` (N,) int64 (-1 = unlabelled) and
``provenance`` (a JSON string). It is written byte-deterministically: same
arrays and provenance give the same bytes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

UNLABELLED = -1
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.part"):  # left by a killed run
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def paths_of(value) -> list[str]:
    """A rule's named input as a list of paths, whether Snakemake passed one path or a list."""
    if value is None:
        return []
    return [str(value)] if isinstance(value, str | os.PathLike) else [str(item) for item in value]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_npz_deterministic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` but with fixed zip timestamps, so equal arrays give equal bytes."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in sorted(arrays):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())


@dataclass
class ImageSet:
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int64, UNLABELLED where unknown
    provenance: dict

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels != UNLABELLED).all())


def save_image_set(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray | None, provenance: dict) -> None:
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels is None:
        labels = np.full(len(images), UNLABELLED, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    provenance_json = json.dumps(provenance, sort_keys=True, default=_json_default)
    save_npz_deterministic(path, images=images, labels=labels, provenance=np.array(provenance_json))


def load_image_set(path: str | os.PathLike) -> ImageSet:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image set not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels, provenance = data["images"], data["labels"], json.loads(str(data["provenance"]))
    except (KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a synthcal image set: {error}") from error
    return ImageSet(images=images, labels=labels, provenance=provenance)
