"""The DiStyleGAN checkpoint shipped for the offline study: small, fp16, its recorded quality reproducible."""

from __future__ import annotations

import json

import torch

from synthcal.calibration.quality import calibration_quality
from synthcal.data import read_image_folder
from synthcal.gan.distylegan import WEIGHTS_FILE, load_generator, sample_distylegan
from synthcal.models.zoo import load_zoo_classifier
from tests.conftest import REPO, shared_path

CHECKPOINT = REPO / "checkpoints" / "distylegan-cifar10"


def test_shipped_generator_is_small_fp16_and_loads():
    weights = CHECKPOINT / WEIGHTS_FILE
    assert weights.stat().st_size <= 10 * 1024 * 1024
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert {tensor.dtype for tensor in state.values() if tensor.is_floating_point()} == {torch.float16}
    generator = load_generator(CHECKPOINT)
    assert all(parameter.dtype == torch.float32 for parameter in generator.parameters())


def test_shipped_generator_class_consistency_matches_its_readme():
    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    train = shared_path("data", "cifar10-lossless", "train")
    recorded = json.loads((CHECKPOINT / "quality.json").read_text())
    samples = sample_distylegan(CHECKPOINT, recorded["per_class"], recorded["seed"], show_progress=False)
    stats = calibration_quality(load_zoo_classifier("resnet20", weights), samples,
                                read_image_folder(train, show_progress=False))
    assert stats["class_consistency"] >= 0.5  # the target; chance is 0.1
    assert abs(stats["class_consistency"] - recorded["class_consistency"]) <= 0.005  # thread-count noise
    assert abs(stats["frechet_distance"] - recorded["frechet_distance"]) < 0.05


def test_workflow_entry_writes_the_same_figures(tmp_path):
    from types import SimpleNamespace

    from synthcal.calibration.quality import generator_quality_from_files
    from synthcal.io import save_image_set

    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    train = read_image_folder(shared_path("data", "cifar10-lossless", "train"), show_progress=False)
    save_image_set(tmp_path / "train.npz", train.images, train.labels, train.provenance)
    recorded = json.loads((CHECKPOINT / "quality.json").read_text())
    from synthcal.models import model_spec
    from synthcal.models.export import export_model

    export_model(model_spec("resnet20", {}), [str(weights)], tmp_path / "fp32.xml", tmp_path / "export.json",
                 train.images[:16])
    inputs = SimpleNamespace(xml=tmp_path / "fp32.xml", generator=CHECKPOINT / WEIGHTS_FILE,
                             train=tmp_path / "train.npz")
    stats = generator_quality_from_files("resnet20", inputs, tmp_path / "quality.json",
                                         per_class=recorded["per_class"], seed=recorded["seed"])
    assert json.loads((tmp_path / "quality.json").read_text())["class_consistency"] == stats["class_consistency"]
    assert abs(stats["class_consistency"] - recorded["class_consistency"]) <= 0.005
    assert abs(stats["frechet_distance"] - recorded["frechet_distance"]) < 0.05
