"""Which calibration source without real images to use, and is it as good as calibrating on real data?

Works on the report's tables: ``summary`` (one row per evaluation, with speed-up and agreement intervals) and the
per-image predictions. For every test set and model:

- *candidates* are INT8 cells calibrated without real images (calibration kinds other than ``REAL_DATA_KINDS``)
  that keep the INT8 speed. A cell with every layer in INT8 runs the fully quantized graph, so it does by
  construction (its measured speed-up differs from its neighbours' only by timing noise); a cell with layers
  left in float must measure at least ``min_speedup_share`` of the median speed-up of the fully quantized cells
  (accuracy-aware cells that revert many layers to float trade that speed away and drop out);
- the *best* candidate has the highest agreement with FP32 (ties: the faster); candidates whose agreement does
  not differ from the best one's (exact McNemar, paired) are listed beside it;
- it is compared, image by image, with the same method calibrated on the reference real-data set:
  Δ agreement and Δ top-1 with bootstrap intervals and McNemar p-values.

One row per method (scope ``calibration``: the best source for that method) and one over all methods
(scope ``method``: the best method without real images).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from synthcal.evaluation.evaluation_sets import DEFAULT_TEST_SET
from synthcal.evaluation.stats import CONFIDENCE, RESAMPLES, mcnemar_exact, paired_difference

REAL_DATA_KINDS = ("cifar10", "folder")

# (test_set, model, calibration, method) -> (int8 predictions, fp32 predictions, labels) on that test set
PredictionLookup = Callable[[str, str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]


def reference_calibration(calibrations: list[str], kinds: dict[str, str], preferred: str | None = None) -> str | None:
    """The real-data calibration set others are compared with: ``preferred``, else the first ``cifar10`` set,
    else the first real-data set of the study (None when it has none)."""
    if preferred:
        if preferred not in calibrations:
            raise ValueError(f"report.reference_calibration {preferred!r} is not in the study's calibration sets "
                             f"{calibrations}")
        return preferred
    for wanted in REAL_DATA_KINDS:
        for name in calibrations:
            if kinds.get(name) == wanted:
                return name
    return None


def compare_calibrations(summary: pd.DataFrame, predictions: PredictionLookup, reference: str, *, seed: int = 0,
                         resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Every INT8 cell against the same model, method and test set calibrated on ``reference``."""
    int8 = summary[summary.precision == "int8"]
    rows = []
    for cell in int8.itertuples():
        if cell.calibration == reference:
            continue
        if not ((int8.test_set == cell.test_set) & (int8.model == cell.model) & (int8.method == cell.method)
                & (int8.calibration == reference)).any():
            continue
        ours, fp32, labels = predictions(cell.test_set, cell.model, cell.calibration, cell.method)
        theirs, _, _ = predictions(cell.test_set, cell.model, reference, cell.method)
        options = {"seed": seed, "resamples": resamples, "confidence": confidence}
        top1 = paired_difference(ours == labels, theirs == labels, **options)
        agreement = paired_difference(ours == fp32, theirs == fp32, **options)
        rows.append({"test_set": cell.test_set, "model": cell.model, "method": cell.method,
                     "calibration": cell.calibration, "reference": reference,
                     "delta_agreement": agreement.estimate, "delta_agreement_ci_low": agreement.ci_low,
                     "delta_agreement_ci_high": agreement.ci_high, "delta_agreement_mcnemar_p": agreement.mcnemar_p,
                     "delta_top1": top1.estimate, "delta_top1_ci_low": top1.ci_low,
                     "delta_top1_ci_high": top1.ci_high, "delta_top1_mcnemar_p": top1.mcnemar_p,
                     "agreement_distinguishable": agreement.distinguishable,
                     "top1_distinguishable": top1.distinguishable, "num_images": top1.n})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


COMPARISON_COLUMNS = [
    "test_set", "model", "method", "calibration", "reference", "delta_agreement", "delta_agreement_ci_low",
    "delta_agreement_ci_high", "delta_agreement_mcnemar_p", "delta_top1", "delta_top1_ci_low", "delta_top1_ci_high",
    "delta_top1_mcnemar_p", "agreement_distinguishable", "top1_distinguishable", "num_images",
]


