"""Local jobs on cores of their own (synthcal/cluster/cores.py), with real processes and real OpenVINO."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO

CORES = len(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(CORES < 2, reason="pinning needs at least 2 cores (this machine allows one)")

# claims `count` cores, prints what it got and OpenVINO's thread count for a model compiled afterwards, then holds
CLAIMER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops
    from synthcal.cluster.cores import claim_cores

    cores = claim_cores(int(sys.argv[2]), sys.argv[1])
    x = ops.parameter([1, 8, 16, 16], np.float32)
    weights = ops.constant(np.ones((8, 8, 3, 3), np.float32))
    model = ov.Model([ops.convolution(x, weights, [1, 1], [1, 1], [1, 1], [1, 1])], [x])
    threads = ov.Core().compile_model(model, "CPU").get_property("INFERENCE_NUM_THREADS")
    print(json.dumps({"cores": sorted(cores) if cores else None, "affinity": sorted(os.sched_getaffinity(0)),
                      "threads": threads}), flush=True)
    time.sleep(float(sys.argv[3]))
""")


def start(lock_dir, count: int, hold: float) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([sys.executable, "-c", CLAIMER, str(lock_dir), str(count), str(hold)],
                               stdout=subprocess.PIPE, text=True, cwd=REPO)
    return process, json.loads(process.stdout.readline())


@needs_two
def test_two_jobs_get_different_cores_and_openvino_runs_one_thread_in_each(tmp_path):
    first, got_first = start(tmp_path, 1, 30)
    second, got_second = start(tmp_path, 1, 30)
    try:
        assert got_first["cores"] and got_second["cores"]
        assert set(got_first["cores"]).isdisjoint(got_second["cores"])
        assert got_first["affinity"] == got_first["cores"]
        assert got_first["threads"] == got_second["threads"] == 1
    finally:
        for process in (first, second):
            process.kill()
            process.wait()


@needs_two
def test_with_every_core_held_a_job_runs_unpinned_and_a_killed_job_frees_its_core(tmp_path):
    holders = [start(tmp_path, 1, 60) for _ in range(CORES)]
    try:
        late, got_late = start(tmp_path, 1, 0)
        late.wait()
        assert got_late["cores"] is None
        assert len(got_late["affinity"]) == CORES  # shares the machine as before
        killed, got_killed = holders[0]
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        time.sleep(0.2)
        again, got_again = start(tmp_path, 1, 0)
        again.wait()
        assert got_again["cores"] == got_killed["cores"]
    finally:
        for process, _ in holders:
            process.kill()
            process.wait()


def test_a_job_that_may_use_every_core_is_not_pinned(tmp_path):
    process, got = start(tmp_path, CORES, 0)
    process.wait()
    assert got["cores"] is None
    assert len(got["affinity"]) == CORES
    assert not list(tmp_path.iterdir())  # took no lock


def test_the_lock_folder_is_per_user_runtime_or_cache_never_a_fixed_tmp_name(tmp_path, monkeypatch):
    from synthcal.cluster.cores import LOCK_DIR_VARIABLE, lock_dir

    monkeypatch.delenv(LOCK_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert lock_dir().parent == tmp_path / "home" / ".cache" / "synthcal"  # no runtime folder: the cache
    (tmp_path / "run").mkdir(mode=0o700)
    assert lock_dir() == tmp_path / "run" / "synthcal-cores"


def test_the_lock_folder_is_made_0700_and_a_symlinked_loose_or_foreign_one_is_refused(tmp_path):
    from synthcal.cluster.cores import CoreLockError, open_private_dir

    made = tmp_path / "made"
    os.close(open_private_dir(made))
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(CoreLockError, match="link is a symlink"):
        open_private_dir(tmp_path / "link")
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(CoreLockError, match=r"loose is writable by group or others \(mode 0777\)"):
        open_private_dir(loose)
    if os.getuid() == 0:  # only root can give a folder away
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 4321, 4321)
        with pytest.raises(CoreLockError, match="foreign belongs to uid 4321, not to you"):
            open_private_dir(foreign)


@needs_two
def test_a_symlinked_lock_file_is_not_followed(tmp_path):
    from synthcal.cluster.cores import CoreLockError, claim_cores

    folder = tmp_path / "locks"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for cpu in os.sched_getaffinity(0):
        (folder / f"cpu{cpu}.lock").symlink_to(victim)
    with pytest.raises(CoreLockError, match="is a symlink; remove it"):
        claim_cores(1, folder)
    assert victim.read_text() == "keep"
