"""The config is checked before any job runs: ``snakemake -n`` fails fast, names the key, and writes no results."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
    """config/offline.yaml with its ../shared inputs swapped for empty stand-ins, so no case depends on ../shared;
    ``study`` is its first grid (resnet20, every method) as a single mapping."""
    config = yaml.safe_load(OFFLINE.read_text())
    stand_ins = tmp_path / "stand-ins"
    for split in ("train", "test"):
        (stand_ins / split).mkdir(parents=True)
        config["data"]["folders"][split] = str(stand_ins / split)
    for model, entry in config["models"].items():
        weights = stand_ins / f"{model}.pt"
        weights.write_bytes(b"")
        entry["weights"]["path"] = str(weights)
    config["study"] = config["study"][0]
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
    "empty-methods": ("study.methods", [], ["study.methods: [] selects nothing", "omit methods"]),
    "duplicate-calibration": ("study.calibration", ["cifar10", "noise", "cifar10"],
                              ["study.calibration lists 'cifar10' more than once"]),
    "duplicate-in-a-grid": ("study", [{"models": ["resnet20"], "methods": ["accuracy_aware"]},
                                      {"models": ["resnet56"], "methods": ["accuracy_aware", "accuracy_aware"]}],
                            ["study[1].methods lists 'accuracy_aware' more than once"]),
    "grid-typo": ("study", [{"models": ["resnet20"], "method": ["accuracy_aware"]}], ["'method' was unexpected"]),
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
    # issue 23: caught before any job, not in the job (seed) or at the report (reference_calibration)
    "seed-negative": ("seed", -1, ["config key seed: -1 is less than the minimum of 0"]),
    "calibration-seed-negative": ("calibration.noise.seed", -1, ["config key calibration.noise.seed", "minimum"]),
    "reference-calibration-undefined": ("report", {"reference_calibration": "cifar11"},
                                        ["report.reference_calibration", "'cifar11' is not defined"]),
    # issue 33: the reference is real data of the study; the message names the real sets there are
    "reference-calibration-not-real": ("report", {"reference_calibration": "noise"},
                                       ["report.reference_calibration: 'noise' is kind noise, not real images",
                                        "real-data sets: ['cifar10', 'folder_jpeg']"]),
    "reference-calibration-not-selected": ("report", {"reference_calibration": "cifar10_holdout"},
                                           ["report.reference_calibration: 'cifar10_holdout' is defined under "
                                            "`calibration:` but not selected", "['cifar10', 'folder_jpeg']"]),
    "reference-calibration-no-real-set": ("study.calibration", ["fractal", "noise"],
                                          ["the study has no real-data set"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_fails_before_any_job(case, base_config, tmp_path):
    dotted, value, expected = CASES[case]
    config = copy.deepcopy(base_config)
    _set(config, dotted, value)
    if case == "reference-calibration-no-real-set":
        config["report"] = {"reference_calibration": "noise"}
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


def test_auto_scores_cells_on_real_images_with_real_holdout(base_config):
    """Issue 33: auto on a real-data set is a cell whose proxy reads held-out real images (real_holdout); its
    data-free cell keeps the synthetic holdout."""
    from synthcal.workflow import Study

    config = copy.deepcopy(base_config)
    config["study"] = {"models": ["resnet20"], "calibration": ["datafree", "cifar10"], "methods": ["auto"]}
    study = Study(config)
    assert ("resnet20", "cifar10", "auto") in study.cells()
    cell = SimpleNamespace(model="resnet20", calib="cifar10", method="auto")
    assert study.holdout_set(cell) == "results/calib/cifar10_holdout/32x32/set.npz"
    assert study.holdout_set(SimpleNamespace(model="resnet20", calib="datafree", method="auto")) == (
        "results/calib/datafree_holdout/32x32/resnet20/set.npz")
    assert study.real_calibrations() == ["cifar10"]


def test_checksum_pinned_inputs_ignore_their_mtime(base_config, tmp_path, monkeypatch):
    """A weights file whose sha256 the entry pins is ancient to Snakemake: re-extracting ../shared (new mtimes, same
    bytes) re-runs nothing. An unpinned file (a model factory .py) still re-runs its job when it is newer. A folder
    set is read through its manifest (tests/test_manifest.py)."""
    from snakemake.io import is_flagged

    from synthcal.workflow import Study

    config = copy.deepcopy(base_config)
    config["study"]["methods"] = ["accuracy_aware"]
    train = Path(config["data"]["folders"]["train"])
    (train / "airplane").mkdir()
    (train / "airplane" / "0.png").write_bytes(b"png")
    factory = train.parent / "net.py"
    factory.write_text("import torch\n\n\ndef build():\n"
                       "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))\n")
    (train.parent / "net.pt").write_bytes(b"")
    config["models"]["resnet56"] = {"kind": "torch", "factory": f"{factory}:build", "input": {"size": [32, 32]},
                                    "checkpoint": {"path": str(train.parent / "net.pt")}}
    monkeypatch.chdir(tmp_path)  # manifests go to ./results/manifests
    config["study"]["calibration"] = ["folder_jpeg", "noise"]
    study = Study(config)
    (weights,) = study.model_local_files("resnet20")
    assert weights == config["models"]["resnet20"]["weights"]["path"] and is_flagged(weights, "ancient")
    assert not any(is_flagged(path, "ancient") for path in study.model_local_files("resnet56"))
    assert study.calibration_inputs("folder_jpeg") == ["results/manifests/calibration/folder_jpeg.json"]


def test_study_test_sets_selects_extra_test_sets(base_config):
    from synthcal.workflow import Study

    config = copy.deepcopy(base_config)
    config["study"]["methods"] = ["accuracy_aware"]  # the only method offline.yaml defines without config.yaml
    assert Study(config).test_sets == ["test", "jpeg10k"]  # omitted: every evaluation.sets entry
    config["study"]["test_sets"] = []
    study = Study(config)
    assert study.test_sets == ["test"]
    assert not any("/sets/" in record["dir"] for record in study.evaluations())


def test_study_is_the_union_of_its_grids_not_their_product(base_config):
    from synthcal.workflow import Study

    config = copy.deepcopy(base_config)
    config["study"] = [
        {"models": ["resnet20"], "calibration": ["cifar10", "noise"], "methods": ["accuracy_aware", "pot_default"]},
        {"models": ["resnet56", "resnet20"], "calibration": ["noise"], "methods": ["default_full_bc"],
         "test_sets": []},
    ]
    study = Study(config)
    assert study.models == ["resnet20", "resnet56"]
    assert study.methods == ["accuracy_aware", "pot_default", "default_full_bc"]
    assert study.cells() == [
        ("resnet20", "cifar10", "accuracy_aware"), ("resnet20", "cifar10", "pot_default"),
        ("resnet20", "noise", "accuracy_aware"), ("resnet20", "noise", "pot_default"),
        ("resnet20", "noise", "default_full_bc"), ("resnet56", "noise", "default_full_bc")]
    # every consumer sees the cells, not models × calibration × methods
    assert [ir["name"] for ir in study.timed_irs("resnet56")] == ["fp32", "noise/default_full_bc"]
    assert study.quality() == ["results/quality/resnet20/cifar10.json", "results/quality/resnet20/noise.json",
                               "results/quality/resnet56/noise.json"]
    assert len(study.quantize_infos()) == 6
    # the second grid asks for no extra test set: resnet56 is evaluated on the study's split only
    on_jpeg = {(r["model"], r["calibration"], r["method"]) for r in study.evaluations() if r["test_set"] == "jpeg10k"}
    assert on_jpeg == {("resnet20", "", ""), ("resnet20", "cifar10", "accuracy_aware"),
                       ("resnet20", "cifar10", "pot_default"), ("resnet20", "noise", "accuracy_aware"),
                       ("resnet20", "noise", "pot_default")}
    assert len(study.evaluations()) == 2 + 6 + 5
    assert study.needs_side_env()


def test_one_grid_as_a_mapping_still_works(base_config):
    from synthcal.workflow import Study

    config = copy.deepcopy(base_config)
    config["study"] = {"models": ["resnet56"], "calibration": ["fractal"]}
    study = Study(config)
    assert study.cells() == [("resnet56", "fractal", m) for m in config["methods"]]


@pytest.mark.parametrize("selection, message", [
    ({"calibration": []}, "study.calibration: [] selects nothing"),
    ([{"models": ["resnet20"]}, {"models": []}], "study[1].models: [] selects nothing"),
    ([], "study: [] selects no cell"),
    ({"models": ["resnet20", "resnet56", "resnet20"]}, "study.models lists 'resnet20' more than once"),
    ({"test_sets": ["jpeg10k", "jpeg10k"]}, "study.test_sets lists 'jpeg10k' more than once"),
])
def test_empty_or_repeated_selections_are_refused_naming_the_key(base_config, selection, message):
    from synthcal.workflow import ConfigError, Study

    config = copy.deepcopy(base_config)
    config["study"] = selection
    with pytest.raises(ConfigError, match=re.escape(message)):
        Study(config)


# --------------------------------------------------------------------------- names and schema errors (issue 23)
SCHEMA = REPO / "schemas" / "config.schema.yaml"
ENTRY_OF = {"models": ("resnet20",), "calibration": ("noise",), "methods": ("accuracy_aware",),
            "evaluation.sets": ("jpeg10k",), "gan_training": ("adversarial",)}


def _section(config: dict, section: str) -> dict:
    for part in section.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("section", list(ENTRY_OF))
@pytest.mark.parametrize("name, rule", [
    ("..", "not a usable name"), (".", "not a usable name"), ("a/b", "not a usable name"),
    ("-x", "not a usable name"), ("a.b", "not a usable name"), ("fp32", "a reserved name"), ("Sets", "a reserved name"),
])
def test_every_entry_name_follows_one_rule_before_any_job(base_config, section, name, rule):
    """Names become folders under results/: '..' wrote outside it, 'fp32' or 'sets' collide with fixed folders."""
    from synthcal.workflow import ConfigError, Study, validate_config

    config = copy.deepcopy(base_config)
    entries = _section(config, section)
    entries[name] = copy.deepcopy(entries[ENTRY_OF[section][0]])
    message = f"{section} key {name!r}: {rule}"
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(config, SCHEMA)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Study(config)


def test_good_names_pass_and_the_wildcards_use_the_same_rule(base_config):
    from synthcal.workflow import NAME_PATTERN, Study, name_problem, validate_config

    for name in ("resnet20", "default_full_bc", "jpeg10k", "my-set-2", "FP16"):
        assert name_problem(name) is None
    config = copy.deepcopy(base_config)
    config["study"]["methods"] = ["accuracy_aware"]  # the only method offline.yaml defines without config.yaml
    validate_config(config, SCHEMA)
    Study(config)
    assert "model=NAME_PATTERN" in (REPO / "Snakefile").read_text() and NAME_PATTERN.startswith("[A-Za-z0-9]")


def test_schema_error_starts_with_the_key_path(base_config, tmp_path):
    """Not Snakemake's 60-140 line dump of the schema: one line naming the key, as the dry run prints it."""
    config = copy.deepcopy(base_config)
    config["calibration"]["cifar10"]["per_class"] = "many"
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    result = _dry_run(configfile)
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode != 0
    first = next(index for index, line in enumerate(lines) if line.startswith("ConfigError"))
    assert lines[first + 1].startswith("config key calibration.cifar10.per_class: 'many' is not of type 'integer'")
    assert len(lines) - first < 12, "\n".join(lines)


