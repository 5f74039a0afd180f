"""Kind ``onnx``: an ONNX file (local ``path`` or ``url`` + ``sha256``), converted by OpenVINO; the parity gate
compares OpenVINO with onnxruntime (CPU provider) on the same test images. Data-free sets invert the PyTorch network
``onnx2torch`` makes of it, which needs BatchNormalization nodes (many exports fold them into the convolutions).

A graph whose batch is fixed (``torch.onnx.export``'s default: 1, Reshape nodes hard-coding it) is used through a
converted copy with a free batch axis (``onnx_tools.free_batch``), proven by parity against onnxruntime running the
original file one batch of its own size at a time: before the IR is made of it (then again by the export's gate),
and for the PyTorch network a data-free set inverts. Where no copy passes, the export tries OpenVINO's own reshape
of the original, then keeps the batch of 1 in the IR (``openvino_candidates``); data-free sets are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import openvino as ov

from synthcal.models import ModelConfigError, ModelSpec
from synthcal.models.onnx_tools import (
    BatchAxisError,
    dims,
    dynamic_axes_hint,
    fixed_batch,
    free_batch,
    has_external_data,
    image_input,
    load_checked,
    one_line,
    onnxruntime_logits,
)
from synthcal.models.preprocessing import InputSpec

CONFIG_KEYS = frozenset({"path", "url", "sha256", "input"})
NETWORK_SUFFIX = "onnx"
HAS_TORCH = True  # via onnx2torch, where the graph still holds BatchNormalization nodes
REFERENCE = "onnxruntime"
NO_BATCHNORM = ("and this ONNX has no BatchNorm statistics (no BatchNormalization node: the export folded them into "
                "the convolutions), so there is nothing to invert; export it with do_constant_folding=False, or give "
                "the model as kind torch")
BATCH_PROOF_IMAGES = 4  # random images on which a batch-freed PyTorch network must match onnxruntime


def _refusal(model: onnx.ModelProto, reason: str) -> str:
    batch = fixed_batch(model)
    return (f"is kind onnx and its input {image_input(model).name!r} has a fixed batch of {batch} that synthcal "
            f"cannot free ({reason}); {dynamic_axes_hint(model)}, or give the model as kind torch")


def random_images(spec_input: InputSpec, count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *spec_input.size, 3), dtype=np.uint8)


def batch_free_copy(model: onnx.ModelProto, inputs: np.ndarray) -> tuple[onnx.ModelProto, dict]:
    """``free_batch``'s copy, proven: onnxruntime on the copy in one batch of ``inputs`` (network input) gives what
    it gives on the original one fixed batch at a time, within ``parity_within``'s tolerance. Returns (copy, what was
    done and measured); raises ``BatchAxisError`` where the batch cannot be freed or the copy computes something else (a
    Reshape whose target the graph computes, e.g. from Shape, can fold the batch into another axis)."""
    from synthcal.models.export import parity_within

    freed, changed = free_batch(model)
    expected = onnxruntime_logits(model, inputs)
    try:
        check = parity_within(expected, onnxruntime_logits(freed, inputs))
    except Exception as error:  # noqa: BLE001 - onnxruntime's own error types: a shape the batch breaks
        raise BatchAxisError(f"with {len(changed)} Reshape node(s) changed, onnxruntime fails on the copy with a free "
                             f"batch, {len(inputs)} images in one batch: {one_line(error)[:300]}") from error
    proof = {"reshapes_changed": changed, "images": len(inputs), "max_abs_diff": check["max_abs_diff"],
             "top1_match": check["top1_match"]}
    if not check["ok"]:
        raise BatchAxisError(f"with {len(changed)} Reshape node(s) changed, the copy with a free batch computes "
                             f"something else: onnxruntime on it differs from the original by max |Δlogit| = "
                             f"{check['max_abs_diff']:.3g} on {len(inputs)} images in one batch")
    return freed, proof


def fixed_batch_problem(model: onnx.ModelProto, spec_input: InputSpec | None = None) -> str | None:
    """Why the graph's fixed batch cannot be freed (data-free sets invert batches), or None. With ``spec_input``
    (and the model's tensors loaded) the copy is also proven on random images, not only analysed."""
    batch = fixed_batch(model)
    if batch is None:
        return None
    try:
        if spec_input is None:
            free_batch(model)
        else:
            count = batch * max(2, -(-BATCH_PROOF_IMAGES // batch))  # whole fixed batches, at least two in one
            batch_free_copy(model, network_input(spec_input, random_images(spec_input, count)))
    except BatchAxisError as error:
        return _refusal(model, str(error))
    return None


def resolve(name: str, entry: dict) -> ModelSpec:
    from synthcal.models.pytorch import check_source

    key = f"models.{name}"
    check_source(entry, key)
    spec_input = InputSpec.from_config(entry.get("input"), f"{key}.input")
    num_outputs = None
    model = None
    if entry.get("path"):
        path = Path(entry["path"]).expanduser()
        model = load_checked(path, f"{key}.path")
        try:
            graph_input = image_input(model)
        except ValueError as error:
            raise ModelConfigError(f"{key}.path: {path}: {error}") from error
        shape, out_dims = dims(graph_input), dims(model.graph.output[0])
        if len(shape) != 4:
            raise ModelConfigError(f"{key}.path: {path}: the input {graph_input.name!r} has shape {shape}; expected "
                                   "NCHW images")
        if shape[1] is not None and shape[1] != 3:
            raise ModelConfigError(f"{key}.path: {path}: the input {graph_input.name!r} takes {shape[1]} channel(s) "
                                   f"(shape {shape}); synthcal feeds RGB images, 3 channels")
        if spec_input.size is None:
            if None in shape[2:]:
                raise ModelConfigError(f"{key}.input.size is not set and the input {graph_input.name!r} of {path} has "
                                       f"a dynamic spatial size ({shape}); set input.size: [height, width]")
            spec_input = spec_input.with_size(shape[2:])
        elif None not in shape[2:] and tuple(shape[2:]) != spec_input.size:
            raise ModelConfigError(f"{key}.input.size {list(spec_input.size)} differs from the fixed size {shape[2:]} "
                                   f"of the input {graph_input.name!r} of {path}")
        num_outputs = out_dims[1] if len(out_dims) == 2 else None
    elif spec_input.size is None:
        raise ModelConfigError(f"{key}.input.size is not set (the file is downloaded at run time)")
    spec = ModelSpec(name, "onnx", entry, spec_input, num_outputs)
    if model is not None:
        if not batchnorm_nodes(model):
            spec.no_torch_reason = f"is kind onnx {NO_BATCHNORM}"
        elif fixed_batch(model) is not None:  # asked only where a data-free set needs it: runs onnxruntime
            path = Path(entry["path"]).expanduser()
            spec.torch_check = lambda: fixed_batch_problem(onnx.load(str(path)), spec.input)
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


def network_input(spec_input: InputSpec, images: np.ndarray) -> np.ndarray:
    """uint8 NHWC images → what the ONNX graph takes: the IR's baked-in preprocessing, (pixels / scale - mean) / std
    in float32 after a channel swap for BGR (``RawPixelClassifier.preprocess`` in NumPy)."""
    from synthcal.inference import to_model_input

    pixels = to_model_input(images)
    if spec_input.channels == "BGR":
        pixels = pixels[:, ::-1]
    mean = np.asarray(spec_input.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec_input.std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((pixels / np.float32(spec_input.scale) - mean) / std, dtype=np.float32)


def _convert(spec: ModelSpec, model: onnx.ModelProto):
    try:
        onnx2torch = _import_onnx2torch()
    except ImportError as error:
        raise ModelConfigError(f"{spec.key}: data-free sets of ONNX models need onnx2torch ({error}); install it with "
                               "pip install --no-deps -r requirements-nodeps.txt") from error
    try:
        return onnx2torch.convert(_identity_initializers_inlined(model))
    except NotImplementedError as error:
        raise ModelConfigError(f"{spec.key}: onnx2torch cannot convert this ONNX ({error})") from error


def torch_network(spec: ModelSpec, network_file, proof_images: int = BATCH_PROOF_IMAGES):
    """The ONNX graph as a PyTorch module (onnx2torch), for data-free inversion of its BatchNorm statistics. A fixed
    batch is freed first (``batch_free_copy``), and the converted network, run on one batch of random images, must
    give onnxruntime's logits of the original file (one fixed batch at a time) within ``parity_within``'s tolerance."""
    import torch

    from synthcal.models.export import parity_within

    model = onnx.load(str(network_file))
    if not batchnorm_nodes(model):
        raise ModelConfigError(f"{spec.key} {NO_BATCHNORM}")
    batch = fixed_batch(model)
    if batch is None:
        return _convert(spec, model)
    count = batch * max(2, -(-proof_images // batch))  # whole fixed batches, at least two in one batch
    inputs = network_input(spec.input, random_images(spec.input, count))
    try:
        freed, proof = batch_free_copy(model, inputs)
    except BatchAxisError as error:
        raise ModelConfigError(f"{spec.key} {_refusal(model, str(error))}") from error
    network = _convert(spec, freed).eval()
    with torch.no_grad():
        check = parity_within(onnxruntime_logits(model, inputs), network(torch.from_numpy(inputs)).numpy())
    if not check["ok"]:
        raise ModelConfigError(f"{spec.key} " + _refusal(
            model, f"onnx2torch's network of the copy with a free batch differs from onnxruntime on the original by "
                   f"max |Δlogit| = {check['max_abs_diff']:.3g} on {count} images in one batch"))
    network.batch_freed = {"fixed_batch": batch, **proof, "max_abs_diff_pytorch_vs_onnxruntime": check["max_abs_diff"]}
    return network


def local_files(spec: ModelSpec) -> list[str]:
    return [spec.entry["path"]] if spec.entry.get("path") else []


def fetch(spec: ModelSpec, cache_dir, out_path, seed: int = 0) -> dict:
    """The file at ``out_path``, checked; one with external data (which must lie in its folder) is saved with its
    tensors inside, so that the copy stands alone."""
    from synthcal.io import atomic_path
    from synthcal.models.pytorch import copy_file, resolve_file

    local, provenance = resolve_file(spec.entry, cache_dir, spec.key)
    graph = load_checked(local, f"{spec.key}.path")
    if has_external_data(graph):
        model = onnx.load(str(local))
        if model.ByteSize() >= 2**31:
            raise ModelConfigError(f"{spec.key}.path: {local} holds {model.ByteSize() / 2**30:.1f} GiB of tensors; "
                                   "synthcal copies ONNX models into one file, which protobuf caps at 2 GiB")
        with atomic_path(out_path) as tmp:
            onnx.save(model, str(tmp))
        provenance["external_data"] = "copied into the file"
    else:
        copy_file(local, out_path)
    return {"model": spec.name, "kind": "onnx", "source": "url" if spec.entry.get("url") else "path",
            "untrained": False, **provenance}


def openvino_candidates(spec: ModelSpec, network_files: list[str], workdir, options: dict) -> list[tuple]:
    """OpenVINO models to try in turn, each ``(how the batch axis is handled, ov.Model, IR batch (-1: free), notes)``;
    the export keeps the first whose IR passes the parity gate against onnxruntime on the original file. A graph
    with a fixed batch: the proven batch-free copy (``batch_free_copy`` on the parity images), OpenVINO's own reshape
    of the original, and, for a batch of 1, the original at batch 1 (fed batch-1 requests in parallel)."""
    path = str(network_files[0])
    model = onnx.load(path)
    batch = fixed_batch(model)
    if batch is None:
        return [(None, ov.convert_model(path), -1, {})]
    options["network"] = {"input": image_input(model).name, "fixed_batch": batch}
    candidates = []
    images = options.get("parity_images")
    if images is not None:
        count = len(images) // batch * batch
        try:
            freed, proof = batch_free_copy(model, network_input(spec.input, images[:count]))
            freed_path = Path(workdir) / "batch_free.onnx"
            onnx.save(freed, str(freed_path))
            options["batch_free_onnx"] = freed
            candidates.append(("freed in a converted copy", ov.convert_model(str(freed_path)), -1,
                               {"reshapes_changed": proof.pop("reshapes_changed"),
                                "onnxruntime_copy_vs_original": proof}))
        except BatchAxisError as error:
            options["network"]["batch_free_copy"] = f"not used: {one_line(error)}"
    original = ov.convert_model(path)
    candidates.append(("OpenVINO's own reshape of the original", original.clone() if batch == 1 else original, -1, {}))
    if batch == 1:
        candidates.append(("fixed at 1 in the IR: batch-1 requests run in parallel (OpenVINO's throughput streams)",
                           original, 1, {}))
    return candidates


def to_openvino(spec: ModelSpec, network_files: list[str], workdir, options: dict) -> ov.Model:
    """The first of ``openvino_candidates``."""
    return openvino_candidates(spec, network_files, workdir, options)[0][1]


def reference_logits(spec: ModelSpec, network_files: list[str], images: np.ndarray, options: dict) -> np.ndarray:
    """onnxruntime (CPU provider) on the original file and the same images, preprocessed as the IR preprocesses
    them; a graph with a fixed batch runs that many images at a time."""
    return onnxruntime_logits(str(network_files[0]), network_input(spec.input, images))


def second_opinions(spec: ModelSpec, network_files: list[str], images: np.ndarray, options: dict) -> dict:
    """Other runtimes on the same images, asked where OpenVINO and onnxruntime disagree: onnxruntime on the batch-freed
    copy (batched), and the PyTorch network onnx2torch makes of the graph."""
    import torch

    inputs = network_input(spec.input, images)
    opinions = {}
    freed = options.get("batch_free_onnx")
    if freed is not None:
        opinions["onnxruntime (batch-freed copy)"] = onnxruntime_logits(freed, inputs)
    try:
        model = freed if freed is not None else onnx.load(str(network_files[0]))
        step = (fixed_batch(model) or len(inputs)) if len(inputs) else 1  # the original: its own batch at a time
        network = _convert(spec, model).eval()
        with torch.no_grad():
            opinions["PyTorch (onnx2torch)"] = np.concatenate(
                [network(torch.from_numpy(inputs[start:start + step])).numpy()
                 for start in range(0, len(inputs), step)])
    except Exception:  # noqa: BLE001 - a second opinion is optional: onnx2torch may lack a converter
        pass
    return opinions
