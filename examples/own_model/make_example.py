"""Build the "your own model" example files from ../shared's resnet20 checkpoint.

    python examples/own_model/make_example.py [--shared ../shared] [--out examples/own_model/build]

Writes, as a user would have them:
  their.th       {'state_dict': {'module.…': …}, 'best_prec1': …, 'epoch': …} for their_resnet.resnet20,
                 re-keyed from the zoo checkpoint; the first conv absorbs the switch from CIFAR-10 to ImageNet
                 normalisation (exact except where zero padding touches the image border)
  their.onnx     the same network with its normalisation inside (takes raw RGB pixels 0-255)
  their_ir/their.xml|bin   that ONNX as an OpenVINO IR (fixed 1x3x32x32 input)
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def their_module():
    spec = importlib.util.spec_from_file_location("their_resnet", HERE / "their_resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rekey(zoo_state: dict) -> dict:
    """Zoo resnet20 keys → their_resnet keys."""
    renamed = {}
    for key, value in zoo_state.items():
        new = key.replace("conv1.", "stem.0.", 1) if key.startswith("conv1.") else key
        new = new.replace("bn1.", "stem.1.", 1) if key.startswith("bn1.") else new
        new = new.replace("fc.", "head.", 1) if key.startswith("fc.") else new
        if key.startswith("layer"):
            stage, rest = key.split(".", 1)
            rest = (rest.replace(".conv1.", ".c1.").replace(".bn1.", ".n1.").replace(".conv2.", ".c2.")
                    .replace(".bn2.", ".n2.").replace(".downsample.", ".proj."))
            new = f"stages.{int(stage.removeprefix('layer')) - 1}.{rest}"
        renamed[new] = value
    return renamed


def imagenet_first_conv(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold x_cifar = x_imagenet * s_i / s_c + (m_i - m_c) / s_c into the first conv (weight, bias)."""
    ratio = torch.tensor(IMAGENET_STD) / torch.tensor(CIFAR10_STD)
    offset = (torch.tensor(IMAGENET_MEAN) - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    new_weight = weight * ratio.view(1, 3, 1, 1)
    bias = (weight * offset.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    return new_weight, bias


class WithNormalisation(torch.nn.Module):
    """Their network behind its own (pixels / 255 - mean) / std: what they would export to ONNX."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, pixels):
        return self.network((pixels / 255.0 - self.mean) / self.std)


def build(shared: Path, out: Path) -> dict[str, Path]:
    import openvino as ov

    out.mkdir(parents=True, exist_ok=True)
    zoo_state = torch.load(shared / "weights" / "cifar10_resnet20-4118986f.pt", map_location="cpu",
                           weights_only=True)
    state = rekey(zoo_state)
    state["stem.0.weight"], state["stem.0.bias"] = imagenet_first_conv(state["stem.0.weight"])
    network = their_module().resnet20()
    network.load_state_dict(state, strict=True)
    network.eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "best_prec1": 92.0, "epoch": 200},
               out / "their.th")
    torch.onnx.export(WithNormalisation(network).eval(), (torch.zeros(1, 3, 32, 32),), str(out / "their.onnx"),
                      opset_version=13, dynamo=False, input_names=["pixels"], output_names=["logits"],
                      dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}},
                      training=torch.onnx.TrainingMode.EVAL)
    ir = ov.convert_model(str(out / "their.onnx"), input=[1, 3, 32, 32])
    (out / "their_ir").mkdir(exist_ok=True)
    ov.save_model(ir, str(out / "their_ir" / "their.xml"), compress_to_fp16=False)
    return {"checkpoint": out / "their.th", "onnx": out / "their.onnx", "ir": out / "their_ir" / "their.xml"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=HERE.parents[1].parent / "shared")
    parser.add_argument("--out", type=Path, default=HERE / "build")
    args = parser.parse_args()
    for what, path in build(args.shared, args.out).items():
        print(f"{what}: {path}")
