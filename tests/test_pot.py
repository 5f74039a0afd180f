"""POT (openvino-dev 2023.3) as a second engine: config translation, routing, side-environment pins, and a real
POT run through Snakemake whose INT8 IR the main evaluator (OpenVINO 2026) reads and runs in INT8."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, require_side_env, run_snakemake, shared_path

from synthcal.inference import compile_model, runtime_precisions
from synthcal.io import ImageSet
from synthcal.quantization import engine_of
from synthcal.quantization.compare import method_pairs, settings_match
from synthcal.quantization.pot import PotError, check_pot_method, pot_algorithms, resolve_validation
from synthcal.workflow import Study

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
OFFLINE = yaml.safe_load((REPO / "config" / "offline.yaml").read_text())


# config translation (main environment, no POT needed) ------------------------------------------------------------

def test_default_entry_maps_onto_default_quantization():
    algorithms = pot_algorithms("pot_default", CONFIG["methods"]["pot_default"], 1000)
    assert algorithms == [{"name": "DefaultQuantization", "params": {
        "target_device": "CPU", "preset": "performance", "stat_subset_size": 1000, "use_fast_bias": True}}]


def test_accuracy_aware_entry_carries_the_studys_drop():
    method = {**CONFIG["methods"]["pot_accuracy_aware"], "stat_subset_size": 300, "max_iter_num": 5}
    [algorithm] = pot_algorithms("pot_accuracy_aware", method, 1000)
    assert algorithm["name"] == "AccuracyAwareQuantization"
    params = algorithm["params"]
    assert params["maximal_drop"] == 0.02 and params["drop_type"] == "absolute"
    assert params["stat_subset_size"] == 300 and params["max_iter_num"] == 5 and params["preset"] == "performance"


def test_stat_subset_never_exceeds_the_set():
    [algorithm] = pot_algorithms("p", {"engine": "pot", "algorithm": "default", "stat_subset_size": 5000}, 100)
    assert algorithm["params"]["stat_subset_size"] == 100


@pytest.mark.parametrize("method, named", [
    ({"engine": "pot", "algorithm": "default", "subset_size": 300}, "subset_size"),  # NNCF's name
    ({"engine": "pot", "algorithm": "default", "maximal_drop": 0.02}, "maximal_drop"),  # accuracy-aware only
    ({"engine": "pot", "algorithm": "default", "target_device": "NPU"}, "target_device"),
    ({"engine": "pot", "algorithm": "accuracy_aware", "maximal_drop": 1.5}, "maximal_drop"),
    ({"engine": "pot", "algorithm": "accuracy_aware", "validation": "top5"}, "validation"),
    ({"engine": "pot", "algorithm": "mixed"}, "algorithm"),
])
def test_bad_pot_entries_are_refused_naming_the_key(method, named):
    with pytest.raises(PotError, match=rf"methods\.bad.*{named}|{named}.*methods\.bad"):
        check_pot_method("bad", method)


def _set(labelled: bool) -> ImageSet:
    labels = np.arange(4) % 10 if labelled else np.full(4, -1)
    return ImageSet(np.zeros((4, 32, 32, 3), np.uint8), labels, {})


def test_validation_auto_uses_labels_where_there_are_some():
    method = {"engine": "pot", "algorithm": "accuracy_aware", "validation": "auto"}
    assert resolve_validation("m", method, _set(True)) == "labels"
    assert resolve_validation("m", method, _set(False)) == "agreement"
    with pytest.raises(PotError, match="no labels"):
        resolve_validation("m", {**method, "validation": "labels"}, _set(False))


# routing and config checks ----------------------------------------------------------------------------------------

def test_offline_config_has_pot_columns():
    offline_methods = {name for grid in OFFLINE["study"] for name in grid["methods"]}  # a list of grids
    assert {"pot_default", "pot_accuracy_aware"} <= offline_methods
    assert engine_of(OFFLINE["methods"]["pot_default"]) == "pot"
    assert engine_of(CONFIG["methods"]["default"]) == "nncf"
    assert not set(CONFIG["study"]["methods"]) & {"pot_default", "pot_accuracy_aware"}, \
        "the quick-start study must not need the side environment"


def test_study_routes_methods_by_engine():
    study_config = copy.deepcopy(CONFIG)
    methods = study_config["methods"]
    assert sorted(n for n in methods if engine_of(methods[n]) == "pot") == ["pot_accuracy_aware", "pot_default"]
    pattern = Study.wildcard_choice(["pot_default", "pot_accuracy_aware"])
    assert re.fullmatch(pattern, "pot_default") and not re.fullmatch(pattern, "default")
    assert not re.fullmatch(Study.wildcard_choice([]), "default")


def test_pairs_match_algorithms_and_settings():
    methods = {**CONFIG["methods"], **OFFLINE["methods"]}
    pairs = method_pairs(methods, ["default", "default_full_bc", "accuracy_aware", "pot_default",
                                   "pot_accuracy_aware"])
    assert ("pot_default", "default") in pairs and ("pot_accuracy_aware", "accuracy_aware") in pairs
    assert ("pot_default", "accuracy_aware") not in pairs
    assert settings_match(methods["pot_default"], methods["default"])
    assert not settings_match(methods["pot_default"], methods["default_full_bc"])  # full bias correction


def _dry_run(tmp_path, config: dict, *targets: str) -> subprocess.CompletedProcess:
    """``snakemake -n`` in the repo (its relative paths resolve there) with config.yaml then ``config``."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", *targets, "--configfile", str(path)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.parametrize("entry, named", [
    ({"fast_bias_correction": False}, "fast_bias_correction"),  # NNCF's key: the schema refuses it
    ({"maximal_drop": 0.05}, "maximal_drop"),  # accuracy-aware only: Study.check refuses it for DefaultQuantization
])
def test_bad_pot_entry_fails_before_any_job(tmp_path, entry, named):
    config = {"study": {"methods": ["pot_default"]},
              "methods": {"pot_default": {"engine": "pot", "algorithm": "default", **entry}}}
    run = _dry_run(tmp_path, config)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and named in output and "pot_default" in output, output[-3000:]


