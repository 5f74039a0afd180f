"""The CIFAR-10 model zoo against the reference shapes and golden outputs in ../shared/reference."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from conftest import shared_path, synthetic_state_dict
from PIL import Image

from synthcal.models import cifar_zoo as zoo
from synthcal.models.checkpoint import load_state_dict_file
from synthcal.models.raw_pixels import RawPixelClassifier
from synthcal.models.zoo import ZOO_INPUT

torch.set_num_threads(2)


@functools.cache
def _reference_shapes() -> dict:
    return json.loads(shared_path("reference", "state_dict_shapes.json").read_text())


@functools.cache
def _zoo_golden() -> dict:
    with np.load(shared_path("reference", "zoo_golden.npz")) as golden:
        return {key: golden[key] for key in golden.files}


def _calibrate_batchnorm(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    """Set BatchNorm running stats to the batch statistics of ``inputs`` so activations stay O(1)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch gives exactly its statistics
    model.train()
    with torch.no_grad():
        model(inputs)
    model.eval()


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_state_dict_keys_and_shapes(name):
    expected = _reference_shapes()[name]
    state = zoo.build_model(name).state_dict()
    assert list(state) == list(expected)
    assert {key: list(value.shape) for key, value in state.items()} == expected


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_golden_forward_with_synthetic_weights(name):
    golden = _zoo_golden()
    model = zoo.build_model(name)
    model.load_state_dict(synthetic_state_dict(model, golden, prefix=f"{name}/"), strict=True)
    model.eval()
    inputs = torch.from_numpy(golden["input"])
    with torch.no_grad():
        features = model.forward_features(inputs)
        logits = model(inputs)
    assert features.ndim == 2 and features.shape[0] == inputs.shape[0]
    np.testing.assert_allclose(logits.numpy(), golden[f"{name}/logits"], rtol=1e-4, atol=1e-5)


def test_real_resnet20_checkpoint_and_normalization():
    with np.load(shared_path("reference", "resnet20_real_golden.npz")) as golden:
        normalized, expected, files = golden["input"], golden["logits"], list(golden["files"])
    state = load_state_dict_file(shared_path("weights", "cifar10_resnet20-4118986f.pt"))
    model = zoo.build_model("resnet20")
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(normalized))
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-4, atol=1e-5)

    # the same images as raw PNG pixels through the normalising wrapper
    data_dir = shared_path("data", "cifar10-lossless")
    pixels = np.stack([np.asarray(Image.open(data_dir / name).convert("RGB")) for name in files])
    pixels = torch.from_numpy(pixels.astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    wrapped = RawPixelClassifier(model, ZOO_INPUT).eval()
    with torch.no_grad():
        np.testing.assert_allclose(wrapped.preprocess(pixels).numpy(), normalized, rtol=0, atol=1e-5)
        np.testing.assert_allclose(wrapped(pixels).numpy(), expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            wrapped.forward_features(pixels).numpy(), model.forward_features(torch.from_numpy(normalized)).numpy(),
            rtol=1e-4, atol=1e-5,
        )  # fmt: skip
    # accuracy sanity: these are training images the checkpoint fits well
    labels = [name.split("/")[1] for name in files]
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    predicted = [classes[i] for i in logits.argmax(1).tolist()]
    assert sum(p == t for p, t in zip(predicted, labels, strict=True)) >= 14


@pytest.mark.parametrize("name", ["repvgg_a0", "repvgg_a1"])  # a2 is the same structure, ~15 s
def test_repvgg_reparameterization_preserves_function(name):
    torch.manual_seed(0)
    model = zoo.build_model(name)
    zero_stats = {
        key: np.zeros(tuple(v.shape)) if key.endswith("mean") else np.ones(tuple(v.shape))
        for key, v in model.state_dict().items()
        if key.endswith(("running_mean", "running_var"))
    }
    model.load_state_dict(synthetic_state_dict(model, zero_stats), strict=True)
    _calibrate_batchnorm(model, torch.randn(4, 3, 32, 32))
    deployed = zoo.reparameterize_repvgg(model)
    assert not deployed.training

    blocks = [module for module in deployed.modules() if isinstance(module, zoo.RepVGGBlock)]
    assert len(blocks) == 1 + sum(zoo._REPVGG_BLOCKS)
    for block in blocks:
        convs = [module for module in block.modules() if isinstance(module, torch.nn.Conv2d)]
        assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].bias is not None
        assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in block.modules())
    # the original is untouched
    assert all(block.rbr_reparam is None for block in model.modules() if isinstance(block, zoo.RepVGGBlock))

    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(deployed(inputs).numpy(), model(inputs).numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            deployed.forward_features(inputs).numpy(), model.forward_features(inputs).numpy(), rtol=1e-4, atol=1e-4
        )


def test_reparameterize_rejects_other_models():
    with pytest.raises(ValueError, match="RepVGG"):
        zoo.reparameterize_repvgg(zoo.build_model("resnet20"))


def test_unknown_model_name():
    with pytest.raises(ValueError) as info:
        zoo.build_model("resnet18")
    message = str(info.value)
    assert "resnet18" in message
    assert all(name in message for name in zoo.MODEL_NAMES)
    with pytest.raises(ValueError, match="resnet18"):
        zoo.zoo_info("resnet18")


def test_truncated_checkpoint_raises_value_error(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(zoo.build_model("resnet20").state_dict(), good)
    assert list(load_state_dict_file(good)) == list(_reference_shapes()["resnet20"])

    truncated = tmp_path / "cifar10_resnet20-truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cifar10_resnet20-truncated.pt"):
        load_state_dict_file(truncated)

    not_a_state_dict = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_a_state_dict)
    with pytest.raises(ValueError, match="list.pt"):
        load_state_dict_file(not_a_state_dict)


def test_zoo_info_has_release_facts():
    for name in zoo.MODEL_NAMES:
        info = zoo.zoo_info(name)
        assert set(info) == {"url", "sha256_prefix", "sha256", "top1", "top5"}
        assert info["url"].endswith(f"cifar10_{name}-{info['sha256_prefix']}.pt")
        assert info["sha256"] is None or info["sha256"].startswith(info["sha256_prefix"])
    assert zoo.zoo_info("resnet20")["sha256"].startswith("4118986f")


def test_normalization_constants():
    assert zoo.CIFAR10_MEAN == (0.4914, 0.4822, 0.4465)
    assert zoo.CIFAR10_STD == (0.2023, 0.1994, 0.2010)
    wrapped = RawPixelClassifier(zoo.build_model("resnet20"), ZOO_INPUT)
    assert {"mean", "std"} <= {name for name, _ in wrapped.named_buffers()}
