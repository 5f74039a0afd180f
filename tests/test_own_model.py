"""Bring your own model and dataset: torch / onnx / openvino kinds, their preprocessing, any-class datasets.

The worked example of the README (examples/own_model) is built from ../shared's resnet20 in a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, SHARED, run_snakemake, shared_path

from synthcal.data import read_image_folder
from synthcal.evaluation.evaluate import evaluate_ir
from synthcal.io import file_digest
from synthcal.models import ModelConfigError, model_spec
from synthcal.models.checkpoint import CheckpointError
from synthcal.models.export import export_model, fetch_network
from synthcal.workflow import ConfigError, Study

GRID_METHODS = ["default", "accuracy_aware"]
KINDS_WITHOUT_TORCH = ["cifar10", "folder", "fractal", "noise", "distylegan"]


def _load_example_module():
    spec = importlib.util.spec_from_file_location("make_example", REPO / "examples" / "own_model" / "make_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    shared_path("weights", "cifar10_resnet20-4118986f.pt")
    out = tmp_path_factory.mktemp("own_model")
    files = _load_example_module().build(SHARED, out)
    return out, files


def example_models(files) -> dict:
    """examples/own_model/config.yaml's models, pointed at the files built for this test."""
    models = yaml.safe_load((REPO / "examples" / "own_model" / "config.yaml").read_text())["models"]
    models["their_torch"]["factory"] = f"{REPO}/examples/own_model/their_resnet.py:resnet20"
    models["their_torch"]["checkpoint"]["path"] = str(files["checkpoint"])
    models["their_onnx"]["path"] = str(files["onnx"])
    models["their_ir"]["path"] = str(files["ir"])
    return models


def users_own_logits(files, images: np.ndarray) -> np.ndarray:
    """What the user's own PyTorch code computes: their network behind their normalisation."""
    make_example = _load_example_module()
    network = make_example.their_module().resnet20()
    wrapped = torch.load(files["checkpoint"], map_location="cpu", weights_only=True)
    network.load_state_dict({k.removeprefix("module."): v for k, v in wrapped["state_dict"].items()})
    with torch.no_grad():
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        return make_example.WithNormalisation(network.eval())(pixels).numpy()


def test_each_kind_reaches_the_users_own_top1(example, tmp_path):
    _, files = example
    test = read_image_folder(shared_path("data", "cifar10-lossless", "test"), show_progress=False)
    user_top1 = float((users_own_logits(files, test.images).argmax(1) == test.labels).mean())
    models = example_models(files)
    network_files = {"their_onnx": [str(files["onnx"])], "their_ir": [str(files["ir"]), str(files["ir"].with_suffix(
        ".bin"))], "their_torch": [str(tmp_path / "their_torch.pt")]}
    fetched = fetch_network(model_spec("their_torch", models["their_torch"]), tmp_path / "cache",
                            tmp_path / "their_torch.pt", tmp_path / "their_torch.pt.json")
    assert fetched["state_dict_key"] == "state_dict" and fetched["strip_prefix"] == "module."
    assert len(fetched["sha256"]) == 64
    for name, entry in models.items():
        spec = model_spec(name, entry)
        assert spec.num_outputs == 10 and spec.input.size == (32, 32)
        info = export_model(spec, network_files[name], tmp_path / f"{name}.xml", tmp_path / f"{name}.json",
                            test.images[:16])
        metrics, _ = evaluate_ir(tmp_path / f"{name}.xml", test, show_progress=False)
        assert abs(metrics["top1"] - user_top1) <= 0.001, (name, metrics["top1"], user_top1)
        assert info["kind"] == entry["kind"] and info["model_spec"]["input"]["size"] == [32, 32]
        if name == "their_ir":
            assert info["parity"]["reference"] is None  # no second implementation of an IR
        else:
            assert info["parity"]["max_abs_diff"] <= 1e-3
            assert info["parity"]["reference"] == ("onnxruntime" if name == "their_onnx" else "pytorch")
    # ImageNet normalisation is baked into the torch model's IR, not into the ONNX one (which has it inside)
    torch_input = json.loads((tmp_path / "their_torch.json").read_text())["model_spec"]["input"]
    assert torch_input["mean"] == [0.485, 0.456, 0.406] and torch_input["scale"] == 255


