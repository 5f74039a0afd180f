"""The NNCF engine's calibration batching on a real NNCF run of a small CNN: the default feeds NNCF batches of
images with statistics per image, which must give the quantizer ranges one image per item gives, over the same
images; ``batch_size`` > 1 keeps NNCF's own batch semantics. Speed is benchmarks/bench_quantize.py's."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyClassifier, quantizer_ranges

from synthcal.inference import batch_within
from synthcal.io import UNLABELLED, ImageSet, read_json
from synthcal.quantization.nncf_engine import (
    STATISTICS_BATCH,
    STATISTICS_PIXELS,
    QuantizationError,
    calibration_items,
    nncf_arguments,
    quantize_model,
)

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
    # a bare entry is the default algorithm on every image; whole records of each path
    images = calibration.images[:10]
    items, subset, info = calibration_items(images, {}, statistics_batch=4)
    assert [len(item) for item in items] == [4, 4, 2] and subset == 3
    assert info == {"calibration_batch_size": 4, "per_image_statistics": True, "calibration_samples_used": 10,
                    "subset_semantics": "the first subset_size images, statistics per image; 'all' = whole set "
                                        "as POT did"}
    items, subset, info = calibration_items(images, {}, statistics_batch=2)
    assert [len(item) for item in items] == [2] * 5 and subset == 5 and info["calibration_batch_size"] == 2
    items, subset, info = calibration_items(images, {"batch_size": 2})
    assert [len(item) for item in items] == [2] * 5 and subset == 5
    assert info == {"calibration_batch_size": 2, "per_image_statistics": False, "calibration_samples_used": 10,
                    "subset_semantics": "items of calibration_batch_size images; 'all' = whole set as POT did"}
    items, subset, info = calibration_items(images, {"batch_size": 1}, statistics_batch=1)
    assert len(items) == subset == 10 and info["per_image_statistics"] and info["subset_semantics"].startswith(
        "items of calibration_batch_size images")


def test_statistics_items_hold_at_most_a_fixed_number_of_pixels():
    images = np.zeros((9, 224, 224, 3), np.uint8)  # 224 px: 2 images per item, not 100 (4.7 GB -> 0.6 GB)
    items, subset, info = calibration_items(images, METHOD)
    assert [item.shape[0] for item in items] == [2, 2, 2, 2, 1] and subset == 5
    assert info["calibration_batch_size"] == 2 and info["calibration_samples_used"] == 9
    assert batch_within(100, 32, 32, STATISTICS_PIXELS) == 100 and batch_within(100, 2000, 2000, 10) == 1


def test_non_square_items_count_both_sides_and_read_past_the_end_is_an_index_error():
    from synthcal.quantization.nncf_engine import per_image_items

    items = per_image_items(np.zeros((70, 64, 32, 3), np.uint8), 70)  # 2,048 pixels an image: 50 an item
    assert items.per_item == 50 and [item.shape for item in items] == [(50, 3, 64, 32), (20, 3, 64, 32)]
    with pytest.raises(IndexError, match="^2$"):
        items[2]


def test_ignored_scope_and_advanced_settings_become_nncfs_objects():
    from synthcal.quantization.nncf_engine import _advanced_parameters, _ignored_scope, nncf

    spec = {"names": ["conv1"], "types": ["MatMul"], "patterns": ["fc.*"], "validate": False}
    assert _ignored_scope(spec) == nncf.IgnoredScope(names=["conv1"], types=["MatMul"], patterns=["fc.*"],
                                                     validate=False)
    assert _ignored_scope({"types": ["MatMul"]}) == nncf.IgnoredScope(names=[], types=["MatMul"], patterns=[],
                                                                      validate=True)
    assert _ignored_scope({"names": ["conv1"]}) == nncf.IgnoredScope(names=["conv1"], types=[], patterns=[])
    assert _ignored_scope({}) is None and _ignored_scope(None) is None
    assert _advanced_parameters(None) is None and _advanced_parameters({}) is None
    given = {"overflow_fix": "disable", "disable_bias_correction": True}
    assert _advanced_parameters(given) == nncf.AdvancedQuantizationParameters(
        overflow_fix=nncf.OverflowFix.DISABLE, disable_bias_correction=True)
    assert given == {"overflow_fix": "disable", "disable_bias_correction": True}  # the entry is left as it was
    assert _advanced_parameters(None, per_image_statistics=True) == nncf.AdvancedQuantizationParameters(
        batchwise_statistics=True)


def test_batched_default_gives_the_ranges_of_one_image_per_item(fp32_xml, calibration, tmp_path):
    """The first 130 of 250 images, one, two or 100 an item: the same ranges; NNCF's subset counts items."""
    ranges, subsets = {}, {}
    for label, statistics_batch in {"one": 1, "two": 2, "batched": STATISTICS_BATCH}.items():
        xml = tmp_path / label / "int8.xml"
        info = quantize_model(fp32_xml, calibration, "default", METHOD | {"subset_size": 130}, xml,
                              tmp_path / label / "quantize.json", statistics_batch=statistics_batch)
        assert info["fake_quantize_count"] > 0 and info["calibration_samples_used"] == 130
        assert read_json(tmp_path / label / "quantize.json")["calibration_batch_size"] == statistics_batch
        ranges[label], subsets[label] = quantizer_ranges(xml), info["nncf_arguments"]["subset_size"]
    assert subsets == {"one": "130", "two": "65", "batched": "2"}
    assert len(ranges["one"]) == len(ranges["two"]) == len(ranges["batched"]) > 0
    for one, two, batched in zip(ranges["one"], ranges["two"], ranges["batched"], strict=True):
        np.testing.assert_array_equal(one, two)
        np.testing.assert_array_equal(one, batched)


