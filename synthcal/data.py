"""The study's dataset: CIFAR-10 (download with checksum, the official pickle batches) or any ImageFolder tree.

Every source ends as one canonical image set per split (see ``synthcal.io``).
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from synthcal.io import UNLABELLED, ImageSet, atomic_path, file_digest

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
PICKLE_DIR = "cifar-10-batches-py"
PICKLE_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class DataError(RuntimeError):
    """Bad or unreachable input data; the message says what to change."""


def download(url: str, destination: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
             config_key: str = "", retries: int = 3, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` (skipped when a verified copy is there) with retries and a progress bar."""
    destination = Path(destination)
    expected = [(name, value) for name, value in (("md5", md5), ("sha256", sha256)) if value]

    def verified(path: Path) -> bool:
        return all(file_digest(path, name).startswith(value.lower()) for name, value in expected)

    if destination.is_file() and verified(destination):
        return destination
    hint = f" Offline? Set `{config_key}` to a local copy instead." if config_key else ""
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with atomic_path(destination) as tmp:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {destination.name}") as bar:
                        for block in iter(lambda: response.read(1 << 20), b""):
                            out.write(block)
                            bar.update(len(block))
                if not verified(tmp):
                    got = {name: file_digest(tmp, name) for name, _ in expected}
                    raise DataError(f"checksum mismatch for {url}: expected {dict(expected)}, got {got}")
            return destination
        except DataError:
            raise
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            last_error = error
            if attempt < retries:
                time.sleep(2 ** attempt)
    raise DataError(f"could not download {url} after {retries} tries ({last_error}).{hint}")


