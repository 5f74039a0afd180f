"""A small slice of the real DAG through Snakemake: real export, NNCF, OpenVINO, report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, shared_path
from PIL import Image

from synthcal.inference import compile_model, runtime_precisions

pytestmark = pytest.mark.slow

SLICE = ["resnet20"], ["cifar10", "noise"], ["default", "accuracy_aware"]


def _snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
               *args, "--configfile", str(REPO / "config.yaml"), str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def slice_run(tmp_path_factory):
    lossless = shared_path("data", "cifar10-lossless")
    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    jpeg = shared_path("data", "cifar10-jpeg.tar.gz")
    workdir = tmp_path_factory.mktemp("study")
    models, calibrations, methods = SLICE
    config = {
        "study": {"models": models, "calibration": calibrations, "methods": methods},
        "data": {"source": "folder", "folders": {"train": str(lossless / "train"), "test": str(lossless / "test")},
                 "limit": {"test": 300}},
        "models": {"resnet20": {"weights": {"source": "path", "path": str(weights)}}},
        "evaluation": {"sets": {"jpeg": {"source": "folder", "path": f"{jpeg}/cifar10-jpeg/test", "limit": 200,
                                         "lossy": True}}},
        "calibration": {"cifar10": {"kind": "cifar10", "per_class": 30, "seed": 0},
                        "noise": {"kind": "noise", "count": 100, "seed": 0}},
        "methods": {"accuracy_aware": {"algorithm": "accuracy_aware", "validation": "agreement",
                                       "validation_count": 200, "max_drop": 0.02}},
    }
    config_path = workdir / "test_config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = _snakemake(workdir, config_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return workdir, config_path, config


def test_report_matches_metrics(slice_run):
    workdir, _, _ = slice_run
    results = workdir / "results"
    summary = pd.read_csv(results / "report" / "summary.csv")
    models, calibrations, methods = SLICE
    test_sets = {"test": (300, False), "jpeg": (200, True)}  # name → (images, lossy)
    assert len(summary) == len(test_sets) * len(models) * (1 + len(calibrations) * len(methods))
    for row in summary.itertuples():
        where = "" if row.test_set == "test" else f"/sets/{row.test_set}"
        if row.precision == "fp32":
            metrics = json.loads((results / "eval" / row.model / f"fp32{where}" / "metrics.json").read_text())
        else:
            metrics = json.loads((results / "eval" / row.model / row.calibration / f"{row.method}{where}"
                                  / "metrics.json").read_text())
            assert row.delta_top1 == pytest.approx(metrics["top1"] - metrics["fp32_top1"], abs=1e-6)
            assert row.agreement_with_fp32 == pytest.approx(metrics["agreement_with_fp32"], abs=1e-6)
            # paired statistics: every interval contains its estimate and has width
            assert row.delta_top1_ci_low <= row.delta_top1 <= row.delta_top1_ci_high
            assert row.agreement_ci_low < row.agreement_with_fp32 < row.agreement_ci_high
            assert 0 <= row.mcnemar_p <= 1
            if row.int8_only_correct + row.fp32_only_correct:
                assert row.delta_top1_ci_high > row.delta_top1_ci_low
        assert row.top1_ci_low < row.top1 < row.top1_ci_high
        assert row.top1 == pytest.approx(metrics["top1"], abs=1e-6)
        assert (metrics["num_images"], bool(row.test_set_lossy)) == test_sets[row.test_set]
    recommendation = pd.read_csv(results / "report" / "recommendation.csv")
    assert set(recommendation.test_set) == set(test_sets) and set(recommendation.model) == set(models)
    assert set(recommendation.scope) == {"calibration", "method"}
    assert (recommendation.reference_calibration.dropna() == "cifar10").all()
    # issue 33: the study has a real-data set, so every row with a cell without real images has the best real-data
    # cell beside it (paired differences, verdict), and the page's first screen states the answer per model
    found = recommendation[recommendation.calibration.notna()]
    assert len(found) and found.real_best_calibration.eq("cifar10").all() and found.verdict.notna().all()
    assert found.delta_top1_ci_low_vs_real_best.le(found.delta_top1_vs_real_best).all()
    html = (results / "report" / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "index.html must load nothing remote"
    assert "<script" not in html and "<link" not in html
    assert html.count('src="data:image/png;base64,') >= 4
    for calibration in calibrations:
        assert calibration in html


def _jobs_beside(log: str, rule: str) -> list[str]:
    """Jobs that ran at the same time as a job of ``rule``, from a Snakemake log's job start and finish lines."""
    running: dict[str, str] = {}
    beside, starting = [], None
    for line in log.splitlines():
        if started := re.match(r"(?:local)?rule (\w+):$", line):
            starting = started.group(1)
        elif (jobid := re.match(r"\s+jobid: (\d+)$", line)) and starting:
            if starting == rule:
                beside += list(running.values())
            elif rule in running.values():
                beside.append(starting)
            running[jobid.group(1)], starting = starting, None
        elif finished := re.match(r"Finished jobid: (\d+)", line):
            running.pop(finished.group(1), None)
    return beside


