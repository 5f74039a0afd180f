"""The 2022 study's table: one row per model (with its FP32 top-1), a column per calibration set × method
(``study_table.csv``; on the page transposed, a row per calibration set × method, so that it fits the page).

Each cell holds INT8 top-1 and Δ top-1 vs FP32 with its bootstrap interval, and agreement with FP32 with its Wilson
interval, on one test set (the study's own split). Under the table: one sentence per model (its best cell without
real images against real-data calibration, from ``synthcal.report.recommendation``) and one per method across
models (on how many networks each source without real images is not distinguishable from real-data calibration).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from synthcal.evaluation.evaluation_sets import DEFAULT_TEST_SET
from synthcal.report.recommendation import REAL_DATA_KINDS

CELL_FIELDS = ("top1", "delta_top1", "delta_top1_ci_low", "delta_top1_ci_high", "agreement_with_fp32",
               "agreement_ci_low", "agreement_ci_high", "distinguishable_from_fp32")


def columns_of(table: pd.DataFrame, test_set: str) -> list[tuple[str, str]]:
    """(method, calibration) pairs with at least one cell on ``test_set``: methods, then sets, in study order."""
    int8 = table[(table.precision == "int8") & (table.test_set == test_set)]
    methods, calibrations = list(dict.fromkeys(int8.method)), list(dict.fromkeys(int8.calibration))
    present = set(zip(int8.method, int8.calibration, strict=True))
    return [(method, calib) for method in methods for calib in calibrations if (method, calib) in present]


def study_table(table: pd.DataFrame, test_set: str = DEFAULT_TEST_SET) -> pd.DataFrame:
    """One row per model: FP32 top-1 with its interval, then ``{calibration}/{method}.{field}`` per cell
    (``CELL_FIELDS``); empty where the study has no such cell for that model."""
    rows_of_set = table[table.test_set == test_set]
    fp32 = rows_of_set[rows_of_set.precision == "fp32"].set_index("model")
    int8 = rows_of_set[rows_of_set.precision == "int8"].set_index(["model", "method", "calibration"])
    rows = []
    for model in fp32.index:
        row = {"model": model, "test_set": test_set, "num_images": int(fp32.num_images[model]),
               "fp32_top1": fp32.top1[model], "fp32_top1_ci_low": fp32.top1_ci_low[model],
               "fp32_top1_ci_high": fp32.top1_ci_high[model]}
        for method, calib in columns_of(table, test_set):
            cell = int8.loc[(model, method, calib)] if (model, method, calib) in int8.index else None
            for field in CELL_FIELDS:
                row[f"{calib}/{method}.{field}"] = np.nan if cell is None else cell[field]
        rows.append(row)
    return pd.DataFrame(rows)


def _pp(value: float) -> str:
    return f"{value * 100:+.1f}".replace("-", "−")


def _pct(value: float) -> str:
    return f"{value * 100:.1f}"


MODELS_PER_TABLE = 3  # the page's table is transposed (models as columns): this many fit 1280 px side by side


def study_table_html(study: pd.DataFrame, table: pd.DataFrame, test_set: str, title: str) -> str:
    """The study table for the page, transposed so that it fits the page's width: a row per method × calibration
    set, per model a column of INT8 top-1 with Δ vs FP32 [interval] and one of agreement with FP32 [interval];
    ``MODELS_PER_TABLE`` models per table (more models: more tables). ``study_table.csv`` keeps one row per model."""
    columns = columns_of(table, test_set)
    records = study.to_dict("records")
    parts = []
    for start in range(0, len(records), MODELS_PER_TABLE):
        chunk = records[start:start + MODELS_PER_TABLE]
        heads = "".join(f"<th colspan='2'>{html.escape(record['model'])}<br><small>FP32 top-1 "
                        f"{_pct(record['fp32_top1'])} [{_pct(record['fp32_top1_ci_low'])}, "
                        f"{_pct(record['fp32_top1_ci_high'])}]</small></th>" for record in chunk)
        measures = "<th>top-1 % <small>Δ pp [CI]</small></th><th>agreement %</th>" * len(chunk)
        body, previous = [], None
        for method, calib in columns:
            if method != previous:
                body.append(f"<tr class='group'><th colspan='{1 + 2 * len(chunk)}'>{html.escape(method)}</th></tr>")
                previous = method
            cells = []
            for record in chunk:
                key = f"{calib}/{method}"
                if pd.isna(record[f"{key}.top1"]):
                    cells.append("<td class='none'>–</td><td class='none'>–</td>")
                    continue
                differs = " class='differs'" if bool(record[f"{key}.distinguishable_from_fp32"]) else ""
                cells.append(f"<td{differs}>{_pct(record[f'{key}.top1'])} <small>"
                             f"{_pp(record[f'{key}.delta_top1'])} [{_pp(record[f'{key}.delta_top1_ci_low'])}, "
                             f"{_pp(record[f'{key}.delta_top1_ci_high'])}]</small></td>"
                             f"<td>{_pct(record[f'{key}.agreement_with_fp32'])} <small>"
                             f"[{_pct(record[f'{key}.agreement_ci_low'])}, "
                             f"{_pct(record[f'{key}.agreement_ci_high'])}]</small></td>")
            body.append(f"<tr><th>{html.escape(calib)}</th>{''.join(cells)}</tr>")
        caption = ("INT8 top-1 % with Δ vs FP32 in pp [interval] (red: differs from FP32: the interval excludes 0 "
                   "and McNemar rejects) and agreement with FP32 top-1 % [Wilson interval] · " + title)
        parts.append(f"<div class='wide'><table class='study'><caption>{html.escape(caption)}</caption><thead>"
                     f"<tr><th rowspan='2'>method / calibration</th>{heads}</tr><tr>{measures}</tr></thead>"
                     f"<tbody>{''.join(body)}</tbody></table></div>")
    return "".join(parts)


def model_sentences(recommendation: pd.DataFrame, study: pd.DataFrame, test_set: str) -> list[str]:
    """Per model: FP32 top-1 and its best cell without real images against real-data calibration."""
    best = recommendation[(recommendation.test_set == test_set) & (recommendation.scope == "method")]
    best = best.set_index("model")
    sentences = []
    for row in study.itertuples():
        text = f"{row.model}: FP32 top-1 {_pct(row.fp32_top1)} %"
        if row.model not in best.index or pd.isna(best.calibration.get(row.model)):
            sentences.append(text + "; no INT8 cell without real images keeps the INT8 speed.")
            continue
        cell = best.loc[row.model]
        text += (f"; the best INT8 cell without real images, {cell.calibration}/{cell.method}, agrees with FP32 on "
                 f"{_pct(cell.agreement)} % [{_pct(cell.agreement_ci_low)}, {_pct(cell.agreement_ci_high)}] of the "
                 f"images, Δ top-1 {_pp(cell.delta_top1)} pp [{_pp(cell.delta_top1_ci_low)}, "
                 f"{_pp(cell.delta_top1_ci_high)}]")
        if isinstance(cell.get("reference_calibration"), str):
            verdict = "differs from" if bool(cell.distinguishable_from_reference) else "is not distinguishable from"
            text += (f"; real-data calibration ({cell.reference_calibration}/{cell.method}) agrees on "
                     f"{_pct(cell.reference_agreement)} %, a difference of "
                     f"{_pp(cell.delta_agreement_vs_reference)} pp [{_pp(cell.delta_agreement_ci_low_vs_reference)}, "
                     f"{_pp(cell.delta_agreement_ci_high_vs_reference)}]: it {verdict} real-data calibration")
        sentences.append(text + ".")
    return sentences


def across_models_sentences(comparisons: pd.DataFrame, kinds: dict[str, str], test_set: str) -> list[str]:
    """Per method: on how many of the networks it ran on each source without real images is not distinguishable
    (agreement, McNemar) from the same method calibrated on real images."""
    rows = comparisons[(comparisons.test_set == test_set)
                       & ~comparisons.calibration.map(lambda name: kinds.get(name) in REAL_DATA_KINDS)]
    sentences = []
    for method, cells in rows.groupby("method", sort=False):
        reference = cells.reference.iloc[0]
        parts = []
        for calib, per_model in cells.groupby("calibration", sort=False):
            same = int((~per_model.agreement_distinguishable.astype(bool)).sum())
            parts.append(f"{calib} on {same} of {len(per_model)}")
        sentences.append(f"With {method}, without real images, agreement with FP32 is within the interval of "
                         f"real-data calibration ({reference}; McNemar, paired) for {', '.join(parts)} networks.")
    return sentences
