"""The report on evaluation files with known per-image outcomes: statistics, recommendation, and the page in Chromium.

The files are written the way the evaluation rules write them (metrics.json, predictions.npz, quantize.json), from
prediction vectors built so that the answer is known: which cells differ from FP32 and from real-data calibration,
and which one loses the INT8 speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthcal.evaluation.timing import interleaved_order, timing_record
from synthcal.io import write_json
from synthcal.report.browser import check_page, find_chromium
from synthcal.report.page import MetricsMismatch, build_report

N = 2000
# calibration → (kind, method, images whose FP32 class the INT8 model changes, float layers, INT8 images/s)
CELLS = {
    ("cifar10", "default"): ("cifar10", 20, 0, 2500.0),
    ("fractal", "default"): ("fractal", 24, 0, 2300.0),  # as good as real data (24 vs 20 flips)
    ("noise", "default"): ("noise", 140, 0, 2450.0),  # clearly worse than FP32 and than real data
    ("cifar10", "accuracy_aware"): ("cifar10", 10, 2, 2400.0),
    ("fractal", "accuracy_aware"): ("fractal", 4, 21, 1100.0),  # the best agreement, but mostly float: slow
    ("noise", "accuracy_aware"): ("noise", 60, 3, 2350.0),
}
FP32_SPEED = 1000.0
# the timing step's repeats: the whole machine's pace per repeat, and each INT8 pass's own wobble around it
PACE = np.array([1.0, 0.8, 1.1, 1.05, 0.9])
WOBBLE = np.array([1.0, 0.97, 1.04, 1.01, 0.99])


def _predictions(labels: np.ndarray, flips: int, offset: int) -> np.ndarray:
    """FP32's predictions with ``flips`` images moved to another class (starting at ``offset``)."""
    changed = labels.copy()
    changed[:100] = (labels[:100] + 1) % 10  # FP32 itself is wrong on the first 100 images
    chosen = np.arange(offset, offset + flips) % N
    changed[chosen] = (changed[chosen] + 3) % 10
    return changed


def _write_evaluation(directory: Path, predictions, labels, metrics: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "predictions.npz", logits=np.eye(10, dtype=np.float32)[predictions],
             predictions=predictions, labels=labels)
    (directory / "metrics.json").write_text(json.dumps(metrics))


