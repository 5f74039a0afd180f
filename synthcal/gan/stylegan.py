"""Sampling NVIDIA's StyleGAN2-ADA CIFAR-10 generator (the official ``cifar10.pkl``).

The pickle stores NVIDIA's classes by reference to the ``dnnlib`` and ``torch_utils``
packages of a stylegan2-ada-pytorch checkout, so unpickling needs that checkout
(``repo_path``). It goes on ``sys.path`` only for the duration of the call; afterwards
``sys.path`` and the ``dnnlib``/``torch_utils`` entries of ``sys.modules`` are restored.

Loading such a pickle runs code (plain ``pickle.load``; NVIDIA's format also stores network source code):
use only NVIDIA's published pickles or your own (README, "What is safe to load").
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from synthcal.io import ImageSet, file_digest

REPO_PACKAGES = ("dnnlib", "torch_utils")


class StyleGANError(RuntimeError):
    """A missing or unusable StyleGAN2-ADA pickle or checkout; the message names the config key."""


def _is_repo_module(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in REPO_PACKAGES)


@contextlib.contextmanager
def _repo_on_path(repo_path: Path):
    """Import ``dnnlib``/``torch_utils`` from ``repo_path`` inside the block only."""
    saved_path = list(sys.path)
    # modules of the same name imported from elsewhere are set aside so the checkout's are used
    saved_modules = {name: module for name, module in sys.modules.items() if _is_repo_module(name)}
    for name in saved_modules:
        del sys.modules[name]
    sys.path.insert(0, str(repo_path))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in [name for name in sys.modules if _is_repo_module(name)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)


def _check_inputs(pickle_path, repo_path, config_key: str) -> tuple[Path, Path]:
    if not pickle_path or not Path(pickle_path).is_file():
        raise StyleGANError(f"StyleGAN2-ADA pickle {str(pickle_path)!r} not found; set {config_key}.checkpoint "
                            "to NVIDIA's cifar10.pkl")
    if not repo_path or not Path(repo_path).is_dir():
        raise StyleGANError(f"stylegan2-ada-pytorch checkout {str(repo_path)!r} not found; set {config_key}.repo_path "
                            "to a clone of https://github.com/NVlabs/stylegan2-ada-pytorch (unpickling needs its "
                            "dnnlib and torch_utils packages)")
    missing = [package for package in REPO_PACKAGES if not (Path(repo_path) / package).is_dir()]
    if missing:
        raise StyleGANError(f"{config_key}.repo_path {str(repo_path)!r} has no {' or '.join(missing)} package; it must "
                            "be the root of a stylegan2-ada-pytorch checkout")
    return Path(pickle_path), Path(repo_path).resolve()


def sample_stylegan2ada(pickle_path: str | os.PathLike, repo_path: str | os.PathLike | None, per_class: int,
                        seed: int, truncation_psi: float = 1.0, batch_size: int = 250, show_progress: bool = True,
                        return_noise: bool = False, device: str | torch.device = "cpu",
                        config_key: str = "calibration.<name>") -> ImageSet | tuple[ImageSet, np.ndarray]:
    """``per_class`` images of each class 0..c_dim-1 (sorted by class) from ``G_ema`` of the pickle.

    z = ``torch.randn(N, G.z_dim)`` from ``torch.Generator().manual_seed(seed)``; images are
    ``G(z, one_hot(c), truncation_psi=psi, noise_mode="const")`` mapped from [-1, 1] to uint8
    by ``(x * 127.5 + 128).clamp(0, 255)``. ``config_key`` names the config entry in error
    messages. With ``return_noise`` also returns z as float32 (N, z_dim).
    """
    if per_class <= 0 or batch_size <= 0:
        raise ValueError(f"per_class and batch_size must be positive, got {per_class} and {batch_size}")
    pickle_path, repo_path = _check_inputs(pickle_path, repo_path, config_key)
    with _repo_on_path(repo_path):
        try:
            with open(pickle_path, "rb") as handle:
                generator_net = pickle.load(handle)["G_ema"]
        except (pickle.UnpicklingError, ImportError, AttributeError, KeyError, EOFError) as error:
            raise StyleGANError(f"cannot load G_ema from {pickle_path} ({config_key}.checkpoint) with the checkout "
                                f"at {repo_path} ({config_key}.repo_path): {type(error).__name__}: {error}") from error
        generator_net = generator_net.to(device).eval()
        z_dim, c_dim = int(generator_net.z_dim), int(generator_net.c_dim)
        if c_dim < 1:
            raise StyleGANError(f"{pickle_path} ({config_key}.checkpoint) is an unconditional generator (c_dim=0)")
        z = torch.randn(c_dim * per_class, z_dim, generator=torch.Generator().manual_seed(int(seed)))
        labels = torch.arange(c_dim).repeat_interleave(per_class)
        chunks = []
        with torch.no_grad():
            for start in tqdm(range(0, len(z), batch_size), desc="StyleGAN2-ADA sampling",
                              disable=not show_progress):
                z_batch = z[start:start + batch_size].to(device)
                onehot = torch.nn.functional.one_hot(labels[start:start + batch_size], c_dim).float().to(device)
                images = generator_net(z_batch, onehot, truncation_psi=truncation_psi, noise_mode="const")
                pixels = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
                chunks.append(pixels.permute(0, 2, 3, 1).cpu().numpy())
    images = np.concatenate(chunks)
    if images.shape[1:] != (32, 32, 3):
        raise StyleGANError(f"{pickle_path} ({config_key}.checkpoint) produces {images.shape[1:]} images, "
                            "not CIFAR-10's (32, 32, 3)")
    provenance = {
        "generator": "stylegan2-ada",
        "checkpoint": str(pickle_path),
        "checkpoint_sha256": file_digest(pickle_path),
        "repo_path": str(repo_path),
        "seed": int(seed),
        "per_class": int(per_class),
        "truncation_psi": float(truncation_psi),
        "noise_mode": "const",
        "noise": "torch.randn(c_dim * per_class, z_dim) from torch.Generator().manual_seed(seed)",
        "z_dim": z_dim,
        "c_dim": c_dim,
        "device": str(device),
        "torch_version": torch.__version__,
    }
    image_set = ImageSet(images, labels.numpy().astype(np.int64), provenance)
    if return_noise:
        return image_set, z.numpy()
    return image_set
