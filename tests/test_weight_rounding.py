"""GPTQ weight rounding ahead of ``nncf.quantize`` (synthcal.quantization.weight_rounding)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import tiny_classifier_model

from synthcal.quantization.weight_rounding import GPTQ_DAMP, _input_rows, gptq_round, rounded_layers, weight_matrix


def test_gptq_with_uncorrelated_inputs_is_nearest_rounding():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 20))
    integers, scales = gptq_round(weights, np.diag(rng.uniform(0.5, 2.0, 20)))
    np.testing.assert_allclose(scales, np.abs(weights).max(axis=1) / 127)
    np.testing.assert_array_equal(integers, np.round(weights / scales[:, None]))


def test_gptq_lowers_the_layer_output_error_and_keeps_each_rows_range():
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(4000, 40)) @ rng.normal(size=(40, 40))  # correlated input elements
    second_moment = inputs.T @ inputs
    weights = rng.normal(size=(16, 40))
    integers, scales = gptq_round(weights, second_moment, damp=0.01)
    nearest = np.round(weights / scales[:, None])

    def output_error(values):
        difference = values * scales[:, None] - weights
        return np.trace(difference @ second_moment @ difference.T)

    assert output_error(integers) < 0.5 * output_error(nearest)
    np.testing.assert_array_equal(np.abs(integers).max(axis=1), np.full(16, 127))  # NNCF's scale stays
    assert np.all(integers == np.round(integers))


def test_input_rows_times_weights_is_the_layers_output():
    """The patches' element order is the weights' order: rows @ Wᵀ reproduces every rounded layer's output."""
    from synthcal.inference import compile_model, to_model_input

    model = tiny_classifier_model()
    layers = rounded_layers(model)
    assert [layer.get_type_name() for layer in layers] == ["Convolution", "Convolution", "MatMul"]
    inputs = model.add_outputs([layer.input_value(0) for layer in layers])
    outputs = model.add_outputs([layer.output(0) for layer in layers])
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    results = compile_model(model, "f32").create_infer_request().infer(to_model_input(images))
    for layer, layer_input, layer_output in zip(layers, inputs, outputs, strict=True):
        expected = results[layer_output.get_any_name()]
        if expected.ndim == 4:  # N C H W → rows in (N, H, W) order
            expected = expected.transpose(0, 2, 3, 1).reshape(-1, expected.shape[1])
        produced = _input_rows(layer, results[layer_input.get_any_name()]) @ weight_matrix(layer).T
        np.testing.assert_allclose(produced, expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())


def test_nncf_keeps_gptqs_integers_in_the_int8_model():
    """A GPTQ candidate through nncf.quantize: the INT8 model's integers are GPTQ's, the FP32 model is untouched."""
    from synthcal.quantization.auto import quantize_candidate
    from synthcal.quantization.weight_rounding import integer_weights, round_weights

    model = tiny_classifier_model()
    before = {layer.get_friendly_name(): weight_matrix(layer) for layer in rounded_layers(model)}
    images = np.random.default_rng(0).integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    candidate = {"id": "gptq", "fast_bias_correction": False, "overflow_fix": "disable", "weight_rounding": "gptq"}
    start = time.perf_counter()
    quantized, recorded = quantize_candidate(model, images, candidate)
    elapsed = time.perf_counter() - start
    rounding = recorded["weight_rounding"]
    assert rounding["layers"] == 3 and rounding["images"] == 60
    assert rounding["method"] == "gptq" and rounding["damp"] == GPTQ_DAMP and 0 < rounding["seconds"] < elapsed
    assert rounding["grid_match"] == {"share": 1.0, "channels_at_scale_floor": 0}
    _, integers, scales = round_weights(model, images)
    held = integer_weights(quantized)
    assert set(held) == set(integers)
    for name, (held_integers, held_scales) in held.items():  # NNCF kept GPTQ's scales and every integer
        np.testing.assert_allclose(held_scales, scales[name], rtol=1e-6)
        np.testing.assert_array_equal(held_integers, integers[name])
    # GPTQ moved some weights off their nearest step
    nearest = {name: np.round(matrix / (np.abs(matrix).max(1, keepdims=True) / 127)) for name, matrix in before.items()}
    assert any((integers[name] != nearest[name]).any() for name in integers)
    for layer in rounded_layers(model):
        np.testing.assert_array_equal(weight_matrix(layer), before[layer.get_friendly_name()])