def _build_study(root: Path, cells_per_model: dict[str, dict], before_report=None) -> tuple[Path, dict]:
    """Evaluation, quantize and timing files for ``cells_per_model`` (model → ``CELLS``-like dict), then the report
    (``before_report(root)`` first, where given). Every model shares the labels and FP32 predictions; a model's
    cells differ by its position (offsets)."""
    labels = np.random.default_rng(0).integers(0, 10, N)
    fp32 = _predictions(labels, 0, 0)
    fp32_top1 = float((fp32 == labels).mean())
    records, timings = [], {}
    for position, (model, cells) in enumerate(cells_per_model.items()):
        base = root / model if len(cells_per_model) > 1 else root
        records.append({"test_set": "test", "model": model, "precision": "fp32", "calibration": "", "method": "",
                        "dir": str(base / "eval/fp32")})
        # the evaluation jobs' own throughput (a single pass beside other jobs) is off on purpose: the report must
        # take speed from the timing step
        _write_evaluation(base / "eval/fp32", fp32, labels,
                          {"top1": fp32_top1, "top5": 1.0, "num_images": N, "images_per_second": FP32_SPEED / 3})
        for index, ((calib, method), (kind, flips, float_layers, speed)) in enumerate(cells.items()):
            predictions = _predictions(labels, flips, 200 + 7 * index + 500 * position)
            top1 = float((predictions == labels).mean())
            directory = base / f"eval/{calib}/{method}"
            _write_evaluation(directory, predictions, labels, {
                "top1": top1, "top5": 1.0, "num_images": N, "fp32_top1": fp32_top1, "delta_top1": top1 - fp32_top1,
                "agreement_with_fp32": float((predictions == fp32).mean()), "images_per_second": speed * (1 + index),
                "fp32_images_per_second": FP32_SPEED / 3})
            quantize = base / f"quantized/{calib}/{method}/quantize.json"
            quantize.parent.mkdir(parents=True, exist_ok=True)
            quantize.write_text(json.dumps({"calibration_set": {"kind": kind}, "quantization_seconds": 1.0,
                                            "float_layers": [f"layer{i}" for i in range(float_layers)]}))
            records.append({"test_set": "test", "model": model, "precision": "int8", "calibration": calib,
                            "method": method, "dir": str(directory), "quantize": str(quantize)})
        irs = [{"name": "fp32", "precision": "fp32", "calibration": "", "method": "", "xml": "fp32.xml"}]
        irs += [{"name": f"{calib}/{method}", "precision": "int8", "calibration": calib, "method": method,
                 "xml": f"{calib}/{method}/int8.xml"} for calib, method in cells]
        speeds = {"fp32": FP32_SPEED * PACE} | {f"{calib}/{method}": speed * PACE * WOBBLE
                                                for (calib, method), (*_, speed) in cells.items()}
        timing = root / f"timing/{model}.json"
        write_json(timing, timing_record(model, irs, speeds, order=interleaved_order(list(speeds), len(PACE)),
                                         images=1000, batch_size=100, precision_hint="f32", seed=0))
        timings[model] = str(timing)
    for record in records:
        record.update(metrics=f"{record['dir']}/metrics.json", predictions=f"{record['dir']}/predictions.npz")
    preview = root / "calib/noise/preview.png"
    preview.parent.mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(preview)
    out = root / "report"
    names = {"summary": "summary.csv", "recommendation": "recommendation.csv",
             "comparison": "calibration_comparison.csv", "study_table": "study_table.csv", "html": "index.html",
             "speed_accuracy": "speed_accuracy.png", "intervals": "delta_top1_intervals.png",
             "heatmap": "delta_top1.png", "throughput": "throughput.png", "quality": "quality_vs_delta.png",
             "previews": "calibration_previews.png"}
    outputs = SimpleNamespace(**{key: str(out / name) for key, name in names.items()})
    all_cells = {cell: spec for cells in cells_per_model.values() for cell, spec in cells.items()}
    config = {"seed": 0, "calibration": {name: {"kind": kind} for (name, _), (kind, *_) in all_cells.items()},
              "report": {"bootstrap_resamples": 2000}}
    study = {"models": list(cells_per_model), "calibrations": list(dict.fromkeys(c for c, _ in all_cells)),
             "methods": list(dict.fromkeys(m for _, m in all_cells)), "test_sets": ["test"], "evaluations": records,
             "timing": timings}
    if before_report:
        before_report(root)
    build_report(SimpleNamespace(quality=[], previews=[str(preview)]), outputs, study, config)
    return out, {"fp32": fp32, "labels": labels}


@pytest.mark.parametrize("edit, message", [
    ({"top1": 0.99}, r"top1 0\.99, but \S+/eval/noise/default/predictions\.npz gives 0\.8\d+; the two files disagree"),
    ({"num_images": 1000}, r"num_images 1000, but \S+/predictions\.npz holds 2000 images"),
    (None, r"is not a readable metrics file"),
])
def test_report_refuses_metrics_that_its_predictions_do_not_bear_out(tmp_path, edit, message):
    """An edited metrics.json would publish its top-1 beside intervals from predictions.npz: refused, in one line
    naming the file, before any report file is written."""
    def tamper(root: Path) -> None:
        path = root / "eval/noise/default/metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **edit}) if edit else "{garbage")

    with pytest.raises(MetricsMismatch, match=r"^\S+/eval/noise/default/metrics\.json:? " + message) as error:
        _build_study(tmp_path, {"resnet20": {("noise", "default"): CELLS[("noise", "default")]}}, tamper)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "report" / "summary.csv").exists() and not (tmp_path / "report" / "index.html").exists()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> tuple[Path, dict]:
    return _build_study(tmp_path_factory.mktemp("report"), {"resnet20": CELLS})


