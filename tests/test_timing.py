"""The timing step on real OpenVINO IRs of a small CNN: FP32, the same FP32 IR timed as if
it were another cell, and an NNCF INT8 IR. Speed figures themselves are benchmarks' business; here: the record's
shape, the interleaved order, and that an IR against itself comes out at a speed-up of about 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TinyClassifier

from synthcal.evaluation.timing import FP32, interleaved_order, spread, time_irs, time_model_from_files
from synthcal.io import save_image_set

REPEATS = 7


@pytest.fixture(scope="module")
def irs(tmp_path_factory) -> list[dict]:
    import nncf
    import openvino as ov

    out = tmp_path_factory.mktemp("timing")
    torch.manual_seed(0)
    network = TinyClassifier((16, 32, 64)).eval()
    model = ov.convert_model(network, example_input=torch.zeros(1, 3, 32, 32), input=[-1, 3, 32, 32])
    ov.save_model(model, out / "fp32.xml", compress_to_fp16=False)
    pixels = np.random.default_rng(0).uniform(0, 255, (64, 1, 3, 32, 32)).astype(np.float32)
    quantized = nncf.quantize(model, nncf.Dataset(list(pixels)), subset_size=64)
    ov.save_model(quantized, out / "int8.xml", compress_to_fp16=False)
    cell = {"precision": "int8", "calibration": "noise", "method": "default"}
    return [{"name": FP32, "precision": "fp32", "calibration": "", "method": "", "xml": str(out / "fp32.xml")},
            cell | {"name": "itself/fp32", "calibration": "itself", "method": "fp32", "xml": str(out / "fp32.xml")},
            cell | {"name": "noise/default", "xml": str(out / "int8.xml")}]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (500, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def record(irs, images) -> dict:
    return time_irs("tiny", irs, images, repeats=REPEATS, batch_size=100, show_progress=False)


def test_record_holds_every_repeat_with_its_spread(record, irs):
    assert (record["model"], record["repeats"], record["images"], record["batch_size"]) == ("tiny", REPEATS, 500, 100)
    assert record["precision_hint"] == "f32" and record["seconds"] > 0
    machine = record["machine"]
    assert machine["openvino"] and machine["cpu_count"] >= 1 and "PERFORMANCE_HINT" in machine["runtime"]
    assert list(record["irs"]) == [ir["name"] for ir in irs]
    fp32 = np.array(record["irs"][FP32]["images_per_second"]["repeats"])
    assert "speedup" not in record["irs"][FP32] and record["irs"][FP32]["ir"] == irs[0]["xml"]
    for ir in irs:
        entry = record["irs"][ir["name"]]
        speed = entry["images_per_second"]
        assert len(speed["repeats"]) == REPEATS and all(value > 0 for value in speed["repeats"])
        assert speed["min"] <= speed["q1"] <= speed["median"] <= speed["q3"] <= speed["max"]
        assert speed["median"] == pytest.approx(np.median(speed["repeats"]))
        assert speed["relative_range"] == pytest.approx((speed["max"] - speed["min"]) / speed["median"])
        if ir["name"] != FP32:
            assert (entry["calibration"], entry["method"], entry["precision"]) == (ir["calibration"], ir["method"],
                                                                                  "int8")
            # the speed-up pairs each INT8 pass with the FP32 pass of the same repeat: in process CPU seconds,
            # and in wall-clock images/s as wall_speedup
            ratios = np.array(speed["repeats"]) / fp32
            assert entry["wall_speedup"]["repeats"] == pytest.approx(ratios.tolist())
            cpu = np.array(record["irs"][FP32]["cpu_seconds"]["repeats"]) / np.array(entry["cpu_seconds"]["repeats"])
            assert entry["speedup"]["repeats"] == pytest.approx(cpu.tolist())
            assert entry["speedup"]["median"] == pytest.approx(np.median(cpu))
    assert json.loads(json.dumps(record)) == record  # plain JSON


def test_an_ir_against_itself_is_about_one(record):
    for figure in ("speedup", "wall_speedup"):
        itself = record["irs"]["itself/fp32"][figure]
        assert 0.8 < itself["median"] < 1.25, (figure, itself)


def test_interleaved_order_times_every_ir_once_per_repeat_and_varies_its_neighbours(record, irs):
    order = record["order"]
    names = [ir["name"] for ir in irs]
    assert len(order) == REPEATS and all(sorted(repeat) == sorted(names) for repeat in order)
    assert all(order[i + 1] == order[i][::-1] for i in range(0, REPEATS - 1, 2))  # ABBA pairs
    assert len({tuple(repeat) for repeat in order}) > 1
    for name in names:  # what ran just before it (None: it opened the repeat) is not always the same
        before = {repeat[repeat.index(name) - 1] if repeat.index(name) else None for repeat in order}
        assert len(before) > 1, (name, order)


def test_order_is_seeded():
    names = ["fp32", *(f"cell{i}" for i in range(8))]
    assert interleaved_order(names, 7, seed=3) == interleaved_order(names, 7, seed=3)
    assert interleaved_order(names, 7, seed=3) != interleaved_order(names, 7, seed=4)
    two = interleaved_order(["fp32", "int8"], 6)  # even with two IRs, each opens half the repeats
    assert [repeat[0] for repeat in two].count("fp32") == 3


def test_spread_of_known_values():
    figures = spread([2.0, 4.0, 3.0, 10.0, 1.0])
    assert (figures["median"], figures["min"], figures["max"]) == (3.0, 1.0, 10.0)
    assert (figures["q1"], figures["q3"]) == (2.0, 4.0)
    assert figures["relative_iqr"] == pytest.approx(2 / 3) and figures["relative_range"] == pytest.approx(3.0)


def test_workflow_entry_times_the_first_images_and_writes_json(irs, images, tmp_path):
    test = tmp_path / "test.npz"
    save_image_set(test, images[:300], np.zeros(300, np.int64), {"source": "test"})
    output = tmp_path / "timing" / "tiny.json"
    options = {"repeats": 5, "images": 120, "batch_size": 50, "precision_hint": "f32", "seed": 0}
    time_model_from_files("tiny", irs[::2], test, output, options)
    written = json.loads(output.read_text())
    assert (written["repeats"], written["images"], written["batch_size"]) == (5, 120, 50)
    assert set(written["irs"]) == {FP32, "noise/default"}
    assert [path.name for path in output.parent.iterdir()] == ["tiny.json"]  # nothing half-written beside it


def test_missing_ir_is_named_and_nothing_is_written(irs, images, tmp_path):
    test = tmp_path / "test.npz"
    save_image_set(test, images[:10], None, {"source": "test"})
    missing = irs[:1] + [irs[2] | {"xml": str(tmp_path / "gone" / "int8.xml")}]
    with pytest.raises(FileNotFoundError, match="gone/int8.xml"):
        time_model_from_files("tiny", missing, test, tmp_path / "out" / "tiny.json", {"repeats": 5})
    assert not (tmp_path / "out").exists()
