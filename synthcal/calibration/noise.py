"""Random-noise calibration images: the "no information at all" baseline."""

from __future__ import annotations

import numpy as np

from synthcal.io import UNLABELLED, ImageSet

DISTRIBUTIONS = ("uniform", "gaussian")


KEYS = frozenset({"count", "distribution", "seed"})
MODEL_SPECIFIC = False


def generate_noise(count: int, seed: int, distribution: str = "uniform", mean: float = 127.5,
                   std: float = 64.0, size=(32, 32)) -> ImageSet:
    """``count`` unlabelled (H, W, 3) uint8 noise images of ``size`` (H, W), deterministic for ``seed``.

    ``uniform``: every pixel uniform over 0..255 (``mean``/``std`` unused).
    ``gaussian``: ``round(normal(mean, std))`` clipped to [0, 255].
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"noise distribution {distribution!r} is not one of {', '.join(DISTRIBUTIONS)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    shape = (int(count), int(size[0]), int(size[1]), 3)
    rng = np.random.default_rng(int(seed))
    if distribution == "uniform":
        images = rng.integers(0, 256, size=shape, dtype=np.uint8)
        provenance = {"distribution": "uniform", "range": [0, 255]}
    else:
        if std < 0:
            raise ValueError(f"gaussian noise needs std >= 0, got {std}")
        images = np.clip(np.rint(rng.normal(mean, std, size=shape)), 0, 255).astype(np.uint8)
        provenance = {"distribution": "gaussian", "mean": float(mean), "std": float(std)}
    provenance = {"method": "noise", "count": int(count), "seed": int(seed), "generator": "numpy.default_rng",
                  **provenance}
    return ImageSet(images, np.full(len(images), UNLABELLED, dtype=np.int64), provenance)


def build(name: str, spec: dict, context) -> ImageSet:
    return generate_noise(int(spec.get("count", 5000)), int(spec.get("seed", 0)), spec.get("distribution", "uniform"),
                          size=context.size)