def test_unselected_calibration_entries_are_checked_too(base_config):
    from synthcal.workflow import ConfigError, Study

    config = copy.deepcopy(base_config)
    config["study"]["calibration"] = ["noise"]
    config["study"]["methods"] = ["accuracy_aware"]
    config["calibration"]["fractal"]["cuont"] = 10  # fractal is not selected
    with pytest.raises(ConfigError, match=r"calibration.fractal: key\(s\) \['cuont'\]"):
        Study(config)


def test_unselected_methods_and_datumaro_sets_are_checked_too(base_config):
    from synthcal.workflow import ConfigError, Study

    config = copy.deepcopy(base_config)
    config["study"]["calibration"] = ["noise"]
    config["study"]["methods"] = ["accuracy_aware"]
    Study(copy.deepcopy(config))
    unused_auto = copy.deepcopy(config)
    unused_auto["methods"]["auto_unused"] = {"algorithm": "auto", "holdout": "cifar10"}  # real images: refused
    with pytest.raises(ConfigError, match="methods.auto_unused.holdout 'cifar10' is kind cifar10: real images"):
        Study(unused_auto)
    unused_datumaro = copy.deepcopy(config)
    unused_datumaro["calibration"]["fractal_dm"] = {"kind": "fractal", "backend": "datumaro", "seed": 3}
    with pytest.raises(ConfigError, match="calibration.fractal_dm.seed: Datumaro's generator"):
        Study(unused_datumaro)