def test_quick_start_study_never_builds_the_side_environment(tmp_path):
    run = _dry_run(tmp_path, {})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "quantize_pot" not in output and "side_env" not in output


def test_a_pot_cell_is_routed_to_the_side_environment(tmp_path):
    run = _dry_run(tmp_path, {}, "results/quantized/resnet20/noise/pot_default/int8.xml",
                   "results/quantized/resnet20/noise/default/int8.xml", "--forceall")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", output, re.MULTILINE))
    assert jobs.get("quantize_pot") == "1" and jobs.get("quantize") == "1", output[-3000:]


def test_side_environment_pins_agree():
    lock = {line.strip() for line in (REPO / "requirements-pot.lock").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    conda = yaml.safe_load((REPO / "envs" / "pot.yaml").read_text())
    pip = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
    assert set(pip) == lock, "envs/pot.yaml and requirements-pot.lock must pin the same packages"
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", line) for line in lock), "every lock line is an exact pin"
    direct = [line.split("#")[0].strip() for line in (REPO / "requirements-pot.txt").read_text().splitlines()]
    direct = [line for line in direct if line]
    assert "openvino-dev==2023.3.0" in direct and "datumaro==1.11.1" in direct
    assert set(direct) <= {line.lower() for line in lock} | lock
    main_lock = (REPO / "requirements.lock").read_text()
    assert "openvino-dev" not in main_lock and "datumaro" not in main_lock, "the 2022 toolchain stays out of .venv"


# a real POT run (side environment) --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pot_run(tmp_path_factory):
    require_side_env()
    lossless = shared_path("data", "cifar10-lossless")
    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    workdir = tmp_path_factory.mktemp("pot")
    config = {
        "study": {"models": ["resnet20"], "calibration": ["cifar10", "noise"],
                  "methods": ["default", "pot_default", "pot_accuracy_aware"]},
        "data": {"source": "folder", "folders": {"train": str(lossless / "train"), "test": str(lossless / "test")},
                 "limit": {"test": 300}},
        "models": {"resnet20": {"weights": {"source": "path", "path": str(weights)}}},
        "calibration": {"cifar10": {"kind": "cifar10", "per_class": 30, "seed": 0},
                        "noise": {"kind": "noise", "count": 100, "seed": 0}},
        "methods": {"pot_accuracy_aware": {"validation": "agreement", "max_iter_num": 3}},  # bounded for CI
    }
    config_path = workdir / "pot.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = run_snakemake(workdir, config_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return workdir, config_path


@pytest.mark.slow
def test_pot_int8_ir_runs_in_int8_in_the_main_openvino(pot_run):
    workdir, _ = pot_run
    for calib in ("cifar10", "noise"):
        for method in ("pot_default", "pot_accuracy_aware"):
            cell = workdir / "results" / "quantized" / "resnet20" / calib / method
            info = json.loads((cell / "quantize.json").read_text())
            assert info["engine"] == "pot" and info["pot_version"].startswith("2023.3")
            assert info["openvino_version"].startswith("2023.3") and info["numpy_version"].startswith("1.")
            assert info["fake_quantize_count"] > 0
            precisions = runtime_precisions(compile_model(cell / "int8.xml"))  # OpenVINO 2026 reads the 2023.3 IR
            convolutions = set(precisions["Convolution"].split(","))
            if method == "pot_default":  # every convolution quantized
                assert info["float_layers"] == [] and convolutions <= {"u8", "i8"}, precisions
            else:  # accuracy-aware may hand layers back to float, and says which
                assert convolutions & {"u8", "i8"} and ("f32" in convolutions) == bool(info["float_layers"]), \
                    (precisions, info["float_layers"])


@pytest.mark.slow
def test_pot_cells_are_evaluated_by_the_main_evaluator(pot_run):
    workdir, _ = pot_run
    results = workdir / "results"
    fp32 = json.loads((results / "eval" / "resnet20" / "fp32" / "metrics.json").read_text())
    for calib in ("cifar10", "noise"):
        for method in ("default", "pot_default", "pot_accuracy_aware"):
            metrics = json.loads((results / "eval" / "resnet20" / calib / method / "metrics.json").read_text())
            assert metrics["method"] == method and metrics["num_images"] == 300
            assert metrics["delta_top1"] == pytest.approx(metrics["top1"] - fp32["top1"])
    real = json.loads((results / "eval" / "resnet20" / "cifar10" / "pot_default" / "metrics.json").read_text())
    assert real["agreement_with_fp32"] > 0.9, real  # POT on real images keeps the FP32 model's answers
    control = json.loads((results / "quantized" / "resnet20" / "noise" / "pot_accuracy_aware" / "quantize.json")
                         .read_text())["accuracy_control"]
    assert control["validation"] == "agreement" and control["baseline_metric"] == pytest.approx(1.0)
    assert control["validation_images"] == 100 and control["metric_drop"] <= 0.02 + 1e-9


@pytest.mark.slow
def test_report_shows_pot_beside_nncf(pot_run):
    workdir, _ = pot_run
    report = workdir / "results" / "report"
    summary = pd.read_csv(report / "summary.csv")
    int8 = summary[summary.precision == "int8"]
    assert set(int8.method) == {"default", "pot_default", "pot_accuracy_aware"}
    html = (report / "index.html").read_text()
    assert "POT vs NNCF on the same calibration sets" in html
    section = html[html.index("id='engines'"):]
    section = section[:section.index("</section>")]
    rows = re.findall(r"<tr>\s*<td>test</td>\s*<td>resnet20</td>\s*<td>(\w+)</td>\s*<td>(\w+)</td>\s*<td>(\w+)</td>",
                      section)
    # POT DefaultQuantization beside NNCF default on both sets; no NNCF accuracy-aware column to pair the other with
    assert sorted(rows) == [("cifar10", "pot_default", "default"), ("noise", "pot_default", "default")], section


@pytest.mark.slow
def test_pot_cells_are_deterministic_and_done(pot_run):
    workdir, config_path = pot_run
    cell = workdir / "results" / "quantized" / "resnet20" / "cifar10" / "pot_default"
    before = {name: (cell / name).read_bytes() for name in ("int8.xml", "int8.bin")}
    written = (cell / "int8.xml").stat().st_mtime_ns
    dry = run_snakemake(workdir, config_path, args=("-n",), timeout=300)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    again = run_snakemake(workdir, config_path, args=("--force", str(cell.relative_to(workdir) / "int8.xml")))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (cell / "int8.xml").stat().st_mtime_ns != written, "the cell was not quantized again"
    assert {name: (cell / name).read_bytes() for name in before} == before, "same inputs must give the same IR"


@pytest.mark.slow
def test_skipping_needless_pot_work_leaves_the_ir_as_it_was(pot_run, tmp_path):
    """The accuracy-aware cell again, with POT doing all it does unpatched: the same IR bytes."""
    from synthcal.sideenv import side_python

    workdir, _ = pot_run
    cell = workdir / "results" / "quantized" / "resnet20" / "noise" / "pot_accuracy_aware"
    [calibration] = (workdir / "results" / "calib" / "noise").glob("*/set.npz")
    method = json.loads((cell / "quantize.json").read_text())["config"]
    unpatched = "import sys, synthcal.quantization.pot as pot\npot._skip_needless_pot_work = lambda: None\n" \
                "pot.main(sys.argv[1:])"
    arguments = ["--fp32", str(workdir / "results/models/resnet20/fp32.xml"), "--calibration", str(calibration),
                 "--name", "pot_accuracy_aware", "--method", json.dumps(method), "--xml", str(tmp_path / "int8.xml"),
                 "--info", str(tmp_path / "q.json")]
    run = subprocess.run([str(side_python()), "-c", unpatched, *arguments], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    for name in ("int8.xml", "int8.bin"):
        assert (tmp_path / name).read_bytes() == (cell / name).read_bytes(), name
