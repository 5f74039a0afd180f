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
  ``ORPHAN_DAYS`` days. Runs squeue once found with nothing left are remembered (``FINISHED_RUNS``) and not asked
  about again: holding the lock, nobody can submit jobs for them any more.

Where squeue cannot reach a controller (a workstation with the SLURM client installed, a cluster that is down) the
check cannot be made, and the run stops; ``SYNTHCAL_SKIP_SLURM_CHECK=1`` lets that one run go on (with a warning)
once you know no job of the earlier runs is alive.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

from synthcal.cluster.jobwatch import RUN_VARIABLE
from synthcal.cluster.slurm import SlurmQueryError, live_jobs

LOCK_NAME = "synthcal-run.lock"
FINISHED_RUNS = "synthcal-finished-slurm-runs"  # run IDs squeue listed no live job of, one a line
SKIP_CHECK = "SYNTHCAL_SKIP_SLURM_CHECK"  # =1: go on when squeue cannot answer
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


def earlier_slurm_runs(snakemake_dir: str | os.PathLike, days: float = ORPHAN_DAYS, current_logs=()) -> list[str]:
    """SLURM run IDs (the name of every job of a run) in this directory's Snakemake logs of the last ``days``, but
    those of ``current_logs`` (this run's own) and those already found finished."""
    since = time.time() - days * 86400
    current = {Path(log).resolve() for log in current_logs}
    names = set()
    for log in (Path(snakemake_dir) / "log").glob("*.snakemake.log"):
        if log.stat().st_mtime >= since and log.resolve() not in current:
            with open(log, errors="replace") as lines:
                names.update(match.group(1) for line in lines if (match := RUN_ID.search(line)))
    finished = Path(snakemake_dir) / FINISHED_RUNS
    if finished.is_file():
        names -= set(finished.read_text().split())
    return sorted(names)


def refuse_orphans(run_ids, snakemake_dir: str | os.PathLike | None = None) -> None:
    """Raise if jobs of these SLURM runs are still queued or running, naming them and how to cancel them. With
    ``snakemake_dir``, runs found finished are remembered there."""
    run_ids = sorted(set(run_ids))
    try:
        alive = live_jobs(run_ids)
    except SlurmQueryError as error:
        if os.environ.get(SKIP_CHECK) == "1":
            print(f"synthcal: WARNING: {SKIP_CHECK}=1: not checking whether SLURM jobs of earlier runs in this "
                  f"directory ({', '.join(run_ids)}) are still running ({error})", file=sys.stderr)
            return
        raise RunGuardError(
            f"cannot check whether SLURM jobs of earlier runs in this directory ({', '.join(run_ids)}) are still "
            f"running: {error}. If no SLURM controller can answer from here and you know none of their jobs is "
            f"alive, run again with {SKIP_CHECK}=1 (that run only); once squeue answers, finished runs are not "
            "asked about again.") from None
    if snakemake_dir is not None and run_ids and shutil.which("squeue"):  # asked, not skipped for want of squeue
        with open(Path(snakemake_dir) / FINISHED_RUNS, "a") as finished:
            finished.writelines(f"{name}\n" for name in run_ids if name not in alive)
    if alive:
        runs = "; ".join(f"{' '.join(ids)} of run {name}" for name, ids in sorted(alive.items()))
        cancel = " && ".join(f"scancel --name {name}" for name in sorted(alive))
        raise RunGuardError(
            f"SLURM jobs of an earlier, killed run in this directory are still queued or running ({runs}) and write "
            f"into it. Cancel them ({cancel}) or wait until squeue no longer lists them, then run again.")


def guard_run(workflow) -> None:
    """The Snakefile's onstart: claim the working directory, then look for orphaned SLURM jobs of earlier runs."""
    claim_workdir(workflow.persistence.path)
    os.environ[RUN_VARIABLE] = f"{os.getpid()}@{os.uname().nodename}"  # the jobs' watch (cluster/jobwatch.py)
    refuse_orphans(earlier_slurm_runs(workflow.persistence.path, current_logs=workflow.logger_manager.get_logfile()),
                   workflow.persistence.path)
