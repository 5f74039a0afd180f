"""The config is checked before any job runs: ``snakemake -n`` fails fast, names the key, and writes no results."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, shared_path

from synthcal.data import CIFAR10_CLASSES

OFFLINE = REPO / "config" / "offline.yaml"
RESULTS = REPO / "results"


def _results_files() -> set[str]:
    if not RESULTS.exists():
        return set()
    return {str(path.relative_to(RESULTS)) for path in RESULTS.rglob("*") if path.is_file()}


def _dry_run(configfile: Path) -> subprocess.CompletedProcess:
    """``snakemake -n`` in the repo (so relative paths resolve from it), offline: nothing here needs the network."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(configfile)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture
def base_config(tmp_path) -> dict:
    """config/offline.yaml with its ../shared inputs swapped for empty stand-ins, so no case depends on ../shared."""
    config = yaml.safe_load(OFFLINE.read_text())
    stand_ins = tmp_path / "stand-ins"
    for split in ("train", "test"):
        (stand_ins / split).mkdir(parents=True)
        config["data"]["folders"][split] = str(stand_ins / split)
    weights = stand_ins / "resnet20.pt"
    weights.write_bytes(b"")
    config["models"]["resnet20"]["weights"]["path"] = str(weights)
    config["data"]["classes"] = list(CIFAR10_CLASSES)  # the stand-in folders are empty
    config["calibration"]["folder_jpeg"]["path"] = str(stand_ins / "train")
    config["evaluation"]["sets"]["jpeg10k"]["path"] = str(stand_ins / "test")
    config["gan_training"]["adversarial"]["data_folder"] = str(stand_ins / "train")
    return config


def _set(config: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value


CASES = {
    "unknown-model": ("models", {"resnet21": {}}, ["resnet21"]),
    "missing-weights": ("models.resnet20.weights.path", "../shared/weights/no-such-file-00000000.pt",
                        ["models.resnet20.weights.path", "no-such-file-00000000.pt"]),
    "missing-data-folder": ("data.folders.test", "../shared/data/no-such-folder/test",
                            ["data.folders.test", "no-such-folder"]),
    "undefined-method": ("study.methods", ["default", "fastest_please"], ["study.methods", "fastest_please"]),
    "undefined-test-set": ("study.test_sets", ["jpeg20k"], ["study.test_sets", "jpeg20k", "evaluation.sets"]),
    "bad-type": ("calibration.cifar10.per_class", "many", ["per_class", "many"]),
    "gan-train-typo": ("gan_training.adversarial.train.lamda_class", 1.0,
                       ["gan_training.adversarial.train", "lamda_class"]),
    "gan-train-value": ("gan_training.adversarial.train.g_ema", 1.5, ["gan_training.adversarial.train", "g_ema"]),
    "missing-test-set": ("evaluation.sets.jpeg10k.path", "../shared/data/no-such.tar.gz/jpeg/test",
                         ["evaluation.sets.jpeg10k.path", "no-such.tar.gz"]),
    "test-set-without-path": ("evaluation.sets.jpeg10k", {"source": "folder", "lossy": True}, ["jpeg10k", "path"]),
    "test-set-named-test": ("evaluation.sets.test", {"source": "folder", "path": "."}, ["evaluation", "test"]),
    "timing-too-few-repeats": ("timing", {"repeats": 3}, ["timing", "repeats", "minimum of 5"]),
    "timing-typo": ("timing", {"repats": 7}, ["timing", "repats"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_fails_before_any_job(case, base_config, tmp_path):
    dotted, value, expected = CASES[case]
    config = copy.deepcopy(base_config)
    _set(config, dotted, value)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    before = _results_files()
    result = _dry_run(configfile)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    for text in expected:
        assert text in output, f"{text!r} not in output:\n{output[-3000:]}"
    assert _results_files() - before == set()


def test_null_model_entry_means_release_weights(base_config, tmp_path):
    config = copy.deepcopy(base_config)
    config["models"]["resnet20"] = None
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    result = _dry_run(configfile)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_offline_config_dry_runs():
    shared_path("data", "cifar10-lossless")
    shared_path("data", "cifar10-jpeg.tar.gz")
    shared_path("weights", "cifar10_resnet20-4118986f.pt")
    before = _results_files()
    result = _dry_run(OFFLINE)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # a finished offline study in results/ leaves nothing to do
    assert "dry-run" in output or "Nothing to be done" in output
    assert _results_files() - before == set()


def test_gan_set_depends_on_its_generator_files(base_config, tmp_path):
    from synthcal.workflow import Study

    checkpoint = tmp_path / "generator"
    checkpoint.mkdir()
    for name in ("generator.pt", "config.json"):
        (checkpoint / name).write_bytes(b"")
    config = copy.deepcopy(base_config)
    config["calibration"]["distylegan"]["checkpoint"] = str(checkpoint)
    config["study"]["methods"] = ["accuracy_aware"]  # the only method offline.yaml defines without config.yaml
    study = Study(config)
    assert study.generator_files("distylegan") == [str(checkpoint / "generator.pt"), str(checkpoint / "config.json")]
    assert study.generator_files("fractal") == []


def test_study_test_sets_selects_extra_test_sets(base_config):
    from synthcal.workflow import Study

    config = copy.deepcopy(base_config)
    config["study"]["methods"] = ["accuracy_aware"]  # the only method offline.yaml defines without config.yaml
    assert Study(config).test_sets == ["test", "jpeg10k"]  # omitted: every evaluation.sets entry
    config["study"]["test_sets"] = []
    study = Study(config)
    assert study.test_sets == ["test"]
    assert not any("/sets/" in record["dir"] for record in study.evaluations())