def test_an_ir_with_a_fixed_batch_of_one_is_fed_an_image_per_item(calibration, tmp_path):
    import openvino as ov

    torch.manual_seed(0)
    network = TinyClassifier((8,)).eval()
    for batch in (1, 2):
        model = ov.convert_model(network, example_input=torch.zeros(batch, 3, 32, 32), input=[batch, 3, 32, 32])
        ov.save_model(model, tmp_path / f"batch{batch}.xml", compress_to_fp16=False)
    twenty = ImageSet(calibration.images[:20], calibration.labels[:20], {})
    unbatched = {key: value for key, value in METHOD.items() if key != "batch_size"}  # batch_size: 1 by default
    info = quantize_model(tmp_path / "batch1.xml", twenty, "default", unbatched, tmp_path / "int8.xml",
                          tmp_path / "q.json")
    assert info["calibration_batch_size"] == 1 and info["nncf_arguments"]["subset_size"] == "20"
    with pytest.raises(QuantizationError, match=rf"^methods\.big: the FP32 IR {re.escape(str(tmp_path))}/batch1\.xml "
                                                r"has a fixed batch of 1; NNCF can feed it only batch_size: 1$"):
        quantize_model(tmp_path / "batch1.xml", twenty, "big", METHOD | {"batch_size": 2}, tmp_path / "x.xml",
                       tmp_path / "x.json")
    with pytest.raises(QuantizationError, match=r"has a fixed batch of 2; NNCF can feed it only batch_size: 1$"):
        quantize_model(tmp_path / "batch2.xml", twenty, "two", METHOD, tmp_path / "y.xml", tmp_path / "y.json")
    assert not (tmp_path / "x.xml").exists() and not (tmp_path / "y.xml").exists()


def test_whole_batches_give_other_ranges(fp32_xml, calibration, tmp_path):
    """NNCF's own batch semantics (a statistic per batch) is what ``batch_size`` still asks for: other ranges."""
    quantize_model(fp32_xml, calibration, "default", METHOD, tmp_path / "one" / "int8.xml",
                   tmp_path / "one" / "quantize.json")
    bare = {key: value for key, value in METHOD.items() if key != "algorithm"}  # the default algorithm
    info = quantize_model(fp32_xml, calibration, "default", bare | {"batch_size": 125},
                          tmp_path / "125" / "int8.xml", tmp_path / "125" / "quantize.json")
    assert info["algorithm"] == "default"
    one, whole = quantizer_ranges(tmp_path / "one" / "int8.xml"), quantizer_ranges(tmp_path / "125" / "int8.xml")
    assert any(not np.array_equal(a, b) for a, b in zip(one, whole, strict=True))