# three models as a study of two grids: resnet20 with every cell, the others with method default only, more
# calibration sets, and cells of their own (resnet56's datafree set matches real data, shufflenet's does not)
MORE_SETS = {("datafree", "default"): ("datafree", 22, 0, 2480.0), ("gan", "default"): ("gan", 60, 0, 2420.0),
             ("folder", "default"): ("folder", 30, 0, 2460.0)}
THREE_MODELS = {
    "resnet20": {**CELLS, **MORE_SETS},
    "resnet56": {cell: spec for cell, spec in {**CELLS, **MORE_SETS}.items() if cell[1] == "default"},
    "shufflenetv2_x0_5": {**{cell: spec for cell, spec in CELLS.items() if cell[1] == "default"},
                          ("datafree", "default"): ("datafree", 150, 0, 2400.0)},
}


@pytest.fixture(scope="module")
def three_models(tmp_path_factory) -> Path:
    out, _ = _build_study(tmp_path_factory.mktemp("three"), THREE_MODELS)
    return out


def test_summary_intervals_contain_estimates_and_mark_known_differences(report_dir):
    out, _ = report_dir
    summary = pd.read_csv(out / "summary.csv")
    int8 = summary[summary.precision == "int8"].set_index(["calibration", "method"])
    assert len(int8) == len(CELLS)
    for (calib, method), (_, flips, float_layers, speed) in CELLS.items():
        row = int8.loc[(calib, method)]
        assert row.agreement_with_fp32 == pytest.approx(1 - flips / N)
        assert row.agreement_ci_low < row.agreement_with_fp32 < row.agreement_ci_high
        assert row.delta_top1_ci_low <= row.delta_top1 <= row.delta_top1_ci_high
        assert row.delta_top1_ci_high > row.delta_top1_ci_low
        # speed from the timing step: median over repeats of the same-repeat ratio, low/high its extremes
        assert row.speedup == pytest.approx(speed / FP32_SPEED) and row.float_layers == float_layers
        assert (row.speedup_low, row.speedup_high) == pytest.approx((speed / FP32_SPEED * 0.97,
                                                                      speed / FP32_SPEED * 1.04))
        assert row.images_per_second == pytest.approx(np.median(speed * PACE * WOBBLE))
        assert row.fp32_images_per_second == pytest.approx(FP32_SPEED) and row.speed_repeats == len(PACE)
        excludes_zero = row.delta_top1_ci_high < 0 or row.delta_top1_ci_low > 0
        assert bool(row.distinguishable_from_fp32) == (excludes_zero and row.mcnemar_p < 0.05)
    assert bool(int8.loc[("noise", "default")].distinguishable_from_fp32)  # 140 flips, nearly all to wrong
    assert not bool(int8.loc[("fractal", "accuracy_aware")].distinguishable_from_fp32)  # 4 flips: p = 0.125
    fp32 = summary[summary.precision == "fp32"].iloc[0]
    assert fp32.top1_ci_low < fp32.top1 < fp32.top1_ci_high
    assert (fp32.images_per_second, fp32.images_per_second_low, fp32.images_per_second_high) == pytest.approx(
        (FP32_SPEED, FP32_SPEED * 0.8, FP32_SPEED * 1.1))


def test_report_says_how_speed_is_measured(report_dir):
    out, _ = report_dir
    page = (out / "index.html").read_text()
    assert "time_model" in page and "median over repeats" in page and "not used" in page
    assert "5 repeats of 1,000 test images, batch 100" in page
    # the fully quantized cells: 2.5, 2.3, 2.45 → median 2.45, the farthest 6.1 % below it
    assert "3 cells with every layer in INT8, speed-up median 2.45×, all within ±6.1 %" in page