def recommend(summary: pd.DataFrame, comparisons: pd.DataFrame, predictions: PredictionLookup,
              kinds: dict[str, str], methods: list[str], reference: str | None, *, min_speedup_share: float = 0.8,
              confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The recommendation rows (see the module's docstring), each with a sentence that states it."""
    alpha = 1 - confidence
    rows = []
    int8 = summary[summary.precision == "int8"]
    for (test_set, model), cells in int8.groupby(["test_set", "model"], sort=False):
        all_int8 = cells.float_layers == 0
        typical = cells.speedup[all_int8].median() if all_int8.any() else cells.speedup.max()
        real = cells.calibration.map(lambda name: kinds.get(name) in REAL_DATA_KINDS)
        keeps_speed = all_int8 | (cells.speedup >= min_speedup_share * typical)
        # only the methods this model has cells of (a study of several grids need not run every method on it)
        for scope, method in [("method", None), *(("calibration", m) for m in methods if (cells.method == m).any())]:
            pool = cells[~real] if method is None else cells[~real & (cells.method == method)]
            candidates = pool[keeps_speed.loc[pool.index]]
            row = {"test_set": test_set, "model": model, "scope": scope, "method": method or "",
                   "num_images": int(cells.num_images.iloc[0]), "min_speedup": min_speedup_share * typical,
                   "test_set_lossy": bool(cells.get("test_set_lossy", pd.Series([False])).iloc[0]),
                   "excluded_for_speed": _names(pool[~keeps_speed.loc[pool.index]])}
            if candidates.empty:
                row["statement"] = _statement(row, None, None)
                rows.append(row)
                continue
            best = candidates.sort_values(["agreement_with_fp32", "speedup"], ascending=False).iloc[0]
            best_agrees = _agrees(predictions, test_set, model, best.calibration, best.method)
            ties = [other for other in candidates.itertuples() if other.Index != best.name and mcnemar_exact(
                *_discordant(best_agrees, _agrees(predictions, test_set, model, other.calibration, other.method))
            ) >= alpha]
            row.update(method=best.method, calibration=best.calibration, calibration_kind=kinds.get(best.calibration),
                       agreement=best.agreement_with_fp32, agreement_ci_low=best.agreement_ci_low,
                       agreement_ci_high=best.agreement_ci_high, delta_top1=best.delta_top1,
                       delta_top1_ci_low=best.delta_top1_ci_low, delta_top1_ci_high=best.delta_top1_ci_high,
                       speedup=best.speedup, float_layers=int(best.float_layers),
                       indistinguishable_from_best=", ".join(f"{t.calibration}/{t.method}" for t in ties))
            versus = comparisons[(comparisons.test_set == test_set) & (comparisons.model == model)
                                 & (comparisons.method == best.method) & (comparisons.calibration == best.calibration)]
            reference_cell = cells[(cells.calibration == reference) & (cells.method == best.method)]
            if len(versus) and len(reference_cell):
                compared, ref = versus.iloc[0], reference_cell.iloc[0]
                row.update(reference_calibration=reference, reference_agreement=ref.agreement_with_fp32,
                           reference_agreement_ci_low=ref.agreement_ci_low,
                           reference_agreement_ci_high=ref.agreement_ci_high, reference_speedup=ref.speedup,
                           **{f"{key}_vs_reference": compared[key] for key in (
                               "delta_agreement", "delta_agreement_ci_low", "delta_agreement_ci_high",
                               "delta_agreement_mcnemar_p", "delta_top1", "delta_top1_ci_low", "delta_top1_ci_high",
                               "delta_top1_mcnemar_p")},
                           distinguishable_from_reference=bool(compared.agreement_distinguishable),
                           top1_distinguishable_from_reference=bool(compared.top1_distinguishable))
            row["statement"] = _statement(row, best, confidence)
            rows.append(row)
    return pd.DataFrame(rows, columns=[*RECOMMENDATION_COLUMNS, *sorted(
        {key for row in rows for key in row} - set(RECOMMENDATION_COLUMNS))])


RECOMMENDATION_COLUMNS = [
    "test_set", "model", "scope", "method", "calibration", "calibration_kind", "agreement", "agreement_ci_low",
    "agreement_ci_high", "speedup", "float_layers", "reference_calibration", "reference_agreement",
    "reference_agreement_ci_low", "reference_agreement_ci_high", "delta_agreement_vs_reference",
    "delta_agreement_ci_low_vs_reference", "delta_agreement_ci_high_vs_reference",
    "delta_agreement_mcnemar_p_vs_reference", "delta_top1_vs_reference", "delta_top1_ci_low_vs_reference",
    "delta_top1_ci_high_vs_reference", "delta_top1_mcnemar_p_vs_reference", "distinguishable_from_reference",
    "top1_distinguishable_from_reference", "statement",
]


def _agrees(predictions: PredictionLookup, test_set, model, calibration, method) -> np.ndarray:
    ours, fp32, _ = predictions(test_set, model, calibration, method)
    return ours == fp32


def _discordant(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    return int((a & ~b).sum()), int((~a & b).sum())


def _names(cells: pd.DataFrame) -> str:
    return ", ".join(f"{c.calibration}/{c.method} ({c.speedup:.2f}×, {int(c.float_layers)} float layers)"
                     for c in cells.itertuples())


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _interval(low: float, high: float, signed: bool = False) -> str:
    return f"[{low * 100:+.1f}, {high * 100:+.1f}]" if signed else f"[{low * 100:.1f}, {high * 100:.1f}]"


def _statement(row: dict, best, confidence: float | None) -> str:
    lossy = " lossy" if row.get("test_set_lossy") else ""
    split = "test split" if row["test_set"] == DEFAULT_TEST_SET else f"test set {row['test_set']}"
    where = f"{row['model']}, {split} ({row['num_images']:,}{lossy} images)"
    what = (f"method {row['method']}" if row["scope"] == "calibration" else "any method")
    if best is None:
        return (f"{where}, {what}: no calibration set without real images keeps the INT8 speed (all layers in "
                f"INT8, or at least {row['min_speedup']:.2f}× speed-up); excluded: "
                f"{row['excluded_for_speed'] or 'none'}.")
    level = f"{confidence * 100:.0f} %"
    kind = f" ({row['calibration_kind']})" if row["calibration_kind"] != row["calibration"] else ""
    text = (f"{where}, {what}: the best calibration source without real images is {row['calibration']}{kind}"
            + (f" with method {row['method']}" if row["scope"] == "method" else "")
            + f": agreement with FP32 {_pct(row['agreement'])} "
            f"{_interval(row['agreement_ci_low'], row['agreement_ci_high'])}, Δ top-1 "
            f"{row['delta_top1'] * 100:+.1f} pp {_interval(row['delta_top1_ci_low'], row['delta_top1_ci_high'], True)}"
            f", speed-up {row['speedup']:.2f}×, {row['float_layers']} layers left in float.")
    if row.get("reference_calibration"):
        verdict = ("differs significantly from" if row["distinguishable_from_reference"]
                   else "is not distinguishable from")
        top1_verdict = "differs" if row["top1_distinguishable_from_reference"] else "does not differ significantly"
        text += (f" Calibrated on real images ({row['reference_calibration']}), the same method agrees "
                 f"{_pct(row['reference_agreement'])} "
                 f"{_interval(row['reference_agreement_ci_low'], row['reference_agreement_ci_high'])}; the difference "
                 f"is {row['delta_agreement_vs_reference'] * 100:+.1f} pp agreement "
                 f"{_interval(row['delta_agreement_ci_low_vs_reference'], row['delta_agreement_ci_high_vs_reference'], True)}"  # noqa: E501
                 f" (McNemar p = {row['delta_agreement_mcnemar_p_vs_reference']:.3g}) and "
                 f"{row['delta_top1_vs_reference'] * 100:+.1f} pp top-1 "
                 f"{_interval(row['delta_top1_ci_low_vs_reference'], row['delta_top1_ci_high_vs_reference'], True)}"
                 f" (p = {row['delta_top1_mcnemar_p_vs_reference']:.3g}). In agreement it {verdict} real-data "
                 f"calibration; in top-1 it {top1_verdict} ({level} intervals).")
    else:
        text += " The study has no real-data calibration set to compare with."
    if row.get("indistinguishable_from_best"):
        text += f" Not distinguishable from it in agreement: {row['indistinguishable_from_best']}."
    if row.get("excluded_for_speed"):
        text += f" Left out for losing the INT8 speed: {row['excluded_for_speed']}."
    return text
