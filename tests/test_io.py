"""Atomic writes: a failed write leaves nothing, a killed run's temporary file is cleared, permissions are usual.
Image sets are written a chunk at a time with np.savez's bytes, and read back a slice at a time."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from synthcal.io import (
    StoredImages,
    atomic_path,
    load_image_set,
    read_json,
    save_image_set,
    save_npz_deterministic,
    write_json,
)


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("job died")
    assert list(tmp_path.iterdir()) == []


def test_stale_part_file_of_a_killed_run_is_removed(tmp_path):
    stale = tmp_path / ".metrics.json.k1ll3d.part"
    stale.write_text("{")
    write_json(tmp_path / "metrics.json", {"top1": 0.5})
    assert not stale.exists()
    assert read_json(tmp_path / "metrics.json") == {"top1": 0.5}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]


def test_written_file_gets_umask_permissions_not_mkstemp_0600(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_json(tmp_path / "a.json", [1])
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_image_set_written_in_chunks_has_np_savez_bytes_and_streams_back(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (600, 6, 5, 3), dtype=np.uint8), rng.integers(0, 10, 600)
    save_image_set(tmp_path / "a.npz", images, labels, {"set": "a"})
    save_npz_deterministic(tmp_path / "b.npz", images=images, labels=labels.astype(np.int64),
                           provenance=np.array(json.dumps({"set": "a"}, sort_keys=True)))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    stored = load_image_set(tmp_path / "a.npz", stream=True).images
    assert isinstance(stored, StoredImages) and stored.shape == images.shape and len(stored) == 600
    assert np.array_equal(np.asarray(stored), images) and np.array_equal(stored[7:500:9], images[7:500:9])
    assert np.array_equal(stored[-1], images[-1]) and sum(1 for _ in stored) == 600
    picked = stored[np.array([5, 6, 7, 300, 2])]  # another lazy view (a crossfold fold)
    assert isinstance(picked, StoredImages) and np.array_equal(picked[1:4], images[[6, 7, 300]])
    with pytest.raises(IndexError):
        stored[600]
    save_image_set(tmp_path / "c.npz", stored, labels, {"set": "a"})  # copied a chunk at a time
    assert (tmp_path / "c.npz").read_bytes() == (tmp_path / "a.npz").read_bytes()


def test_a_truncated_image_set_is_named(tmp_path):
    images = np.zeros((300, 4, 4, 3), np.uint8)
    save_image_set(tmp_path / "a.npz", images, None, {})
    stored = load_image_set(tmp_path / "a.npz", stream=True).images
    with open(tmp_path / "a.npz", "r+b") as handle:  # the images member's tail cut off by a bad copy
        handle.truncate(stored.offset + 100 * 48)
    with pytest.raises(ValueError, match="a.npz"):
        stored[50:150]