def test_calibration_sets_are_compared_with_real_data(report_dir):
    out, _ = report_dir
    comparison = pd.read_csv(out / "calibration_comparison.csv").set_index(["calibration", "method"])
    assert set(comparison.reference) == {"cifar10"}
    assert not bool(comparison.loc[("fractal", "default")].agreement_distinguishable)  # 24 vs 20 flips
    assert bool(comparison.loc[("noise", "default")].agreement_distinguishable)  # 140 vs 20
    noise = comparison.loc[("noise", "default")]
    assert noise.delta_agreement == pytest.approx(-(140 - 20) / N)
    assert noise.delta_agreement_ci_high < 0 and noise.delta_agreement_mcnemar_p < 1e-6


def test_recommendation_keeps_int8_speed_and_states_the_verdict(report_dir):
    out, _ = report_dir
    recommendation = pd.read_csv(out / "recommendation.csv").set_index(["scope", "method"], drop=False)
    best_default = recommendation.loc[("calibration", "default")]
    assert best_default.calibration == "fractal"
    assert not bool(best_default.distinguishable_from_reference)
    assert "is not distinguishable from real-data calibration" in best_default.statement
    assert "fractal" in best_default.statement and "cifar10" in best_default.statement
    # fractal/accuracy_aware agrees best of all but keeps 21 layers in float at 1.1×: not recommended
    overall = recommendation[recommendation.scope == "method"].iloc[0]
    assert (overall.calibration, overall.method) == ("fractal", "default")
    assert "fractal/accuracy_aware" in overall.excluded_for_speed
    aware = recommendation.loc[("calibration", "accuracy_aware")]
    assert aware.calibration == "noise" and bool(aware.distinguishable_from_reference)
    page = (out / "index.html").read_text()
    for statement in recommendation.statement:
        assert statement.split(":")[0] in page


def test_best_without_real_data_against_best_with_it(report_dir):
    """Issue 33: every row compares with the best real-data cell of any method (here cifar10/accuracy_aware, 10
    flips, 2 float layers but the INT8 speed kept) besides the same method on real images; paired, with a verdict."""
    out, known = report_dir
    recommendation = pd.read_csv(out / "recommendation.csv")
    assert recommendation.real_best_calibration.notna().all() and recommendation.verdict.notna().all()
    overall = recommendation[recommendation.scope == "method"].iloc[0]
    assert (overall.real_best_calibration, overall.real_best_method) == ("cifar10", "accuracy_aware")
    assert overall.real_best_agreement == pytest.approx(1 - 10 / N)
    # fractal/default (24 flips) − cifar10/accuracy_aware (10): 14 images only the real-data cell keeps
    assert overall.delta_agreement_vs_real_best == pytest.approx(-14 / N)
    assert overall.delta_agreement_ci_low_vs_real_best < overall.delta_agreement_vs_real_best < 0
    assert overall.delta_agreement_mcnemar_p_vs_real_best == pytest.approx(2 * 0.5 ** 14, rel=1e-5)  # CSV: 6 digits
    assert bool(overall.distinguishable_from_real_best) and overall.verdict == "worse than real data (agreement)"
    # the same method on real images is there too, and not distinguishable (24 vs 20 flips)
    assert overall.reference_calibration == "cifar10" and overall.verdict != "" and not bool(
        overall.distinguishable_from_reference)
    assert "best cell calibrated on real images by any method, cifar10/accuracy_aware" in overall.statement
    # the page's first screen answers it, before the navigation
    page = (out / "index.html").read_text()
    answer = page[page.index("<div id='answer'>"):page.index("<nav>")]
    assert ("resnet20</b> · test split (2,000 images): without data: Δ " in answer and "; with data: Δ " in answer
            and "; difference −0.7 pp [" in answer and "worse than real data (agreement)" in answer)


