"""Each local job on cores of its own.

Snakemake counts a job's ``threads`` against ``--cores`` but does not say which cores; OpenVINO (and NNCF's own
compiled models, whose settings we cannot pass) then starts a thread per core of the machine in every job, so two
one-thread jobs on two cores run four threads that spin against each other. A job claims ``threads`` free cores
instead (one lock file per core, held until the process exits, so a killed job frees its cores) and pins itself
to them before OpenVINO or torch start their pools; child processes (the side environment) inherit the pinning.
Measured on resnet20, NNCF quantize with full bias correction, two jobs at once on 2 cores: 10.6 s for the pair
unpinned, 8.9 s pinned; alone, 8.1 s of CPU pinned against 9.5 s unpinned. Outputs are byte-identical either way.

Nothing is pinned when the job may use every allowed core anyway (timing, SLURM jobs in their own cgroup) or
when fewer cores are free than it needs (more jobs than cores: the scheduler shares them as before).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

LOCK_DIR_VARIABLE = "SYNTHCAL_CORE_LOCKS"
_claimed: list = []  # open lock files of this process: the claim lasts as long as they stay open


class CoreLockError(RuntimeError):
    """The core-lock folder is not private to this user."""


def lock_dir() -> Path:
    """One folder per user and machine, shared by every run on it (two runs side by side share the cores): in
    ``$XDG_RUNTIME_DIR`` (per user, 0700, made by the login manager), else in ``~/.cache/synthcal`` (named by host,
    as a home folder may be shared by several machines); ``$SYNTHCAL_CORE_LOCKS`` overrides both. Never a fixed
    name in a shared folder such as /tmp, where another user could create it first."""
    if os.environ.get(LOCK_DIR_VARIABLE):
        return Path(os.environ[LOCK_DIR_VARIABLE])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "synthcal-cores"
    return Path.home() / ".cache" / "synthcal" / f"cores-{socket.gethostname()}"


def open_private_dir(directory: str | os.PathLike) -> int:
    """A descriptor of ``directory``, made 0700 where missing; refused (``CoreLockError``) when it is a symlink,
    another user's, or writable by group or others: its lock files would then be someone else's to place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CoreLockError(f"core-lock folder {directory} is a symlink or not a folder; remove it (or set "
                                f"{LOCK_DIR_VARIABLE} to a private folder)") from None
        raise
    info = os.fstat(fd)
    problem = (f"belongs to uid {info.st_uid}, not to you (uid {os.getuid()})" if info.st_uid != os.getuid() else
               f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
               if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) else None)
    if problem:
        os.close(fd)
        raise CoreLockError(f"core-lock folder {directory} {problem}; remove it, or chmod 700 one of yours (or set "
                            f"{LOCK_DIR_VARIABLE} to a private folder)")
    return fd


def claim_cores(count: int, directory: str | os.PathLike | None = None) -> set[int] | None:
    """Pin this process to ``count`` cores no other job holds; the cores, or None where nothing was pinned."""
    allowed = sorted(os.sched_getaffinity(0))
    if count < 1 or count >= len(allowed):
        return None
    directory = Path(directory) if directory else lock_dir()
    folder = open_private_dir(directory)
    held = []
    try:
        for cpu in allowed:
            try:  # relative to the checked folder, never through a symlink
                fd = os.open(f"cpu{cpu}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=folder)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise CoreLockError(f"core-lock file {directory / f'cpu{cpu}.lock'} is a symlink; remove it"
                                        ) from None
                raise
            handle = os.fdopen(fd, "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            held.append((cpu, handle))
            if len(held) == count:
                break
    except BaseException:
        for _, handle in held:
            handle.close()
        raise
    finally:
        os.close(folder)
    if len(held) < count:
        for _, handle in held:
            handle.close()
        return None
    _claimed.extend(handle for _, handle in held)
    cores = {cpu for cpu, _ in held}
    os.sched_setaffinity(0, cores)
    return cores