def test_checkpoint_saved_before_pytorch_0_4_1_loads_and_reaches_the_users_top1(example, tmp_path):
    """No num_batches_tracked buffers and no per-module versions, as PyTorch < 0.4.1 saved: PyTorch's own
    load_state_dict(strict=True) accepts it, and so must the torch kind."""
    _, files = example
    wrapped = torch.load(files["checkpoint"], map_location="cpu", weights_only=True)
    old_state = {name: value for name, value in wrapped["state_dict"].items() if "num_batches_tracked" not in name}
    assert len(old_state) < len(wrapped["state_dict"])
    old_file = tmp_path / "their_0.3.th"
    torch.save({**wrapped, "state_dict": old_state}, old_file)  # a plain dict: no _metadata
    make_example = _load_example_module()
    network = make_example.their_module().resnet20()
    network.load_state_dict({k.removeprefix("module."): v for k, v in old_state.items()}, strict=True)
    test = read_image_folder(shared_path("data", "cifar10-lossless", "test"), show_progress=False)
    with torch.no_grad():
        pixels = torch.from_numpy(test.images).permute(0, 3, 1, 2).float()
        user_top1 = float((make_example.WithNormalisation(network.eval())(pixels).numpy().argmax(1)
                           == test.labels).mean())
    entry = example_models(files)["their_torch"]
    entry = {**entry, "checkpoint": {**entry["checkpoint"], "path": str(old_file)}}
    spec = model_spec("old", entry)
    fetched = fetch_network(spec, tmp_path / "cache", tmp_path / "old.pt", tmp_path / "old.pt.json")
    assert fetched["kind"] == "torch"
    info = export_model(spec, [str(tmp_path / "old.pt")], tmp_path / "old.xml", tmp_path / "old.json",
                        test.images[:16])
    assert info["parity"]["max_abs_diff"] <= 1e-3
    metrics, _ = evaluate_ir(tmp_path / "old.xml", test, show_progress=False)
    assert abs(metrics["top1"] - user_top1) <= 0.001 and user_top1 > 0.9, (metrics["top1"], user_top1)


def _grid_config(workdir, files, models, calibrations, extra_models=None) -> dict:
    lossless = shared_path("data", "cifar10-lossless")
    return {
        "study": {"models": models, "calibration": calibrations, "methods": GRID_METHODS},
        "data": {"source": "folder", "folders": {"train": str(lossless / "train"), "test": str(lossless / "test")},
                 "limit": {"test": 200}},
        "models": {**example_models(files), **(extra_models or {})},
        "calibration": {
            "cifar10": {"kind": "cifar10", "per_class": 5, "seed": 0},
            "folder": {"kind": "folder", "path": str(workdir / "own_images"), "seed": 0},
            "fractal": {"kind": "fractal", "count": 40, "seed": 0},
            "noise": {"kind": "noise", "count": 40, "seed": 0},
            "distylegan": {"kind": "gan", "generator": "distylegan",
                           "checkpoint": str(REPO / "checkpoints" / "distylegan-cifar10"), "per_class": 4},
            "datafree": {"kind": "datafree", "per_class": 4, "iterations": 20, "batch_size": 40, "seed": 0},
        },
        "methods": {"accuracy_aware": {"algorithm": "accuracy_aware", "validation": "agreement",
                                       "validation_count": 1000, "max_drop": 0.02}},
    }


@pytest.fixture(scope="module")
def grid_run(example, tmp_path_factory):
    """The offline grid for the three kinds: all calibration kinds (datafree for the torch model), both methods."""
    _, files = example
    workdir = tmp_path_factory.mktemp("own_grid")
    own_images = workdir / "own_images"
    for label in ("cat", "ship"):  # a user's own folder of a few images
        (own_images / label).mkdir(parents=True)
        for source in sorted((shared_path("data", "cifar10-lossless", "train") / label).glob("*.png"))[:10]:
            shutil.copy(source, own_images / label / source.name)
    runs = []
    # the data-free cells first: the last run's report is the one checked
    for name, models, calibrations in (("datafree.yaml", ["their_torch"], ["datafree"]),
                                       ("grid.yaml", ["their_torch", "their_onnx", "their_ir"], KINDS_WITHOUT_TORCH)):
        config_path = workdir / name
        config_path.write_text(yaml.safe_dump(_grid_config(workdir, files, models, calibrations)))
        run = run_snakemake(workdir, config_path)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
        runs.append(config_path)
    return workdir, files, runs


