"""Checks on a quantized OpenVINO model that hold for any engine and any OpenVINO version (2023.3 to 2026.x)."""

from __future__ import annotations

COMPUTE_OPS = ("Convolution", "GroupConvolution", "MatMul")
LAYOUT_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Transpose", "Convert")


def float_compute_layers(model) -> list[str]:
    """Convolutions and MatMuls whose activation input is not fake-quantized (they run in floating point)."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in COMPUTE_OPS:
            producer = op.input_value(0).get_node()
            while producer.get_type_name() in LAYOUT_OPS:
                producer = producer.input_value(0).get_node()
            if producer.get_type_name() != "FakeQuantize":
                names.append(op.get_friendly_name())
    return names


def fake_quantize_count(model) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())
