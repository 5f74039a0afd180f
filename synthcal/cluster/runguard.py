"""One executing Snakemake run per working directory, and no rerun over SLURM jobs that are still alive.

Snakemake's own lock cannot be trusted: 9.27.1 deletes the whole ``.snakemake/locks`` folder when any run exits
(``FilePersistence._delete_locks``), including the lock of a run still in progress, so a later run of that
run's targets is accepted and starts duplicate jobs. And after a hard kill of Snakemake its SLURM jobs keep
running, while ``--unlock`` and a rerun would submit them again.

``guard_run`` (the Snakefile's ``onstart``, so only runs that are about to execute jobs) therefore

* takes an exclusive ``flock`` on ``.snakemake/synthcal-run.lock`` and holds it until the process ends. The
  kernel releases it when the process dies, however it dies, so it never needs unlocking;
* refuses to start while SLURM jobs of an earlier run in this directory are still queued or running: holding
  the lock, no other Snakemake runs here, so such jobs are orphans of a killed run and still write into it.
  Earlier runs are found by the SLURM run ID (the jobs' name) in their logs, ``.snakemake/log/`` of the last
  ``ORPHAN_DAYS`` days.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import sys
import time
from pathlib import Path

from synthcal.cluster.slurm import SlurmQueryError, live_jobs

LOCK_NAME = "synthcal-run.lock"
ORPHAN_DAYS = 30  # longer than any SLURM time limit the profile asks for
RUN_ID = re.compile(r"SLURM run ID: (\S+)")  # logged by snakemake-executor-plugin-slurm 2.8.0
_held: list = []  # open lock files, kept for the life of the process


class RunGuardError(RuntimeError):
    """Another run owns the working directory, or jobs of an earlier run are still alive."""


def claim_workdir(snakemake_dir: str | os.PathLike) -> Path:
    """Take the working directory's run lock for the rest of this process, or raise naming who holds it."""
    path = Path(snakemake_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown process"
        handle.close()
        raise RunGuardError(
            f"another Snakemake run is executing jobs in {Path(snakemake_dir).resolve().parent} ({holder}). "
            "Wait for it or stop it, then run again; for a different study use another directory "
            "(snakemake -d DIR). Lock: " + str(path)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                 f"{' '.join(sys.argv)}\n")
    handle.flush()
    _held.append(handle)
    return path


def earlier_slurm_runs(snakemake_dir: str | os.PathLike, days: float = ORPHAN_DAYS) -> list[str]:
    """SLURM run IDs (the name of every job of a run) in this directory's Snakemake logs of the last ``days``."""
    since = time.time() - days * 86400
    names = set()
    for log in (Path(snakemake_dir) / "log").glob("*.snakemake.log"):
        if log.stat().st_mtime >= since:
            with open(log, errors="replace") as lines:
                names.update(match.group(1) for line in lines if (match := RUN_ID.search(line)))
    return sorted(names)


def refuse_orphans(run_ids) -> None:
    """Raise if jobs of these SLURM runs are still queued or running, naming them and how to cancel them."""
    try:
        alive = live_jobs(run_ids)
    except SlurmQueryError as error:
        raise RunGuardError(f"cannot check whether SLURM jobs of earlier runs in this directory are still running: "
                            f"{error}") from None
    if alive:
        runs = "; ".join(f"{' '.join(ids)} of run {name}" for name, ids in sorted(alive.items()))
        cancel = " && ".join(f"scancel --name {name}" for name in sorted(alive))
        raise RunGuardError(
            f"SLURM jobs of an earlier, killed run in this directory are still queued or running ({runs}) and write "
            f"into it. Cancel them ({cancel}) or wait until squeue no longer lists them, then run again.")


def guard_run(workflow) -> None:
    """The Snakefile's onstart: claim the working directory, then look for orphaned SLURM jobs of earlier runs."""
    claim_workdir(workflow.persistence.path)
    refuse_orphans(earlier_slurm_runs(workflow.persistence.path))
