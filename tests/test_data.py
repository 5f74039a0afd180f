"""CIFAR-10 input: the official pickle batches, checksum-checked download, ImageFolder trees, image-set files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import re
import socket
import struct
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image
from tqdm import tqdm

from synthcal.data import (
    CIFAR10_CLASSES,
    CROP_VIEWS,
    PICKLE_BATCHES,
    PICKLE_DIR,
    DataError,
    crop_plan,
    crop_views,
    dataset_classes,
    decode_image,
    download,
    load_split,
    read_image_folder,
    read_pickle_batches,
)
from synthcal.io import UNLABELLED, load_image_set, save_image_set

BATCH_SIZES = {"data_batch_1": 3, "data_batch_2": 2, "data_batch_3": 4, "data_batch_4": 1, "data_batch_5": 2,
               "test_batch": 5}


# --------------------------------------------------------------------------- fixtures


def _write_batch(path: Path, images: np.ndarray, labels: list[int], name: str) -> None:
    """One batch exactly as in the official archive: bytes keys, (N, 3072) uint8 rows of R, G, B planes."""
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))
    batch = {b"batch_label": name.encode(), b"labels": list(labels), b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


@pytest.fixture(scope="module")
def cifar_fixture(tmp_path_factory):
    """A tiny ``cifar-10-batches-py`` folder and its ``cifar-10-python.tar.gz``; returns (root, tarball, truth)."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / PICKLE_DIR
    folder.mkdir()
    rng = np.random.default_rng(0)
    truth = {}
    for name, count in BATCH_SIZES.items():
        images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=count)]
        _write_batch(folder / name, images, labels, name)
        truth[name] = (images, np.array(labels, dtype=np.int64))
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, handle, protocol=2)
    tarball = root / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname=PICKLE_DIR)
    return root, tarball, truth


