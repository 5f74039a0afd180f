"""Kind ``onnx``: an ONNX file (local ``path`` or ``url`` + ``sha256``), converted by OpenVINO; the parity
gate compares OpenVINO with ``onnx.reference`` on a few images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import openvino as ov

from synthcal.models import ModelConfigError, ModelSpec
from synthcal.models.preprocessing import InputSpec

CONFIG_KEYS = frozenset({"path", "url", "sha256", "input"})
NETWORK_SUFFIX = "onnx"
HAS_TORCH = False
REFERENCE_IMAGES = 8  # onnx.reference is slow: the parity gate uses this many images


def _static(dim) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def graph_shapes(path) -> tuple[list[int | None], list[int | None]]:
    """(input dims, output dims) of the single-input graph; None where a dimension is dynamic."""
    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"{path} has {len(inputs)} inputs; synthcal needs one image input")
    dims = [_static(d) for d in inputs[0].type.tensor_type.shape.dim]
    out_dims = [_static(d) for d in model.graph.output[0].type.tensor_type.shape.dim]
    return dims, out_dims


def resolve(name: str, entry: dict) -> ModelSpec:
    from synthcal.models.pytorch import check_source

    key = f"models.{name}"
    check_source(entry, key)
    spec_input = InputSpec.from_config(entry.get("input"), f"{key}.input")
    num_outputs = None
    if entry.get("path"):
        try:
            dims, out_dims = graph_shapes(Path(entry["path"]).expanduser())
        except Exception as error:  # protobuf decode errors, missing files, bad graphs
            raise ModelConfigError(f"{key}.path: not a readable ONNX model ({error})") from error
        if len(dims) != 4:
            raise ModelConfigError(f"{key}: the ONNX input has shape {dims}; expected NCHW images")
        if spec_input.size is None:
            if None in dims[2:]:
                raise ModelConfigError(f"{key}.input.size is not set and the ONNX input's spatial size is dynamic "
                                       f"({dims}); set input.size: [height, width]")
            spec_input = spec_input.with_size(dims[2:])
        elif None not in dims[2:] and tuple(dims[2:]) != spec_input.size:
            raise ModelConfigError(f"{key}.input.size {list(spec_input.size)} differs from the ONNX input's "
                                   f"fixed size {dims[2:]}")
        num_outputs = out_dims[1] if len(out_dims) == 2 else None
    elif spec_input.size is None:
        raise ModelConfigError(f"{key}.input.size is not set (the file is downloaded at run time)")
    return ModelSpec(name, "onnx", entry, spec_input, num_outputs)


def local_files(spec: ModelSpec) -> list[str]:
    return [spec.entry["path"]] if spec.entry.get("path") else []


def fetch(spec: ModelSpec, cache_dir, out_path, seed: int = 0) -> dict:
    from synthcal.models.pytorch import copy_file, resolve_file

    local, provenance = resolve_file(spec.entry, cache_dir, spec.key)
    try:
        onnx.checker.check_model(str(local))
    except Exception as error:
        raise ModelConfigError(f"{spec.key}: {local} is not a valid ONNX model ({error})") from error
    copy_file(local, out_path)
    return {"model": spec.name, "kind": "onnx", "source": "url" if spec.entry.get("url") else "path",
            "untrained": False, **provenance}


def to_openvino(spec: ModelSpec, network_files: list[str], workdir, options: dict) -> ov.Model:
    return ov.convert_model(str(network_files[0]))


def reference_logits(spec: ModelSpec, network_files: list[str], images: np.ndarray, options: dict) -> np.ndarray:
    """``onnx.reference`` on the same images, preprocessed by the PyTorch twin of the IR's preprocessing."""
    import torch
    from onnx.reference import ReferenceEvaluator

    from synthcal.inference import to_model_input
    from synthcal.models.raw_pixels import RawPixelClassifier

    images = images[:REFERENCE_IMAGES]
    evaluator = ReferenceEvaluator(str(network_files[0]))
    input_name = evaluator.input_names[0]
    preprocess = RawPixelClassifier(torch.nn.Identity(), spec.input).preprocess
    with torch.no_grad():
        network_input = preprocess(torch.from_numpy(to_model_input(images))).numpy()
    return np.concatenate([evaluator.run(None, {input_name: network_input[i:i + 1]})[0]
                           for i in range(len(network_input))])