def test_the_methods_settings_reach_nncf(fp32_xml, calibration, tmp_path):
    """Every setting of the method entry is in the arguments NNCF was called with (quantize.json records that very
    dict): full bias correction stays full, and the ignored MatMul is left in float."""
    method = METHOD | {"preset": "mixed", "target_device": "any", "subset_size": 40, "fast_bias_correction": False,
                       "ignored_scope": {"types": ["MatMul"]}}
    few = ImageSet(calibration.images[:60], calibration.labels[:60], calibration.provenance)
    import time

    import nncf
    import openvino as ov

    start = time.perf_counter()
    info = quantize_model(fp32_xml, few, "full_bc", method, tmp_path / "int8.xml", tmp_path / "quantize.json")
    elapsed = time.perf_counter() - start
    recorded = read_json(tmp_path / "quantize.json")
    assert (recorded["engine"], recorded["algorithm"], recorded["nncf_version"], recorded["openvino_version"]) == (
        "nncf", "default", nncf.__version__, ov.get_version())
    assert 0 < recorded["quantization_seconds"] < elapsed
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
from pathlib import Path

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


def test_an_unknown_ignored_scope_layer_is_named_before_nncf_runs(fp32_xml, calibration, tmp_path):
    from synthcal.quantization.nncf_engine import QuantizationError

    method = {**METHOD, "ignored_scope": {"names": ["conv99"]}}
    with pytest.raises(QuantizationError, match=rf"methods.scoped.ignored_scope.names: 'conv99' is not a layer of "
                                                rf"{fp32_xml}; its layers include "):
        quantize_model(fp32_xml, calibration, "scoped", method, tmp_path / "int8.xml", tmp_path / "quantize.json")
    assert not list(tmp_path.iterdir())


def test_bad_methods_and_sets_are_refused_before_nncf(fp32_xml, calibration, tmp_path):
    from synthcal.quantization.nncf_engine import QuantizationError

    def run(method, image_set=calibration):
        return quantize_model(fp32_xml, image_set, "m", method, tmp_path / "int8.xml", tmp_path / "q.json")

    with pytest.raises(QuantizationError, match=r"^methods.m.algorithm 'magic' is not one of \('default', "
                                                r"'accuracy_aware'\)$"):
        run({"algorithm": "magic"})
    with pytest.raises(QuantizationError, match="^the calibration set is empty$"):
        run(METHOD, ImageSet(calibration.images[:0], calibration.labels[:0], {}))
    with pytest.raises(QuantizationError, match="^methods.m.validation is 'labels' but the calibration set has no "
                                                "labels; use 'agreement'"):
        run({"algorithm": "accuracy_aware", "validation": "labels"})
    with pytest.raises(QuantizationError, match="^methods.m.validation 'loss' is not one of labels, agreement, auto$"):
        run({"algorithm": "accuracy_aware", "validation": "loss"})
    assert not (tmp_path / "int8.xml").exists() and not (tmp_path / "q.json").exists()


def test_accuracy_aware_records_its_validation(fp32_xml, calibration, tmp_path, caplog):
    """A loose max_drop (nothing to revert): what was validated on and the drop NNCF was held to, as recorded."""
    labelled = ImageSet(calibration.images[:30], np.arange(30) % 10, {"name": "labelled"})
    method = {"algorithm": "accuracy_aware", "validation": "auto", "validation_count": 50, "max_drop": 0.9,
              "drop_type": "relative", "max_num_iterations": 1}
    with caplog.at_level("WARNING", logger="synthcal.quantization.nncf_engine"):
        info = quantize_model(fp32_xml, labelled, "aa", method, tmp_path / "int8.xml", tmp_path / "q.json")
    assert [record.getMessage() for record in caplog.records if record.name == "synthcal.quantization.nncf_engine"
            ] == ["methods.aa.validation_count = 50 but the calibration set has 30 images: validating on all 30"]
    control = read_json(tmp_path / "q.json")["accuracy_control"]
    assert {key: control[key] for key in ("validation", "validation_images", "max_drop", "drop_type")} == {
        "validation": "labels", "validation_images": 30, "max_drop": 0.9, "drop_type": "relative"}
    assert control["metric_drop"] == pytest.approx((control["baseline_metric"] - control["final_metric"])
                                                   / control["baseline_metric"])
    # NNCF itself was held to the relative drop: its one "Accuracy drop: <value> (<type>)" line names it
    assert [line.rsplit(" ", 1)[1] for line in control["nncf_log"] if line.startswith("Accuracy drop: ")] == [
        "(relative)"]
    assert info["validation_count_capped"] == {"requested": 50, "used": 30} and info["calibration_batch_size"] == 1
    # unlabelled: "auto" validates on agreement with FP32, which FP32 itself meets fully
    method = {"algorithm": "accuracy_aware", "validation": "auto", "validation_count": 20, "max_drop": 0.9}
    info = quantize_model(fp32_xml, ImageSet(calibration.images[:30], calibration.labels[:30], {}), "aa", method,
                          tmp_path / "b/int8.xml", tmp_path / "b/q.json")
    control = info["accuracy_control"]
    assert (control["validation"], control["validation_images"], control["baseline_metric"]) == ("agreement", 20, 1.0)
    assert control["drop_type"] == "absolute" and control["metric_drop"] == pytest.approx(1.0 - control[
        "final_metric"]) and "validation_count_capped" not in info


