"""Every model kind → one FP32 OpenVINO IR with the raw-pixel input baked in, gated by a parity check
against a second implementation (PyTorch, ``onnx.reference``) on real test images where one exists."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov

from synthcal.inference import compile_model, infer_logits
from synthcal.io import file_digest, write_json
from synthcal.models import ModelSpec, model_spec
from synthcal.models.preprocessing import bake_into_ir, resize_images


class ParityError(RuntimeError):
    """OpenVINO's logits differ from the reference implementation's by more than the tolerance."""


def save_ir(model: ov.Model, xml_path: str | os.PathLike) -> None:
    """Save an IR (.xml + .bin) so that neither file is ever seen half-written."""
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_xml = xml_path.with_name(f".{xml_path.stem}.part.xml")
    ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
    os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
    os.replace(tmp_xml, xml_path)


def fetch_network(spec: ModelSpec, cache_dir, out_path, info_path, seed: int = 0) -> dict:
    """The model's network file (state_dict or ONNX), verified, at ``out_path``; provenance at ``info_path``."""
    provenance = spec.module.fetch(spec, cache_dir, out_path, seed)
    provenance["model_spec"] = spec.record()
    write_json(info_path, provenance)
    return provenance


def export_model(spec: ModelSpec, network_files: list[str], xml_path, info_path, parity_images: np.ndarray, *,
                 opset: int = 11, deploy_repvgg: bool = True, tolerance: float = 1e-3,
                 network_info: dict | None = None, classes: list[str] | None = None) -> dict:
    """Write the FP32 IR (dynamic batch, raw pixels in) and ``export.json``; fail when the parity gate fails."""
    xml_path = Path(xml_path)
    options = {"opset": opset, "deploy_repvgg": deploy_repvgg}
    with tempfile.TemporaryDirectory() as workdir:
        network = spec.module.to_openvino(spec, network_files, workdir, options)
        _check_outputs(spec, network)
        save_ir(bake_into_ir(network, spec.input), xml_path)
    images = resize_images(parity_images, spec.input.size, spec.input.resize)
    openvino = infer_logits(compile_model(xml_path, "f32"), images)
    if classes is not None and openvino.shape[1] != len(classes):
        _remove_ir(xml_path)
        raise ValueError(f"{spec.key} has {openvino.shape[1]} outputs but the dataset has {len(classes)} classes "
                         f"({', '.join(classes)})")
    reference = spec.module.reference_logits(spec, network_files, images, options)
    import torch  # here, not at the top: quantize jobs import save_ir and never need torch

    info = {
        "model": spec.name, "kind": spec.kind, "model_spec": spec.record(), "opset": opset,
        "deploy_repvgg": deploy_repvgg and spec.details.get("architecture", "").startswith("repvgg"),
        "ir": str(xml_path), "openvino_version": ov.get_version(), "torch_version": torch.__version__,
        "num_classes": int(openvino.shape[1]),
        "source_files": {str(path): file_digest(path) for path in network_files},
        "untrained": bool((network_info or {}).get("untrained", False)),
        "weights": network_info or {},
    }
    if reference is None:
        info["parity"] = {"images": 0, "reference": None,
                          "note": f"kind {spec.kind} has no second implementation to compare with"}
    else:
        compared = len(reference)
        max_abs_diff = float(np.abs(reference - openvino[:compared]).max())
        info["parity"] = {"images": compared, "reference": "onnx.reference" if spec.kind == "onnx" else "pytorch",
                          "max_abs_diff": max_abs_diff, "tolerance": tolerance, "precision_hint": "f32",
                          "top1_match": float((reference.argmax(1) == openvino[:compared].argmax(1)).mean())}
        if not max_abs_diff <= tolerance:
            _remove_ir(xml_path)
            raise ParityError(f"{spec.key}: OpenVINO vs {info['parity']['reference']} max |Δlogit| = "
                              f"{max_abs_diff:.3g} > {tolerance} (export.parity_tolerance)")
    write_json(info_path, info)
    return info


def _remove_ir(xml_path: Path) -> None:
    """A refused IR leaves nothing behind."""
    for path in (xml_path, xml_path.with_suffix(".bin")):
        path.unlink(missing_ok=True)


def _check_outputs(spec: ModelSpec, network: ov.Model) -> None:
    shape = network.output(0).get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() != 2:
        raise ValueError(f"{spec.key}: the network's output has shape {shape}; expected (N, classes) logits")


def fetch_from_files(name: str, entry: dict, cache_dir, outputs, seed: int = 0) -> dict:
    """Workflow entry of rule fetch_weights."""
    return fetch_network(model_spec(name, entry), cache_dir, outputs.network, outputs.info, seed)


def export_from_files(name: str, entry: dict, inputs, outputs, options: dict) -> dict:
    """Workflow entry: network file(s) + test split in, IR + export.json out."""
    from synthcal.io import load_image_set, paths_of, read_json

    spec = model_spec(name, entry)
    test = load_image_set(inputs.test)
    info_files = paths_of(inputs.network_info) if "network_info" in inputs.keys() else []
    network_info = read_json(info_files[0]) if info_files else None
    return export_model(
        spec, paths_of(inputs.network), outputs.xml, outputs.info,
        parity_images=test.images[: int(options.get("parity_images", 64))], opset=int(options.get("opset", 11)),
        deploy_repvgg=bool(options.get("deploy_repvgg", True)),
        tolerance=float(options.get("parity_tolerance", 1e-3)), network_info=network_info,
        classes=test.provenance.get("classes"),
    )
