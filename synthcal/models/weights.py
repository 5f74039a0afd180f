"""Zoo weights: the release URL (cached, hash-checked), a local file, or random (smoke tests only)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

from synthcal.io import atomic_path, file_digest
from synthcal.models.checkpoint import CheckpointError, load_state_dict_file, load_strict
from synthcal.models.cifar_zoo import build_model, zoo_info


class WeightsError(RuntimeError):
    """A weights file that is missing, corrupt or has the wrong hash."""


def expected_sha256(model_name: str, spec: dict) -> str | None:
    """The full sha256 or prefix to check: the config's, else the zoo's, else the file name's ``-xxxxxxxx`` part."""
    if spec.get("sha256"):
        return spec["sha256"].lower()
    info = zoo_info(model_name)
    return (info.get("sha256") or info.get("sha256_prefix") or "").lower() or None


def check_sha256(path: Path, expected: str | None, what: str) -> str:
    actual = file_digest(path, "sha256")
    if expected and not actual.startswith(expected):
        raise WeightsError(f"{what}: {path} has sha256 {actual}, expected {expected}; refusing to use it")
    return actual


def fetch_weights(model_name: str, spec: dict, cache_dir: str | os.PathLike, out_path: str | os.PathLike,
                  seed: int = 0, architecture: str | None = None) -> dict:
    """Resolve ``models.<name>.weights`` to a verified state_dict file at ``out_path``; returns provenance.

    ``spec``: ``{"source": "url"}`` (release URL, or ``url``), ``{"source": "path", "path": ...}`` or
    ``{"source": "random"}``. The checkpoint is loaded strictly into the architecture before it is accepted.
    """
    source = spec.get("source", "url")
    key = f"models.{model_name}.weights"
    architecture = architecture or model_name
    out_path = Path(out_path)
    provenance: dict = {"model": model_name, "architecture": architecture, "source": source,
                        "untrained": source == "random"}
    if source == "random":
        torch.manual_seed(seed)
        model = build_model(architecture)
        with atomic_path(out_path) as tmp:
            torch.save(model.state_dict(), tmp)
        provenance["seed"] = seed
        return provenance
    if source == "url":
        url = spec.get("url") or zoo_info(architecture)["url"]
        expected = expected_sha256(architecture, spec)
        cached = Path(cache_dir).expanduser() / "checkpoints" / url.rsplit("/", 1)[-1]
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            prefix = re.search(r"-([0-9a-f]{8,})\.", cached.name)
            try:
                torch.hub.download_url_to_file(url, str(cached), hash_prefix=prefix.group(1) if prefix else None)
            except RuntimeError as error:  # torch.hub's hash mismatch
                raise WeightsError(f"{key}: download of {url} failed its hash check: {error}") from error
            except OSError as error:
                raise WeightsError(
                    f"{key}: could not download {url} ({error}). Offline? Set {key} to "
                    f"{{source: path, path: /local/copy.pt}}"
                ) from error
        provenance.update(url=url, path=str(cached))
        local = cached
    elif source == "path":
        local = Path(spec.get("path") or "").expanduser()
        if not spec.get("path") or not local.is_file():
            raise WeightsError(f"{key}.path {spec.get('path')!r} is not a file")
        expected = expected_sha256(architecture, spec) if spec.get("verify", True) else None
        provenance["path"] = str(local)
    else:
        raise WeightsError(f"{key}.source {source!r} is not one of url, path, random")
    try:
        provenance["sha256"] = check_sha256(local, expected, key)
    except WeightsError:
        if source == "url":
            local.unlink(missing_ok=True)  # never keep a bad download in the cache
        raise
    provenance["sha256_expected"] = expected
    try:
        state_dict = load_state_dict_file(local, key=key)
    except CheckpointError as error:  # unreadable: the message names key and file already
        raise WeightsError(str(error)) from None
    try:  # worded as for kind torch: a few missing, unexpected and mis-shaped keys, counted, in one line
        load_strict(build_model(architecture), state_dict, key)
    except CheckpointError as error:
        reason = str(error).split(" does not fit the network: ", 1)[-1].split("; try ", 1)[0]
        raise WeightsError(f"{key}: {local} does not fit {architecture}: {reason}; is it another network's "
                           "checkpoint? (the zoo's networks: synthcal/models/model_zoo.json)") from None
    with atomic_path(out_path) as tmp:
        shutil.copyfile(local, tmp)
    return provenance


