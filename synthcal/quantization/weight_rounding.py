"""GPTQ weight rounding for convolutions and matrix products, ahead of ``nncf.quantize``.

``nncf.quantize`` rounds every weight to its nearest INT8 step (symmetric, per output channel, scale max|w| / 127).
GPTQ (Frantar et al., 2022) rounds a layer's weights one input column at a time and moves each rounding error onto
the columns not yet rounded, weighted by the layer's input second moments H = E[x xᵀ] (here: from the calibration
images through the FP32 model), so that the layer's *output* changes least. NNCF's own GPTQ
(``nncf.compress_weights(..., gptq=True)``) takes MatMuls only (3.4.0: "Convolution metatypes are not supported").

The rounded weights go back into a copy of the FP32 model as FP32 values on NNCF's grid, each output channel keeping
its largest magnitude, so that ``nncf.quantize`` computes the same scales and its nearest rounding keeps GPTQ's
integers (``integer_weights`` reads them back from the INT8 model; the auto method records the share that match).
Grouped (depthwise) convolutions keep NNCF's rounding.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

WEIGHT_BITS = 8  # with NNCF's overflow fix disabled: 8-bit weights in every layer
GPTQ_DAMP = 0.1  # share of the mean H diagonal added to it


class WeightRoundingError(ValueError):
    """A model or setting GPTQ rounding cannot take; the message names it."""


def rounded_layers(model) -> list:
    """The layers GPTQ rounds: MatMuls and 2-D convolutions (explicit padding, no dilation) whose weight input is a
    constant. Others keep NNCF's rounding."""
    layers = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "MatMul") or \
                op.input_value(1).get_node().get_type_name() != "Constant":
            continue
        if op.get_type_name() == "Convolution":
            attributes = op.get_attributes()
            if len(op.input_value(1).get_node().get_output_shape(0)) != 4 or \
                    tuple(attributes["dilations"]) != (1, 1) or \
                    str(attributes.get("auto_pad", "explicit")).lower() not in ("explicit", "notset"):
                continue
        layers.append(op)
    return layers


def _input_rows(layer, activations: np.ndarray) -> np.ndarray:
    """The layer's input as rows that multiply its weight matrix: convolution patches (channel, kernel row,
    kernel column: the weights' OIHW order), or the MatMul's input vectors."""
    if layer.get_type_name() == "MatMul":
        if layer.get_attributes()["transpose_a"]:
            activations = np.swapaxes(activations, -1, -2)
        return activations.reshape(-1, activations.shape[-1])
    attributes = layer.get_attributes()
    kernel = tuple(layer.input_value(1).get_node().get_output_shape(0))[2:]
    (top, left), (bottom, right) = attributes["pads_begin"], attributes["pads_end"]
    stride_h, stride_w = attributes["strides"]
    padded = np.pad(activations, ((0, 0), (0, 0), (top, bottom), (left, right)))
    windows = sliding_window_view(padded, tuple(kernel), axis=(2, 3))[:, :, ::stride_h, ::stride_w]
    expected = tuple(layer.get_output_partial_shape(0).get_max_shape())[2:]
    if windows.shape[2:4] != expected:
        raise WeightRoundingError(f"{layer.get_friendly_name()}: its input gives {windows.shape[2:4]} patches, its "
                                  f"output is {expected}: a convolution GPTQ rounding does not read right")
    channels = activations.shape[1]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, channels * kernel[0] * kernel[1])


def input_second_moments(model, images: np.ndarray, batch_size: int = 100) -> dict[str, np.ndarray]:
    """Per rounded layer: the sum of x xᵀ over every input row x the calibration images give it (FP32 model)."""
    from synthcal.inference import REQUEST_PIXELS, batch_within, compile_model, fixed_batch, to_model_input

    # every rounded layer's input comes back at once: at 224 px, 100 images of them are gigabytes
    batch_size = fixed_batch(model) or batch_within(batch_size, images.shape[1], images.shape[2], REQUEST_PIXELS)
    probe = model.clone()
    layers = rounded_layers(probe)
    # by tensor name: layers that share an input share one added output, so positions do not match layers
    layer_inputs = probe.add_outputs([layer.input_value(0) for layer in layers])
    for index, layer_input in enumerate(layer_inputs):
        if not layer_input.get_names():
            layer_input.get_tensor().add_names({f"synthcal_gptq_input_{index}"})
    compiled = compile_model(probe, "f32", performance_hint="LATENCY")
    request = compiled.create_infer_request()
    moments = {layer.get_friendly_name(): 0.0 for layer in layers}
    for start in range(0, len(images), batch_size):
        results = request.infer(to_model_input(images[start:start + batch_size]))
        for layer, layer_input in zip(layers, layer_inputs, strict=True):
            rows = _input_rows(layer, results[layer_input.get_any_name()])
            moments[layer.get_friendly_name()] += (rows.T @ rows).astype(np.float64)
    return moments


def weight_matrix(layer) -> np.ndarray:
    """The layer's weights as a matrix [output channel, input element] (float64)."""
    weights = layer.input_value(1).get_node().get_data().astype(np.float64)
    if layer.get_type_name() == "MatMul":
        return weights if layer.get_attributes()["transpose_b"] else weights.T
    return weights.reshape(weights.shape[0], -1)


def channel_scales(weights: np.ndarray, bits: int = WEIGHT_BITS) -> np.ndarray:
    """NNCF's symmetric weight scale per output channel (row): max|w| / (2^(bits-1) - 1); 1 for all-zero rows."""
    scales = np.abs(weights).max(axis=1) / (2 ** (bits - 1) - 1)
    scales[scales == 0] = 1.0
    return scales


