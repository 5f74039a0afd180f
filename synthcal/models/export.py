"""Every model kind → one FP32 OpenVINO IR with the raw-pixel input baked in, gated by a parity check
against a second implementation (PyTorch, onnxruntime) on real test images where one exists.

The tolerance is relative to the logits' scale: max |Δlogit| ≤ ``parity_tolerance`` × max(1, max |reference logit|),
so 1,000 ImageNet logits of magnitude 10–20 get the same relative margin as 10 CIFAR-10 logits. Where the two
disagree, further runtimes (a kind's ``second_opinions``) are asked, and the error names every pair's difference."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov

from synthcal.inference import compile_model, infer_logits
from synthcal.io import file_digest, write_json
from synthcal.models import ModelSpec, model_spec
from synthcal.models.preprocessing import bake_into_ir, resize_images


class ParityError(RuntimeError):
    """OpenVINO's logits differ from the reference implementation's by more than the tolerance."""


def parity_within(reference: np.ndarray, other: np.ndarray, tolerance: float = 1e-3) -> dict:
    """Max |Δlogit| of ``other`` against ``reference`` and whether it is within ``tolerance`` × the logits' scale,
    max(1, max |reference logit|)."""
    scale = max(1.0, float(np.abs(reference).max())) if reference.size else 1.0
    max_abs_diff = float(np.abs(reference - other).max()) if reference.size else 0.0
    return {"max_abs_diff": max_abs_diff, "logit_scale": scale, "allowed": tolerance * scale,
            "ok": bool(max_abs_diff <= tolerance * scale),
            "top1_match": float((reference.argmax(1) == other.argmax(1)).mean()) if reference.size else 1.0}


def _disagreement(opinions: dict[str, np.ndarray], tolerance: float) -> str:
    """Every pair of runtimes: max |Δlogit| and whether they agree; the runtime(s) that agree with no other named."""
    names = list(opinions)
    pairs, agrees = [], {name: [] for name in names}
    for index, first in enumerate(names):
        for second in names[index + 1:]:
            check = parity_within(opinions[first], opinions[second], tolerance)
            pairs.append(f"{first} vs {second}: {check['max_abs_diff']:.3g} "
                         f"({'agree' if check['ok'] else 'differ'}, top-1 equal on {check['top1_match']:.0%})")
            if check["ok"]:
                agrees[first].append(second)
                agrees[second].append(first)
    alone = [name for name in names if not agrees[name]]
    verdict = ""
    if len(names) > 2 and len(alone) == 1:
        verdict = f"; {alone[0]} is the odd one out, the others agree with each other"
    elif len(names) > 2 and not any(agrees.values()):
        verdict = "; no two runtimes agree"
    return "; ".join(pairs) + verdict


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
    images = resize_images(parity_images, spec.input.size, spec.input.resize)
    options["parity_images"] = images
    reference_name = getattr(spec.module, "REFERENCE", "pytorch")
    with tempfile.TemporaryDirectory() as workdir:
        if hasattr(spec.module, "openvino_candidates"):
            candidates = spec.module.openvino_candidates(spec, network_files, workdir, options)
        else:
            candidates = [(None, spec.module.to_openvino(spec, network_files, workdir, options), -1, {})]
        started = time.perf_counter()
        reference, tried = None, []
        for index, (how, network, batch, _) in enumerate(candidates):
            last = index == len(candidates) - 1
            _check_outputs(spec, network)
            try:
                save_ir(bake_into_ir(network, spec.input, batch=batch), xml_path)
                openvino = infer_logits(compile_model(xml_path, "f32"), images)
            except RuntimeError as error:  # a shape OpenVINO's reshape gets wrong fails there or at inference
                if last:
                    raise
                tried.append(f"{how}: failed ({' '.join(str(error).split())[-160:]})")
                continue
            if reference is None:
                reference = spec.module.reference_logits(spec, network_files, images, options)
            if reference is None or last or (check := parity_within(reference, openvino, tolerance))["ok"]:
                break
            tried.append(f"{how}: max |Δlogit| = {check['max_abs_diff']:.3g} against {reference_name}")
        if how is not None:
            options["network"].update({"batch_axis": how, "ir_batch": batch if batch > 0 else None,
                                       **candidates[index][3]})
            if tried:
                options["network"]["tried_before"] = tried
            if how != "freed in a converted copy":
                options.pop("batch_free_onnx", None)
    if classes is not None and openvino.shape[1] != len(classes):
        _remove_ir(xml_path)
        raise ValueError(f"{spec.key} has {openvino.shape[1]} outputs but the dataset has {len(classes)} classes "
                         f"({', '.join(classes)})")
    gate_seconds = time.perf_counter() - started  # both runtimes on the parity images
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
    if options.get("network"):
        info["network"] = options["network"]
    for name, logits in ((reference_name, reference), ("OpenVINO", openvino)):
        broken = ~np.isfinite(logits).all(axis=1) if logits is not None and logits.size else np.zeros(0, bool)
        if broken.any():
            _remove_ir(xml_path)
            raise ParityError(f"{spec.key}: the network's {name} logits are NaN or infinite on {int(broken.sum())} of "
                              f"{len(broken)} test images (NaN or infinite weights?); refusing to export it")
    if reference is None:
        info["parity"] = {"images": 0, "reference": None,
                          "note": f"kind {spec.kind} has no second implementation to compare with"}
    else:
        compared = len(reference)
        check = parity_within(reference, openvino[:compared], tolerance)
        info["parity"] = {"images": compared, "reference": reference_name, "max_abs_diff": check["max_abs_diff"],
                          "tolerance": tolerance, "logit_scale": check["logit_scale"], "allowed": check["allowed"],
                          "precision_hint": "f32", "top1_match": check["top1_match"], "seconds": round(gate_seconds, 3)}
        if not check["ok"]:
            _remove_ir(xml_path)
            opinions = {"OpenVINO": openvino[:compared], reference_name: reference}
            if hasattr(spec.module, "second_opinions"):
                opinions.update(spec.module.second_opinions(spec, network_files, images[:compared], options))
            raise ParityError(f"{spec.key}: OpenVINO vs {reference_name} max |Δlogit| = {check['max_abs_diff']:.3g} > "
                              f"{check['allowed']:.3g} (export.parity_tolerance {tolerance} × logit scale "
                              f"{check['logit_scale']:.3g}) on {compared} test images; "
                              f"{_disagreement(opinions, tolerance)}"
                              + (f"; IRs tried before this one: {'; '.join(tried)}" if tried else ""))
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
    test = load_image_set(inputs.test, stream=True)  # only the first images are read
    info_files = paths_of(inputs.network_info) if "network_info" in inputs.keys() else []
    network_info = read_json(info_files[0]) if info_files else None
    return export_model(
        spec, paths_of(inputs.network), outputs.xml, outputs.info,
        parity_images=test.images[: int(options.get("parity_images", 64))], opset=int(options.get("opset", 11)),
        deploy_repvgg=bool(options.get("deploy_repvgg", True)),
        tolerance=float(options.get("parity_tolerance", 1e-3)), network_info=network_info,
        classes=test.provenance.get("classes"),
    )
