"""The evaluator's figures on a small real IR and on hand-made logits: top-1/top-5/per-class accuracy, agreement with
FP32 and ``delta_top1 = top1 − fp32_top1``, the numbers every table of the study is built from."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_classifier_model

from synthcal.evaluation.evaluate import agreement_metrics, classification_metrics, throughput, write_evaluation
from synthcal.io import ImageSet, read_json
from synthcal.models.export import save_ir


def test_classification_metrics_by_hand():
    logits = np.array([[0.0, 3.0, 1.0, 2.0, -1.0, -2.0],   # ranks 1, 3, 2, 0, 4, 5
                       [5.0, 0.0, 1.0, 2.0, 3.0, 4.0],    # ranks 0, 5, 4, 3, 2, 1
                       [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])   # ranks 5, 4, 3, 2, 1, 0
    labels = np.array([1, 1, 0])
    metrics = classification_metrics(logits, labels)
    # image 0: right; image 1: predicted 0, its label 1 is last of six; image 2: predicted 5, label 0 is last
    assert metrics["top1"] == pytest.approx(1 / 3) and metrics["top5"] == pytest.approx(1 / 3)
    assert metrics["per_class_top1"] == {"0": 0.0, "1": 0.5, "2": None, "3": None, "4": None, "5": None}
    assert metrics["num_images"] == 3
    assert set(classification_metrics(logits, labels, num_classes=8)["per_class_top1"]) == set("01234567")
    labels = np.array([3, 4, 4])  # each within its image's top five, none first
    assert classification_metrics(logits, labels)["top5"] == 1.0 and classification_metrics(logits, labels)[
        "top1"] == 0.0


def test_agreement_and_throughput():
    assert agreement_metrics(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == {"agreement_with_fp32": 0.5,
                                                                                  "flip_rate": 0.5}
    assert agreement_metrics(np.array([1, 2, 3, 4]), np.array([1, 2, 3, 0]))["flip_rate"] == pytest.approx(0.25)
    assert throughput(300, 1.5) == 200.0 and np.isnan(throughput(300, 0.0))


def test_delta_top1_is_top1_minus_fp32_top1(tmp_path):
    """An INT8 evaluation against its FP32 reference: the sign and size of Δ top-1 and the agreement, exact."""
    xml = tmp_path / "model.xml"
    save_ir(tiny_classifier_model(), xml)
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    first, _ = write_evaluation(xml, ImageSet(images, np.zeros(40, dtype=np.int64), {"name": "noise"}),
                                tmp_path / "a.json", tmp_path / "a.npz", show_progress=False)
    assert "delta_top1" not in first and "agreement_with_fp32" not in first
    with np.load(tmp_path / "a.npz") as saved:
        predicted = saved["predictions"]
        assert np.array_equal(predicted, saved["logits"].argmax(1))
    labels = predicted.copy()
    labels[30:] = (labels[30:] + 1) % 10  # 30 of 40 right: top-1 0.75
    reference = predicted.copy()
    reference[:4] = (reference[:4] + 1) % 10  # FP32 disagrees on 4 of 40
    metrics, timing = write_evaluation(xml, ImageSet(images, labels, {"name": "noise"}), tmp_path / "b.json",
                                       tmp_path / "b.npz", reference_predictions=reference,
                                       reference_metrics={"top1": 0.9, "images_per_second": 123.0},
                                       extra={"precision": "int8"}, show_progress=False)
    assert metrics["top1"] == 0.75 and metrics["fp32_top1"] == 0.9
    assert metrics["delta_top1"] == pytest.approx(-0.15, abs=1e-12)
    assert metrics["agreement_with_fp32"] == 0.9 and metrics["flip_rate"] == pytest.approx(0.1)
    assert metrics["precision"] == "int8" and "images_per_second" in timing  # speed apart: metrics stay the same bytes
    assert not {"images_per_second", "fp32_images_per_second"} & set(metrics)
    written = read_json(tmp_path / "b.json")
    assert {key: written[key] for key in ("top1", "fp32_top1", "delta_top1", "agreement_with_fp32")} == {
        key: metrics[key] for key in ("top1", "fp32_top1", "delta_top1", "agreement_with_fp32")}
    with np.load(tmp_path / "b.npz") as saved:
        assert np.array_equal(saved["labels"], labels) and np.array_equal(saved["predictions"], predicted)


class _Files(dict):
    """Snakemake's named inputs/outputs: attributes and ``keys()``."""

    __getattr__ = dict.__getitem__


