"""A dataset with another resolution and class count: 3 CIFAR-10 classes upsampled to 64x64, a small PyTorch
model that takes 48x48 inputs, end to end through Snakemake."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, shared_path
from PIL import Image

from synthcal.calibration import CalibrationContext, build_calibration_set
from synthcal.io import UNLABELLED

CLASSES = ["airplane", "frog", "truck"]
TINY_NET = '''
import torch
from torch import nn


def tiny(num_classes=3):
    layers, cin = [], 3
    for cout in (16, 32, 32):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
'''
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _write_split(source, target, per_class=None) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        (target / name).mkdir(parents=True)
        for path in sorted((source / name).glob("*.png"))[:per_class]:
            image = Image.open(path).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)
            image.save(target / name / path.name)
            images.append(np.asarray(image.resize((48, 48), Image.Resampling.BILINEAR)))
            labels.append(label)
    return np.stack(images), np.array(labels)


def _train_tiny(module_path, images, labels, out) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_net", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    network = module.tiny(3)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    y = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    for _ in range(6):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(network(x[batch]), y[batch]).backward()
            optimizer.step()
    torch.save(network.state_dict(), out)


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory):
    lossless = shared_path("data", "cifar10-lossless")
    workdir = tmp_path_factory.mktemp("three_classes")
    train_images, train_labels = _write_split(lossless / "train", workdir / "data" / "train")
    _write_split(lossless / "test", workdir / "data" / "test", per_class=40)
    (workdir / "tiny_net.py").write_text(TINY_NET)
    _train_tiny(workdir / "tiny_net.py", train_images, train_labels, workdir / "tiny.pt")
    config = {
        "study": {"models": ["tiny"], "calibration": ["cifar10", "noise", "fractal", "datafree"],
                  "methods": ["default", "accuracy_aware"]},
        "data": {"source": "folder", "folders": {"train": str(workdir / "data" / "train"),
                                                 "test": str(workdir / "data" / "test")}},
        "models": {"tiny": {"kind": "torch", "factory": f"{workdir / 'tiny_net.py'}:tiny",
                            "checkpoint": {"path": str(workdir / "tiny.pt")},
                            "input": {"size": [48, 48], "mean": MEAN, "std": STD, "scale": 255}}},
        "calibration": {"cifar10": {"kind": "cifar10", "per_class": 10},
                        "noise": {"kind": "noise", "count": 30},
                        "fractal": {"kind": "fractal", "count": 30},
                        "datafree": {"kind": "datafree", "per_class": 10, "iterations": 20}},
        "methods": {"accuracy_aware": {"algorithm": "accuracy_aware", "validation": "agreement"}},
    }
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = run_snakemake(workdir, config_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return workdir


@pytest.mark.slow
def test_three_classes_at_another_size_run_end_to_end(three_class_run):
    results = three_class_run / "results"
    test = np.load(results / "data" / "test.npz")
    assert test["images"].shape == (120, 64, 64, 3) and set(test["labels"].tolist()) == {0, 1, 2}
    assert json.loads(str(test["provenance"]))["classes"] == CLASSES
    fp32 = json.loads((results / "eval" / "tiny" / "fp32" / "metrics.json").read_text())
    assert fp32["input_size"] == [48, 48] and fp32["resize"] == "bilinear"
    assert len(fp32["per_class_top1"]) == 3 and fp32["top1"] > 0.5  # chance is 1/3
    summary = pd.read_csv(results / "report" / "summary.csv")
    assert {"tiny"} == set(summary["model"])
    assert len(summary[summary["precision"] == "int8"]) >= 4 * 2
    for kind, labelled in (("cifar10", True), ("noise", False), ("fractal", False)):
        with np.load(results / "calib" / kind / "48x48" / "set.npz") as calibration:
            assert calibration["images"].shape[1:] == (48, 48, 3), kind
            assert (calibration["labels"] >= 0).all() == labelled and calibration["labels"].max() <= 2
    with np.load(results / "calib" / "datafree" / "48x48" / "tiny" / "set.npz") as datafree:
        assert datafree["images"].shape == (30, 48, 48, 3) and set(datafree["labels"].tolist()) == {0, 1, 2}
    for calibration in ("cifar10", "datafree"):
        metrics = json.loads((results / "eval" / "tiny" / calibration / "default" / "metrics.json").read_text())
        assert metrics["agreement_with_fp32"] > 0.8, calibration


def test_gan_samples_keep_labels_only_for_cifar10_classes():
    spec = {"kind": "gan", "generator": "distylegan", "checkpoint": str(REPO / "checkpoints" / "distylegan-cifar10"),
            "per_class": 1}
    cifar = build_calibration_set("gan", spec, CalibrationContext(size=(32, 32), show_progress=False,
                                                                  classes=["airplane", "automobile", "bird", "cat",
                                                                           "deer", "dog", "frog", "horse", "ship",
                                                                           "truck"]))
    assert cifar.labels.tolist() == list(range(10))
    other = build_calibration_set("gan", spec, CalibrationContext(size=(48, 48), classes=CLASSES,
                                                                  show_progress=False))
    assert (other.labels == UNLABELLED).all() and other.images.shape == (10, 48, 48, 3)
    assert other.provenance["resized_from"] == [32, 32] and "labels_dropped" in other.provenance
