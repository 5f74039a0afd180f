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


THUMBNAIL = 64  # the longest side of a preview tile: a 224-px set's preview stays as light as a 32-px one's


def preview_indices(labels: np.ndarray, per_class: int = 10, total: int = 100, max_classes: int = 10) -> np.ndarray:
    """Up to ``per_class`` images of each of the first ``max_classes`` classes (rows by class) or the first
    ``total`` when unlabelled."""
    if len(labels) and (labels >= 0).all():
        return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)[:max_classes]])
    return np.arange(min(total, len(labels)))


def thumbnails(images: np.ndarray, longest: int = THUMBNAIL) -> np.ndarray:
    """Images shrunk (never enlarged) so their longest side is at most ``longest`` px."""
    height, width = images.shape[1:3]
    if max(height, width) <= longest:
        return images
    size = (max(1, round(width * longest / max(height, width))), max(1, round(height * longest / max(height, width))))
    return np.stack([np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX)) for image in images])


def save_preview(images: np.ndarray, labels: np.ndarray, path: str | os.PathLike, per_class: int = 10) -> None:
    tiles = thumbnails(images[preview_indices(labels, per_class)])
    grid = image_grid(tiles, columns=per_class, scale=2 if tiles.shape[1] <= 32 else 1)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
