"""OpenVINO inference shared by export parity checks, evaluation and quantization."""

from __future__ import annotations

import os

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor
from tqdm import tqdm


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB → float32 NCHW raw pixels in [0, 255] (normalisation lives inside the model)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def write_model_input(tensor: ov.Tensor, images: np.ndarray) -> None:
    """uint8 NHWC images into an idle request's own input tensor: as they are where the compiled model takes
    them (``compile_model(..., uint8_images=True)``), else converted as ``to_model_input`` does, in one pass."""
    if tensor.element_type == ov.Type.u8:
        tensor.shape = list(images.shape)
        np.copyto(tensor.data, images)
        return
    tensor.shape = [len(images), images.shape[3], images.shape[1], images.shape[2]]
    np.copyto(tensor.data, images.transpose(0, 3, 1, 2))


def with_uint8_images(model: ov.Model) -> ov.Model:
    """The model taking uint8 NHWC images as stored: OpenVINO converts to float32 and transposes to NCHW in its
    graph (``openvino.preprocess``), where Python did it before. Both steps are exact: 30 of the 31 offline IRs give
    the same logits bytes as before; for one the CPU plugin compiles the converted input into other kernels
    (logits within 0.2, same top-1)."""
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32)
    return ppp.build()


def compile_model(model: str | os.PathLike | ov.Model, precision_hint: str = "f32", num_streams: str | None = None,
                  device: str = "CPU", performance_hint: str | None = "THROUGHPUT",
                  uint8_images: bool = False) -> ov.CompiledModel:
    """Compile for the CPU; ``precision_hint='f32'`` stops this CPU from running "FP32" in bf16.

    ``performance_hint``: THROUGHPUT (default: several streams, each with its own infer request in
    ``infer_outputs``) or LATENCY (one stream using every core); ``num_streams`` overrides its stream count.
    ``uint8_images``: the compiled model takes uint8 NHWC images (``with_uint8_images``), as the evaluator and
    the timing step feed it; without, float32 NCHW (``to_model_input``), as the IR declares.
    """
    config: dict = {}
    if precision_hint:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    if performance_hint:
        config["PERFORMANCE_HINT"] = performance_hint.upper()
    if num_streams:
        config["NUM_STREAMS"] = num_streams
    core = ov.Core()
    source = model if isinstance(model, ov.Model) else read_ir(model)
    if uint8_images:
        source = with_uint8_images(source.clone())
    return core.compile_model(source, device, config)


REQUEST_PIXELS = 16 * 224 * 224  # evaluation and timing requests: 100 images at 32 px, 16 at 224 px (not 100)


