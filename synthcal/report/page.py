"""The study report: summary.csv, recommendation.csv, plots and a self-contained index.html (no network).

Every INT8 row carries paired statistics against FP32 on the same test images (``synthcal.evaluation.stats``): Δ top-1
with a bootstrap CI and an exact McNemar p-value, agreement with a Wilson interval. Calibration sets of one
model and method are compared with the real-data reference set, and ``synthcal.report.recommendation`` names the best
source without real images.
"""

from __future__ import annotations

import base64
import html
import platform
import zipfile
from functools import cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from PIL import Image  # noqa: E402

from synthcal.evaluation.evaluation_sets import DEFAULT_TEST_SET  # noqa: E402
from synthcal.evaluation.stats import CONFIDENCE, RESAMPLES, versus_reference, wilson_rate  # noqa: E402
from synthcal.evaluation.timing import FP32, consistency  # noqa: E402
from synthcal.io import atomic_path, read_json  # noqa: E402
from synthcal.quantization.compare import engine_section  # noqa: E402
from synthcal.report.auto_oracle import auto_oracle_section  # noqa: E402
from synthcal.report.recommendation import (  # noqa: E402
    REAL_DATA_KINDS,
    answer,
    compare_calibrations,
    recommend,
    reference_calibration,
)
from synthcal.report.study_table import (  # noqa: E402
    across_models_sentences,
    model_sentences,
    study_table,
    study_table_html,
)

SUMMARY_COLUMNS = [
    "model", "test_set", "precision", "calibration", "method", "untrained", "top1", "top1_ci_low", "top1_ci_high",
    "top5", "fp32_top1", "delta_top1", "delta_top1_ci_low", "delta_top1_ci_high", "mcnemar_p",
    "distinguishable_from_fp32", "agreement_with_fp32", "agreement_ci_low", "agreement_ci_high", "flip_rate",
    "int8_only_correct", "fp32_only_correct", "images_per_second", "images_per_second_low",
    "images_per_second_high", "fp32_images_per_second", "speedup", "speedup_low", "speedup_high", "speed_repeats",
    "quantization_seconds", "calibration_kind", "calibration_images", "calibration_samples_used", "float_layers",
    "aa_baseline_metric", "aa_final_metric", "aa_validation", "flagged", "num_images", "test_set_lossy",
    "precision_hint",
]


def _key(record: dict) -> tuple:
    return record["test_set"], record["model"], record["calibration"], record["method"]


@cache
def _load_predictions(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as data:
            return data["predictions"], data["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise MetricsMismatch(f"{path} is not a readable predictions file ({error}); re-run its evaluation") from None


class Evaluations:
    """The study's evaluation records (``Study.evaluations()``) and their per-image predictions."""

    def __init__(self, records: list[dict]):
        self.records = list(records)
        self.by_key = {_key(r): r for r in self.records}

    def fp32(self, test_set: str, model: str) -> dict:
        return self.by_key[(test_set, model, "", "")]

    def predictions(self, test_set: str, model: str, calibration: str, method: str):
        """(INT8 predictions, FP32 predictions, labels) of one cell on one test set."""
        ours, labels = _load_predictions(self.by_key[(test_set, model, calibration, method)]["predictions"])
        fp32, fp32_labels = _load_predictions(self.fp32(test_set, model)["predictions"])
        if not np.array_equal(labels, fp32_labels):
            raise ValueError(f"{model}/{calibration}/{method} and its FP32 reference were evaluated on different "
                             f"images of test set {test_set!r}: re-run both evaluations")
        return ours, fp32, labels


def summary_table(evaluations: Evaluations, config: dict, timings: dict[str, dict]) -> pd.DataFrame:
    """One row per FP32 model and per cell on every test set, with the paired statistics against FP32.

    ``timings``: model → its ``results/timing/{model}.json`` (``evaluation.timing``), where every row's speed comes
    from (the same on every test set); the evaluation jobs' own throughput is not used.
    """
    options = _statistics_options(config)
    lossy = {name: bool(spec.get("lossy", False))
             for name, spec in ((config.get("evaluation") or {}).get("sets") or {}).items()}
    flag_drop = float((config.get("report") or {}).get("flag_drop", 0.02))
    quantize_infos = {}
    rows = []
    for record in evaluations.records:
        metrics = _read_metrics(record["metrics"])
        row = {key: record[key] for key in ("model", "test_set", "precision", "calibration", "method")}
        row.update(_metric_fields(metrics), test_set_lossy=lossy.get(record["test_set"], False))
        row.update(_speed_fields(timings, record))
        predictions, labels = _load_predictions(record["predictions"])
        check_metrics(metrics, predictions, labels, record)
        top1 = wilson_rate(int((predictions == labels).sum()), len(labels), options["confidence"])
        row.update(top1_ci_low=top1.ci_low, top1_ci_high=top1.ci_high)
        if record["precision"] == "int8":
            ours, fp32, labels = evaluations.predictions(*_key(record))
            paired = versus_reference(ours, fp32, labels, **options)
            if abs(paired["delta_top1"] - metrics["delta_top1"]) > 1e-9:
                raise ValueError(f"{record['predictions']} does not match {record['metrics']}: re-run the evaluation")
            row.update(paired)
            row["delta_top1"] = metrics["delta_top1"]
            info = quantize_infos.setdefault(record["quantize"], read_json(record["quantize"], ()))
            row["quantization_seconds"] = info.get("quantization_seconds")
            row["calibration_kind"] = info.get("calibration_set", {}).get("kind")
            row["calibration_images"] = info.get("calibration_images_available")
            row["calibration_samples_used"] = info.get("calibration_samples_used")
            row["float_layers"] = len(info.get("float_layers", []))
            control = info.get("accuracy_control")
            if control:
                row.update(aa_baseline_metric=control["baseline_metric"], aa_final_metric=control["final_metric"],
                           aa_validation=control["validation"])
            row["flagged"] = bool(metrics["delta_top1"] < -flag_drop)
        rows.append(row)
    table = pd.DataFrame(rows)
    columns = [c for c in SUMMARY_COLUMNS if c in table] + sorted(c for c in table if c not in SUMMARY_COLUMNS)
    return table[columns]


def add_quality(table: pd.DataFrame, quality_paths) -> pd.DataFrame:
    """``quality_*`` columns (calibration-set statistics) on the INT8 rows."""
    quality = {(Path(path).parts[-2], Path(path).stem): read_json(path) for path in quality_paths}
    extra = [{f"quality_{key}": value for key, value in quality.get((row.model, row.calibration), {}).items()
              if isinstance(value, int | float) and not isinstance(value, bool)} if row.precision == "int8" else {}
             for row in table.itertuples()]
    return pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)


def _true(table: pd.DataFrame, column: str) -> pd.Series:
    """Rows where a boolean column is True (missing column or value: False)."""
    if column not in table:
        return pd.Series(False, index=table.index)
    return table[column].map(lambda value: value is True or value == 1)


class MetricsMismatch(ValueError):
    """A metrics.json that its predictions.npz does not bear out (edited, or left from another run)."""


def _read_metrics(path: str) -> dict:
    try:
        metrics = read_json(path)
    except (OSError, ValueError) as error:
        raise MetricsMismatch(f"{path} is not a readable metrics file ({error}); re-run its evaluation") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("top1"), int | float):
        raise MetricsMismatch(f"{path} has no numeric top1; re-run its evaluation")
    return metrics


