"""Kind ``openvino``: an OpenVINO IR (``path`` to the .xml, its .bin beside it), read in place. There is no
second implementation to compare with, so no parity gate (recorded as such)."""

from __future__ import annotations

from pathlib import Path

import openvino as ov

from synthcal.models import ModelConfigError, ModelSpec
from synthcal.models.preprocessing import InputSpec

CONFIG_KEYS = frozenset({"path", "input"})
NETWORK_SUFFIX = None
HAS_TORCH = False


def _files(entry: dict, key: str) -> tuple[Path, Path]:
    xml = Path(entry.get("path") or "").expanduser()
    if not entry.get("path") or xml.suffix != ".xml" or not xml.is_file():
        raise ModelConfigError(f"{key}.path {entry.get('path')!r} is not an existing .xml file")
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise ModelConfigError(f"{key}.path: {weights} (the IR's weights) does not exist")
    return xml, weights


def resolve(name: str, entry: dict) -> ModelSpec:
    key = f"models.{name}"
    xml, _ = _files(entry, key)
    spec_input = InputSpec.from_config(entry.get("input"), f"{key}.input")
    model = ov.Core().read_model(str(xml))
    if len(model.inputs) != 1:
        raise ModelConfigError(f"{key}: the IR has {len(model.inputs)} inputs; synthcal needs one image input")
    shape = model.input(0).get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        raise ModelConfigError(f"{key}: the IR's input has shape {shape}; expected NCHW images")
    spatial = [shape[i].get_length() if shape[i].is_static else None for i in (2, 3)]
    if spec_input.size is None:
        if None in spatial:
            raise ModelConfigError(f"{key}.input.size is not set and the IR's spatial size is dynamic ({shape})")
        spec_input = spec_input.with_size(spatial)
    out_shape = model.output(0).get_partial_shape()
    num_outputs = out_shape[1].get_length() if out_shape.rank.is_static and out_shape.rank.get_length() == 2 \
        and out_shape[1].is_static else None
    return ModelSpec(name, "openvino", entry, spec_input, num_outputs)


def local_files(spec: ModelSpec) -> list[str]:
    return [str(path) for path in _files(spec.entry, spec.key)]


def to_openvino(spec: ModelSpec, network_files: list[str], workdir, options: dict) -> ov.Model:
    return ov.Core().read_model(str(network_files[0]))


def reference_logits(spec: ModelSpec, network_files: list[str], images, options: dict):
    return None