def batch_within(batch_size: int, height: int, width: int, pixels: int) -> int:
    """``batch_size`` capped so one batch holds at most ``pixels`` input pixels (at least one image): a batch size
    set for 32-px inputs would need 49× the memory at 224 px."""
    return max(1, min(int(batch_size), int(pixels) // (int(height) * int(width))))


class IRError(RuntimeError):
    """An intermediate IR (``results/…/*.xml`` with its ``.bin``) that OpenVINO cannot read."""


def read_ir(xml_path: str | os.PathLike) -> ov.Model:
    """``Core.read_model``, its multi-line error reduced to one line naming the file (a damaged intermediate is
    rebuilt by deleting it and running again)."""
    try:
        return ov.Core().read_model(str(xml_path))
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines()
                 if line.strip() and not line.startswith(("Exception from", "Check "))]
        reason = lines[-1] if lines else str(error).strip().splitlines()[0]
        raise IRError(f"{xml_path} (with its .bin) is not a readable OpenVINO IR: {reason} Delete it and run "
                      "again to rebuild it.") from None


def fixed_batch(model: ov.CompiledModel | ov.Model) -> int | None:
    """The batch an IR's input is fixed at (an ONNX graph whose batch could not be freed, issue 35), else None."""
    shape = model.input(0).get_partial_shape()
    return shape[0].get_length() if shape.rank.is_static and shape[0].is_static else None


def infer_outputs(compiled: ov.CompiledModel, images: np.ndarray, batch_size: int = 100,
                  show_progress: bool = False, desc: str = "infer", batch_seconds: list | None = None,
                  num_requests: int | None = None) -> list[np.ndarray]:
    """Every output of the model for uint8 NHWC images (float32, one array per output, in input order), in
    batches over ``num_requests`` infer requests running at once (default: the compiled model's
    OPTIMAL_NUMBER_OF_INFER_REQUESTS, one per stream).

    As benchmark_app does: the next batch goes to whichever request finishes first (the request
    ``get_idle_request_id`` names is the one ``start_async`` takes), after its outputs are copied out and
    the batch is written into its own input tensor (``write_model_input``). No Python callback: an
    AsyncInferQueue with one can deadlock when its compiled model is destroyed (the stream threads wait for
    the GIL the destructor holds); its built-in callbacks take no GIL. No zero-copy inputs either
    (``share_inputs=True``): they crashed the process here (double free) once compiled models came and went.
    Each batch is computed the same way whichever request runs it, so the outputs are the same bytes as one
    synchronous request's on the same compiled model.

    ``batch_seconds``: a list to append each batch's inference latency to (OpenVINO's own timing of the
    request). With several requests running at once these overlap, so throughput is images / wall time,
    not batch size / latency.

    A model whose batch is fixed takes that many images per request (the last batch padded with its last image):
    batch-1 requests then run in parallel, one per stream of OpenVINO's THROUGHPUT mode.
    """
    fixed = fixed_batch(compiled)
    batch_size = fixed or batch_size
    starts = range(0, len(images), batch_size)
    if not len(starts):
        return []
    count = num_requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, max(1, min(count, len(starts))))
    running: dict[int, tuple[int, int]] = {}  # request id → start and size of the batch it runs
    outputs: list[np.ndarray] = []

    def collect(slot: int) -> int:
        request, (start, count) = queue[slot], running.pop(slot)
        if batch_seconds is not None:
            batch_seconds.append(request.latency / 1000)
        for index in range(len(compiled.outputs)):
            result = request.get_output_tensor(index).data
            if len(outputs) == index:
                outputs.append(np.empty((len(images), *result.shape[1:]), np.float32))
            outputs[index][start:start + count] = result[:count]
        return count

    with tqdm(total=len(images), desc=desc, unit="img", disable=not show_progress) as bar:
        try:
            for start in starts:
                slot = queue.get_idle_request_id()  # waits, GIL released, for the first request to finish
                if slot in running:
                    bar.update(collect(slot))
                batch = images[start:start + batch_size]
                count = len(batch)
                if count < batch_size and fixed:  # a fixed batch is filled up
                    batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - count, axis=0)])
                write_model_input(queue[slot].get_input_tensor(0), batch)
                queue.start_async(userdata=start)
                if queue.userdata[slot] != start:
                    raise RuntimeError(f"AsyncInferQueue started another request than {slot}, the idle one")
                running[slot] = (start, count)
        finally:
            queue.wait_all()
        for slot in list(running):
            bar.update(collect(slot))
    return outputs


def infer_logits(compiled: ov.CompiledModel, images: np.ndarray, batch_size: int = 100,
                 show_progress: bool = False, desc: str = "infer", batch_seconds: list | None = None,
                 num_requests: int | None = None) -> np.ndarray:
    """Logits (the first output) for uint8 NHWC images; see ``infer_outputs``."""
    outputs = infer_outputs(compiled, images, batch_size, show_progress, desc, batch_seconds, num_requests)
    return outputs[0] if outputs else np.zeros((0, 10), np.float32)


def runtime_precisions(compiled: ov.CompiledModel) -> dict[str, str]:
    """Runtime precision per executed layer type (e.g. Convolution → u8), from the execution graph."""
    precisions: dict[str, set] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer_type = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
        precisions.setdefault(layer_type, set()).add(precision)
    return {layer: ",".join(sorted(values)) for layer, values in sorted(precisions.items())}
