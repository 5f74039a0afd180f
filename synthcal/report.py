"""The study report: summary.csv, plots and a self-contained index.html (images inlined, no network)."""

from __future__ import annotations

import base64
import html
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from synthcal.io import atomic_path, read_json  # noqa: E402

SUMMARY_COLUMNS = [
    "model", "precision", "calibration", "method", "untrained", "top1", "top5", "fp32_top1", "delta_top1",
    "agreement_with_fp32", "flip_rate", "images_per_second", "fp32_images_per_second", "speedup",
    "quantization_seconds", "calibration_kind", "calibration_images", "calibration_samples_used", "float_layers",
    "aa_baseline_metric", "aa_final_metric", "aa_validation", "flagged", "num_images", "precision_hint",
]


def _cell_from_path(path: str) -> tuple[str, str, str]:
    parts = Path(path).parts
    return parts[-4], parts[-3], parts[-2]


def summary_table(inputs, flag_drop: float = 0.02) -> pd.DataFrame:
    """One row per FP32 model and per cell, read from the metrics / quantize / quality JSON files."""
    rows = []
    for path in inputs.fp32:
        metrics = read_json(path)
        rows.append({"model": Path(path).parts[-3], "precision": "fp32", "calibration": "", "method": "",
                     **_metric_fields(metrics)})
    quantize_infos = {_cell_from_path(path): read_json(path) for path in inputs.quantize}
    quality = {(Path(path).parts[-2], Path(path).stem): read_json(path) for path in inputs.quality}
    for path in inputs.int8:
        model, calib, method = _cell_from_path(path)
        metrics, info = read_json(path), quantize_infos.get((model, calib, method), {})
        row = {"model": model, "precision": "int8", "calibration": calib, "method": method, **_metric_fields(metrics)}
        row["speedup"] = metrics["images_per_second"] / metrics["fp32_images_per_second"]
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
        for key, value in quality.get((model, calib), {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[f"quality_{key}"] = value
        rows.append(row)
    table = pd.DataFrame(rows)
    columns = [c for c in SUMMARY_COLUMNS if c in table] + sorted(c for c in table if c not in SUMMARY_COLUMNS)
    return table[columns]


def _metric_fields(metrics: dict) -> dict:
    keys = ("top1", "top5", "fp32_top1", "delta_top1", "agreement_with_fp32", "flip_rate", "images_per_second",
            "fp32_images_per_second", "num_images", "precision_hint", "untrained")
    return {key: metrics[key] for key in keys if key in metrics}


def _heatmap(table: pd.DataFrame, methods: list[str], path) -> None:
    int8 = table[table.precision == "int8"]
    fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods) + 1, 0.6 * int8.model.nunique() + 2.2),
                             squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        grid = int8[int8.method == method].pivot(index="model", columns="calibration", values="delta_top1") * 100
        image = ax.imshow(grid.values, cmap="RdYlGn", vmin=-5, vmax=5, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=35, ha="right")
        ax.set_yticks(range(grid.shape[0]), grid.index)
        for (i, j), value in np.ndenumerate(grid.values):
            ax.text(j, i, "–" if np.isnan(value) else f"{value:+.2f}", ha="center", va="center", fontsize=9)
        ax.set_title(f"Δ top-1 (pp), {method}")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    _save_figure(fig, path)


def _throughput(table: pd.DataFrame, path) -> None:
    fp32 = table[table.precision == "fp32"].set_index("model").images_per_second
    int8 = table[table.precision == "int8"].groupby("model").images_per_second.median()
    frame = pd.DataFrame({"FP32": fp32, "INT8 (median over cells)": int8})
    fig, ax = plt.subplots(figsize=(1.6 * len(frame) + 3, 3.5))
    frame.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("images/s")
    ax.set_title("Test-set throughput (same precision hint)")
    _save_figure(fig, path)


def _quality_scatter(table: pd.DataFrame, path) -> None:
    int8 = table[table.precision == "int8"]
    fig, ax = plt.subplots(figsize=(6, 4))
    if "quality_frechet_distance" in int8:
        # colour = calibration set, marker = method, so that no two cells look alike
        colours = dict(zip(sorted(int8.calibration.unique()), plt.cm.tab20.colors * 4, strict=False))
        markers = dict(zip(sorted(int8.method.unique()), "o^sDvP*X" * 4, strict=False))
        for (calib, method), group in int8.groupby(["calibration", "method"]):
            ax.scatter(group.quality_frechet_distance, group.delta_top1 * 100, label=f"{calib} / {method}",
                       color=colours[calib], marker=markers[method])
        ax.set_xlabel("Fréchet distance to CIFAR-10 train (penultimate features)")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no quality statistics", ha="center")
    ax.set_ylabel("Δ top-1 (pp)")
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


