"""Issue 34's stale figures, through the real Snakemake: a change to the images behind `data.folders`,
`evaluation.sets` or a calibration folder rebuilds what depends on it and nothing else; an unchanged (or only
touched) tree rebuilds nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_snakemake, shared_path

pytestmark = pytest.mark.slow

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _copy_images(source: Path, target: Path, per_class: int, skip: int) -> None:
    for label in CLASSES:
        (target / label).mkdir(parents=True)
        for file in sorted((source / label).glob("*.png"))[skip:skip + per_class]:
            shutil.copy(file, target / label / file.name)


def _planned(workdir: Path, config: Path) -> set[str]:
    """The rules `snakemake -n` would run (empty: nothing to be done)."""
    dry = run_snakemake(workdir, config, args=("-n",))
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-4000:]
    rules = set(re.findall(r"^(?:local)?rule (\w+):$", output, re.M))
    assert bool(rules) != ("Nothing to be done" in output), output[-3000:]
    return rules


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    lossless = shared_path("data", "cifar10-lossless")
    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    root = tmp_path_factory.mktemp("hostile")
    _copy_images(lossless / "test", root / "test", 4, 0)
    _copy_images(lossless / "test", root / "extra", 2, 4)
    _copy_images(lossless / "train", root / "calib", 2, 0)
    config = {
        "study": {"models": ["resnet20"], "calibration": ["mine"], "methods": ["default"], "test_sets": ["extra"]},
        "data": {"source": "folder", "folders": {"test": str(root / "test")}},
        "models": {"resnet20": {"weights": {"source": "path", "path": str(weights)}}},
        "calibration": {"mine": {"kind": "folder", "path": str(root / "calib")}},
        "evaluation": {"sets": {"extra": {"source": "folder", "path": str(root / "extra")}}},
        "timing": {"repeats": 5},
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    workdir = root / "work"
    workdir.mkdir()
    run = run_snakemake(workdir, config_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return root, workdir, config_path


def _run(workdir: Path, config: Path) -> Path:
    run = run_snakemake(workdir, config)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return workdir / "results"


def test_each_change_rebuilds_what_depends_on_it_and_nothing_else(study, tmp_path):
    """One study, changed step by step (each step's plan checked before it runs)."""
    root, workdir, config = study
    assert _planned(workdir, config) == set()
    for file in root.rglob("*.png"):  # new mtimes, same bytes (a copy, a re-extraction)
        os.utime(file)
    assert _planned(workdir, config) == set()

    # another cache folder (nothing is downloaded here): only the report, which quotes the config
    elsewhere = tmp_path / "cache.yaml"
    elsewhere.write_text(yaml.safe_dump(yaml.safe_load(config.read_text()) | {"cache_dir": str(tmp_path / "cache")}))
    assert _planned(workdir, elsewhere) <= {"report", "all"}

    # a class folder replaced by a link to the same images: nothing; a broken image link: refused before the DAG
    store = tmp_path / "store"
    store.mkdir()
    shutil.move(root / "extra" / "cat", store / "cat")
    (root / "extra" / "cat").symlink_to(store / "cat", target_is_directory=True)
    assert _planned(workdir, config) == set()
    (root / "extra" / "dog" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    dry = run_snakemake(workdir, config, args=("-n",))
    assert dry.returncode != 0
    assert f"evaluation.sets.extra.path: {root / 'extra'}: dog/gone.png is a broken link" in dry.stdout + dry.stderr
    (root / "extra" / "dog" / "gone.png").unlink()

    # an extra test set's image moved to another class: that set and its evaluations, nothing else
    moved = next((root / "extra" / "cat").glob("*.png"))
    moved.rename(root / "extra" / "dog" / moved.name)
    assert _planned(workdir, config) == {"evaluation_set", "evaluate_fp32_on_set", "evaluate_int8_on_set", "report",
                                         "all"}
    results = _run(workdir, config)
    with np.load(results / "data/eval/extra.npz") as extra:
        assert (extra["labels"] == CLASSES.index("dog")).sum() == 3

    # a calibration image replaced by another with an older mtime (cp -p): the set and what it calibrates
    target = next((root / "calib" / "bird").glob("*.png"))
    replacement = tmp_path / "other.png"
    shutil.copy(next((root / "test" / "ship").glob("*.png")), replacement)
    old = target.stat().st_mtime_ns - 3600 * 10**9
    os.utime(replacement, ns=(old, old))
    original = target.read_bytes()
    shutil.copy2(replacement, target)
    planned = _planned(workdir, config)
    assert {"calibration_set", "quantize", "evaluate_int8", "evaluate_int8_on_set", "time_model", "report"} <= planned
    assert not planned & {"dataset_split", "export_model", "evaluate_fp32", "evaluation_set", "fetch_weights"}
    target.write_bytes(original)  # put back: what the set was made from, so nothing is to be done
    assert _planned(workdir, config) == set()

    # 5 of the 40 test images deleted and one relabelled: the split and everything made from it
    for file in sorted((root / "test" / "frog").glob("*.png")) + sorted((root / "test" / "ship").glob("*.png"))[:1]:
        file.unlink()
    moved = next((root / "test" / "cat").glob("*.png"))
    moved.rename(root / "test" / "dog" / moved.name)
    planned = _planned(workdir, config)
    assert {"dataset_split", "export_model", "evaluate_fp32", "evaluate_int8", "report"} <= planned
    assert not planned & {"evaluation_set", "calibration_set", "fetch_weights"}
    results = _run(workdir, config)
    metrics = json.loads((results / "eval/resnet20/mine/default/metrics.json").read_text())
    assert metrics["num_images"] == 35 and metrics["test_set"]["count"] == 35
    summary = pd.read_csv(results / "report/summary.csv")
    assert set(summary[summary.test_set == "test"].num_images) == {35}
    assert set(summary[summary.test_set == "extra"].num_images) == {20}
    assert _planned(workdir, config) == set()  # the rerun left nothing to do