@pytest.mark.parametrize(("candidate", "message"), [
    ({"id": "a", "weight_rounding": "gptq"}, r"candidates\[0\]\.weight_rounding needs overflow_fix: disable"),
    ({"id": "a", "weight_rounding": "adaround", "overflow_fix": "disable"}, r"weight_rounding is 'adaround'"),
    ({"id": "a", "weight_rounding": "gptq", "overflow_fix": "disable", "gptq_damp": 0},
     r"gptq_damp must be a positive number"),
    ({"id": "a", "gptq_damp": 0.1}, "gptq_damp is set without weight_rounding"),
])
def test_bad_weight_rounding_entries_are_refused_naming_the_key(candidate, message):
    from synthcal.quantization.auto import AutoMethodError, candidates_of

    with pytest.raises(AutoMethodError, match=message):
        candidates_of("auto", {"algorithm": "auto", "candidates": [candidate]})


def test_dilated_convolutions_keep_nncfs_rounding():
    import openvino as ov
    import torch

    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=2, dilation=2), torch.nn.Flatten(),
                                  torch.nn.Linear(4 * 32 * 32, 10)).eval()
    model = ov.convert_model(network, example_input=torch.zeros(1, 3, 32, 32), input=[-1, 3, 32, 32])
    assert [layer.get_type_name() for layer in rounded_layers(model)] == ["MatMul"]


def test_second_moments_of_layers_sharing_an_unnamed_input():
    """Two convolutions read the same tensor, which has no name: each gets its own patches' second moments."""
    import openvino as ov
    import openvino.opset13 as opset

    from synthcal.inference import to_model_input
    from synthcal.quantization.weight_rounding import input_second_moments

    rng = np.random.default_rng(0)
    pixels = opset.parameter([-1, 3, 8, 8], np.float32)
    relu = opset.relu(pixels)  # an unnamed tensor both convolutions read
    wide = opset.convolution(relu, rng.normal(size=(4, 3, 3, 3)).astype(np.float32), [1, 1], [1, 1], [1, 1], [1, 1])
    point = opset.convolution(relu, rng.normal(size=(4, 3, 1, 1)).astype(np.float32), [1, 1], [0, 0], [0, 0], [1, 1])
    model = ov.Model([opset.add(wide, point)], [pixels])
    assert not relu.output(0).get_names()
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    moments = input_second_moments(model, images, batch_size=2)
    activations = np.maximum(to_model_input(images), 0)
    for layer in rounded_layers(model):
        rows = _input_rows(layer, activations).astype(np.float64)
        np.testing.assert_allclose(moments[layer.get_friendly_name()], rows.T @ rows, rtol=1e-5)
    assert sorted(matrix.shape for matrix in moments.values()) == [(3, 3), (27, 27)]
    black = input_second_moments(model, np.zeros((3, 8, 8, 3), np.uint8))  # no input, no moments: exactly 0
    assert all(not matrix.any() for matrix in black.values())