def test_accuracy_aware_validates_on_labels_unless_told_otherwise(fp32_xml, calibration, tmp_path):
    unlabelled = ImageSet(calibration.images[:10], calibration.labels[:10], {})
    with pytest.raises(QuantizationError, match=r"^methods\.aa\.validation is 'labels' but the calibration set has "
                                                r"no labels; use 'agreement' \(top-1 agreement with the FP32 model\) "
                                                r"for unlabelled sets$"):
        quantize_model(fp32_xml, unlabelled, "aa", {"algorithm": "accuracy_aware"},
                       tmp_path / "int8.xml", tmp_path / "q.json")


def test_accuracy_control_gets_the_methods_settings(fp32_xml, calibration, tmp_path):
    """Every setting of an accuracy-aware entry reaches NNCF: with nothing to revert its model is the default
    algorithm's under the same settings, constant for constant; the restorer's settings show in NNCF's log."""
    import openvino as ov

    from synthcal.inference import compile_model, infer_logits

    def constants(xml):
        return [op.get_data() for op in ov.Core().read_model(str(xml)).get_ordered_ops()
                if op.get_type_name() == "Constant"]

    sixty = ImageSet(calibration.images[:60], calibration.labels[:60], {})
    settings = {"subset_size": 30, "advanced": {"disable_bias_correction": True}}
    loose = {"algorithm": "accuracy_aware", "validation": "agreement", "max_drop": 0.05} | settings
    info = quantize_model(fp32_xml, sixty, "aa", loose, tmp_path / "aa/int8.xml", tmp_path / "aa/q.json")
    # INT8 agrees with FP32 on 58 of 60 here: within 0.05, beyond NNCF's default max_drop of 0.01
    assert info["float_layers"] == [] and 0.95 <= info["accuracy_control"]["final_metric"] < 1.0
    quantize_model(fp32_xml, sixty, "default", {"algorithm": "default"} | settings, tmp_path / "d/int8.xml",
                   tmp_path / "d/q.json", statistics_batch=1)
    aa, default = constants(tmp_path / "aa/int8.xml"), constants(tmp_path / "d/int8.xml")
    assert len(aa) == len(default) and all(np.array_equal(a, b) for a, b in zip(aa, default, strict=True))
    # and the advanced settings count there too: with bias correction the biases move
    quantize_model(fp32_xml, sixty, "default", {"algorithm": "default", "subset_size": 30}, tmp_path / "bc/int8.xml",
                   tmp_path / "bc/q.json", statistics_batch=1)
    corrected = constants(tmp_path / "bc/int8.xml")
    assert len(corrected) == len(default) and not all(np.array_equal(a, b) for a, b in zip(corrected, default,
                                                                                             strict=True))
    # the default max_drop (0.02), one iteration, two ranking workers: the classifier goes back to float, and NNCF
    # says why
    strict = {"algorithm": "accuracy_aware", "validation": "agreement", "max_num_iterations": 1,
              "num_ranking_workers": 2, "validation_count": 60}
    info = quantize_model(fp32_xml, sixty, "aa", strict, tmp_path / "s/int8.xml", tmp_path / "s/q.json")
    control = info["accuracy_control"]
    assert info["float_layers"] == ["__module.fc/aten::linear/MatMul"] and "validation_count_capped" not in info
    assert control["max_drop"] == 0.02 and control["drop_type"] == "absolute"
    assert not [handler for handler in logging.getLogger("nncf").handlers if type(handler).__name__ == "_CapturedLog"]
    log = control["nncf_log"]
    assert log[0] == "Validation of initial model was started" and "Metric of initial model: 1.0" in log
    assert "Number of parallel workers to rank quantized operations: 2" in log
    assert "Maximum number of iteration was reached." in log
    fp32, int8 = (infer_logits(compile_model(str(xml), "f32"), sixty.images).argmax(1)
                  for xml in (fp32_xml, tmp_path / "s/int8.xml"))
    assert control["baseline_metric"] == 1.0 and control["final_metric"] == (fp32 == int8).mean()


