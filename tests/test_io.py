"""Atomic writes: a failed write leaves nothing, a killed run's temporary file is cleared, permissions are usual."""

from __future__ import annotations

import os

import pytest

from synthcal.io import atomic_path, read_json, write_json


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