def test_speed_comes_from_a_timing_step_that_ran_alone(slice_run):
    workdir, _, _ = slice_run
    results = workdir / "results"
    timing = json.loads((results / "timing" / "resnet20.json").read_text())
    _, calibrations, methods = SLICE
    assert sorted(timing["irs"]) == sorted(["fp32", *(f"{c}/{m}" for c in calibrations for m in methods)])
    assert (timing["repeats"], timing["images"], timing["batch_size"]) == (7, 300, 100)  # defaults; 300 test images
    assert all(len(entry["images_per_second"]["repeats"]) == 7 for entry in timing["irs"].values())
    assert all(sorted(repeat) == sorted(timing["irs"]) for repeat in timing["order"])
    summary = pd.read_csv(results / "report" / "summary.csv")
    for row in summary.itertuples():  # every test set's rows: the speed does not depend on the images
        entry = timing["irs"]["fp32" if row.precision == "fp32" else f"{row.calibration}/{row.method}"]
        assert row.images_per_second == pytest.approx(entry["images_per_second"]["median"], rel=1e-5)
        if row.precision == "int8":
            assert row.speedup == pytest.approx(entry["speedup"]["median"], rel=1e-5)
            assert row.speedup_low <= row.speedup <= row.speedup_high and row.speed_repeats == 7
    assert (results / "benchmarks" / "timing" / "resnet20.tsv").is_file()
    logs = [path.read_text() for path in (workdir / ".snakemake" / "log").glob("*.snakemake.log")]
    log = next(text for text in logs if re.search(r"^(local)?rule time_model:", text, re.M))
    assert _jobs_beside(log, "time_model") == []  # threads = every core: nothing ran beside it


def test_report_in_a_real_browser(slice_run):
    """Rule report_screenshot opens index.html in headless Chromium at 1280 px and fails on console errors,
    network requests or horizontal overflow; the first screen lands beside the report."""
    from synthcal.report.browser import find_chromium

    if not find_chromium():
        pytest.skip("needs Chromium (Debian package chromium; .ci/run installs it)")
    workdir, config_path, _ = slice_run
    run = _snakemake(workdir, config_path, "results/report/screenshot.png")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = workdir / "results" / "report"
    check = json.loads((report / "browser_check.json").read_text())
    assert check["console_errors"] == [] and check["network_requests"] == []
    assert check["layout"]["scrollWidth"] <= check["layout"]["clientWidth"] == 1280
    assert check["layout"]["images"] >= 6 and check["layout"]["brokenImages"] == 0
    assert check["layout"]["tables"] >= 6 and check["layout"]["scrollingTables"] == []  # no table scrolls sideways
    assert 0 < check["layout"]["answerBottom"] <= 800
    with Image.open(report / "screenshot.png") as screenshot:
        assert screenshot.size == (1280, 800)
        assert len(screenshot.convert("L").getcolors(256)) > 16  # text and figures, not a blank page
    # and every section whole, to look at: the study's table first
    sections = {path.stem for path in (report / "sections").glob("*.png")}
    assert {"study", "recommendation", "speed", "delta", "tables"} <= sections


def test_int8_model_runs_in_int8(slice_run):
    workdir, _, _ = slice_run
    precisions = runtime_precisions(compile_model(workdir / "results/quantized/resnet20/cifar10/default/int8.xml"))
    assert set(precisions["Convolution"].split(",")) <= {"u8", "i8"}, precisions
    fp32 = runtime_precisions(compile_model(workdir / "results/models/resnet20/fp32.xml"))
    assert fp32["Convolution"] == "f32", fp32


def test_accuracy_aware_records_validation(slice_run):
    workdir, _, _ = slice_run
    info = json.loads((workdir / "results/quantized/resnet20/noise/accuracy_aware/quantize.json").read_text())
    control = info["accuracy_control"]
    assert control["validation"] == "agreement" and control["validation_images"] == 100
    assert control["baseline_metric"] == pytest.approx(1.0)  # FP32 agrees with itself
    assert "float_layers" in info and info["calibration_samples_used"] == 100


def test_nothing_to_redo_and_params_change_reruns_only_that_method(slice_run):
    workdir, config_path, config = slice_run
    dry = _snakemake(workdir, config_path, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    changed = dict(config, methods={**config["methods"], "default": {"algorithm": "default", "preset": "mixed"}})
    changed_path = workdir / "changed.yaml"
    changed_path.write_text(yaml.safe_dump(changed))
    dry = _snakemake(workdir, changed_path, "-n", "--rerun-triggers", "params")
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output
    assert "output: results/quantized/resnet20/cifar10/default/int8.xml" in output
    assert "output: results/quantized/resnet20/cifar10/accuracy_aware/int8.xml" not in output
    assert "output: results/timing/resnet20.json" in output  # one IR changes: its model is timed again


def test_snakemake_report_builds_from_the_finished_run(slice_run):
    workdir, config_path, _ = slice_run
    report = workdir / "snakemake_report.html"
    run = _snakemake(workdir, config_path, "--report", str(report))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    html = report.read_text(errors="replace")
    assert "heatmap" in html and "summary.csv" in html