def _inline_png(path) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}">'


def _versions() -> dict:
    import nncf
    import openvino
    import snakemake
    import torch

    versions = {"python": platform.python_version(), "openvino": openvino.get_version(), "nncf": nncf.__version__,
                "torch": torch.__version__, "snakemake": snakemake.__version__, "numpy": np.__version__,
                "platform": platform.platform()}
    return {name: str(version) for name, version in versions.items()}


def _method_tables(table: pd.DataFrame, methods: list[str]) -> str:
    int8 = table[table.precision == "int8"]
    fp32 = table[table.precision == "fp32"].set_index("model")
    parts = []
    for method in methods:
        rows = int8[int8.method == method]
        cell = rows.assign(text=[
            f"{t * 100:.2f} ({d * 100:+.2f}){' ⚠' if f else ''}" for t, d, f in zip(rows.top1, rows.delta_top1,
                                                                                      rows.flagged, strict=True)
        ]).pivot(index="model", columns="calibration", values="text")
        cell.insert(0, "FP32", [f"{fp32.top1[m] * 100:.2f}" for m in cell.index])
        cell.index = [f"{m} (untrained)" if bool(fp32.get("untrained", {}).get(m, False)) else m for m in cell.index]
        parts.append(f"<h3>{html.escape(method)}</h3>" + cell.to_html(escape=True))
    return "\n".join(parts)


def build_report(inputs, outputs, study: dict, config: dict) -> pd.DataFrame:
    flag_drop = float(config.get("report", {}).get("flag_drop", 0.02))
    table = summary_table(inputs, flag_drop)
    with atomic_path(outputs.summary) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    _heatmap(table, study["methods"], outputs.heatmap)
    _throughput(table, outputs.throughput)
    _quality_scatter(table, outputs.quality)
    _previews(list(inputs.previews), outputs.previews)
    untrained = table[table.get("untrained", False) == True].model.unique().tolist()  # noqa: E712
    flagged = table[table.get("flagged", False) == True]  # noqa: E712
    quality_columns = [c for c in table if c.startswith("quality_")]
    body = [
        "<h1>synthcal report</h1>",
        "<p>INT8 (NNCF) vs FP32 (OpenVINO) CIFAR-10 test top-1, in % (Δ in percentage points). "
        f"⚠ marks cells whose drop exceeds {flag_drop * 100:.1f} pp.</p>",
    ]
    if untrained:
        body.append(f"<p class='warn'>UNTRAINED (random weights, smoke test only): {html.escape(str(untrained))}</p>")
    if len(flagged):
        body.append(f"<p class='warn'>Flagged cells: {html.escape(', '.join(flagged.model + '/' + flagged.calibration + '/' + flagged.method))}</p>")  # noqa: E501
    body += ["<h2>INT8 top-1 per method</h2>", _method_tables(table, study["methods"]),
             "<h2>Δ top-1</h2>", _inline_png(outputs.heatmap),
             "<h2>Throughput</h2>", _inline_png(outputs.throughput),
             "<h2>Calibration sets</h2>", _inline_png(outputs.previews)]
    for preview in inputs.previews:
        body.append(f"<h4>{html.escape(_preview_name(preview))}</h4>{_inline_png(preview)}")
    int8 = table[table.precision == "int8"]
    body += ["<h2>Calibration-set quality vs Δ</h2>", _inline_png(outputs.quality),
             int8[["model", "calibration", "method", "delta_top1", *quality_columns]].to_html(index=False),
             "<h2>All rows</h2>", table.to_html(index=False, float_format=lambda v: f"{v:.4g}"),
             "<h2>Config</h2>", f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>",
             "<h2>Versions</h2>", f"<pre>{html.escape(yaml.safe_dump(_versions()))}</pre>"]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>synthcal report</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} img{max-width:100%} .warn{color:#b00}"
            "</style></head><body>" + "\n".join(body) + "</body></html>")
    with atomic_path(outputs.html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return table
