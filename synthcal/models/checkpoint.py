"""PyTorch checkpoints: load safely (``weights_only=True``), pick the state_dict inside a wrapper, strip
prefixes, and load with PyTorch's ``load_state_dict(strict=True)``, every missing or unexpected key listed."""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit its network; the message names the config key."""


def load_problem(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a few words (PyTorch's advice to load with
    ``weights_only=False``, which would run code from the file, is left out)."""
    text = str(exc)
    if "Weights only load failed" in text:
        return "it holds Python objects other than tensors, which are never unpickled here; save a state_dict"
    if isinstance(exc, EOFError) or "failed finding central directory" in text or "failed reading zip" in text:
        return "empty or truncated file"
    if "invalid load key" in text:
        return "not a PyTorch checkpoint"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


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
        raise CheckpointError(f"{key}: {path} is not a loadable state_dict ({load_problem(exc)})") from exc
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
    state_dict = OrderedDict(loaded)
    # PyTorch's per-module versions: BatchNorm before version 2 (PyTorch < 0.4.1) had no num_batches_tracked, and
    # load_state_dict fills it in for such files (and for files with no versions at all)
    metadata = OrderedDict(getattr(loaded, "_metadata", None) or {})
    if strip_prefix:
        state_dict = OrderedDict((name.removeprefix(strip_prefix), value) for name, value in state_dict.items())
        bare = strip_prefix.rstrip(".")
        metadata = OrderedDict(("" if module == bare else module.removeprefix(strip_prefix), version)
                               for module, version in metadata.items() if module or not bare)
    if metadata:
        state_dict._metadata = metadata
    return state_dict


def load_strict(network: nn.Module, state_dict: dict, key: str = "checkpoint", shown: int = 12) -> nn.Module:
    """PyTorch's own ``load_state_dict(strict=True)``; its error reworded to list the missing, unexpected and
    mis-shaped keys, with a ``strip_prefix`` hint."""
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(_reworded(str(error), key, shown)) from None
    return network


def _reworded(message: str, key: str, shown: int) -> str:
    """PyTorch's ``Error(s) in loading state_dict`` as one line naming the config key, each list cut at ``shown``."""
    def quoted(label: str) -> list[str]:
        found = re.search(label + r" key\(s\) in state_dict: (.*?)\. ?(?:\n|$)", message)
        return re.findall(r'"([^"]+)"', found.group(1)) if found else []

    missing, unexpected = quoted("Missing"), quoted("Unexpected")
    mismatched = [f"{name} {_shape(saved)} vs {_shape(wanted)}" for name, saved, wanted in re.findall(
        r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from checkpoint, the shape "
        r"in current model is torch\.Size\((\[.*?\])\)", message)]
    if not (missing or unexpected or mismatched):
        return f"{key} does not fit the network: {message}"
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
        if names:
            more = f" … and {len(names) - shown} more" if len(names) > shown else ""
            parts.append(f"{label} keys ({len(names)}): {', '.join(names[:shown])}{more}")
    hint = ""
    prefixes = {name.split(".", 1)[0] + "." for name in unexpected if "." in name}
    if missing and len(prefixes) == 1:
        hint = f"; try {key}.strip_prefix: {next(iter(prefixes))!r}"
    return f"{key} does not fit the network: " + "; ".join(parts) + hint


def _shape(listed: str) -> tuple:
    return tuple(int(size) for size in re.findall(r"\d+", listed))
