"""Kind ``fractal``: FractalDB-style IFS fractals (``fractal_renderer``), rendered at the model's input size."""

from __future__ import annotations

from synthcal.io import ImageSet

KEYS = frozenset({"count", "seed", "colorization", "model_dir", "backend"})
MODEL_SPECIFIC = False


def build(name: str, spec: dict, context) -> ImageSet:
    from synthcal.calibration.fractal_renderer import generate_fractals

    side = max(int(context.size[0]), int(context.size[1]))  # square renders; other shapes are resized after
    return generate_fractals(int(spec.get("count", 5000)), int(spec.get("seed", 0)), size=side,
                             colorization=spec.get("colorization", "palette"), model_dir=spec.get("model_dir"),
                             backend=spec.get("backend", "numpy"), show_progress=context.show_progress)
