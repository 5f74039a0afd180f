"""PyTorch → ONNX → OpenVINO IR with a parity gate on real test images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from synthcal.inference import compile_model, infer_logits, to_model_input
from synthcal.io import atomic_path, write_json
from synthcal.zoo import NormalizedClassifier, build_model, load_state_dict_file, reparameterize_repvgg


class ParityError(RuntimeError):
    """OpenVINO's logits differ from PyTorch's by more than the tolerance."""


def load_classifier(model_name: str, weights_path: str | os.PathLike, deploy_repvgg: bool = False) -> torch.nn.Module:
    """The FP32 PyTorch classifier with normalisation built in (input: raw pixels in [0, 255], NCHW).

    ``deploy_repvgg`` folds RepVGG branches into single convs; other models ignore it.
    """
    model = build_model(model_name)
    model.load_state_dict(load_state_dict_file(weights_path), strict=True)
    model.eval()
    if deploy_repvgg and model_name.startswith("repvgg"):
        model = reparameterize_repvgg(model)
    return NormalizedClassifier(model).eval()


def torch_logits(model: torch.nn.Module, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([
            model(torch.from_numpy(to_model_input(images[start:start + batch_size]))).numpy()
            for start in range(0, len(images), batch_size)
        ])


def export_model(model_name: str, weights_path: str | os.PathLike, xml_path: str | os.PathLike,
                 onnx_path: str | os.PathLike, info_path: str | os.PathLike, parity_images: np.ndarray,
                 opset: int = 11, deploy_repvgg: bool = False, tolerance: float = 1e-3,
                 weights_info: dict | None = None) -> dict:
    """Export to ONNX and OpenVINO IR (dynamic batch); fail when the parity gate fails."""
    torch.manual_seed(0)
    model = load_classifier(model_name, weights_path, deploy_repvgg)
    example = torch.from_numpy(to_model_input(parity_images[:2]))
    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    with atomic_path(onnx_path) as tmp_onnx:
        torch.onnx.export(model, (example,), str(tmp_onnx), opset_version=opset, dynamo=False,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        ov_model = ov.convert_model(str(tmp_onnx))
    ov_model.reshape({0: ov.PartialShape([-1, 3, 32, 32])})
    save_ir(ov_model, xml_path)

    reference = torch_logits(model, parity_images)
    openvino = infer_logits(compile_model(xml_path, "f32"), parity_images)
    max_abs_diff = float(np.abs(reference - openvino).max())
    same_top1 = float((reference.argmax(1) == openvino.argmax(1)).mean())
    info = {
        "model": model_name, "opset": opset, "onnx": str(onnx_path),
        "deploy_repvgg": deploy_repvgg and model_name.startswith("repvgg"),
        "ir": str(xml_path), "openvino_version": ov.get_version(), "torch_version": torch.__version__,
        "parity": {"images": len(parity_images), "max_abs_diff": max_abs_diff, "tolerance": tolerance,
                   "top1_match": same_top1, "precision_hint": "f32"},
        "untrained": bool((weights_info or {}).get("untrained", False)),
        "weights": weights_info or {},
    }
    if not max_abs_diff <= tolerance:
        for path in (xml_path, xml_path.with_suffix(".bin"), onnx_path):
            path.unlink(missing_ok=True)
        raise ParityError(f"{model_name}: OpenVINO vs PyTorch max |Δlogit| = {max_abs_diff:.3g} > {tolerance}")
    write_json(info_path, info)
    return info


def save_ir(model: ov.Model, xml_path: str | os.PathLike) -> None:
    """Save an IR (.xml + .bin) so that neither file is ever seen half-written."""
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_xml = xml_path.with_name(f".{xml_path.stem}.part.xml")
    ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
    os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
    os.replace(tmp_xml, xml_path)


def export_from_files(model_name: str, inputs, outputs, options: dict) -> dict:
    """Workflow entry: weights + test split in, ONNX + IR + export.json out."""
    from synthcal.io import load_image_set, read_json

    test = load_image_set(inputs.test)
    return export_model(
        model_name, inputs.weights, outputs.xml, outputs.onnx, outputs.info,
        parity_images=test.images[: int(options.get("parity_images", 64))], opset=int(options.get("opset", 11)),
        deploy_repvgg=bool(options.get("deploy_repvgg", True)),
        tolerance=float(options.get("parity_tolerance", 1e-3)), weights_info=read_json(inputs.weights_info),
    )
