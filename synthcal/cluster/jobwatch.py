"""A local job ends with the run that started it, and never runs beside an orphan of itself.

A hard-killed Snakemake (SIGKILL) leaves its local jobs running, and a rerun would start the same jobs beside them.
``guard_job`` is the first line of every workflow script, before any heavy import (torch, OpenVINO, NNCF take
seconds to import, and a watch set up after them comes too late). Stdlib only, so importing it is instant.

* The run's pid comes from ``RUN_VARIABLE``, which ``runguard.guard_run`` (the Snakefile's onstart) sets in the
  Snakemake process, so every job it starts inherits it. A job whose run is already gone stops at once.
* A forked watcher process, not a thread (a thread needs the GIL, which a C extension may hold for seconds while
  it loads), checks every ``INTERVAL`` s that the run lives. When it is gone it SIGKILLs the job, its descendants
  and the shells between the run and the job: nothing of the job outlives the run by more than about
  ``INTERVAL`` s. The watcher exits by itself when the job ends.
* The job holds a lock on its outputs (``.snakemake/synthcal-jobs/<digest>.lock``) for its whole life; a job of
  the same outputs waits up to ``ORPHAN_WAIT`` s for it (an orphan is killed within ``INTERVAL`` s), then refuses.

Nothing is watched without a guarded run (dry runs, ``--no-hooks``) or in a SLURM job (``runguard.refuse_orphans``
handles those).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import sys
import time
from pathlib import Path

RUN_VARIABLE = "SYNTHCAL_RUN_PID"  # "pid@host" of the Snakemake run that owns the working directory
INTERVAL = 0.2  # seconds between checks that the run lives
ORPHAN_WAIT = 5.0  # seconds a job waits for an earlier job of the same outputs to end
JOB_LOCKS = Path(".snakemake") / "synthcal-jobs"
_held: list = []  # the job's output lock, open for the life of the process


class OrphanJobError(RuntimeError):
    """An earlier job writing the same outputs is still alive."""


def run_pid() -> int | None:
    """The pid of the guarded Snakemake run on this host that started this job, or None."""
    value = os.environ.get(RUN_VARIABLE, "")
    pid, _, host = value.partition("@")
    if not pid.isdigit() or os.environ.get("SLURM_JOB_ID") or host != os.uname().nodename:
        return None
    return int(pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    status = Path(f"/proc/{pid}/stat")
    try:  # a zombie (killed, not yet reaped) is dead for us
        return status.read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return not status.parent.parent.is_dir()  # no /proc: trust kill(0)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _between(run: int, job: int) -> list[int]:
    """The processes from the job's parent up to (not including) the run: the shells Snakemake started it in."""
    chain, pid = [], _parent(job)
    while pid and pid > 1 and pid != run and len(chain) < 8:
        chain.append(pid)
        pid = _parent(pid)
    return chain if pid == run else []


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := _parent(int(entry.name))):
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _watch(run: int, job: int, chain: list[int], interval: float) -> None:
    """The watcher's loop (in the forked child): returns when the job ends, kills it when the run ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for Snakemake; this ends with the job
    while os.getppid() == job:
        if not alive(run):
            print(f"synthcal: the Snakemake run that started this job (pid {run}) is gone; stopping the job "
                  f"(pid {job})", file=sys.stderr, flush=True)
            for pid in [*(pid for pid in _descendants(job) if pid != os.getpid()), job, *chain]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            return
        time.sleep(interval)


def watch_run(interval: float = INTERVAL) -> int | None:
    """End this process (and its descendants and shells) soon after the run that started it dies; the run's pid,
    or None where there is no guarded local run. A run that is already gone ends the job here and now."""
    run = run_pid()
    if run is None:
        return None
    job = os.getpid()
    if not alive(run):
        print(f"synthcal: the Snakemake run that started this job (pid {run}) is gone; not starting the job",
              file=sys.stderr, flush=True)
        os._exit(1)
    chain = _between(run, job)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:  # the watcher: nothing but the loop, then out without Python's exit handlers
        try:
            _watch(run, job, chain, interval)
        finally:
            os._exit(0)
    return run


def lock_outputs(outputs, wait: float = ORPHAN_WAIT, directory: str | os.PathLike = JOB_LOCKS) -> Path:
    """Hold a lock on these outputs for the life of this process, waiting up to ``wait`` s for an earlier job of
    the same outputs (an orphan of a killed run) to end; raise ``OrphanJobError`` naming it if it does not."""
    key = "\n".join(sorted(os.path.abspath(str(path)) for path in outputs))
    path = Path(directory) / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().strip() or "unknown process"
                handle.close()
                raise OrphanJobError(
                    f"an earlier job writing the same outputs ({', '.join(map(str, outputs))}) is still running "
                    f"({holder}), probably left by a killed run; stop it, then run again. Lock: {path}") from None
            time.sleep(0.05)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    _held.append(handle)
    return path


def guard_job(snakemake) -> None:
    """The first line of a workflow script: watch the run, then take the outputs' lock (or stop, in one line)."""
    watch_run()
    if run_pid() is None:
        return
    try:
        lock_outputs(list(snakemake.output))
    except OrphanJobError as error:
        print(f"synthcal: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":  # shell rules: python -m synthcal.cluster.jobwatch MODULE ARGS... runs MODULE watched
    import runpy

    watch_run()
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
