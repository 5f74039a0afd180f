"""Hostile data and model files (issue 34): one line naming the file and the config key, no traceback text."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from synthcal.data import CIFAR10_CLASSES, DataError, load_split
from synthcal.io import save_image_set


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that claims ``width`` x ``height`` pixels in a few bytes (what a decompression bomb looks like)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 30_000])  # over Pillow's limit (it only warns), over twice it (it raises)
def test_a_decompression_bomb_png_names_the_file_and_the_key(tmp_path, side):
    for name in CIFAR10_CLASSES:
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "test" / name / "ok.png")
    bomb = tmp_path / "test" / "cat" / "bomb.png"
    _png_header_only(bomb, side, side)
    source = {"source": "folder", "classes": list(CIFAR10_CLASSES), "folders": {"test": str(tmp_path / "test")}}
    with pytest.raises(DataError) as raised:  # as the dataset_split job: images are decoded while written
        split = load_split(source, "test", cache_dir=tmp_path, show_progress=False)
        save_image_set(tmp_path / "test.npz", split.images, split.labels, split.provenance)
    assert not (tmp_path / "test.npz").exists()
    message = str(raised.value)
    assert message.startswith("data.folders.test: cannot read image ") and str(bomb) in message
    assert "decompression bomb" in message and "\n" not in message


def test_garbage_in_an_ir_bin_is_one_line_naming_the_file(tmp_path):
    import openvino as ov
    import openvino.opset13 as ops

    from synthcal.evaluation.evaluate import evaluate_ir
    from synthcal.inference import IRError
    from synthcal.io import ImageSet

    x = ops.parameter([1, 3, 8, 8], np.float32)
    weights = ops.constant(np.ones((10, 3, 8, 8), np.float32))
    logits = ops.reshape(ops.convolution(x, weights, [1, 1], [0, 0], [0, 0], [1, 1]), [-1, 10], False)
    ov.save_model(ov.Model([logits], [x]), str(tmp_path / "int8.xml"))
    (tmp_path / "int8.bin").write_bytes(b"garbage")
    images = ImageSet(np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int64), {})
    with pytest.raises(IRError) as raised:
        evaluate_ir(tmp_path / "int8.xml", images)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'int8.xml'} (with its .bin) is not a readable OpenVINO IR: Incorrect")
    assert "\n" not in message and "Delete it and run again" in message


@pytest.mark.parametrize(("text", "problem"), [
    ("[]", "holds a list, not an object"),
    ('{"x": 1}', "has no 'irs'"),
])
def test_an_intermediate_json_of_another_shape_is_one_line_naming_the_file(tmp_path, text, problem):
    from synthcal.io import read_json

    path = tmp_path / "resnet20.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{path} is not a file synthcal wrote \({problem}\); delete it and run "
                                         r"again$"):
        read_json(path, ("irs",))
    assert read_json(path) == json.loads(text)  # nothing required: as it is


def test_a_damaged_npz_intermediate_is_one_line_naming_the_file(tmp_path):
    from synthcal.io import load_image_set, read_npz_arrays

    path = tmp_path / "predictions.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=rf"^{path} is not a readable FP32 predictions file \(not an \.npz archive: "
                                         r"truncated or overwritten\); delete it and run again$"):
        read_npz_arrays(path, ("predictions",), "FP32 predictions file")
    with pytest.raises(ValueError, match=rf"^{path} is not a synthcal image set \(not an \.npz archive: truncated or "
                                         r"overwritten\)$"):
        load_image_set(path)
    np.savez(path, other=np.zeros(2))
    with pytest.raises(ValueError, match=rf"^{path} is not a readable FP32 predictions file: it has no array "
                                         r"'predictions'; delete it and run again$"):
        read_npz_arrays(path, ("predictions",), "FP32 predictions file")
