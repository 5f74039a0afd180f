"""What a model's network expects, and how raw pixels become that.

Every FP32 IR of the study takes the same input: float32 NCHW RGB pixels in [0, 255] at the
model's ``input.size``. The network itself sees ``(pixels / scale - mean) / std`` (after a channel
swap for ``channels: BGR``); that step is baked into the IR with OpenVINO's ``PrePostProcessor``.
Images are resized to ``input.size`` outside the network (PIL, policy ``input.resize``) and the
policy is recorded with every result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor
from PIL import Image

RT_INFO_RESIZE = ["synthcal", "resize"]
RESIZE_POLICIES = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                   "nearest": Image.Resampling.NEAREST, "area": Image.Resampling.BOX}


@dataclass(frozen=True)
class InputSpec:
    """``models.<name>.input``: size (H, W), pixel scale, per-channel mean/std, channel order, resize policy."""

    size: tuple[int, int] | None = None
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channels: str = "RGB"
    resize: str = "bilinear"

    @classmethod
    def from_config(cls, raw: dict | None, key: str, defaults: InputSpec | None = None) -> InputSpec:
        raw = dict(raw or {})
        base = asdict(defaults or cls())
        unknown = sorted(set(raw) - set(base))
        if unknown:
            raise ValueError(f"{key}: unknown key(s) {unknown} (allowed: {sorted(base)})")
        merged = {**base, **raw}
        size = merged["size"]
        if size is not None:
            size = (int(size), int(size)) if isinstance(size, int) else tuple(int(v) for v in size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"{key}.size must be [height, width] of positive integers, got {merged['size']}")
        mean, std = _triple(merged["mean"], f"{key}.mean"), _triple(merged["std"], f"{key}.std")
        if any(value == 0 for value in std) or float(merged["scale"]) == 0:
            raise ValueError(f"{key}: scale and std must be non-zero")
        if merged["channels"] not in ("RGB", "BGR"):
            raise ValueError(f"{key}.channels must be RGB or BGR, got {merged['channels']!r}")
        if merged["resize"] not in RESIZE_POLICIES:
            raise ValueError(f"{key}.resize must be one of {sorted(RESIZE_POLICIES)}, got {merged['resize']!r}")
        return cls(size, float(merged["scale"]), mean, std, merged["channels"], merged["resize"])

    @property
    def is_identity(self) -> bool:
        return self.scale == 1 and self.mean == (0.0, 0.0, 0.0) and self.std == (1.0, 1.0, 1.0) \
            and self.channels == "RGB"

    def with_size(self, size) -> InputSpec:
        return InputSpec(tuple(size), self.scale, self.mean, self.std, self.channels, self.resize)

    def record(self) -> dict:
        return {**asdict(self), "size": list(self.size) if self.size else None,
                "network_sees": "(pixels / scale - mean) / std, pixels RGB 0-255 NCHW"
                + (", channels swapped to BGR first" if self.channels == "BGR" else "")}


def _triple(value, key: str) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"{key} needs 3 values (one per channel), got {value}")
    return tuple(values)


def size_name(size) -> str:
    """``(32, 32)`` → ``'32x32'`` (the size part of calibration-set paths)."""
    return f"{int(size[0])}x{int(size[1])}"


def parse_size_name(name: str) -> tuple[int, int]:
    height, _, width = name.partition("x")
    return int(height), int(width)


def ir_input_size(model: ov.Model | str) -> tuple[int, int]:
    """(H, W) of an IR's image input (a path or a read model)."""
    model = model if isinstance(model, ov.Model) else ov.Core().read_model(str(model))
    shape = model.input(0).get_partial_shape()
    return shape[2].get_length(), shape[3].get_length()


def resize_policy(model: ov.Model) -> str:
    """The resize policy an IR was exported with (kept in its rt_info; bilinear when absent)."""
    return model.get_rt_info(RT_INFO_RESIZE).astype(str) if model.has_rt_info(RT_INFO_RESIZE) else "bilinear"


def resize_images(images: np.ndarray, size, policy: str = "bilinear") -> np.ndarray:
    """uint8 NHWC images resized to ``size`` (H, W) with PIL; returned unchanged when already that size."""
    height, width = int(size[0]), int(size[1])
    if images.shape[1:3] == (height, width):
        return images
    method = RESIZE_POLICIES[policy]
    out = np.empty((len(images), height, width, 3), dtype=np.uint8)
    for index, image in enumerate(images):
        out[index] = np.asarray(Image.fromarray(image).resize((width, height), method), dtype=np.uint8)
    return out


def bake_into_ir(model: ov.Model, spec: InputSpec, batch: int = -1) -> ov.Model:
    """Give the IR a raw-pixel input (f32 NCHW RGB 0-255 at ``spec.size``, dynamic batch unless ``batch`` fixes it)
    with PrePostProcessor."""
    if len(model.inputs) != 1:
        raise ValueError(f"the network has {len(model.inputs)} inputs; synthcal needs one image input")
    shape = model.input(0).get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() != 4:
        raise ValueError(f"the network's input has rank {shape.rank.get_length()}; expected NCHW images")
    height, width = spec.size
    model.reshape({model.input(0): ov.PartialShape([batch, 3, height, width])})
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.f32).set_layout(ov.Layout("NCHW"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess()
    if spec.channels == "BGR":
        steps.reverse_channels()
    if spec.scale != 1:
        steps.scale(spec.scale)
    if spec.mean != (0.0, 0.0, 0.0):
        steps.mean(list(spec.mean))
    if spec.std != (1.0, 1.0, 1.0):
        steps.scale(list(spec.std))
    model = ppp.build()
    model.set_rt_info(spec.resize, RT_INFO_RESIZE)
    return model