def check_metrics(metrics: dict, predictions: np.ndarray, labels: np.ndarray, record: dict) -> None:
    """The report shows ``metrics.json``'s top-1 beside intervals from ``predictions.npz``: both must say the same
    (top-1 and image count recomputed from the predictions), else the page would publish figures that disagree."""
    top1 = float((predictions == labels).mean()) if len(labels) else float("nan")
    problem = None
    if metrics.get("num_images") != len(labels):
        problem = f"num_images {metrics.get('num_images')!r}, but {record['predictions']} holds {len(labels)} images"
    elif not abs(metrics["top1"] - top1) <= 1e-9:
        problem = f"top1 {metrics['top1']!r}, but {record['predictions']} gives {top1!r}"
    if problem:
        raise MetricsMismatch(f"{record['metrics']}: {problem}; the two files disagree (edited, or from different "
                              "runs): delete both and re-run the evaluation")


def _metric_fields(metrics: dict) -> dict:
    keys = ("top1", "top5", "fp32_top1", "delta_top1", "agreement_with_fp32", "flip_rate", "num_images",
            "precision_hint", "untrained")
    return {key: metrics[key] for key in keys if key in metrics}


def _speed_fields(timings: dict[str, dict], record: dict) -> dict:
    """An evaluation's images/s (and an INT8 cell's speed-up over FP32) from its model's timing file: medians of
    the interleaved repeats, low/high = the lowest/highest repeat."""
    timing = timings[record["model"]]
    name = FP32 if record["precision"] == "fp32" else f"{record['calibration']}/{record['method']}"
    if name not in timing["irs"]:
        raise ValueError(f"the timing file of model {record['model']} has no {name} IR (timed: "
                         f"{sorted(timing['irs'])}): re-run rule time_model")
    speed = timing["irs"][name]["images_per_second"]
    fields = {"images_per_second": speed["median"], "images_per_second_low": speed["min"],
              "images_per_second_high": speed["max"], "speed_repeats": timing["repeats"]}
    if name != FP32:
        speedup = timing["irs"][name]["speedup"]
        fields.update(fp32_images_per_second=timing["irs"][FP32]["images_per_second"]["median"],
                      speedup=speedup["median"], speedup_low=speedup["min"], speedup_high=speedup["max"])
    return fields


def _statistics_options(config: dict) -> dict:
    report = config.get("report") or {}
    return {"seed": int(config.get("seed", 0)), "resamples": int(report.get("bootstrap_resamples", RESAMPLES)),
            "confidence": float(report.get("confidence", CONFIDENCE))}


# plots ---------------------------------------------------------------------------------------------------------------

def _test_set_title(table: pd.DataFrame, test_set: str) -> str:
    rows = table[table.test_set == test_set]
    lossy = " lossy" if rows.test_set_lossy.any() else ""
    split = "test split" if test_set == DEFAULT_TEST_SET else f"test set {test_set}"
    return f"{split} ({int(rows.num_images.iloc[0]):,}{lossy} images)"


def _heatmap(table: pd.DataFrame, methods: list[str], test_sets: list[str], path) -> None:
    """Δ top-1 per method and test set: models as rows, calibration sets as columns, each panel with its colour
    scale beside it; models without a cell of that method are left out of its panel."""
    int8 = table[table.precision == "int8"]
    calibrations = list(dict.fromkeys(int8.calibration))
    panels = []
    for test_set in test_sets:
        for method in methods:
            cells = int8[(int8.method == method) & (int8.test_set == test_set)]
            if len(cells):
                panels.append((test_set, method, cells, list(dict.fromkeys(cells.model))))
    heights = [0.62 * len(models) + 1.4 for *_, models in panels]
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, layout="constrained", height_ratios=heights,
                             figsize=(1.05 * len(calibrations) + 4.0, sum(heights)))
    for ax, (test_set, method, cells, models) in zip(axes[:, 0], panels, strict=True):
        grid = {name: cells.pivot(index="model", columns="calibration", values=name)
                .reindex(index=models, columns=calibrations) * 100
                for name in ("delta_top1", "delta_top1_ci_low", "delta_top1_ci_high")}
        image = ax.imshow(grid["delta_top1"].values, cmap="RdYlGn", vmin=-5, vmax=5, aspect="auto")
        ax.set_xticks(range(len(calibrations)), calibrations, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(models)), models, fontsize=8)
        for (i, j), value in np.ndenumerate(grid["delta_top1"].values):
            low, high = grid["delta_top1_ci_low"].values[i, j], grid["delta_top1_ci_high"].values[i, j]
            text = "–" if np.isnan(value) else f"{value:+.2f}\n[{low:+.1f}, {high:+.1f}]"
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
        ax.set_title(f"{method} · {_test_set_title(table, test_set)}", fontsize=9)
        fig.colorbar(image, ax=ax, label="Δ top-1 (pp)", fraction=0.04, pad=0.02)
    _save_figure(fig, path)


