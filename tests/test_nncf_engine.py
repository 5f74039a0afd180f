"""The NNCF engine's calibration batching on a real NNCF run of a small CNN: the default feeds NNCF batches of
images with statistics per image, which must give the quantizer ranges one image per item gives, over the same
images; ``batch_size`` > 1 keeps NNCF's own batch semantics. Speed is benchmarks/bench_quantize.py's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TinyClassifier

from synthcal.io import UNLABELLED, ImageSet, read_json
from synthcal.quantization.nncf_engine import STATISTICS_BATCH, calibration_items, nncf_arguments, quantize_model

METHOD = {"algorithm": "default", "preset": "performance", "subset_size": "all", "fast_bias_correction": True,
          "target_device": "CPU", "batch_size": 1}  # the schema's default


@pytest.fixture(scope="module")
def fp32_xml(tmp_path_factory):
    import openvino as ov

    torch.manual_seed(0)
    network = TinyClassifier((8, 16)).eval()
    model = ov.convert_model(network, example_input=torch.zeros(1, 3, 32, 32), input=[-1, 3, 32, 32])
    path = tmp_path_factory.mktemp("nncf_engine") / "fp32.xml"
    ov.save_model(model, path, compress_to_fp16=False)
    return path


@pytest.fixture(scope="module")
def calibration() -> ImageSet:
    images = np.random.default_rng(0).integers(0, 256, (250, 32, 32, 3), dtype=np.uint8)
    return ImageSet(images, np.full(len(images), UNLABELLED), {"name": "noise"})


def quantizer_ranges(xml) -> list[np.ndarray]:
    """The FakeQuantize input/output limits, in graph order."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return [op.input_value(index).get_node().get_data() for op in model.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize" for index in range(1, 5)]


def test_subset_counts_images_in_batches_of_per_image_statistics(calibration):
    items, subset, info = calibration_items(calibration.images, METHOD | {"subset_size": 130})
    assert [len(item) for item in items] == [STATISTICS_BATCH, 30] and subset == 2
    assert info["calibration_samples_used"] == 130 and info["per_image_statistics"]
    items, subset, info = calibration_items(calibration.images, METHOD, statistics_batch=1)  # before issue 21
    assert len(items) == subset == len(calibration) and info["calibration_batch_size"] == 1
    items, subset, info = calibration_items(calibration.images, METHOD | {"batch_size": 50, "subset_size": 3})
    assert len(items) == 5 and subset == 3 and info["calibration_samples_used"] == 150
    assert not info["per_image_statistics"]
    # accuracy-aware search is path-dependent: it keeps one image per item, as before
    items, subset, info = calibration_items(calibration.images, METHOD | {"algorithm": "accuracy_aware"})
    assert len(items) == subset == len(calibration) and info["calibration_batch_size"] == 1


def test_batched_default_gives_the_ranges_of_one_image_per_item(fp32_xml, calibration, tmp_path):
    ranges = {}
    for label, statistics_batch in {"one": 1, "batched": STATISTICS_BATCH}.items():
        xml = tmp_path / label / "int8.xml"
        info = quantize_model(fp32_xml, calibration, "default", METHOD, xml, tmp_path / label / "quantize.json",
                              statistics_batch=statistics_batch)
        assert info["fake_quantize_count"] > 0 and info["calibration_samples_used"] == len(calibration)
        ranges[label] = quantizer_ranges(xml)
    assert read_json(tmp_path / "batched" / "quantize.json")["calibration_batch_size"] == STATISTICS_BATCH
    assert len(ranges["one"]) == len(ranges["batched"]) > 0
    for one, batched in zip(ranges["one"], ranges["batched"], strict=True):
        np.testing.assert_array_equal(one, batched)


