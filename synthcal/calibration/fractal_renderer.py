"""FractalDB-style calibration images: a vectorised NumPy take on Datumaro's ``FractalImageGenerator``.

Algorithm (FractalDB, Kataoka et al., arXiv 2103.13023, as used by Datumaro <= 1.11.1):

* **Systems.** An iterated function system (IFS) has 2-7 affine maps
  ``(x, y) -> (a x + b y + e, c x + d y + f)`` with all six parameters drawn from U(-1, 1); map ``k`` is
  picked with probability proportional to ``|a_k d_k - b_k c_k|``. A candidate is accepted when a
  100,000-point chaos game, rescaled to its bounding box and drawn as single pixels on a 512x512 canvas with a
  6-pixel margin, covers at least 20 % of the canvas (Datumaro's criterion, kept at full size). Unlike
  Datumaro's single chain started at the origin, those 100k points come from 1,000 walkers x 100 steps after
  20 burn-in steps, so candidates can be screened in lockstep; a walker's burn-in removes the transient.
* **Layout.** Like Datumaro, ``count`` images are split into categories (one system each) x 25 weight variants
  x instances, with ``instances = ceil(sqrt(ceil(count / 25)))``. Weight variants multiply the six parameters
  of every map: all ones, and each parameter alone scaled by 1 + {-0.8, -0.4, +0.4, +0.8}. Map probabilities
  stay those of the unweighted system.
* **Rendering.** Each image runs its own chaos game: 64 walkers from random starts in [-1, 1]^2, 16 burn-in
  steps, then 256 recorded steps (16,384 points; a 32x32 image has 1,024 pixels, so every visited pixel gets
  many hits, while Datumaro's 200k points mostly redraw the same pixels). Points are placed in the robust
  bounding box (0.1-99.9 % quantiles; outliers dropped) on a canvas ``2 x size`` wide with Datumaro's margin
  (6/32 of the side) and stamped as 3x3 patches (a box dilation of the hit counts, the mean of Datumaro's
  random 3x3 masks). Coordinates are clipped to +-1e6 each step so that a weight variant whose maps expand
  stays finite; its picture then shows the escaping orbit instead of NaNs.
* **Colour (``palette``, model-free).** Every walker carries a colour coordinate ``u`` in [0, 1]; each map
  ``k`` has a fixed coordinate ``u_k`` (a random permutation of evenly spaced values) and applying it sets
  ``u <- (u + u_k) / 2``, so each self-similar piece of the attractor gets its own, smoothly varying hue.
  A pixel's mean ``u`` indexes a per-image random palette: a piecewise-linear gradient through 4 random
  saturated colours (HSV, s in [0.55, 1], v in [0.6, 1]). Brightness is shaded (70-100 %) by log hit density.
  ``learned`` reproduces Datumaro's Caffe colouriser (Zhang et al. 2016, run with OpenCV DNN): the
  grey fractal's L channel at 224x224 goes in, the predicted ab channels come out. It needs ``opencv-python``
  and the three model files in ``model_dir``; nothing is downloaded.
* **Augmentation** (as Datumaro, per image): horizontal and vertical flip each with p = 0.5, a rotation
  by U(-30, 30) degrees (at canvas resolution, bilinear), an area resize to ``size``, a background colour
  (random hue; dark or pale) behind the fractal, and with p = 0.7 a Gaussian blur whose kernel is an odd
  size in 3..15 output pixels with OpenCV's default sigma for that size.

Determinism: system ``s`` candidate ``k`` and image ``i`` each draw from their own generator seeded by
``SeedSequence(seed, spawn_key=(stream, ...))`` (the children ``SeedSequence(seed).spawn`` would give), and
all arithmetic is elementwise or in a fixed order, so output bytes do not depend on chunking or threads.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from synthcal.io import UNLABELLED, ImageSet

ALGORITHM_VERSION = 1
NUM_PARAMS = 6
MAX_MAPS = 7
WEIGHT_STEP = 0.4
WEIGHT_MULTIPLIERS = (-2, -1, 1, 2)

# system acceptance (Datumaro's numbers)
FILL_THRESHOLD = 0.2
FILL_CANVAS = 512
FILL_PAD = 6
FILL_WALKERS = 1000
FILL_STEPS = 100
FILL_BURN_IN = 20
CANDIDATES_PER_ROUND = 8
MAX_CANDIDATES = 20000

# per-image rendering
WALKERS = 64
BURN_IN = 16
STEPS = 256
SUPERSAMPLE = 2
STAMP = 3
PAD_FRACTION = 6 / 32
BOUND_QUANTILE = 0.001
COORD_LIMIT = 1e6
PALETTE_ANCHORS = 4
CHUNK_IMAGES = 128
CHUNK_CANVAS_PIXELS = 2 ** 21  # fewer images per chunk on large canvases (224 px: 10), same bytes

# augmentation
BLUR_PROBABILITY = 0.7
BLUR_KERNELS = tuple(range(3, 16, 2))
MAX_ANGLE = 30.0

LEARNED_FILES = ("colorization_deploy_v2.prototxt", "pts_in_hull.npy", "colorization_release_v2.caffemodel")
_SYSTEM_STREAM, _IMAGE_STREAM = 0, 1


def _generator(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def weight_variants() -> np.ndarray:
    """The 25 parameter-weight vectors (25, 6): all ones, then each parameter times 1 + m * 0.4."""
    variants = [np.ones(NUM_PARAMS)]
    for param in range(NUM_PARAMS):
        for multiplier in WEIGHT_MULTIPLIERS:
            weights = np.ones(NUM_PARAMS)
            weights[param] += multiplier * WEIGHT_STEP
            variants.append(weights)
    return np.array(variants)


def image_layout(count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Datumaro's layout: per image its system index and weight-variant index, and the number of systems."""
    num_weights = min(count, len(weight_variants()))
    per_weight = math.ceil(count / num_weights)
    instances = math.ceil(math.sqrt(per_weight))
    systems = math.ceil(per_weight / instances)
    index = np.arange(count)
    block = num_weights * instances
    return index // block, (index % block) // instances, systems


