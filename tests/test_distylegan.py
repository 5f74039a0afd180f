"""DiStyleGAN generator/discriminator against ../shared/reference, checkpoint folders and the sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shared_path, synthetic_state_dict

from synthcal.gan import distylegan
from synthcal.gan.distylegan import Discriminator, Generator, load_generator, sample_distylegan, save_generator

torch.set_num_threads(2)


def _golden() -> dict:
    with np.load(shared_path("reference", "distylegan_golden.npz")) as golden:
        return {key: golden[key] for key in golden.files}


@pytest.fixture(scope="module")
def golden_generator() -> tuple[Generator, dict]:
    golden = _golden()
    model = Generator()
    model.load_state_dict(synthetic_state_dict(model, golden), strict=True)
    return model.eval(), golden


def _small_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(ngf=32, z_dim=16, project_dim=8).eval()


def test_state_dict_keys_and_shapes_match_reference():
    reference = json.loads(shared_path("reference", "distylegan_state_dict_shapes.json").read_text())
    model = Generator(**reference["config"])
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert list(shapes) == list(reference["state_dict_shapes"])
    assert shapes == reference["state_dict_shapes"]
    assert sum(p.numel() for p in model.parameters()) == 2_054_368


def test_golden_forward(golden_generator):
    model, golden = golden_generator
    with torch.no_grad():
        images = model(torch.from_numpy(golden["z"]), torch.from_numpy(golden["onehot"]))
    np.testing.assert_allclose(images.numpy(), golden["images"], rtol=1e-4, atol=1e-5)
    assert images.min() >= -1 and images.max() <= 1


def test_fp16_round_trip_and_reference_config(tmp_path, golden_generator):
    model, golden = golden_generator
    save_generator(model, tmp_path / "fp16", dtype=torch.float16)
    saved = torch.load(tmp_path / "fp16" / "generator.pt", weights_only=True)
    assert saved["fc.0.weight"].dtype == torch.float16
    assert saved["fc.1.num_batches_tracked"].dtype == torch.int64
    assert json.loads((tmp_path / "fp16" / "config.json").read_text()) == distylegan.DEFAULT_GENERATOR_CONFIG
    loaded = load_generator(tmp_path / "fp16")
    assert not loaded.training
    assert all(value.dtype in (torch.float32, torch.int64) for value in loaded.state_dict().values())
    with torch.no_grad():
        images = loaded(torch.from_numpy(golden["z"]), torch.from_numpy(golden["onehot"]))
    np.testing.assert_allclose(images.numpy(), golden["images"], atol=2e-2)


def test_fp32_round_trip_is_exact_and_extra_config_keys_ignored(tmp_path):
    model = _small_generator()
    save_generator(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "ndf": 64, "lambda_pixel": 0.2}))
    loaded = load_generator(tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_generator(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_generator(tmp_path)
    save_generator(_small_generator(), tmp_path)
    (tmp_path / "generator.pt").unlink()
    with pytest.raises(FileNotFoundError, match="generator.pt"):
        load_generator(tmp_path)
    state = _small_generator().state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "generator.pt")
    with pytest.raises(ValueError, match="unexpected keys.*extra.weight"):
        load_generator(tmp_path)
    # right keys, wrong config -> shape mismatch
    torch.save(Generator(ngf=16, z_dim=16, project_dim=8).state_dict(), tmp_path / "generator.pt")
    with pytest.raises(ValueError, match="shape"):
        load_generator(tmp_path)


def test_sampler_is_deterministic_and_sorted_by_class(tmp_path):
    save_generator(_small_generator(), tmp_path / "gen")
    first, noise = sample_distylegan(tmp_path / "gen", per_class=3, seed=7, batch_size=4, show_progress=False,
                                     return_noise=True)
    again = sample_distylegan(tmp_path / "gen", per_class=3, seed=7, batch_size=30, show_progress=False)
    other = sample_distylegan(tmp_path / "gen", per_class=3, seed=8, show_progress=False)
    assert first.images.shape == (30, 32, 32, 3) and first.images.dtype == np.uint8
    assert first.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert first.images.tobytes() == again.images.tobytes()
    assert first.images.tobytes() != other.images.tobytes()
    assert noise.shape == (30, 16) and noise.dtype == np.float32
    np.testing.assert_array_equal(noise, torch.randn(30, 16, generator=torch.Generator().manual_seed(7)).numpy())
    provenance = first.provenance
    assert provenance["generator"] == "distylegan" and provenance["seed"] == 7 and provenance["per_class"] == 3
    assert provenance["config"]["ngf"] == 32 and len(provenance["generator_sha256"]) == 64
    assert provenance["checkpoint"].endswith("generator.pt") and provenance["torch"] == torch.__version__


def test_sampler_matches_direct_forward():
    model = _small_generator(1)
    image_set, noise = sample_distylegan(model, per_class=1, seed=3, show_progress=False, return_noise=True)
    with torch.no_grad():
        direct = model(torch.from_numpy(noise), torch.eye(10))
    expected = ((direct + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(image_set.images, expected)
    assert image_set.provenance["checkpoint"] is None


def test_discriminator_shapes():
    torch.manual_seed(0)
    model = Discriminator()
    logit, features = model(torch.rand(3, 3, 32, 32) * 2 - 1, torch.eye(10)[:3])
    assert logit.shape == (3,)
    assert [tuple(f.shape) for f in features] == [(3, 128, 16, 16), (3, 128, 8, 8), (3, 256, 4, 4), (3, 512, 2, 2)]
    small_logit, small_features = Discriminator(ndf=16, project_dim=8)(torch.zeros(2, 3, 32, 32), torch.eye(10)[:2])
    assert small_logit.shape == (2,) and small_features[-1].shape == (2, 64, 2, 2)


def test_projection_discriminator_conditions_on_class():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    cat, dog = torch.eye(10)[[3] * 4], torch.eye(10)[[5] * 4]
    plain = Discriminator(ndf=16, project_dim=8).eval()  # eval: spectral norm stops updating
    projected = Discriminator(ndf=16, project_dim=8, projection=True).eval()
    with torch.no_grad():
        plain_gap = plain(images, cat)[0] - plain(images, dog)[0]
        projected_gap = projected(images, cat)[0] - projected(images, dog)[0]
    # concatenated one-hot: the class shifts every image's logit by the same constant
    assert torch.allclose(plain_gap, plain_gap[0].expand(4), atol=1e-6)
    # projection: how much the class matters depends on the image
    assert projected_gap.std() > 1e-4


def test_auxiliary_classifier_head():
    torch.manual_seed(0)
    images, onehot = torch.rand(3, 3, 32, 32) * 2 - 1, torch.eye(10)[:3]
    model = Discriminator(ndf=16, project_dim=8, classifier=True).eval()
    logit, features, class_logits = model.forward_with_classes(images, onehot)
    assert logit.shape == (3,) and class_logits.shape == (3, 10) and len(features) == 4
    # the head reads the image only: the class fed in does not change its logits
    with torch.no_grad():
        other = model.forward_with_classes(images, torch.eye(10)[3:6])[2]
    assert torch.equal(class_logits.detach(), other)
    assert Discriminator(ndf=16, project_dim=8).forward_with_classes(images, onehot)[2] is None
