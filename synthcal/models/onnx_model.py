"""Kind ``onnx``: an ONNX file (local ``path`` or ``url`` + ``sha256``), converted by OpenVINO; the parity
gate compares OpenVINO with ``onnx.reference`` on a few images. Data-free sets invert the PyTorch network
``onnx2torch`` makes of it, which needs BatchNormalization nodes (many exports fold them into the convolutions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import openvino as ov

from synthcal.models import ModelConfigError, ModelSpec
from synthcal.models.preprocessing import InputSpec

CONFIG_KEYS = frozenset({"path", "url", "sha256", "input"})
NETWORK_SUFFIX = "onnx"
HAS_TORCH = True  # via onnx2torch, where the graph still holds BatchNormalization nodes
NO_BATCHNORM = ("and this ONNX has no BatchNorm statistics (no BatchNormalization node: the export folded them into "
                "the convolutions), so there is nothing to invert; export it with do_constant_folding=False, or give "
                "the model as kind torch")
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
    spec = ModelSpec(name, "onnx", entry, spec_input, num_outputs)
    if entry.get("path") and not batchnorm_nodes(onnx.load(str(Path(entry["path"]).expanduser()))):
        spec.no_torch_reason = f"is kind onnx {NO_BATCHNORM}"
    return spec


def batchnorm_nodes(model: onnx.ModelProto) -> int:
    return sum(node.op_type == "BatchNormalization" for node in model.graph.node)


def _identity_initializers_inlined(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with Identity nodes of initializers removed (their users read the initializer): the exporter
    shares equal tensors that way, and onnx2torch makes an nn.BatchNorm2d only of constant initializer inputs."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    outputs = {value.name for value in graph.output}
    alias = {node.output[0]: node.input[0] for node in graph.node
             if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs}
    if not alias:
        return model
    kept = [node for node in graph.node if not (node.op_type == "Identity" and node.output[0] in alias)]
    for node in kept:
        for index, name in enumerate(node.input):
            if name in alias:
                node.input[index] = alias[name]
    del graph.node[:]
    graph.node.extend(kept)
    return model


def _import_onnx2torch():
    """onnx2torch, whose NMS and RoIAlign converters import torchvision at import time. torchvision's wheels are
    built for one torch release each and are not installed here; when it is missing, a placeholder module stands in
    for that import only and is removed again: a classifier with those detection ops fails at conversion."""
    import sys
    import types

    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    try:
        import torchvision  # noqa: F401
    except ImportError:
        placeholder, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")

        def unavailable(*args, **kwargs):
            raise NotImplementedError("torchvision is not installed: NMS/RoIAlign ONNX nodes cannot run here")

        placeholder.ops = ops
        ops.nms = ops.roi_align = ops.box_convert = unavailable
        sys.modules.update({"torchvision": placeholder, "torchvision.ops": ops})
        try:
            import onnx2torch
        finally:
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]
        return onnx2torch
    import onnx2torch

    return onnx2torch


def torch_network(spec: ModelSpec, network_file):
    """The ONNX graph as a PyTorch module (onnx2torch), for data-free inversion of its BatchNorm statistics."""
    model = onnx.load(str(network_file))
    if not batchnorm_nodes(model):
        raise ModelConfigError(f"{spec.key} {NO_BATCHNORM}")
    try:
        onnx2torch = _import_onnx2torch()
    except ImportError as error:
        raise ModelConfigError(f"{spec.key}: data-free sets of ONNX models need onnx2torch ({error}); install it with "
                               "pip install --no-deps -r requirements-nodeps.txt") from error
    try:
        return onnx2torch.convert(_identity_initializers_inlined(model))
    except NotImplementedError as error:
        raise ModelConfigError(f"{spec.key}: onnx2torch cannot convert this ONNX ({error})") from error


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