def test_unlock_and_lint_do_not_import_user_factories(base_config, tmp_path):
    marker = tmp_path / "imported"
    factory = tmp_path / "their_net.py"
    factory.write_text(f"open({str(marker)!r}, 'a').write('imported\\n')\n"
                       "import torch\n\n\ndef make():\n"
                       "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))\n")
    checkpoint = tmp_path / "their_net.pt"
    checkpoint.write_bytes(b"")
    config = copy.deepcopy(base_config)
    config["models"]["mine"] = {"kind": "torch", "factory": f"{factory}:make", "checkpoint": {"path": str(checkpoint)},
                                "input": {"size": [8, 8]}}
    config["study"] = {"models": ["mine"], "calibration": ["noise"], "methods": ["default"]}
    configfile = tmp_path / "mine.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    for mode in ("--unlock", "--lint"):
        run = subprocess.run([sys.executable, "-m", "snakemake", mode, "--cores", "1", "--configfile", str(configfile)],
                             cwd=REPO, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0 or mode == "--lint", run.stderr[-3000:]
        assert not marker.exists(), f"{mode} imported the factory"
    dry = _dry_run(configfile)  # a run that may execute jobs resolves the model: the factory is imported
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert marker.read_text() == "imported\n"


def _tiny_ir(path) -> list[str]:
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 3, 8, 8], np.float32, name="pixels")
    conv = ops.convolution(x, ops.constant(np.ones((4, 3, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1])
    conv.set_friendly_name("stem/conv")
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([ops.relu(conv)], [x]), str(path))
    return [op.get_friendly_name() for op in ov.Core().read_model(str(path)).get_ordered_ops()]


def test_ignored_scope_names_and_patterns_are_checked_against_the_ir(tmp_path):
    from synthcal.quantization.ignored_scope import IgnoredScopeError, check_ignored_scope, ir_layer_names

    names = _tiny_ir(tmp_path / "fp32.xml")
    assert ir_layer_names(tmp_path / "fp32.xml") == names and "stem/conv" in names
    check_ignored_scope("m", {"names": ["stem/conv"], "patterns": ["stem/.*"], "types": ["Nothing"]}, names, "ir")
    check_ignored_scope("m", {"names": ["conv99"], "validate": False}, names, "ir")  # NNCF's own switch
    with pytest.raises(IgnoredScopeError, match=r"methods.m.ignored_scope.names: 'conv99' is not a layer of ir; "):
        check_ignored_scope("m", {"names": ["conv99"]}, names, "ir")
    with pytest.raises(IgnoredScopeError, match=r"methods.m.ignored_scope.patterns: 'head\.\*' matches no layer"):
        check_ignored_scope("m", {"patterns": ["head.*"]}, names, "ir")


def test_an_unknown_ignored_scope_layer_fails_before_the_cells_outputs_are_touched(base_config, tmp_path):
    config = copy.deepcopy(base_config)
    config["methods"]["scoped"] = {"algorithm": "default", "ignored_scope": {"names": ["conv99"]}}
    config["study"] = {"models": ["resnet20"], "calibration": ["noise"], "methods": ["scoped"]}
    configfile = tmp_path / "scoped.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "work"
    _tiny_ir(workdir / "results/models/resnet20/fp32.xml")  # the FP32 IR of an earlier run
    cell = workdir / "results/quantized/resnet20/noise/scoped"
    cell.mkdir(parents=True)
    for name in ("int8.xml", "int8.bin", "quantize.json"):
        (cell / name).write_text("previous")
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-d", str(workdir), "--forcerun",
                          "quantize", "results/quantized/resnet20/noise/scoped/int8.xml", "--configfile",
                          str(REPO / "config.yaml"), str(configfile)], cwd=REPO, capture_output=True, text=True,
                         timeout=180)
    assert run.returncode != 0
    assert "methods.scoped.ignored_scope.names: 'conv99' is not a layer of results/models/resnet20/fp32.xml" in (
        run.stdout + run.stderr), run.stderr[-3000:]
    assert all((cell / name).read_text() == "previous" for name in ("int8.xml", "int8.bin", "quantize.json"))
    # a plain rerun of the whole study too (Snakemake reads an input function's error as "no job makes this file",
    # so a check there kept the old cell without a word)
    plain = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-d", str(workdir), "-n",
                            "--configfile", str(REPO / "config.yaml"), str(configfile)], cwd=REPO,
                           capture_output=True, text=True, timeout=180)
    assert plain.returncode != 0
    assert "methods.scoped.ignored_scope.names: 'conv99' is not a layer of results/models/resnet20/fp32.xml" in (
        plain.stdout + plain.stderr), plain.stderr[-3000:]


