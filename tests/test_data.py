"""CIFAR-10 input: the official pickle batches, checksum-checked download, ImageFolder trees, image-set files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from synthcal.data import (
    CIFAR10_CLASSES,
    PICKLE_BATCHES,
    PICKLE_DIR,
    DataError,
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