def test_metric_drop_is_absolute_or_relative_to_the_baseline():
    from synthcal.quantization.nncf_engine import metric_drop

    assert metric_drop(0.8, 0.6, "absolute") == pytest.approx(0.2)
    assert metric_drop(0.8, 0.6, "relative") == pytest.approx(0.25)
    assert metric_drop(0.5, 0.6, "relative") == pytest.approx(-0.2)  # INT8 better: a negative drop
    with pytest.raises(ValueError, match="drop_type must be absolute or relative, got 'percent'"):
        metric_drop(0.8, 0.6, "percent")


@pytest.mark.parametrize("precision_hint", ["f32", "bf16"])
def test_accuracy_aware_validates_at_the_precision_asked_for(tmp_path, calibration, precision_hint):
    """Two classes whose logits tie but for 1e-3 of a feature direction, split at its median over the images: f32
    picks each on half the images, this CPU's bf16 picks class 0 on all. FP32's agreement with its own targets is
    1.0 only if targets and baseline are computed at the one precision asked for (through the workflow entry)."""
    from types import SimpleNamespace

    import openvino as ov

    from synthcal.inference import compile_model, infer_logits, to_model_input
    from synthcal.io import save_image_set
    from synthcal.quantization.nncf_engine import quantize_from_files

    sixty = ImageSet(calibration.images[:60], calibration.labels[:60], {})
    torch.manual_seed(0)
    network = TinyClassifier((8, 16)).eval()
    with torch.no_grad():
        direction = torch.randn_like(network.fc.weight[0])
        along = network.forward_features(torch.from_numpy(to_model_input(sixty.images))) @ direction
        network.fc.weight[1] = network.fc.weight[0] + 1e-3 * direction
        network.fc.bias[1] = network.fc.bias[0] - 1e-3 * along.median()
        network.fc.bias[:2] += 10.0  # classes 0 and 1 lead every image
    model = ov.convert_model(network, example_input=torch.zeros(1, 3, 32, 32), input=[-1, 3, 32, 32])
    ov.save_model(model, tmp_path / "fp32.xml", compress_to_fp16=False)
    save_image_set(tmp_path / "sixty.npz", sixty.images, None, {})
    method = {"algorithm": "accuracy_aware", "validation": "agreement", "max_drop": 1.0}
    options = {"precision_hint": precision_hint} if precision_hint != "f32" else {}  # f32: the entry's default
    info = quantize_from_files("aa", method, SimpleNamespace(xml=tmp_path / "fp32.xml", calibration=tmp_path /
                                                             "sixty.npz"),
                               SimpleNamespace(xml=tmp_path / "int8.xml", info=tmp_path / "q.json"), **options)
    control = info["accuracy_control"]
    targets, int8 = (infer_logits(compile_model(str(xml), precision_hint), sixty.images).argmax(1)
                     for xml in (tmp_path / "fp32.xml", tmp_path / "int8.xml"))
    assert control["baseline_metric"] == 1.0 and control["final_metric"] == (targets == int8).mean()


