"""Image grids for previews and GAN samples."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from synthcal.io import atomic_path


def image_grid(images: np.ndarray, columns: int = 10, scale: int = 2, pad: int = 1) -> np.ndarray:
    """Tile uint8 NHWC images into one uint8 image with a white gutter."""
    count, height, width, _ = images.shape
    rows = max(1, -(-count // columns))
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), 255, dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[top:top + height, left:left + width] = image
    return grid.repeat(scale, 0).repeat(scale, 1)


def preview_indices(labels: np.ndarray, per_class: int = 10, total: int = 100) -> np.ndarray:
    """Up to ``per_class`` images of each class (rows by class) or the first ``total`` when unlabelled."""
    if len(labels) and (labels >= 0).all():
        return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    return np.arange(min(total, len(labels)))


def save_preview(images: np.ndarray, labels: np.ndarray, path: str | os.PathLike, per_class: int = 10) -> None:
    grid = image_grid(images[preview_indices(labels, per_class)], columns=per_class)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
