"""The PyTorch side of the raw-pixel input: a network behind the same preprocessing as its IR.

Kept apart from ``preprocessing`` so that jobs which only run IRs (evaluation, timing) do not import torch.
"""

from __future__ import annotations

import torch
from torch import nn

from synthcal.models.preprocessing import InputSpec


class RawPixelClassifier(nn.Module):
    """A PyTorch network behind the same raw-pixel input as the IRs (the parity reference, datafree's model)."""

    def __init__(self, network: nn.Module, spec: InputSpec):
        super().__init__()
        self.network = network
        self.spec = spec
        self.bgr = spec.channels == "BGR"
        self.scale = float(spec.scale)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).reshape(1, 3, 1, 1))

    def preprocess(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            pixels = pixels.flip(1)
        return (pixels / self.scale - self.mean) / self.std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network(self.preprocess(pixels))

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The network's penultimate features, where it has ``forward_features`` (the zoo's networks do)."""
        return self.network.forward_features(self.preprocess(pixels))

    def pixel_space(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (centre, spread) of the network's expected input as RGB fractions of 255.

        Data-free inversion parameterises images as ``255 * (centre + spread * z)``. Identity
        preprocessing (a network that takes raw pixels) falls back to natural-image statistics.
        """
        if self.spec.mean == (0.0, 0.0, 0.0) and self.spec.std == (1.0, 1.0, 1.0):
            return torch.full((1, 3, 1, 1), 0.48), torch.full((1, 3, 1, 1), 0.2)
        centre, spread = self.mean.clone(), self.std.clone()
        if self.scale != 255:
            centre, spread = centre * (self.scale / 255), spread * (self.scale / 255)
        if self.bgr:
            centre, spread = centre.flip(1), spread.flip(1)
        return centre, spread
