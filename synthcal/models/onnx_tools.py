"""ONNX files as users export them: one-line checks before any job, onnxruntime as the parity reference, and a
batch axis freed in a converted copy where the export fixed it (``torch.onnx.export``'s default: batch 1, with
Reshape nodes whose target shape hard-codes that 1)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from synthcal.models import ModelConfigError

BATCH_PARAM = "batch"
ORT_BATCH = 16  # images per onnxruntime call where the batch axis is free


class BatchAxisError(ValueError):
    """The graph fixes its batch somewhere synthcal cannot free; the message says where."""


def one_line(text) -> str:
    return " ".join(str(text).split())


def load_checked(path: Path, key: str) -> onnx.ModelProto:
    """The graph (external tensors not loaded), checked by ``onnx.checker`` on the file, which also refuses external
    data that is missing or lies outside the file's folder. Errors are one line naming ``key`` and the file."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # DecodeError of a truncated file, OSError of a missing one
        raise ModelConfigError(f"{key}: {path} is not a readable ONNX model (truncated, or not ONNX: "
                         f"{one_line(error)})") from error
    try:
        onnx.checker.check_model(str(path))
    except Exception as error:  # ValidationError: bad graph, external data missing or outside the folder
        raise ModelConfigError(f"{key}: {path} is not a valid ONNX model ({one_line(error)})") from error
    return model


def image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"the graph has {len(inputs)} inputs; synthcal needs one image input")
    return inputs[0]


def _static(dim) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [_static(d) for d in value.type.tensor_type.shape.dim]


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The input's batch size where the graph fixes it, else None."""
    shape = dims(image_input(model))
    return shape[0] if shape else None


def has_external_data(model: onnx.ModelProto) -> bool:
    return any(onnx.external_data_helper.uses_external_data(tensor)
               for tensor in onnx.external_data_helper._get_all_tensors(model))


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {}
    for init in graph.initializer:
        if not onnx.external_data_helper.uses_external_data(init) or init.raw_data:
            values[init.name] = numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _depends_on_input(graph: onnx.GraphProto, input_name: str) -> set[str]:
    dependent = {input_name}
    for node in graph.node:  # topologically sorted (the checker asks for it)
        if any(name in dependent for name in node.input):
            dependent.update(node.output)
    return dependent


def free_batch(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` whose batch axis is free: the input's and outputs' first dimension made symbolic, and every
    Reshape of an input-dependent tensor whose constant target shape starts with the fixed batch (and whose input's
    first dimension is that batch, where shape inference knows it) made to copy that dimension instead (ONNX's
    ``0``). Returns (copy, names of the Reshape nodes changed); raises ``BatchAxisError``
    where, after that, shape inference still finds the batch fixed. Whether the copy computes what the original does
    is for a parity check to show (``onnxruntime_logits`` on both)."""
    batch = fixed_batch(model)
    if batch is None:
        return model, []
    freed = copy.deepcopy(model)
    graph = freed.graph
    input_value = image_input(freed)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {value.name: dims(value) for value in
              [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    constants = _constants(graph)
    dependent = _depends_on_input(graph, input_value.name)
    changed = []
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] not in dependent or len(node.input) < 2:
            continue
        if any(attribute.name == "allowzero" and attribute.i == 1 for attribute in node.attribute):
            continue
        target = constants.get(node.input[1])
        data_batch = (shapes.get(node.input[0]) or [None])[0]  # None where shape inference lost it (e.g. after a Pad
        # whose pads the graph computes): the parity proof decides then
        if target is None or target.ndim != 1 or not len(target) or int(target[0]) != batch \
                or data_batch not in (None, batch):
            continue
        new_target = target.copy()
        new_target[0] = 0  # ONNX Reshape: 0 copies the input's dimension
        name = f"{node.input[1]}_batch_free_{len(changed)}"
        graph.initializer.append(numpy_helper.from_array(new_target, name))
        node.input[1] = name
        changed.append(node.name or node.output[0])
    for value in (input_value, *graph.output):
        shape = value.type.tensor_type.shape
        if shape.dim and _static(shape.dim[0]) == batch:
            shape.dim[0].Clear()
            shape.dim[0].dim_param = BATCH_PARAM
    del graph.value_info[:]  # inferred shapes of the fixed batch; OpenVINO and onnxruntime infer them again
    check = onnx.shape_inference.infer_shapes(freed)
    for output in check.graph.output:
        shape = dims(output)
        if shape and shape[0] is not None:
            raise BatchAxisError(f"after freeing {len(changed)} Reshape node(s), output {output.name!r} still has a "
                                 f"fixed batch of {shape[0]} (a node other than Reshape fixes it)")
    return freed, changed


def onnxruntime_session(model: onnx.ModelProto | str | Path, threads: int | None = None):
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # a batch a copy cannot take is an answer here, not a logged error
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = int(threads or len(os.sched_getaffinity(0)))  # the job's cores, not the machine's
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnxruntime_logits(model: onnx.ModelProto | str | Path, network_input: np.ndarray,
                       threads: int | None = None) -> np.ndarray:
    """The first output for float32 NCHW network input (already preprocessed), onnxruntime's CPU provider; where the
    graph fixes its batch, that many images per call (batch-1 graphs: one image at a time)."""
    session = onnxruntime_session(model, threads)
    graph_input = session.get_inputs()[0]
    fixed = graph_input.shape[0] if isinstance(graph_input.shape[0], int) and graph_input.shape[0] > 0 else None
    step = fixed or ORT_BATCH
    outputs = []
    for start in range(0, len(network_input), step):
        chunk = np.ascontiguousarray(network_input[start:start + step], dtype=np.float32)
        if fixed and len(chunk) != fixed:
            raise ValueError(f"{len(network_input)} images do not fill whole batches of the graph's fixed {fixed}")
        outputs.append(session.run([session.get_outputs()[0].name], {graph_input.name: chunk})[0])
    return np.concatenate(outputs).astype(np.float32)


def dynamic_axes_hint(model: onnx.ModelProto) -> str:
    name = image_input(model).name
    return (f"export it with torch.onnx.export(..., input_names=[{name!r}], "
            f"dynamic_axes={{{name!r}: {{0: 'batch'}}}}) to give it a free batch axis")
