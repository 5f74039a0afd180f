"""Classifier weights: local path (hash-checked, loaded strictly), random, and an unreachable URL."""

from __future__ import annotations

import re
import socket

import pytest
import torch
from conftest import shared_path

from synthcal.io import file_digest, read_json
from synthcal.models import model_spec
from synthcal.models.cifar_zoo import build_model
from synthcal.models.export import fetch_network
from synthcal.models.weights import WeightsError, fetch_weights

KEY = "models.resnet20.weights"


@pytest.fixture
def resnet20_pt():
    return shared_path("weights", "cifar10_resnet20-4118986f.pt")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_path_source_records_sha256(resnet20_pt, tmp_path):
    out = tmp_path / "out" / "resnet20.pt"
    provenance = fetch_weights("resnet20", {"source": "path", "path": str(resnet20_pt)}, tmp_path / "cache", out)
    digest = file_digest(resnet20_pt)
    assert digest.startswith("4118986f")
    assert provenance["sha256"] == digest
    assert provenance["sha256_expected"] and digest.startswith(provenance["sha256_expected"])
    assert provenance["untrained"] is False and provenance["path"] == str(resnet20_pt)
    assert out.read_bytes() == resnet20_pt.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["resnet20.pt"]  # no temp file left


def test_flipped_byte_is_refused(resnet20_pt, tmp_path):
    corrupt = tmp_path / "cifar10_resnet20-4118986f.pt"
    data = bytearray(resnet20_pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    out = tmp_path / "out" / "resnet20.pt"
    with pytest.raises(WeightsError) as info:
        fetch_weights("resnet20", {"source": "path", "path": str(corrupt)}, tmp_path / "cache", out)
    message = str(info.value)
    assert KEY in message and str(corrupt) in message and "sha256" in message
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_config_sha256_overrides_zoo(resnet20_pt, tmp_path):
    spec = {"source": "path", "path": str(resnet20_pt), "sha256": "deadbeef"}
    with pytest.raises(WeightsError, match="expected deadbeef"):
        fetch_weights("resnet20", spec, tmp_path / "cache", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_truncated_without_verify_fails_to_load(resnet20_pt, tmp_path):
    truncated = tmp_path / "truncated.pt"
    data = resnet20_pt.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.pt"
    spec = {"source": "path", "path": str(truncated), "verify": False}
    with pytest.raises(WeightsError, match=rf"^{KEY}: {truncated} is not a loadable state_dict \(empty or truncated "
                                           r"file\)$"):
        fetch_weights("resnet20", spec, tmp_path / "cache", out)
    assert not out.exists()


class _Runs:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # creates the marker file if ever unpickled


@pytest.mark.parametrize("content", ["empty", "pickled_code", "zipped_code"])
def test_unloadable_checkpoints_are_one_line_without_pytorchs_unsafe_advice(tmp_path, content):
    path, marker = tmp_path / "w.pt", tmp_path / "ran"
    if content == "empty":
        path.write_bytes(b"")
        reason = "empty or truncated file"
    else:
        if content == "zipped_code":
            torch.save({"weight": _Runs(marker)}, path)
        else:
            import pickle

            path.write_bytes(pickle.dumps({"weight": _Runs(marker)}))
        reason = "it holds Python objects other than tensors, which are never unpickled here; save a state_dict"
    spec = {"source": "path", "path": str(path), "verify": False}
    with pytest.raises(WeightsError, match=rf"^{KEY}: {path} is not a loadable state_dict \({re.escape(reason)}\)$"):
        fetch_weights("resnet20", spec, tmp_path / "cache", tmp_path / "out.pt")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_wrong_architecture_is_refused(resnet20_pt, tmp_path):
    """resnet20 weights are not resnet32 weights: the strict load says so (hash check off, else it fails first)."""
    spec = {"source": "path", "path": str(resnet20_pt), "verify": False}
    with pytest.raises(WeightsError, match="models.resnet32.weights.*does not fit resnet32") as raised:
        fetch_weights("resnet32", spec, tmp_path / "cache", tmp_path / "out.pt")
    message = str(raised.value)  # one short line like kind torch's, not PyTorch's multi-KB key list
    assert "\n" not in message and len(message) < 1500 and "missing keys (" in message, message
    assert not (tmp_path / "out.pt").exists()


def test_missing_path(tmp_path):
    with pytest.raises(WeightsError, match=f"{KEY}.path"):
        fetch_weights("resnet20", {"source": "path", "path": str(tmp_path / "nope.pt")}, tmp_path, tmp_path / "o.pt")
    with pytest.raises(WeightsError, match=f"{KEY}.source"):
        fetch_weights("resnet20", {"source": "ftp"}, tmp_path, tmp_path / "o.pt")


def test_random_source(tmp_path):
    out, info = tmp_path / "w" / "resnet20.pt", tmp_path / "w" / "resnet20.json"
    fetch_network(model_spec("resnet20", {"weights": {"source": "random"}}), tmp_path / "cache", out, info, seed=7)
    provenance = read_json(info)
    assert provenance["untrained"] is True and provenance["source"] == "random" and provenance["seed"] == 7
    state_dict = torch.load(out, map_location="cpu", weights_only=True)
    build_model("resnet20").load_state_dict(state_dict, strict=True)
    again = tmp_path / "again.pt"
    fetch_weights("resnet20", {"source": "random"}, tmp_path / "cache", again, seed=7)
    for name, tensor in torch.load(again, map_location="cpu", weights_only=True).items():
        assert torch.equal(tensor, state_dict[name]), name  # same seed, same weights


def test_unreachable_url_says_set_a_local_path(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/x-12345678.pt"
    cache, out = tmp_path / "cache", tmp_path / "out.pt"
    with pytest.raises(WeightsError) as info:
        fetch_weights("resnet20", {"source": "url", "url": url}, cache, out)
    message = str(info.value)
    assert url in message and KEY in message and "source: path" in message
    assert not out.exists()
    leftovers = list((cache / "checkpoints").iterdir()) if (cache / "checkpoints").exists() else []
    assert leftovers == []  # no partial download cached


def test_newer_copy_of_pinned_weights_reruns_nothing(resnet20_pt, tmp_path):
    """Real Snakemake: a sha256-pinned weights file copied again (same bytes, newer mtime, as when ../shared is
    re-extracted) leaves the fetched weights up to date (unpinned files stay mtime-checked: test_config.py)."""
    import os
    import shutil

    import yaml
    from conftest import run_snakemake

    weights = tmp_path / "resnet20.pt"
    shutil.copyfile(resnet20_pt, weights)
    entry = {"source": "path", "path": str(weights), "sha256": file_digest(weights)}
    config = tmp_path / "pinned.yaml"
    config.write_text(yaml.safe_dump({"models": {"resnet20": {"weights": entry}},
                                      "study": {"models": ["resnet20"], "calibration": ["noise"],
                                                "methods": ["default"], "test_sets": []}}))
    target = ("results/weights/resnet20.pt",)
    assert run_snakemake(tmp_path, config, args=target).returncode == 0
    later = os.stat(tmp_path / "results/weights/resnet20.pt").st_mtime + 60
    os.utime(weights, (later, later))
    dry = run_snakemake(tmp_path, config, args=(*target, "-n"))
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]