def _delta_intervals(table: pd.DataFrame, test_sets: list[str], path) -> None:
    """Δ top-1 of every cell with its CI; hollow where the CI spans 0 (not distinguishable from FP32)."""
    int8 = table[table.precision == "int8"]
    models = list(dict.fromkeys(int8.model))
    cells_per_model = int8.groupby(["model", "test_set"]).size().max()
    fig, axes = plt.subplots(len(models), len(test_sets), squeeze=False, layout="constrained",
                             figsize=(5.2 * len(test_sets) + 1.5, (0.24 * cells_per_model + 1.1) * len(models)))
    for i, model in enumerate(models):
        for j, test_set in enumerate(test_sets):
            ax = axes[i][j]
            cells = int8[(int8.model == model) & (int8.test_set == test_set)].iloc[::-1]
            y = np.arange(len(cells))
            delta, low, high = (cells[name].to_numpy() * 100 for name in
                                ("delta_top1", "delta_top1_ci_low", "delta_top1_ci_high"))
            differs = cells.distinguishable_from_fp32.to_numpy(dtype=bool)
            ax.errorbar(delta, y, xerr=[delta - low, high - delta], fmt="none", ecolor="#555", capsize=2, lw=1)
            ax.scatter(delta[differs], y[differs], color="#c0392b", zorder=3, s=22, label="differs from FP32")
            ax.scatter(delta[~differs], y[~differs], facecolor="white", edgecolor="#2c3e50", zorder=3, s=22,
                       label="not distinguishable from FP32")
            ax.axvline(0, color="#888", lw=0.8)
            ax.set_yticks(y, [f"{c} / {m}" for c, m in zip(cells.calibration, cells.method, strict=True)],
                          fontsize=8)
            ax.set_xlabel("Δ top-1 vs FP32 (pp), 95 % CI" if i == len(models) - 1 else "")
            ax.set_title(f"{model} · {_test_set_title(table, test_set)}", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8)
    _save_figure(fig, path)


def pareto_front(speedup: pd.Series, agreement: pd.Series) -> pd.Series:
    """True for cells no other cell beats in both speed-up and agreement (at least as good in both, better in one)."""
    points = np.column_stack([speedup.to_numpy(dtype=float), agreement.to_numpy(dtype=float)])
    dominated = [bool(((points >= point).all(axis=1) & (points > point).any(axis=1)).any()) for point in points]
    return pd.Series(np.logical_not(dominated), index=speedup.index)


def _with_front(int8: pd.DataFrame) -> pd.DataFrame:
    """INT8 rows with ``pareto`` (on the speed/agreement front of their model and test set) and ``labelled``: on
    the front, or the fully quantized cell without real images that agrees best (the front among cells of nearly
    equal speed is drawn by timing noise)."""
    if int8.empty:
        return int8.assign(pareto=[], labelled=[])
    front = pd.concat([pareto_front(cells.speedup, cells.agreement_with_fp32)
                       for _, cells in int8.groupby(["model", "test_set"], sort=False)])
    synthetic = int8[~int8.get("calibration_kind", pd.Series("", index=int8.index)).isin(REAL_DATA_KINDS)
                     & (int8.float_layers == 0)]
    best = synthetic.sort_values("agreement_with_fp32", ascending=False).groupby(["model", "test_set"]).head(1)
    return int8.assign(pareto=front, labelled=front | int8.index.isin(best.index))


def _speed_accuracy(table: pd.DataFrame, test_sets: list[str], path) -> None:
    """Agreement with FP32 (Wilson CI) against INT8 speed-up, one point per cell (colour: calibration set, marker:
    method); only the cells on the speed/agreement front are labelled, the rest are keyed in the page's table."""
    int8 = _with_front(table[table.precision == "int8"])
    models = list(dict.fromkeys(int8.model))
    colours = dict(zip(dict.fromkeys(int8.calibration), plt.cm.tab10.colors * 4, strict=False))
    markers = dict(zip(dict.fromkeys(int8.method), "o^sDvP*X" * 4, strict=False))
    panels = [(model, test_set) for model in models for test_set in test_sets
              if ((int8.model == model) & (int8.test_set == test_set)).any()]  # one column: page width
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, layout="constrained", figsize=(10, 4.6 * len(panels)))
    labels_per_panel = []
    for ax, (model, test_set) in zip(axes[:, 0], panels, strict=True):
        cells = int8[(int8.model == model) & (int8.test_set == test_set)]
        labels = []
        labels_per_panel.append((ax, labels))
        for cell in cells.itertuples():
            agreement = cell.agreement_with_fp32 * 100
            ax.errorbar(cell.speedup, agreement, yerr=[[agreement - cell.agreement_ci_low * 100],
                                                       [cell.agreement_ci_high * 100 - agreement]],
                        xerr=[[cell.speedup - cell.speedup_low], [cell.speedup_high - cell.speedup]],
                        fmt=markers[cell.method], color=colours[cell.calibration], capsize=2, ms=6,
                        alpha=1.0 if cell.labelled else 0.55)
            if cell.labelled:
                floats = int(cell.float_layers)
                labels.append((cell.speedup, agreement, colours[cell.calibration], cell.speedup_high,
                               f"{cell.calibration}/{cell.method}" + (f" · {floats} float" if floats else "")))
        ax.margins(x=0.25, y=0.08)
        ax.set_xlabel(f"INT8 speed-up over FP32: median of {_repeats_text(cells)} interleaved repeats "
                      "(bars: lowest to highest)")
        ax.set_ylabel("agreement with FP32 top-1 (%), 95 % CI")
        ax.set_title(f"{model} · {_test_set_title(table, test_set)} · {len(cells)} cells, "
                     "labelled: the front and the best without real images", fontsize=9)
        ax.grid(alpha=0.3)
    calibration_handles = [Line2D([], [], ls="", marker="o", color=colour, label=calib)
                           for calib, colour in colours.items()]
    method_handles = [Line2D([], [], ls="", marker=marker, color="#444", label=method)
                      for method, marker in markers.items()]
    fig.legend(handles=calibration_handles + method_handles, loc="outside upper center", fontsize=8,
               ncol=min(8, len(calibration_handles) + len(method_handles)),
               title="colour: calibration set · marker: method", title_fontsize=8)
    for ax, labels in labels_per_panel:  # last: the layout (legend included) decides where points land
        _label_points(ax, labels)
    _save_figure(fig, path)


