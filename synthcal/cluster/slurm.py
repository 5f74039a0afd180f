"""SLURM facts for profiles/slurm and the run guard: partition and account to submit to, jobs still alive.

The profile evaluates ``partition()`` and ``account()`` as default resources, so the same profile works on a
cluster with an accounting database and on one without, and the user steers it with the environment variables
sbatch itself reads (``SBATCH_PARTITION``, ``SBATCH_ACCOUNT``).
"""

from __future__ import annotations

import functools
import getpass
import os
import shutil
import subprocess

# squeue states of jobs that are over; anything else (PENDING, RUNNING, COMPLETING, SUSPENDED, ...) may still write.
FINISHED_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                             "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT"})


class SlurmQueryError(RuntimeError):
    """squeue could not be asked."""


def partition() -> str:
    """``$SBATCH_PARTITION``, or "" (the executor plugin then takes the cluster's default partition)."""
    return os.environ.get("SBATCH_PARTITION", "").strip()


@functools.cache
def account() -> str:
    """``$SBATCH_ACCOUNT``, else the user's default account in the accounting database, else "".

    Naming the account spares the executor plugin its account guess, which in plugin 2.8.0 always fails with a
    misleading ``sacct: invalid option -- '1'`` warning. Without an accounting database there is no account to
    name; the plugin then warns once per run that it proceeds without one.
    """
    chosen = os.environ.get("SBATCH_ACCOUNT", "").strip()
    if chosen or shutil.which("sacctmgr") is None:
        return chosen
    try:
        listed = subprocess.run(["sacctmgr", "--noheader", "--parsable2", "show", "user", getpass.getuser(),
                                 "format=DefaultAccount"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    return lines[0] if listed.returncode == 0 and len(lines) == 1 else ""


@functools.cache
def node_cpus() -> int:
    """CPUs of the smallest node of the partition jobs go to (``partition()``, else the cluster's default): what
    rule time_model asks for beside ``--exclusive``, so that its job step may use the whole node it has to itself.
    1 where sinfo cannot tell (the node is still the job's alone)."""
    if shutil.which("sinfo") is None:
        return 1
    try:
        listed = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%P|%c"], capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 1
    chosen = partition()
    cpus = [int(count) for name, _, count in (line.strip().partition("|") for line in listed.stdout.splitlines())
            if count.strip().isdigit() and (name.rstrip("*") == chosen if chosen else name.endswith("*"))]
    return min(cpus) if listed.returncode == 0 and cpus else 1


def live_jobs(job_names) -> dict[str, list[str]]:
    """Job name → ids of its jobs that squeue still lists as queued or running ({} where squeue is not installed)."""
    names = sorted({str(name) for name in job_names if name})
    if not names or shutil.which("squeue") is None:
        return {}
    alive: dict[str, list[str]] = {}
    for start in range(0, len(names), 100):
        try:
            listed = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%j",
                                     "--name=" + ",".join(names[start:start + 100])],
                                    capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SlurmQueryError(f"squeue failed: {error}") from None
        if listed.returncode != 0:
            raise SlurmQueryError(f"squeue failed: {listed.stderr.strip() or listed.returncode}")
        for line in listed.stdout.splitlines():
            job_id, state, name = line.strip().split("|", 2)
            if state not in FINISHED_STATES:
                alive.setdefault(name, []).append(job_id)
    return {name: sorted(ids, key=_job_order) for name, ids in alive.items()}


def _job_order(job_id: str) -> list[int]:
    return [int(part) for part in job_id.split("_") if part.isdigit()]