def _map_lookup(probs: np.ndarray) -> np.ndarray:
    """A 65,536-entry table turning a uniform uint16 into a map index with the given probabilities."""
    cdf = np.cumsum(probs / probs.sum())
    levels = (np.arange(65536) + 0.5) / 65536
    # level k maps to the first map whose cdf exceeds it (the last map for rounding leftovers)
    ends = np.searchsorted(levels, cdf, side="right")
    table = np.repeat(np.arange(len(probs), dtype=np.uint8), np.diff(ends, prepend=0))
    return np.concatenate([table, np.full(65536 - len(table), len(probs) - 1, np.uint8)])


def _draw_candidate(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    num_maps = int(rng.integers(2, MAX_MAPS + 1))
    params = np.zeros((MAX_MAPS, NUM_PARAMS))
    params[:num_maps] = rng.uniform(-1.0, 1.0, (num_maps, NUM_PARAMS))
    probs = np.abs(params[:, 0] * params[:, 3] - params[:, 1] * params[:, 2])
    return params, probs / probs.sum(), num_maps


def _iterate(params: np.ndarray, map_index: np.ndarray, x: np.ndarray, y: np.ndarray, burn_in: int,
             colour_coords: np.ndarray | None = None, colour: np.ndarray | None = None):
    """Run a lockstep chaos game.

    ``params`` (M, 6) is a flat table of maps, ``map_index`` (steps, lanes) indexes it, ``x``/``y`` (lanes,)
    are the starts. Returns recorded xs, ys (and colour coordinates) of shape (steps - burn_in, lanes).
    """
    columns = [np.ascontiguousarray(params[:, k], dtype=np.float32) for k in range(NUM_PARAMS)]
    steps, lanes = map_index.shape
    xs = np.empty((steps - burn_in, lanes), np.float32)
    ys = np.empty_like(xs)
    us = np.empty_like(xs) if colour is not None else None
    for step in range(steps):
        index = map_index[step]
        a, b, c, d, e, f = (column[index] for column in columns)
        x, y = a * x + b * y + e, c * x + d * y + f
        np.clip(x, -COORD_LIMIT, COORD_LIMIT, out=x)
        np.clip(y, -COORD_LIMIT, COORD_LIMIT, out=y)
        if colour is not None:
            colour = (colour + colour_coords[index]) * np.float32(0.5)
        if step >= burn_in:
            xs[step - burn_in], ys[step - burn_in] = x, y
            if us is not None:
                us[step - burn_in] = colour
    return xs, ys, us


def fill_ratio(params: np.ndarray, probs: np.ndarray, rng: np.random.Generator) -> float:
    """Fraction of a 512x512 canvas covered by a 100k-point chaos game of one system (the acceptance test)."""
    used = int(np.flatnonzero(probs).max()) + 1
    table = np.zeros((MAX_MAPS, NUM_PARAMS))
    table[:used] = params[:used]
    return float(_fill_ratios(table[None], [_map_lookup(probs[:used])], [rng])[0])


def _fill_ratios(params: np.ndarray, lookups: list[np.ndarray], rngs: list[np.random.Generator]) -> np.ndarray:
    count = len(params)
    steps = FILL_BURN_IN + FILL_STEPS
    draws = [lookup[rng.integers(0, 65536, (steps, FILL_WALKERS), dtype=np.uint16)]
             for lookup, rng in zip(lookups, rngs, strict=True)]
    offsets = np.repeat(np.arange(count) * MAX_MAPS, FILL_WALKERS)
    map_index = np.concatenate(draws, axis=1).astype(np.intp) + offsets
    start = np.zeros(count * FILL_WALKERS, np.float32)
    xs, ys, _ = _iterate(params.reshape(-1, NUM_PARAMS), map_index, start, start.copy(), FILL_BURN_IN)
    fills = np.empty(count)
    span = FILL_CANVAS - 2 * FILL_PAD
    for candidate in range(count):
        lanes = slice(candidate * FILL_WALKERS, (candidate + 1) * FILL_WALKERS)
        rows, cols = (_to_pixels(v[:, lanes].ravel().astype(np.float64), span, FILL_PAD) for v in (xs, ys))
        occupied = np.zeros(FILL_CANVAS * FILL_CANVAS, bool)
        occupied[rows * FILL_CANVAS + cols] = True
        fills[candidate] = np.count_nonzero(occupied) / occupied.size
    return fills


def _to_pixels(values: np.ndarray, span: int, pad: int) -> np.ndarray:
    low, high = values.min(), values.max()
    return (pad + (values - low) / (high - low + 1e-5) * span).astype(np.intp)


def sample_systems(num_systems: int, seed: int) -> dict:
    """Draw accepted IFS systems: ``params`` (S, 7, 6), ``probs`` (S, 7), ``num_maps``, ``fill``, ``tries``."""
    params = np.zeros((num_systems, MAX_MAPS, NUM_PARAMS))
    probs = np.zeros((num_systems, MAX_MAPS))
    num_maps = np.zeros(num_systems, np.int64)
    fills = np.zeros(num_systems)
    tries = np.zeros(num_systems, np.int64)
    pending = list(range(num_systems))
    while pending:
        # every pending system proposes its next few candidates; candidate k has its own generator
        owners, candidates, rngs = [], [], []
        for system in pending:
            for k in range(tries[system], tries[system] + CANDIDATES_PER_ROUND):
                rng = _generator(seed, _SYSTEM_STREAM, system, k)
                owners.append(system)
                candidates.append(_draw_candidate(rng))
                rngs.append(rng)
        batch = np.stack([c[0] for c in candidates])
        batch_fills = _fill_ratios(batch, [_map_lookup(c[1][:c[2]]) for c in candidates], rngs)
        for position, system in enumerate(owners):
            if system in pending and batch_fills[position] >= FILL_THRESHOLD:
                tries[system] += position % CANDIDATES_PER_ROUND + 1
                params[system], probs[system], num_maps[system] = candidates[position]
                fills[system] = batch_fills[position]
                pending.remove(system)
        for system in pending:
            tries[system] += CANDIDATES_PER_ROUND
            if tries[system] >= MAX_CANDIDATES:
                raise RuntimeError(f"no IFS system passed the fill test after {MAX_CANDIDATES} candidates")
    return {"params": params, "probs": probs, "num_maps": num_maps, "fill": fills, "tries": tries}


def _hsv_to_rgb(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    sector = hue * 6.0
    offsets = np.array([5.0, 3.0, 1.0])
    k = (sector[..., None] + offsets) % 6.0
    return val[..., None] - val[..., None] * sat[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _image_randomness(rng: np.random.Generator, num_maps: int, lookup: np.ndarray) -> dict:
    """Everything random about one image, drawn in a fixed order from its own generator."""
    draws = {
        "map_index": lookup[rng.integers(0, 65536, (BURN_IN + STEPS, WALKERS), dtype=np.uint16)],
        "start": rng.uniform(-1.0, 1.0, (2, WALKERS)).astype(np.float32),
        "colour_coords": np.zeros(MAX_MAPS, np.float32),
    }
    draws["colour_coords"][:num_maps] = rng.permutation(np.linspace(0.0, 1.0, num_maps))
    anchors = _hsv_to_rgb(rng.random(PALETTE_ANCHORS), rng.uniform(0.55, 1.0, PALETTE_ANCHORS),
                          rng.uniform(0.6, 1.0, PALETTE_ANCHORS))
    draws["palette"] = anchors.astype(np.float32)
    draws["flip_h"], draws["flip_v"] = rng.random() >= 0.5, rng.random() >= 0.5
    draws["angle"] = rng.uniform(-MAX_ANGLE, MAX_ANGLE)
    dark = rng.random() < 0.5
    background_value = rng.uniform(0.0, 0.3) if dark else rng.uniform(0.85, 1.0)
    draws["background"] = _hsv_to_rgb(np.array(rng.random()), np.array(rng.uniform(0.0, 0.6)),
                                      np.array(background_value)).astype(np.float32)
    draws["blur_kernel"] = int(rng.choice(BLUR_KERNELS)) if rng.random() < BLUR_PROBABILITY else 0
    return draws


def _render_chunk(params: np.ndarray, draws: list[dict], canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """Chaos games for a chunk of images -> hit counts and mean colour coordinate, both (B, canvas, canvas)."""
    count = len(draws)
    map_index = np.concatenate([d["map_index"] for d in draws], axis=1).astype(np.intp)
    map_index += np.repeat(np.arange(count) * MAX_MAPS, WALKERS)
    x0 = np.concatenate([d["start"][0] for d in draws])
    y0 = np.concatenate([d["start"][1] for d in draws])
    colour_coords = np.concatenate([d["colour_coords"] for d in draws])
    colour0 = colour_coords[map_index[0]].copy()
    xs, ys, us = _iterate(params.reshape(-1, NUM_PARAMS), map_index, x0, y0, BURN_IN, colour_coords, colour0)

    # per image points: (B, STEPS * WALKERS)
    def per_image(values):
        return values.reshape(STEPS, count, WALKERS).transpose(1, 0, 2).reshape(count, -1).astype(np.float64)

    xs, ys, us = per_image(xs), per_image(ys), per_image(us)
    pad = int(round(PAD_FRACTION * canvas))
    span = canvas - 2 * pad - 1
    keep = np.ones(xs.shape, bool)
    pixels = []
    for values in (xs, ys):
        low, high = np.quantile(values, [BOUND_QUANTILE, 1 - BOUND_QUANTILE], axis=1)
        scaled = (values - low[:, None]) / np.maximum(high - low, 1e-12)[:, None]
        keep &= (scaled >= 0) & (scaled <= 1)
        pixels.append(pad + np.rint(np.clip(scaled, 0, 1) * span).astype(np.intp))
    flat = (np.arange(count)[:, None] * canvas + pixels[0]) * canvas + pixels[1]
    size = count * canvas * canvas
    hits = np.bincount(flat[keep], minlength=size).astype(np.float32)
    colour_sum = np.bincount(flat[keep], weights=us[keep], minlength=size).astype(np.float32)
    shape = (count, canvas, canvas)
    return _box_sum(hits.reshape(shape), STAMP), _box_sum(colour_sum.reshape(shape), STAMP)


def _box_sum(images: np.ndarray, width: int) -> np.ndarray:
    """Sum over a width x width window (the stamp), same size, zeros outside."""
    before = (width - 1) // 2
    padded = np.pad(images, ((0, 0), (before, width - 1 - before), (before, width - 1 - before)))
    out = np.zeros_like(images)
    height, breadth = images.shape[1:]
    for dy in range(width):
        for dx in range(width):
            out += padded[:, dy:dy + height, dx:dx + breadth]
    return out


def _palette_colour(hits: np.ndarray, colour_sum: np.ndarray, draws: list[dict]) -> np.ndarray:
    """Premultiplied RGB + coverage (B, H, W, 4) from hit counts and colour coordinates."""
    covered = hits > 0
    mean_coord = np.where(covered, colour_sum / np.maximum(hits, 1), 0)
    palettes = np.stack([d["palette"] for d in draws])  # (B, K, 3)
    position = np.clip(mean_coord, 0, 1) * (PALETTE_ANCHORS - 1)
    lower = np.minimum(position.astype(np.intp), PALETTE_ANCHORS - 2)
    frac = (position - lower)[..., None]
    batch = np.arange(len(draws))[:, None, None]
    rgb = palettes[batch, lower] * (1 - frac) + palettes[batch, lower + 1] * frac
    log_hits = np.log1p(hits)
    density = log_hits / np.maximum(log_hits.max(axis=(1, 2), keepdims=True), 1e-6)
    rgb *= (0.7 + 0.3 * density)[..., None]
    alpha = covered.astype(np.float32)[..., None]
    return np.concatenate([rgb * alpha, alpha], axis=-1).astype(np.float32)


def _learned_colour(hits: np.ndarray, net) -> np.ndarray:
    """Datumaro-style colourisation of the grey fractal (value 127 on black) with the Caffe model."""
    import cv2

    out = []
    for image_hits in hits:
        grey = np.where(image_hits > 0, 127 / 255, 0).astype(np.float32)
        lab_l = cv2.cvtColor(np.repeat(grey[..., None], 3, axis=2), cv2.COLOR_RGB2Lab)[..., 0]
        net.setInput(cv2.dnn.blobFromImage(cv2.resize(lab_l, (224, 224)) - 50))
        ab = net.forward()[0].transpose(1, 2, 0)
        ab = cv2.resize(ab, (grey.shape[1], grey.shape[0]))
        rgb = np.clip(cv2.cvtColor(np.concatenate([lab_l[..., None], ab], axis=2), cv2.COLOR_Lab2RGB), 0, 1)
        rgb = (rgb - rgb.min()) / max(rgb.max() - rgb.min(), 1e-6)
        alpha = (image_hits > 0).astype(np.float32)[..., None]
        out.append(np.concatenate([rgb * alpha, alpha], axis=-1))
    return np.stack(out).astype(np.float32)


def _load_learned_colouriser(model_dir):
    if model_dir is None:
        raise ValueError(f"colorization='learned' needs model_dir, a folder with {', '.join(LEARNED_FILES)} "
                         "(Zhang et al. 2016 Caffe colorization model, as Datumaro downloads it); "
                         "or use colorization='palette'")
    model_dir = Path(model_dir)
    missing = [name for name in LEARNED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"colorization='learned' needs {', '.join(missing)} in {model_dir} (Zhang et al. "
                                "2016 Caffe colorization model files); or use colorization='palette'")
    try:
        import cv2
    except ImportError as error:
        raise ImportError("colorization='learned' runs the Caffe model with OpenCV DNN: "
                          "pip install opencv-python-headless (or use colorization='palette')") from error
    net = cv2.dnn.readNetFromCaffe(str(model_dir / LEARNED_FILES[0]), str(model_dir / LEARNED_FILES[2]))
    hull = np.load(model_dir / LEARNED_FILES[1]).transpose().reshape(2, 313, 1, 1).astype(np.float32)
    net.getLayer(net.getLayerId("class8_ab")).blobs = [hull]
    net.getLayer(net.getLayerId("conv8_313_rh")).blobs = [np.full((1, 313), 2.606, np.float32)]
    return net


def _flip_and_rotate(layers: np.ndarray, draws: list[dict]) -> np.ndarray:
    """Per-image flips then rotation about the centre (bilinear, zeros outside) of (B, H, W, C) layers."""
    layers = layers.copy()
    for index, d in enumerate(draws):
        if d["flip_h"]:
            layers[index] = layers[index, :, ::-1]
        if d["flip_v"]:
            layers[index] = layers[index, ::-1]
    count, height, width, channels = layers.shape
    angles = np.deg2rad([d["angle"] for d in draws])[:, None, None]
    rows, cols = np.meshgrid(np.arange(height) - (height - 1) / 2, np.arange(width) - (width - 1) / 2,
                             indexing="ij")
    cos, sin = np.cos(angles), np.sin(angles)
    src_rows = cos * rows - sin * cols + (height - 1) / 2
    src_cols = sin * rows + cos * cols + (width - 1) / 2
    row0, col0 = np.floor(src_rows).astype(np.intp), np.floor(src_cols).astype(np.intp)
    fr, fc = (src_rows - row0).astype(np.float32), (src_cols - col0).astype(np.float32)
    flat_layers = layers.reshape(-1, channels)
    base = np.arange(count)[:, None, None] * (height * width)
    out = np.zeros_like(layers)
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)),
                           (1, 1, fr * fc)):
        r, c = row0 + dr, col0 + dc
        weight = weight * ((r >= 0) & (r < height) & (c >= 0) & (c < width))
        index = base + np.clip(r, 0, height - 1) * width + np.clip(c, 0, width - 1)
        out += flat_layers[index] * weight[..., None]
    return out


def _gaussian_kernel(size: int) -> np.ndarray:
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a given kernel size
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).astype(np.float32)