def _speed_key_html(table: pd.DataFrame) -> str:
    """Every cell of the speed plot: agreement per test set, speed-up, float layers, whether it is on the front."""
    int8 = _with_front(table[table.precision == "int8"])
    if int8.empty:
        return ""
    key = int8.assign(
        agreement=[f"{r.agreement_with_fp32 * 100:.1f} [{r.agreement_ci_low * 100:.1f}, "
                   f"{r.agreement_ci_high * 100:.1f}]" for r in int8.itertuples()],
        front=int8.pareto.map({True: "◆", False: ""}))
    wide = key.pivot_table(index=["model", "calibration", "method"], columns="test_set",
                           values=["agreement", "front"], aggfunc="first", sort=False)
    wide.columns = [f"{'agreement % [CI]' if name == 'agreement' else 'on front'} · {test_set}"
                    for name, test_set in wide.columns]
    speed = int8.drop_duplicates(["model", "calibration", "method"]).set_index(["model", "calibration", "method"])
    wide.insert(0, "speed-up [low, high]", [f"{speed.speedup[i]:.2f} [{speed.speedup_low[i]:.2f}, "
                                            f"{speed.speedup_high[i]:.2f}]" for i in wide.index])
    wide.insert(1, "float layers", [int(speed.float_layers[i]) for i in wide.index])
    return ("<details><summary>Every cell of the plot (◆: on the speed/agreement front)"
            "</summary>" + _table_html(wide.fillna("").reset_index(), index=False) + "</details>")


def _label_points(ax, points: list[tuple[float, float, tuple, float, str]]) -> None:
    """Label each (x, y, colour, right, text) to the right of ``right`` (the end of its horizontal error bar),
    pushed up where it would cover another label or a point."""
    figure = ax.figure
    figure.canvas.draw()  # settle limits, layout and transforms
    renderer = figure.canvas.get_renderer()
    markers = [ax.transData.transform((x, y)) for x, y, *_ in points]
    taken = []  # label boxes in pixels
    for x, y, colour, right, text in sorted(points, key=lambda point: point[1]):
        own = ax.transData.transform((x, y))
        x = max(x, right)
        label = ax.annotate(text, (x, y), xytext=(9, -3), textcoords="offset points", fontsize=7, color=colour)
        for lift in range(0, 200, 2):
            label.set_position((9, -3 + lift))
            box = label.get_window_extent(renderer).expanded(1.0, 1.15)
            hits_marker = any(box.x0 - 6 < mx < box.x1 + 6 and box.y0 - 6 < my < box.y1 + 6
                              for mx, my in markers if (mx, my) != tuple(own))
            if not hits_marker and not any(box.overlaps(other) for other in taken):
                break
        taken.append(box)
        if lift:
            ax.annotate("", (x, y), xytext=(9, -3 + lift), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5})


def _repeats_text(rows: pd.DataFrame) -> str:
    return "/".join(str(int(value)) for value in sorted(rows.speed_repeats.dropna().unique()))


def _throughput(table: pd.DataFrame, test_set: str, path) -> None:
    """Images/s from the timing step: FP32 (bar: lowest to highest repeat) and the median INT8 cell (bar: the
    slowest to the fastest cell)."""
    rows = table[table.test_set == test_set]
    fp32 = rows[rows.precision == "fp32"].set_index("model")
    int8 = rows[rows.precision == "int8"].groupby("model", sort=False).images_per_second
    bars = [("FP32 (bar: lowest–highest repeat)", fp32.images_per_second, fp32.images_per_second_low,
             fp32.images_per_second_high),
            ("INT8, median cell (bar: slowest–fastest cell)", int8.median(), int8.min(), int8.max())]
    models = list(fp32.index)
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(1.6 * len(models) + 3, 3.8), layout="constrained")
    for offset, (label, median, low, high) in zip((-0.2, 0.2), bars, strict=True):
        median, low, high = (series.reindex(models).to_numpy(dtype=float) for series in (median, low, high))
        ax.bar(x + offset, median, 0.38, yerr=[median - low, high - median], capsize=3, label=label)
    ax.set_xticks(x, models)
    ax.set_ylabel("images/s")
    ax.set_title(f"Throughput: median of {_repeats_text(rows)} interleaved repeats of the timing step (rule "
                 "time_model)", fontsize=9)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8)
    _save_figure(fig, path)