def test_the_workflow_entry_writes_fp32_then_int8_against_it(tmp_path):
    """evaluate_from_files as the rules call it: FP32 (export.json beside), then INT8 (the FP32 metrics and
    predictions as reference, method and calibration from quantize.json)."""
    from synthcal.evaluation.evaluate import evaluate_from_files
    from synthcal.io import save_image_set, write_json

    xml = tmp_path / "model.xml"
    save_ir(tiny_classifier_model(), xml)
    images = np.random.default_rng(1).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    save_image_set(tmp_path / "test.npz", images, np.arange(30) % 10, {"name": "noise"})
    write_json(tmp_path / "export.json", {"model": "tiny", "untrained": True})
    fp32, _ = evaluate_from_files(
        _Files(xml=xml, test=tmp_path / "test.npz", export_info=tmp_path / "export.json"),
        _Files(metrics=tmp_path / "fp32.json", predictions=tmp_path / "fp32.npz"), {"batch_size": 7})
    assert fp32["precision"] == "fp32" and fp32["model"] == "tiny" and fp32["untrained"] is True
    assert fp32["batch_size"] == 7 and fp32["precision_hint"] == "f32" and "delta_top1" not in fp32
    write_json(tmp_path / "quantize.json", {"method": "default", "calibration_set": {"name": "noise"},
                                            "quantization_seconds": 1.5})
    int8, int8_timing = evaluate_from_files(
        _Files(xml=xml, test=tmp_path / "test.npz", fp32_metrics=tmp_path / "fp32.json",
               fp32_predictions=tmp_path / "fp32.npz", quantize_info=tmp_path / "quantize.json"),
        _Files(metrics=tmp_path / "int8.json", predictions=tmp_path / "int8.npz"), {})
    assert {key: int8[key] for key in ("precision", "untrained", "method", "calibration",
                                       "agreement_with_fp32", "delta_top1", "batch_size")} == {
        "precision": "int8", "untrained": True, "method": "default", "calibration": "noise",
        "agreement_with_fp32": 1.0, "delta_top1": 0.0, "batch_size": 100}
    assert int8_timing["quantization_seconds"] == 1.5 and "quantization_seconds" not in int8
    assert read_json(tmp_path / "int8.json")["fp32_top1"] == fp32["top1"]
    # a crossfold cell (folds in quantize.json) is scored fold by fold; FP32 metrics without "untrained": trained
    import shutil

    from synthcal.quantization.nncf_engine import fold_ir

    for suffix in (".xml", ".bin"):
        fold_ir(xml, 1).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(xml.with_suffix(suffix), fold_ir(xml, 1).with_suffix(suffix))
    write_json(tmp_path / "quantize.json", {"method": "default", "calibration_set": {"name": "cf"},
                                            "quantization_seconds": 1.5, "folds": 2})
    write_json(tmp_path / "fp32_bare.json", {key: value for key, value in fp32.items() if key != "untrained"})
    crossfold, _ = evaluate_from_files(
        _Files(xml=xml, test=tmp_path / "test.npz", fp32_metrics=tmp_path / "fp32_bare.json",
               fp32_predictions=tmp_path / "fp32.npz", quantize_info=tmp_path / "quantize.json"),
        _Files(metrics=tmp_path / "cf.json", predictions=tmp_path / "cf.npz"), {})
    assert crossfold["crossfold"]["images_per_fold"] == [15, 15] and crossfold["untrained"] is False
    assert crossfold["calibration"] == "cf" and crossfold["agreement_with_fp32"] == 1.0
    write_json(tmp_path / "export.json", {"model": "tiny"})  # no "untrained": a trained model
    trained, _ = evaluate_from_files(
        _Files(xml=xml, test=tmp_path / "test.npz", export_info=tmp_path / "export.json"),
        _Files(metrics=tmp_path / "t.json", predictions=tmp_path / "t.npz"), {"precision_hint": "bf16"})
    assert trained["untrained"] is False and trained["precision_hint"] == "bf16"
    (tmp_path / "cut.npz").write_bytes((tmp_path / "fp32.npz").read_bytes()[:40])
    with pytest.raises(ValueError, match=r"cut\.npz is not a readable FP32 predictions file \(not an \.npz"):
        evaluate_from_files(
            _Files(xml=xml, test=tmp_path / "test.npz", fp32_metrics=tmp_path / "fp32.json",
                   fp32_predictions=tmp_path / "cut.npz", quantize_info=tmp_path / "quantize.json"),
            _Files(metrics=tmp_path / "c.json", predictions=tmp_path / "c.npz"), {})


