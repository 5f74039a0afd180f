"""What a job read from the user's data: one JSON manifest per source (a folder, a tarball, a file).

Jobs that read a folder dataset, an extra test set or a calibration folder take its manifest as their Snakemake
input instead of the files themselves. A manifest lists every file by relative path with its size and sha256, and
its bytes follow from those alone; it is brought up to date while the DAG is built and rewritten only when they
change, so a file added, removed, replaced or moved to another class folder gives a newer input (what depends on it
runs again), and an unchanged tree leaves it alone. Each file's (size, mtime, ctime) and digest are kept in a stat
cache beside it (``.<name>.stats.json``): a file is read again only when one of those changed, and
``touch`` or a copy with the same bytes rewrites the cache but not the manifest. Because the bytes are those of the
content, Snakemake's own input checksum (files under ``--max-checksum-file-size``, 1 MB: a few thousand images)
also sees an image put back as it was: nothing re-runs.
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


def walk(root: str | os.PathLike, suffixes: tuple[str, ...] | None) -> list[tuple[str, os.stat_result]]:
    """(relative posix path, stat) of every file under ``root`` with one of ``suffixes`` (None: all), sorted, listed
    with one scandir pass: the files ``synthcal.data.image_files`` reads. Linked folders are entered (a class folder
    may be a link); a link back to a folder already listed (a loop, or one folder twice) and a broken link with
    one of ``suffixes`` are refused, naming them."""
    found, pending = [], [""]
    seen = {_folder_id(os.stat(root)): "."}  # folder -> the name it was listed under
    while pending:
        relative = pending.pop()
        try:
            with os.scandir(os.path.join(root, relative)) as entries:
                for entry in entries:
                    name = f"{relative}/{entry.name}" if relative else entry.name
                    wanted = suffixes is None or os.path.splitext(entry.name)[1].lower() in suffixes
                    if entry.is_dir():
                        first = seen.setdefault(_folder_id(entry.stat()), name)
                        if first != name:
                            raise ManifestError(f"{root}: folders {first} and {name} are one folder through a link "
                                                "(a loop, or the same images twice)")
                        pending.append(name)
                    elif entry.is_file():
                        if wanted:
                            found.append((name, entry.stat()))
                    elif wanted and entry.is_symlink():
                        raise ManifestError(f"{root}: {name} is a broken link (to {os.readlink(entry.path)})")
        except PermissionError:
            continue
    found.sort(key=lambda item: item[0])
    return found


def _folder_id(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def source_files(path: str | os.PathLike, suffixes: tuple[str, ...] | None) -> tuple[Path, list, str]:
    """(base folder, [(relative path, stat)], inner path) of a source: a directory's files (``walk``), or the
    tarball a ``archive.tar.gz/inner/dir`` path points into (inner path given), or a single file."""
    from synthcal.data import containing_archive

    source = Path(os.path.expanduser(str(path)))
    if source.is_dir():
        return source, walk(source, suffixes), ""
    archive = containing_archive(source)
    if archive is None:
        raise FileNotFoundError(source)
    inner = str(source.relative_to(archive)) if source != archive else ""
    return archive.parent, [(archive.name, archive.stat())], inner


def scan(path: str | os.PathLike, stats: dict | None = None,
         suffixes: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    """(manifest, stat cache) of ``path``: a file's digest comes from ``stats`` while its size and times match."""
    base, files, inner = source_files(path, suffixes)
    stats = stats or {}
    entries, new_stats = [], {}
    for relative, stat in files:
        fields = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        known = stats.get(relative)
        digest = known[3] if isinstance(known, list) and known[:3] == fields else file_digest(base / relative)
        new_stats[relative] = [*fields, digest]
        entries.append([relative, stat.st_size, digest])
    manifest = {"format": FORMAT, "source": str(path), "inner": inner, "columns": ["path", "size", "sha256"],
                "files": entries}
    return manifest, new_stats


def _read(path: Path):
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None  # unreadable: rebuilt


def _write(path: Path, text: str) -> None:
    """Atomic: a unique temporary file renamed over ``path`` (another process may write the same file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def update(path: str | os.PathLike, manifest_path: str | os.PathLike, key: str,
           suffixes: tuple[str, ...] | None = None, stat_path: str | os.PathLike | None = None) -> str:
    """Bring ``manifest_path`` (the source ``path``, config key ``key``) up to date; written only when its bytes
    change. ``stat_path``: the stat cache (default: ``.<name>.stats.json`` beside the manifest)."""
    manifest_path = Path(manifest_path)
    stat_path = Path(stat_path or manifest_path.with_name(f".{manifest_path.stem}.stats.json"))
    stats = _read(stat_path)
    try:
        manifest, new_stats = scan(path, stats if isinstance(stats, dict) else None, suffixes)
    except FileNotFoundError:
        raise ManifestError(f"{key}: {path} does not exist") from None
    except ManifestError as error:
        raise ManifestError(f"{key}: {error}") from None
    except OSError as error:
        raise ManifestError(f"{key}: cannot read {path}: {error}") from None
    text = json.dumps(manifest, separators=(",", ":")) + "\n"
    try:
        unchanged = manifest_path.read_text() == text
    except (OSError, UnicodeDecodeError):
        unchanged = False
    if not unchanged:
        _write(manifest_path, text)
    if new_stats != stats:
        try:
            _write(stat_path, json.dumps(new_stats, separators=(",", ":")))
        except OSError:
            pass  # only a cache: the next scan reads the files again
    return str(manifest_path)