def _quality_scatter(table: pd.DataFrame, test_set: str, path) -> None:
    """Δ top-1 against the calibration set's Fréchet distance, one panel per model (distances are measured in
    each model's own features); colour = calibration set, marker = method, so that no two cells look alike."""
    int8 = table[(table.precision == "int8") & (table.test_set == test_set)]
    if "quality_frechet_distance" not in int8 or int8.empty:
        fig, ax = plt.subplots(figsize=(8, 2.5), layout="constrained")
        ax.text(0.5, 0.5, "no quality statistics", ha="center")
        ax.set_title(_test_set_title(table, test_set), fontsize=9)
        ax.axis("off")
        _save_figure(fig, path)
        return
    models = list(dict.fromkeys(int8.model))
    colours = dict(zip(dict.fromkeys(int8.calibration), plt.cm.tab10.colors * 4, strict=False))
    markers = dict(zip(dict.fromkeys(int8.method), "o^sDvP*X" * 4, strict=False))
    fig, axes = plt.subplots(len(models), 1, squeeze=False, layout="constrained", figsize=(9, 3.4 * len(models)))
    for ax, model in zip(axes[:, 0], models, strict=True):
        for cell in int8[int8.model == model].itertuples():
            delta = cell.delta_top1 * 100
            ax.errorbar(cell.quality_frechet_distance, delta, yerr=[[delta - cell.delta_top1_ci_low * 100],
                                                                     [cell.delta_top1_ci_high * 100 - delta]],
                        fmt=markers[cell.method], color=colours[cell.calibration], capsize=2)
        ax.set_xlabel("Fréchet distance to the training split (penultimate features)")
        ax.set_ylabel("Δ top-1 (pp), 95 % CI")
        ax.set_title(f"{model} · {_test_set_title(table, test_set)}", fontsize=9)
        ax.grid(alpha=0.3)
    handles = ([Line2D([], [], ls="", marker="o", color=colour, label=calib) for calib, colour in colours.items()]
               + [Line2D([], [], ls="", marker=marker, color="#444", label=method)
                  for method, marker in markers.items()])
    fig.legend(handles=handles, loc="outside upper center", fontsize=8, ncol=min(8, len(handles)),
               title="colour: calibration set · marker: method", title_fontsize=8)
    _save_figure(fig, path)


def _previews(paths: list[str], path) -> None:
    fig, axes = plt.subplots(1, max(1, len(paths)), figsize=(4 * max(1, len(paths)), 4.4), squeeze=False)
    for ax, preview in zip(axes[0], paths, strict=False):
        ax.imshow(Image.open(preview))
        ax.set_title(_preview_name(preview), fontsize=9)
    for ax in axes[0]:
        ax.axis("off")
    _save_figure(fig, path)


def _preview_name(path: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[parts.index("calib") + 1:-1])


