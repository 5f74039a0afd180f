"""PyTorch checkpoints: load safely (``weights_only=True``), pick the state_dict inside a wrapper, strip
prefixes, and load strictly with every missing or unexpected key listed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit its network; the message names the config key."""


def load_state_dict_file(path: str | os.PathLike, state_dict_key: str | None = None,
                         strip_prefix: str | None = None, key: str = "checkpoint") -> dict:
    """The tensors of a checkpoint file on the CPU.

    ``state_dict_key`` picks a wrapped state_dict (``{'state_dict': {...}, 'best_prec1': ...}``; dots go
    deeper, e.g. ``model.state_dict``); ``strip_prefix`` removes e.g. ``module.`` from every key that has it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}: checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle errors, disallowed globals, ...
        raise CheckpointError(f"{key}: {path} is not a loadable state_dict ({type(exc).__name__}: {exc})") from exc
    if state_dict_key:
        for part in state_dict_key.split("."):
            if not isinstance(loaded, Mapping) or part not in loaded:
                found = sorted(str(k) for k in loaded) if isinstance(loaded, Mapping) else type(loaded).__name__
                raise CheckpointError(f"{key}.state_dict_key {state_dict_key!r}: {path} has no {part!r} "
                                      f"(top-level keys: {found})")
            loaded = loaded[part]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in loaded.items()
    ):
        hint = ""
        if isinstance(loaded, Mapping):
            nested = [str(name) for name, value in loaded.items() if isinstance(value, Mapping)]
            hint = f"; it wraps mappings under {nested}: set {key}.state_dict_key" if nested else ""
        raise CheckpointError(f"{key}: {path} does not hold a state_dict (a mapping of names to tensors){hint}")
    state_dict = dict(loaded)
    if strip_prefix:
        state_dict = {name.removeprefix(strip_prefix): value for name, value in state_dict.items()}
    return state_dict


def load_strict(network: nn.Module, state_dict: dict, key: str = "checkpoint", shown: int = 12) -> nn.Module:
    """``load_state_dict(strict=True)`` with an error that lists missing, unexpected and mis-shaped keys."""
    expected = network.state_dict()
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    mismatched = [f"{name} {tuple(state_dict[name].shape)} vs {tuple(tensor.shape)}"
                  for name, tensor in expected.items() if name in state_dict and state_dict[name].shape != tensor.shape]
    if missing or unexpected or mismatched:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if names:
                more = f" … and {len(names) - shown} more" if len(names) > shown else ""
                parts.append(f"{label} keys ({len(names)}): {', '.join(names[:shown])}{more}")
        hint = ""
        prefixes = {name.split(".", 1)[0] + "." for name in unexpected if "." in name}
        if missing and len(prefixes) == 1:
            hint = f"; try {key}.strip_prefix: {next(iter(prefixes))!r}"
        raise CheckpointError(f"{key} does not fit the network: " + "; ".join(parts) + hint)
    network.load_state_dict(state_dict, strict=True)
    return network
