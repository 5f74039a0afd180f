"""Manifests of user data (synthcal/manifest.py): rewritten, with a new mtime, exactly when the content changes."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from test_config import base_config  # noqa: F401 - the offline config with stand-in folders

from synthcal import manifest
from synthcal.workflow import ConfigError


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "images"
    for label, index in (("cat", 0), ("cat", 1), ("dog", 2)):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{index}.png").write_bytes(bytes([index]) * 100)
    (root / "notes.txt").write_text("not an image")
    return root


def _update(tree: Path, target: Path) -> tuple[int, dict]:
    """(mtime_ns of the manifest, its content) after an update, its mtime first pushed into the past so that a
    rewrite is seen even within one clock tick."""
    if target.exists():
        os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    manifest.update(tree, target, "data.folders.test", (".png",))
    return target.stat().st_mtime_ns, json.loads(target.read_text())


def _stats(target: Path) -> dict:
    return json.loads(target.with_name(f".{target.stem}.stats.json").read_text())


def test_manifest_lists_images_by_relative_path_size_and_digest(tree, tmp_path):
    target = tmp_path / "m.json"
    _, found = _update(tree, target)
    assert [entry[0] for entry in found["files"]] == ["cat/0.png", "cat/1.png", "dog/2.png"]  # no notes.txt
    assert found["files"][2] == ["dog/2.png", 100, hashlib.sha256(bytes([2]) * 100).hexdigest()]
    size, mtime_ns, _, digest = _stats(target)["dog/2.png"]  # the stat cache beside it
    assert (size, mtime_ns, digest) == (100, (tree / "dog/2.png").stat().st_mtime_ns, found["files"][2][2])


def test_unchanged_tree_is_not_rewritten_and_digests_are_reused(tree, tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    _update(tree, target)
    inode = target.stat().st_ino
    read = []
    monkeypatch.setattr(manifest, "file_digest", lambda path: read.append(path) or "x")
    mtime, _ = _update(tree, target)
    assert read == [] and mtime == 1_000_000_000 and target.stat().st_ino == inode


def test_touch_reads_that_file_again_but_leaves_the_manifest(tree, tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    _, before = _update(tree, target)
    os.utime(tree / "cat" / "1.png", ns=(5 * 10**18, 5 * 10**18))
    read = []
    digest = manifest.file_digest
    monkeypatch.setattr(manifest, "file_digest", lambda path: read.append(Path(path).name) or digest(path))
    mtime, after = _update(tree, target)
    assert read == ["1.png"] and after == before and mtime == 1_000_000_000  # no newer input downstream
    assert _stats(target)["cat/1.png"][1] == 5 * 10**18


@pytest.mark.parametrize("change", ["delete", "add", "relabel", "replace_with_older_copy"])
def test_a_change_of_content_rewrites_it_and_putting_it_back_restores_its_bytes(tree, tmp_path, change):
    target = tmp_path / "m.json"
    _update(tree, target)
    original = target.read_bytes()
    image = tree / "cat" / "1.png"
    saved = image.read_bytes()
    if change == "delete":
        image.unlink()
    elif change == "add":
        (tree / "dog" / "3.png").write_bytes(b"\x03" * 100)
    elif change == "relabel":
        image.rename(tree / "dog" / "1.png")
    else:  # cp -p of a same-size file with an older mtime (what rsync -t and cp -p do)
        replacement = tmp_path / "older.png"
        replacement.write_bytes(b"\x09" * 100)
        old = image.stat().st_mtime_ns - 3600 * 10**9
        os.utime(replacement, ns=(old, old))
        shutil.copy2(replacement, image)
    mtime, _ = _update(tree, target)
    assert target.read_bytes() != original and mtime > 1_000_000_000
    for leftover in (tree / "dog" / "3.png", tree / "dog" / "1.png"):
        leftover.unlink(missing_ok=True)
    image.write_bytes(saved)  # put back (new times): the same bytes, which Snakemake's input checksum sees
    _update(tree, target)
    assert target.read_bytes() == original


def test_a_folder_inside_a_tarball_is_tracked_by_the_tarball(tree, tmp_path):
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(tree, arcname="images")
    target = tmp_path / "m.json"
    manifest.update(f"{archive}/images/cat", target, "calibration.x.path", (".png",))
    found = json.loads(target.read_text())
    assert found["inner"] == "images/cat" and [entry[0] for entry in found["files"]] == ["images.tar.gz"]


def test_a_broken_manifest_or_stat_cache_is_rebuilt(tree, tmp_path):
    target = tmp_path / "m.json"
    target.write_text("{not json")
    _, found = _update(tree, target)
    assert len(found["files"]) == 3
    target.with_name(".m.stats.json").write_text("[1, 2")
    mtime, again = _update(tree, target)
    assert again == found and mtime == 1_000_000_000 and len(_stats(target)) == 3


def test_study_declares_a_manifest_for_every_user_data_source(request, tmp_path, monkeypatch):
    from synthcal.workflow import Study

    monkeypatch.chdir(tmp_path)
    config = copy.deepcopy(request.getfixturevalue("base_config"))
    config["study"].update(methods=["accuracy_aware"], calibration=["folder_jpeg", "noise"])
    config["evaluation"]["sets"]["jpeg10k"]["path"] = str(tmp_path / "extra")
    (tmp_path / "extra" / "cat").mkdir(parents=True)
    study, checked = Study(config), Study(config)
    assert study.data_inputs("test") == ["results/manifests/data/test.json"]
    assert study.evaluation_set_inputs("jpeg10k") == ["results/manifests/evaluation/jpeg10k.json"]
    assert study.calibration_inputs("folder_jpeg") == ["results/manifests/calibration/folder_jpeg.json"]
    assert study.gan_data_inputs("adversarial") == ["results/manifests/gan_training/adversarial.json"]
    assert study.calibration_inputs("noise") == []
    for name in ("data/test", "evaluation/jpeg10k", "calibration/folder_jpeg"):
        assert (tmp_path / "results" / "manifests" / f"{name}.json").is_file()
    shutil.rmtree(tmp_path / "extra")  # gone after the config checks
    with pytest.raises(ConfigError, match=r"^evaluation.sets.jpeg10k.path: .* does not exist$"):
        checked.evaluation_set_inputs("jpeg10k")



def test_walk_lists_the_files_the_reader_reads(tree, tmp_path):
    from synthcal.data import IMAGE_SUFFIXES, image_files

    (tree / "dog" / "UPPER.PNG").write_bytes(b"x")
    (tree / "dog" / ".hidden.png").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "9.png").write_bytes(b"x")
    (tree / "linked").symlink_to(outside, target_is_directory=True)  # a linked (class) folder is entered
    (tree / "cat" / "link.png").symlink_to(outside / "9.png")  # a linked file is read
    walked = [name for name, _ in manifest.walk(tree, IMAGE_SUFFIXES)]
    assert walked == [path.relative_to(tree).as_posix() for path in image_files(tree)]
    assert {"cat/link.png", "dog/UPPER.PNG", "linked/9.png"} <= set(walked)


@pytest.mark.parametrize("fault", ["loop", "same_folder_twice", "broken_link"])
def test_walk_refuses_a_link_loop_a_folder_twice_and_a_broken_image_link(tree, tmp_path, fault):
    from synthcal.data import IMAGE_SUFFIXES, DataError, image_files

    if fault == "loop":
        (tree / "cat" / "back").symlink_to(tree, target_is_directory=True)
        message = r"folders \. and cat/back are one folder through a link \(a loop, or the same images twice\)$"
    elif fault == "same_folder_twice":
        (tree / "kitten").symlink_to(tree / "cat", target_is_directory=True)
        message = r"folders (cat and kitten|kitten and cat) are one folder through a link"
    else:
        (tree / "cat" / "gone.png").symlink_to(tmp_path / "nowhere.png")
        message = rf"cat/gone.png is a broken link \(to {tmp_path / 'nowhere.png'}\)$"
    with pytest.raises(manifest.ManifestError, match=rf"^{tree}: {message}"):
        manifest.walk(tree, IMAGE_SUFFIXES)
    with pytest.raises(DataError, match=rf"^{tree}: {message}"):
        image_files(tree)
    with pytest.raises(manifest.ManifestError, match=rf"^data\.folders\.test: {tree}: {message}"):
        manifest.update(tree, tmp_path / "m.json", "data.folders.test", IMAGE_SUFFIXES)


def test_a_submitted_job_does_not_list_the_whole_studys_data_again():
    from synthcal.workflow import runs_one_submitted_job

    assert runs_one_submitted_job(["snakemake", "--target-jobs", "quantize:model=resnet20", "--mode", "remote"])
    assert runs_one_submitted_job(["snakemake", "--target-jobs=quantize:model=resnet20"])
    assert not runs_one_submitted_job(["snakemake", "--cores", "2", "results/report/index.html"])