@pytest.mark.slow
def test_grid_runs_for_every_kind_and_reports_the_users_names(grid_run):
    workdir, files, _ = grid_run
    results = workdir / "results"
    summary = pd.read_csv(results / "report" / "summary.csv")
    test_rows = summary[summary["test_set"] == "test"] if "test_set" in summary else summary
    fp32 = test_rows[test_rows["precision"] == "fp32"].set_index("model")["top1"]
    test = read_image_folder(shared_path("data", "cifar10-lossless", "test"), show_progress=False)
    user_top1 = float((users_own_logits(files, test.images[:200]).argmax(1) == test.labels[:200]).mean())
    for model in ("their_torch", "their_onnx", "their_ir"):
        assert abs(fp32[model] - user_top1) <= 0.001, (model, fp32[model], user_top1)
        cells = test_rows[(test_rows["model"] == model) & (test_rows["precision"] == "int8")]
        expected = {(c, m) for c in KINDS_WITHOUT_TORCH for m in GRID_METHODS}
        assert expected <= set(zip(cells["calibration"], cells["method"], strict=True)), model
    for method in GRID_METHODS:  # the data-free cells of the torch model
        metrics = json.loads((results / "eval" / "their_torch" / "datafree" / method / "metrics.json").read_text())
        assert metrics["agreement_with_fp32"] > 0.5
    export = json.loads((results / "models" / "their_onnx" / "export.json").read_text())
    assert export["kind"] == "onnx" and export["model_spec"]["config"]["path"] == str(files["onnx"])
    assert list(export["source_files"].values())[0] == file_digest(results / "weights" / "their_onnx.onnx")
    datafree = np.load(results / "calib" / "datafree" / "32x32" / "their_torch" / "set.npz")
    assert datafree["images"].shape == (40, 32, 32, 3)


@pytest.mark.slow
def test_accuracy_aware_validation_count_above_the_set_is_capped_and_recorded(grid_run):
    workdir, _, _ = grid_run
    info = json.loads((workdir / "results/quantized/their_onnx/noise/accuracy_aware/quantize.json").read_text())
    assert info["validation_count_capped"] == {"requested": 1000, "used": 40}
    log = (workdir / "results/logs/quantize/their_onnx/noise/accuracy_aware.log").read_text()
    assert "validation_count = 1000 but the calibration set has 40 images" in log


@pytest.mark.slow
def test_folder_set_rebuilds_when_an_image_is_added(grid_run):
    workdir, _, (_, grid_config) = grid_run
    dry = run_snakemake(workdir, grid_config, args=("-n",))
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    # an image replaced by another with an older mtime (cp -p, rsync -t): the files' content is a param of the set
    shared_cats = sorted((shared_path("data", "cifar10-lossless", "train") / "cat").glob("*.png"))
    replaced = workdir / "own_images" / "cat" / shared_cats[0].name
    older = replaced.stat().st_mtime - 3600
    for content, expected in ((shared_cats[11], True), (shared_cats[0], False)):  # replaced, then put back
        shutil.copyfile(content, replaced)
        os.utime(replaced, (older, older))
        dry = run_snakemake(workdir, grid_config, args=("-n",))
        assert dry.returncode == 0 and ("results/calib/folder/32x32/set.npz" in dry.stdout + dry.stderr) == expected
    source = shared_cats[10]
    shutil.copy(source, workdir / "own_images" / "cat" / source.name)
    dry = run_snakemake(workdir, grid_config, args=("-n",))
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0 and "results/calib/folder/32x32/set.npz" in output
    assert "results/calib/noise/32x32/set.npz" not in output


# ---------------------------------------------------------------- bad input, each named


def _study_config(models: dict, study_models: list[str], calibration=None, data=None) -> dict:
    lossless = shared_path("data", "cifar10-lossless")
    return {
        "study": {"models": study_models, "calibration": list(calibration or {"noise": 0}), "methods": ["default"]},
        "data": data or {"source": "folder", "folders": {"train": str(lossless / "train"),
                                                         "test": str(lossless / "test")}},
        "models": models,
        "calibration": calibration or {"noise": {"kind": "noise", "count": 10}},
        "methods": {"default": {"algorithm": "default"}},
    }


def test_datafree_for_an_onnx_model_is_refused_before_any_job(example):
    _, files = example
    config = _study_config(example_models(files), ["their_onnx"],
                           calibration={"datafree": {"kind": "datafree", "per_class": 2}})
    with pytest.raises(ConfigError, match=r"calibration.datafree .*models.their_onnx is kind onnx and this ONNX has no "
                                          r"BatchNorm statistics .*folded them into the convolutions.*kind torch"):
        Study(config)  # the example's export folded BatchNorm into the convolutions (torch.onnx's default)