def _blur(images: np.ndarray, kernel_size: int) -> np.ndarray:
    """Separable Gaussian blur of (B, H, W, 3) with mirrored borders (OpenCV's BORDER_REFLECT_101)."""
    kernel = _gaussian_kernel(kernel_size)
    half = kernel_size // 2
    for axis in (1, 2):
        padding = [(0, 0)] * 4
        padding[axis] = (half, half)
        padded = np.pad(images, padding, mode="reflect")
        length = images.shape[axis]
        out = np.zeros_like(images)
        for tap, weight in enumerate(kernel):
            out += weight * np.take(padded, np.arange(tap, tap + length), axis=axis)
        images = out
    return images


def _finish(layers: np.ndarray, draws: list[dict], size: int) -> np.ndarray:
    """Augment canvas layers (B, S, S, 4) into uint8 RGB images (B, size, size, 3)."""
    layers = _flip_and_rotate(layers, draws)
    factor = layers.shape[1] // size
    layers = layers.reshape(len(draws), size, factor, size, factor, 4).mean(axis=(2, 4))
    backgrounds = np.stack([d["background"] for d in draws])[:, None, None, :]
    rgb = layers[..., :3] + (1 - layers[..., 3:]) * backgrounds
    for kernel_size in sorted({d["blur_kernel"] for d in draws} - {0}):
        chosen = np.array([d["blur_kernel"] == kernel_size for d in draws])
        rgb[chosen] = _blur(rgb[chosen], kernel_size)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def generate_fractals(count: int, seed: int, size: int = 32, colorization: str = "palette", model_dir=None,
                      backend: str = "numpy", show_progress: bool = True) -> ImageSet:
    """Generate ``count`` FractalDB-style RGB images (count, size, size, 3) uint8; see the module docstring."""
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count <= 0:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    if colorization not in ("palette", "learned"):
        raise ValueError(f"colorization must be 'palette' or 'learned', got {colorization!r}")
    if backend not in ("numpy", "datumaro"):
        raise ValueError(f"backend must be 'numpy' or 'datumaro', got {backend!r}")
    count, size = int(count), int(size)
    provenance = {
        "generator": "synthcal.fractal.generate_fractals",  # recorded id, kept so sets stay byte-identical
        "algorithm": "FractalDB IFS chaos game (arXiv 2103.13023), after Datumaro FractalImageGenerator",
        "algorithm_version": ALGORITHM_VERSION,
        "backend": backend,
        "count": count,
        "seed": int(seed),
        "size": size,
        "colorization": colorization,
        "numpy_version": np.__version__,
    }
    if backend == "datumaro":  # Datumaro lives in the side environment (make pot-env); see .datumaro_fractal
        from synthcal.calibration.datumaro_fractal import generate_datumaro_fractals

        return generate_datumaro_fractals(count, size, model_dir)

    net = _load_learned_colouriser(model_dir) if colorization == "learned" else None
    system_index, weight_index, num_systems = image_layout(count)
    systems = sample_systems(num_systems, seed)
    lookups = [_map_lookup(probs[:maps]) for probs, maps in zip(systems["probs"], systems["num_maps"], strict=True)]
    weights = weight_variants()
    canvas = size * SUPERSAMPLE
    images = np.empty((count, size, size, 3), np.uint8)
    progress = tqdm(total=count, desc="fractals", unit="img", disable=not show_progress)
    with np.errstate(over="ignore", invalid="ignore"):
        chunk_images = max(1, min(CHUNK_IMAGES, CHUNK_CANVAS_PIXELS // canvas ** 2))
        for start in range(0, count, chunk_images):
            chunk = range(start, min(start + chunk_images, count))
            draws = [_image_randomness(_generator(seed, _IMAGE_STREAM, i),
                                       int(systems["num_maps"][system_index[i]]),
                                       lookups[system_index[i]]) for i in chunk]
            params = systems["params"][system_index[chunk]] * weights[weight_index[chunk]][:, None, :]
            hits, colour_sum = _render_chunk(params, draws, canvas)
            layers = _learned_colour(hits, net) if net is not None else _palette_colour(hits, colour_sum, draws)
            images[chunk.start:chunk.stop] = _finish(layers, draws, size)
            progress.update(len(chunk))
    progress.close()

    provenance.update({
        "colorization_note": ("palette (model-free): colour coordinate per IFS map through a random seeded "
                              "gradient palette" if colorization == "palette" else
                              "learned: Zhang et al. 2016 Caffe colouriser via OpenCV DNN"),
        "num_systems": num_systems,
        "weight_variants": len(weights),
        "fill_threshold": FILL_THRESHOLD,
        "fill_points": FILL_WALKERS * FILL_STEPS,
        "fill_canvas": FILL_CANVAS,
        "system_fill": systems["fill"].round(4).tolist(),
        "system_candidates": systems["tries"].tolist(),
        "points_per_image": WALKERS * STEPS,
        "canvas": canvas,
        "stamp": STAMP,
    })
    return ImageSet(images=images, labels=np.full(count, UNLABELLED, dtype=np.int64), provenance=provenance)