def _save_figure(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


# html ----------------------------------------------------------------------------------------------------------------

def _inline_png(path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table_html(frame: pd.DataFrame, **options) -> str:
    """A table in a box that scrolls sideways, so wide tables never widen the page."""
    return f"<div class='wide'>{frame.to_html(**options)}</div>"


def _versions() -> dict:
    import nncf
    import openvino
    import scipy
    import snakemake
    import torch

    versions = {"python": platform.python_version(), "openvino": openvino.get_version(), "nncf": nncf.__version__,
                "torch": torch.__version__, "snakemake": snakemake.__version__, "numpy": np.__version__,
                "scipy": scipy.__version__, "platform": platform.platform()}
    return {name: str(version) for name, version in versions.items()}


def _pp_interval(row) -> str:
    return f"[{row.delta_top1_ci_low * 100:+.1f}, {row.delta_top1_ci_high * 100:+.1f}]"


def _method_tables(table: pd.DataFrame, methods: list[str], test_sets: list[str]) -> str:
    parts = []
    for test_set in test_sets:
        rows_of_set = table[table.test_set == test_set]
        int8 = rows_of_set[rows_of_set.precision == "int8"]
        fp32 = rows_of_set[rows_of_set.precision == "fp32"].set_index("model")
        for method in methods:
            rows = int8[int8.method == method]
            cell = rows.assign(text=[
                f"{r.top1 * 100:.2f}<br><small>{r.delta_top1 * 100:+.2f} {_pp_interval(r)}"
                + ("" if r.distinguishable_from_fp32 else " ≈ FP32") + (" ⚠" if r.flagged else "") + "</small>"
                for r in rows.itertuples()
            ]).pivot(index="model", columns="calibration", values="text")
            cell = cell[list(dict.fromkeys(rows.calibration))]
            cell.insert(0, "FP32", [f"{fp32.top1[m] * 100:.2f} [{fp32.top1_ci_low[m] * 100:.1f}, "
                                    f"{fp32.top1_ci_high[m] * 100:.1f}]" for m in cell.index])
            cell.index = [f"{m} (untrained)" if bool(fp32.get("untrained", {}).get(m, False)) else m
                          for m in cell.index]
            parts.append(f"<h3>{html.escape(method)} · {html.escape(_test_set_title(table, test_set))}</h3>"
                         + _table_html(cell, escape=False))  # names follow NAME_PATTERN; the cells are ours
    return "\n".join(parts)


def _comparisons_html(comparisons: pd.DataFrame) -> str:
    """calibration_comparison.csv in a table that fits the page: one row per cell, the differences with their
    intervals and p-values in one column each."""
    if comparisons.empty:
        return "<p>No cell has a real-data counterpart (same model, method and test set).</p>"

    def pp(row, name: str) -> str:
        return (f"{row[name] * 100:+.2f} [{row[f'{name}_ci_low'] * 100:+.2f}, {row[f'{name}_ci_high'] * 100:+.2f}], "
                f"p = {row[f'{name}_mcnemar_p']:.2g}")

    shown = pd.DataFrame([{
        "test set": row["test_set"], "model": row["model"], "method": row["method"],
        "calibration": row["calibration"], "reference": row["reference"],
        "Δ agreement pp [CI], McNemar p": pp(row, "delta_agreement"), "Δ top-1 pp [CI], McNemar p": pp(
            row, "delta_top1"),
        "distinguishable (agreement / top-1)": f"{'yes' if row['agreement_distinguishable'] else 'no'} / "
                                               f"{'yes' if row['top1_distinguishable'] else 'no'}",
        "images": f"{int(row['num_images']):,}"} for row in comparisons.to_dict("records")])
    return _table_html(shown, index=False)


def _quality_html(int8: pd.DataFrame, quality_columns: list[str]) -> str:
    """Δ top-1 beside the calibration sets' statistics, headers without the ``quality_`` prefix and underscores
    (so that they wrap) and figures to 4 significant digits."""
    shown = int8[["model", "calibration", "method", "delta_top1", *quality_columns]].copy()
    shown.columns = [name.removeprefix("quality_").replace("_", " ") for name in shown.columns]
    return _table_html(shown, index=False, float_format=lambda v: f"{v:.4g}")


def _recommendation_html(recommendation: pd.DataFrame) -> str:
    """One row per model and test set (the best cell without real images over all methods, the best with real
    images, the same method on real images, the paired differences and the verdict) as a table; the per-method
    rows and the full sentences below it, folded. Every figure is in ``recommendation.csv``."""
    if recommendation.empty:
        return "<p>No INT8 cells.</p>"

    def interval(row, value, low, high, signed=False):
        if pd.isna(row.get(value)):
            return "–"
        form = (lambda v: f"{v * 100:+.1f}") if signed else (lambda v: f"{v * 100:.1f}")
        return f"{form(row[value])} <small>[{form(row[low])}, {form(row[high])}]</small>"

    def named(row, calibration, method) -> bool:
        return isinstance(row.get(calibration), str) and row[calibration] != "" and isinstance(row.get(method), str)

    def cell(row, calibration, method, agreement, delta) -> str:
        if not named(row, calibration, method):
            return "–"
        return (f"<b>{html.escape(row[calibration])}/{html.escape(row[method])}</b><br>agr. "
                + interval(row, agreement, f"{agreement}_ci_low", f"{agreement}_ci_high") + "<br>Δ top-1 "
                + interval(row, delta, f"{delta}_ci_low", f"{delta}_ci_high", True))

    def difference(row, suffix) -> str:
        if pd.isna(row.get(f"delta_agreement_{suffix}")):
            return "–"
        return ("agr. " + interval(row, f"delta_agreement_{suffix}", f"delta_agreement_ci_low_{suffix}",
                                   f"delta_agreement_ci_high_{suffix}", True)
                + f" <small>p = {row[f'delta_agreement_mcnemar_p_{suffix}']:.2g}</small><br>top-1 "
                + interval(row, f"delta_top1_{suffix}", f"delta_top1_ci_low_{suffix}", f"delta_top1_ci_high_{suffix}",
                           True) + f" <small>p = {row[f'delta_top1_mcnemar_p_{suffix}']:.2g}</small>")

    def rows_of(frame: pd.DataFrame, scope: str) -> str:
        header = "".join(f"<th>{name}</th>" for name in (
            "model · test set", "best without real images", "best with real images (any method)",
            "without − with", "verdict", "same method on real images", "without − same method"))
        body = []
        for row in frame[frame.scope == scope].to_dict("records"):
            found = named(row, "calibration", "method")
            without = (cell(row, "calibration", "method", "agreement", "delta_top1")
                       + f"<br><small>{row['speedup']:.2f}×</small>" if found else "none keeps the INT8 speed")
            real = cell(row, "real_best_calibration", "real_best_method", "real_best_agreement",
                        "real_best_delta_top1")
            if real == "–" and found:
                real = ("the study ran none of this model" if row.get("study_has_real_data")
                        else "the study has no real-data set")
            same = "–"
            if named(row, "reference_calibration", "method"):
                same = (f"<b>{html.escape(row['reference_calibration'])}/{html.escape(row['method'])}</b><br>agr. "
                        + interval(row, "reference_agreement", "reference_agreement_ci_low",
                                   "reference_agreement_ci_high"))
            verdict = row.get("verdict") if isinstance(row.get("verdict"), str) else "–"
            test_set = html.escape(str(row["test_set"]))
            body.append("<tr>" + "".join(f"<td>{value}</td>" for value in (
                f"<b>{html.escape(row['model'])}</b><br>{test_set}"
                + (f"<br><small>method {html.escape(row['method'])}</small>" if scope == "calibration" else ""),
                without, real, difference(row, "vs_real_best"), html.escape(verdict), same,
                difference(row, "vs_reference"))) + "</tr>")
        return (f"<div class='wide'><table class='fit'><thead><tr>{header}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table></div>")

    items = "".join(f"<li><b>{html.escape(head)}</b>:{html.escape(rest)}</li>"
                    for head, _, rest in (text.partition(":") for text in recommendation.statement))
    return (rows_of(recommendation, "method")
            + "<details><summary>Per method, and every row as a sentence</summary>"
            + rows_of(recommendation, "calibration")
            + f"<ul class='statements'>{items}</ul></details>")


def _answer_html(recommendation: pd.DataFrame, table: pd.DataFrame, level: str) -> str:
    """The page's first screen: per model and test set, what calibrating without real images costs against
    calibrating with them (``recommendation.answer``)."""
    rows = recommendation[recommendation.scope == "method"] if len(recommendation) else recommendation
    if rows.empty:
        return ""
    order = {model: index for index, model in enumerate(dict.fromkeys(rows.model))}
    rows = rows.sort_values("model", key=lambda models: models.map(order), kind="stable")  # per model, its sets
    items = "".join(f"<li><b>{html.escape(row['model'])}</b> · {html.escape(_test_set_title(table, row['test_set']))}"
                    f": {html.escape(answer(row))}</li>" for row in rows.to_dict("records"))
    return ("<div id='answer'><p><b>How much is lost without real data?</b> Per model: INT8 − FP32 top-1 (Δ, "
            f"{level} interval) of the best cell calibrated without one real image and of the best cell calibrated on "
            "real images (by agreement with FP32, among cells that keep the INT8 speed), and their paired "
            "difference (without − with; bootstrap interval, exact McNemar p). Details: "
            f"<a href='#recommendation'>Recommendation</a>.</p><ul class='answer'>{items}</ul></div>")


def _speed_method_html(timings: dict[str, dict]) -> str:
    """How the speed figures were measured, from the timing files."""
    settings = {(t["repeats"], t["images"], t["batch_size"], t["precision_hint"]) for t in timings.values()}
    how = "; ".join(f"{repeats} repeats of {images:,} test images, batch {batch}, precision hint {hint}"
                    for repeats, images, batch, hint in sorted(settings))
    return ("<p>Speed is measured apart from the evaluations, in one timing job per model that runs alone on the "
            "machine (rule <code>time_model</code>, <code>results/timing/{model}.json</code>): the FP32 IR and every "
            "INT8 IR of the model, compiled and warmed up once, then timed interleaved: each repeat passes the same "
            "images once through every IR, in a seeded shuffled order that is reversed the next repeat "
            f"({html.escape(how)}). Images/s is the median over repeats; a speed-up is the median of the per-repeat "
            "ratios FP32 / INT8 of process CPU time (all threads) in the same repeat, which another process on the "
            "machine hardly moves; bars and <code>_low</code>/<code>_high</code> columns span the "
            "lowest and highest repeat. The evaluation jobs' own timings are not used.</p>")


def _speed_consistency_html(table: pd.DataFrame, test_set: str) -> str:
    """Per model: how far the speed-ups of fully quantized cells (the same graph in kind) lie from their median."""
    int8 = table[(table.precision == "int8") & (table.test_set == test_set)]
    items = []
    for model, cells in int8[int8.float_layers == 0].groupby("model", sort=False):
        median, deviation = consistency(cells.speedup)
        items.append(f"<li>{html.escape(model)}: {len(cells)} cells with every layer in INT8, speed-up median "
                     f"{median:.2f}×, all within ±{deviation * 100:.1f} % of it</li>")
    return f"<ul>{''.join(items)}</ul>" if items else ""


def build_report(inputs, outputs, study: dict, config: dict) -> pd.DataFrame:
    """Write every report output; ``study`` is ``Study.report_study()``."""
    options = _statistics_options(config)
    report_config = config.get("report") or {}
    flag_drop = float(report_config.get("flag_drop", 0.02))
    methods, test_sets = study["methods"], study["test_sets"]
    evaluations = Evaluations(study["evaluations"])
    timings = {model: read_json(path, ("irs",)) for model, path in study["timing"].items()}
    table = add_quality(summary_table(evaluations, config, timings), inputs.quality)
    kinds = {name: spec.get("kind") for name, spec in (config.get("calibration") or {}).items()}
    reference = reference_calibration(study["calibrations"], kinds, report_config.get("reference_calibration"))
    comparisons = (compare_calibrations(table, evaluations.predictions, reference, **options) if reference
                   else compare_calibrations(table.iloc[:0], evaluations.predictions, "", **options))
    recommendation = recommend(table, comparisons, evaluations.predictions, kinds, methods, reference,
                               min_speedup_share=float(report_config.get("min_speedup_share", 0.8)), **options)
    main_set = test_sets[0]
    table_2022 = study_table(table, main_set)
    for frame, path in ((table, outputs.summary), (comparisons, outputs.comparison),
                        (recommendation, outputs.recommendation), (table_2022, outputs.study_table)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")

    _heatmap(table, methods, test_sets, outputs.heatmap)
    _delta_intervals(table, test_sets, outputs.intervals)
    _speed_accuracy(table, test_sets, outputs.speed_accuracy)
    _throughput(table, main_set, outputs.throughput)
    _quality_scatter(table, main_set, outputs.quality)
    _previews(list(inputs.previews), outputs.previews)

    level = f"{options['confidence'] * 100:.0f} %"
    untrained = table[_true(table, "untrained")].model.unique().tolist()
    flagged = table[_true(table, "flagged")]
    int8 = table[table.precision == "int8"]
    quality_columns = [c for c in table if c.startswith("quality_")]
    sets_text = "; ".join(html.escape(_test_set_title(table, name)) for name in test_sets)
    # (id, heading, html): the page in order. An engine comparison (POT vs NNCF) goes after "tables".
    sentences = (model_sentences(recommendation, table_2022, main_set)
                 + across_models_sentences(comparisons, kinds, main_set))
    sections = [
        ("study", "The study: INT8 top-1 and agreement per model, calibration set and method",
         "<p>The 2022 study's table: every calibration set × method (rows) for every model (columns) on the "
         f"{html.escape(_test_set_title(table, main_set))}; also in <code>study_table.csv</code>, one row per "
         "model.</p>"
         + study_table_html(table_2022, table, main_set, _test_set_title(table, main_set))
         + "<ul class='statements'>" + "".join(f"<li>{html.escape(text)}</li>" for text in sentences) + "</ul>"),
        ("recommendation", "Recommendation: calibrating without real images",
         "<p>Per model and test set: the best calibration source without real images by agreement with FP32, "
         "among cells that keep the INT8 speed (every layer in INT8, or layers left in float but at least "
         f"{float(report_config.get('min_speedup_share', 0.8)) * 100:.0f} % of the fully quantized cells' median "
         "speed-up), compared image by image with the best cell calibrated on real images by any method (the same "
         "speed rule) and with the same method calibrated on real images (" + html.escape(str(reference)) + ", "
         "else the best real-data set that method ran on). agr.: agreement with FP32 %; differences in pp "
         "[interval], exact McNemar p. Also in <code>recommendation.csv</code>.</p>"
         + _recommendation_html(recommendation)),
        ("speed", "Speed vs agreement",
         "<p>Every cell: agreement with FP32 (share of test images with the same top-1 class, Wilson interval) "
         "against INT8 speed-up; colour: calibration set, marker: method. Labelled, with the layers left in "
         "float: the cells on the speed/agreement front (no other cell both faster and agreeing more) and the "
         "fully quantized cell without real images that agrees best; the table under the plot keys every cell."
         "</p>"
         + _speed_method_html(timings) + _speed_consistency_html(table, main_set)
         + _inline_png(outputs.speed_accuracy, "agreement vs speed-up per cell") + _speed_key_html(table)),
        ("delta", f"Δ top-1 with {level} intervals",
         "<p>INT8 − FP32 top-1 on the same images: paired bootstrap over test images "
         f"({options['resamples']} resamples, seed {options['seed']}); hollow points are not distinguishable from "
         "FP32 (the interval spans 0).</p>"
         + _inline_png(outputs.intervals, "delta top-1 with confidence intervals")
         + _inline_png(outputs.heatmap, "delta top-1 heatmap")),
        ("tables", "INT8 top-1 per method",
         "<p>Top-1 % (Δ pp [CI]); ≈ FP32: not distinguishable from FP32; ⚠: drop over "
         f"{flag_drop * 100:.1f} pp. FP32 column: top-1 [Wilson CI].</p>"
         + _method_tables(table, methods, test_sets)),
        ("versus-real", f"Calibration sets vs {html.escape(str(reference))} (same model, method, test set)",
         "<p>Δ agreement and Δ top-1 (this set − reference) in pp with bootstrap CIs and McNemar p-values; "
         "every column in <code>calibration_comparison.csv</code>.</p>"
         + _comparisons_html(comparisons)),
        ("throughput", "Throughput",
         "<p>Images/s from the timing step (how: <a href='#speed'>Speed vs agreement</a>), the same on every test "
         "set.</p>" + _inline_png(outputs.throughput, "throughput")),
        ("calibration-sets", "Calibration sets",
         _inline_png(outputs.previews, "calibration previews")
         + "".join(f"<h4>{html.escape(_preview_name(p))}</h4>{_inline_png(p, _preview_name(p))}"
                   for p in inputs.previews)),
        ("quality", "Calibration-set quality vs Δ",
         _inline_png(outputs.quality, "quality vs delta")
         + _quality_html(int8[int8.test_set == main_set], quality_columns)),
        ("rows", "All rows", "<p>Every figure of every row (FP32 and each cell on each test set, "
         f"{len(table.columns)} columns) is in <code>summary.csv</code> beside this page (columns: README, "
         "<i>summary.csv columns</i>); the sections above show them in tables that fit the page.</p>"),
        ("config", "Config", f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>"),
        ("versions", "Versions", f"<pre>{html.escape(yaml.safe_dump(_versions()))}</pre>"),
    ]
    engines = engine_section(table, evaluations.predictions, config.get("methods") or {}, methods, **options)
    if engines:  # POT vs NNCF (synthcal/quantization/compare.py), right after the per-method tables
        sections.insert([anchor for anchor, _, _ in sections].index("tables") + 1, engines)
    auto = auto_oracle_section(getattr(inputs, "auto_oracle", None))  # method auto vs its oracle (auto_oracle.py)
    if auto:
        sections.insert([anchor for anchor, _, _ in sections].index("tables") + 1, auto)
    body = [
        "<h1>synthcal report</h1>",
        f"<p>INT8 (NNCF) vs FP32 (OpenVINO) top-1 in %, Δ in percentage points, on {sets_text}. Intervals are "
        f"{level}; every INT8 figure is paired with FP32 on the same images.</p>",
        _answer_html(recommendation, table, level),
        "<nav>" + " · ".join(f"<a href='#{anchor}'>{html.escape(title)}</a>" for anchor, title, _ in sections)
        + "</nav>",
    ]
    if untrained:
        body.append(f"<p class='warn'>UNTRAINED (random weights, smoke test only): {html.escape(str(untrained))}</p>")
    if len(flagged):
        names = flagged.model + "/" + flagged.calibration + "/" + flagged.method + " (" + flagged.test_set + ")"
        body.append(f"<p class='warn'>Flagged cells: {html.escape(', '.join(names))}</p>")
    body += [f"<section id='{anchor}'><h2>{html.escape(title)}</h2>{content}</section>"
             for anchor, title, content in sections]
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>synthcal report</title><style>"
            "*{box-sizing:border-box} body{font-family:sans-serif;margin:1.5em auto;padding:0 1.5em;max-width:1400px}"
            " .wide{overflow-x:auto;max-width:100%;margin:0.5em 0}"
            " table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ccc;padding:3px 6px;"
            "text-align:right} table.fit td,table.fit th{text-align:left;vertical-align:top}"
            " tr.group th{text-align:left;background:#f2f2f2}"
            " .answer li{margin:0.3em 0;line-height:1.35;font-size:14px}"
            " img{max-width:100%;height:auto;display:block;margin:0.5em 0}"
            " pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px} .warn{color:#b00}"
            " nav{font-size:13px;line-height:1.8} .statements li{margin:0.4em 0;line-height:1.4}"
            " table.study td{font-size:12px;line-height:1.25} table.study small{color:#555}"
            " table.study td.differs{background:#f9d9d2} table.study caption{text-align:left;font-size:12px;"
            "padding:2px 0} details{margin:0.5em 0} summary{cursor:pointer;font-size:13px}"
            "</style></head><body>" + "\n".join(body) + "</body></html>")
    with atomic_path(outputs.html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return table