@pytest.mark.parametrize("norm", ["nn.Identity()", "nn.BatchNorm2d(10, track_running_stats=False)"])
def test_datafree_for_a_torch_model_without_batchnorm_statistics_is_refused_before_any_job(tmp_path, norm):
    (tmp_path / "folded.py").write_text(
        "from torch import nn\n\n\ndef network():\n"
        f"    return nn.Sequential(nn.Conv2d(3, 10, 3), {norm}, nn.AdaptiveAvgPool2d(1), nn.Flatten())\n")
    spec = importlib.util.spec_from_file_location("folded", tmp_path / "folded.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.network().state_dict(), tmp_path / "folded.pt")
    models = {"folded": {"kind": "torch", "factory": f"{tmp_path}/folded.py:network",
                         "checkpoint": {"path": str(tmp_path / "folded.pt")}, "input": {"size": [32, 32]}}}
    config = _study_config(models, ["folded"], calibration={"datafree": {"kind": "datafree", "per_class": 2}})
    with pytest.raises(ConfigError, match=r"calibration.datafree .*models.folded is kind torch and its network has "
                                          r"no BatchNorm2d layer with running statistics .*real, fractal or noise"):
        Study(config)
    config["study"]["calibration"] = ["noise"]
    config["calibration"]["noise"] = {"kind": "noise", "count": 10}
    Study(config)  # other kinds are fine


def test_datafree_for_an_onnx_model_with_batchnorm_nodes_inverts_the_same_network(tmp_path):
    """onnx2torch turns an ONNX that kept its BatchNormalization nodes into the same PyTorch network: its data-free
    set is byte for byte the PyTorch model's (without torchvision: a placeholder serves onnx2torch's import only)."""
    import sys

    from synthcal.calibration.datafree import invert_batchnorm
    from synthcal.models import torch_classifier
    from synthcal.models.cifar_zoo import CIFAR10_MEAN, CIFAR10_STD, build_model

    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    network = build_model("resnet20")
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    onnx_path = tmp_path / "with_bn.onnx"
    torch.onnx.export(network.eval(), (torch.zeros(1, 3, 32, 32),), str(onnx_path), opset_version=11, dynamo=False,
                      do_constant_folding=False, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    normalised = {"size": [32, 32], "scale": 255, "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}
    entry = {"kind": "onnx", "path": str(onnx_path), "input": normalised}
    Study(_study_config({"mine": entry}, ["mine"], calibration={"datafree": {"kind": "datafree", "per_class": 2}}))
    from_onnx = torch_classifier(model_spec("mine", entry), onnx_path)
    assert sum(isinstance(module, torch.nn.BatchNorm2d) for module in from_onnx.modules()) == 21  # every one
    assert "torchvision" not in sys.modules
    from_torch = torch_classifier(model_spec("resnet20", {"weights": {"source": "path", "path": str(weights)}}),
                                  weights)
    settings = {"show_progress": False, "image_size": (32, 32), "pixel_mean": CIFAR10_MEAN, "pixel_std": CIFAR10_STD,
                "iterations": 5, "batch_size": 20, "compile": False, "precision": "fp32"}
    ours = invert_batchnorm(from_onnx, 20, 0, model_name="mine", **settings)
    reference = invert_batchnorm(from_torch, 20, 0, model_name="resnet20", **settings)
    np.testing.assert_array_equal(ours.images, reference.images)
    assert ours.provenance["bn_loss_final"] == reference.provenance["bn_loss_final"]


def test_output_count_must_equal_class_count(example):
    _, files = example
    three = {"source": "folder", "classes": ["airplane", "cat", "ship"],
             "folders": {"train": str(shared_path("data", "cifar10-lossless", "train")),
                         "test": str(shared_path("data", "cifar10-lossless", "test"))}}
    config = _study_config(example_models(files), ["their_torch"], data=three)
    with pytest.raises(ConfigError, match=r"models.their_torch has 10 outputs but the dataset has 3 classes"):
        Study(config)


def test_factory_that_cannot_be_imported(tmp_path, example):
    _, files = example
    broken = tmp_path / "broken_net.py"
    broken.write_text("import not_a_real_package\n")
    entry = {**example_models(files)["their_torch"], "factory": f"{broken}:resnet20"}
    with pytest.raises(ModelConfigError, match=r"models.mine.factory: cannot import .*broken_net.py.*not_a_real"):
        model_spec("mine", entry)
    with pytest.raises(ModelConfigError, match=r"models.mine.factory: .*their_resnet.py has no callable 'resnet99'"):
        model_spec("mine", {**entry, "factory": f"{REPO}/examples/own_model/their_resnet.py:resnet99"})


def test_checkpoint_keys_are_listed_and_nothing_is_written(example, tmp_path):
    _, files = example
    entry = example_models(files)["their_torch"]
    no_strip = {**entry, "checkpoint": {"path": str(files["checkpoint"]), "state_dict_key": "state_dict"}}
    out = tmp_path / "weights" / "mine.pt"
    with pytest.raises(CheckpointError) as error:
        fetch_network(model_spec("mine", no_strip), tmp_path / "cache", out, tmp_path / "weights" / "mine.pt.json")
    message = str(error.value)
    assert "models.mine.checkpoint" in message and "missing keys" in message and "unexpected keys" in message
    assert "stem.0.weight" in message and "module.stem.0.weight" in message and "strip_prefix: 'module.'" in message
    assert not out.parent.exists() or not any(out.parent.iterdir())
    unwrapped = {**entry, "checkpoint": {"path": str(files["checkpoint"])}}
    with pytest.raises(CheckpointError, match=r"does not hold a state_dict.*set models.mine.checkpoint.state_dict_key"):
        fetch_network(model_spec("mine", unwrapped), tmp_path / "cache", out, tmp_path / "weights" / "mine.pt.json")


def test_onnx_with_dynamic_size_needs_input_size(tmp_path):
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(4, 10))
    path = tmp_path / "dynamic.onnx"
    torch.onnx.export(network, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(ModelConfigError,
                       match=r"models.dyn.input.size is not set and the input 'x' of .*dynamic.onnx has a dynamic"):
        model_spec("dyn", {"kind": "onnx", "path": str(path)})
    assert model_spec("dyn", {"kind": "onnx", "path": str(path), "input": {"size": [40, 40]}}).input.size == (40, 40)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model")
    with pytest.raises(ModelConfigError, match=r"models.bad.path: .*corrupt.onnx is not a readable ONNX model"):
        model_spec("bad", {"kind": "onnx", "path": str(corrupt), "input": {"size": [32, 32]}})


def test_sha256_mismatch_refuses_the_file(example, tmp_path):
    _, files = example
    entry = {"kind": "onnx", "url": files["onnx"].as_uri(), "sha256": "deadbeef", "input": {"size": [32, 32]}}
    with pytest.raises(ModelConfigError, match=r"models.mine.sha256: give the full 64-hex sha256 .*8-hex prefix"):
        model_spec("mine", entry)  # a prefix is not enough for a download (issue 23)
    entry["sha256"] = "deadbeef" * 8
    out = tmp_path / "weights" / "mine.onnx"
    with pytest.raises(ModelConfigError, match=r"models.mine: .*checksum mismatch.*deadbeef"):
        fetch_network(model_spec("mine", entry), tmp_path / "cache", out, tmp_path / "weights" / "mine.onnx.json")
    assert not out.exists()
    torch_entry = {**example_models(files)["their_torch"]}
    torch_entry["checkpoint"] = {**torch_entry["checkpoint"], "sha256": "deadbeef"}
    with pytest.raises(ModelConfigError, match=r"models.mine.checkpoint: .* has sha256 .*expected deadbeef"):
        fetch_network(model_spec("mine", torch_entry), tmp_path / "cache", tmp_path / "w.pt", tmp_path / "w.json")


def test_unknown_and_misplaced_keys_are_named():
    with pytest.raises(ConfigError, match=r"calibration.noise: key\(s\) \['cuont'\] do not apply to kind noise"):
        Study(_study_config({"resnet20": {"weights": {"source": "random"}}}, ["resnet20"],
                            calibration={"noise": {"kind": "noise", "cuont": 10}}))
    with pytest.raises(ConfigError, match=r"calibration.noise: key\(s\) \['per_class'\] do not apply to kind noise"):
        Study(_study_config({"resnet20": {"weights": {"source": "random"}}}, ["resnet20"],
                            calibration={"noise": {"kind": "noise", "per_class": 10}}))
    with pytest.raises(ConfigError, match=r"models.mine.kind is not set and 'mine' is not a zoo architecture"):
        Study(_study_config({"mine": {}}, ["mine"]))
    with pytest.raises(ConfigError, match=r"models.mine: key\(s\) \['factory'\] do not apply to kind onnx"):
        Study(_study_config({"mine": {"kind": "onnx", "factory": "x.py:f", "path": "x.onnx"}}, ["mine"]))