def test_a_study_without_real_data_says_so(tmp_path):
    """No real-data set in the study: no reference anywhere, and the page says so; a model of a study that has one
    but ran no real-data cell of that model says that instead."""
    cells = {cell: spec for cell, spec in CELLS.items() if spec[0] != "cifar10"}
    out, _ = _build_study(tmp_path / "none", {"resnet20": cells})
    recommendation = pd.read_csv(out / "recommendation.csv")
    assert recommendation.real_best_calibration.isna().all() and recommendation.reference_calibration.isna().all()
    assert recommendation.statement.str.endswith(
        "The study has no real-data calibration set to compare with. Left out for losing the INT8 speed: "
        "fractal/accuracy_aware (1.10×, 21 float layers).").any()
    assert "with data: no cell to compare with (the study has no real-data calibration set)" in (
        out / "index.html").read_text()
    out, _ = _build_study(tmp_path / "some", {"resnet20": CELLS, "resnet56": cells})
    recommendation = pd.read_csv(out / "recommendation.csv").set_index(["model", "scope", "method"]).sort_index()
    assert recommendation.loc[("resnet20", "method")].real_best_calibration.notna().all()
    resnet56 = recommendation.loc["resnet56"]
    assert resnet56.real_best_calibration.isna().all()
    assert resnet56.statement.str.contains("The study ran no cell of resnet56 calibrated on real images").all()


def test_report_page_in_chromium(report_dir):
    if not find_chromium():
        pytest.skip("needs Chromium (Debian package chromium; .ci/run installs it)")
    out, _ = report_dir
    check = check_page(out / "index.html", width=1280, height=800)
    assert check.problems() == []
    assert check.layout["images"] >= 6 and check.layout["title"] == "synthcal report"
    # every table (folded ones opened) fits its container: none needs sideways scrolling at 1280 px
    assert check.layout["tables"] >= 8 and check.layout["scrollingTables"] == []
    assert 0 < check.layout["answerBottom"] <= 800  # the answer is on the first screen
    assert check.screenshot.startswith(b"\x89PNG")
    with Image.open(__import__("io").BytesIO(check.screenshot)) as shot:
        assert shot.size == (1280, 800)


def test_browser_check_sees_errors_requests_and_overflow(tmp_path):
    """The checker itself: a page that logs an error, loads a remote image and is too wide fails all three."""
    if not find_chromium():
        pytest.skip("needs Chromium (Debian package chromium; .ci/run installs it)")
    page = tmp_path / "bad.html"
    wide_table = "<table><tr>" + "<td>1234567890</td>" * 200 + "</tr></table>"
    page.write_text("<!doctype html><html><head><meta charset='utf-8'><title>bad</title></head><body>"
                    "<div style='width:2000px'>wide</div><img src='http://127.0.0.1:9/remote.png'>"
                    f"<section id='a'><div style='overflow-x:auto'>{wide_table}</div></section>"
                    f"<details><summary>folded</summary><div style='overflow-x:auto'>{wide_table}</div></details>"
                    "<div style='overflow-x:auto'><table><tr><td>fits</td></tr></table></div>"
                    "<script>console.error('broken on purpose')</script></body></html>")
    check = check_page(page, width=1280, height=800)
    assert any("broken on purpose" in message for message in check.console_errors)
    assert check.network_requests == ["http://127.0.0.1:9/remote.png"]
    assert check.horizontal_overflow >= 2000 - 1280
    # both wide tables need sideways scrolling inside their box (the folded one too), the small one does not
    assert [(t["table"], t["section"]) for t in check.layout["scrollingTables"]] == [(0, "a"), (1, "")]
    assert check.layout["tables"] == 3
    assert sum("needs sideways scrolling" in problem for problem in check.problems()) == 2
    assert len(check.problems()) >= 5