def _expected(truth: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = PICKLE_BATCHES[split]
    return (np.concatenate([truth[n][0] for n in names]), np.concatenate([truth[n][1] for n in names]))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def http_root(cifar_fixture):
    """Serve the fixture folder on 127.0.0.1 (ephemeral port); yields the base URL."""
    root, _, _ = cifar_fixture
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def class_tree(tmp_path):
    """A labelled ImageFolder tree ``tree/test/<class>/<index>.png``; returns (folder, images by index, labels)."""
    rng = np.random.default_rng(1)
    layout = [(0, "cat"), (1, "airplane"), (2, "truck"), (3, "cat"), (10, "ship")]  # numeric order ≠ folder order
    folder = tmp_path / "tree" / "test"
    pixels, labels = [], []
    for index, cls in layout:
        image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        (folder / cls).mkdir(parents=True, exist_ok=True)
        (folder / cls / f"{index:05d}.png").write_bytes(_png_bytes(image))
        pixels.append(image)
        labels.append(CIFAR10_CLASSES.index(cls))
    return folder, np.stack(pixels), np.array(labels)


# --------------------------------------------------------------------------- pickle batches


@pytest.mark.parametrize("use_tarball", [False, True], ids=["folder", "tarball"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_read_pickle_batches(cifar_fixture, use_tarball, split):
    root, tarball, truth = cifar_fixture
    image_set = read_pickle_batches(tarball if use_tarball else root, split)
    images, labels = _expected(truth, split)
    assert image_set.images.shape == (len(images), 32, 32, 3) and image_set.images.dtype == np.uint8
    np.testing.assert_array_equal(image_set.images, images)
    np.testing.assert_array_equal(image_set.labels, labels)
    assert image_set.labels.dtype == np.int64
    assert image_set.provenance["split"] == split


def test_pickle_layout_is_chw_row_major(cifar_fixture):
    """Pixel (y, x, c) of NHWC is byte c*1024 + y*32 + x of the official row."""
    root, _, _ = cifar_fixture
    with open(root / PICKLE_DIR / "test_batch", "rb") as handle:
        row = pickle.load(handle, encoding="bytes")[b"data"][1]
    image = read_pickle_batches(root / PICKLE_DIR, "test").images[1]  # the extracted folder itself works too
    for y, x, c in [(0, 0, 0), (0, 1, 0), (1, 0, 0), (5, 7, 1), (31, 31, 2)]:
        assert image[y, x, c] == row[c * 1024 + y * 32 + x]


def test_read_pickle_batches_errors(cifar_fixture, tmp_path):
    root, tarball, _ = cifar_fixture
    with pytest.raises(ValueError, match="unknown split 'val'"):
        read_pickle_batches(root, "val")
    with pytest.raises(DataError, match="does not exist"):
        read_pickle_batches(tmp_path / "nowhere", "test")

    broken = tmp_path / PICKLE_DIR
    broken.mkdir()
    for name in PICKLE_BATCHES["train"]:
        if name != "data_batch_3":
            (broken / name).write_bytes((root / PICKLE_DIR / name).read_bytes())
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        read_pickle_batches(tmp_path, "train")

    partial_tar = tmp_path / "partial.tar.gz"
    with tarfile.open(partial_tar, "w:gz") as archive:
        archive.add(broken, arcname=PICKLE_DIR)
    with pytest.raises(DataError, match=f"no member {PICKLE_DIR}/data_batch_3"):
        read_pickle_batches(partial_tar, "train")

    not_a_tar = tmp_path / "junk.tar.gz"
    not_a_tar.write_bytes(b"not a tarball at all")
    with pytest.raises(DataError, match="junk.tar.gz"):
        read_pickle_batches(not_a_tar, "test")
    assert tarball.is_file()


# --------------------------------------------------------------------------- download


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_skips(cifar_fixture, http_root, tmp_path):
    _, tarball, _ = cifar_fixture
    destination = tmp_path / "cache" / "cifar-10-python.tar.gz"
    result = download(f"{http_root}/{tarball.name}", destination, md5=_md5(tarball), retries=1, timeout=10)
    assert result == destination
    assert destination.read_bytes() == tarball.read_bytes()
    assert _leftovers(destination.parent) == [destination.name]  # no .part file left behind

    # A verified copy is not fetched again: an unreachable URL is never contacted.
    mtime = destination.stat().st_mtime_ns
    dead = f"http://127.0.0.1:{_closed_port()}/{tarball.name}"
    assert download(dead, destination, md5=_md5(tarball), retries=1, timeout=5) == destination
    assert destination.stat().st_mtime_ns == mtime


def test_download_wrong_checksum(cifar_fixture, http_root, tmp_path):
    _, tarball, _ = cifar_fixture
    destination = tmp_path / "cache" / "cifar-10-python.tar.gz"
    with pytest.raises(DataError, match="checksum"):
        download(f"{http_root}/{tarball.name}", destination, md5="0" * 32, retries=3, timeout=10)
    assert not destination.exists()
    assert _leftovers(destination.parent) == []


def test_download_replaces_corrupt_copy(cifar_fixture, http_root, tmp_path):
    _, tarball, _ = cifar_fixture
    destination = tmp_path / "cifar-10-python.tar.gz"
    destination.write_bytes(b"truncated")
    download(f"{http_root}/{tarball.name}", destination, md5=_md5(tarball), retries=1, timeout=10)
    assert _md5(destination) == _md5(tarball)


def test_download_unreachable_names_config_key(tmp_path):
    destination = tmp_path / "cache" / "cifar-10-python.tar.gz"
    url = f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz"
    with pytest.raises(DataError) as info:
        download(url, destination, md5="0" * 32, config_key="data.local_path", retries=1, timeout=5)
    message = str(info.value)
    assert "data.local_path" in message and url in message
    assert _leftovers(destination.parent) == []


# --------------------------------------------------------------------------- image folders


def test_read_image_folder_shared_test_order():
    folder = shared_path("data", "cifar10-lossless", "test")
    image_set = read_image_folder(folder, show_progress=False)
    assert len(image_set) == 1000
    assert image_set.images.shape == (1000, 32, 32, 3) and image_set.images.dtype == np.uint8
    assert image_set.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # the official test order
    assert image_set.labelled and image_set.provenance["labelled"] is True


def test_read_image_folder_directory(class_tree):
    folder, pixels, labels = class_tree
    image_set = read_image_folder(folder, show_progress=False)
    np.testing.assert_array_equal(image_set.images, pixels)  # sorted by the numeric file name, across classes
    np.testing.assert_array_equal(image_set.labels, labels)


def test_read_image_folder_inside_tarball(class_tree, tmp_path):
    folder, pixels, labels = class_tree
    archive_path = tmp_path / "pack.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(folder.parent, arcname="pack")  # pack/test/<class>/<n>.png
        extra = _png_bytes(np.zeros((32, 32, 3), dtype=np.uint8))
        info = tarfile.TarInfo("pack/train/dog/00000.png")  # another split: must not leak in
        info.size = len(extra)
        archive.addfile(info, io.BytesIO(extra))
    image_set = read_image_folder(archive_path / "pack" / "test", show_progress=False)
    np.testing.assert_array_equal(image_set.images, pixels)
    np.testing.assert_array_equal(image_set.labels, labels)
    with pytest.raises(DataError, match="no images"):
        read_image_folder(archive_path / "pack" / "val", show_progress=False)


def test_read_image_folder_resizes(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "0.png").write_bytes(_png_bytes(np.full((48, 64, 3), 200, dtype=np.uint8)))
    image_set = read_image_folder(tmp_path, show_progress=False)
    assert image_set.images.shape == (1, 32, 32, 3)
    assert (image_set.images == 200).all()


def test_read_image_folder_corrupt_file(class_tree):
    folder, _, _ = class_tree
    bad = folder / "dog" / "00004.png"
    bad.parent.mkdir()
    bad.write_bytes(np.random.default_rng(2).integers(0, 256, size=500, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="00004.png") as info:
        read_image_folder(folder, show_progress=False)
    assert str(bad) in str(info.value)


def test_read_image_folder_unknown_class(class_tree):
    folder, _, _ = class_tree
    (folder / "kangaroo").mkdir()
    (folder / "kangaroo" / "00099.png").write_bytes(_png_bytes(np.zeros((32, 32, 3), dtype=np.uint8)))
    with pytest.raises(DataError, match="kangaroo"):
        read_image_folder(folder, labelled=True, classes=list(CIFAR10_CLASSES), show_progress=False)
    with pytest.raises(DataError, match="kangaroo"):
        load_split({"source": "folder", "classes": list(CIFAR10_CLASSES), "folders": {"test": str(folder)}}, "test",
                   cache_dir=folder)
    # without a class list the dataset's classes are its sorted folder names: kangaroo is one of them
    image_set = read_image_folder(folder, labelled=True, show_progress=False)
    classes = image_set.provenance["classes"]
    assert "kangaroo" in classes and classes == sorted(classes)
    assert image_set.labels[-1] == classes.index("kangaroo")


def test_read_image_folder_unlabelled_flat(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    for index, image in enumerate(pixels):
        (tmp_path / f"{index}.png").write_bytes(_png_bytes(image))
    (tmp_path / "notes.txt").write_text("not an image")  # ignored
    image_set = read_image_folder(tmp_path, show_progress=False)
    assert image_set.labels.tolist() == [UNLABELLED] * 3
    assert not image_set.labelled and image_set.provenance["labelled"] is False
    np.testing.assert_array_equal(image_set.images, pixels)


def test_read_image_folder_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_image_folder(tmp_path / "missing" / "test", show_progress=False)


# --------------------------------------------------------------------------- load_split


def test_load_split_local_with_limit(cifar_fixture, tmp_path):
    root, tarball, truth = cifar_fixture
    images, labels = _expected(truth, "train")
    for path in (root, tarball):
        source = {"source": "local", "local_path": str(path), "limit": {"train": 4, "test": None}}
        train = load_split(source, "train", cache_dir=tmp_path)
        np.testing.assert_array_equal(train.images, images[:4])
        np.testing.assert_array_equal(train.labels, labels[:4])
        assert train.provenance["count"] == 4 and train.provenance["limit"] == 4
        test = load_split(source, "test", cache_dir=tmp_path)
        assert len(test) == BATCH_SIZES["test_batch"] and test.provenance["limit"] is None
    with pytest.raises(DataError, match="data.local_path"):
        load_split({"source": "local", "local_path": str(tmp_path / "nope")}, "test", cache_dir=tmp_path)


def test_load_split_folder_with_limit(class_tree, tmp_path):
    folder, pixels, labels = class_tree
    source = {"source": "folder", "folders": {"test": str(folder)}, "limit": {"test": 2},
              "classes": list(CIFAR10_CLASSES)}
    image_set = load_split(source, "test", cache_dir=tmp_path, show_progress=False)
    np.testing.assert_array_equal(image_set.images, pixels[:2])
    np.testing.assert_array_equal(image_set.labels, labels[:2])
    assert image_set.provenance["split"] == "test" and image_set.provenance["count"] == 2
    with pytest.raises(DataError, match="data.folders.train"):
        load_split(source, "train", cache_dir=tmp_path)
    with pytest.raises(DataError, match="data.source"):
        load_split({"source": "ftp"}, "test", cache_dir=tmp_path)


def test_load_split_download(cifar_fixture, http_root, tmp_path):
    _, tarball, truth = cifar_fixture
    source = {"source": "download", "url": f"{http_root}/{tarball.name}", "md5": _md5(tarball)}
    image_set = load_split(source, "test", cache_dir=tmp_path)
    np.testing.assert_array_equal(image_set.images, truth["test_batch"][0])
    assert (tmp_path / "cifar-10-python.tar.gz").is_file()


# --------------------------------------------------------------------------- image-set files


def test_save_image_set_is_deterministic(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=6)
    provenance = {"b": 1, "a": {"path": Path("x/y"), "n": np.int64(3)}}
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    save_image_set(first, images, labels, provenance)
    save_image_set(second, images.copy(), labels.tolist(), dict(reversed(list(provenance.items()))))
    assert first.read_bytes() == second.read_bytes()
    save_image_set(first, images, labels, provenance)  # overwrite in place: same bytes again
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.npz", "second.npz"]

    loaded = load_image_set(first)
    np.testing.assert_array_equal(loaded.images, images)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.labels.dtype == np.int64
    assert loaded.provenance == {"a": {"n": 3, "path": "x/y"}, "b": 1}

    unlabelled = tmp_path / "unlabelled.npz"
    save_image_set(unlabelled, images, None, {})
    assert load_image_set(unlabelled).labels.tolist() == [UNLABELLED] * 6


def test_image_set_errors(tmp_path):
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        save_image_set(tmp_path / "f.npz", images.astype(np.float32), None, {})
    with pytest.raises(ValueError, match="labels"):
        save_image_set(tmp_path / "f.npz", images, [0, 1, 2], {})
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.ones(3))
    with pytest.raises(ValueError, match="not a synthcal image set"):
        load_image_set(other)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_image_set(junk)
    with pytest.raises(FileNotFoundError):
        load_image_set(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- untrusted input (issue 23)


class _RunsCode:
    """Unpickling this calls os.system: what a crafted data_batch_1 could do with plain pickle.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_pickle_batch_cannot_run_code(cifar_fixture, tmp_path):
    root, _, _ = cifar_fixture
    folder = tmp_path / PICKLE_DIR
    folder.mkdir()
    marker = tmp_path / "code-ran"
    data = np.zeros((1, 3072), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"labels": [0], b"data": data, b"filenames": [_RunsCode(marker)]}, handle, protocol=2)
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 pickle batch.*refusing to load .*system"):
        read_pickle_batches(tmp_path, "test")
    assert not marker.exists()
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname=PICKLE_DIR)
    with pytest.raises(DataError, match="refusing to load"):
        read_pickle_batches(tarball, "test")
    assert not marker.exists()


def test_pickle_batch_as_numpy1_wrote_it(cifar_fixture, tmp_path):
    """The official batches name NumPy 1's ``numpy.core.multiarray._reconstruct``; it still loads (and only it)."""
    root, _, truth = cifar_fixture
    folder = tmp_path / PICKLE_DIR
    folder.mkdir()
    original = (root / PICKLE_DIR / "test_batch").read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in original  # GLOBAL opcode: module and name on two lines
    (folder / "test_batch").write_bytes(original.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    image_set = read_pickle_batches(tmp_path, "test")
    np.testing.assert_array_equal(image_set.images, truth["test_batch"][0])


def _png16(pixels: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG (Pillow reads it as mode I;16)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 255, 256, 4096], [32768, 40000, 65280, 65535]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "0.png").write_bytes(_png16(grey))
    with Image.open(tmp_path / "cat" / "0.png") as image:
        assert image.mode == "I;16"
    image_set = read_image_folder(tmp_path, size=None, show_progress=False)
    expected = (grey >> 8).astype(np.uint8)  # the high byte, as Pillow reads 16-bit colour PNGs
    for channel in range(3):
        np.testing.assert_array_equal(image_set.images[0, ..., channel], expected)
    assert image_set.images[0, 0, 8, 0] == 0 and image_set.images[0, 8, 0, 0] == 128  # was 255 (clipped)


def test_folder_path_may_be_the_tarball_itself(class_tree, tmp_path):
    folder, pixels, labels = class_tree
    archive_path = tmp_path / "classes.tar"
    with tarfile.open(archive_path, "w") as archive:
        for class_dir in folder.iterdir():
            archive.add(class_dir, arcname=class_dir.name)  # <class>/<n>.png at the archive's root
    image_set = read_image_folder(archive_path, show_progress=False)
    np.testing.assert_array_equal(image_set.images, pixels)
    np.testing.assert_array_equal(image_set.labels, labels)


def test_a_folder_split_is_built_a_chunk_at_a_time_with_the_eager_bytes(class_tree, tmp_path, monkeypatch):
    import synthcal.io as synthcal_io

    folder, pixels, labels = class_tree
    source = {"source": "folder", "folders": {"test": str(folder)}, "classes": list(CIFAR10_CLASSES),
              "centre_crop": {"size": 24, "views": 3}}
    lazy = load_split(source, "test", cache_dir=tmp_path, show_progress=False)
    assert type(lazy.images).__name__ == "FolderImages" and lazy.images.shape == (15, 24, 24, 3)
    np.testing.assert_array_equal(lazy.labels, np.repeat(labels, 3))
    eager = read_image_folder(folder, labelled=True, classes=list(CIFAR10_CLASSES), show_progress=False,
                              centre_crop=source["centre_crop"])
    monkeypatch.setattr(synthcal_io, "WRITE_CHUNK_IMAGES", 6)  # 2 files (6 views) per chunk: 3 chunks
    chunks = list(lazy.images.chunks(6))
    assert [len(chunk) for chunk in chunks] == [6, 6, 3]
    save_image_set(tmp_path / "lazy.npz", lazy.images, lazy.labels, eager.provenance)
    save_image_set(tmp_path / "eager.npz", eager.images, eager.labels, eager.provenance)
    assert (tmp_path / "lazy.npz").read_bytes() == (tmp_path / "eager.npz").read_bytes()
    limited = load_split(source | {"limit": {"test": 6}}, "test", cache_dir=tmp_path, show_progress=False)
    assert type(limited.images).__name__ == "FolderImages"
    np.testing.assert_array_equal(np.asarray(limited.images), eager.images[:6])


def test_a_lazy_folder_names_the_image_of_another_size(class_tree, tmp_path):
    folder, _, _ = class_tree
    odd = folder / "ship" / "00011.png"
    odd.write_bytes(_png_bytes(np.zeros((16, 32, 3), np.uint8)))
    lazy = read_image_folder(folder, labelled=True, size=None, show_progress=False, lazy=True)
    with pytest.raises(DataError, match="00011.png"):
        save_image_set(tmp_path / "set.npz", lazy.images, lazy.labels, lazy.provenance)
    assert not (tmp_path / "set.npz").exists()


# --------------------------------------------------------------------------- download: retries, messages, progress


def _exact(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly ``message``."""
    return "^" + re.escape(message) + "$"


def _bar_lines(err: str) -> list[str]:
    """tqdm's redraws in captured stderr: split at carriage returns and newlines, blanks dropped."""
    return [line.rstrip() for line in re.split(r"[\r\n]", err) if line.strip()]


class _TestServerHandler(_QuietHandler):
    """/fail: HTTP 500; /nolength/<file>: the file with no Content-Length; /slow: 2 MiB, the first half late;
    anything else: the fixture folder. Every request path is recorded in ``server.hits``."""

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path == "/fail":
            self.send_error(500)
        elif self.path.startswith("/nolength/"):
            data = (Path(self.directory) / self.path.removeprefix("/nolength/")).read_bytes()
            self.send_response(200)
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            self.wfile.write(data)
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", str(2 << 20))
            self.end_headers()
            self.wfile.flush()
            time.sleep(0.5)  # the progress bar redraws after 0.1 s: it shows the first MiB on its own
            self.wfile.write(bytes(1 << 20))
            self.wfile.flush()
            self.wfile.write(bytes(1 << 20))
        else:
            super().do_GET()


@pytest.fixture(scope="module")
def test_server(cifar_fixture):
    """Like ``http_root`` with the special paths of ``_TestServerHandler``; yields (base URL, hits list)."""
    root, _, _ = cifar_fixture
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_TestServerHandler, directory=str(root)))
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def sleeps(monkeypatch):
    """time.sleep recorded instead of slept (the retry back-off)."""
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


@pytest.fixture
def urlopen_timeouts(monkeypatch):
    """The ``timeout`` every urlopen call gets ("none given" when left out); the real urlopen still runs."""
    real, timeouts = urllib.request.urlopen, []

    def spy(url, *args, **kwargs):
        timeouts.append(kwargs.get("timeout", "none given"))
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", spy)
    return timeouts


def test_download_retries_with_exponential_backoff_and_names_the_last_error(test_server, tmp_path, sleeps,
                                                                             urlopen_timeouts):
    base, hits = test_server
    url = f"{base}/fail"
    hits.clear()
    with pytest.raises(DataError, match=_exact(f"could not download {url} after 4 tries "
                                               "(HTTP Error 500: Internal Server Error).")):
        download(url, tmp_path / "x.tar.gz", retries=4, timeout=7)
    assert hits == ["/fail"] * 4 and sleeps == [2, 4, 8] and urlopen_timeouts == [7] * 4
    assert _leftovers(tmp_path) == []


def test_download_defaults_to_3_tries_and_a_60_s_timeout(test_server, tmp_path, sleeps, urlopen_timeouts):
    base, hits = test_server
    url = f"{base}/fail"
    hits.clear()
    with pytest.raises(DataError, match=_exact(f"could not download {url} after 3 tries "
                                               "(HTTP Error 500: Internal Server Error).")):
        download(url, tmp_path / "x.tar.gz")
    assert hits == ["/fail"] * 3 and sleeps == [2, 4] and urlopen_timeouts == [60.0] * 3


def test_download_with_no_tries_fetches_nothing(test_server, tmp_path, sleeps):
    base, hits = test_server
    hits.clear()
    with pytest.raises(DataError, match=_exact(f"could not download {base}/fail after 0 tries (None).")):
        download(f"{base}/fail", tmp_path / "x.tar.gz", retries=0)
    assert hits == [] and sleeps == []


def test_download_checksum_mismatch_names_expected_and_actual_digests(cifar_fixture, http_root, tmp_path):
    _, tarball, _ = cifar_fixture
    url = f"{http_root}/{tarball.name}"
    md5, sha256 = _md5(tarball), hashlib.sha256(tarball.read_bytes()).hexdigest()
    expected = {"md5": md5, "sha256": "f" * 64}  # the md5 matches, the sha256 does not
    got = {"md5": md5, "sha256": sha256}
    with pytest.raises(DataError, match=_exact(f"checksum mismatch for {url}: expected {expected}, got {got}")):
        download(url, tmp_path / "a.tar.gz", md5=md5, sha256="f" * 64, retries=1)
    with pytest.raises(DataError, match=_exact(f"checksum mismatch for {url}: expected {{'md5': '{'0' * 32}'}}, "
                                               f"got {{'md5': '{md5}'}}")):
        download(url, tmp_path / "a.tar.gz", md5="0" * 32, retries=1)
    assert _leftovers(tmp_path) == []
    # a sha256 alone verifies too, given in upper case as some sites print it
    assert download(url, tmp_path / "b.tar.gz", sha256=sha256.upper(), retries=1).read_bytes() == tarball.read_bytes()


def test_download_progress_bar_counts_bytes_of_the_content_length(cifar_fixture, test_server, tmp_path, capsys):
    base, _ = test_server
    _, tarball, _ = cifar_fixture
    size = tqdm.format_sizeof(tarball.stat().st_size)  # e.g. "55.3k"
    assert size[-1] == "k"
    download(f"{base}/{tarball.name}", tmp_path / "c.tar.gz", retries=1)
    lines = _bar_lines(capsys.readouterr().err)
    assert lines[0].startswith("download c.tar.gz:   0%|")
    assert re.fullmatch(rf"download c\.tar\.gz: 100%\|.*\| {re.escape(size)}/{re.escape(size)} \[.*, .*B/s\]",
                        lines[-1]), lines

    # no Content-Length: a bar with no total (no percentage), still counting bytes
    download(f"{base}/nolength/{tarball.name}", tmp_path / "d.tar.gz", retries=1)
    assert (tmp_path / "d.tar.gz").read_bytes() == tarball.read_bytes()
    lines = _bar_lines(capsys.readouterr().err)
    assert lines and not any("%" in line for line in lines), lines
    assert re.fullmatch(rf"download d\.tar\.gz: {re.escape(size)}B \[.*B/s\]", lines[-1]), lines


def test_download_reads_and_reports_a_mebibyte_at_a_time(test_server, tmp_path, capsys):
    base, _ = test_server
    download(f"{base}/slow", tmp_path / "slow.bin", retries=1)
    assert (tmp_path / "slow.bin").stat().st_size == 2 << 20
    half, whole = tqdm.format_sizeof(1 << 20), tqdm.format_sizeof(2 << 20)
    lines = _bar_lines(capsys.readouterr().err)
    assert any(f"| {half}/{whole} [" in line for line in lines), lines  # the bar moved after the first MiB


def test_download_unreachable_without_config_key_has_no_hint(tmp_path, sleeps):
    url = f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz"
    with pytest.raises(DataError, match=rf"^could not download {re.escape(url)} after 2 tries \(.*refused.*\)\.$"):
        download(url, tmp_path / "x.tar.gz", retries=2, timeout=5)
    assert sleeps == [2]


# --------------------------------------------------------------------------- pickle batches: shapes, types, messages


class _Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 ``str`` (BINSTRING), as the official batches (written by Python 2) hold them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_str


def _batch_files(tmp_path: Path, batch, python2: bool = False) -> tuple[Path, Path]:
    """``batch`` pickled as test_batch: the folder holding ``cifar-10-batches-py`` and a tarball of it."""
    folder = tmp_path / PICKLE_DIR
    folder.mkdir()
    with open(folder / "test_batch", "wb") as handle:
        (_Python2Pickler if python2 else pickle.Pickler)(handle, protocol=2).dump(batch)
    tarball = tmp_path / "batches.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname=PICKLE_DIR)
    return tmp_path, tarball


def _batch_name(tmp_path: Path, use_tarball: bool) -> str:
    """How messages name test_batch: its path, or ``tarball:member``."""
    if use_tarball:
        return f"{tmp_path / 'batches.tar.gz'}:{PICKLE_DIR}/test_batch"
    return str(tmp_path / PICKLE_DIR / "test_batch")


def test_a_batch_written_by_python2_loads_with_its_str_keys_and_data(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)  # bytes >= 128: not ASCII
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [3, 7], b"data": data}
    root, tarball = _batch_files(tmp_path, batch, python2=True)
    assert b"_codecs" not in (root / PICKLE_DIR / "test_batch").read_bytes()  # str, not Python 3 bytes
    for path in (root, tarball):
        image_set = read_pickle_batches(path, "test")
        np.testing.assert_array_equal(image_set.images, data.reshape(2, 3, 32, 32).transpose(0, 2, 3, 1))
        assert image_set.labels.tolist() == [3, 7]
        assert image_set.provenance == {"format": "cifar10-python", "path": str(path), "split": "test"}


def test_a_batch_with_str_keys_and_other_dtypes_is_cast(tmp_path):
    """A re-pickle under Python 3 may have str keys, int64 pixels and uint8 labels: uint8 / int64 all the same."""
    pixels = np.arange(3072, dtype=np.int64).reshape(1, 3072) % 256
    root, _ = _batch_files(tmp_path, {"data": pixels, "labels": np.array([9], dtype=np.uint8)})
    image_set = read_pickle_batches(root, "test")
    assert image_set.images.dtype == np.uint8 and image_set.labels.dtype == np.int64
    assert image_set.images[0, 0, 1, 0] == 1 and image_set.images[0, 0, 0, 2] == 2048 % 256
    assert image_set.labels.tolist() == [9]


@pytest.mark.parametrize("use_tarball", [False, True], ids=["folder", "tarball"])
def test_a_batch_that_is_not_a_dict_is_named(tmp_path, use_tarball):
    root, tarball = _batch_files(tmp_path, [1, 2, 3])
    name = _batch_name(tmp_path, use_tarball)
    with pytest.raises(DataError, match=_exact(f"{name} is not a CIFAR-10 pickle batch (it holds a list, not a dict)")):
        read_pickle_batches(tarball if use_tarball else root, "test")


@pytest.mark.parametrize("use_tarball", [False, True], ids=["folder", "tarball"])
def test_a_batch_naming_another_global_is_refused_with_the_name(tmp_path, use_tarball):
    folder = tmp_path / PICKLE_DIR
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"\x80\x02cbuiltins\neval\nq\x00.")  # GLOBAL builtins.eval
    tarball = tmp_path / "batches.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname=PICKLE_DIR)
    name = _batch_name(tmp_path, use_tarball)
    message = (f"{name} is not a CIFAR-10 pickle batch (refusing to load builtins.eval: a CIFAR-10 batch holds only "
               "NumPy arrays, lists and bytes)")
    with pytest.raises(DataError, match=_exact(message)):
        read_pickle_batches(tarball if use_tarball else tmp_path, "test")


@pytest.mark.parametrize("use_tarball", [False, True], ids=["folder", "tarball"])
def test_a_batch_without_labels_is_named(tmp_path, use_tarball):
    root, tarball = _batch_files(tmp_path, {b"data": np.zeros((1, 3072), np.uint8)})
    name = _batch_name(tmp_path, use_tarball)
    with pytest.raises(DataError, match=_exact(f"{name} is not a CIFAR-10 pickle batch (missing 'labels')")):
        read_pickle_batches(tarball if use_tarball else root, "test")


@pytest.mark.parametrize("use_tarball", [False, True], ids=["folder", "tarball"])
@pytest.mark.parametrize(("shape", "labels"), [((1, 3000), [0]), ((2, 3072), [0]), ((3072,), [0]),
                                               ((1, 2, 3072), [0])])
def test_a_batch_of_the_wrong_shape_is_named(tmp_path, use_tarball, shape, labels):
    root, tarball = _batch_files(tmp_path, {b"data": np.zeros(shape, np.uint8), b"labels": labels})
    name = _batch_name(tmp_path, use_tarball)
    with pytest.raises(DataError, match=_exact(f"{name} has data of shape {shape}, expected (N, 3072) with N labels")):
        read_pickle_batches(tarball if use_tarball else root, "test")


def test_read_pickle_batches_messages_are_whole(cifar_fixture, tmp_path):
    root, _, _ = cifar_fixture
    with pytest.raises(ValueError, match=_exact("unknown split 'val'; expected one of ['test', 'train']")):
        read_pickle_batches(root, "val")
    with pytest.raises(DataError, match=_exact(f"{tmp_path / 'nowhere'} does not exist")):
        read_pickle_batches(tmp_path / "nowhere", "test")
    with pytest.raises(DataError, match=_exact(f"{tmp_path / 'data_batch_1'} is missing (expected the official "
                                               "CIFAR-10 python batches)")):
        read_pickle_batches(tmp_path, "train")
    image_set = read_pickle_batches(root, "train")
    assert image_set.provenance == {"format": "cifar10-python", "path": str(root), "split": "train"}


# --------------------------------------------------------------------------- decoding, modes, centre crops


def _encoded(pixels: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def test_decode_image_resizes_bilinearly_to_32_by_default():
    pixels = np.random.default_rng(6).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(decode_image(_encoded(pixels), "a.png"), expected)
    # (H, W) sizes: 20 rows of 30
    expected = np.asarray(Image.fromarray(pixels).resize((30, 20), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(decode_image(_encoded(pixels), "a.png", size=(20, 30)), expected)
    np.testing.assert_array_equal(decode_image(_encoded(pixels), "a.png", size=None), pixels)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decode_image_refuses_more_pixels_than_pillows_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1200)
    at_limit = np.zeros((30, 40, 3), np.uint8)  # 1200 pixels: allowed
    assert decode_image(_encoded(at_limit), "ok.png", size=None).shape == (30, 40, 3)
    with pytest.raises(DataError, match=_exact("cannot read image big.png: 41x30 pixels is more than 1200 "
                                               "(a decompression bomb?)")):
        decode_image(_encoded(np.zeros((30, 41, 3), np.uint8)), "big.png", size=None)


def test_decode_image_refuses_32_bit_and_float_pixels_naming_the_file():
    over = _encoded(np.array([[0, 65536], [7, 9]], dtype=np.int32), "TIFF")  # mode I, one value above 16 bits
    with pytest.raises(DataError, match=_exact("cannot read image over.tif: mode I values 0..65536 are not 16-bit; "
                                               "give 8- or 16-bit images")):
        decode_image(over, "over.tif", size=None)
    negative = _encoded(np.array([[-1, 5]], dtype=np.int32), "TIFF")
    with pytest.raises(DataError, match=_exact("cannot read image neg.tif: mode I values -1..5 are not 16-bit; "
                                               "give 8- or 16-bit images")):
        decode_image(negative, "neg.tif", size=None)
    in_range = _encoded(np.array([[0, 65535, 256]], dtype=np.int32), "TIFF")  # 32-bit container, 16-bit values
    np.testing.assert_array_equal(decode_image(in_range, "ok.tif", size=None)[..., 0], [[0, 255, 1]])
    floats = _encoded(np.array([[0.5, 1.0]], dtype=np.float32), "TIFF")
    with pytest.raises(DataError, match=_exact("cannot read image f.tif: floating-point pixels (mode F); "
                                               "give 8- or 16-bit images")):
        decode_image(floats, "f.tif", size=None)


def test_crop_plan_defaults_and_settings():
    assert crop_plan(None) is None and crop_plan({}) is None
    assert crop_plan({"ratio": 0.875}) == {"size": [224, 224], "resize_shorter": 256, "ratio": 0.875,
                                           "interpolation": "bilinear", "views": ["centre"]}
    assert crop_plan({"size": [200, 100], "ratio": 0.5, "interpolation": "nearest", "views": 10}) == {
        "size": [200, 100], "resize_shorter": 400, "ratio": 0.5, "interpolation": "nearest",
        "views": ["centre", "centre_flip", "top_left", "bottom_right", "top_right_flip", "bottom_left_flip",
                  "top_right", "bottom_left", "top_left_flip", "bottom_right_flip"]}
    plan = crop_plan({"size": [100, 60], "resize": 300, "ratio": 1, "views": 1, "interpolation": "area"})
    assert plan == {"size": [100, 60], "resize_shorter": 300, "ratio": 1.0, "interpolation": "area",
                    "views": ["centre"]}


@pytest.mark.parametrize(("settings", "message"), [
    ({"ratio": 0}, "centre_crop.ratio must be in (0, 1], got 0.0"),
    ({"ratio": 1.01}, "centre_crop.ratio must be in (0, 1], got 1.01"),
    ({"interpolation": "lanczos"},
     "centre_crop.interpolation must be one of ['area', 'bicubic', 'bilinear', 'nearest'], got 'lanczos'"),
    ({"views": 0}, "centre_crop.views must be 1..10, got 0"),
    ({"views": 11}, "centre_crop.views must be 1..10, got 11"),
])
def test_crop_plan_rejects_bad_settings_naming_the_key(settings, message):
    with pytest.raises(DataError, match=_exact(message)):
        crop_plan({"size": 24} | settings)


def test_crop_views_cut_the_centre_the_corners_and_their_mirrors():
    pixels = np.random.default_rng(7).integers(0, 256, size=(30, 47, 3), dtype=np.uint8)
    # shorter side already 30: no resize; 19x32 crops leave 11 rows and 15 columns to spare (odd: halves round down)
    plan = crop_plan({"size": [19, 32], "resize": 30, "views": 10, "interpolation": "nearest"})
    views = crop_views(Image.fromarray(pixels), plan, "a.png")
    corners = {"centre": (5, 7), "top_left": (0, 0), "bottom_right": (11, 15), "top_right": (0, 15),
               "bottom_left": (11, 0)}
    assert len(views) == 10
    for view, crop in zip(plan["views"], views, strict=True):
        top, left = corners[view.removesuffix("_flip")]
        expected = pixels[top:top + 19, left:left + 32]
        np.testing.assert_array_equal(crop, expected[:, ::-1] if view.endswith("_flip") else expected, err_msg=view)
        assert crop.dtype == np.uint8


def test_crop_views_resize_the_shorter_side_with_the_plans_interpolation():
    pixels = np.random.default_rng(8).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    (crop,) = crop_views(image, crop_plan({"size": [20, 30], "resize": 24}), "a.png")  # 64x48 -> 32x24
    resized = np.asarray(image.resize((32, 24), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(crop, resized[2:22, 1:31])
    (crop,) = crop_views(image, crop_plan({"size": [20, 30], "resize": 24, "interpolation": "bicubic"}), "a.png")
    np.testing.assert_array_equal(crop, np.asarray(image.resize((32, 24), Image.Resampling.BICUBIC))[2:22, 1:31])
    # down to one pixel: every view is that pixel
    tiny = Image.fromarray(np.array([[[0, 0, 0], [200, 100, 50]], [[90, 30, 250], [10, 220, 40]]], np.uint8))
    views = crop_views(tiny, crop_plan({"size": 1, "resize": 1, "views": 4}), "t.png")
    for view in views:
        np.testing.assert_array_equal(view, np.asarray(tiny.resize((1, 1), Image.Resampling.BILINEAR)))


def test_a_crop_as_large_as_the_resized_image_is_the_image():
    pixels = np.random.default_rng(9).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    views = crop_views(Image.fromarray(pixels), crop_plan({"size": [30, 40], "resize": 30, "views": 5}), "a.png")
    for view, crop in zip(CROP_VIEWS, views, strict=False):
        np.testing.assert_array_equal(crop, pixels[:, ::-1] if view.endswith("_flip") else pixels)


@pytest.mark.parametrize(("size", "shown"), [([20, 41], "20x41"), ([31, 20], "31x20")])
def test_a_crop_wider_or_taller_than_the_resized_image_is_refused(size, shown):
    data = _encoded(np.zeros((30, 40, 3), np.uint8))
    message = (f"cannot crop a.png: a {shown} crop is larger than the image resized to 30x40 (shorter side 30); "
               "lower centre_crop.size or raise centre_crop.resize")
    with pytest.raises(DataError, match=_exact(message)):
        decode_image(data, "a.png", crop=crop_plan({"size": size, "resize": 30}))


# --------------------------------------------------------------------------- image folders: order, messages, provenance


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(pixels))
    return path


def _tar_of(archive_path: Path, files: dict[str, bytes]) -> Path:
    """A tarball holding ``files`` (member name -> bytes) exactly as named."""
    with tarfile.open(archive_path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return archive_path


def test_numbered_files_come_first_in_numeric_order_then_the_rest_by_name(tmp_path):
    pixels = {name: np.full((32, 32, 3), value, np.uint8)
              for value, name in enumerate(["b.png", "10.png", "a.png", "2.png"])}
    for name, image in pixels.items():
        _write_png(tmp_path / name, image)
    image_set = read_image_folder(tmp_path, show_progress=False)
    assert image_set.images[:, 0, 0, 0].tolist() == [3, 1, 2, 0]  # 2, 10, a, b


def test_no_images_message_lists_the_suffixes(tmp_path):
    (tmp_path / "notes.txt").write_text("no image here")
    with pytest.raises(DataError, match=_exact(f"no images (.png, .jpg, .jpeg, .bmp, .webp) found under {tmp_path}")):
        read_image_folder(tmp_path, show_progress=False)


def test_a_folder_that_is_not_a_class_among_class_folders_is_named(class_tree):
    folder, _, _ = class_tree
    _write_png(folder / "misc" / "00020.png", np.zeros((32, 32, 3), np.uint8))
    message = (f"{folder}: folders ['misc'] are not class names {list(CIFAR10_CLASSES)} (others are); rename them or "
               "set labelled: false")
    with pytest.raises(DataError, match=_exact(message)):
        read_image_folder(folder, show_progress=False)


@pytest.mark.parametrize("in_tarball", [False, True], ids=["directory", "tarball"])
def test_loose_images_beside_class_folders_are_named(tmp_path, in_tarball):
    png = _png_bytes(np.zeros((32, 32, 3), np.uint8))
    if in_tarball:
        root = _tar_of(tmp_path / "set.tar", {"set/cat/00000.png": png, "set/00001.png": png}) / "set"
    else:
        root = tmp_path / "set"
        (root / "cat").mkdir(parents=True)
        (root / "cat" / "00000.png").write_bytes(png)
        (root / "00001.png").write_bytes(png)
    with pytest.raises(DataError, match=_exact(f"{root}: folders [''] are not class names {list(CIFAR10_CLASSES)} "
                                               "(others are); rename them or set labelled: false")):
        read_image_folder(root, show_progress=False)
    with pytest.raises(DataError, match=_exact(f"{root}: folders ['(images directly under the folder)'] are not "
                                               "class names ['cat']")):  # labelled: the folder names are the classes
        read_image_folder(root, labelled=True, show_progress=False)


def test_tarball_members_written_with_a_leading_dot_slash(tmp_path):
    pixels = np.random.default_rng(10).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    archive = _tar_of(tmp_path / "dot.tar", {"./cat/00000.png": _png_bytes(pixels[0]),
                                             "./ship/00001.png": _png_bytes(pixels[1])})
    image_set = read_image_folder(archive, show_progress=False)
    assert image_set.labels.tolist() == [CIFAR10_CLASSES.index("cat"), CIFAR10_CLASSES.index("ship")]
    np.testing.assert_array_equal(image_set.images, pixels)
    # a folder inside such a tarball (``tar -cf dot.tar ./pack``), and messages naming members without the "./"
    archive = _tar_of(tmp_path / "inner.tar", {"./pack/test/cat/00000.png": _png_bytes(pixels[0]),
                                               "./pack/test/cat/00001.png": b"not a png"})
    message = (f"cannot read image {archive}:pack/test/cat/00001.png: not an image file Pillow can read (empty, "
               "truncated or another kind of file)")
    with pytest.raises(DataError, match=_exact(message)):
        read_image_folder(archive / "pack" / "test", show_progress=False)


@pytest.mark.parametrize("inner", ["split_X", "split "])  # a name ending in X or in a space is kept as it is
def test_a_folder_inside_a_tarball_is_found_by_its_exact_name(tmp_path, inner):
    pixels = np.random.default_rng(11).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    archive = _tar_of(tmp_path / "pack.tar", {f"pack/{inner}/dog/00000.png": _png_bytes(pixels)})
    image_set = read_image_folder(archive / "pack" / inner, show_progress=False)
    assert image_set.labels.tolist() == [CIFAR10_CLASSES.index("dog")]
    np.testing.assert_array_equal(image_set.images[0], pixels)


def _mixed_sizes(folder: Path, shapes: list[tuple[int, int]]) -> list[Path]:
    """cat/00000.png, dog/00001.png, ... of the given (H, W) shapes."""
    classes = ["cat", "dog"]
    return [_write_png(folder / classes[index % 2] / f"{index:05d}.png", np.zeros((*shape, 3), np.uint8))
            for index, shape in enumerate(shapes)]


def test_images_of_different_sizes_are_named_with_their_sizes(tmp_path):
    files = _mixed_sizes(tmp_path / "two", [(16, 24), (20, 12), (16, 24)])
    message = (f"{tmp_path / 'two'}: images have different sizes (16x24: {files[0]}; 20x12: {files[1]}); set a size "
               "to resize them to (data.size for the dataset)")
    with pytest.raises(DataError, match=_exact(message)):
        read_image_folder(tmp_path / "two", size=None, show_progress=False)
    # at most three sizes are listed, each with its first file
    files = _mixed_sizes(tmp_path / "many", [(16, 24), (20, 12), (16, 24), (8, 8), (10, 10)])
    message = (f"{tmp_path / 'many'}: images have different sizes (16x24: {files[0]}; 20x12: {files[1]}; "
               f"8x8: {files[3]}); set a size to resize them to (data.size for the dataset)")
    with pytest.raises(DataError, match=_exact(message)):
        read_image_folder(tmp_path / "many", size=None, show_progress=False)


def test_a_lazy_folder_names_sizes_and_files_with_its_config_key(tmp_path):
    folder = tmp_path / "two"
    files = _mixed_sizes(folder, [(16, 24), (20, 12), (16, 24)])
    message = (f"{folder}: images have different sizes (16x24: {files[0]}; 20x12: {files[1]}); set a size to resize "
               "them to (data.size for the dataset)")
    lazy = read_image_folder(folder, size=None, show_progress=False, lazy=True)
    assert lazy.images.shape == (3, 16, 24, 3)
    with pytest.raises(DataError, match=_exact(message)):
        np.asarray(lazy.images)
    keyed = read_image_folder(folder, size=None, show_progress=False, lazy=True, config_key="eval.sets.mine")
    for images in (keyed.images, keyed.images[0:3]):  # a slice keeps the key
        with pytest.raises(DataError, match=_exact(f"eval.sets.mine: {message}")):
            np.asarray(images)


def test_a_lazy_folder_whose_first_image_is_corrupt_names_it(tmp_path):
    first = tmp_path / "cat" / "00000.png"
    first.parent.mkdir()
    first.write_bytes(b"not a png")
    _write_png(tmp_path / "cat" / "00001.png", np.zeros((8, 8, 3), np.uint8))
    message = (f"cannot read image {first}: not an image file Pillow can read (empty, truncated or another kind of "
               "file)")
    with pytest.raises(DataError, match=_exact(message)):
        read_image_folder(tmp_path, size=None, show_progress=False, lazy=True)
    with pytest.raises(DataError, match=_exact(message)):
        read_image_folder(tmp_path, show_progress=False)


def _sized_tree(folder: Path, shape=(40, 48)) -> np.ndarray:
    """cat/00000.png .. ship/00002.png of ``shape``: returns the pixels in file order."""
    pixels = np.random.default_rng(12).integers(0, 256, size=(3, *shape, 3), dtype=np.uint8)
    for index, (cls, image) in enumerate(zip(["cat", "ship", "cat"], pixels, strict=True)):
        _write_png(folder / cls / f"{index:05d}.png", image)
    return pixels


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize(("size", "shape", "resize"), [(16, (16, 16), 16), ((12, 20), (12, 20), [12, 20]),
                                                       (None, (40, 48), None)])
def test_read_image_folder_sizes_and_provenance(tmp_path, lazy, size, shape, resize):
    pixels = _sized_tree(tmp_path)
    image_set = read_image_folder(tmp_path, size=size, show_progress=False, lazy=lazy)
    assert image_set.images.shape == (3, *shape, 3)
    expected = [np.asarray(Image.fromarray(image).resize(shape[::-1], Image.Resampling.BILINEAR)) for image in pixels]
    np.testing.assert_array_equal(np.asarray(image_set.images), np.stack(expected))
    np.testing.assert_array_equal(np.asarray(image_set.images[1:3]), np.stack(expected[1:3]))  # lazy: a slice
    assert image_set.labels.tolist() == [3, 8, 3] and image_set.labels.dtype == np.int64
    assert image_set.provenance == {"format": "image-folder", "path": str(tmp_path), "labelled": True,
                                    "size": list(shape), "classes": list(CIFAR10_CLASSES),
                                    "preprocessing": {"resize": resize}}


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_read_image_folder_centre_crop_provenance(tmp_path, lazy):
    _sized_tree(tmp_path)
    image_set = read_image_folder(tmp_path, labelled=True, classes=["cat", "ship"], show_progress=False, lazy=lazy,
                                  centre_crop={"size": [24, 20], "views": 2})
    assert image_set.images.shape == (6, 24, 20, 3) and image_set.labels.tolist() == [0, 0, 1, 1, 0, 0]
    assert image_set.provenance == {
        "format": "image-folder", "path": str(tmp_path), "labelled": True, "size": [24, 20], "classes": ["cat", "ship"],
        "preprocessing": {"centre_crop": {"size": [24, 20], "resize_shorter": 27, "ratio": 0.875,
                                          "interpolation": "bilinear", "views": ["centre", "centre_flip"]}}}


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_unlabelled_folder_provenance_has_no_classes(tmp_path, lazy):
    for index in range(2):
        _write_png(tmp_path / f"{index}.png", np.zeros((32, 32, 3), np.uint8))
    image_set = read_image_folder(tmp_path, show_progress=False, lazy=lazy)
    assert image_set.labels.tolist() == [UNLABELLED] * 2
    assert image_set.provenance == {"format": "image-folder", "path": str(tmp_path), "labelled": False,
                                    "size": [32, 32], "classes": None, "preprocessing": {"resize": 32}}


# --------------------------------------------------------------------------- progress bars, lazy images


def test_reading_a_folder_shows_one_progress_bar_unless_told_not_to(class_tree, capsys):
    folder, pixels, _ = class_tree
    read_image_folder(folder)  # progress is shown by default
    lines = _bar_lines(capsys.readouterr().err)
    assert all(line.startswith("read test: ") for line in lines), lines
    assert re.fullmatch(r"read test: 100%\|.*\| 5/5 \[.*img/s\]", lines[-1]), lines
    read_image_folder(folder, show_progress=False)
    assert capsys.readouterr().err == ""

    lazy = read_image_folder(folder, lazy=True)
    assert capsys.readouterr().err == ""  # nothing is decoded yet
    np.testing.assert_array_equal(np.asarray(lazy.images), pixels)
    lines = _bar_lines(capsys.readouterr().err)
    assert all(line.startswith("read test: ") for line in lines), lines  # one bar: the chunks' own stay quiet
    assert re.fullmatch(r"read test: 100%\|.*\| 5/5 \[.*img/s\]", lines[-1]), lines
    np.asarray(lazy.images[1:3])
    lines = _bar_lines(capsys.readouterr().err)
    assert re.fullmatch(r"read test: 100%\|.*\| 2/2 \[.*img/s\]", lines[-1]), lines
    np.asarray(read_image_folder(folder, lazy=True, show_progress=False).images)
    assert capsys.readouterr().err == ""


def test_lazy_images_index_and_slice_like_an_array(class_tree):
    folder, pixels, _ = class_tree
    images = read_image_folder(folder, show_progress=False, lazy=True).images
    assert len(images) == 5 and images.dtype == np.uint8 and images.ndim == 4
    np.testing.assert_array_equal(images[2], pixels[2])
    np.testing.assert_array_equal(images[-1], pixels[-1])
    stepped = images[0:4:2]
    assert isinstance(stepped, np.ndarray)
    np.testing.assert_array_equal(stepped, pixels[0:4:2])
    for key in (slice(1, 3), slice(0, 3, 1), slice(3, None)):
        part = images[key]
        assert type(part).__name__ == "FolderImages" and part.shape == pixels[key].shape
        np.testing.assert_array_equal(np.asarray(part), pixels[key])
    empty = np.asarray(images[0:0])
    assert empty.shape == (0, 32, 32, 3) and empty.dtype == np.uint8
    whole = np.asarray(images)
    assert whole.dtype == np.uint8
    as_float = np.asarray(images, dtype=np.float32)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, pixels.astype(np.float32))
    assert [len(chunk) for chunk in images.chunks(1)] == [1] * 5
    assert [len(chunk) for chunk in images.chunks(2)] == [2, 2, 1]


def test_lazy_views_slice_only_on_whole_files(class_tree):
    folder, _, _ = class_tree
    crop = {"size": 24, "views": 3}
    lazy = read_image_folder(folder, show_progress=False, lazy=True, centre_crop=crop).images
    eager = read_image_folder(folder, show_progress=False, centre_crop=crop).images
    assert lazy.shape == (15, 24, 24, 3)
    part = lazy[0:4]  # splits a file's views: decoded
    assert isinstance(part, np.ndarray)
    np.testing.assert_array_equal(part, eager[0:4])
    part = lazy[3:9]
    assert type(part).__name__ == "FolderImages" and len(part) == 6
    np.testing.assert_array_equal(np.asarray(part), eager[3:9])
    assert [len(chunk) for chunk in lazy.chunks(2)] == [3] * 5  # at least one file (3 views) per chunk


def test_lazy_images_are_written_256_at_a_time_by_default(tmp_path):
    for index in range(257):
        _write_png(tmp_path / f"{index}.png", np.full((1, 1, 3), index % 256, np.uint8))
    images = read_image_folder(tmp_path, size=1, show_progress=False, lazy=True).images
    chunks = list(images.chunks())
    assert [len(chunk) for chunk in chunks] == [256, 1]
    assert chunks[1][0, 0, 0, 0] == 0 and chunks[0][255, 0, 0, 0] == 255


# --------------------------------------------------------------------------- dataset classes


def test_dataset_classes_from_the_config_cifar10_or_the_train_folder(tmp_path):
    for name in ("train/b", "train/a", "test/c"):
        (tmp_path / name).mkdir(parents=True)
    train, test = str(tmp_path / "train"), str(tmp_path / "test")
    assert dataset_classes({"source": "folder", "classes": ["x", "y"], "folders": {"train": train}}) == ["x", "y"]
    assert dataset_classes({}) == list(CIFAR10_CLASSES)  # the default source: download
    assert dataset_classes({"source": "local"}) == list(CIFAR10_CLASSES)
    assert dataset_classes({"source": "folder", "folders": {"train": train}}) == ["a", "b"]
    assert dataset_classes({"source": "folder", "folders": {"train": train, "test": test}}) == ["a", "b"]
    assert dataset_classes({"source": "folder", "folders": {"test": test}}) == ["c"]  # a test-only dataset
    png = _png_bytes(np.zeros((4, 4, 3), np.uint8))
    archive = _tar_of(tmp_path / "set.tar", {"set/train/z/0.png": png, "set/train/q/1.png": png})
    assert dataset_classes({"source": "folder", "folders": {"train": str(archive / "set" / "train")}}) == ["q", "z"]


def test_dataset_classes_errors_name_the_key(tmp_path):
    for source in ({"source": "folder"}, {"source": "folder", "folders": None}, {"source": "folder", "folders": {}}):
        with pytest.raises(DataError, match=_exact("data.folders.train is not set (an ImageFolder tree)")):
            dataset_classes(source)
    _write_png(tmp_path / "loose.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=_exact(f"data.folders.train: {tmp_path} has no class folders")):
        dataset_classes({"source": "folder", "folders": {"train": str(tmp_path)}})
    archive = _tar_of(tmp_path / "flat.tar", {"0.png": _png_bytes(np.zeros((4, 4, 3), np.uint8))})
    with pytest.raises(DataError, match=_exact(f"data.folders.train: {archive} has no class folders")):
        dataset_classes({"source": "folder", "folders": {"train": str(archive)}})


# --------------------------------------------------------------------------- load_split: sources, defaults, keys


def test_load_split_downloads_by_default_and_checks_the_md5(cifar_fixture, http_root, tmp_path):
    _, tarball, truth = cifar_fixture
    url = f"{http_root}/{tarball.name}"
    image_set = load_split({"url": url, "md5": _md5(tarball)}, "test", cache_dir=tmp_path / "a")  # no source key
    np.testing.assert_array_equal(image_set.images, truth["test_batch"][0])
    assert image_set.provenance["format"] == "cifar10-python"
    assert image_set.provenance["classes"] == list(CIFAR10_CLASSES)
    assert image_set.provenance["size"] == [32, 32] and image_set.provenance["count"] == BATCH_SIZES["test_batch"]
    got = {"md5": _md5(tarball)}
    with pytest.raises(DataError, match=_exact(f"checksum mismatch for {url}: expected {{'md5': '{'0' * 32}'}}, "
                                               f"got {got}")):
        load_split({"source": "download", "url": url, "md5": "0" * 32}, "test", cache_dir=tmp_path / "b")
    # without an md5 the official archive's is expected
    with pytest.raises(DataError, match=_exact(f"checksum mismatch for {url}: expected {{'md5': "
                                               f"'c58f30108f718f92721af3b95e74349a'}}, got {got}")):
        load_split({"source": "download", "url": url}, "test", cache_dir=tmp_path / "c")


def test_load_split_download_failure_points_at_the_local_source(tmp_path, sleeps, monkeypatch):
    requested = []

    def offline(url, *args, **kwargs):  # no network in tests: every request fails as offline
        requested.append((url, kwargs.get("timeout", "none given")))
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    message = ("could not download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz after 3 tries "
               "(<urlopen error offline>). Offline? Set `data.source: local + data.local_path` to a local copy "
               "instead.")
    with pytest.raises(DataError, match=_exact(message)):
        load_split({"source": "download"}, "test", cache_dir=tmp_path)
    assert requested == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", 60.0)] * 3
    assert sleeps == [2, 4] and _leftovers(tmp_path) == []


def test_load_split_messages_name_the_key(tmp_path):
    with pytest.raises(DataError, match=_exact(f"data.local_path '{tmp_path / 'nope'}' does not exist (give a "
                                               "cifar-10-python.tar.gz or its extracted folder)")):
        load_split({"source": "local", "local_path": str(tmp_path / "nope")}, "test", cache_dir=tmp_path)
    with pytest.raises(DataError, match=_exact("data.local_path None does not exist (give a cifar-10-python.tar.gz "
                                               "or its extracted folder)")):
        load_split({"source": "local"}, "test", cache_dir=tmp_path)
    with pytest.raises(DataError, match=_exact("data.folders.train is not set (an ImageFolder tree for the train "
                                               "split)")):
        load_split({"source": "folder", "folders": {"test": str(tmp_path)}}, "train", cache_dir=tmp_path)
    with pytest.raises(DataError, match=_exact("data.source 'ftp' is not one of download, local, folder")):
        load_split({"source": "ftp"}, "test", cache_dir=tmp_path)


def test_load_split_local_limit_may_be_unset(cifar_fixture, tmp_path):
    root, _, _ = cifar_fixture
    for limit in ({}, {"limit": None}, {"limit": {"train": 2}}):
        image_set = load_split({"source": "local", "local_path": str(root)} | limit, "test", cache_dir=tmp_path)
        assert len(image_set) == BATCH_SIZES["test_batch"] and image_set.provenance["limit"] is None
        assert image_set.provenance["classes"] == list(CIFAR10_CLASSES)


def test_load_split_folder_size_classes_and_progress(tmp_path, capsys):
    pixels = _sized_tree(tmp_path / "test")
    source = {"source": "folder", "folders": {"test": str(tmp_path / "test")}, "size": [12, 20]}
    image_set = load_split(source, "test", cache_dir=tmp_path)
    assert capsys.readouterr().err == ""
    assert image_set.images.shape == (3, 12, 20, 3) and image_set.provenance["size"] == [12, 20]
    expected = [np.asarray(Image.fromarray(image).resize((20, 12), Image.Resampling.BILINEAR)) for image in pixels]
    np.testing.assert_array_equal(np.asarray(image_set.images), np.stack(expected))
    assert re.fullmatch(r"read test: 100%\|.*\| 3/3 \[.*img/s\]", _bar_lines(capsys.readouterr().err)[-1])
    # the classes are the train (here: test) folder's, in sorted order
    assert image_set.provenance["classes"] == ["cat", "ship"] and image_set.labels.tolist() == [0, 1, 0]
    quiet = load_split(source, "test", cache_dir=tmp_path, show_progress=False)
    np.asarray(quiet.images)
    assert capsys.readouterr().err == ""


def test_load_split_folder_errors_start_with_the_config_key(class_tree, tmp_path):
    folder, _, _ = class_tree
    _write_png(folder / "ship" / "00011.png", np.zeros((16, 32, 3), np.uint8))
    source = {"source": "folder", "folders": {"test": str(folder)}, "classes": list(CIFAR10_CLASSES), "size": None}
    for config_key, prefix in ((None, "data.folders.test"), ("eval.sets.mine", "eval.sets.mine")):
        image_set = load_split(source, "test", cache_dir=tmp_path, show_progress=False, config_key=config_key)
        with pytest.raises(DataError, match=rf"^{re.escape(prefix)}: {re.escape(str(folder))}: images have different "
                                            rf"sizes \(32x32: .*00000\.png; 16x32: .*00011\.png\)"):
            np.asarray(image_set.images)
    (folder / "kangaroo").mkdir()
    _write_png(folder / "kangaroo" / "00099.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match=_exact(f"data.folders.test: {folder}: folders ['kangaroo'] are not class "
                                               f"names {list(CIFAR10_CLASSES)}")):
        load_split(source, "test", cache_dir=tmp_path)


def test_load_split_folder_images_must_be_in_class_folders(tmp_path):
    _write_png(tmp_path / "test" / "0.png", np.zeros((32, 32, 3), np.uint8))
    source = {"source": "folder", "folders": {"test": str(tmp_path / "test")}, "classes": list(CIFAR10_CLASSES)}
    with pytest.raises(DataError, match=_exact(f"data.folders.test: {tmp_path / 'test'}: folders ['(images directly "
                                               f"under the folder)'] are not class names {list(CIFAR10_CLASSES)}")):
        load_split(source, "test", cache_dir=tmp_path)


def test_file_names_in_messages_keep_letters_and_escape_control_characters():
    from synthcal.data import shown_name

    assert shown_name("a\nb\t.png") == "a\\nb\\t.png"
    assert shown_name("chat_é/ünïcode.png") == "chat_é/ünïcode.png"
    assert shown_name("bell\x07") == "bell\\x07"


def test_a_file_given_as_an_image_folder_and_a_broken_image_link_are_named(tmp_path):
    from synthcal.data import dataset_classes, image_files, read_image_folder

    plain = tmp_path / "notes.txt"
    plain.write_text("not images")
    message = f"{plain} is a file, not a folder of images or a tarball (.tar, .tar.gz) of them"
    with pytest.raises(DataError, match=_exact(message)):
        read_image_folder(plain)
    with pytest.raises(DataError, match=_exact(f"data.folders.test: {message}")):
        dataset_classes({"source": "folder", "folders": {"test": str(plain)}})
    tree = tmp_path / "tree"
    (tree / "cat").mkdir(parents=True)
    (tree / "cat" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    broken = f"{tree}: cat/gone.png is a broken link (to {tmp_path / 'nowhere.png'})"
    with pytest.raises(DataError, match=_exact(broken)):
        image_files(tree)
    with pytest.raises(DataError, match=_exact(broken)):
        read_image_folder(tree)
