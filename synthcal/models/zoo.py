"""Kind ``zoo``: the 19 chenyaofo CIFAR-10 architectures (``synthcal.models.cifar_zoo``) with their release
weights (URL + hash), a local file, or random weights (smoke tests, marked untrained)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
from torch import nn

from synthcal.models import ModelConfigError, ModelSpec
from synthcal.models.cifar_zoo import CIFAR10_MEAN, CIFAR10_STD, MODEL_NAMES, NUM_CLASSES, build_model
from synthcal.models.preprocessing import InputSpec

CONFIG_KEYS = frozenset({"architecture", "weights"})
NETWORK_SUFFIX = "pt"
HAS_TORCH = True
ZOO_INPUT = InputSpec(size=(32, 32), scale=255.0, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def resolve(name: str, entry: dict) -> ModelSpec:
    architecture = entry.get("architecture") or name
    if architecture not in MODEL_NAMES:
        raise ModelConfigError(f"models.{name}.architecture {architecture!r} is not a zoo architecture "
                               f"({', '.join(MODEL_NAMES)})")
    weights = entry.get("weights") or {}
    if weights.get("url") and len(weights.get("sha256") or "") != 64:  # the release URLs keep their own hashes
        raise ModelConfigError(f"models.{name}.weights.sha256: a url of your own needs the full 64-hex sha256 "
                               "of its file")
    if weights.get("source") == "path":
        if not weights.get("path"):
            raise ModelConfigError(f"models.{name}.weights.path is not set")
        if not Path(weights["path"]).expanduser().is_file():
            raise ModelConfigError(f"models.{name}.weights.path: {weights['path']} does not exist")
    return ModelSpec(name, "zoo", entry, ZOO_INPUT, NUM_CLASSES, {"architecture": architecture})


def local_files(spec: ModelSpec) -> list[str]:
    weights = spec.entry.get("weights") or {}
    return [weights["path"]] if weights.get("source") == "path" else []


def fetch(spec: ModelSpec, cache_dir, out_path, seed: int = 0) -> dict:
    from synthcal.models.weights import fetch_weights

    return fetch_weights(spec.name, spec.entry.get("weights") or {"source": "url"}, cache_dir, out_path, seed,
                         architecture=spec.details["architecture"])


def torch_network(spec: ModelSpec, network_file, deploy_repvgg: bool = False) -> nn.Module:
    from synthcal.models.checkpoint import load_state_dict_file, load_strict
    from synthcal.models.cifar_zoo import reparameterize_repvgg

    architecture = spec.details["architecture"]
    network = load_strict(build_model(architecture), load_state_dict_file(network_file, key=f"{spec.key}.weights"),
                          f"{spec.key}.weights").eval()
    if deploy_repvgg and architecture.startswith("repvgg"):
        network = reparameterize_repvgg(network)
    return network


def to_openvino(spec: ModelSpec, network_files: list[str], workdir, options: dict) -> ov.Model:
    from synthcal.models.pytorch import export_torch

    network = torch_network(spec, network_files[0], bool(options.get("deploy_repvgg", True)))
    return export_torch(network, spec.input.size, workdir, int(options.get("opset", 11)))


def reference_logits(spec: ModelSpec, network_files: list[str], images: np.ndarray, options: dict) -> np.ndarray:
    from synthcal.models.pytorch import torch_logits
    from synthcal.models.raw_pixels import RawPixelClassifier

    network = torch_network(spec, network_files[0], bool(options.get("deploy_repvgg", True)))
    return torch_logits(RawPixelClassifier(network, spec.input).eval(), images)


def load_zoo_classifier(architecture: str, weights_path, deploy_repvgg: bool = False) -> nn.Module:
    """A zoo network with its weights behind the raw-pixel input (``RawPixelClassifier``), in eval mode."""
    from synthcal.models.raw_pixels import RawPixelClassifier

    spec = resolve(architecture, {})
    return RawPixelClassifier(torch_network(spec, weights_path, deploy_repvgg), ZOO_INPUT).eval()
