"""Your own ONNX at 224 px (issue 35): the parity gate runs onnxruntime beside OpenVINO, a graph whose batch is fixed
at 1 (a Reshape hard-coding it, as ``torch.onnx.export`` writes for a batch-1 example input) works end to end through
a converted copy with a free batch axis, and bad files are refused before any job, in one line."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil

import numpy as np
import onnx
import pytest
import torch
import yaml
from conftest import run_snakemake, shared_path
from PIL import Image

from synthcal.data import read_image_folder
from synthcal.evaluation.evaluate import evaluate_ir
from synthcal.models import ModelConfigError, model_spec, torch_classifier
from synthcal.models.export import ParityError, export_model, fetch_network
from synthcal.models.onnx_tools import onnxruntime_logits
from synthcal.workflow import ConfigError, Study

CLASSES = ["airplane", "frog", "truck"]
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
TINY_NET = '''
from torch import nn


def tiny(num_classes=3):
    """A small 224-px classifier with BatchNorm (pooled to 56 px first, to stay cheap)."""
    layers, cin = [nn.AvgPool2d(4)], 3
    for cout in (16, 32, 32):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
'''


class HardCodedBatch(torch.nn.Module):
    """The same network, its flatten a Reshape to [batch, -1] with the traced batch as a constant: the graph
    ``torch.onnx.export(model, torch.zeros(1, 3, 224, 224), path)`` gives (the dynamo exporter bakes the example's
    batch of 1 into every Reshape; onnx2torch's copy of it then fails on a batch of 64)."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        features = self.network[:-2](x)
        return self.network[-1](features.reshape(int(features.shape[0]), -1))


class SqueezedBatch(HardCodedBatch):
    """The same network as a graph whose batch no Reshape change can free: after the first block, the feature map
    is reshaped to [channels, height, width] (the batch dropped, as code written for one image does) and unsqueezed
    back; the exporter computes that Reshape's target from the tensor's shape."""

    def forward(self, x):
        x = self.network[:4](x)  # pooled to 56 px, then the first conv block: [1, 16, 28, 28]
        x = x.reshape(x.shape[1], x.shape[2], x.shape[3]).unsqueeze(0)
        return self.network[4:](x)


def _load_tiny(path):
    spec = importlib.util.spec_from_file_location("tiny_net_224", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_split(source, target, per_class) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        (target / name).mkdir(parents=True)
        for path in sorted((source / name).glob("*.png"))[:per_class]:
            image = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
            image.save(target / name / path.name)
            images.append(np.asarray(image))
            labels.append(label)
    return np.stack(images), np.array(labels)


def _train(network, images, labels) -> None:
    torch.manual_seed(0)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    y = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    network.train()
    for _ in range(8):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 50):
            batch = order[start:start + 50]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(network(x[batch]), y[batch]).backward()
            optimizer.step()
    network.eval()


def export_onnx(module, path, dynamic: bool) -> None:
    """BatchNorm kept (``do_constant_folding=False``), opset 13, a batch-1 example; ``dynamic``: ``dynamic_axes``."""
    axes = {"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    torch.onnx.export(module.eval(), (torch.zeros(1, 3, 224, 224),), str(path), opset_version=13, dynamo=False,
                      do_constant_folding=False, input_names=["image"], output_names=["logits"], dynamic_axes=axes)


@pytest.fixture(scope="module")
def tiny224(tmp_path_factory):
    """A trained 224-px network three ways: a state_dict for kind torch, and two ONNX exports (batch fixed at 1 by a
    hard-coded Reshape; dynamic batch), with a 3-class ImageFolder dataset at 224 px."""
    lossless = shared_path("data", "cifar10-lossless")
    workdir = tmp_path_factory.mktemp("own_onnx")
    train_images, train_labels = _write_split(lossless / "train", workdir / "data" / "train", 60)
    _write_split(lossless / "test", workdir / "data" / "test", 30)
    (workdir / "tiny_net.py").write_text(TINY_NET)
    torch.manual_seed(0)
    network = _load_tiny(workdir / "tiny_net.py").tiny(3)
    _train(network, train_images, train_labels)
    torch.save(network.state_dict(), workdir / "tiny.pt")
    export_onnx(HardCodedBatch(network), workdir / "static.onnx", dynamic=False)
    export_onnx(network, workdir / "dynamic.onnx", dynamic=True)
    export_onnx(SqueezedBatch(network), workdir / "flat.onnx", dynamic=False)
    return workdir, network


def _models(workdir) -> dict:
    normalised = {"scale": 255, "mean": MEAN, "std": STD}
    return {
        "tiny_torch": {"kind": "torch", "factory": f"{workdir / 'tiny_net.py'}:tiny",
                       "checkpoint": {"path": str(workdir / "tiny.pt")}, "input": {"size": [224, 224], **normalised}},
        "tiny_static": {"kind": "onnx", "path": str(workdir / "static.onnx"), "input": normalised},
        "tiny_dynamic": {"kind": "onnx", "path": str(workdir / "dynamic.onnx"), "input": {"size": [224, 224],
                                                                                          **normalised}},
    }


def _config(workdir, models: dict, study_models: list[str], calibration: dict | None = None) -> dict:
    calibration = calibration or {"datafree": {"kind": "datafree", "per_class": 4, "iterations": 10,
                                               "batch_size": 12, "precision": "fp32", "compile": False}}
    return {
        "study": {"models": study_models, "calibration": list(calibration), "methods": ["default"]},
        "data": {"source": "folder", "folders": {"train": str(workdir / "data" / "train"),
                                                 "test": str(workdir / "data" / "test")}},
        "models": models,
        "calibration": calibration,
        "methods": {"default": {"algorithm": "default"}},
    }


def test_static_batch_onnx_exports_through_a_batch_freed_copy_proven_by_onnxruntime(tiny224, tmp_path):
    workdir, network = tiny224
    graph = onnx.load(str(workdir / "static.onnx"))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1  # the batch is fixed ...
    reshape_targets = [onnx.numpy_helper.to_array(node.attribute[0].t).tolist() for node in graph.graph.node
                       if node.op_type == "Constant"]
    assert [1, -1] in reshape_targets  # ... and hard-coded in the flatten
    test = load_image_set_from_folder(workdir / "data" / "test")
    spec = model_spec("tiny_static", _models(workdir)["tiny_static"])
    assert spec.input.size == (224, 224) and spec.has_torch
    info = export_model(spec, [str(workdir / "static.onnx")], tmp_path / "fp32.xml", tmp_path / "export.json",
                        test.images[:64])
    parity = info["parity"]
    assert parity["reference"] == "onnxruntime" and parity["images"] == 64 and parity["top1_match"] == 1.0
    assert parity["max_abs_diff"] <= parity["allowed"] == pytest.approx(1e-3 * parity["logit_scale"])
    assert info["network"]["batch_axis"] == "freed in a converted copy" and info["network"]["fixed_batch"] == 1
    assert info["network"]["input"] == "image" and len(info["network"]["reshapes_changed"]) == 1
    assert info["network"]["onnxruntime_copy_vs_original"]["max_abs_diff"] <= 1e-4
    # the IR takes any batch: evaluated in batches of 100, it gives the user's own PyTorch predictions
    metrics, predictions = evaluate_ir(tmp_path / "fp32.xml", test, show_progress=False)
    with torch.no_grad():
        pixels = (torch.from_numpy(test.images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
        users = network(pixels).numpy().argmax(1)
    assert abs(metrics["top1"] - float((users == test.labels).mean())) <= 1e-9 and metrics["top1"] > 0.5


def load_image_set_from_folder(folder):
    return read_image_folder(folder, size=None, classes=CLASSES, labelled=True, show_progress=False)


def test_datafree_network_of_a_static_batch_onnx_takes_batches_and_matches_onnxruntime(tiny224):
    workdir, network = tiny224
    spec = model_spec("tiny_static", _models(workdir)["tiny_static"])
    classifier = torch_classifier(spec, workdir / "static.onnx")
    assert classifier.network.batch_freed["fixed_batch"] == 1
    assert classifier.network.batch_freed["max_abs_diff_pytorch_vs_onnxruntime"] <= 1e-4
    images = np.random.default_rng(1).integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ours = classifier(pixels).numpy()  # a batch of 64: the original graph's Reshape would refuse it
        users = network((pixels / 255 - 0.5) / 0.25).numpy()
    original = onnxruntime_logits(workdir / "static.onnx", ((pixels / 255 - 0.5) / 0.25).numpy())
    np.testing.assert_allclose(ours, users, atol=1e-4)
    np.testing.assert_allclose(original, users, atol=1e-4)


def test_parity_error_names_every_runtime_and_how_far_apart(tiny224, tmp_path):
    workdir, _ = tiny224
    test = load_image_set_from_folder(workdir / "data" / "test")
    spec = model_spec("tiny_static", _models(workdir)["tiny_static"])
    with pytest.raises(ParityError) as error:
        export_model(spec, [str(workdir / "static.onnx")], tmp_path / "fp32.xml", tmp_path / "export.json",
                     test.images[:8], tolerance=1e-12)
    message = str(error.value)
    assert message.startswith("models.tiny_static: OpenVINO vs onnxruntime max |Δlogit| = ")
    assert "OpenVINO vs PyTorch (onnx2torch): " in message and "onnxruntime vs PyTorch (onnx2torch): " in message
    # every way to the IR was tried first: the batch-freed copy, OpenVINO's reshape, then the fixed batch of 1
    assert "IRs tried before this one: freed in a converted copy: max |Δlogit| = " in message
    assert "OpenVINO's own reshape of the original: max |Δlogit| = " in message
    assert "\n" not in message and list(tmp_path.iterdir()) == []


def test_external_data_inside_its_folder_is_copied_into_one_file(tiny224, tmp_path):
    workdir, _ = tiny224
    folder = tmp_path / "theirs"
    folder.mkdir()
    onnx.save(onnx.load(str(workdir / "static.onnx")), str(folder / "net.onnx"), save_as_external_data=True,
              location="net.weights", size_threshold=0)
    entry = {**_models(workdir)["tiny_static"], "path": str(folder / "net.onnx")}
    spec = model_spec("mine", entry)
    fetched = fetch_network(spec, tmp_path / "cache", tmp_path / "w" / "mine.onnx", tmp_path / "w" / "mine.onnx.json")
    assert fetched["external_data"] == "copied into the file" and sorted(p.name for p in (tmp_path / "w").iterdir()) \
        == ["mine.onnx", "mine.onnx.json"]
    shutil.rmtree(folder)  # the copy stands alone
    info = export_model(spec, [str(tmp_path / "w" / "mine.onnx")], tmp_path / "fp32.xml", tmp_path / "export.json",
                        load_image_set_from_folder(workdir / "data" / "test").images[:8])
    assert info["parity"]["max_abs_diff"] <= info["parity"]["allowed"]


# ---------------------------------------------------------------- bad input: refused before any job, in one line


def _refusal(workdir, entry: dict, calibration: dict | None = None) -> str:
    calibration = calibration or {"noise": {"kind": "noise", "count": 10}}
    with pytest.raises(ConfigError) as error:
        Study(_config(workdir, {"mine": entry}, ["mine"], calibration))
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_bad_onnx_files_are_refused_naming_key_and_file(tiny224, tmp_path):
    workdir, network = tiny224
    data = (workdir / "static.onnx").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    message = _refusal(workdir, {"kind": "onnx", "path": str(truncated)})
    assert message.startswith(f"models.mine.path: {truncated} is not a readable ONNX model (truncated")

    inside = tmp_path / "model"
    inside.mkdir()
    onnx.save(onnx.load(str(workdir / "static.onnx")), str(inside / "net.onnx"), save_as_external_data=True,
              location="net.weights", size_threshold=0)
    shutil.move(inside / "net.weights", tmp_path / "net.weights")
    outside = onnx.load(str(inside / "net.onnx"), load_external_data=False)
    for tensor in outside.graph.initializer:
        for field in tensor.external_data:
            if field.key == "location":
                field.value = "../net.weights"
    onnx.save(outside, str(inside / "net.onnx"))
    message = _refusal(workdir, {"kind": "onnx", "path": str(inside / "net.onnx")})
    assert message.startswith(f"models.mine.path: {inside / 'net.onnx'} is not a valid ONNX model")
    assert "'../net.weights' points outside the directory" in message

    grey = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 3))
    torch.onnx.export(grey.eval(), (torch.zeros(1, 1, 224, 224),), str(tmp_path / "grey.onnx"), dynamo=False,
                      input_names=["gray"])
    message = _refusal(workdir, {"kind": "onnx", "path": str(tmp_path / "grey.onnx")})
    assert message == (f"models.mine.path: {tmp_path / 'grey.onnx'}: the input 'gray' takes 1 channel(s) (shape "
                       "[1, 1, 224, 224]); synthcal feeds RGB images, 3 channels")

    torch.onnx.export(network, (torch.zeros(1, 3, 224, 224),), str(tmp_path / "any_size.onnx"), dynamo=False,
                      input_names=["image"], dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}})
    message = _refusal(workdir, {"kind": "onnx", "path": str(tmp_path / "any_size.onnx")})
    assert message.startswith("models.mine.input.size is not set and the input 'image' of "
                              f"{tmp_path / 'any_size.onnx'} has a dynamic spatial size")
    assert Study(_config(workdir, {"mine": {"kind": "onnx", "path": str(tmp_path / "any_size.onnx"),
                                            "input": {"size": [224, 224]}}}, ["mine"],
                         {"noise": {"kind": "noise", "count": 10}})).models == ["mine"]


