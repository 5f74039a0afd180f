"""DiStyleGAN: a small class-conditional CIFAR-10 generator (checkpoint-compatible with the original release),
its spectral-norm discriminator, checkpoint folders and a deterministic sampler.

A generator checkpoint is a folder holding ``config.json`` (``ngf``, ``z_dim``, ``c_dim``, ``project_dim``, ``nc``)
and ``generator.pt`` (a plain state_dict, fp32 or fp16).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from tqdm import tqdm

from synthcal.io import ImageSet, atomic_path, file_digest, read_json, write_json

NUM_CLASSES = 10
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "generator.pt"
DEFAULT_GENERATOR_CONFIG = {"ngf": 256, "z_dim": 512, "c_dim": NUM_CLASSES, "project_dim": 128, "nc": 3}


def _upsample_block(in_channels: int, out_channels: int) -> nn.Sequential:
    # nearest x2, conv to twice the channels, BN, GLU halves them again
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_channels, 2 * out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * out_channels),
        nn.GLU(dim=1),
    )


class Generator(nn.Module):
    """(z, one-hot class) -> (N, nc, 32, 32) images in [-1, 1]."""

    def __init__(self, ngf: int = 256, z_dim: int = 512, c_dim: int = NUM_CLASSES, project_dim: int = 128,
                 nc: int = 3):
        super().__init__()
        if ngf % 8:
            raise ValueError(f"ngf must be a multiple of 8, got {ngf}")
        self.config = {"ngf": ngf, "z_dim": z_dim, "c_dim": c_dim, "project_dim": project_dim, "nc": nc}
        self.project = nn.Sequential(
            nn.Linear(z_dim, 2 * project_dim, bias=False), nn.BatchNorm1d(2 * project_dim), nn.GLU(dim=1)
        )
        self.fc = nn.Sequential(
            nn.Linear(project_dim + c_dim, ngf * 4 * 4 * 2, bias=False), nn.BatchNorm1d(ngf * 4 * 4 * 2), nn.GLU(dim=1)
        )
        self.upsample1 = _upsample_block(ngf, ngf // 2)
        self.upsample2 = _upsample_block(ngf // 2, ngf // 4)
        self.upsample3 = _upsample_block(ngf // 4, ngf // 8)
        self.img = nn.Sequential(nn.Conv2d(ngf // 8, nc, 3, padding=1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        projected = self.project(z)
        hidden = self.fc(torch.cat([projected, onehot.to(projected.dtype)], dim=1))
        hidden = hidden.view(-1, self.config["ngf"], 4, 4)
        hidden = self.upsample3(self.upsample2(self.upsample1(hidden)))
        return self.img(hidden)


class Discriminator(nn.Module):
    """(images in [-1, 1], one-hot class) -> (logit (N,), [four block feature maps]).

    The original head concatenates the one-hot class before a Linear, so the class only adds a per-class
    constant to the logit and gives the generator no class signal of its own (distillation supplies it
    through the teacher pairs). ``projection=True`` adds a projection term <embed(c), h> (Miyato & Koyama,
    2018) so that adversarial training without a teacher learns class-conditional images.
    ``classifier=True`` adds an auxiliary class head on the same features (AC-GAN, Odena et al., 2017),
    trained from scratch with the discriminator; ``forward_with_classes`` returns its logits too.
    """

    def __init__(self, ndf: int = 128, project_dim: int = 128, c_dim: int = NUM_CLASSES, nc: int = 3,
                 projection: bool = False, classifier: bool = False):
        super().__init__()
        self.config = {"ndf": ndf, "project_dim": project_dim, "c_dim": c_dim, "nc": nc, "projection": projection,
                       "classifier": classifier}
        channels = [nc, ndf, ndf, 2 * ndf, 4 * ndf]
        self.blocks = nn.ModuleList(
            nn.Sequential(spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2))
            for cin, cout in zip(channels[:-1], channels[1:], strict=True)
        )
        # 32 px halved four times -> 2 x 2
        self.project = nn.Sequential(spectral_norm(nn.Linear(4 * ndf * 2 * 2, 2 * project_dim)), nn.GLU(dim=1))
        self.output = nn.Linear(project_dim + c_dim, 1)
        self.class_embedding = spectral_norm(nn.Linear(c_dim, project_dim, bias=False)) if projection else None
        self.classifier = nn.Linear(project_dim, c_dim) if classifier else None

    def forward(self, images: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        logit, features, _ = self.forward_with_classes(images, onehot)
        return logit, features

    def forward_with_classes(self, images: torch.Tensor, onehot: torch.Tensor):
        """(logit, block features, class logits (N, c_dim) or None without the auxiliary head)."""
        features = []
        hidden = images
        for block in self.blocks:
            hidden = block(hidden)
            features.append(hidden)
        projected = self.project(hidden.flatten(1))
        onehot = onehot.to(projected.dtype)
        logit = self.output(torch.cat([projected, onehot], dim=1)).squeeze(1)
        if self.class_embedding is not None:
            logit = logit + (self.class_embedding(onehot) * projected).sum(1)
        class_logits = self.classifier(projected) if self.classifier is not None else None
        return logit, features, class_logits


def one_hot(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    return nn.functional.one_hot(labels.long(), num_classes).float()


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW float -> [0, 255] NHWC uint8, as the original release saves images."""
    scaled = ((images.float() + 1) * 127.5).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _generator_config(raw: dict, path: Path) -> dict:
    """The generator keys of a config.json (the original release's file also holds training settings)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    config = {}
    for key, default in DEFAULT_GENERATOR_CONFIG.items():
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{path}: '{key}' must be a positive integer, got {value!r}")
        config[key] = value
    return config


def load_generator(folder: str | os.PathLike) -> Generator:
    """Build the generator from ``folder/config.json`` and load ``folder/generator.pt`` strictly (fp16 -> fp32)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"DiStyleGAN checkpoint folder not found: {folder}")
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"DiStyleGAN checkpoint incomplete: {path} is missing")
    config = _generator_config(read_json(config_path), config_path)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read {weights_path} as a state_dict: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{weights_path} is not a state_dict of tensors")
    model = Generator(**config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not match the generator in {config_path} ({config}): "
                         f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{weights_path}: '{key}' has shape {tuple(state[key].shape)}, "
                             f"expected {tuple(tensor.shape)} for config {config}")
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def save_generator(model: Generator, folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``generator.pt`` (floating tensors cast to ``dtype``) and ``config.json``, each atomically.

    Equal weights give equal bytes, so the file's sha256 identifies the weights.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        key: (value.detach().to("cpu", dtype) if value.is_floating_point() else value.detach().cpu()).clone()
        for key, value in model.state_dict().items()
    }
    buffer = io.BytesIO()  # a buffer, not the temp file: its name would end up inside the archive
    torch.save(state, buffer)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        tmp.write_bytes(buffer.getvalue())
    write_json(folder / CONFIG_FILE, model.config)
    return folder


