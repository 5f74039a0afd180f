"""OpenVINO inference shared by export parity checks, evaluation and quantization."""

from __future__ import annotations

import os
import time

import numpy as np
import openvino as ov
from tqdm import tqdm


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB → float32 NCHW raw pixels in [0, 255] (normalisation lives inside the model)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def compile_model(model: str | os.PathLike | ov.Model, precision_hint: str = "f32", num_streams: str | None = None,
                  device: str = "CPU") -> ov.CompiledModel:
    """Compile for the CPU; ``precision_hint='f32'`` stops this CPU from running "FP32" in bf16."""
    config: dict = {}
    if precision_hint:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    if num_streams:
        config["NUM_STREAMS"] = num_streams
    core = ov.Core()
    source = model if isinstance(model, ov.Model) else core.read_model(str(model))
    return core.compile_model(source, device, config)


def infer_outputs(compiled: ov.CompiledModel, images: np.ndarray, batch_size: int = 100,
                  show_progress: bool = False, desc: str = "infer", batch_seconds: list | None = None
                  ) -> list[np.ndarray]:
    """Every output of the model for uint8 NHWC images (float32, one array per output), in batches through one
    infer request.

    ``batch_seconds``: a list to append each batch's inference time to (throughput measurements).

    Synchronous on purpose: an AsyncInferQueue with a Python callback can deadlock when its compiled model
    is destroyed (the stream threads wait for the GIL the destructor holds); a batch already keeps every
    core busy.
    """
    request = compiled.create_infer_request()
    outputs: list[list[np.ndarray]] = [[] for _ in compiled.outputs]
    with tqdm(total=len(images), desc=desc, unit="img", disable=not show_progress) as bar:
        for start in range(0, len(images), batch_size):
            batch = to_model_input(images[start:start + batch_size])
            started = time.perf_counter()
            results = request.infer({0: batch})
            if batch_seconds is not None:
                batch_seconds.append(time.perf_counter() - started)
            for collected, output in zip(outputs, compiled.outputs, strict=True):
                collected.append(results[output].copy())
            bar.update(len(batch))
    return [np.concatenate(collected).astype(np.float32) for collected in outputs] if len(images) else []


def infer_logits(compiled: ov.CompiledModel, images: np.ndarray, batch_size: int = 100,
                 show_progress: bool = False, desc: str = "infer", batch_seconds: list | None = None) -> np.ndarray:
    """Logits (the first output) for uint8 NHWC images; see ``infer_outputs``."""
    outputs = infer_outputs(compiled, images, batch_size, show_progress, desc, batch_seconds)
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