def test_a_batch_that_cannot_be_freed_is_refused_for_datafree_naming_input_batch_and_flag(tiny224, tmp_path):
    workdir, _ = tiny224
    entry = {"kind": "onnx", "path": str(workdir / "flat.onnx"), "input": {"scale": 255, "mean": MEAN, "std": STD}}
    message = _refusal(workdir, entry, {"datafree": {"kind": "datafree", "per_class": 2}})
    assert message.startswith("calibration.datafree (kind datafree) inverts a PyTorch network, but models.mine is "
                              "kind onnx and its input 'image' has a fixed batch of 1 that synthcal cannot free")
    assert "dynamic_axes={'image': {0: 'batch'}}" in message
    with pytest.raises(ModelConfigError, match=r"models.mine is kind onnx and its input 'image' has a fixed batch"):
        torch_classifier(model_spec("mine", entry), workdir / "flat.onnx")


# ---------------------------------------------------------------- end to end: the same network three ways


@pytest.fixture(scope="module")
def three_ways_run(tiny224):
    workdir, _ = tiny224
    config = _config(workdir, _models(workdir), list(_models(workdir)))
    # and a graph whose fixed batch nothing frees: its IR keeps batch 1, fed batch-1 requests in parallel
    config["models"]["tiny_flat"] = {"kind": "onnx", "path": str(workdir / "flat.onnx"),
                                     "input": {"scale": 255, "mean": MEAN, "std": STD}}
    config["calibration"]["noise"] = {"kind": "noise", "count": 12}
    config["methods"]["accuracy_aware"] = {"algorithm": "accuracy_aware", "validation": "agreement"}
    config["study"] = [config["study"], {"models": ["tiny_flat", "tiny_static"], "calibration": ["noise"],
                                         "methods": ["default", "accuracy_aware"]}]
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = run_snakemake(workdir, config_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return workdir / "results"


@pytest.mark.slow
def test_the_same_network_as_torch_and_both_onnx_exports_gives_the_same_results(three_ways_run):
    results = three_ways_run
    names = ["tiny_torch", "tiny_static", "tiny_dynamic"]
    fp32 = {name: json.loads((results / "eval" / name / "fp32" / "metrics.json").read_text()) for name in names}
    assert fp32["tiny_torch"]["top1"] > 0.5  # chance: 1/3
    predictions = {name: np.load(results / "eval" / name / "fp32" / "predictions.npz") for name in names}
    for name in names[1:]:
        assert abs(fp32[name]["top1"] - fp32["tiny_torch"]["top1"]) <= 0.001, name
        np.testing.assert_array_equal(predictions[name]["predictions"], predictions["tiny_torch"]["predictions"])
    static = json.loads((results / "models" / "tiny_static" / "export.json").read_text())
    assert static["parity"]["reference"] == "onnxruntime" and static["network"]["fixed_batch"] == 1
    assert "network" not in json.loads((results / "models" / "tiny_dynamic" / "export.json").read_text())
    sets = {name: np.load(results / "calib" / "datafree" / "224x224" / name / "set.npz") for name in names}
    for name in names[1:]:  # the batch-freed copy inverts to the same images, byte for byte
        np.testing.assert_array_equal(sets[name]["images"], sets["tiny_torch"]["images"])
    assert sets["tiny_static"]["images"].shape == (12, 224, 224, 3)
    int8 = {name: json.loads((results / "eval" / name / "datafree" / "default" / "metrics.json").read_text())
            for name in names}
    agreement = {name: metrics["agreement_with_fp32"] for name, metrics in int8.items()}
    assert agreement["tiny_static"] == agreement["tiny_dynamic"], agreement
    assert abs(agreement["tiny_static"] - agreement["tiny_torch"]) <= 0.003 + 1 / 90, agreement


@pytest.mark.slow
def test_a_batch_nothing_frees_is_evaluated_and_quantized_one_image_per_request(three_ways_run):
    results = three_ways_run
    export = json.loads((results / "models" / "tiny_flat" / "export.json").read_text())
    assert export["network"]["ir_batch"] == 1 and export["network"]["batch_axis"].startswith("fixed at 1 in the IR")
    assert export["parity"]["max_abs_diff"] <= export["parity"]["allowed"]
    flat = np.load(results / "eval" / "tiny_flat" / "fp32" / "predictions.npz")
    static = np.load(results / "eval" / "tiny_static" / "fp32" / "predictions.npz")
    assert len(flat["predictions"]) == 90  # every test image, one per request
    np.testing.assert_array_equal(flat["predictions"], static["predictions"])
    np.testing.assert_allclose(flat["logits"], static["logits"], atol=1e-4)
    for method in ("default", "accuracy_aware"):
        info = json.loads((results / "quantized" / "tiny_flat" / "noise" / method / "quantize.json").read_text())
        assert info["calibration_batch_size"] == 1 and info["fake_quantize_count"] > 0, method
        metrics = json.loads((results / "eval" / "tiny_flat" / "noise" / method / "metrics.json").read_text())
        assert metrics["agreement_with_fp32"] > 0.5, method


def test_the_runtime_that_agrees_with_no_other_is_named():
    from synthcal.models.export import _disagreement

    logits = np.random.default_rng(0).normal(0, 5, (8, 1000)).astype(np.float32)
    opinions = {"OpenVINO": logits + 1e-6, "onnxruntime": logits + 0.7, "PyTorch (onnx2torch)": logits}
    message = _disagreement(opinions, 1e-3)
    assert re.search(r"OpenVINO vs PyTorch \(onnx2torch\): [0-9.e-]+ \(agree", message)
    assert "onnxruntime vs PyTorch (onnx2torch): 0.7 (differ" in message
    assert message.endswith("onnxruntime is the odd one out, the others agree with each other")
