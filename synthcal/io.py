"""File helpers shared by every step: atomic writes, JSON, and the canonical image-set file.

An image set (a dataset split or a calibration set) is one ``.npz`` file with
``images`` (N, 32, 32, 3) uint8 RGB, ``labels`` (N,) int64 (-1 = unlabelled) and
``provenance`` (a JSON string). It is written byte-deterministically: same
arrays and provenance give the same bytes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

UNLABELLED = -1
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.part"):  # left by a killed run
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def paths_of(value) -> list[str]:
    """A rule's named input as a list of paths, whether Snakemake passed one path or a list."""
    if value is None:
        return []
    return [str(value)] if isinstance(value, str | os.PathLike) else [str(item) for item in value]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, required: tuple[str, ...] | None = None):
    """A JSON file; with ``required`` (a tuple, maybe empty), an object holding those keys, else a one-line
    ``ValueError`` naming the file (an intermediate edited by hand)."""
    value = json.loads(Path(path).read_text())
    if required is not None:
        missing = [key for key in required if key not in value] if isinstance(value, dict) else list(required)
        if missing:
            what = f"has no {', '.join(map(repr, missing))}" if isinstance(value, dict) else \
                f"holds a {type(value).__name__}, not an object"
            raise ValueError(f"{path} is not a file synthcal wrote ({what}); delete it and run again")
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _npy_member_info(name: str) -> zipfile.ZipInfo:
    """An ``.npy`` member's header with a fixed timestamp, so equal arrays give equal bytes."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
    info.external_attr = 0o644 << 16
    return info


def _write_npy_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    archive.writestr(_npy_member_info(name), buffer.getvalue())


def save_npz_deterministic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` but with fixed zip timestamps, so equal arrays give equal bytes."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in sorted(arrays):
                _write_npy_member(archive, name, np.asarray(arrays[name]))


@dataclass
class ImageSet:
    images: np.ndarray  # (N, H, W, 3) uint8, or StoredImages (read from disk a slice at a time)
    labels: np.ndarray  # (N,) int64, UNLABELLED where unknown
    provenance: dict

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels != UNLABELLED).all())


WRITE_CHUNK_IMAGES = 256  # images decoded or copied per step while an image set is written


def _image_chunks(images):
    """uint8 chunks of an (N, H, W, 3) array, a ``StoredImages`` or a lazy set with ``chunks`` (folder images)."""
    chunk = WRITE_CHUNK_IMAGES
    if hasattr(images, "chunks"):
        yield from images.chunks(chunk)
        return
    for start in range(0, len(images), chunk):
        yield np.ascontiguousarray(images[start:start + chunk])


def save_image_set(path: str | os.PathLike, images, labels: np.ndarray | None, provenance: dict) -> None:
    """Write an image set a chunk at a time: ``images`` may be an array or a lazy set (``StoredImages``, folder
    images), so a set larger than memory is never held whole. Same bytes as ``np.savez`` of the whole arrays."""
    if isinstance(images, np.ndarray):
        images = np.ascontiguousarray(images)
    shape = tuple(images.shape)
    if getattr(images, "dtype", None) != np.uint8 or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {getattr(images, 'dtype', None)} {shape}")
    if labels is None:
        labels = np.full(len(images), UNLABELLED, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    provenance_json = json.dumps(provenance, sort_keys=True, default=_json_default)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(np.uint8).str, "fortran_order": False,
                                                  "shape": shape})
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            info = _npy_member_info("images")
            info.file_size = len(header.getvalue()) + int(np.prod(shape))
            with archive.open(info, "w", force_zip64=info.file_size > zipfile.ZIP64_LIMIT) as member:
                member.write(header.getvalue())
                written = 0
                for chunk in _image_chunks(images):
                    if chunk.shape[1:] != shape[1:] or chunk.dtype != np.uint8:
                        raise ValueError(f"image chunk {chunk.dtype} {chunk.shape} is not uint8 (n, *{shape[1:]})")
                    member.write(chunk.tobytes())
                    written += len(chunk)
            if written != shape[0]:
                raise ValueError(f"the image set gave {written} images, not the {shape[0]} it announced")
            for name, array in (("labels", labels), ("provenance", np.array(provenance_json))):
                _write_npy_member(archive, name, array)


class StoredImages:
    """The images of an image-set file read from disk a slice at a time, so evaluating a set never holds it whole
    (ImageNet's 50,000 validation images at 224 px are 7.5 GB). Slices and integers give arrays; an index array
    gives another ``StoredImages`` over those images; ``np.asarray`` reads them all."""

    dtype = np.dtype(np.uint8)

    def __init__(self, path: str | os.PathLike, offset: int, shape: tuple, indices: np.ndarray | None = None):
        self.path, self.offset, self._stored_shape = Path(path), int(offset), tuple(int(n) for n in shape)
        self.indices = indices
        self.shape = (len(indices) if indices is not None else self._stored_shape[0], *self._stored_shape[1:])
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, handle, first: int, count: int, out: np.ndarray) -> None:
        handle.seek(self.offset + first * out[0].nbytes)
        if handle.readinto(memoryview(out[:count]).cast("B")) != out[:count].nbytes:
            raise ValueError(f"{self.path}: the image set file is shorter than its header says")

    def _read_positions(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty((len(positions), *self._stored_shape[1:]), np.uint8)
        with open(self.path, "rb") as handle:
            start = 0
            while start < len(positions):  # runs of consecutive images in one read each
                stop = start + 1
                while stop < len(positions) and positions[stop] == positions[stop - 1] + 1:
                    stop += 1
                self._read(handle, int(positions[start]), stop - start, out[start:stop])
                start = stop
        return out

    def _positions(self, selection) -> np.ndarray:
        positions = np.arange(len(self))[selection]
        return positions if self.indices is None else self.indices[positions]

    def __getitem__(self, key):
        if isinstance(key, int | np.integer):
            index = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= index < len(self):
                raise IndexError(f"image {key} of {len(self)}")
            return self._read_positions(self._positions(slice(index, index + 1)))[0]
        if isinstance(key, slice):
            return self._read_positions(self._positions(key))
        return StoredImages(self.path, self.offset, self._stored_shape, self._positions(np.asarray(key)))

    def __iter__(self):
        for chunk in self.chunks():
            yield from chunk

    def chunks(self, chunk: int = WRITE_CHUNK_IMAGES):
        for start in range(0, len(self), chunk):
            yield self[start:start + chunk]

    def __array__(self, dtype=None, copy=None):
        images = self[:]
        return images if dtype is None else images.astype(dtype)


def _stored_images(path: Path) -> StoredImages | None:
    """``images.npy`` of an uncompressed image-set file, found in place (None when it is compressed)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("images.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(zipfile.sizeFileHeader)
        name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        handle.seek(info.header_offset + zipfile.sizeFileHeader + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(handle)
        if dtype != np.uint8 or fortran_order or len(shape) != 4:
            raise ValueError(f"images are {dtype} {shape}, not uint8 (N, H, W, 3)")
        return StoredImages(path, handle.tell(), shape)


def _npz_problem(error: Exception) -> str:
    """numpy's and zipfile's reasons in a few words (numpy's pickle advice does not apply: nothing is unpickled)."""
    if isinstance(error, zipfile.BadZipFile) or "pickled" in str(error):
        return "not an .npz archive: truncated or overwritten"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def read_npz_arrays(path: str | os.PathLike, names: tuple[str, ...], what: str = "file") -> dict[str, np.ndarray]:
    """The arrays ``names`` of an .npz file synthcal wrote, or a one-line ``ValueError`` naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in names if name not in data.files]
            if missing:
                raise KeyError(", ".join(map(repr, missing)))
            return {name: data[name] for name in names}
    except KeyError as error:
        raise ValueError(f"{path} is not a readable {what}: it has no array {error.args[0]}; delete it and run "
                         "again") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable {what} ({_npz_problem(error)}); delete it and run "
                         "again") from None


def load_image_set(path: str | os.PathLike, stream: bool = False) -> ImageSet:
    """Read an image set; ``stream=True`` leaves its images on disk (``StoredImages``), read a slice at a time."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image set not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = _stored_images(path) if stream else None
            images = stored if stored is not None else data["images"]
            labels, provenance = data["labels"], json.loads(str(data["provenance"]))
    except KeyError as error:
        raise ValueError(f"{path} is not a synthcal image set: it has no array {error}") from error
    except (ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a synthcal image set ({_npz_problem(error)})") from error
    return ImageSet(images=images, labels=labels, provenance=provenance)
