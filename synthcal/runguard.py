"""One executing Snakemake run per working directory, and no rerun over SLURM jobs that are still alive.

Snakemake's own lock cannot be trusted: 9.27.1 deletes the whole ``.snakemake/locks`` folder when any run exits
(``FilePersistence._delete_locks``), including the lock of a run still in progress, so a later run of that
run's targets is accepted and starts duplicate jobs. And after a hard kill of Snakemake its SLURM jobs keep
running, while ``--unlock`` and a rerun would submit them again.

``guard_run`` (the Snakefile's ``onstart``, so only runs that are about to execute jobs) therefore

* takes an exclusive ``flock`` on ``.snakemake/synthcal-run.lock`` and holds it until the process ends. The
  kernel releases it when the process dies, however it dies, so it never needs unlocking;
* refuses to start while a SLURM job recorded for one of the outputs it would rebuild is still queued or running.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from synthcal.slurm import SlurmQueryError, live_jobs

LOCK_NAME = "synthcal-run.lock"
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


def refuse_live_jobs(job_ids) -> None:
    """Raise if any of these SLURM job ids (recorded for outputs about to be rebuilt) is still queued or running."""
    try:
        alive = live_jobs(job_ids)
    except SlurmQueryError as error:
        raise RunGuardError(f"cannot check whether the SLURM jobs of an earlier run ({', '.join(sorted(job_ids))}) "
                            f"are still running: {error}") from None
    if alive:
        ids = " ".join(alive)
        raise RunGuardError(
            f"SLURM jobs {ids} of an earlier, killed run are still queued or running and write outputs this run "
            f"would rebuild. Cancel them (scancel {ids}) or wait until squeue no longer lists them, then run again.")


def guard_run(workflow) -> None:
    """The Snakefile's onstart: claim the working directory, then check the jobs recorded for incomplete outputs."""
    claim_workdir(workflow.persistence.path)
    recorded = {job_id for job in workflow.dag.needrun_jobs() for job_id in workflow.persistence.external_jobids(job)}
    refuse_live_jobs(recorded)
