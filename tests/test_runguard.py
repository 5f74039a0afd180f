"""The run guard (synthcal/cluster/runguard.py): why it is needed, and that it holds with real Snakemake runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import REPO, shared_path

from synthcal.cluster.runguard import (
    FINISHED_RUNS,
    SKIP_CHECK,
    RunGuardError,
    claim_workdir,
    earlier_slurm_runs,
    refuse_orphans,
)

HOLDER = textwrap.dedent("""
    import sys, time
    from synthcal.cluster.runguard import claim_workdir
    claim_workdir(sys.argv[1])
    print("held", flush=True)
    time.sleep(600)
""")


def _hold(snakemake_dir: Path) -> subprocess.Popen:
    """Another process that holds the run lock, as a running Snakemake does from its onstart."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(snakemake_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_claim_is_exclusive_names_the_holder_and_dies_with_it(tmp_path):
    holder = _hold(tmp_path / ".snakemake")
    try:
        with pytest.raises(RunGuardError, match=f"another Snakemake run .*pid {holder.pid} "):
            claim_workdir(tmp_path / ".snakemake")
    finally:
        holder.send_signal(signal.SIGKILL)  # a hard kill leaves nothing to unlock
        holder.wait()
    child = subprocess.run([sys.executable, "-c", "import sys; from synthcal.cluster.runguard import claim_workdir; "
                            "claim_workdir(sys.argv[1])", str(tmp_path / ".snakemake")], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr


def test_earlier_runs_are_read_from_this_directorys_snakemake_logs(tmp_path):
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-01-01T000000.000000.snakemake.log").write_text("Building DAG of jobs...\nSLURM run ID: synthcal_a\n")
    (logs / "2026-01-02T000000.000000.snakemake.log").write_text("Nothing to be done.\n")
    old = logs / "2025-01-01T000000.000000.snakemake.log"
    old.write_text("SLURM run ID: synthcal_old\n")
    os.utime(old, (time.time() - 40 * 86400,) * 2)  # older than any job can live
    assert earlier_slurm_runs(tmp_path / ".snakemake") == ["synthcal_a"]
    assert earlier_slurm_runs(tmp_path / "nothing-here") == []
    refuse_orphans([])  # no earlier SLURM run: nothing to ask squeue


def test_live_jobs_of_an_earlier_run_are_refused_until_cancelled():
    if not _squeue_answers():
        pytest.skip("squeue is not installed or no SLURM controller answers (bring one up: .ci/slurm-single-node.sh)")
    name = f"synthcal_guardtest_{uuid.uuid4()}"
    job = subprocess.run(["sbatch", "--parsable", "--job-name", name, "--output", "/dev/null", "--mem", "10",
                          "--wrap", "sleep 300"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        with pytest.raises(RunGuardError, match=rf"\({job} of run {name}\).*scancel --name {name}"):
            refuse_orphans([name, "synthcal_never_ran"])
    finally:
        subprocess.run(["scancel", job], check=True)
    deadline = time.monotonic() + 30
    while subprocess.run(["squeue", "--noheader", "--name", name, "--states=PENDING,RUNNING,COMPLETING"],
                         capture_output=True, text=True).stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.5)
    refuse_orphans([name])  # cancelled: no longer alive


def test_no_slurm_controller_names_the_way_out_and_finished_runs_are_not_asked_again(tmp_path, monkeypatch):
    """squeue installed but no controller answering (a workstation after one SLURM run here): the run stops and
    says how to go on; SYNTHCAL_SKIP_SLURM_CHECK=1 goes on for that run. Runs squeue found finished are remembered."""
    if shutil.which("squeue") is None:
        pytest.skip("needs the SLURM client (squeue) installed: the case under test is squeue without a controller")
    if _squeue_answers():  # a cluster is up (as in CI): point squeue at a controller that is not there
        conf = tmp_path / "slurm.conf"
        conf.write_text("ClusterName=nowhere\nSlurmctldHost=nowhere(127.0.0.1)\nSlurmctldPort=9\nMessageTimeout=1\n"
                        "AuthType=auth/none\nNodeName=nowhere CPUs=1 State=UNKNOWN\n"
                        "PartitionName=none Nodes=nowhere Default=YES\n")
        monkeypatch.setenv("SLURM_CONF", str(conf))
        assert not _squeue_answers()
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-01-01T000000.000000.snakemake.log").write_text("SLURM run ID: synthcal_earlier\n")
    current = logs / "2026-01-02T000000.000000.snakemake.log"
    current.write_text("SLURM run ID: synthcal_this_run\n")
    runs = earlier_slurm_runs(tmp_path / ".snakemake", current_logs=[current])
    assert runs == ["synthcal_earlier"]  # this run's own ID is never taken for an earlier run
    monkeypatch.delenv(SKIP_CHECK, raising=False)
    with pytest.raises(RunGuardError, match=rf"(?s)synthcal_earlier.*run again with {SKIP_CHECK}=1"):
        refuse_orphans(runs, tmp_path / ".snakemake")
    monkeypatch.setenv(SKIP_CHECK, "1")
    refuse_orphans(runs, tmp_path / ".snakemake")
    assert not (tmp_path / ".snakemake" / FINISHED_RUNS).exists()  # not asked, so not known to be finished
    (tmp_path / ".snakemake" / FINISHED_RUNS).write_text("synthcal_earlier\n")  # as a successful check leaves it
    assert earlier_slurm_runs(tmp_path / ".snakemake", current_logs=[current]) == []


def _squeue_answers() -> bool:
    try:
        return subprocess.run(["squeue", "--noheader"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1",
               *args, "--configfile", str(REPO / "config.yaml"), str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_guard_refuses_a_second_run_and_snakemake_drops_other_runs_locks(tmp_path):
    train = shared_path("data", "cifar10-lossless", "train")
    config = tmp_path / "guard.yaml"
    study = {"models": ["resnet20"], "calibration": ["noise"], "methods": ["default"]}
    config.write_text(yaml.safe_dump({"study": study, "gan_training": {"guarded": {"data_folder": str(train)}}}))
    target = "results/gan/guarded/real.npz"

    holder = _hold(tmp_path / ".snakemake")  # a run in progress
    try:
        refused = _snakemake(tmp_path, config, target)
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0
        assert f"another Snakemake run is executing jobs in {tmp_path}" in output and f"pid {holder.pid}" in output
        assert not (tmp_path / target).exists()
        dry = _snakemake(tmp_path, config, "-n", target)  # dry runs execute nothing and are not refused
        assert dry.returncode == 0, dry.stderr[-2000:]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    done = _snakemake(tmp_path, config, target)  # the hard-killed holder left nothing to unlock
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (tmp_path / target).exists()
    assert f"pid {os.getpid()}" not in (tmp_path / ".snakemake" / "synthcal-run.lock").read_text()

    # Why Snakemake's own lock is not enough: any run that exits (here one with nothing to do) deletes the lock
    # another run in progress holds, as a running Snakemake writes it, on files this run never touches.
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(exist_ok=True)
    (locks / "0.output.lock").write_text(str(tmp_path / "results" / "another_runs_output.npz") + "\n")
    nothing = _snakemake(tmp_path, config, target)
    assert nothing.returncode == 0 and "Nothing to be done" in nothing.stdout + nothing.stderr
    assert not (locks / "0.output.lock").exists(), "Snakemake now keeps other runs' locks: revisit runguard and README"
