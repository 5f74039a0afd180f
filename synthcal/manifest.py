"""What a job read from the user's data: one JSON manifest per source (a folder, a tarball, a file).

Jobs that read a folder dataset, an extra test set or a calibration folder take its manifest as their Snakemake
input instead of the files themselves. A manifest lists every file by relative path with its size, mtime, ctime and
sha256; the sha256 is read again only for files whose (size, mtime, ctime) changed since the previous manifest. It is
written while the DAG is built and only when it changes:

- a file added, removed, replaced or moved to another class folder: rewritten, new mtime, so what depends on it runs;
- only the stat fields changed (``touch``, a copy or re-extraction with the same bytes): rewritten to keep the next
  scan cheap, but its previous mtime is put back, so nothing re-runs;
- nothing changed: left alone.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from synthcal.io import file_digest

MANIFEST_DIR = "results/manifests"
FORMAT = 1


class ManifestError(ValueError):
    """A source that cannot be listed; the message names the config key."""


def source_files(path: str | os.PathLike, suffixes: tuple[str, ...] | None) -> tuple[Path, list[Path], str]:
    """(base folder, files, inner path) of a source: a directory's files (those with ``suffixes``, or all), or the
    tarball a ``archive.tar.gz/inner/dir`` path points into (inner path given), or a single file."""
    from synthcal.data import containing_archive, image_files

    source = Path(os.path.expanduser(str(path)))
    if source.is_dir():
        if suffixes is None:
            files = sorted(file for file in source.rglob("*") if file.is_file())
        else:
            files = image_files(source)
        return source, files, ""
    archive = containing_archive(source)
    if archive is None:
        raise FileNotFoundError(source)
    inner = str(source.relative_to(archive)) if source != archive else ""
    return archive.parent, [archive], inner


def scan(path: str | os.PathLike, previous: dict | None = None, suffixes: tuple[str, ...] | None = None) -> dict:
    """The manifest of ``path``; digests are taken from ``previous`` for files whose stat fields are unchanged."""
    base, files, inner = source_files(path, suffixes)
    known = {entry[0]: entry for entry in (previous or {}).get("files", [])}
    entries = []
    for file in files:
        relative = file.relative_to(base).as_posix()
        stat = file.stat()
        fields = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        old = known.get(relative)
        digest = old[4] if old and old[1:4] == fields else file_digest(file)
        entries.append([relative, *fields, digest])
    return {"format": FORMAT, "source": str(path), "inner": inner,
            "columns": ["path", "size", "mtime_ns", "ctime_ns", "sha256"], "files": entries}


def content(manifest: dict | None) -> tuple | None:
    """What a job's result depends on: the source, and each file's relative path and sha256 (not its stat)."""
    if not manifest:
        return None
    return (manifest.get("source"), manifest.get("inner"),
            tuple((entry[0], entry[4]) for entry in manifest.get("files", [])))


def update(path: str | os.PathLike, manifest_path: str | os.PathLike, key: str,
           suffixes: tuple[str, ...] | None = None) -> str:
    """Write ``manifest_path`` for the source ``path`` (config key ``key``) when it changed (module docstring)."""
    manifest_path = Path(manifest_path)
    previous = None
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text())
            if previous.get("format") != FORMAT:
                previous = None
        except (OSError, ValueError, AttributeError):
            previous = None  # unreadable: scanned from scratch and written anew
    try:
        manifest = scan(path, previous, suffixes)
    except FileNotFoundError:
        raise ManifestError(f"{key}: {path} does not exist") from None
    except OSError as error:
        raise ManifestError(f"{key}: cannot read {path}: {error}") from None
    if manifest == previous:
        return str(manifest_path)
    keep_mtime = previous is not None and content(manifest) == content(previous)
    old_stat = manifest_path.stat() if keep_mtime else None
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{manifest_path.name}.", suffix=".part", dir=manifest_path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(manifest, handle, separators=(",", ":"))
        os.chmod(tmp, 0o644)
        if old_stat is not None:  # same content: downstream jobs must not see a newer input
            os.utime(tmp, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
        os.replace(tmp, manifest_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(manifest_path)