def test_offline_models_are_the_published_checkpoints_checked_by_full_sha256():
    from synthcal.io import file_digest
    from synthcal.models.weights import WeightsError, check_sha256, expected_sha256

    config = yaml.safe_load(OFFLINE.read_text())
    assert set(config["models"]) == {"resnet20", "resnet56", "shufflenetv2_x0_5"}
    for model, entry in config["models"].items():
        weights = entry["weights"]
        expected = expected_sha256(model, weights)
        assert len(expected) == 64, model
        path = shared_path("weights", Path(weights["path"]).name)
        assert file_digest(path, "sha256") == expected
        with pytest.raises(WeightsError, match="refusing"):
            check_sha256(path, expected[:-1] + ("0" if expected[-1] != "0" else "1"), f"models.{model}.weights")


def test_a_cifar10_kind_set_without_a_train_folder_says_which_set_needs_it(base_config):
    from synthcal.workflow import ConfigError, Study

    config = copy.deepcopy(base_config)
    del config["data"]["folders"]["train"]
    config["study"]["methods"] = ["accuracy_aware"]  # the only method offline.yaml defines without config.yaml
    cifar10_sets = [name for name in config["study"]["calibration"] if config["calibration"][name]["kind"] == "cifar10"]
    assert cifar10_sets
    with pytest.raises(ConfigError, match=re.escape(
            f"data.folders.train is not set, and the study's calibration set(s) {cifar10_sets} (kind cifar10) are "
            "drawn from the train split: set it, or leave them out of study.calibration")):
        Study(config)
    config["study"]["calibration"] = [name for name in config["study"]["calibration"] if name not in cifar10_sets]
    Study(config)  # a study of the test folder alone needs none