def test_study_table_has_a_row_per_model_and_a_column_per_cell(three_models):
    study = pd.read_csv(three_models / "study_table.csv").set_index("model")
    assert list(study.index) == ["resnet20", "resnet56", "shufflenetv2_x0_5"]
    summary = pd.read_csv(three_models / "summary.csv")
    for row in summary[summary.precision == "int8"].itertuples():
        key = f"{row.calibration}/{row.method}"
        assert study.loc[row.model, f"{key}.top1"] == pytest.approx(row.top1)
        assert study.loc[row.model, f"{key}.delta_top1_ci_low"] <= study.loc[row.model, f"{key}.delta_top1"]
        assert study.loc[row.model, f"{key}.agreement_with_fp32"] == pytest.approx(row.agreement_with_fp32)
    # a cell of the study's union, not of every model: resnet56 ran no accuracy-aware cell
    assert np.isnan(study.loc["resnet56", "fractal/accuracy_aware.top1"])
    assert study.fp32_top1.tolist() == pytest.approx([0.95] * 3, abs=0.02)
    page = (three_models / "index.html").read_text()
    assert page.index("<section id='study'>") < page.index("<section id='recommendation'>") < page.index(
        "<section id='speed'>")
    # the sentences under it: per model, and across models per method (22 and 24 flips vs 20: as good as real data;
    # shufflenet's datafree (150) and every noise set differ)
    assert "shufflenetv2_x0_5: FP32 top-1 95.0 %; the best INT8 cell without real images, fractal/default" in page
    assert ("With default, without real images, agreement with FP32 is within the interval of real-data calibration "
            "(cifar10; McNemar, paired) for fractal on 3 of 3, noise on 0 of 3, datafree on 2 of 3, gan on 0 of 2 "
            "networks.") in page


def test_recommendation_lists_only_methods_a_model_ran(three_models):
    recommendation = pd.read_csv(three_models / "recommendation.csv")
    per_method = recommendation[recommendation.scope == "calibration"]
    assert set(per_method[per_method.model == "resnet56"].method) == {"default"}
    assert set(per_method[per_method.model == "resnet20"].method) == {"default", "accuracy_aware"}
    page = (three_models / "index.html").read_text()
    recommended = page[page.index("<section id='recommendation'>"):page.index("<section id='speed'>")]
    # one table row per model and test set before the folded details
    table = recommended[:recommended.index("<details>")]
    assert table.count("</tr>") == 1 + 3 and "datafree/default" in table and "fractal/default" in table


def test_three_model_page_in_chromium_section_by_section(three_models, tmp_path):
    if not find_chromium():
        pytest.skip("needs Chromium (Debian package chromium; .ci/run installs it)")
    check = check_page(three_models / "index.html", width=1280, height=800, sections=True)
    assert check.problems() == []
    assert check.layout["tables"] >= 8 and check.layout["scrollingTables"] == []
    assert 0 < check.layout["answerBottom"] <= 800  # three models' answers on the first screen
    assert {"study", "recommendation", "speed", "delta", "tables"} <= set(check.sections)
    for anchor, png in check.sections.items():
        with Image.open(__import__("io").BytesIO(png)) as shot:
            assert shot.size[0] == 1280 and shot.size[1] > 20, anchor


def test_reference_prefers_a_cifar10_set_whatever_the_order():
    """A cifar10 set is the reference wherever it stands among other real sets; without one, a folder set comes
    before a crossfold set (``REAL_DATA_KINDS`` order); ``preferred`` wins over both, if it is real."""
    from itertools import permutations

    from synthcal.report.recommendation import reference_calibration

    kinds = {"own": "folder", "two_fold": "crossfold", "train": "cifar10", "noise": "noise", "df": "datafree"}
    for order in permutations(kinds):
        assert reference_calibration(list(order), kinds) == "train", order
        assert reference_calibration([n for n in order if n != "train"], kinds) == "own", order
        assert reference_calibration([n for n in order if n not in ("train", "own")], kinds) == "two_fold", order
        assert reference_calibration(list(order), kinds, preferred="two_fold") == "two_fold"
    assert reference_calibration(["noise", "df"], kinds) is None
    with pytest.raises(ValueError, match=r"report.reference_calibration 'noise' is kind noise, not real images "
                                         r"\(the study's real-data sets: \['own', 'train'\]\)"):
        reference_calibration(["own", "noise", "train"], kinds, preferred="noise")
    with pytest.raises(ValueError, match=r"'gone' is not in the study's calibration sets \['own'\] "
                                         r"\(its real-data sets: \['own'\]\)"):
        reference_calibration(["own"], kinds, preferred="gone")
