"""Export and FP32 evaluation of the real resnet20 on the 1,000 lossless test images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_path

from synthcal.data import read_image_folder
from synthcal.evaluation.evaluate import TIMING_FIELDS, write_evaluation
from synthcal.inference import compile_model, infer_logits
from synthcal.models import model_spec
from synthcal.models.export import ParityError, export_model
from synthcal.models.pytorch import torch_logits
from synthcal.models.zoo import load_zoo_classifier


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    test = read_image_folder(shared_path("data", "cifar10-lossless", "test"), show_progress=False)
    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    out = tmp_path_factory.mktemp("export")
    info = export_model(model_spec("resnet20", {}), [str(weights)], out / "fp32.xml", out / "export.json",
                        test.images[:64])
    return test, weights, out, info


def test_parity_gate_recorded(exported):
    _, _, out, info = exported
    assert info["parity"]["max_abs_diff"] <= 1e-3 and info["parity"]["top1_match"] == 1.0
    assert info["opset"] == 11 and (out / "fp32.bin").is_file() and info["kind"] == "zoo"
    assert info["model_spec"]["input"]["scale"] == 255 and info["parity"]["reference"] == "pytorch"


def test_fp32_top1_and_openvino_equals_pytorch(exported):
    test, weights, out, _ = exported
    metrics, timing = write_evaluation(out / "fp32.xml", test, out / "metrics.json", out / "predictions.npz",
                                       timing_path=out / "timing.json", show_progress=False)
    assert len(test) == 1000 and metrics["top1"] == pytest.approx(0.925)
    assert metrics["precision_hint"] == "f32" and timing["images_per_second"] > 0
    assert timing["performance_hint"] == "THROUGHPUT" and timing["infer_requests"] >= 1
    assert timing["images_per_second"] == pytest.approx(1000 / timing["inference_seconds"])
    assert json.loads((out / "timing.json").read_text()) == timing
    assert 0.9 < metrics["top5"] <= 1.0 and len(metrics["per_class_top1"]) == 10
    with np.load(out / "predictions.npz") as saved:
        openvino_predictions = saved["predictions"]
    pytorch_predictions = torch_logits(load_zoo_classifier("resnet20", weights), test.images).argmax(1)
    np.testing.assert_array_equal(openvino_predictions, pytorch_predictions)


def test_metrics_and_predictions_are_byte_identical_across_runs(exported, tmp_path):
    """Speed and stream counts go to timing.json, so an evaluation's accuracy files repeat byte for byte."""
    test, _, out, _ = exported
    runs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        write_evaluation(out / "fp32.xml", test, folder / "metrics.json", folder / "predictions.npz",
                         timing_path=folder / "timing.json", show_progress=False)
        runs.append(folder)
    for name in ("metrics.json", "predictions.npz"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert not set(TIMING_FIELDS) & set(metrics) and metrics["num_images"] == 1000


def test_throughput_path_repeats_its_bytes_and_matches_latency_predictions(exported):
    test, _, out, _ = exported
    throughput = compile_model(out / "fp32.xml")  # the evaluator's compile: THROUGHPUT, its own request count
    logits = infer_logits(throughput, test.images)
    assert infer_logits(throughput, test.images).tobytes() == logits.tobytes()
    assert infer_logits(throughput, test.images, num_requests=1).tobytes() == logits.tobytes()
    latency = infer_logits(compile_model(out / "fp32.xml", performance_hint="LATENCY"), test.images)
    np.testing.assert_array_equal(logits.argmax(1), latency.argmax(1))
    np.testing.assert_allclose(logits, latency, rtol=1e-4, atol=1e-4)


def test_parity_gate_fails_and_leaves_nothing(exported, tmp_path):
    test, weights, _, _ = exported
    with pytest.raises(ParityError, match="max"):
        export_model(model_spec("resnet20", {}), [str(weights)], tmp_path / "fp32.xml", tmp_path / "export.json",
                     test.images[:8], tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_nan_weights_are_refused_as_such_and_leave_nothing(exported, tmp_path):
    import torch

    test, weights, _, _ = exported
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = {name: value.clone().fill_(float("nan")) if name.endswith("conv1.weight") else value
             for name, value in state.items()}
    broken = tmp_path / "nan.pt"
    torch.save(state, broken)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ParityError, match=r"^models\.resnet20: the network's pytorch logits are NaN or infinite on 8 "
                                          r"of 8 test images \(NaN or infinite weights\?\); refusing to export it$"):
        export_model(model_spec("resnet20", {}), [str(broken)], out / "fp32.xml", out / "export.json",
                     test.images[:8])
    assert list(out.iterdir()) == []