def test_a_crossfold_cell_writes_one_model_per_fold(fp32_xml, calibration, tmp_path):
    """Fold k's model is calibrated on the images outside fold k (class index modulo folds): fold 0's is the cell's
    int8.xml, the others under folds/; quantize.json lists them; the workflow entry reads the set from its file."""
    from types import SimpleNamespace

    from synthcal.io import save_image_set
    from synthcal.quantization.nncf_engine import fold_ir, quantize_from_files

    labels = np.arange(60) % 10
    save_image_set(tmp_path / "calib.npz", calibration.images[:60], labels, {"name": "cf", "folds": 3})
    outputs = SimpleNamespace(xml=tmp_path / "cell/int8.xml", info=tmp_path / "cell/quantize.json")
    info = quantize_from_files("default", METHOD, SimpleNamespace(xml=fp32_xml, calibration=tmp_path / "calib.npz"),
                               outputs)
    assert fold_ir(outputs.xml, 0) == outputs.xml and fold_ir(outputs.xml, 2) == tmp_path / "cell/folds/2/int8.xml"
    assert [model["fold"] for model in info["fold_models"]] == [0, 1, 2] and info["folds"] == 3
    assert [model["calibration_images"] for model in info["fold_models"]] == [36, 42, 42]  # 4, 3, 3 classes out
    assert all(Path(model["ir"]).exists() for model in info["fold_models"])
    assert info["quantization_seconds"] == pytest.approx(sum(m["quantization_seconds"] for m in info["fold_models"]))
    written = read_json(outputs.info)
    assert written["fold_models"] == info["fold_models"] and written["folds"] == 3
    assert written["quantization_seconds"] == info["quantization_seconds"]
    assert info["calibration_images_available"] == 36 and info["calibration_set"]["fold"] == 0
    assert info["method"] == "default" and written["method"] == "default"
    # options reach every fold's quantization
    from synthcal.quantization.nncf_engine import quantize_crossfold

    two = ImageSet(calibration.images[:20], np.arange(20) % 10, {"name": "cf", "folds": 2})
    one_each = quantize_crossfold(fp32_xml, two, "default", METHOD, tmp_path / "one/int8.xml",
                                  tmp_path / "one/quantize.json", statistics_batch=1)
    assert one_each["calibration_batch_size"] == 1
    # fold 0 is quantized last: if it fails, no quantize.json says the cell is done
    only_class_0 = ImageSet(calibration.images[:10], np.zeros(10, np.int64), {"name": "cf", "folds": 2})
    with pytest.raises(QuantizationError, match="the calibration set is empty"):
        quantize_crossfold(fp32_xml, only_class_0, "default", METHOD, tmp_path / "fail/int8.xml",
                           tmp_path / "fail/quantize.json")
    assert (tmp_path / "fail/folds/1/int8.xml").exists() and not (tmp_path / "fail/quantize.json").exists()
    # an ordinary set (no folds) goes straight to quantize_model
    save_image_set(tmp_path / "plain.npz", calibration.images[:20], None, {"name": "plain"})
    plain = quantize_from_files("default", METHOD, SimpleNamespace(xml=fp32_xml, calibration=tmp_path / "plain.npz"),
                                SimpleNamespace(xml=tmp_path / "p/int8.xml", info=tmp_path / "p/quantize.json"))
    assert "fold_models" not in plain and plain["calibration_images_available"] == 20 and plain["method"] == "default"


def test_a_set_on_disk_is_read_an_item_at_a_time_with_the_same_result(fp32_xml, calibration, tmp_path):
    """A stored set (``StoredImages``: a crossfold cell's half of a large test split) gives NNCF items read when asked
    for, never the whole set, and the same INT8 model as the set in memory."""
    from synthcal.io import StoredImages, load_image_set, save_image_set
    from synthcal.quantization.nncf_engine import calibration_items

    save_image_set(tmp_path / "set.npz", calibration.images, calibration.labels, calibration.provenance)
    stored = load_image_set(tmp_path / "set.npz", stream=True)
    assert isinstance(stored.images, StoredImages)
    items, subset, _ = calibration_items(stored.images, METHOD | {"subset_size": 150})
    assert not isinstance(items, list) and len(items) == subset == 2  # 100 + 50 images, read on demand
    np.testing.assert_array_equal(items[1], calibration_items(calibration.images, METHOD | {"subset_size": 150})[0][1])
    for name, image_set in (("memory", calibration), ("disk", stored)):
        quantize_model(fp32_xml, image_set, "default", METHOD, tmp_path / name / "int8.xml",
                       tmp_path / name / "quantize.json")
    in_memory, on_disk = (quantizer_ranges(tmp_path / name / "int8.xml") for name in ("memory", "disk"))
    for a, b in zip(in_memory, on_disk, strict=True):
        np.testing.assert_array_equal(a, b)