def test_a_crossfold_cell_scores_each_image_with_its_folds_model(tmp_path):
    """Fold k's images go to fold k's model (here: fold 1's model is another network): the logits of each image
    are those of its own fold's model, metrics over all images."""
    from synthcal.evaluation.evaluate import evaluate_crossfold, evaluate_ir
    from synthcal.quantization.nncf_engine import fold_ir

    xml = tmp_path / "cell" / "int8.xml"
    save_ir(tiny_classifier_model(), xml)
    save_ir(tiny_classifier_model((4, 8)), fold_ir(xml, 1))
    images = np.random.default_rng(2).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(20) % 10
    test = ImageSet(images, labels, {"name": "noise"})
    metrics, logits = evaluate_crossfold(xml, test, 2, show_progress=False)
    for fold in (0, 1):
        own = np.flatnonzero(labels % 2 == fold)
        _, expected = evaluate_ir(fold_ir(xml, fold), ImageSet(images[own], labels[own], {}), show_progress=False)
        np.testing.assert_array_equal(logits[own], expected)
    assert metrics["top1"] == (logits.argmax(1) == labels).mean() and metrics["num_images"] == 20
    assert metrics["crossfold"]["folds"] == 2 and metrics["crossfold"]["images_per_fold"] == [10, 10]
    assert metrics["ir"] == str(xml) and metrics["test_set"] == {"name": "noise"}
    assert metrics["input_size"] == [32, 32]  # fold 0's run: speed and settings
    assert metrics["crossfold"]["rule"] == "an image of fold k is scored by the model calibrated on the other folds"
    assert logits.dtype == np.float32
    # a fold without images is skipped (its model, missing here, is never read), and the next is still scored
    save_ir(tiny_classifier_model((4, 4)), fold_ir(xml, 2))
    for suffix in (".xml", ".bin"):
        fold_ir(xml, 1).with_suffix(suffix).unlink()
    kept = labels % 3 != 1
    three, logits = evaluate_crossfold(xml, ImageSet(images[kept], labels[kept], {}), 3, show_progress=False,
                                       batch_size=7)
    assert not fold_ir(xml, 1).exists() and three["crossfold"]["images_per_fold"] == [8, 0, 6]
    last = np.flatnonzero(labels[kept] % 3 == 2)
    _, expected = evaluate_ir(fold_ir(xml, 2), ImageSet(images[kept][last], labels[kept][last], {}),
                              show_progress=False)
    np.testing.assert_array_equal(logits[last], expected)
    assert three["batch_size"] == 7


def test_evaluate_ir_records_its_settings_and_resizes_to_the_ir(tmp_path):
    """Every metric key the tables read, with the values this run must give; a 16-px test set is resized (bilinear,
    the policy of an IR without one) to the IR's 32 px, and its logits are those of the resized images."""
    from synthcal.evaluation.evaluate import WARM_UP_IMAGES, evaluate_ir
    from synthcal.inference import compile_model, infer_logits
    from synthcal.models.preprocessing import resize_images

    xml = tmp_path / "model.xml"
    save_ir(tiny_classifier_model(), xml)
    small = np.random.default_rng(3).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    metrics, logits = evaluate_ir(xml, ImageSet(small, np.arange(12) % 10, {"name": "small"}), batch_size=5,
                                  show_progress=False)
    expected = infer_logits(compile_model(str(xml), "f32", uint8_images=True), resize_images(small, (32, 32)), 5)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert {key: metrics[key] for key in ("batch_size", "precision_hint", "input_size", "resize", "ir", "test_set",
                                          "num_images")} == {
        "batch_size": 5, "precision_hint": "f32", "input_size": [32, 32], "resize": "bilinear", "ir": str(xml),
        "test_set": {"name": "small"}, "num_images": 12}
    assert metrics["images_per_second"] == pytest.approx(12 / metrics["inference_seconds"])
    assert 0 < metrics["inference_seconds"] < 60 and 1e-3 < metrics["batch_latency_ms_median"] < 60_000
    assert metrics["batch_latency_ms_median"] > 0 and metrics["infer_requests"] >= 1 and metrics["num_streams"] >= 1
    assert metrics["performance_hint"] in ("THROUGHPUT", "LATENCY", "PerformanceMode.THROUGHPUT",
                                           "PerformanceMode.LATENCY")
    assert metrics["openvino_version"] and WARM_UP_IMAGES == 1000
    same, _ = evaluate_ir(xml, ImageSet(resize_images(small, (32, 32)), np.arange(12) % 10, {}), precision_hint="",
                          show_progress=False)
    assert same["resize"] is None and same["precision_hint"] == "default" and same["batch_size"] == 100
    # the IR's own policy is the one used
    import openvino as ov

    from synthcal.models.preprocessing import RT_INFO_RESIZE

    model = ov.Core().read_model(str(xml))
    model.set_rt_info("nearest", RT_INFO_RESIZE)
    save_ir(model, tmp_path / "nearest.xml")
    metrics, logits = evaluate_ir(tmp_path / "nearest.xml", ImageSet(small, np.arange(12) % 10, {}),
                                  show_progress=False)
    nearest = infer_logits(compile_model(str(xml), "f32", uint8_images=True),
                           resize_images(small, (32, 32), "nearest"), 5)
    assert metrics["resize"] == "nearest"
    np.testing.assert_allclose(logits, nearest, rtol=1e-5, atol=1e-5)
    assert not np.allclose(logits, expected, rtol=1e-3, atol=1e-3)
    # and the precision hint reaches the compiled model
    metrics, logits = evaluate_ir(xml, ImageSet(small, np.arange(12) % 10, {}), precision_hint="bf16",
                                  show_progress=False)
    bf16 = infer_logits(compile_model(str(xml), "bf16", uint8_images=True), resize_images(small, (32, 32)), 5)
    np.testing.assert_array_equal(logits, bf16)
    assert metrics["precision_hint"] == "bf16"