def test_gptq_on_a_small_exact_case():
    """Three columns worked by hand (3-bit grid: levels ±3, each row's scale max|w| / 3; no damping): the column of
    largest H diagonal (2) goes first, 0.6 rounds up to 1 and its error −0.4 moves onto column 1 as
    H₁₂/H₁₁ × −0.4 = −0.2 (1.65 → 1.45 → 1, where nearest rounding gives 2); column 0 is uncorrelated and keeps 3;
    column 3 sees no input (H diagonal 0) and is zeroed. Rows 1 and 2: the same at twice the scale and negated."""
    second_moment = np.array([[1.0, 0, 0, 0], [0, 2, 1, 0], [0, 1, 3, 0], [0, 0, 0, 0]])
    weights = np.array([[3.0, 1.65, 0.6, 0.9], [6.0, 3.3, 1.2, 1.8], [-3.0, -1.65, -0.6, -0.9]])
    integers, scales = gptq_round(weights, second_moment, damp=0.0, bits=3)
    np.testing.assert_array_equal(scales, [1.0, 2.0, 1.0])
    np.testing.assert_array_equal(integers, [[3, 1, 1, 0], [3, 1, 1, 0], [-3, -1, -1, 0]])
    # damping 0.5 × mean diagonal (2) adds 1 to it: the moved error is 1/(2+1) × −0.4 ≈ −0.13; 1.52 rounds to 2
    integers, _ = gptq_round(weights[:, :3], second_moment[:3, :3], damp=0.5, bits=3)
    np.testing.assert_array_equal(integers, [[3, 2, 1], [3, 2, 1], [-3, -2, -1]])


def test_a_matmul_without_transpose_b_is_read_and_written_as_output_rows():
    """A MatMul whose constant is [in, out] (transpose_b false): GPTQ sees rows per output, writes them back
    transposed, the layer computes with the rounded weights, and the INT8 model holds GPTQ's integers and scales."""
    import openvino as ov
    import openvino.opset13 as opset

    from synthcal.quantization.auto import quantize_candidate
    from synthcal.quantization.weight_rounding import integer_weights, round_weights

    rng = np.random.default_rng(5)
    image = opset.parameter([-1, 3, 4, 4], np.float32, name="image")
    flat = opset.reshape(image, opset.constant(np.array([-1, 48], np.int64)), special_zero=False)
    weights = rng.normal(size=(48, 6)).astype(np.float32)  # [in, out]
    logits = opset.matmul(flat, opset.constant(weights), transpose_a=False, transpose_b=False)
    model = ov.Model([opset.relu(logits)], [image])
    (layer,) = rounded_layers(model)
    np.testing.assert_array_equal(weight_matrix(layer), weights.T.astype(np.float64))
    images = rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    rounded, integers, scales = round_weights(model, images)
    (name,) = integers
    assert integers[name].dtype == np.int8 and integers[name].shape == (6, 48)
    (rounded_layer,) = rounded_layers(rounded)
    np.testing.assert_allclose(weight_matrix(rounded_layer), integers[name] * scales[name][:, None], rtol=1e-6)
    # damping reaches GPTQ: another damp, other integers, also through a candidate's gptq_damp
    damped = round_weights(model, images, damp=5.0)[1][name]
    assert (damped != integers[name]).any()
    candidate = {"id": "g", "fast_bias_correction": False, "overflow_fix": "disable", "weight_rounding": "gptq"}
    quantized, recorded = quantize_candidate(model, images, candidate | {"gptq_damp": 5.0})
    np.testing.assert_array_equal(integer_weights(quantized)[name][0], damped)
    assert recorded["weight_rounding"]["damp"] == 5.0
    quantized, _ = quantize_candidate(model, images, candidate)
    held_integers, held_scales = integer_weights(quantized)[name]
    np.testing.assert_array_equal(held_integers, integers[name])
    np.testing.assert_allclose(held_scales, scales[name], rtol=1e-6)


