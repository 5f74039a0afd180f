"""Data-free calibration images by BatchNorm-statistics inversion.

ZeroQ's "distilled data": start from noise and optimise the images so that, at every
``nn.BatchNorm2d`` layer, the batch mean/variance of the layer's input matches the
layer's stored ``running_mean``/``running_var``. Optional DeepInversion-style extras:
a cross-entropy term towards assigned (class-balanced) labels, total-variation and L2
image priors, and random jitter/flip augmentation each step.

The model is the ``RawPixelClassifier``-wrapped classifier: its input is float32
NCHW raw pixels in [0, 255]. The optimisation variable ``z`` lives in the network's
*normalised* space, ``pixels = 255 * (mean + std * z)`` with the model's own constants,
so a standard-normal start resembles data after normalisation and one learning rate
suits every channel. After each step ``z`` is clamped to the range that maps to
[0, 255]; the output is the rounded pixels as uint8.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from synthcal.io import UNLABELLED, ImageSet
from synthcal.models.cifar_zoo import CIFAR10_MEAN, CIFAR10_STD

DEFAULTS = {
    # resnet20, 1,000 images = 5 batches x 60 steps, bf16 autocast + torch.compile (benchmarks/bench_datafree.py);
    # no augmentation: the measured loss is that of the plain images, and without jitter/flip a higher rate gets
    # there in half the steps of the previous 120 at lr 0.2 (BN loss 3.8 then; real train images: 5.0)
    "iterations": 60,
    "lr": 0.7,
    "batch_size": 200,
    "tv_weight": 1e-3,
    "l2_weight": 1e-5,
    "ce_weight": 1.0,
    "jitter": 0,
    "flip": False,
    "precision": "auto",
    "compile": True,
}


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 autocast where the CPU computes bf16 natively (AVX512-BF16 or AMX), else fp32."""
    if precision == "auto":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return "bf16" if native else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return precision


