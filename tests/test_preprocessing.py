"""Per-model preprocessing: the PrePostProcessor step baked into the IR equals its PyTorch twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthcal.inference import compile_model, infer_logits
from synthcal.models.preprocessing import (
    InputSpec,
    bake_into_ir,
    resize_images,
    resize_policy,
)
from synthcal.models.pytorch import export_torch, torch_logits
from synthcal.models.raw_pixels import RawPixelClassifier


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()


@pytest.mark.parametrize("spec", [
    InputSpec((24, 24)),
    InputSpec((24, 24), 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "RGB", "bicubic"),
    InputSpec((24, 24), 1.0, (123.7, 116.3, 103.5), (58.4, 57.1, 57.4), "BGR"),
])
def test_baked_preprocessing_matches_the_pytorch_twin(spec, tmp_path):
    network = _network()
    ir = bake_into_ir(export_torch(network, spec.size, tmp_path, 13), spec)
    images = np.random.default_rng(1).integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    expected = torch_logits(RawPixelClassifier(network, spec).eval(), images)
    np.testing.assert_allclose(infer_logits(compile_model(ir, "f32"), images), expected, rtol=1e-4, atol=1e-4)
    assert resize_policy(ir) == spec.resize


def test_channel_order_matters(tmp_path):
    network = _network()
    rgb, bgr = InputSpec((24, 24)), InputSpec((24, 24), channels="BGR")
    images = np.random.default_rng(2).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    logits = [infer_logits(compile_model(bake_into_ir(export_torch(network, (24, 24), tmp_path, 13), spec), "f32"),
                           images) for spec in (rgb, bgr)]
    assert not np.allclose(logits[0], logits[1])
    flipped = infer_logits(compile_model(bake_into_ir(export_torch(network, (24, 24), tmp_path, 13), rgb), "f32"),
                           np.ascontiguousarray(images[..., ::-1]))
    np.testing.assert_allclose(flipped, logits[1], rtol=1e-4, atol=1e-4)


def test_input_spec_errors_name_the_key():
    with pytest.raises(ValueError, match=r"models.x.input: unknown key\(s\) \['means'\]"):
        InputSpec.from_config({"means": [0, 0, 0]}, "models.x.input")
    with pytest.raises(ValueError, match=r"models.x.input.mean needs 3 values"):
        InputSpec.from_config({"mean": [0.5, 0.5]}, "models.x.input")
    with pytest.raises(ValueError, match=r"models.x.input.channels must be RGB or BGR"):
        InputSpec.from_config({"channels": "GBR"}, "models.x.input")
    assert InputSpec.from_config({"size": 40, "std": 0.5}, "k").size == (40, 40)


def test_resize_images_keeps_same_size_and_resizes_others():
    images = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert resize_images(images, (32, 32)) is images
    resized = resize_images(images, (48, 40), "nearest")
    assert resized.shape == (3, 48, 40, 3) and resized.dtype == np.uint8
    flat = np.full((1, 16, 16, 3), 77, np.uint8)
    assert (resize_images(flat, (33, 20), "bicubic") == 77).all()