def test_a_matmul_reading_its_input_transposed_gives_rows_that_reproduce_its_output():
    import openvino as ov
    import openvino.opset13 as opset

    from synthcal.inference import compile_model

    rng = np.random.default_rng(7)
    features = opset.parameter([-1, 5, 3], np.float32, name="features")  # [batch, in, rows]: read as [rows, in]
    weights = rng.normal(size=(4, 5)).astype(np.float32)  # [out, in]
    product = opset.matmul(features, opset.constant(weights), transpose_a=True, transpose_b=True)
    model = ov.Model([product], [features])
    (layer,) = rounded_layers(model)
    activations = rng.normal(size=(2, 5, 3)).astype(np.float32)
    expected = compile_model(model, "f32").create_infer_request().infer({0: activations})[0]
    rows = _input_rows(layer, activations)
    assert rows.shape == (6, 5)
    np.testing.assert_allclose(rows @ weight_matrix(layer).T, expected.reshape(-1, 4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("auto_pad", "rounded"), [("explicit", True), ("same_upper", False), ("same_lower", False),
                                                   ("valid", False)])
def test_only_explicitly_padded_convolutions_are_rounded(auto_pad, rounded):
    import openvino as ov
    import openvino.opset13 as opset

    pixels = opset.parameter([-1, 3, 8, 8], np.float32)
    kernel = np.ones((4, 3, 3, 3), np.float32)
    convolution = opset.convolution(pixels, kernel, [1, 1], [1, 1], [1, 1], [1, 1], auto_pad=auto_pad)
    model = ov.Model([convolution], [pixels])
    assert [layer.get_type_name() for layer in rounded_layers(model)] == (["Convolution"] if rounded else [])


def test_a_convolution_whose_patches_do_not_match_its_output_is_refused_by_name():
    import openvino as ov
    import openvino.opset13 as opset

    from synthcal.quantization.weight_rounding import WeightRoundingError

    pixels = opset.parameter([1, 3, 8, 8], np.float32)
    convolution = opset.convolution(pixels, np.ones((4, 3, 3, 3), np.float32), [2, 2], [1, 1], [1, 1], [1, 1])
    convolution.set_friendly_name("conv_a")
    (layer,) = rounded_layers(ov.Model([convolution], [pixels]))
    assert _input_rows(layer, np.zeros((1, 3, 8, 8), np.float32)).shape == (16, 27)  # 4x4 patches of 3x3x3
    wide = opset.convolution(pixels, np.ones((4, 3, 1, 3), np.float32), [1, 1], [0, 1], [0, 1], [1, 1])
    (wide_layer,) = rounded_layers(ov.Model([wide], [pixels]))
    assert _input_rows(wide_layer, np.zeros((1, 3, 8, 8), np.float32)).shape == (64, 9)  # 1x3 kernels: 3x1x3
    with pytest.raises(WeightRoundingError, match=r"^conv_a: its input gives \(5, 5\) patches, its output is "
                                                  r"\(4, 4\): a convolution GPTQ rounding does not read right$"):
        _input_rows(layer, np.zeros((1, 3, 10, 10), np.float32))


def _decompressed_weights(integers: np.ndarray, scales: np.ndarray, shape, *, zero_point: bool, reshape: bool):
    """NNCF's weight decompression by hand: int8 constant → Convert → [Subtract] → Multiply → [Reshape]."""
    import openvino.opset13 as opset

    flat = (integers.shape[0], integers.size // integers.shape[0])
    node = opset.convert(opset.constant(integers.reshape(flat if reshape else shape).astype(np.int8)), np.float32)
    if zero_point:
        node = opset.subtract(node, opset.constant(np.zeros((flat[0], 1) if reshape else (shape[0], 1, 1, 1),
                                                            np.float32)))
    scale_shape = (flat[0], 1) if reshape else (shape[0],) + (1,) * (len(shape) - 1)
    node = opset.multiply(node, opset.constant(scales.reshape(scale_shape).astype(np.float32)))
    if reshape:
        node = opset.reshape(node, opset.constant(np.array(shape, np.int64)), special_zero=False)
    return node


def test_integer_weights_reads_every_decompression_chain_and_skips_float_layers():
    import openvino as ov
    import openvino.opset13 as opset

    from synthcal.quantization.weight_rounding import integer_weights

    rng = np.random.default_rng(3)
    pixels = opset.parameter([1, 3, 6, 6], np.float32)
    plain = opset.convolution(pixels, rng.normal(size=(4, 3, 1, 1)).astype(np.float32), [1, 1], [0, 0], [0, 0],
                              [1, 1])  # float weights: not an INT8 layer, and the layers after it still count
    plain.set_friendly_name("float_conv")
    found = {}
    node = plain
    for name, zero_point, reshape in (("with_zero_point", True, False), ("reshaped", True, True),
                                      ("plain_chain", False, False)):
        integers = rng.integers(-127, 128, (4, 4, 1, 1))
        scales = rng.uniform(0.01, 0.1, 4)
        node = opset.convolution(node, _decompressed_weights(integers, scales, (4, 4, 1, 1), zero_point=zero_point,
                                                             reshape=reshape), [1, 1], [0, 0], [0, 0], [1, 1])
        node.set_friendly_name(name)
        found[name] = (integers.reshape(4, 4), scales)
    flat = opset.reshape(node, opset.constant(np.array([1, 144], np.int64)), special_zero=False)
    integers = rng.integers(-127, 128, (144, 5))  # [in, out]: transpose_b false
    scales = rng.uniform(0.01, 0.1, 5)
    decompressed = opset.multiply(opset.convert(opset.constant(integers.astype(np.int8)), np.float32),
                                  opset.constant(scales.reshape(1, 5).astype(np.float32)))
    product = opset.matmul(flat, decompressed, transpose_a=False, transpose_b=False)
    product.set_friendly_name("matmul")
    unscaled = opset.convolution(pixels, opset.convert(opset.constant(np.ones((2, 3, 1, 1), np.int8)), np.float32),
                                 [1, 1], [0, 0], [0, 0], [1, 1])  # int8 weights without a scale: not NNCF's
    unscaled.set_friendly_name("unscaled")
    scaled_float = opset.convolution(pixels, opset.multiply(opset.constant(np.ones((2, 3, 1, 1), np.float32)),
                                                            opset.constant(np.full((2, 1, 1, 1), 0.5, np.float32))),
                                     [1, 1], [0, 0], [0, 0], [1, 1])  # float weights times a scale: not INT8
    scaled_float.set_friendly_name("scaled_float")
    held = integer_weights(ov.Model([product, unscaled, scaled_float], [pixels]))
    assert sorted(held) == sorted([*found, "matmul"])
    for name, (expected, expected_scales) in found.items():
        np.testing.assert_array_equal(held[name][0], expected)
        np.testing.assert_allclose(held[name][1], expected_scales, rtol=1e-6)
    np.testing.assert_array_equal(held["matmul"][0], integers.T)  # rows per output, as weight_matrix reads it
    np.testing.assert_allclose(held["matmul"][1], scales, rtol=1e-6)


def test_grid_match_counts_held_integers_over_channels_at_gptqs_scale():
    import openvino as ov
    import openvino.opset13 as opset

    from synthcal.quantization.weight_rounding import grid_match

    rng = np.random.default_rng(4)
    pixels = opset.parameter([1, 3, 6, 6], np.float32)
    node, expected, scales = pixels, {}, {}
    for name, inputs in (("a", 3), ("b", 4)):
        integers = rng.integers(-127, 128, (4, inputs, 1, 1))
        scale = rng.uniform(0.01, 0.1, 4)
        node = opset.convolution(node, _decompressed_weights(integers, scale, (4, inputs, 1, 1), zero_point=False,
                                                             reshape=False), [1, 1], [0, 0], [0, 0], [1, 1])
        node.set_friendly_name(name)
        expected[name], scales[name] = integers.reshape(4, inputs), scale.astype(np.float64)
    model = ov.Model([node], [pixels])
    assert grid_match(model, expected, scales) == {"share": 1.0, "channels_at_scale_floor": 0}
    assert grid_match(model, {}, {}) == {"share": 1.0, "channels_at_scale_floor": 0}
    changed = {name: values.copy() for name, values in expected.items()}
    changed["a"][0, 0] += 1
    assert grid_match(model, changed, scales)["share"] == pytest.approx(27 / 28)
    # a channel whose scale NNCF raised (to its floor) is counted apart, one per layer here: 2 in all
    floored = {name: values.copy() for name, values in scales.items()}
    floored["a"][1] *= 1.001
    floored["b"][2] *= 1.001
    assert grid_match(model, expected, floored) == {"share": 1.0, "channels_at_scale_floor": 2}
    assert grid_match(model, changed, floored)["share"] == pytest.approx(20 / 21)
    # a layer the INT8 model does not hold counts as not matched; the layers after it still count
    for missing in ({"absent": np.zeros((2, 5)), **expected}, {**expected, "absent": np.zeros((2, 5))}):
        assert grid_match(model, missing, {"absent": np.ones(2), **scales})["share"] == pytest.approx(28 / 38)


def test_channel_scales_of_all_zero_rows_are_one_and_low_bits_stay_within_their_levels():
    from synthcal.quantization.weight_rounding import channel_scales

    np.testing.assert_array_equal(channel_scales(np.array([[0.0, 0.0], [0.0, -2.54], [1.0, 0.5]])),
                                  [1.0, 0.02, 1 / 127])
    rng = np.random.default_rng(5)
    inputs = rng.normal(size=(2000, 12)) @ rng.normal(size=(12, 12))
    weights = rng.normal(size=(8, 12))
    for bits, sign in ((2, 1), (3, 1), (2, -1), (3, -1)):  # errors moved onto few levels push values past them
        integers, _ = gptq_round(sign * weights, inputs.T @ inputs, damp=0.01, bits=bits)
        levels = 2 ** (bits - 1) - 1
        assert integers.max() == levels and integers.min() == -levels
    # float32 weights or an integer second moment give what float64 gives
    second_moment = np.round(inputs.T @ inputs).astype(np.int64)
    exact = gptq_round(weights, second_moment.astype(np.float64), damp=0.05)
    for other in (gptq_round(weights.astype(np.float32), second_moment.astype(np.float64), damp=0.05),
                  gptq_round(weights, second_moment, damp=0.05)):
        np.testing.assert_array_equal(other[0], exact[0])


def test_second_moments_of_a_deeper_layer_are_computed_in_float32():
    """The second convolution reads the first's (non-integer) output: its moments match float64 to 1e-5, which
    this CPU's default bf16 inference would miss by far."""
    import openvino as ov
    import openvino.opset13 as opset

    from synthcal.inference import to_model_input
    from synthcal.quantization.weight_rounding import input_second_moments

    rng = np.random.default_rng(6)
    pixels = opset.parameter([-1, 3, 8, 8], np.float32)
    first = opset.convolution(pixels, (rng.normal(size=(4, 3, 3, 3)) / 7).astype(np.float32), [1, 1], [1, 1],
                              [1, 1], [1, 1])
    second = opset.convolution(opset.relu(first), rng.normal(size=(2, 4, 1, 1)).astype(np.float32), [1, 1], [0, 0],
                               [0, 0], [1, 1])
    model = ov.Model([second], [pixels])
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    moments = input_second_moments(model, images)
    first_layer, second_layer = rounded_layers(model)
    outputs = _input_rows(first_layer, to_model_input(images).astype(np.float64)) @ weight_matrix(first_layer).T
    activations = np.maximum(outputs.reshape(6, 8, 8, 4).transpose(0, 3, 1, 2), 0)
    rows = _input_rows(second_layer, activations)
    np.testing.assert_allclose(moments[second_layer.get_friendly_name()], rows.T @ rows, rtol=1e-5)