def _float32_convolution(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", enabled=False):
        return type(conv).forward(conv, x.float())


@contextlib.contextmanager
def _grouped_convolutions_in_float32(model: nn.Module, enabled: bool):
    """Under bf16 autocast, run grouped (e.g. depthwise) convolutions in float32: their bf16 kernels are slower
    than float32's on the CPUs measured, while dense convolutions run about twice as fast in bf16 (README, Speed)."""
    convs = [module for module in model.modules() if enabled and isinstance(module, nn.Conv2d) and module.groups > 1]
    for conv in convs:
        conv.forward = functools.partial(_float32_convolution, conv)
    try:
        yield len(convs)
    finally:
        for conv in convs:
            del conv.forward


def failure_reason(error: Exception) -> str:
    """One line naming a failure: its type and the first line of its message."""
    message = str(error)
    return f"{type(error).__name__}: {message.splitlines()[0] if message else ''}"


class _Compiled:
    """``torch.compile`` of a step function; falls back to eager (and says why) where compiling fails,
    e.g. on a machine without a C++ compiler."""

    def __init__(self, function, on_fallback=None):
        self.eager = function
        self.on_fallback = on_fallback
        self.function = torch.compile(function, dynamic=False)
        self.fallback_reason: str | None = None

    def __call__(self, *args):
        try:
            return self.function(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure: run eagerly instead
            if self.function is self.eager:
                raise
            self.fallback_reason = failure_reason(error)
            logging.getLogger(__name__).warning("torch.compile failed (%s); running eagerly", self.fallback_reason)
            self.function = self.eager
            if self.on_fallback:
                self.on_fallback()
            return self.eager(*args)


@contextlib.contextmanager
def _torch_threads(num_threads: int | None):
    """Temporarily set torch's intra-op thread count."""
    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


BN_LOSSES = {"norm": "sum over layers of ||mean - running_mean|| + ||var - running_var|| (ZeroQ)",
             "gaussian_kl": "sum over layers of the mean over channels of KL(N(mean, var) || N(running_mean, "
                            "running_var)): scale-free, so deep and wide layers weigh alike"}


class _BatchNormStatLoss:
    """Forward pre-hooks that sum, over BN layers, how far the batch's channel statistics are from the stored ones
    (``form``: one of BN_LOSSES)."""

    def __init__(self, model: nn.Module, form: str = "norm"):
        if form not in BN_LOSSES:
            raise ValueError(f"bn_loss must be one of {sorted(BN_LOSSES)}, got {form!r}")
        self.form = form
        self.layers = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
        if not self.layers:
            raise ValueError("model has no nn.BatchNorm2d layers to invert")
        for layer in self.layers:
            if layer.running_mean is None or layer.running_var is None:
                raise ValueError("every BatchNorm2d layer needs running statistics (track_running_stats=True)")
        self.terms: list[torch.Tensor] = []
        self.handles = [layer.register_forward_pre_hook(self._hook) for layer in self.layers]

    def _hook(self, layer: nn.BatchNorm2d, inputs):
        x = inputs[0].float()  # statistics in float32 also under bf16 autocast
        var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
        if self.form == "norm":
            self.terms.append(torch.linalg.vector_norm(mean - layer.running_mean)
                              + torch.linalg.vector_norm(var - layer.running_var))
        else:  # KL(batch Gaussian || stored Gaussian) per channel, averaged: every layer and channel on one scale
            ratio = (var + layer.eps) / (layer.running_var + layer.eps)
            shift = (mean - layer.running_mean).pow(2) / (layer.running_var + layer.eps)
            self.terms.append(0.5 * (ratio + shift - 1.0 - torch.log(ratio)).mean())

    def clear(self) -> None:
        self.terms = []

    def pop(self) -> torch.Tensor:
        """The summed loss of the last forward pass; clears it for the next one."""
        loss = torch.stack(self.terms).sum()
        self.terms = []
        return loss

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _total_variation(z: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (normalised space)."""
    dx = z[:, :, :, 1:] - z[:, :, :, :-1]
    dy = z[:, :, 1:, :] - z[:, :, :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def _augment(pixels: torch.Tensor, jitter: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random circular shift by up to ``jitter`` pixels and random horizontal flip (one draw per step)."""
    if jitter > 0:
        shifts = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
        pixels = torch.roll(pixels, shifts=shifts, dims=(2, 3))
    if flip and torch.rand((), generator=generator).item() < 0.5:
        pixels = torch.flip(pixels, dims=(3,))
    return pixels


IN_MEMORY_BYTES = 1 << 30  # a larger set's images go to a temporary file batch by batch, never refused for size


def _image_buffer(shape: tuple) -> np.ndarray:
    """Where the finished batches go: an array in memory, or for a set larger than ``IN_MEMORY_BYTES`` one backed by
    an anonymous temporary file (the kernel keeps in memory what fits), which is written on a chunk at a time."""
    if int(np.prod(shape)) <= IN_MEMORY_BYTES:
        return np.empty(shape, np.uint8)
    return np.memmap(tempfile.TemporaryFile(prefix="synthcal-datafree-"), dtype=np.uint8, mode="w+", shape=shape)


def _batch_sizes(count: int, batch_size: int) -> list[int]:
    """Split ``count`` into near-equal batches of at most ``batch_size`` (keeps BN statistics comparable)."""
    batches = math.ceil(count / batch_size)
    base, extra = divmod(count, batches)
    return [base + (1 if index < extra else 0) for index in range(batches)]


def _step_loss(model: nn.Module, stat_loss: _BatchNormStatLoss, bf16: bool, ce_weight: float, tv_weight: float,
               l2_weight: float, pixels: torch.Tensor, z: torch.Tensor, targets: torch.Tensor):
    """(BN-statistics loss, total loss) of one step, the part worth compiling: the BN loss, plus ``ce_weight`` ×
    cross-entropy towards ``targets``, ``tv_weight`` × total variation and ``l2_weight`` × mean square of ``z``."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(pixels).float()
    statistics = stat_loss.pop()
    loss = statistics
    if ce_weight:
        loss = loss + ce_weight * F.cross_entropy(logits, targets)
    if tv_weight:
        loss = loss + tv_weight * _total_variation(z)
    if l2_weight:
        loss = loss + l2_weight * z.pow(2).mean()
    return statistics, loss


def invert_batchnorm(
    model: nn.Module,
    count: int,
    seed: int,
    iterations: int = DEFAULTS["iterations"],
    lr: float = DEFAULTS["lr"],
    batch_size: int = DEFAULTS["batch_size"],
    class_targets: bool = True,
    tv_weight: float = DEFAULTS["tv_weight"],
    l2_weight: float = DEFAULTS["l2_weight"],
    ce_weight: float = DEFAULTS["ce_weight"],
    jitter: int = DEFAULTS["jitter"],
    flip: bool = DEFAULTS["flip"],
    show_progress: bool = True,
    num_threads: int | None = None,
    model_name: str | None = None,
    image_size: tuple[int, int] = (32, 32),
    pixel_mean=CIFAR10_MEAN,
    pixel_std=CIFAR10_STD,
    precision: str = DEFAULTS["precision"],
    compile: bool = DEFAULTS["compile"],
    bn_loss: str = "norm",
) -> ImageSet:
    """Synthesise ``count`` calibration images from the model's BatchNorm statistics.

    ``model`` takes raw pixels in [0, 255] (``RawPixelClassifier``) of ``image_size``; images are
    ``255 * (pixel_mean + pixel_std * z)`` with ``z`` optimised. With ``class_targets``
    image ``i`` is assigned class ``i % num_classes`` (balanced, every batch mixed) and a
    cross-entropy term (``ce_weight``) pulls it towards that class; otherwise labels are -1.
    Adam with a cosine-decayed learning rate, ``iterations`` steps per batch. Deterministic
    for a given seed, thread count and machine. Returns an :class:`ImageSet`.

    ``num_threads`` sets torch's thread count for the call; on a machine whose cores are busy
    with other work, 1 thread can be several times faster than oversubscribed OpenMP threads.
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    if iterations < 1 or batch_size < 1:
        raise ValueError(f"iterations and batch_size must be positive, got {iterations} and {batch_size}")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")

    precision = resolve_precision(precision)
    was_training = model.training
    model.eval()
    stat_loss = _BatchNormStatLoss(model, bn_loss)
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
    z_low, z_high = (0.0 - mean) / std, (1.0 - mean) / std
    generator = torch.Generator().manual_seed(int(seed))
    sizes = _batch_sizes(count, batch_size)
    images = _image_buffer((count, *image_size, 3))
    labels: list[np.ndarray] = []
    initial_losses, final_losses = [], []
    num_classes = None
    bar = tqdm(total=len(sizes) * iterations, desc="bn-inversion", unit="step", disable=not show_progress)
    frozen = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in frozen:  # gradients for the images only
        parameter.requires_grad_(False)

    loss_terms = functools.partial(_step_loss, model, stat_loss, precision == "bf16",
                                   ce_weight if class_targets else 0.0, tv_weight, l2_weight)
    step_loss = _Compiled(loss_terms, stat_loss.clear) if compile else loss_terms
    try:
        with _torch_threads(num_threads), _grouped_convolutions_in_float32(model, precision == "bf16") as float32_convs:
            start = 0
            for size in sizes:
                z = torch.randn((size, 3, *image_size), generator=generator).clamp_(z_low, z_high).requires_grad_(True)
                with torch.no_grad():  # starting point, measured like the output below
                    num_classes = int(model((255.0 * (mean + std * z)).round()).shape[1])
                    initial_losses.append(stat_loss.pop().item())
                targets = torch.arange(start, start + size) % num_classes
                optimizer = torch.optim.Adam([z], lr=lr, betas=(0.5, 0.9))
                schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations)
                for step in range(iterations):
                    pixels = _augment(255.0 * (mean + std * z), jitter, flip, generator)
                    statistics_loss, loss = step_loss(pixels, z, targets)
                    (grad,) = torch.autograd.grad(loss, [z])
                    z.grad = grad
                    optimizer.step()
                    schedule.step()
                    with torch.no_grad():
                        z.clamp_(z_low, z_high)
                    if step % 10 == 0 or step == iterations - 1:
                        bar.set_postfix(bn=f"{statistics_loss.item():.3f}", loss=f"{loss.item():.3f}", refresh=False)
                    bar.update(1)
                with torch.no_grad():
                    pixels = (255.0 * (mean + std * z)).round().clamp(0, 255)
                    model(pixels)
                    final_losses.append(stat_loss.pop().item())
                images[start:start + size] = pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()
                labels.append(targets.numpy() if class_targets else np.full(size, UNLABELLED))
                start += size
    finally:
        bar.close()
        stat_loss.remove()
        model.train(was_training)
        for parameter in frozen:
            parameter.requires_grad_(True)

    provenance = {
        "method": "batchnorm-inversion",
        "model_name": model_name,
        "count": int(count),
        "seed": int(seed),
        "iterations": int(iterations),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "class_targets": bool(class_targets),
        "num_classes": num_classes,
        "bn_loss": bn_loss,
        "tv_weight": float(tv_weight),
        "l2_weight": float(l2_weight),
        "ce_weight": float(ce_weight),
        "jitter": int(jitter),
        "flip": bool(flip),
        "optimizer": "adam(betas=0.5,0.9)+cosine",
        "parameterisation": "255 * (pixel_mean + pixel_std * z), clamped to [0,255] pixels",
        "pixel_mean": mean.flatten().tolist(),
        "pixel_std": std.flatten().tolist(),
        "image_size": list(image_size),
        "bn_layers": len(stat_loss.layers),
        # mean over batches; "final" is measured on the uint8 output without augmentation
        "bn_loss_initial": float(np.mean(initial_losses)),
        "bn_loss_final": float(np.mean(final_losses)),
        "torch_version": torch.__version__,
        "num_threads": num_threads,
        "precision": precision,
        "float32_grouped_convolutions": float32_convs,
        "compiled": bool(compile) and step_loss.fallback_reason is None,
        "compile_fallback": step_loss.fallback_reason if compile else None,
    }
    return ImageSet(images, np.concatenate(labels).astype(np.int64), provenance)


INVERSION_KEYS = frozenset({"iterations", "lr", "batch_size", "class_targets", "tv_weight", "l2_weight",
                            "ce_weight", "jitter", "flip", "num_threads", "precision", "compile",
                            "bn_loss"})
KEYS = INVERSION_KEYS | {"count", "per_class", "seed", "per_model"}
MODEL_SPECIFIC = True


def model_settings(spec: dict, model_name: str | None, name: str = "datafree") -> dict:
    """The inversion options of calibration entry ``name`` for one model: the entry's own, then those under
    ``per_model.<model_name>`` (e.g. ``per_model: {repvgg_a2: {iterations: 30}}``) over them."""
    from synthcal.calibration import CalibrationError

    per_model = spec.get("per_model") or {}
    if not isinstance(per_model, dict):
        raise CalibrationError(f"calibration.{name}.per_model must map model names to inversion settings")
    for model, overrides in per_model.items():
        unknown = sorted(set(overrides or {}) - INVERSION_KEYS) if isinstance(overrides, dict) else ["(not a map)"]
        if unknown:
            raise CalibrationError(f"calibration.{name}.per_model.{model}: key(s) {unknown} are not inversion "
                                   f"settings (allowed: {sorted(INVERSION_KEYS)})")
    options = {key: value for key, value in spec.items() if key in INVERSION_KEYS}
    return {**options, **(per_model.get(model_name) or {})}


def build(name: str, spec: dict, context) -> ImageSet:
    from synthcal.calibration import CalibrationError

    model = context.classifier
    if model is None:
        raise CalibrationError(f"calibration.{name}: the datafree kind needs the FP32 classifier it inverts")
    options = model_settings(spec, context.model_name, name)
    num_classes = len(context.classes) if context.classes else 10
    count = int(spec.get("count") or num_classes * int(spec.get("per_class", 100)))
    pixel_mean, pixel_std = model.pixel_space() if hasattr(model, "pixel_space") else (CIFAR10_MEAN, CIFAR10_STD)
    return invert_batchnorm(model, count, int(spec.get("seed", 0)), model_name=context.model_name,
                            show_progress=context.show_progress, image_size=tuple(context.size),
                            pixel_mean=pixel_mean, pixel_std=pixel_std, **options)