def gptq_round(weights: np.ndarray, second_moment: np.ndarray, damp: float = GPTQ_DAMP,
               bits: int = WEIGHT_BITS) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ on one weight matrix [rows, columns] with the scale NNCF uses (per row max|w| / (2^(bits-1) - 1)).

    Columns go in order of decreasing H diagonal; ``damp`` × mean(diag H) is added to the diagonal. Each row's
    largest weight keeps its full-scale step, so that the row's range (NNCF's scale) stays as it was.
    Returns the integers (float64 array) and the per-row scales.
    """
    levels = 2 ** (bits - 1) - 1
    weights = np.array(weights, dtype=np.float64)
    scales = channel_scales(weights, bits)
    largest = np.abs(weights).argmax(axis=1)
    full_scale = np.sign(weights[np.arange(len(weights)), largest]) * levels
    hessian = np.array(second_moment, dtype=np.float64)
    dead = np.diag(hessian) == 0
    hessian[dead, dead] = 1.0
    weights[:, dead] = 0.0
    order = np.argsort(-np.diag(hessian), kind="stable")
    weights, hessian = weights[:, order], hessian[np.ix_(order, order)]
    hessian[np.diag_indices_from(hessian)] += damp * np.mean(np.diag(hessian))
    inverse_factor = np.linalg.cholesky(np.linalg.inv(hessian)).T  # upper Cholesky factor of H⁻¹
    integers = np.empty_like(weights)
    for column in range(weights.shape[1]):
        rounded = np.clip(np.round(weights[:, column] / scales), -levels, levels)
        integers[:, column] = rounded
        error = (weights[:, column] - rounded * scales) / inverse_factor[column, column]
        weights[:, column + 1:] -= np.outer(error, inverse_factor[column, column + 1:])
    integers = integers[:, np.argsort(order)]
    integers[np.arange(len(integers)), largest] = full_scale
    return integers, scales


def round_weights(model, images: np.ndarray, damp: float = GPTQ_DAMP) -> tuple:
    """A copy of the FP32 ``model`` whose convolution and MatMul weights are GPTQ-rounded onto NNCF's INT8 grid.
    Returns the model, the integers (friendly name → int8 array shaped like the weight matrix) and the scales."""
    rounded = model.clone()
    moments = input_second_moments(rounded, images)
    integers, all_scales = {}, {}
    for layer in rounded_layers(rounded):
        name = layer.get_friendly_name()
        values, scales = gptq_round(weight_matrix(layer), moments[name], damp)
        integers[name], all_scales[name] = values.astype(np.int8), scales
        set_weight_matrix(layer, values * scales[:, None])
    return rounded, integers, all_scales


def set_weight_matrix(layer, matrix: np.ndarray) -> None:
    """Replace the layer's constant weights with ``matrix`` [output channel, input element] (as float32), the
    inverse of ``weight_matrix``."""
    import openvino.opset13 as opset

    weight_node = layer.input_value(1).get_node()
    if layer.get_type_name() == "MatMul" and not layer.get_attributes()["transpose_b"]:
        matrix = matrix.T
    constant = opset.constant(matrix.reshape(tuple(weight_node.get_output_shape(0))).astype(np.float32))
    constant.set_friendly_name(weight_node.get_friendly_name())
    layer.input(1).replace_source_output(constant.output(0))


def integer_weights(quantized) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The INT8 model's weights per convolution / MatMul: friendly name → (integers [output, input], per-output
    scales), read from each layer's weight decompression (int8 constant → Convert → [Subtract] → Multiply)."""
    found = {}
    for op in quantized.get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "MatMul"):
            continue
        scale_node = node = op.input_value(1).get_node()
        while node.get_type_name() in ("Multiply", "Subtract", "Convert", "Reshape") and \
                node.get_output_element_type(0).get_type_name() != "i8":
            scale_node = node if node.get_type_name() == "Multiply" else scale_node
            node = node.input_value(0).get_node()
        if node.get_type_name() != "Constant" or node.get_output_element_type(0).get_type_name() != "i8" or \
                scale_node.get_type_name() != "Multiply":
            continue
        data, scales = node.get_data(), scale_node.input_value(1).get_node().get_data().ravel()
        if op.get_type_name() == "MatMul":
            data = data if op.get_attributes()["transpose_b"] else data.T
        found[op.get_friendly_name()] = (data.reshape(data.shape[0], -1), scales)
    return found


def grid_match(quantized, integers: dict[str, np.ndarray], scales: dict[str, np.ndarray]) -> dict:
    """How much of GPTQ's rounding the INT8 model holds: the share of weights with GPTQ's integer, over the output
    channels where NNCF chose GPTQ's scale. The others are all-but-zero channels (e.g. dead ones, max|w| ~1e-9) whose
    scale NNCF raises to its floor, so they quantize to 0 either way: counted apart."""
    held = integer_weights(quantized)
    same = total = floored = 0
    for name, expected in integers.items():
        if name not in held or held[name][0].shape != expected.shape:
            total += expected.size
            continue
        held_integers, held_scales = held[name]
        rows = np.isclose(np.broadcast_to(held_scales, scales[name].shape), scales[name], rtol=1e-5, atol=0.0)
        floored += int((~rows).sum())
        total += int(rows.sum()) * expected.shape[1]
        same += int((held_integers[rows] == expected[rows]).sum())
    return {"share": same / total if total else 1.0, "channels_at_scale_floor": floored}