def sample_distylegan(folder_or_generator: str | os.PathLike | Generator, per_class: int, seed: int,
                      batch_size: int = 500, show_progress: bool = True, return_noise: bool = False,
                      device: str | torch.device = "cpu") -> ImageSet | tuple[ImageSet, np.ndarray]:
    """``per_class`` images of each class 0..9 (sorted by class) from z ~ N(0, I) drawn with ``seed``.

    Runs the generator in eval mode; same seed, generator and device give the same bytes. With
    ``return_noise`` also returns the (N, z_dim) float32 noise (for teacher sets).
    """
    if per_class <= 0 or batch_size <= 0:
        raise ValueError(f"per_class and batch_size must be positive, got {per_class} and {batch_size}")
    provenance: dict = {"generator": "distylegan", "seed": int(seed), "per_class": int(per_class),
                        "torch": torch.__version__,
                        "noise": "torch.randn(10 * per_class, z_dim) from torch.Generator().manual_seed(seed)",
                        "device": str(device)}
    if isinstance(folder_or_generator, Generator):
        model = folder_or_generator
        provenance.update(checkpoint=None, generator_sha256=None)
    else:
        folder = Path(folder_or_generator)
        model = load_generator(folder)
        provenance.update(checkpoint=str(folder / WEIGHTS_FILE), generator_sha256=file_digest(folder / WEIGHTS_FILE))
    provenance["config"] = dict(model.config)
    num_classes, z_dim = model.config["c_dim"], model.config["z_dim"]

    noise_rng = torch.Generator().manual_seed(int(seed))
    z = torch.randn(num_classes * per_class, z_dim, generator=noise_rng)
    labels = torch.arange(num_classes).repeat_interleave(per_class)

    was_training = model.training
    model.to(device).eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(z), batch_size), desc="DiStyleGAN sampling", disable=not show_progress):
                z_batch = z[start:start + batch_size].to(device)
                onehot = one_hot(labels[start:start + batch_size], num_classes).to(device)
                chunks.append(to_uint8_nhwc(model(z_batch, onehot)))
    finally:
        model.train(was_training)
    image_set = ImageSet(images=np.concatenate(chunks), labels=labels.numpy().astype(np.int64), provenance=provenance)
    if return_noise:
        return image_set, z.numpy()
    return image_set