def test_whole_batches_give_other_ranges(fp32_xml, calibration, tmp_path):
    """NNCF's own batch semantics (a statistic per batch) is what ``batch_size`` still asks for: other ranges."""
    quantize_model(fp32_xml, calibration, "default", METHOD, tmp_path / "one" / "int8.xml",
                   tmp_path / "one" / "quantize.json")
    quantize_model(fp32_xml, calibration, "default", METHOD | {"batch_size": 125}, tmp_path / "125" / "int8.xml",
                   tmp_path / "125" / "quantize.json")
    one, whole = quantizer_ranges(tmp_path / "one" / "int8.xml"), quantizer_ranges(tmp_path / "125" / "int8.xml")
    assert any(not np.array_equal(a, b) for a, b in zip(one, whole, strict=True))


def test_the_methods_settings_reach_nncf(fp32_xml, calibration, tmp_path):
    """Every setting of the method entry is in the arguments NNCF was called with (quantize.json records that very
    dict): full bias correction stays full, and the ignored MatMul is left in float."""
    method = METHOD | {"preset": "mixed", "target_device": "any", "subset_size": 40, "fast_bias_correction": False,
                       "ignored_scope": {"types": ["MatMul"]}}
    few = ImageSet(calibration.images[:60], calibration.labels[:60], calibration.provenance)
    info = quantize_model(fp32_xml, few, "full_bc", method, tmp_path / "int8.xml", tmp_path / "quantize.json")
    recorded = read_json(tmp_path / "quantize.json")
    assert recorded["nncf_arguments"] == {
        "preset": "mixed", "target_device": "ANY", "subset_size": "1", "fast_bias_correction": "False",
        "model_type": None,
        "ignored_scope": "IgnoredScope(names=[], patterns=[], types=['MatMul'], subgraphs=[], validate=True)"}
    assert recorded["calibration_samples_used"] == 40 and recorded["calibration_images_available"] == 60
    assert recorded["method"] == "full_bc" and recorded["config"] == method
    assert len(info["float_layers"]) == 1 and info["fake_quantize_count"] > 0  # the classifier's MatMul only


def test_nncf_arguments_default_to_the_schemas_defaults():
    assert {key: str(value) for key, value in nncf_arguments({}, 7).items()} == {
        "preset": "performance", "target_device": "CPU", "subset_size": "7", "fast_bias_correction": "True",
        "model_type": "None", "ignored_scope": "None"}
    arguments = nncf_arguments({"subset_size": 300, "model_type": "transformer", "fast_bias_correction": False}, 7)
    assert arguments["subset_size"] == 7 and arguments["model_type"].value == "transformer"
    assert arguments["fast_bias_correction"] is False
    assert nncf_arguments({"subset_size": 3}, 7)["subset_size"] == 3 == nncf_arguments({}, 7, subset_items=3)[
        "subset_size"]


QUANTIZE_IN_A_FRESH_PROCESS = """
import sys
{preload}
from synthcal.io import ImageSet, UNLABELLED
from synthcal.quantization.nncf_engine import quantize_model
import numpy as np
images = np.random.default_rng(0).integers(0, 256, (250, 32, 32, 3), dtype=np.uint8)
method = {method!r}
quantize_model(sys.argv[1], ImageSet(images, np.full(250, UNLABELLED), {{"name": "noise"}}), "m", method,
               sys.argv[2], sys.argv[3])
print("torch loaded:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("fast", [True, False], ids=["fast_bias_correction", "full_bias_correction"])
def test_a_quantize_job_never_imports_torch_and_writes_the_bytes_it_writes_with_torch_loaded(fp32_xml, tmp_path,
                                                                                             fast):
    import subprocess
    import sys

    from conftest import REPO

    weights = {}
    for label, preload in {"without": "", "with": "import torch"}.items():
        code = QUANTIZE_IN_A_FRESH_PROCESS.format(preload=preload, method=METHOD | {"fast_bias_correction": fast})
        xml = tmp_path / label / "int8.xml"
        done = subprocess.run([sys.executable, "-c", code, str(fp32_xml), str(xml), str(tmp_path / label / "q.json")],
                              capture_output=True, text=True, cwd=REPO, check=True)
        assert f"torch loaded: {label == 'with'}" in done.stdout
        weights[label] = xml.with_suffix(".bin").read_bytes()
    assert weights["without"] == weights["with"]
