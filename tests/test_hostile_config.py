"""Hostile config files (issue 34): refused in one line naming the file, the line and the key, before any job."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import REPO

from synthcal.configfiles import MAX_ALIASES, ConfigFileError, load_config_file


def _file(tmp_path, text: str, name: str = "hostile.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_duplicate_key_is_refused_naming_the_key_and_both_lines(tmp_path):
    path = _file(tmp_path, "seed: 1\nstudy:\n  models: [resnet20]\n  methods: [default]\n  models: [resnet56]\n")
    with pytest.raises(ConfigFileError, match=rf"{path}: key 'models' is given twice \(lines 3 and 5\)"):
        load_config_file(path)
    top = _file(tmp_path, "seed: 1\n\nseed: 2\n")
    with pytest.raises(ConfigFileError, match=r"key 'seed' is given twice \(lines 1 and 3\)"):
        load_config_file(top)
    inline = _file(tmp_path, "study: {models: [resnet20], test_sets: [extra], test_sets: []}\n")  # a {…} mapping
    with pytest.raises(ConfigFileError, match=r"key 'test_sets' is given twice \(line 1, columns 29 and 49\)"):
        load_config_file(inline)
    json_file = _file(tmp_path, '{"seed": 1, "seed": 2}', "hostile.json")
    with pytest.raises(ConfigFileError, match="key 'seed' is given twice"):
        load_config_file(json_file)
    # the same key in two different mappings, and YAML merge keys, are fine
    fine = _file(tmp_path, "a: &base {x: 1}\nb:\n  <<: *base\n  x: 2\nc: {x: 3}\n")
    assert load_config_file(fine)["b"] == {"x": 2}


def test_an_alias_bomb_fails_fast_before_expansion(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]  # 9**12 leaves
    path = _file(tmp_path, "\n".join(lines + ["study: *a11"]) + "\n")
    start = time.monotonic()
    with pytest.raises(ConfigFileError, match=rf"{path} line 5: more than {MAX_ALIASES} YAML aliases"):
        load_config_file(path)
    assert time.monotonic() - start < 1.0
    few = _file(tmp_path, "a: &a {count: 3}\nb: *a\nc: *a\n")  # a handful of aliases stays allowed
    assert load_config_file(few)["c"] == {"count": 3}


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("# only a comment\n", "holds no settings"),
    ("- seed\n- 1\n", "the top level is a list, not a mapping"),
    ("study:\n\tmodels: [resnet20]\n", "line 2: not valid YAML (a tab in the indentation"),
    ("study: [resnet20\n", "not valid YAML"),
    ("__use_yte__: true\nseed: ?f 1 + 1\n", "key __use_yte__: YTE templates run Python"),
])
def test_empty_tabbed_broken_or_templated_files_are_refused_in_one_line(tmp_path, text, message):
    path = _file(tmp_path, text)
    with pytest.raises(ConfigFileError) as raised:
        load_config_file(path)
    assert str(path) in str(raised.value) and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_shipped_configs_pass():
    for path in (REPO / "config.yaml", *sorted((REPO / "config").glob("*.yaml"))):
        assert isinstance(load_config_file(path), dict)


def test_snakemake_refuses_a_duplicate_key_in_a_configfile_before_anything_runs(tmp_path):
    path = _file(tmp_path, "seed: 1\nseed: 2\n")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(path)],
                         cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True,
                         timeout=180)
    assert run.returncode != 0
    assert f"{path}: key 'seed' is given twice (lines 1 and 2); keep one" in run.stdout + run.stderr


def _shipped_config() -> dict:
    import yaml
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / "offline.yaml").read_text()))
    return config


@pytest.mark.parametrize("keys, value, named", [
    (("calibration", "noise", "count"), 10**12, "config key calibration.noise.count: 1000000000000 is greater than "
                                                "the maximum of 100000"),
    (("calibration", "cifar10", "per_class"), 10**7, "config key calibration.cifar10.per_class: "),
    (("report", "bootstrap_resamples"), 10**10, "config key report.bootstrap_resamples: 10000000000 is greater"),
    (("timing", "images"), 10**9, "config key timing.images: "),
    (("evaluation", "batch_size"), 10**6, "config key evaluation.batch_size: "),
    (("methods", "default", "subset_size"), 10**9, "config key methods.default.subset_size"),
    (("data", "size"), [32, 10**6], "config key data.size"),
    # YAML's .nan and .inf pass every bound: refused wherever they stand
    (("export", "parity_tolerance"), float("nan"), "config key export.parity_tolerance: nan is not a finite number"),
    (("export", "parity_tolerance"), float("inf"), "config key export.parity_tolerance: inf is not a finite number"),
    (("calibration", "noise", "mean"), [0.5, float("-inf"), 0.5],
     "config key calibration.noise.mean[1]: -inf is not a finite number"),
])
def test_counts_sizes_and_resamples_have_a_maximum_named_in_the_error(keys, value, named):
    from synthcal.workflow import ConfigError, validate_config

    config = _shipped_config()
    validate_config(config, REPO / "schemas" / "config.schema.yaml")  # as shipped: within every maximum
    node = config = _shipped_config()
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    with pytest.raises(ConfigError) as raised:
        validate_config(config, REPO / "schemas" / "config.schema.yaml")
    assert named in str(raised.value)