# Everything the official batches (NumPy 1 under Python 2) and NumPy 2 re-pickles of them reference: dicts, lists,
# bytes and NumPy arrays. Nothing else is resolved, so a crafted batch cannot call e.g. os.system while loading.
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's own array-unpickling function
_BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batches only: any other global is refused instead of being imported."""

    def find_class(self, module: str, name: str):
        try:
            return _BATCH_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only NumPy "
                                         "arrays, lists and bytes") from None


def _unpickle(handle, name: str) -> dict:
    try:
        batch = _BatchUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataError(f"{name} is not a CIFAR-10 pickle batch ({error})") from error
    if not isinstance(batch, dict):
        raise DataError(f"{name} is not a CIFAR-10 pickle batch (it holds a {type(batch).__name__}, not a dict)")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def _batch_to_arrays(batch: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except KeyError as error:
        raise DataError(f"{name} is not a CIFAR-10 pickle batch (missing {error})") from error
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{name} has data of shape {data.shape}, expected (N, 3072) with N labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_pickle_batches(path: str | os.PathLike, split: str) -> ImageSet:
    """Read a split from ``cifar-10-python.tar.gz`` or an extracted ``cifar-10-batches-py`` folder."""
    path = Path(path)
    if split not in PICKLE_BATCHES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(PICKLE_BATCHES)}")
    parts = []
    if path.is_dir():
        folder = path / PICKLE_DIR if (path / PICKLE_DIR).is_dir() else path
        for name in PICKLE_BATCHES[split]:
            batch_path = folder / name
            if not batch_path.is_file():
                raise DataError(f"{batch_path} is missing (expected the official CIFAR-10 python batches)")
            with open(batch_path, "rb") as handle:
                parts.append(_batch_to_arrays(_unpickle(handle, str(batch_path)), str(batch_path)))
    elif path.is_file():
        try:
            with tarfile.open(path) as archive:
                for name in PICKLE_BATCHES[split]:
                    member = f"{PICKLE_DIR}/{name}"
                    try:
                        handle = archive.extractfile(member)
                    except KeyError:
                        handle = None
                    if handle is None:
                        raise DataError(f"{path} has no member {member}")
                    parts.append(_batch_to_arrays(_unpickle(handle, f"{path}:{member}"), f"{path}:{member}"))
        except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError) as error:
            raise DataError(f"{path} is not a readable CIFAR-10 tarball: {error}") from error
    else:
        raise DataError(f"{path} does not exist")
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return ImageSet(images, labels, {"format": "cifar10-python", "path": str(path), "split": split})


def _sort_key(name: str) -> tuple:
    stem = Path(name).stem
    return (int(stem), name) if stem.isdigit() else (float("inf"), name)


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """8-bit RGB. 16-bit grey PNGs (modes ``I;16*``/``I``) keep their high byte, as Pillow does for 16-bit colour
    PNGs (``convert("RGB")`` alone would clip every value above 255 to white)."""
    if image.mode.startswith("I"):
        pixels = np.asarray(image)
        if pixels.min() < 0 or pixels.max() > 65535:
            raise DataError(f"cannot read image {name}: mode {image.mode} values {pixels.min()}..{pixels.max()} are "
                            "not 16-bit; give 8- or 16-bit images")
        image = Image.fromarray((pixels.astype(np.uint32) >> 8).astype(np.uint8))  # mode L
    elif image.mode == "F":
        raise DataError(f"cannot read image {name}: floating-point pixels (mode F); give 8- or 16-bit images")
    return image.convert("RGB")


CROP_VIEWS = ("centre", "centre_flip", "top_left", "bottom_right", "top_right_flip", "bottom_left_flip",
              "top_right", "bottom_left", "top_left_flip", "bottom_right_flip")
INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                  "nearest": Image.Resampling.NEAREST, "area": Image.Resampling.BOX}


def crop_plan(crop: dict | None) -> dict | None:
    """``centre_crop`` settings ({size, ratio, interpolation, views}) resolved: the shorter side is resized to
    ``size / ratio`` (ImageNet's 256 for 224 at the default 0.875), then ``views`` crops of ``size`` are cut."""
    if not crop:
        return None
    size = crop.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    ratio = float(crop.get("ratio", 0.875))
    if not 0 < ratio <= 1:
        raise DataError(f"centre_crop.ratio must be in (0, 1], got {ratio}")
    interpolation = crop.get("interpolation", "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"centre_crop.interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    views = int(crop.get("views", 1))
    if not 1 <= views <= len(CROP_VIEWS):
        raise DataError(f"centre_crop.views must be 1..{len(CROP_VIEWS)}, got {views}")
    shorter = int(crop.get("resize") or round(max(height, width) / ratio))
    return {"size": [height, width], "resize_shorter": shorter, "ratio": ratio, "interpolation": interpolation,
            "views": list(CROP_VIEWS[:views])}


def crop_views(image: Image.Image, plan: dict, name: str) -> list[np.ndarray]:
    """The shorter side resized to ``plan['resize_shorter']``, then one crop per view (centre, corners, flips)."""
    width, height = image.size
    scale = plan["resize_shorter"] / min(width, height)
    resized_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = image.resize(resized_size, INTERPOLATIONS[plan["interpolation"]])
    crop_h, crop_w = plan["size"]
    if crop_w > resized_size[0] or crop_h > resized_size[1]:
        raise DataError(f"cannot crop {name}: a {crop_h}x{crop_w} crop is larger than the image resized to "
                        f"{resized_size[1]}x{resized_size[0]} (shorter side {plan['resize_shorter']}); lower "
                        "centre_crop.size or raise centre_crop.resize")
    spare_w, spare_h = resized_size[0] - crop_w, resized_size[1] - crop_h
    corners = {"centre": (spare_w // 2, spare_h // 2), "top_left": (0, 0), "bottom_right": (spare_w, spare_h),
               "top_right": (spare_w, 0), "bottom_left": (0, spare_h)}
    views = []
    for view in plan["views"]:
        left, top = corners[view.removesuffix("_flip")]
        crop = image.crop((left, top, left + crop_w, top + crop_h))
        if view.endswith("_flip"):
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        views.append(np.asarray(crop, dtype=np.uint8))
    return views


def decode_image(data: bytes, name: str, size=32, crop: dict | None = None) -> np.ndarray | list[np.ndarray]:
    """Decode one image file to uint8 RGB (H, W, 3); ``size`` (an int or (H, W)) resizes, None keeps it.
    With a ``crop_plan`` the result is the list of its views instead (``size`` is then ignored)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:  # Pillow only warns below twice its limit
                raise DataError(f"cannot read image {name}: {image.width}x{image.height} pixels is more than "
                                f"{Image.MAX_IMAGE_PIXELS} (a decompression bomb?)")
            image.load()
            image = _to_rgb(image, name)
            if crop is not None:
                return crop_views(image, crop, name)
            if size is not None:
                height, width = (size, size) if isinstance(size, int) else size
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError as error:  # Pillow's message names its buffer object, not the file
        raise DataError(f"cannot read image {shown_name(name)}: not an image file Pillow can read (empty, truncated "
                        "or another kind of file)") from error
    except (OSError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:  # the warning where warnings are errors
        raise DataError(f"cannot read image {shown_name(name)}: {error}") from error


def shown_name(name: str) -> str:
    """A file name for a one-line message: control characters (a newline in a name) written as escapes."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(name))


def _decode_entries(entries: list, size, crop: dict | None, desc: str, show_progress: bool) -> list:
    """Decode (label dir, name, reader) entries on every core the job has (PIL releases the GIL while decoding)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
    with ThreadPoolExecutor(workers) as pool:
        decoded = pool.map(lambda entry: decode_image(entry[2](), entry[1], size, crop), entries)
        return list(tqdm(decoded, total=len(entries), desc=desc, unit="img", disable=not show_progress))


class FolderImages:
    """A folder's images, decoded a chunk at a time when written (``synthcal.io.save_image_set``): a dataset split
    or evaluation set of any size is built in bounded memory. Slices give another ``FolderImages``; ``np.asarray``
    decodes them all. Every image must come out at ``shape[1:]``; the first that does not is named."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, root: Path, entries: list, size, plan: dict | None, image_shape: tuple, show_progress: bool,
                 config_key: str | None = None):
        self.root, self.entries, self.size, self.plan, self.config_key = root, entries, size, plan, config_key
        self.views = len(plan["views"]) if plan else 1
        self.shape = (len(entries) * self.views, *image_shape)
        self.show_progress = show_progress

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        start, stop, _ = key.indices(len(self)) if isinstance(key, slice) else (0, 0, 0)
        if not isinstance(key, slice) or key.step not in (None, 1) or start % self.views or stop % self.views:
            return np.asarray(self)[key]
        return FolderImages(self.root, self.entries[start // self.views:stop // self.views], self.size,
                            self.plan, self.shape[1:], self.show_progress, self.config_key)

    def chunks(self, chunk: int = 256):
        try:
            yield from self._chunks(chunk)
        except DataError as error:
            raise DataError(f"{self.config_key}: {error}" if self.config_key else str(error)) from None

    def _chunks(self, chunk: int):
        per_step = max(1, chunk // self.views)
        with tqdm(total=len(self.entries), desc=f"read {self.root.name}", unit="img",
                  disable=not self.show_progress) as bar:
            for start in range(0, len(self.entries), per_step):
                part = self.entries[start:start + per_step]
                decoded = _decode_entries(part, self.size, self.plan, "", False)
                images = [view for views in decoded for view in views] if self.plan else decoded
                names = [name for _, name, _ in part for _ in range(self.views)]
                for name, image in zip(names, images, strict=True):
                    if image.shape != self.shape[1:]:
                        raise DataError(f"{self.root}: images have different sizes ({self.shape[1]}x{self.shape[2]}: "
                                        f"{self.entries[0][1]}; {image.shape[0]}x{image.shape[1]}: {name}); set a "
                                        "size to resize them to (data.size for the dataset)")
                bar.update(len(part))
                yield np.stack(images).astype(np.uint8, copy=False)

    def __array__(self, dtype=None, copy=None):
        images = np.concatenate(list(self.chunks())) if len(self) else np.zeros(self.shape, np.uint8)
        return images if dtype is None else images.astype(dtype)


def image_files(folder: Path) -> list[Path]:
    """The image files under a directory (linked folders entered), sorted: the files its manifest lists."""
    from synthcal.manifest import ManifestError, walk

    try:
        return [folder / relative for relative, _ in walk(folder, IMAGE_SUFFIXES)]
    except ManifestError as error:
        raise DataError(str(error)) from None


def containing_archive(path: Path) -> Path | None:
    """The file an ``archive.tar.gz[/inner/dir]`` path points into (the path itself when it is a file; else None)."""
    return next((candidate for candidate in (path, *path.parents) if candidate.is_file()), None)


def _folder_entries(root: Path) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    """Yield (class folder or '', file name, its bytes' reader) from a directory or ``archive.tar[.gz]/inner/dir``."""
    if root.is_dir():
        for file in image_files(root):
            relative = file.relative_to(root)
            label_dir = relative.parts[0] if len(relative.parts) > 1 else ""
            yield label_dir, str(file), file.read_bytes  # read when decoded: a 50,000-image tree is never held
        return
    archive_path = containing_archive(root)
    inner = str(root.relative_to(archive_path)) if archive_path else ""
    inner = "" if inner == "." else inner  # the path is the tarball itself: its whole tree
    if archive_path is None:
        raise DataError(f"image folder {root} does not exist")
    if not tarfile.is_tarfile(archive_path):
        raise DataError(f"{archive_path} is a file, not a folder of images or a tarball (.tar, .tar.gz) of them")
    prefix = inner.rstrip("/") + "/" if inner else ""
    with tarfile.open(archive_path) as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if not member.isfile() or not name.startswith(prefix) or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            parts = Path(name[len(prefix):]).parts
            data = archive.extractfile(member).read()
            yield (parts[0] if len(parts) > 1 else ""), f"{archive_path}:{name}", lambda data=data: data


def read_image_folder(root: str | os.PathLike, *, labelled: bool | None = None, size=32,
                      classes: list[str] | None = None, show_progress: bool = True,
                      centre_crop: dict | None = None, lazy: bool = False, config_key: str | None = None) -> ImageSet:
    """Read ``root/<class name>/*.png|jpg`` (or loose images when unlabelled).

    Labels index ``classes``: by default CIFAR-10's names, or with ``labelled=True`` the sorted folder names.
    ``labelled=None`` decides from the folder names. ``size`` (int or (H, W)) resizes every image; ``None``
    keeps the files' own size, which must then be the same for all. ``root`` may point inside a tarball:
    ``cifar10-jpeg.tar.gz/cifar10-jpeg/train``. ``centre_crop`` (``crop_plan``'s settings) resizes the shorter
    side and cuts centre crops instead of resizing whole images (ImageNet's evaluation); with several ``views``
    each file gives that many images in a row, all with its label. ``lazy=True``: the images are a
    ``FolderImages``, decoded a chunk at a time when the set is written (a dataset split of any size); its
    errors then start with ``config_key``.
    """
    root = Path(root)
    entries = list(_folder_entries(root))
    if not entries:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    class_dirs = sorted({label_dir for label_dir, _, _ in entries})
    if classes is None:
        classes = [name for name in class_dirs if name] if labelled else list(CIFAR10_CLASSES)
    classes = list(classes)
    if labelled is None:
        known = [name for name in class_dirs if name in classes]
        labelled = bool(known)
        if known and len(known) != len(class_dirs):
            odd = [name for name in class_dirs if name not in classes]
            raise DataError(f"{root}: folders {odd} are not class names {classes} (others are); rename them or "
                            "set labelled: false")
    if labelled:
        unknown = [name or "(images directly under the folder)" for name in class_dirs if name not in classes]
        if unknown:
            raise DataError(f"{root}: folders {unknown} are not class names {classes}")
    entries.sort(key=lambda entry: (_sort_key(entry[1]), entry[0]))
    plan = crop_plan(centre_crop)
    views = len(plan["views"]) if plan else 1
    if lazy:
        if plan:
            image_shape = (*plan["size"], 3)
        elif size is not None:
            image_shape = ((size, size) if isinstance(size, int) else tuple(size)) + (3,)
        else:
            image_shape = decode_image(entries[0][2](), entries[0][1], None).shape
        images = FolderImages(root, entries, size, plan, image_shape, show_progress, config_key)
        labels = np.full(len(images), UNLABELLED, dtype=np.int64)
        if labelled:
            labels[:] = [classes.index(label_dir) for label_dir, _, _ in entries for _ in range(views)]
        return ImageSet(images, labels, _folder_provenance(root, labelled, classes, image_shape[:2], plan, size))
    decoded = _decode_entries(entries, size, plan, f"read {root.name}", show_progress)
    if plan:
        decoded = [view for image_views in decoded for view in image_views]
        entries = [entry for entry in entries for _ in range(views)]
    shapes = {image.shape for image in decoded}
    if len(shapes) > 1:
        examples = {}
        for (_, name, _), image in zip(entries, decoded, strict=True):
            examples.setdefault(image.shape[:2], name)
        listed = "; ".join(f"{h}x{w}: {name}" for (h, w), name in list(examples.items())[:3])
        raise DataError(f"{root}: images have different sizes ({listed}); set a size to resize them to "
                        "(data.size for the dataset)")
    images = np.stack(decoded).astype(np.uint8)
    labels = np.full(len(entries), UNLABELLED, dtype=np.int64)
    if labelled:
        labels[:] = [classes.index(label_dir) for label_dir, _, _ in entries]
    return ImageSet(images, labels, _folder_provenance(root, labelled, classes, images.shape[1:3], plan, size))


def _folder_provenance(root: Path, labelled: bool, classes: list[str], image_size, plan: dict | None, size) -> dict:
    return {"format": "image-folder", "path": str(root), "labelled": labelled,
            "size": list(image_size), "classes": classes if labelled else None,
            "preprocessing": ({"centre_crop": plan} if plan else
                              {"resize": list(size) if isinstance(size, tuple) else size})}


def folder_classes(root: str | os.PathLike) -> list[str]:
    """Sorted class-folder names of an ImageFolder tree (a directory or a folder inside a tarball)."""
    root = Path(root).expanduser()
    if root.is_dir():
        return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    return sorted({label_dir for label_dir, _, _ in _folder_entries(root) if label_dir})


def dataset_classes(source: dict) -> list[str]:
    """The dataset's class names in label order: ``data.classes``, CIFAR-10's, or the train folder's sorted names."""
    if source.get("classes"):
        return list(source["classes"])
    if source.get("source", "download") != "folder":
        return list(CIFAR10_CLASSES)
    folders = source.get("folders") or {}
    split = "train" if folders.get("train") else "test"
    train = folders.get(split)
    if not train:
        raise DataError("data.folders.train is not set (an ImageFolder tree)")
    try:
        classes = folder_classes(train)
    except DataError as error:
        raise DataError(f"data.folders.{split}: {error}") from None
    if not classes:
        raise DataError(f"data.folders.{split}: {train} has no class folders")
    return classes


def load_split(source: dict, split: str, cache_dir: str | os.PathLike, show_progress: bool = True,
               config_key: str | None = None) -> ImageSet:
    """Load one CIFAR-10 split as configured under ``data`` in the config (``config_key``: the key a folder's
    errors name, by default ``data.folders.<split>``)."""
    kind = source.get("source", "download")
    if kind == "download":
        tarball = download(source.get("url", CIFAR10_URL), Path(cache_dir).expanduser() / "cifar-10-python.tar.gz",
                           md5=source.get("md5", CIFAR10_MD5), config_key="data.source: local + data.local_path")
        image_set = read_pickle_batches(tarball, split)
    elif kind == "local":
        path = source.get("local_path")
        if not path or not Path(path).exists():
            raise DataError(
                f"data.local_path {path!r} does not exist (give a cifar-10-python.tar.gz or its extracted folder)"
            )
        image_set = read_pickle_batches(path, split)
    elif kind == "folder":
        folders = source.get("folders") or {}
        if split not in folders:
            raise DataError(f"data.folders.{split} is not set (an ImageFolder tree for the {split} split)")
        size = source.get("size")
        try:
            image_set = read_image_folder(folders[split], labelled=True, classes=dataset_classes(source),
                                          size=tuple(size) if isinstance(size, list) else size,
                                          show_progress=show_progress, centre_crop=source.get("centre_crop"),
                                          lazy=True, config_key=config_key or f"data.folders.{split}")
        except DataError as error:
            raise DataError(f"{config_key or f'data.folders.{split}'}: {error}") from None
    else:
        raise DataError(f"data.source {kind!r} is not one of download, local, folder")
    limit = source.get("limit", {}).get(split) if isinstance(source.get("limit"), dict) else None
    if limit:
        image_set = ImageSet(image_set.images[:limit], image_set.labels[:limit], image_set.provenance)
    image_set.provenance.update({"split": split, "count": len(image_set), "limit": limit,
                                 "classes": image_set.provenance.get("classes") or list(CIFAR10_CLASSES),
                                 "size": list(image_set.images.shape[1:3])})
    return image_set
