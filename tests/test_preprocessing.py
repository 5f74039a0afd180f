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
    # each step alone, at values a skipped step would leave unseen only if it were tested at its identity
    InputSpec((24, 20), 2.0),
    InputSpec((20, 24), mean=(1.0, 0.0, 0.0)), InputSpec((24, 24), mean=(0.0, 1.0, 0.0)),
    InputSpec((24, 24), mean=(0.0, 0.0, 1.0)), InputSpec((24, 24), std=(2.0, 1.0, 1.0)),
    InputSpec((24, 24), std=(1.0, 2.0, 1.0)), InputSpec((24, 24), std=(1.0, 1.0, 2.0)),
])
def test_baked_preprocessing_matches_the_pytorch_twin(spec, tmp_path):
    from synthcal.models.preprocessing import ir_input_size

    network = _network()
    ir = bake_into_ir(export_torch(network, spec.size, tmp_path, 13), spec)
    assert ir_input_size(ir) == spec.size
    images = np.random.default_rng(1).integers(0, 256, (6, *spec.size, 3), dtype=np.uint8)
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


def test_input_spec_from_config_every_rule():
    from PIL import Image

    from synthcal.models.preprocessing import parse_size_name, size_name

    key = "models.x.input"
    for raw, message in [
        ({"size": [32]}, r"^models.x.input.size must be \[height, width\] of positive integers, got \[32\]$"),
        ({"size": [32, 0]}, r"^models.x.input.size must be \[height, width\] of positive integers, got \[32, 0\]$"),
        ({"std": [1, 0, 1]}, r"^models.x.input: scale and std must be non-zero$"),
        ({"scale": 0}, r"^models.x.input: scale and std must be non-zero$"),
        ({"std": [1, 1]}, r"^models.x.input.std needs 3 values \(one per channel\), got \[1, 1\]$"),
        ({"channels": "GBR"}, r"^models.x.input.channels must be RGB or BGR, got 'GBR'$"),
        ({"resize": "lanczos"}, r"^models.x.input.resize must be one of \['area', 'bicubic', 'bilinear', "
                                r"'nearest'\], got 'lanczos'$"),
        ({"sizes": 3}, r"^models.x.input: unknown key\(s\) \['sizes'\] \(allowed: \['channels', 'mean', 'resize', "
                       r"'scale', 'size', 'std'\]\)$"),
    ]:
        with pytest.raises(ValueError, match=message):
            InputSpec.from_config(raw, key)
    assert InputSpec.from_config(None, key) == InputSpec()
    spec = InputSpec.from_config({"size": [20, 30], "scale": 255, "mean": 0.5, "channels": "BGR"}, key)
    assert spec == InputSpec((20, 30), 255.0, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), "BGR", "bilinear")
    # defaults fill what the entry leaves out
    merged = InputSpec.from_config({"resize": "area"}, key, defaults=spec)
    assert merged == InputSpec((20, 30), 255.0, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), "BGR", "area")
    assert merged.with_size([8, 9]) == InputSpec((8, 9), 255.0, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), "BGR", "area")
    assert InputSpec.from_config({"size": [1, 3]}, key).size == (1, 3)  # one pixel is positive
    assert spec.record() == {"size": [20, 30], "scale": 255.0, "mean": (0.5, 0.5, 0.5), "std": (1.0, 1.0, 1.0),
                             "channels": "BGR", "resize": "bilinear",
                             "network_sees": "(pixels / scale - mean) / std, pixels RGB 0-255 NCHW, channels swapped "
                                             "to BGR first"}
    assert InputSpec().record()["size"] is None and InputSpec().record()["network_sees"].endswith("NCHW")
    assert InputSpec().is_identity and InputSpec((5, 5), resize="area").is_identity
    assert not InputSpec(scale=2.0).is_identity
    assert not InputSpec(mean=(0.0, 0.0, 1.0)).is_identity and not InputSpec(std=(1.0, 2.0, 1.0)).is_identity
    assert not InputSpec(channels="BGR").is_identity
    assert size_name((32, 24)) == "32x24" and parse_size_name("32x24") == (32, 24)
    # each policy is PIL's filter of that name
    images = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    for policy, method in (("bilinear", Image.Resampling.BILINEAR), ("bicubic", Image.Resampling.BICUBIC),
                           ("nearest", Image.Resampling.NEAREST), ("area", Image.Resampling.BOX)):
        expected = np.stack([np.asarray(Image.fromarray(image).resize((11, 7), method)) for image in images])
        np.testing.assert_array_equal(resize_images(images, (7, 11), policy), expected)
    np.testing.assert_array_equal(resize_images(images, (7, 11)), resize_images(images, (7, 11), "bilinear"))


def test_baked_ir_refuses_networks_it_cannot_feed_and_fixes_the_batch(tmp_path):
    import openvino as ov

    from synthcal.models.preprocessing import ir_input_size

    ir = bake_into_ir(export_torch(_network(), (24, 24), tmp_path, 13), InputSpec((24, 24), resize="nearest"), 4)
    assert ir.input(0).get_partial_shape().to_string() == "[4,3,24,24]" and ir_input_size(ir) == (24, 24)
    plain = export_torch(_network(), (24, 24), tmp_path, 13)  # no policy recorded: bilinear
    assert resize_policy(ir) == "nearest" and resize_policy(plain) == "bilinear"
    ov.save_model(ir, tmp_path / "baked.xml")
    assert ir_input_size(str(tmp_path / "baked.xml")) == (24, 24)
    two_inputs = ov.Model([], [ov.opset13.parameter([1, 3, 8, 8]), ov.opset13.parameter([1, 3, 8, 8])])
    with pytest.raises(ValueError, match="^the network has 2 inputs; synthcal needs one image input$"):
        bake_into_ir(two_inputs, InputSpec((8, 8)))
    flat = ov.opset13.parameter([1, 10])
    with pytest.raises(ValueError, match="^the network's input has rank 2; expected NCHW images$"):
        bake_into_ir(ov.Model([ov.opset13.relu(flat)], [flat]), InputSpec((8, 8)))

